//! Tests of `PartitionLog`: appends, reads, rolls, reopen, idempotence, close and failure.
use super::*;
use crate::batch::BatchError;
use crate::reader::ReadMode;
use crate::testing::{
    encode_batch, names_with_suffix, read_all, run, same_batch, same_batches, split_batches,
    temp_dir, wait_for_unlink, BatchSpec,
};

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 300,
        ..LogConfig::default()
    }
}

/// Batches of 1..=4 records of 20..=200 bytes, told apart by their fill byte.
fn varied_batches(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|number| {
            let spec = BatchSpec::records(1 + (number % 4) as i32, 20 + (number * 37) % 181);
            encode_batch(&spec.fill(number as u8))
        })
        .collect()
}

#[test]
fn log_append_time_logs_stamp_batches_and_keep_them_valid() {
    run(async {
        let dir = temp_dir();
        let config = LogConfig {
            log_append_time: true,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.path().join("stamped-0"), config)
            .await
            .unwrap();
        let before = crate::now_ms();
        let appended = log
            .append(&encode_batch(&BatchSpec::records(3, 10)), 0)
            .unwrap();
        let stamp = appended.log_append_time_ms.expect("stamped");
        assert!(stamp >= before);
        log.wait_durable(appended.last_offset).await.unwrap();
        let stored = log.read(Offset(0), 1 << 20, Offset::MAX).await.unwrap();
        let info = batch::parse_stored_batch(&stored).expect("valid CRC after stamping");
        assert_eq!(info.max_timestamp, stamp);
        assert_ne!(info.attributes & batch::TIMESTAMP_TYPE_LOG_APPEND_TIME, 0);
        log.close().await.unwrap();
    });
}

#[test]
fn round_trip_across_segment_rolls_and_reopen() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("topic-0");
        let sent = varied_batches(40);
        let log = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        let mut expected_base = 0;
        for (number, batch) in sent.iter().enumerate() {
            let appended = log.append(batch, 7).unwrap();
            assert_eq!(appended.base_offset, Offset(expected_base));
            assert!(!appended.duplicate);
            expected_base = appended.last_offset.0 + 1;
            if number % 3 == 0 {
                log.wait_durable(appended.last_offset).await.unwrap();
            }
        }
        assert_eq!(log.log_end_offset(), Offset(expected_base));
        log.wait_durable(Offset(expected_base - 1)).await.unwrap();
        assert_eq!(log.durable_end_offset(), Offset(expected_base));
        let check = |batches: &[(batch::BatchInfo, Vec<u8>)]| same_batches(batches, &sent, 7);
        check(&read_all(&log, 1 << 20).await);
        check(&read_all(&log, 1).await);
        assert!(
            names_with_suffix(&path, ".log").len() > 3,
            "small segments roll"
        );
        log.close().await.unwrap();

        let reopened = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        assert_eq!(reopened.log_end_offset(), Offset(expected_base));
        assert_eq!(reopened.durable_end_offset(), Offset(expected_base));
        check(&read_all(&reopened, 700).await);
        let more = encode_batch(&BatchSpec::records(2, 50));
        let appended = reopened.append(&more, 8).unwrap();
        assert_eq!(appended.base_offset, Offset(expected_base));
        reopened.wait_durable(appended.last_offset).await.unwrap();
        let all = read_all(&reopened, 1 << 20).await;
        assert!(same_batch(&all[sent.len()].1, &more));
        // Sealed segments were trimmed to their logical size on roll.
        for name in names_with_suffix(&path, ".log").iter().rev().skip(1) {
            let bytes = std::fs::read(path.join(name)).unwrap();
            assert!(bytes.len() <= 2_000, "{name} is {} bytes", bytes.len());
            assert!(
                !split_batches(&bytes).is_empty(),
                "{name} holds whole batches only"
            );
        }
        reopened.close().await.unwrap();
    });
}

