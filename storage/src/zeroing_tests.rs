//! Zeroes ahead of the data: they are written for busy segments only, never land on data
//! (a data write that reaches a piece in flight waits for it), and never outlive the segment's
//! trim at a roll or a close.

use crate::seam::{Fault, FaultPlan};
use crate::segment::{align_up, log_file_path};
use crate::testing::{encode_batch, read_all, run, same_batch, temp_dir, until, BatchSpec};
use crate::{LogConfig, Offset, PartitionLog};
use std::rc::Rc;
use std::time::Duration;

/// A lead of 64 KiB: zeroing starts once a segment holds 32 KiB, in 4 KiB pieces.
const LEAD: u64 = 64 * 1024;

fn config() -> LogConfig {
    LogConfig {
        zero_ahead_bytes: LEAD,
        ..LogConfig::default()
    }
}

/// A log in `dir` with a fault plan that injects nothing, zero writes held if `held`.
async fn log_with_plan(
    dir: &std::path::Path,
    config: LogConfig,
    held: bool,
) -> (PartitionLog, Rc<FaultPlan>) {
    let log = PartitionLog::open(dir.join("p"), config).await.unwrap();
    let plan = Rc::new(FaultPlan::new(Fault::SyncError, u64::MAX));
    plan.hold_zeroes(held);
    log.shared.faults.replace(Some(plan.clone()));
    (log, plan)
}

/// Every batch in the reopened log, compared with what was appended.
async fn reopened_holds(dir: &std::path::Path, config: LogConfig, sent: &[Vec<u8>]) {
    let reopened = PartitionLog::open(dir.join("p"), config).await.unwrap();
    let stored = read_all(&reopened, 1 << 20).await;
    assert_eq!(stored.len(), sent.len(), "batches after reopening");
    for ((_, stored), sent) in stored.iter().zip(sent) {
        assert!(same_batch(stored, sent), "a batch changed on disk");
    }
    reopened.close().await.unwrap();
}

/// Appends a 40 KB batch filled with `fill` (past half the lead) and waits until it is durable
/// and the zero piece after it is in flight, held; returns the batch and the piece.
async fn batch_then_held_piece(log: &PartitionLog, fill: u8) -> (Vec<u8>, (u64, u64)) {
    let batch = encode_batch(&BatchSpec::records(1, 40_000).fill(fill));
    let appended = log.append(&batch, 0).unwrap();
    log.wait_durable(appended.last_offset).await.unwrap();
    until("a zero piece is in flight", || {
        log.shared.state.borrow().zeroing.in_flight().is_some()
    })
    .await;
    let piece = log.shared.state.borrow().zeroing.in_flight().unwrap();
    (batch, piece)
}

fn file_size(dir: &std::path::Path, base: Offset) -> u64 {
    std::fs::metadata(log_file_path(&dir.join("p"), base))
        .unwrap()
        .len()
}

/// The rule: a data write whose blocks reach into the zero piece in flight is submitted only
/// once that piece completed. Without the wait, the held piece lands after the data and
/// zeroes the second batch, which the reopened log then lacks.
#[test]
fn a_data_write_that_reaches_a_zero_piece_in_flight_waits_for_it() {
    run(async {
        let dir = temp_dir();
        let (log, plan) = log_with_plan(dir.path(), config(), true).await;
        let (first, piece) = batch_then_held_piece(&log, 1).await;
        let end_of_first = log.shared.state.borrow().segments[0].size_bytes;
        assert_eq!(
            piece.0,
            align_up(end_of_first),
            "zeroes start past the data"
        );

        let second = encode_batch(&BatchSpec::records(1, 40_000).fill(2));
        let appended = log.append(&second, 0).unwrap();
        glommio::timer::sleep(Duration::from_millis(30)).await;
        assert!(
            log.durable_end_offset() <= appended.base_offset,
            "the second batch was written while the zeroes under it were in flight"
        );
        plan.hold_zeroes(false);
        log.wait_durable(appended.last_offset).await.unwrap();
        until("the zeroing ends", || {
            !log.shared.state.borrow().zeroing.running()
        })
        .await;
        assert!(plan.zero_writes() >= 1);
        log.close().await.unwrap();
        reopened_holds(dir.path(), config(), &[first, second]).await;
    });
}

