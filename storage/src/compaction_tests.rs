//! Tests of compaction: the latest record per key survives (checked against a model over
//! random histories and codecs), tombstones go after `delete.retention.ms`, the dirty ratio and
//! lag rules, keyless records are refused, a crash at any step of the swap loses nothing, and
//! transactions are compacted as Kafka compacts them.

use super::*;
use crate::testing::{encode_keyed, names_with_suffix, run, split_batches, temp_dir, KeyValue};
use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// One record as a consumer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// (key, value) pairs; `None` value is a tombstone.
type Update = (u8, Option<u32>);

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 300,
        file_delete_delay_ms: 0,
        compact: true,
        retention_delete: false,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: i64::MAX / 4,
        ..LogConfig::default()
    }
}

fn encode(updates: &[Update], codec: Compression, timestamp_ms: i64) -> Bytes {
    let records: Vec<KeyValue> = updates
        .iter()
        .map(|(key, value)| {
            let value = value.map(|value| format!("value-{value:08}").into_bytes());
            (Some(format!("key-{key}").into_bytes()), value)
        })
        .collect();
    encode_keyed(&records, codec, (timestamp_ms, 0))
}

fn codec(number: usize) -> Compression {
    [
        Compression::None,
        Compression::Gzip,
        Compression::None,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ][number % 6]
}

/// Every record from the log start to the high watermark, decoded (gaps allowed).
async fn read_records(log: &PartitionLog) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.durable_end_offset() {
        let bytes = log.read(next, 64 * 1024, Offset::MAX).await.unwrap();
        let batches = split_batches(&bytes);
        assert!(
            !batches.is_empty(),
            "a read below the high watermark returns a batch"
        );
        for (info, batch) in batches {
            assert!(info.last_offset() >= next.0, "batches move forwards");
            let mut buffer = Bytes::from(batch);
            for record in RecordBatchDecoder::decode(&mut buffer).unwrap().records {
                if record.offset >= next.0 {
                    seen.push(Seen {
                        offset: record.offset,
                        key: record.key.map(|key| key.to_vec()),
                        value: record.value.map(|value| value.to_vec()),
                    });
                }
            }
            next = Offset(info.last_offset() + 1);
        }
    }
    seen
}

/// Appends each batch of updates; returns every record with its offset, as appended.
async fn append_all(log: &PartitionLog, batches: &[Vec<Update>], timestamp_ms: i64) -> Vec<Seen> {
    let mut appended = Vec::new();
    let mut last = None;
    for (number, updates) in batches.iter().enumerate() {
        let batch = encode(updates, codec(number), timestamp_ms);
        let result = log.append(&batch, 0).unwrap();
        for (delta, (key, value)) in updates.iter().enumerate() {
            appended.push(Seen {
                offset: result.base_offset.0 + delta as i64,
                key: Some(format!("key-{key}").into_bytes()),
                value: value.map(|value| format!("value-{value:08}").into_bytes()),
            });
        }
        last = Some(result.last_offset);
    }
    if let Some(last) = last {
        log.wait_durable(last).await.unwrap();
    }
    appended
}

/// Checks what a compacted log holds against what was appended: below `cleaned_up_to` each
/// key appears at most once, as its latest record below that offset (tombstones kept unless
/// `tombstones_gone`); from there on everything is as appended.
fn check_compacted(appended: &[Seen], seen: &[Seen], cleaned_up_to: Offset, tombstones_gone: bool) {
    let mut latest: BTreeMap<&Option<Vec<u8>>, i64> = BTreeMap::new();
    for record in appended
        .iter()
        .filter(|record| record.offset < cleaned_up_to.0)
    {
        latest.insert(&record.key, record.offset);
    }
    let expected: Vec<&Seen> = appended
        .iter()
        .filter(|record| {
            record.offset >= cleaned_up_to.0
                || (latest[&record.key] == record.offset
                    && !(tombstones_gone && record.value.is_none()))
        })
        .collect();
    let describe = |records: &[&Seen]| -> Vec<String> {
        records
            .iter()
            .map(|record| {
                let text = |bytes: &Option<Vec<u8>>| {
                    bytes.as_ref().map_or("null".to_string(), |bytes| {
                        String::from_utf8_lossy(bytes).into_owned()
                    })
                };
                format!(
                    "{}:{}={}",
                    record.offset,
                    text(&record.key),
                    text(&record.value)
                )
            })
            .collect()
    };
    let seen: Vec<&Seen> = seen.iter().collect();
    if seen != expected {
        let (seen, expected) = (describe(&seen), describe(&expected));
        let first = seen
            .iter()
            .zip(&expected)
            .take_while(|(a, b)| a == b)
            .count();
        panic!(
            "cleaned up to {cleaned_up_to}: {} records seen, {} expected; first difference at #{first}: seen {:?}, expected {:?}",
            seen.len(),
            expected.len(),
            &seen[first.min(seen.len())..(first + 4).min(seen.len())],
            &expected[first.min(expected.len())..(first + 4).min(expected.len())],
        );
    }
}