#[test]
fn reads_return_whole_batches_from_the_one_holding_the_offset() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
            .await
            .unwrap();
        let sent: Vec<Vec<u8>> = (0..5)
            .map(|fill| encode_batch(&BatchSpec::records(3, 100).fill(fill)))
            .collect();
        for batch in &sent {
            log.append(batch, 0).unwrap();
        }
        log.wait_durable(Offset(14)).await.unwrap();
        // Tiny max_bytes still gives one whole batch (KIP-74).
        let one = split_batches(&log.read(Offset(4), 1, Offset::MAX).await.unwrap());
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0.base_offset, 3);
        assert!(same_batch(&one[0].1, &sent[1]));
        // max_bytes bounds the total otherwise.
        let two = split_batches(
            &log.read(Offset(5), 2 * sent[0].len(), Offset::MAX)
                .await
                .unwrap(),
        );
        assert_eq!(
            two.iter()
                .map(|(info, _)| info.base_offset)
                .collect::<Vec<_>>(),
            [3, 6]
        );
        let rest = split_batches(&log.read(Offset(9), 1 << 20, Offset::MAX).await.unwrap());
        assert_eq!(rest.len(), 2);
        log.close().await.unwrap();
    });
}

#[test]
fn out_of_range_reads_and_unflushed_data() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
            .await
            .unwrap();
        assert!(
            log.read(Offset(0), 100, Offset::MAX)
                .await
                .unwrap()
                .is_empty(),
            "empty log, fetch at HW"
        );
        let appended = log
            .append(&encode_batch(&BatchSpec::records(2, 10)), 0)
            .unwrap();
        // Not yet durable: invisible, and offset 1 is above the high watermark.
        assert_eq!(log.durable_end_offset(), Offset(0));
        assert_eq!(log.log_end_offset(), Offset(2));
        assert!(log
            .read(Offset(0), 100, Offset::MAX)
            .await
            .unwrap()
            .is_empty());
        log.wait_durable(appended.last_offset).await.unwrap();
        assert!(!log
            .read(Offset(0), 100, Offset::MAX)
            .await
            .unwrap()
            .is_empty());
        assert!(log
            .read(Offset(2), 100, Offset::MAX)
            .await
            .unwrap()
            .is_empty());
        for requested in [Offset(3), Offset(-1), Offset(i64::MAX)] {
            match log.read(requested, 100, Offset::MAX).await {
                Err(StorageError::OffsetOutOfRange {
                    requested: got,
                    log_start,
                    durable_end,
                }) => {
                    assert_eq!(
                        (got, log_start, durable_end),
                        (requested, Offset(0), Offset(2))
                    );
                }
                other => panic!("expected OffsetOutOfRange, got {other:?}"),
            }
        }
        log.close().await.unwrap();
    });
}

#[test]
fn idempotent_producers_duplicates_gaps_and_epochs() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let log = PartitionLog::open(path.clone(), LogConfig::default())
            .await
            .unwrap();
        let first = encode_batch(&BatchSpec::records(3, 10).producer(11, 0, 0));
        let second = encode_batch(&BatchSpec::records(2, 10).producer(11, 0, 3));
        assert_eq!(log.append(&first, 0).unwrap().base_offset, Offset(0));
        let retry = log.append(&first, 0).unwrap();
        assert_eq!(
            retry,
            Appended {
                base_offset: Offset(0),
                last_offset: Offset(2),
                duplicate: true,
                log_append_time_ms: None,
                in_place: false,
            }
        );
        assert_eq!(log.append(&second, 0).unwrap().base_offset, Offset(3));
        let gap = encode_batch(&BatchSpec::records(1, 10).producer(11, 0, 9));
        assert!(matches!(
            log.append(&gap, 0),
            Err(StorageError::OutOfOrderSequence)
        ));
        let new_epoch_bad = encode_batch(&BatchSpec::records(1, 10).producer(11, 1, 5));
        assert!(matches!(
            log.append(&new_epoch_bad, 0),
            Err(StorageError::OutOfOrderSequence)
        ));
        let new_epoch = encode_batch(&BatchSpec::records(1, 10).producer(11, 1, 0));
        assert_eq!(log.append(&new_epoch, 0).unwrap().base_offset, Offset(5));
        let stale = encode_batch(&BatchSpec::records(1, 10).producer(11, 0, 5));
        assert!(matches!(
            log.append(&stale, 0),
            Err(StorageError::InvalidProducerEpoch)
        ));
        assert_eq!(log.log_end_offset(), Offset(6));
        log.close().await.unwrap();

        // The producer state is rebuilt from the segment on reopen.
        let reopened = PartitionLog::open(path, LogConfig::default())
            .await
            .unwrap();
        let retry = reopened.append(&new_epoch, 0).unwrap();
        assert_eq!(
            retry,
            Appended {
                base_offset: Offset(5),
                last_offset: Offset(5),
                duplicate: true,
                log_append_time_ms: None,
                in_place: false,
            }
        );
        assert!(matches!(
            reopened.append(&stale, 0),
            Err(StorageError::InvalidProducerEpoch)
        ));
        reopened.close().await.unwrap();
    });
}

