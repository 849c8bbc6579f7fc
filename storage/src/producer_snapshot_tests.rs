//! Tests of producer snapshots: the format, and idempotence across rolls and reopens.
use super::*;
use crate::testing::{encode_batch, names_with_suffix, run, temp_dir, BatchSpec};
use crate::{LogConfig, PartitionLog};

fn table() -> ProducerStateTable {
    let mut table = ProducerStateTable::default();
    for producer_id in [7i64, 1 << 40] {
        let batches = (0..3)
            .map(|number| RetainedBatch {
                first_sequence: number * 10,
                last_sequence: number * 10 + 9,
                base_offset: Offset(100 + number as i64 * 10),
                last_offset: Offset(109 + number as i64 * 10),
            })
            .collect();
        let entry = ProducerEntry {
            epoch: 3,
            batches,
            last_append_ms: 1_700_000_000_123,
            // One producer with its transaction open.
            current_txn_first_offset: (producer_id == 7).then_some(Offset(105)),
            coordinator_epoch: 4,
        };
        table.producers.insert(producer_id, entry);
    }
    // A producer known only from a marker: no batches.
    table
        .producers
        .insert(8, ProducerEntry::new(2, 1_700_000_000_000));
    table.index_ongoing();
    table
}

#[test]
fn a_snapshot_from_before_transactions_still_loads() {
    // Version 1: no transaction fields, one producer with one batch.
    let mut body = Vec::new();
    body.extend_from_slice(&50i64.to_be_bytes());
    body.extend_from_slice(&1u32.to_be_bytes());
    body.extend_from_slice(&7i64.to_be_bytes());
    body.extend_from_slice(&3i16.to_be_bytes());
    body.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    body.push(1);
    for field in [0i32, 9] {
        body.extend_from_slice(&field.to_be_bytes());
    }
    for field in [40i64, 49] {
        body.extend_from_slice(&field.to_be_bytes());
    }
    let mut bytes = 1u16.to_be_bytes().to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    bytes.extend_from_slice(&body);
    let table = decode(&bytes, Offset(50)).expect("a version 1 snapshot");
    let entry = &table.producers[&7];
    assert_eq!((entry.epoch, entry.batches.len()), (3, 1));
    assert_eq!(entry.current_txn_first_offset, None);
    assert!(table.ongoing.is_empty());
}

#[test]
fn a_snapshot_decodes_as_written_and_any_damage_is_refused() {
    let table = table();
    let bytes = encode(&table, Offset(130));
    assert_eq!(decode(&bytes, Offset(130)), Some(table.clone()));
    assert_eq!(decode(&bytes, Offset(131)), None, "another file's name");
    for length in 0..bytes.len() {
        assert_eq!(
            decode(&bytes[..length], Offset(130)),
            None,
            "cut at {length}"
        );
    }
    for position in 0..bytes.len() {
        let mut garbled = bytes.clone();
        garbled[position] ^= 0x40;
        assert_eq!(decode(&garbled, Offset(130)), None, "byte {position}");
    }
    let empty = ProducerStateTable::default();
    assert_eq!(decode(&encode(&empty, Offset(0)), Offset(0)), Some(empty));
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// Appends an idempotent batch, then enough batches of other producers to roll several
/// segments, and waits for them; returns the batch and where it went.
async fn append_an_early_idempotent_batch(log: &PartitionLog) -> (Vec<u8>, (Offset, Offset)) {
    let idempotent = encode_batch(&BatchSpec::records(3, 40).producer(77, 2, 0));
    let appended = log.append(&idempotent, 1).unwrap();
    let mut last = appended.last_offset;
    for number in 0..30 {
        let spec = BatchSpec::records(2, 60)
            .fill(number)
            .producer(1_000 + number as i64, 0, 0);
        last = log.append(&encode_batch(&spec), 1).unwrap().last_offset;
    }
    log.wait_durable(last).await.unwrap();
    assert!(log.segment_count() > 3, "the test wants rolls");
    (idempotent, (appended.base_offset, appended.last_offset))
}

/// A closed log after [`append_an_early_idempotent_batch`].
async fn log_with_an_early_idempotent_batch(path: &std::path::Path) -> (Vec<u8>, Offset, Offset) {
    let log = PartitionLog::open(path.to_path_buf(), small_segments())
        .await
        .unwrap();
    let (idempotent, (base, last)) = append_an_early_idempotent_batch(&log).await;
    // Written after the group commit of each roll: the flusher's last round ends at close.
    log.close().await.unwrap();
    let snapshots = names_with_suffix(path, SNAPSHOT_SUFFIX);
    assert_eq!(
        snapshots.len(),
        SNAPSHOTS_KEPT,
        "the two newest are kept: {snapshots:?}"
    );
    (idempotent, base, last)
}

async fn retry_is_a_duplicate(path: &std::path::Path, batch: &[u8], offsets: (Offset, Offset)) {
    let log = PartitionLog::open(path.to_path_buf(), small_segments())
        .await
        .unwrap();
    let retried = log.append(batch, 1).unwrap();
    assert!(retried.duplicate, "the retry is recognised");
    assert_eq!((retried.base_offset, retried.last_offset), offsets);
    assert_eq!(log.producer_count(), 31);
    // Expiry works from the snapshot's timestamps.
    assert_eq!(log.expire_producers(crate::now_ms() + 10_000, 1_000), 31);
    log.close().await.unwrap();
}

#[test]
fn a_retry_after_rolls_and_a_reopen_is_a_duplicate() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let (batch, base, last) = log_with_an_early_idempotent_batch(&path).await;
        retry_is_a_duplicate(&path, &batch, (base, last)).await;
    });
}