#[test]
fn keeps_the_latest_record_of_each_key_across_codecs_and_reopens() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let log = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        let batches: Vec<Vec<Update>> = (0..60u32)
            .map(|batch| {
                (0..7)
                    .map(|n| (((batch * 7 + n) % 13) as u8, Some(batch * 7 + n)))
                    .collect()
            })
            .collect();
        let appended = append_all(&log, &batches, crate::now_ms()).await;
        let segments_before = log.shared.state.borrow().segments.len();
        assert!(segments_before > 5, "the test needs several segments");
        let outcome = log
            .compact(crate::now_ms(), &CompactionOptions::default())
            .await
            .unwrap()
            .expect("a compacted log with dirty segments is due");
        assert!(outcome.records_removed > 0);
        assert!(outcome.bytes_after < outcome.bytes_before);
        let cleaned_up_to = outcome.cleaned_up_to;
        assert_eq!(cleaned_up_to, log.cleaner_checkpoint());
        check_compacted(&appended, &read_records(&log).await, cleaned_up_to, false);
        // Nothing new is dirty: the next pass has nothing to do.
        let again = log
            .compact(crate::now_ms(), &CompactionOptions::default())
            .await
            .unwrap();
        assert_eq!(again, None);
        log.close().await.unwrap();
        let reopened = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        assert_eq!(reopened.cleaner_checkpoint(), cleaned_up_to);
        check_compacted(
            &appended,
            &read_records(&reopened).await,
            cleaned_up_to,
            false,
        );
        // Appends continue after the end; a second round cleans them too.
        let more = append_all(&reopened, &batches[..20], crate::now_ms()).await;
        let all: Vec<Seen> = appended.iter().chain(&more).cloned().collect();
        let outcome = reopened
            .compact(crate::now_ms(), &CompactionOptions::default())
            .await
            .unwrap()
            .unwrap();
        assert!(
            outcome.segments_written < outcome.segments_cleaned,
            "small segments are merged"
        );
        check_compacted(
            &all,
            &read_records(&reopened).await,
            outcome.cleaned_up_to,
            false,
        );
        reopened.close().await.unwrap();
    });
}

#[test]
fn tombstones_go_after_delete_retention_even_without_new_writes() {
    run(async {
        let dir = temp_dir();
        let config = LogConfig {
            delete_retention_ms: 60_000,
            ..small_segments()
        };
        let log = PartitionLog::open(dir.path().join("p"), config)
            .await
            .unwrap();
        let now = crate::now_ms();
        let mut batches: Vec<Vec<Update>> = (0..30u32)
            .map(|batch| {
                (0..5)
                    .map(|n| ((n * 3) as u8, Some(batch * 5 + n)))
                    .collect()
            })
            .collect();
        batches.push(vec![(0, None), (3, None)]);
        batches.extend((0..20u32).map(|batch| vec![(6, Some(batch)), (9, Some(batch))]));
        let appended = append_all(&log, &batches, now).await;
        let first = log
            .compact(now, &CompactionOptions::default())
            .await
            .unwrap()
            .unwrap();
        let seen = read_records(&log).await;
        check_compacted(&appended, &seen, first.cleaned_up_to, false);
        assert!(
            seen.iter().any(|record| record.value.is_none()),
            "tombstones kept for now"
        );
        // Not due before the deadline, due after it although nothing new was written.
        assert_eq!(
            log.compact(now + 1_000, &CompactionOptions::default())
                .await
                .unwrap(),
            None
        );
        let later = now + 60_001;
        let second = log
            .compact(later, &CompactionOptions::default())
            .await
            .unwrap()
            .unwrap();
        assert!(second.records_removed >= 2);
        let seen = read_records(&log).await;
        check_compacted(&appended, &seen, first.cleaned_up_to, true);
        assert!(seen.iter().all(|record| record.value.is_some()));
        assert_eq!(
            log.compact(later + 1, &CompactionOptions::default())
                .await
                .unwrap(),
            None
        );
        log.close().await.unwrap();
    });
}