#[test]
fn invalid_batches_are_refused_before_anything_is_appended() {
    run(async {
        let dir = temp_dir();
        let config = LogConfig {
            max_message_bytes: 200,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.path().join("p"), config)
            .await
            .unwrap();
        let mut corrupt = encode_batch(&BatchSpec::records(1, 10));
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xFF;
        assert!(matches!(
            log.append(&corrupt, 0),
            Err(StorageError::Batch(BatchError::Corrupt(_)))
        ));
        let large = encode_batch(&BatchSpec::records(1, 300));
        assert!(matches!(
            log.append(&large, 0),
            Err(StorageError::Batch(BatchError::TooLarge { .. }))
        ));
        assert_eq!(log.log_end_offset(), Offset(0));
        log.close().await.unwrap();
    });
}

#[test]
fn large_batches_span_chunks_and_group_commits_share_a_sync() {
    run(async {
        let dir = temp_dir();
        let config = LogConfig {
            max_message_bytes: 4 << 20,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.path().join("p"), config)
            .await
            .unwrap();
        let big = encode_batch(&BatchSpec::records(3, 300_000).fill(0xEE));
        let mut last = Offset(0);
        for _ in 0..4 {
            last = log.append(&big, 1).unwrap().last_offset;
        }
        let small = encode_batch(&BatchSpec::records(1, 5));
        last = log
            .append(&small, 1)
            .map(|appended| appended.last_offset)
            .unwrap_or(last);
        log.wait_durable(last).await.unwrap();
        let batches = read_all(&log, 1 << 20).await;
        assert_eq!(batches.len(), 5);
        assert!(batches[..4]
            .iter()
            .all(|(_, stored)| same_batch(stored, &big)));
        assert!(same_batch(&batches[4].1, &small));
        log.close().await.unwrap();
    });
}

#[test]
fn close_refuses_further_work_and_delete_removes_the_directory() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let log = PartitionLog::open(path.clone(), LogConfig::default())
            .await
            .unwrap();
        let appended = log
            .append(&encode_batch(&BatchSpec::records(1, 10)), 0)
            .unwrap();
        let waiter = log.clone();
        let waiting =
            glommio::spawn_local(async move { waiter.wait_durable(appended.last_offset).await });
        log.close().await.unwrap();
        waiting.await.unwrap(); // close flushed what was pending
        log.close().await.unwrap(); // idempotent
        let batch = encode_batch(&BatchSpec::records(1, 10));
        assert!(matches!(log.append(&batch, 0), Err(StorageError::Closed)));
        assert!(matches!(
            log.read(Offset(0), 10, Offset::MAX).await,
            Err(StorageError::Closed)
        ));
        assert!(matches!(
            log.wait_durable(Offset(5)).await,
            Err(StorageError::Closed)
        ));
        // The active segment was trimmed to its logical size, preallocation given back.
        let metadata = std::fs::metadata(path.join("00000000000000000000.log")).unwrap();
        assert_eq!(metadata.len(), batch.len() as u64);
        assert!(std::os::unix::fs::MetadataExt::blocks(&metadata) * 512 <= 64 * 1024);
        log.delete().await.unwrap();
        assert!(!path.exists());
    });
}

#[test]
fn appends_made_during_a_flush_share_the_next_sync() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
            .await
            .unwrap();
        let batch = encode_batch(&BatchSpec::records(1, 100));
        let mut last = Offset(0);
        for _ in 0..200 {
            last = log.append(&batch, 0).unwrap().last_offset;
        }
        log.wait_durable(last).await.unwrap();
        assert_eq!(
            log.flush_count(),
            1,
            "everything appended before the flusher ran"
        );
        // Appends racing with flushes: each flush takes what arrived during the previous.
        let mut waits = Vec::new();
        for round in 0..50 {
            let appended = log.append(&batch, 0).unwrap();
            let waiter = log.clone();
            waits.push(glommio::spawn_local(async move {
                waiter.wait_durable(appended.last_offset).await
            }));
            if round % 10 == 0 {
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        for wait in waits {
            wait.await.unwrap();
        }
        // At least one flush started during the appends and one took the rest; far
        // fewer than one per batch.
        let flushes = log.flush_count();
        assert!((3..1 + 50).contains(&flushes), "{flushes} flushes");
        assert_eq!(read_all(&log, 1 << 20).await.len(), 250);
        log.close().await.unwrap();
    });
}

