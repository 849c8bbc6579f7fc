//! Fault injection through the flusher's seam: whatever the disk does to a write or a sync,
//! nothing is acknowledged after the fault, appends are refused from then on, what was
//! acknowledged stays readable, and recovery keeps a prefix of the appended batches that holds
//! every acknowledged one.

use super::*;
use crate::error::StorageError;
use crate::testing::{encode_batch, read_all, run, same_batch, temp_dir, until, BatchSpec};
use crate::{LogConfig, Offset, PartitionLog};
use proptest::prelude::*;
use std::cell::RefCell;

fn fault_from(kind: u8) -> Fault {
    match kind % 5 {
        0 => Fault::WriteError(libc::ENOSPC),
        1 => Fault::WriteError(libc::EIO),
        2 => Fault::ShortWrite,
        3 => Fault::TornWrite,
        _ => Fault::SyncError,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn no_acknowledgement_after_a_fault_and_recovery_keeps_every_acknowledged_batch(
        sizes in proptest::collection::vec((1i32..4, 0usize..60_000), 2..24),
        kind in 0u8..5,
        at in 0u64..10,
        pause_every in 1usize..5,
    ) {
        let fault = fault_from(kind);
        let batches: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(number, (records, value_bytes))| {
                encode_batch(&BatchSpec::records(*records, *value_bytes).fill(number as u8))
            })
            .collect();
        run(async move {
            let dir = temp_dir();
            let path = dir.path().join("p");
            let config = LogConfig {
                segment_bytes: 200_000,
                max_message_bytes: 1 << 20,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(path.clone(), config).await.unwrap();
            let plan = Rc::new(FaultPlan::new(fault, at));
            log.shared.faults.replace(Some(plan.clone()));
            let outcomes: Rc<RefCell<Vec<(usize, bool)>>> = Rc::default();
            let mut waits = Vec::new();
            let mut refused = 0;
            for (number, batch) in batches.iter().enumerate() {
                match log.append(batch, 0) {
                    Ok(appended) => {
                        let (waiter, outcomes) = (log.clone(), outcomes.clone());
                        waits.push(glommio::spawn_local(async move {
                            let durable = waiter.wait_durable(appended.last_offset).await;
                            outcomes.borrow_mut().push((number, durable.is_ok()));
                        }));
                    }
                    Err(StorageError::Io(_)) => refused += 1,
                    Err(other) => panic!("unexpected append error {other:?}"),
                }
                if number % pause_every == 0 {
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            for wait in waits {
                wait.await;
            }
            let mut outcomes = outcomes.borrow().clone();
            outcomes.sort();
            let acknowledged = outcomes.iter().take_while(|(_, durable)| *durable).count();
            assert!(
                outcomes[acknowledged..].iter().all(|(_, durable)| !durable),
                "nothing is acknowledged after the first failure: {outcomes:?}"
            );
            if plan.fired() {
                assert!(acknowledged < batches.len(), "{fault:?} fired, yet all acknowledged");
                assert!(matches!(
                    log.append(&batches[0], 0),
                    Err(StorageError::Io(_))
                ), "a failed log refuses appends");
            } else {
                assert_eq!((acknowledged, refused), (batches.len(), 0));
            }
            // Reads keep working for what was acknowledged.
            let readable = read_all(&log, 1 << 20).await;
            assert_eq!(readable.len(), acknowledged);
            for ((_, stored), sent) in readable.iter().zip(&batches) {
                assert!(same_batch(stored, sent));
            }
            let closed = log.close().await;
            assert_eq!(closed.is_err(), plan.fired());

            let reopened = PartitionLog::open(path, config).await.unwrap();
            let recovered = read_all(&reopened, 1 << 20).await;
            assert!(recovered.len() >= acknowledged, "acknowledged batches survive");
            assert!(recovered.len() <= batches.len());
            for ((_, stored), sent) in recovered.iter().zip(&batches) {
                assert!(same_batch(stored, sent), "recovery keeps a prefix of what was appended");
            }
            let recovered_end = recovered
                .last()
                .map_or(Offset(0), |(info, _)| Offset(info.last_offset() + 1));
            let next = reopened.append(&batches[0], 0).unwrap();
            assert_eq!(next.base_offset, recovered_end);
            reopened.wait_durable(next.last_offset).await.unwrap();
            reopened.close().await.unwrap();
        });
    }
}

#[test]
fn enospc_refuses_appends_but_reads_keep_working() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
            .await
            .unwrap();
        let batch = encode_batch(&BatchSpec::records(2, 100));
        let first = log.append(&batch, 0).unwrap();
        log.wait_durable(first.last_offset).await.unwrap();
        log.shared.faults.replace(Some(Rc::new(FaultPlan::new(
            Fault::WriteError(libc::ENOSPC),
            0,
        ))));
        let second = log.append(&batch, 0).unwrap();
        match log.wait_durable(second.last_offset).await {
            Err(StorageError::Io(error)) => assert!(error.to_string().contains("No space left")),
            other => panic!("expected ENOSPC, got {other:?}"),
        }
        assert!(matches!(log.append(&batch, 0), Err(StorageError::Io(_))));
        assert_eq!(read_all(&log, 1 << 20).await.len(), 1);
        assert_eq!(log.durable_end_offset(), Offset(2));
        assert!(log.close().await.is_err());
    });
}