#[test]
fn dirty_ratio_and_compaction_lag_decide_when_a_pass_runs() {
    run(async {
        let dir = temp_dir();
        let config = LogConfig {
            min_cleanable_dirty_ratio: 0.9,
            min_compaction_lag_ms: 10_000,
            ..small_segments()
        };
        let log = PartitionLog::open(dir.path().join("p"), config)
            .await
            .unwrap();
        let now = crate::now_ms();
        let batches: Vec<Vec<Update>> = (0..40u32)
            .map(|batch| vec![((batch % 4) as u8, Some(batch)); 4])
            .collect();
        append_all(&log, &batches, now).await;
        let options = CompactionOptions::default();
        assert_eq!(
            log.compact(now, &options).await.unwrap(),
            None,
            "younger than the lag"
        );
        let outcome = log.compact(now + 10_000, &options).await.unwrap().unwrap();
        assert!(outcome.records_removed > 0);
        // A few new dirty segments against a larger clean part: below a 0.9 ratio.
        append_all(&log, &batches[..8], now).await;
        assert_eq!(log.compact(now + 10_000, &options).await.unwrap(), None);
        // max.compaction.lag.ms forces it.
        log.set_config(LogConfig {
            max_compaction_lag_ms: 20_000,
            ..config
        })
        .unwrap();
        assert!(log.compact(now + 20_001, &options).await.unwrap().is_some());
        log.close().await.unwrap();
    });
}

#[test]
fn a_small_map_cleans_in_several_passes() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), small_segments())
            .await
            .unwrap();
        let batches: Vec<Vec<Update>> = (0..60u32)
            .map(|batch| {
                (0..5)
                    .map(|n| ((batch * 5 + n) as u8 % 200, Some(batch)))
                    .collect()
            })
            .collect();
        let appended = append_all(&log, &batches, crate::now_ms()).await;
        let options = CompactionOptions {
            map_bytes_max: 1,
            io_bytes_per_second: None,
        };
        let mut passes = 0;
        let mut cleaned_up_to = Offset(0);
        while let Some(outcome) = log.compact(crate::now_ms(), &options).await.unwrap() {
            assert!(
                outcome.cleaned_up_to > cleaned_up_to,
                "every pass moves forwards"
            );
            cleaned_up_to = outcome.cleaned_up_to;
            check_compacted(&appended, &read_records(&log).await, cleaned_up_to, false);
            passes += 1;
        }
        assert!(passes > 2, "one segment per pass: {passes}");
        log.close().await.unwrap();
    });
}

#[test]
fn io_throttle_slows_a_pass_down() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), small_segments())
            .await
            .unwrap();
        let batches: Vec<Vec<Update>> = (0..30u32).map(|batch| vec![(1, Some(batch)); 3]).collect();
        append_all(&log, &batches, crate::now_ms()).await;
        let bytes: u64 = {
            let state = log.shared.state.borrow();
            let closed = state.segments.len() - 1;
            state.segments[..closed]
                .iter()
                .map(|segment| segment.size_bytes)
                .sum()
        };
        let options = CompactionOptions {
            map_bytes_max: usize::MAX,
            io_bytes_per_second: Some(bytes * 4),
        };
        let started = Instant::now();
        log.compact(crate::now_ms(), &options)
            .await
            .unwrap()
            .unwrap();
        // Reading the closed segments twice (map, rewrite) at 4x their size per second: 0.5 s.
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
        log.close().await.unwrap();
    });
}

#[test]
fn appends_without_a_key_are_refused_on_compacted_logs() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), small_segments())
            .await
            .unwrap();
        let keyless = crate::testing::encode_batch(&crate::testing::BatchSpec::records(2, 10));
        assert!(matches!(
            log.append(&keyless, 0),
            Err(StorageError::Batch(BatchError::InvalidRecords { records, .. })) if records == [0, 1]
        ));
        assert_eq!(log.log_end_offset(), Offset(0));
        log.set_config(LogConfig {
            compact: false,
            ..small_segments()
        })
        .unwrap();
        assert!(log.append(&keyless, 0).is_ok());
        log.close().await.unwrap();
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in names_with_suffix(from, "") {
        std::fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
}