#[test]
fn a_failed_log_reports_its_failure_everywhere() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
            .await
            .unwrap();
        let batch = encode_batch(&BatchSpec::records(1, 10));
        let appended = log.append(&batch, 0).unwrap();
        log.wait_durable(appended.last_offset).await.unwrap();
        // What the flusher does when a write or fdatasync fails.
        let injected = io::Error::other("injected fdatasync failure");
        log.shared.state.borrow_mut().fail(&injected);
        assert!(matches!(log.append(&batch, 0), Err(StorageError::Io(_))));
        assert!(matches!(
            log.wait_durable(appended.last_offset.next()).await,
            Err(StorageError::Io(_))
        ));
        log.wait_durable(appended.last_offset).await.unwrap(); // what was synced stays durable
        match log.close().await {
            Err(StorageError::Io(error)) => assert!(error.to_string().contains("injected")),
            other => panic!("expected the failure, got {other:?}"),
        }
    });
}

/// The bytes a read returned, with file ranges read back from their descriptors.
fn materialize(records: &crate::Records) -> Vec<u8> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::FileExt;
    let mut bytes = Vec::with_capacity(records.len());
    for piece in records.pieces() {
        match piece {
            crate::RecordsPiece::File(range) => {
                // SAFETY: borrowed for the read only; ManuallyDrop keeps the descriptor open.
                let file = std::mem::ManuallyDrop::new(unsafe {
                    std::fs::File::from_raw_fd(range.file.as_raw_fd())
                });
                let mut buffer = vec![0u8; range.length];
                file.read_exact_at(&mut buffer, range.position).unwrap();
                bytes.extend_from_slice(&buffer);
            }
            memory => bytes.extend_from_slice(memory.in_memory().unwrap()),
        }
    }
    bytes
}

#[test]
fn file_range_reads_send_the_same_batches_as_copied_reads() {
    run(async {
        // No tail cache, so that every sealed segment is served as a file range.
        crate::tail_cache::set_shard_budget_bytes(0);
        let dir = temp_dir();
        let path = dir.path().join("ranges-0");
        // Every batch but a segment's first gets an index entry, so both read modes cut at
        // the same batch boundaries.
        let config = LogConfig {
            segment_bytes: 2_000,
            index_interval_bytes: 0,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), config).await.unwrap();
        let sent = varied_batches(60);
        for batch in &sent {
            log.append(batch, 0).unwrap();
        }
        let end = log.log_end_offset();
        log.wait_durable(Offset(end.0 - 1)).await.unwrap();
        let mut file_pieces = 0;
        for offset in 0..end.0 {
            for max_bytes in [1, 150, 700, 1_500, 1 << 20] {
                let copied = log
                    .read_records(Offset(offset), max_bytes, Offset::MAX, ReadMode::Copy)
                    .await
                    .unwrap();
                let ranged = log
                    .read_records(Offset(offset), max_bytes, Offset::MAX, ReadMode::FileRanges)
                    .await
                    .unwrap();
                assert!(copied
                    .pieces()
                    .iter()
                    .all(|piece| piece.in_memory().is_some()));
                if ranged.file_bytes() > 0 {
                    file_pieces += 1;
                }
                assert_eq!(
                    ranged.len(),
                    copied.len(),
                    "offset {offset}, max {max_bytes}"
                );
                assert!(
                    materialize(&ranged) == materialize(&copied),
                    "offset {offset}, max {max_bytes}"
                );
            }
        }
        assert!(file_pieces > 0, "sealed segments are read as file ranges");
        assert!(crate::read_files::open_count() > 0);
        log.close().await.unwrap();
        // The descriptors go with their segments.
        assert_eq!(crate::read_files::open_count(), 0);
        crate::tail_cache::set_shard_budget_bytes(crate::tail_cache::DEFAULT_SHARD_BUDGET_BYTES);
    });
}