#[test]
fn a_retry_after_rolls_and_a_crash_is_a_duplicate() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let log = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        let (idempotent, offsets) = append_an_early_idempotent_batch(&log).await;
        drop(log); // a crash: no close
        retry_is_a_duplicate(&path, &idempotent, offsets).await;
    });
}

#[test]
fn corrupt_snapshots_are_deleted_and_the_segments_scanned_instead() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let (batch, base, last) = log_with_an_early_idempotent_batch(&path).await;
        for name in names_with_suffix(&path, SNAPSHOT_SUFFIX) {
            let file = path.join(&name);
            let mut bytes = std::fs::read(&file).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xFF;
            std::fs::write(&file, bytes).unwrap();
        }
        // One above every segment, as a crash after a truncation could leave.
        std::fs::write(
            snapshot_path(&path, Offset(1 << 40)),
            encode(&table(), Offset(1 << 40)),
        )
        .unwrap();
        retry_is_a_duplicate(&path, &batch, (base, last)).await;
        // Rewritten by the next rolls only.
        assert!(names_with_suffix(&path, SNAPSHOT_SUFFIX).is_empty());
    });
}

#[test]
fn a_truncation_deletes_the_snapshots_above_the_cut() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let (batch, base, last) = log_with_an_early_idempotent_batch(&path).await;
        let newest = list(&path).unwrap()[1];
        let log = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        log.truncate_to(Offset(newest.0 - 1)).await.unwrap();
        assert!(list(&path).unwrap().iter().all(|offset| *offset < newest));
        let retried = log.append(&batch, 1).unwrap();
        assert!(retried.duplicate);
        assert_eq!((retried.base_offset, retried.last_offset), (base, last));
        log.truncate_fully_and_start_at(Offset(5_000))
            .await
            .unwrap();
        assert!(list(&path).unwrap().is_empty());
        assert_eq!(log.producer_count(), 0);
        log.close().await.unwrap();
    });
}

#[test]
fn the_snapshot_keeps_producers_whose_segments_are_gone() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let (batch, base, last) = log_with_an_early_idempotent_batch(&path).await;
        // The segment holding the batch goes, as retention would take it: only a snapshot
        // still knows the producer.
        for file in crate::segment::segment_file_paths(&path, Offset(0)) {
            std::fs::remove_file(file).unwrap();
        }
        retry_is_a_duplicate(&path, &batch, (base, last)).await;
    });
}