/// The crash points of the swap, replayed on a copy of the log before compaction with the
/// files a compacted copy produced: the reopened log holds either the old or the new records,
/// never fewer, and no temporary file remains.
#[test]
fn a_crash_at_any_step_of_the_swap_recovers_a_whole_log() {
    run(async {
        let dir = temp_dir();
        let original = dir.path().join("original");
        let config = LogConfig {
            segment_bytes: 1_000_000,
            ..small_segments()
        };
        let log = PartitionLog::open(original.clone(), small_segments())
            .await
            .unwrap();
        let batches: Vec<Vec<Update>> = (0..40u32)
            .map(|batch| (0..4).map(|n| ((n % 3) as u8, Some(batch))).collect())
            .collect();
        let appended = append_all(&log, &batches, crate::now_ms()).await;
        let before = read_records(&log).await;
        log.close().await.unwrap();
        // Compact a copy, with one big group, to get the new segment's bytes.
        let compacted = dir.path().join("compacted");
        copy_dir(&original, &compacted);
        let log = PartitionLog::open(compacted.clone(), config).await.unwrap();
        let old_bases: Vec<Offset> = {
            let state = log.shared.state.borrow();
            state.segments[..state.segments.len() - 1]
                .iter()
                .map(|s| s.base_offset)
                .collect()
        };
        let outcome = log
            .compact(crate::now_ms(), &CompactionOptions::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome.segments_written, 1);
        let after = read_records(&log).await;
        log.close().await.unwrap();
        check_compacted(&appended, &after, outcome.cleaned_up_to, false);
        let (base, end) = (old_bases[0], outcome.cleaned_up_to);
        let new_log = std::fs::read(segment::log_file_path(&compacted, base)).unwrap();
        // Step names: what was on disk when the broker died.
        for step in 0..4 {
            let replay = dir.path().join(format!("step-{step}"));
            copy_dir(&original, &replay);
            let cleaned = temporary_path(&replay, base, end, CLEANED_SUFFIX);
            let swap = temporary_path(&replay, base, end, SWAP_SUFFIX);
            match step {
                0 => std::fs::write(&cleaned, &new_log[..new_log.len() / 2]).unwrap(),
                1 => std::fs::write(&swap, &new_log).unwrap(),
                2 => {
                    std::fs::write(&swap, &new_log).unwrap();
                    let first = segment::log_file_path(&replay, base);
                    std::fs::rename(&first, retention::deleted_path(&first)).unwrap();
                }
                _ => {
                    std::fs::write(&swap, &new_log).unwrap();
                    for &old in &old_bases {
                        rename_for_deletion(&replay, old).unwrap();
                    }
                }
            }
            let log = PartitionLog::open(replay.clone(), config).await.unwrap();
            let seen = read_records(&log).await;
            if step == 0 {
                assert_eq!(seen, before, "an uncommitted pass changes nothing");
            } else {
                assert_eq!(seen, after, "a committed swap completes (step {step})");
            }
            log.close().await.unwrap();
            let leftovers: Vec<String> = names_with_suffix(&replay, "")
                .into_iter()
                .filter(|name| name.ends_with(CLEANED_SUFFIX) || name.ends_with(SWAP_SUFFIX))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random histories over few keys, with tombstones, in batches of every codec, compacted
    /// between rounds of appends: the log always equals the model.
    #[test]
    fn compaction_matches_a_model(
        rounds in prop::collection::vec(
            prop::collection::vec(
                prop::collection::vec((0u8..12, prop::option::weighted(0.85, 0u32..1000)), 1..8),
                1..25,
            ),
            1..4,
        ),
    ) {
        run(async move {
            let dir = temp_dir();
            let log = PartitionLog::open(dir.path().join("p"), small_segments()).await.unwrap();
            let mut appended = Vec::new();
            let mut cleaned_up_to = Offset(0);
            for round in &rounds {
                appended.extend(append_all(&log, round, crate::now_ms()).await);
                if let Some(outcome) =
                    log.compact(crate::now_ms(), &CompactionOptions::default()).await.unwrap()
                {
                    cleaned_up_to = outcome.cleaned_up_to;
                }
                check_compacted(&appended, &read_records(&log).await, cleaned_up_to, false);
            }
            log.close().await.unwrap();
        });
    }
}

/// A keyed transactional batch of `producer_id` (epoch 0, first sequence `sequence`).
fn transactional_batch(updates: &[Update], producer_id: i64, sequence: i32) -> Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = updates
        .iter()
        .enumerate()
        .map(|(number, (key, value))| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: number as i64,
            sequence: sequence + number as i32,
            timestamp: crate::now_ms(),
            key: Some(Bytes::from(format!("key-{key}"))),
            value: value.map(|value| Bytes::from(format!("value-{value:08}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buffer = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buffer, &records, &options).unwrap();
    buffer.freeze()
}

/// (offset, key, value) of every data record, and the offsets of the markers, in the log.
async fn contents(log: &PartitionLog) -> (Vec<(i64, String)>, Vec<i64>) {
    let mut records = Vec::new();
    let mut markers = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.durable_end_offset() {
        let bytes = log.read(next, 64 * 1024, Offset::MAX).await.unwrap();
        for (info, batch) in split_batches(&bytes) {
            if info.is_control() {
                markers.push(info.base_offset);
            } else {
                let mut buffer = Bytes::from(batch);
                for record in RecordBatchDecoder::decode(&mut buffer).unwrap().records {
                    let text = |bytes: Option<Bytes>| {
                        String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
                    };
                    records.push((
                        record.offset,
                        format!("{}={}", text(record.key), text(record.value)),
                    ));
                }
            }
            next = Offset(info.last_offset() + 1);
        }
    }
    (records, markers)
}

#[test]
fn transactions_are_compacted_as_kafka_compacts_them() {
    const COMMIT: crate::txn::TxnMarker = crate::txn::TxnMarker {
        commit: true,
        coordinator_epoch: 0,
    };
    const ABORT: crate::txn::TxnMarker = crate::txn::TxnMarker {
        commit: false,
        coordinator_epoch: 0,
    };
    run(async {
        let dir = temp_dir();
        let config = LogConfig {
            delete_retention_ms: 1_000,
            ..small_segments()
        };
        let log = PartitionLog::open(dir.path().join("t-0"), config)
            .await
            .unwrap();
        let now = crate::now_ms();
        // Producer 10 commits key-1=1 and key-2=2; producer 11 aborts key-1=100 and
        // key-3=300; then key-2 is written again outside any transaction.
        log.append(
            &transactional_batch(&[(1, Some(1)), (2, Some(2))], 10, 0),
            0,
        )
        .unwrap(); // 0-1
        log.append(
            &transactional_batch(&[(1, Some(100)), (3, Some(300))], 11, 0),
            0,
        )
        .unwrap(); // 2-3
        log.append_marker(10, 0, COMMIT, 0).unwrap(); // 4
        log.append_marker(11, 0, ABORT, 0).unwrap(); // 5
        append_all(&log, &[vec![(2, Some(3))]], now).await; // 6
                                                            // Filler that rolls the segments, so that all of the above may be cleaned.
        let filler: Vec<Vec<Update>> = (0..40).map(|n| vec![(50 + n as u8 % 5, Some(n))]).collect();
        append_all(&log, &filler, now).await;
        assert_eq!(log.aborted_transaction_count(), 1);

        log.compact(now + 10, &CompactionOptions::default())
            .await
            .unwrap()
            .expect("a pass is due");
        let (records, markers) = contents(&log).await;
        let early: Vec<&(i64, String)> = records.iter().filter(|(offset, _)| *offset < 7).collect();
        // The committed key-1 stays: the aborted write never supersedes it. The committed
        // key-2 is superseded; the aborted batch is gone; both markers stay this pass (their
        // transactions had batches in it), with the abort's index entry.
        assert_eq!(
            early,
            vec![
                &(0, "key-1=value-00000001".to_string()),
                &(6, "key-2=value-00000003".to_string())
            ]
        );
        assert_eq!(&markers[..2], &[4, 5]);
        assert_eq!(log.aborted_transaction_count(), 1);

        // Past delete.retention.ms: the abort marker, whose batches are gone, goes with its
        // index entry; the commit marker stays while key-1 of its transaction does.
        log.compact(now + 5_000, &CompactionOptions::default())
            .await
            .unwrap()
            .expect("a pass is due for the markers");
        let (records, markers) = contents(&log).await;
        assert!(records.contains(&(0, "key-1=value-00000001".to_string())));
        assert_eq!(
            markers
                .iter()
                .filter(|&&offset| offset < 7)
                .collect::<Vec<_>>(),
            vec![&4]
        );
        assert_eq!(log.aborted_transaction_count(), 0);

        // An open transaction bounds every later pass: nothing from its first offset on is
        // cleaned until it is decided.
        let open = log
            .append(&transactional_batch(&[(1, Some(7))], 12, 0), 0)
            .unwrap()
            .base_offset;
        let more: Vec<Vec<Update>> = (0..40).map(|n| vec![(1, Some(1_000 + n))]).collect();
        append_all(&log, &more, now).await;
        if let Some(outcome) = log
            .compact(now + 6_000, &CompactionOptions::default())
            .await
            .unwrap()
        {
            assert!(
                outcome.cleaned_up_to <= open,
                "{outcome:?} past the open transaction at {open}"
            );
        }
        let (records, _) = contents(&log).await;
        assert!(
            records.contains(&(0, "key-1=value-00000001".to_string())),
            "key-1 is rewritten only past the open transaction"
        );
        assert!(records.iter().any(|(offset, _)| *offset == open.0));
        log.close().await.unwrap();
    });
}