#[test]
fn a_file_range_keeps_its_bytes_after_the_segment_is_deleted() {
    run(async {
        crate::tail_cache::set_shard_budget_bytes(0);
        let dir = temp_dir();
        let config = LogConfig {
            segment_bytes: 2_000,
            file_delete_delay_ms: 0,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.path().join("held-0"), config)
            .await
            .unwrap();
        for batch in &varied_batches(40) {
            log.append(batch, 0).unwrap();
        }
        let end = log.log_end_offset();
        log.wait_durable(Offset(end.0 - 1)).await.unwrap();
        let ranged = log
            .read_records(Offset(0), 1 << 20, Offset::MAX, ReadMode::FileRanges)
            .await
            .unwrap();
        assert!(ranged.file_bytes() > 0);
        let before = materialize(&ranged);
        // Delete everything below the last segment, as DeleteRecords and retention do.
        log.delete_records_before(Offset(end.0 - 1)).await.unwrap();
        for _ in 0..50 {
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(materialize(&ranged) == before);
        let first = split_batches(&before);
        assert_eq!(first[0].0.base_offset, 0);
        assert!(
            !names_with_suffix(log.dir(), crate::segment::DELETED_SUFFIX).is_empty(),
            "the held segment waits for the send"
        );
        drop(ranged);
        // Once the range is dropped, the files go (polled every FILE_RELEASE_POLL).
        wait_for_unlink(log.dir()).await;
        log.close().await.unwrap();
        crate::tail_cache::set_shard_budget_bytes(crate::tail_cache::DEFAULT_SHARD_BUDGET_BYTES);
    });
}

/// Batches of two records with increasing timestamps (1000, 1010, ... and a dip of 5 ms
/// inside each batch).
fn timestamped_batches(count: i64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|number| {
            let spec = BatchSpec::timestamped(&[1_000 + number * 10, 995 + number * 10], 30);
            encode_batch(&spec.fill(number as u8))
        })
        .collect()
}

type SegmentIndexes = (
    Offset,
    Vec<crate::index::IndexEntry>,
    Vec<crate::time_index::TimeIndexEntry>,
);

/// Every segment's index entries in memory, oldest segment first.
fn indexes_in_memory(log: &PartitionLog) -> Vec<SegmentIndexes> {
    let state = log.shared.state.borrow();
    state
        .segments
        .iter()
        .map(|segment| {
            (
                segment.base_offset,
                segment.index.entries().to_vec(),
                segment.time_index.entries().to_vec(),
            )
        })
        .collect()
}

/// The files under `dir` that this process holds descriptors of, sorted.
fn open_files_under(dir: &Path) -> Vec<PathBuf> {
    let dir = dir.canonicalize().unwrap();
    let mut open: Vec<PathBuf> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .collect();
    open.sort();
    open
}

/// Waits (at most 5 s) until `done()`: the flusher writes index files after it wakes the
/// appenders.
async fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[test]
fn an_open_log_holds_one_descriptor_per_segment_and_writes_indexes_when_sealed() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let log = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        // Until there are sealed segments and the active one has index entries of both kinds.
        for batch in timestamped_batches(200) {
            let last = log.append(&batch, 0).unwrap().last_offset;
            log.wait_durable(last).await.unwrap();
            let indexes = indexes_in_memory(&log);
            let active = indexes.last().unwrap();
            if indexes.len() > 3 && active.1.len() > 1 && active.2.len() > 1 {
                break;
            }
        }
        let indexes = indexes_in_memory(&log);
        assert!(indexes.len() > 3, "small segments roll");
        let canonical = path.canonicalize().unwrap();
        let logs: Vec<PathBuf> = indexes
            .iter()
            .map(|(base, _, _)| segment::log_file_path(&canonical, *base))
            .collect();
        let on_disk = |base: Offset| {
            (
                std::fs::read(segment::index_file_path(&path, base)).unwrap(),
                std::fs::read(segment::time_index_file_path(&path, base)).unwrap(),
            )
        };
        let encoded = |(_, index, time_index): &SegmentIndexes| {
            (
                crate::index::encode_entries(index),
                crate::time_index::encode_entries(time_index),
            )
        };
        // Sealed segments' index files were written when they were sealed; the active
        // segment's are empty until it is sealed or the log closes.
        let (active, sealed) = indexes.split_last().unwrap();
        let sealed_written = || {
            sealed
                .iter()
                .all(|segment| on_disk(segment.0) == encoded(segment))
        };
        wait_until(|| sealed_written() && open_files_under(&path) == logs).await;
        // Only the `.log` files are open: no index file stays open, sealed or active.
        assert_eq!(open_files_under(&path), logs);
        for segment in sealed {
            assert_eq!(
                on_disk(segment.0),
                encoded(segment),
                "segment {}",
                segment.0
            );
        }
        assert!(active.1.len() > 1 && active.2.len() > 1);
        assert_eq!(on_disk(active.0), (Vec::new(), Vec::new()));
        log.close().await.unwrap();
        assert_eq!(open_files_under(&path), Vec::<PathBuf>::new());
        assert_eq!(on_disk(active.0), encoded(active), "written at close");
    });
}