/// A log in `dir` whose syncs are held until released, with a sync error at sync `at`
/// (`u64::MAX`: none).
async fn log_with_held_syncs(
    dir: &std::path::Path,
    config: LogConfig,
    at: u64,
) -> (PartitionLog, Rc<FaultPlan>) {
    let log = PartitionLog::open(dir.join("p"), config).await.unwrap();
    let plan = Rc::new(FaultPlan::new(Fault::SyncError, at));
    log.shared.faults.replace(Some(plan.clone()));
    plan.hold_syncs(true);
    (log, plan)
}

/// Appends `batch` twice: the first round's sync starts (and is held), then the second
/// round's write goes out during it. Returns both appends.
async fn second_written_during_first_sync(
    log: &PartitionLog,
    plan: &FaultPlan,
    batch: &[u8],
) -> (crate::Appended, crate::Appended) {
    let first = log.append(batch, 0).unwrap();
    until("the first round's sync starts", || {
        plan.syncs_started() == 1
    })
    .await;
    let writes_of_first = plan.writes_started();
    let second = log.append(batch, 0).unwrap();
    until("the second round's write, during the first sync", || {
        plan.writes_started() > writes_of_first
    })
    .await;
    (first, second)
}

/// The group commits are pipelined: while one round's `fdatasync` is in flight, what was
/// appended meanwhile is already written; and neither round is durable before its own sync
/// (nor the second before the first).
#[test]
fn the_next_round_is_written_while_the_previous_sync_is_in_flight() {
    run(async {
        let dir = temp_dir();
        let (log, plan) = log_with_held_syncs(dir.path(), LogConfig::default(), u64::MAX).await;
        let batch = encode_batch(&BatchSpec::records(2, 10_000));
        let (first, second) = second_written_during_first_sync(&log, &plan, &batch).await;
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            plan.syncs_started(),
            1,
            "the second sync waits for the first"
        );
        assert_eq!(
            log.durable_end_offset(),
            Offset(0),
            "durable before its sync"
        );

        plan.hold_syncs(false);
        log.wait_durable(second.last_offset).await.unwrap();
        assert_eq!(plan.syncs_started(), 2);
        assert_eq!(log.durable_end_offset(), Offset(second.last_offset.0 + 1));
        assert!(first.last_offset < second.last_offset);
        assert_eq!(read_all(&log, 1 << 20).await.len(), 2);
        log.close().await.unwrap();
        let reopened = PartitionLog::open(dir.path().join("p"), LogConfig::default())
            .await
            .unwrap();
        assert_eq!(read_all(&reopened, 1 << 20).await.len(), 2);
        reopened.close().await.unwrap();
    });
}

/// A failed `fdatasync` while the next round's write is under way: neither round is
/// acknowledged, and the log refuses appends from then on.
#[test]
fn a_failed_sync_acknowledges_neither_its_round_nor_the_one_written_meanwhile() {
    run(async {
        let dir = temp_dir();
        let (log, plan) = log_with_held_syncs(dir.path(), LogConfig::default(), 0).await;
        let batch = encode_batch(&BatchSpec::records(2, 10_000));
        let (first, second) = second_written_during_first_sync(&log, &plan, &batch).await;
        plan.hold_syncs(false);
        assert!(log.wait_durable(first.last_offset).await.is_err());
        assert!(log.wait_durable(second.last_offset).await.is_err());
        assert_eq!(log.durable_end_offset(), Offset(0));
        assert!(matches!(log.append(&batch, 0), Err(StorageError::Io(_))));
        assert!(log.close().await.is_err());
    });
}

/// A roll is not pipelined: its predecessor must be synced and trimmed before the new
/// segment's files exist, so its write waits for the sync in flight. (Two guards keep it
/// so, the pending roll and the roll's producer snapshot; the test fails without both.)
#[test]
fn a_segment_roll_waits_for_the_sync_in_flight() {
    run(async {
        let dir = temp_dir();
        let config = LogConfig {
            segment_bytes: 30_000,
            ..LogConfig::default()
        };
        let (log, plan) = log_with_held_syncs(dir.path(), config, u64::MAX).await;
        let batch = encode_batch(&BatchSpec::records(2, 10_000));
        log.append(&batch, 0).unwrap();
        until("the first round's sync starts", || {
            plan.syncs_started() == 1
        })
        .await;
        let writes_of_first = plan.writes_started();
        log.append(&batch, 0).unwrap();
        let rolled = log.append(&batch, 0).unwrap();
        assert!(log.shared.state.borrow().appender.rolls_pending());
        glommio::timer::sleep(std::time::Duration::from_millis(30)).await;
        assert_eq!(
            plan.writes_started(),
            writes_of_first,
            "a rolling write went out during the sync"
        );
        plan.hold_syncs(false);
        log.wait_durable(rolled.last_offset).await.unwrap();
        assert!(log.segment_count() >= 2);
        assert_eq!(read_all(&log, 1 << 20).await.len(), 3);
        log.close().await.unwrap();
    });
}
