//! Tests of the timestamp look-ups: against a brute-force scan of what was appended, across
//! segments, after DeleteRecords, after reopening (indexes rebuilt or reloaded), and for
//! LogAppendTime logs.

use crate::segment::{log_file_path, time_index_file_path};
use crate::testing::{encode_batch, run, temp_dir, BatchSpec};
use crate::time_index::{TimeIndex, TIME_INDEX_ENTRY_BYTES};
use crate::{LogConfig, Offset, PartitionLog};
use proptest::prelude::*;
use std::path::Path;

/// Every record appended: (offset, timestamp).
type Records = Vec<(i64, i64)>;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_500,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

/// Appends one batch per entry of `batches` (each a list of record timestamps); returns the
/// records with their offsets.
async fn append_all(log: &PartitionLog, batches: &[Vec<i64>]) -> Records {
    let mut records = Vec::new();
    let mut last = Offset(-1);
    for timestamps in batches {
        let appended = log
            .append(&encode_batch(&BatchSpec::timestamped(timestamps, 40)), 0)
            .unwrap();
        for (delta, timestamp) in timestamps.iter().enumerate() {
            records.push((appended.base_offset.0 + delta as i64, *timestamp));
        }
        last = appended.last_offset;
    }
    log.wait_durable(last).await.unwrap();
    records
}

fn brute_force_at_or_after(records: &Records, log_start: i64, target: i64) -> Option<(i64, i64)> {
    records
        .iter()
        .find(|(offset, timestamp)| *offset >= log_start && *timestamp >= target)
        .copied()
}

fn brute_force_max(records: &Records, log_start: i64) -> Option<(i64, i64)> {
    let mut best: Option<(i64, i64)> = None;
    for &(offset, timestamp) in records.iter().filter(|(offset, _)| *offset >= log_start) {
        if timestamp >= 0 && best.is_none_or(|(_, best_timestamp)| timestamp > best_timestamp) {
            best = Some((offset, timestamp));
        }
    }
    best
}

/// Checks every interesting target against the brute force.
async fn check_lookups(log: &PartitionLog, records: &Records) {
    let log_start = log.log_start_offset().0;
    let mut targets: Vec<i64> = records.iter().map(|(_, timestamp)| *timestamp).collect();
    targets.extend(records.iter().map(|(_, timestamp)| timestamp + 1));
    targets.extend([-1, 0, i64::MAX]);
    targets.sort_unstable();
    targets.dedup();
    for target in targets.into_iter().filter(|target| *target >= 0) {
        let found = log
            .offset_for_timestamp(target)
            .await
            .unwrap()
            .map(|(offset, timestamp)| (offset.0, timestamp));
        assert_eq!(
            found,
            brute_force_at_or_after(records, log_start, target),
            "target {target}, log start {log_start}"
        );
    }
    let max = log
        .max_timestamp()
        .await
        .unwrap()
        .map(|(offset, timestamp)| (offset.0, timestamp));
    assert_eq!(max, brute_force_max(records, log_start), "max timestamp");
}

fn segment_bases(dir: &Path) -> Vec<Offset> {
    let mut bases: Vec<Offset> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            crate::segment::parse_log_file_name(entry.unwrap().file_name().to_str().unwrap())
        })
        .collect();
    bases.sort();
    bases
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

    /// Random timestamps (out of order within and across batches), several segments, an
    /// optional DeleteRecords: every lookup equals the brute-force scan, before and after a
    /// reopen, and after the time indexes are deleted and rebuilt.
    #[test]
    fn lookups_equal_a_brute_force_scan(
        batches in proptest::collection::vec(proptest::collection::vec(0i64..2_000, 1..5), 1..40),
        delete_fraction in proptest::option::of(0.0f64..1.0),
    ) {
        run(async move {
            let dir = temp_dir();
            let path = dir.path().join("p");
            let log = PartitionLog::open(path.clone(), config()).await.unwrap();
            let records = append_all(&log, &batches).await;
            if let Some(fraction) = delete_fraction {
                let offset = (records.len() as f64 * fraction) as i64;
                log.delete_records_before(Offset(offset)).await.unwrap();
            }
            check_lookups(&log, &records).await;
            log.close().await.unwrap();

            let reopened = PartitionLog::open(path.clone(), config()).await.unwrap();
            check_lookups(&reopened, &records).await;
            reopened.close().await.unwrap();

            for base in segment_bases(&path) {
                std::fs::remove_file(time_index_file_path(&path, base)).unwrap();
            }
            let rebuilt = PartitionLog::open(path.clone(), config()).await.unwrap();
            check_lookups(&rebuilt, &records).await;
            rebuilt.close().await.unwrap();
        });
    }
}

