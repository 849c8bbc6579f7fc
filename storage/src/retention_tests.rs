//! Tests of retention and DeleteRecords: which segments go, the log start offset, reads
//! around it, its persistence, and the deferred unlinking of files.

use super::*;
use crate::testing::{
    encode_batch, names_with_suffix, read_all, run, temp_dir, wait_for_unlink, BatchSpec,
};

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1_000,
        index_interval_bytes: 200,
        file_delete_delay_ms: 0,
        ..LogConfig::default()
    }
}

/// Appends `count` batches of 2 records stamped `timestamp_ms`; returns the high watermark.
async fn fill(log: &PartitionLog, count: usize, timestamp_ms: i64) -> Offset {
    let mut last = Offset(0);
    for _ in 0..count {
        let spec = BatchSpec::timestamped(&[timestamp_ms, timestamp_ms], 100);
        last = log.append(&encode_batch(&spec), 0).unwrap().last_offset;
    }
    log.wait_durable(last).await.unwrap();
    log.durable_end_offset()
}

#[test]
fn retention_bytes_deletes_the_oldest_closed_segments_only() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let config = LogConfig {
            retention_bytes: 2_500,
            ..small_segments()
        };
        let log = PartitionLog::open(path.clone(), config).await.unwrap();
        let high_watermark = fill(&log, 40, crate::now_ms()).await;
        let segments_before = names_with_suffix(&path, ".log").len();
        assert!(segments_before > 5);
        let outcome = log.enforce_retention(crate::now_ms()).unwrap();
        assert!(outcome.segments_deleted > 0);
        let kept: u64 = log
            .shared
            .state
            .borrow()
            .segments
            .iter()
            .map(|segment| segment.size_bytes)
            .sum();
        assert!(kept >= 2_500, "at least retention.bytes is kept: {kept}");
        let first_kept = log.shared.state.borrow().segments[0].size_bytes;
        assert!(kept - first_kept < 2_500, "no more than needed is kept");
        assert_eq!(outcome.log_start, log.log_start_offset());
        assert!(log.log_start_offset() > Offset(0));
        assert_eq!(
            names_with_suffix(&path, ".log").len(),
            segments_before - outcome.segments_deleted
        );
        wait_for_unlink(&path).await;
        assert!(names_with_suffix(&path, ".index").len() < segments_before);
        // Below the new start: out of range; from it on: everything, contiguous.
        assert!(matches!(
            log.read(Offset(0), 100, Offset::MAX).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        let batches = read_all(&log, 1 << 20).await;
        assert_eq!(batches[0].0.base_offset, log.log_start_offset().0);
        assert_eq!(
            Offset(batches.last().unwrap().0.last_offset() + 1),
            high_watermark
        );
        // Again: nothing more to do.
        assert_eq!(
            log.enforce_retention(crate::now_ms())
                .unwrap()
                .segments_deleted,
            0
        );
        let log_start = log.log_start_offset();
        log.close().await.unwrap();
        let reopened = PartitionLog::open(path, config).await.unwrap();
        assert_eq!(reopened.log_start_offset(), log_start);
        reopened.close().await.unwrap();
    });
}

#[test]
fn retention_ms_deletes_segments_older_than_the_limit_but_never_the_active_one() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let now = crate::now_ms();
        let config = LogConfig {
            retention_ms: 60_000,
            ..small_segments()
        };
        let log = PartitionLog::open(path.clone(), config).await.unwrap();
        fill(&log, 20, now - 3_600_000).await; // an hour old
        let old_end = log.durable_end_offset();
        fill(&log, 20, now).await;
        let outcome = log.enforce_retention(now).unwrap();
        assert!(outcome.segments_deleted > 0);
        // Every old record whose segment holds only old records is gone; the first kept
        // segment holds some recent record.
        assert!(log.log_start_offset() <= old_end);
        let first_kept_max = log.shared.state.borrow().segments[0].max_timestamp;
        assert_eq!(first_kept_max, now);

        // Everything old: all closed segments go, the active one stays.
        let later = now + 3_600_000;
        let outcome = log.enforce_retention(later).unwrap();
        assert!(outcome.segments_deleted > 0);
        assert_eq!(log.shared.state.borrow().segments.len(), 1);
        assert!(
            !read_all(&log, 1 << 20).await.is_empty(),
            "active segment kept"
        );
        // cleanup.policy without delete: nothing happens even when breached.
        fill(&log, 20, now).await;
        log.set_config(LogConfig {
            retention_delete: false,
            ..config
        })
        .unwrap();
        assert_eq!(log.enforce_retention(later).unwrap().segments_deleted, 0);
        log.close().await.unwrap();
    });
}

