use super::*;
use crate::transactions::state::{init_producer_id, InitOutcome, InitRequest};

fn orders(partition: i32) -> Vec<(String, i32)> {
    vec![("orders".to_string(), partition)]
}

fn apply(entry: &mut Option<TxnEntry>, next: TxnMetadata) {
    match entry {
        Some(entry) => {
            entry.begin(next);
            entry.complete();
        }
        None => *entry = Some(TxnEntry::new(next)),
    }
}

/// A producer (id 7) after InitProducerId: epoch 0, Empty.
fn initialised() -> Option<TxnEntry> {
    let request = InitRequest {
        timeout_ms: 60_000,
        expected: None,
    };
    let InitOutcome::Write(first) =
        init_producer_id("t", None, request, 900_000, 1, || 7).expect("init")
    else {
        panic!("a first init writes");
    };
    let mut entry = None;
    apply(&mut entry, first);
    entry
}

/// The leader's implicit add of `partition` at `epoch`, applied.
fn add(entry: &mut Option<TxnEntry>, epoch: i16, partition: i32, now_ms: i64) {
    match add_partitions(entry.as_ref(), 7, epoch, &orders(partition), now_ms).expect("add") {
        AddOutcome::Write(next) => apply(entry, next),
        AddOutcome::AlreadyAdded => {}
    }
}

/// EndTxn v5 and, when it writes, the prepare and the completion applied; the producer id
/// and epoch the client is told.
fn end(entry: &mut Option<TxnEntry>, epoch: i16, commit: bool) -> Result<(i64, i16), TxnError> {
    match end_txn(entry.as_ref(), 7, epoch, commit, 50, || 8)? {
        EndOutcome::AlreadyDone {
            producer_id,
            producer_epoch,
        } => Ok((producer_id, producer_epoch)),
        EndOutcome::Write(prepared) => {
            let completed = prepared.completed(60);
            apply(entry, prepared);
            apply(entry, completed.clone());
            Ok((completed.producer_id, completed.producer_epoch))
        }
    }
}

fn current(entry: &Option<TxnEntry>) -> &TxnMetadata {
    &entry.as_ref().unwrap().current
}