/// A busy segment is zeroed ahead as it grows, its data stays intact, and a roll trims the
/// sealed segment to its logical size (no zeroes left past it); a quiet one is never zeroed.
#[test]
fn a_busy_segment_is_zeroed_ahead_and_trimmed_at_its_roll() {
    run(async {
        let dir = temp_dir();
        let config = LogConfig {
            segment_bytes: 600_000,
            ..config()
        };
        let (log, plan) = log_with_plan(dir.path(), config, false).await;
        let quiet = encode_batch(&BatchSpec::records(1, 1_000).fill(9));
        let appended = log.append(&quiet, 0).unwrap();
        log.wait_durable(appended.last_offset).await.unwrap();
        assert_eq!(plan.zero_writes(), 0, "a quiet segment was zeroed");
        assert!(!log.shared.state.borrow().zeroing.running());

        let mut sent = vec![quiet];
        for number in 0..40u8 {
            let batch = encode_batch(&BatchSpec::records(2, 10_000).fill(number));
            let appended = log.append(&batch, 0).unwrap();
            sent.push(batch);
            if number % 3 == 0 {
                log.wait_durable(appended.last_offset).await.unwrap();
            }
        }
        log.wait_durable(Offset(log.log_end_offset().0 - 1))
            .await
            .unwrap();
        assert!(
            plan.zero_writes() >= 4,
            "zero writes: {}",
            plan.zero_writes()
        );
        assert!(log.segment_count() >= 2, "the log rolled");
        let sealed: Vec<(Offset, u64)> = {
            let state = log.shared.state.borrow();
            let (_, sealed) = state.segments.split_last().unwrap();
            sealed
                .iter()
                .map(|segment| (segment.base_offset, segment.size_bytes))
                .collect()
        };
        for (base, size) in sealed {
            assert_eq!(
                file_size(dir.path(), base),
                size,
                "a sealed segment kept zeroes"
            );
        }
        log.close().await.unwrap();
        let active = *names_of_logs(dir.path()).last().unwrap();
        let state_size = {
            let reopened = PartitionLog::open(dir.path().join("p"), config)
                .await
                .unwrap();
            let size = reopened
                .shared
                .state
                .borrow()
                .segments
                .last()
                .unwrap()
                .size_bytes;
            reopened.close().await.unwrap();
            size
        };
        assert_eq!(
            file_size(dir.path(), active),
            state_size,
            "the closed active segment kept zeroes"
        );
        reopened_holds(dir.path(), config, &sent).await;
    });
}

/// A close while a zero piece is in flight waits for it before trimming the file: a piece
/// landing after the trim would grow the file again.
#[test]
fn a_close_waits_for_the_zero_piece_in_flight() {
    run(async {
        let dir = temp_dir();
        let (log, plan) = log_with_plan(dir.path(), config(), true).await;
        let (batch, _) = batch_then_held_piece(&log, 3).await;
        let logical_size = log.shared.state.borrow().segments[0].size_bytes;
        let closing = glommio::spawn_local({
            let log = log.clone();
            async move { log.close().await }
        });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        plan.hold_zeroes(false);
        closing.await.unwrap();
        assert!(!log.shared.state.borrow().zeroing.running());
        // Let a stray piece (there must be none) land before looking at the file.
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            file_size(dir.path(), Offset(0)),
            logical_size,
            "the file holds zeroes past its data"
        );
        reopened_holds(dir.path(), config(), &[batch]).await;
    });
}

fn names_of_logs(dir: &std::path::Path) -> Vec<Offset> {
    crate::testing::names_with_suffix(&dir.join("p"), ".log")
        .iter()
        .map(|name| Offset(name.trim_end_matches(".log").parse().unwrap()))
        .collect()
}

/// A truncation (a follower cutting its log back to its leader's) waits for the zero piece
/// in flight before it cuts the files: a piece landing afterwards could zero the data
/// appended after the cut.
#[test]
fn a_truncation_waits_for_the_zero_piece_in_flight() {
    run(async {
        let dir = temp_dir();
        let (log, plan) = log_with_plan(dir.path(), config(), true).await;
        batch_then_held_piece(&log, 4).await;
        let truncated = Rc::new(std::cell::Cell::new(false));
        let truncating = glommio::spawn_local({
            let (log, truncated) = (log.clone(), truncated.clone());
            async move {
                let outcome = log.truncate_to(Offset(0)).await;
                truncated.set(true);
                outcome
            }
        });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert!(
            !truncated.get(),
            "the truncation went on with a zero piece in flight"
        );
        plan.hold_zeroes(false);
        truncating.await.unwrap();
        assert!(!log.shared.state.borrow().zeroing.running());
        let after = encode_batch(&BatchSpec::records(1, 60_000).fill(5));
        let appended = log.append(&after, 0).unwrap();
        log.wait_durable(appended.last_offset).await.unwrap();
        log.close().await.unwrap();
        reopened_holds(dir.path(), config(), &[after]).await;
    });
}