#[test]
fn delete_records_moves_the_start_inside_a_segment_and_persists_it() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let log = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        let high_watermark = fill(&log, 30, crate::now_ms()).await;
        let bases_before = names_with_suffix(&path, ".log");
        // Offset 25 lies inside a batch (2 records each) and past a few segments.
        let low_watermark = log.delete_records_before(Offset(25)).await.unwrap();
        assert_eq!(low_watermark, Offset(25));
        assert_eq!(log.log_start_offset(), Offset(25));
        let first_base = log.shared.state.borrow().segments[0].base_offset;
        assert!(first_base <= Offset(25) && first_base > Offset(0));
        assert!(names_with_suffix(&path, ".log").len() < bases_before.len());
        assert!(matches!(
            log.read(Offset(24), 100, Offset::MAX).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        // The batch holding 25 starts at 24: it comes back whole.
        let from_start = log.read(Offset(25), 1, Offset::MAX).await.unwrap();
        let info = crate::batch::parse_stored_batch(&from_start).unwrap();
        assert_eq!(info.base_offset, 24);
        // Never backwards; not past the high watermark.
        assert_eq!(
            log.delete_records_before(Offset(3)).await.unwrap(),
            Offset(25)
        );
        assert!(matches!(
            log.delete_records_before(high_watermark.next()).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.close().await.unwrap();

        let reopened = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        assert_eq!(reopened.log_start_offset(), Offset(25));
        assert_eq!(
            reopened
                .delete_records_before(high_watermark)
                .await
                .unwrap(),
            high_watermark
        );
        assert!(reopened
            .read(high_watermark, 100, Offset::MAX)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(reopened.log_end_offset(), high_watermark);
        let appended = reopened
            .append(&encode_batch(&BatchSpec::records(1, 10)), 0)
            .unwrap();
        assert_eq!(appended.base_offset, high_watermark);
        reopened.close().await.unwrap();
    });
}

#[test]
fn files_left_by_deletion_are_unlinked_on_open() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let config = LogConfig {
            file_delete_delay_ms: 3_600_000,
            retention_bytes: 0,
            ..small_segments()
        };
        let log = PartitionLog::open(path.clone(), config).await.unwrap();
        fill(&log, 20, 1_000).await;
        let outcome = log.enforce_retention(crate::now_ms()).unwrap();
        assert!(outcome.segments_deleted > 0);
        let deleted = names_with_suffix(&path, DELETED_SUFFIX);
        assert_eq!(deleted.len(), 3 * outcome.segments_deleted);
        log.close().await.unwrap();
        // An index whose segment is gone, as a crash between renames would leave.
        std::fs::write(path.join("00000000000000000001.index"), [0u8; 8]).unwrap();
        let reopened = PartitionLog::open(path.clone(), config).await.unwrap();
        wait_for_unlink(&path).await;
        assert!(!path.join("00000000000000000001.index").exists());
        assert_eq!(reopened.log_start_offset(), outcome.log_start);
        reopened.close().await.unwrap();
    });
}

#[test]
fn large_deleted_files_are_cut_down_in_steps_before_the_unlink() {
    let dir = temp_dir();
    let path = dir.path().join("00000000000000000000.log.deleted");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(3 * TRUNCATE_STEP_BYTES + 123).unwrap();
    drop(file);
    truncate_gradually(&path).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() <= TRUNCATE_STEP_BYTES);
    run(unlink_in_background(vec![path.clone()]));
    assert!(!path.exists());
}