#[test]
fn each_transaction_ends_with_an_epoch_bump_that_a_retry_finds_done() {
    let mut entry = initialised();
    // The first produce to a partition starts the transaction implicitly.
    add(&mut entry, 0, 0, 10);
    add(&mut entry, 0, 1, 11);
    let ongoing = current(&entry);
    assert_eq!(ongoing.state, TxnState::Ongoing);
    assert_eq!(ongoing.start_ms, 10, "the start is the first add's");
    assert_eq!(ongoing.partitions.len(), 2);
    assert_eq!(ongoing.client_transaction_version, TRANSACTION_VERSION_2);
    // The prepare is written with epoch 1 (the markers carry it); the client is told 1.
    let EndOutcome::Write(prepared) = end_txn(entry.as_ref(), 7, 0, true, 50, || 8).unwrap() else {
        panic!("an ongoing transaction's end writes");
    };
    assert_eq!(
        (
            prepared.state,
            prepared.producer_epoch,
            prepared.last_producer_epoch
        ),
        (TxnState::PrepareCommit, 1, 0)
    );
    assert_eq!(end(&mut entry, 0, true), Ok((7, 1)));
    assert_eq!(current(&entry).state, TxnState::CompleteCommit);
    // The client retries with its old epoch: done, the same answer.
    assert_eq!(end(&mut entry, 0, true), Ok((7, 1)));
    // ...but the same retry as an abort does not fit.
    assert_eq!(end(&mut entry, 0, false), Err(TxnError::InvalidTxnState));
    // A zombie two epochs behind is fenced, at add and at end.
    add(&mut entry, 1, 0, 70);
    assert_eq!(end(&mut entry, 1, false), Ok((7, 2)));
    assert_eq!(
        add_partitions(entry.as_ref(), 7, 0, &orders(0), 80),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(end(&mut entry, 0, true), Err(TxnError::ProducerFenced));
}

#[test]
fn an_empty_abort_bumps_and_a_commit_of_nothing_is_refused() {
    let mut entry = initialised();
    assert_eq!(end(&mut entry, 0, true), Err(TxnError::InvalidTxnState));
    assert_eq!(end(&mut entry, 0, false), Ok((7, 1)));
    assert_eq!(current(&entry).state, TxnState::CompleteAbort);
    assert!(current(&entry).partitions.is_empty());
    // A retry of it (epoch 0) is done; from Empty the retry would be fenced.
    assert_eq!(end(&mut entry, 0, false), Ok((7, 1)));
}

#[test]
fn a_transition_in_flight_answers_concurrent_transactions_before_the_producer_checks() {
    let mut entry = initialised();
    add(&mut entry, 0, 0, 10);
    let EndOutcome::Write(prepared) = end_txn(entry.as_ref(), 7, 0, true, 50, || 8).unwrap() else {
        panic!("writes");
    };
    entry.as_mut().unwrap().begin(prepared);
    // The client's next transaction at epoch 1 arrives while the prepare is being written.
    assert_eq!(
        add_partitions(entry.as_ref(), 7, 1, &orders(0), 55),
        Err(TxnError::ConcurrentTransactions)
    );
    entry.as_mut().unwrap().complete();
    // Prepared, markers under way: still CONCURRENT_TRANSACTIONS, which the leader retries.
    assert_eq!(
        add_partitions(entry.as_ref(), 7, 1, &orders(0), 56),
        Err(TxnError::ConcurrentTransactions)
    );
    assert_eq!(
        verify_partitions(entry.as_ref(), 7, 1, &orders(0)),
        Err(TxnError::ConcurrentTransactions)
    );
    // A retried EndTxn at the old epoch meanwhile is CONCURRENT_TRANSACTIONS too.
    assert_eq!(
        end_txn(entry.as_ref(), 7, 0, true, 57, || 8),
        Err(TxnError::ConcurrentTransactions)
    );
}

#[test]
fn verification_answers_per_partition_and_writes_nothing() {
    let mut entry = initialised();
    add(&mut entry, 0, 0, 10);
    assert_eq!(
        verify_partitions(
            entry.as_ref(),
            7,
            0,
            &[("orders".into(), 0), ("orders".into(), 5)]
        ),
        Ok(vec![true, false])
    );
    assert_eq!(
        verify_partitions(entry.as_ref(), 9, 0, &orders(0)),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        verify_partitions(None, 7, 0, &orders(0)),
        Err(TxnError::InvalidProducerIdMapping)
    );
}

#[test]
fn an_exhausted_epoch_moves_to_a_new_producer_id_at_completion() {
    let mut entry = initialised();
    entry.as_mut().unwrap().current.producer_epoch = i16::MAX - 1;
    add(&mut entry, i16::MAX - 1, 0, 10);
    let EndOutcome::Write(prepared) =
        end_txn(entry.as_ref(), 7, i16::MAX - 1, true, 50, || 8).unwrap()
    else {
        panic!("writes");
    };
    // The markers carry the old id at the last epoch; the completion has the new id.
    assert_eq!(
        (
            prepared.producer_id,
            prepared.producer_epoch,
            prepared.next_producer_id
        ),
        (7, i16::MAX, 8)
    );
    let completed = prepared.completed(60);
    assert_eq!(
        (
            completed.producer_id,
            completed.producer_epoch,
            completed.previous_producer_id,
            completed.next_producer_id
        ),
        (8, 0, 7, -1)
    );
    apply(&mut entry, prepared);
    apply(&mut entry, completed);
    // The client's retry with the old id and epoch is recognised, answered with the new.
    assert_eq!(
        end_txn(entry.as_ref(), 7, i16::MAX - 1, true, 70, || 9),
        Ok(EndOutcome::AlreadyDone {
            producer_id: 8,
            producer_epoch: 0
        })
    );
}

mod model {
    use super::*;
    use crate::transactions::state::{abort_timed_out, init_producer_id, InitOutcome};
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        /// A partition leader adds a partition for the producer (Produce v12).
        Add { who: Who, partition: i32 },
        /// EndTxn v5; `retry`: with the epoch before the current one.
        End { who: Who, commit: bool, retry: bool },
        /// The markers of a prepared transaction are written: it completes.
        Markers,
        /// Time passes; a transaction past its timeout is aborted.
        Tick { ms: i64 },
        /// A new instance of the producer (InitProducerId).
        Init,
    }

    #[derive(Clone, Copy, Debug)]
    enum Who {
        Current,
        Fenced,
        Stranger,
    }

    fn step() -> impl Strategy<Value = Step> {
        let who = prop_oneof![
            4 => Just(Who::Current),
            1 => Just(Who::Fenced),
            1 => Just(Who::Stranger)
        ];
        prop_oneof![
            5 => (who.clone(), 0..3i32).prop_map(|(who, partition)| Step::Add { who, partition }),
            3 => (who, any::<bool>(), prop::bool::weighted(0.2))
                .prop_map(|(who, commit, retry)| Step::End { who, commit, retry }),
            3 => Just(Step::Markers),
            1 => (1..5_000i64).prop_map(|ms| Step::Tick { ms }),
            1 => Just(Step::Init),
        ]
    }

    proptest! {
        /// Against protocol v2's promises: transitions are legal; (producer id, epoch) only
        /// moves forward; every EndTxn that writes bumps the epoch by one (or rotates the
        /// producer id at an exhausted epoch) and answers what the completion holds; a
        /// producer of an earlier epoch (a zombie of an ended transaction) or a stranger
        /// never changes anything; nothing is added while markers are due; a retried EndTxn
        /// of a completed transaction answers the current producer id and epoch; partitions
        /// are held only by an open or ending transaction; every metadata reads back from
        /// its log record.
        #[test]
        fn protocol_v2_keeps_kafkas_promises(
            start_epoch in prop_oneof![Just(0i16), Just(i16::MAX - 4)],
            steps in proptest::collection::vec(step(), 1..80),
        ) {
            let mut entry = initialised();
            entry.as_mut().unwrap().current.producer_epoch = start_epoch;
            let mut now = 100i64;
            let mut next_id = 100i64;
            let mut fenced: Option<(i64, i16)> = None;
            let mut markers_due = false;
            for step in steps {
                now += 1;
                let before = entry.as_ref().unwrap().current.clone();
                let producer = (before.producer_id, before.producer_epoch);
                let who_ids = |who: Who| match who {
                    Who::Current => producer,
                    Who::Fenced => fenced.unwrap_or((-2, 0)),
                    Who::Stranger => (9_999, 0),
                };
                let written = match step {
                    Step::Add { who, partition } => {
                        let (id, epoch) = who_ids(who);
                        let outcome = add_partitions(entry.as_ref(), id, epoch, &orders(partition), now);
                        if !matches!(who, Who::Current) || markers_due {
                            prop_assert!(outcome.is_err(), "{who:?} added (markers due: {markers_due}): {outcome:?}");
                        }
                        match outcome {
                            Ok(AddOutcome::Write(next)) => Some(next),
                            _ => None,
                        }
                    }
                    Step::End { who, commit, retry } => {
                        let (id, epoch) = who_ids(who);
                        let epoch = if retry { epoch.wrapping_sub(1) } else { epoch };
                        next_id += 1;
                        let fresh = next_id;
                        let outcome = end_txn(entry.as_ref(), id, epoch, commit, now, || fresh);
                        match outcome {
                            Ok(EndOutcome::Write(next)) => {
                                prop_assert!(!retry && matches!(who, Who::Current), "{who:?} (retry {retry}) ended: {next:?}");
                                prop_assert_eq!(i32::from(next.producer_epoch), i32::from(before.producer_epoch) + 1);
                                let answer = next.completed(now);
                                if before.producer_epoch >= i16::MAX - 1 {
                                    prop_assert_eq!((answer.producer_id, answer.producer_epoch), (fresh, 0));
                                }
                                markers_due = true;
                                Some(next)
                            }
                            Ok(EndOutcome::AlreadyDone { producer_id, producer_epoch }) => {
                                // A zombie one epoch behind looks like a retry, as in Kafka.
                                prop_assert!(retry || matches!(who, Who::Fenced), "an end that was no retry answered done");
                                prop_assert!(matches!(before.state, TxnState::CompleteCommit | TxnState::CompleteAbort));
                                prop_assert_eq!((producer_id, producer_epoch), producer);
                                None
                            }
                            Err(_) => None,
                        }
                    }
                    Step::Markers if markers_due => {
                        markers_due = false;
                        Some(before.completed(now))
                    }
                    Step::Markers => None,
                    Step::Tick { ms } => {
                        now += ms;
                        match abort_timed_out(entry.as_ref().unwrap(), now) {
                            Some(next) => { markers_due = true; Some(next) }
                            None => None,
                        }
                    }
                    Step::Init => {
                        next_id += 1;
                        let fresh = next_id;
                        let request = InitRequest { timeout_ms: 2_000, expected: None };
                        match init_producer_id("t", entry.as_ref(), request, 900_000, now, || fresh) {
                            Ok(InitOutcome::Write(next)) => Some(next),
                            Ok(InitOutcome::AbortThenRetry(next)) => { markers_due = true; Some(next) }
                            Err(_) => None,
                        }
                    }
                };
                let Some(next) = written else { continue };
                prop_assert!(next.state.may_follow(before.state), "{:?} -> {:?}", before.state, next.state);
                if next.producer_id == before.producer_id {
                    prop_assert!(next.producer_epoch >= before.producer_epoch, "{before:?} -> {next:?}");
                }
                if (next.producer_id, next.producer_epoch) != producer {
                    fenced = Some(producer);
                }
                if !matches!(next.state, TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort) {
                    prop_assert!(next.partitions.is_empty(), "{next:?}");
                }
                let (key, value) = crate::transactions::state_log::record(&next);
                let (_, read) = crate::transactions::state_log::decode(&key, Some(&value)).unwrap();
                let read = read.unwrap();
                prop_assert_eq!(
                    (read.producer_id, read.producer_epoch, read.state, &read.partitions,
                     read.next_producer_id, read.client_transaction_version),
                    (next.producer_id, next.producer_epoch, next.state, &next.partitions,
                     next.next_producer_id, next.client_transaction_version));
                apply(&mut entry, next);
                // An epoch exhausted under v1 rules (init, fence) rotates through init; the
                // model stops where the epoch would overflow.
                if entry.as_ref().unwrap().current.producer_epoch == i16::MAX {
                    prop_assert!(markers_due, "only a prepare may sit at the last epoch");
                }
            }
        }
    }
}