#[test]
fn time_index_files_are_kafka_format_and_sealed_ones_end_at_the_max() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let log = PartitionLog::open(path.clone(), config()).await.unwrap();
        // Increasing timestamps with a dip: entries only where the max grew.
        let batches: Vec<Vec<i64>> = (0..60)
            .map(|number| vec![1_000 + number * 10 - if number % 7 == 3 { 500 } else { 0 }])
            .collect();
        let records = append_all(&log, &batches).await;
        log.close().await.unwrap();
        let bases = segment_bases(&path);
        assert!(bases.len() > 3, "small segments roll");
        let mut sealed_entries = 0;
        for window in bases.windows(2) {
            let (base, next) = (window[0], window[1]);
            let bytes = std::fs::read(time_index_file_path(&path, base)).unwrap();
            assert_eq!(bytes.len() % TIME_INDEX_ENTRY_BYTES, 0);
            let index = TimeIndex::decode(&bytes, (next.0 - base.0) as u64);
            assert_eq!(
                index.len() * TIME_INDEX_ENTRY_BYTES,
                bytes.len(),
                "every entry valid"
            );
            let last = index.last().expect("a sealed segment ends with its max");
            let segment_max = records
                .iter()
                .filter(|(offset, _)| (base.0..next.0).contains(offset))
                .map(|(_, timestamp)| *timestamp)
                .max()
                .unwrap();
            assert_eq!(last.timestamp, segment_max);
            assert_eq!(
                records[(base.0 + last.relative_offset as i64) as usize].1,
                segment_max,
                "the entry names the batch that reached the max"
            );
            sealed_entries += index.len();
        }
        assert!(sealed_entries > bases.len(), "cadence entries too");
        assert!(log_file_path(&path, bases[0]).exists());
        let reopened = PartitionLog::open(path, config()).await.unwrap();
        check_lookups(&reopened, &records).await;
        reopened.close().await.unwrap();
    });
}

#[test]
fn log_append_time_lookups_use_the_stamped_time() {
    run(async {
        let dir = temp_dir();
        let stamped = LogConfig {
            log_append_time: true,
            ..config()
        };
        let log = PartitionLog::open(dir.path().join("p"), stamped)
            .await
            .unwrap();
        let before = crate::now_ms();
        // Create times far in the past: ignored, every record carries the append time.
        let mut last = Offset(0);
        for _ in 0..5 {
            last = log
                .append(&encode_batch(&BatchSpec::timestamped(&[5, 3, 9], 30)), 0)
                .unwrap()
                .last_offset;
        }
        log.wait_durable(last).await.unwrap();
        let (offset, timestamp) = log.offset_for_timestamp(before).await.unwrap().unwrap();
        assert_eq!(offset, Offset(0));
        assert!(timestamp >= before);
        assert_eq!(
            log.offset_for_timestamp(6).await.unwrap().unwrap().0,
            Offset(0)
        );
        assert_eq!(log.offset_for_timestamp(i64::MAX).await.unwrap(), None);
        let (max_offset, max_timestamp) = log.max_timestamp().await.unwrap().unwrap();
        assert!(max_timestamp >= timestamp && max_offset.0 % 3 == 0);
        log.close().await.unwrap();
    });
}

#[test]
fn segments_roll_by_segment_ms_on_record_time() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let config = LogConfig {
            segment_ms: 1_000,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), config).await.unwrap();
        // 0, 600, 1200 (1200 - 0 > 1000: roll), 1800, 2400 (2400 - 1200 > 1000: roll).
        let batches: Vec<Vec<i64>> = (0..5).map(|number| vec![number * 600]).collect();
        let records = append_all(&log, &batches).await;
        assert_eq!(segment_bases(&path), [Offset(0), Offset(2), Offset(4)]);
        check_lookups(&log, &records).await;
        log.close().await.unwrap();
    });
}