#[test]
fn a_crash_leaving_the_active_segments_indexes_missing_or_stale_recovers_them() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let batches = timestamped_batches(40);
        let log = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        let mut last = Offset(0);
        for batch in &batches {
            last = log.append(batch, 0).unwrap().last_offset;
        }
        log.wait_durable(last).await.unwrap();
        let written = indexes_in_memory(&log);
        let (active, last_sealed) = (written[written.len() - 1].0, written[written.len() - 2].0);
        assert!(
            !written.last().unwrap().1.is_empty(),
            "the test wants entries"
        );
        drop(log); // a crash: no close, the active segment's index files are empty

        let stale = crate::index::encode_entries(&[
            crate::index::IndexEntry {
                relative_offset: 1,
                position: 7,
            },
            crate::index::IndexEntry {
                relative_offset: 3,
                position: 90,
            },
        ]);
        let stale_time = crate::time_index::encode_entries(&[crate::time_index::TimeIndexEntry {
            timestamp: i64::MAX - 1,
            relative_offset: 10_000,
        }]);
        let index_files = |base| {
            [
                segment::index_file_path(&path, base),
                segment::time_index_file_path(&path, base),
            ]
        };
        for file in index_files(active) {
            assert_eq!(
                std::fs::metadata(file).unwrap().len(),
                0,
                "not written while active"
            );
        }
        for damage in [
            "as the crash left them",
            "missing",
            "stale",
            "last sealed empty",
        ] {
            match damage {
                "missing" => index_files(active).iter().for_each(|file| {
                    std::fs::remove_file(file).unwrap();
                }),
                "stale" => {
                    let [index, time_index] = index_files(active);
                    std::fs::write(index, &stale).unwrap();
                    std::fs::write(time_index, &stale_time).unwrap();
                }
                // A crash after a roll, before the sealed segment's index files were written.
                "last sealed empty" => index_files(last_sealed).iter().for_each(|file| {
                    std::fs::write(file, []).unwrap();
                }),
                _ => {}
            }
            let log = PartitionLog::open(path.clone(), small_segments())
                .await
                .unwrap();
            assert_eq!(indexes_in_memory(&log), written, "{damage}");
            let stored = read_all(&log, 1).await;
            assert_eq!(stored.len(), batches.len());
            for ((_, stored), sent) in stored.iter().zip(&batches) {
                assert!(same_batch(stored, sent));
            }
            for (number, batch) in batches.iter().enumerate() {
                let first = Offset(2 * number as i64);
                let read = log.read(first.next(), 1, Offset::MAX).await.unwrap();
                assert!(
                    same_batch(&read, batch),
                    "{damage}: read at {}",
                    first.next()
                );
                let found = log.offset_for_timestamp(991 + 10 * number as i64).await;
                assert_eq!(found.unwrap(), Some((first, 1_000 + 10 * number as i64)));
            }
            let max = log.max_timestamp().await.unwrap();
            assert_eq!(max, Some((Offset(78), 1_390)), "{damage}");
            drop(log); // crash again
        }
        let log = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        log.close().await.unwrap();
        for (base, index, time_index) in &written {
            let [index_file, time_index_file] = index_files(*base);
            assert_eq!(
                std::fs::read(index_file).unwrap(),
                crate::index::encode_entries(index)
            );
            assert_eq!(
                std::fs::read(time_index_file).unwrap(),
                crate::time_index::encode_entries(time_index)
            );
        }
    });
}

/// What replication builds on: reads bounded by a watermark, leader epochs.
#[path = "log_replica_tests.rs"]
mod replica;
