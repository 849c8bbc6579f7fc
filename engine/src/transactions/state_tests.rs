use super::*;
use proptest::prelude::*;

const MAX_TIMEOUT_MS: i32 = 900_000;

fn request(timeout_ms: i32) -> InitRequest {
    InitRequest {
        timeout_ms,
        expected: None,
    }
}

/// Runs an InitProducerId and applies what it writes (as if the log write succeeded).
fn init(entry: &mut Option<TxnEntry>, request: InitRequest, next_id: i64) -> InitOutcome {
    let outcome = init_producer_id("t", entry.as_ref(), request, MAX_TIMEOUT_MS, 10, || next_id)
        .expect("init");
    let written = match &outcome {
        InitOutcome::Write(next) | InitOutcome::AbortThenRetry(next) => next.clone(),
    };
    apply(entry, written);
    outcome
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

fn ids(entry: &Option<TxnEntry>) -> (i64, i16) {
    let current = &entry.as_ref().unwrap().current;
    (current.producer_id, current.producer_epoch)
}

fn orders(partition: i32) -> Vec<(String, i32)> {
    vec![("orders".to_string(), partition)]
}

/// A producer (id 7, epoch 0, timeout `timeout_ms`) with a transaction open on orders-0
/// since `now_ms`.
fn open_transaction(timeout_ms: i32, now_ms: i64) -> Option<TxnEntry> {
    let mut entry = None;
    init(&mut entry, request(timeout_ms), 7);
    let AddOutcome::Write(ongoing) =
        add_partitions(entry.as_ref(), 7, 0, &orders(0), now_ms).expect("add")
    else {
        panic!("the first add writes");
    };
    assert_eq!(
        (ongoing.state, ongoing.start_ms),
        (TxnState::Ongoing, now_ms)
    );
    apply(&mut entry, ongoing);
    entry
}

#[test]
fn each_init_bumps_the_epoch_and_fences_the_previous_producer() {
    let mut entry = None;
    init(&mut entry, request(60_000), 7);
    assert_eq!(ids(&entry), (7, 0));
    let (producer_id, old_epoch) = ids(&entry);
    init(&mut entry, request(60_000), 8);
    assert_eq!(ids(&entry), (7, 1), "same producer id, next epoch");
    assert_eq!(
        add_partitions(entry.as_ref(), producer_id, old_epoch, &orders(0), 20),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        end_txn(entry.as_ref(), 99, 1, true, 20),
        Err(TxnError::InvalidProducerIdMapping)
    );
}

#[test]
fn a_transaction_commits_through_prepare_and_markers_and_a_retry_is_answered() {
    let mut entry = open_transaction(60_000, 20);
    assert_eq!(
        add_partitions(entry.as_ref(), 7, 0, &orders(0), 25),
        Ok(AddOutcome::AlreadyAdded)
    );
    let EndOutcome::Write(prepared) = end_txn(entry.as_ref(), 7, 0, true, 30).unwrap() else {
        panic!("an end writes");
    };
    assert_eq!(prepared.state, TxnState::PrepareCommit);
    apply(&mut entry, prepared.clone());
    // While the markers are written, the client retries and adds are held off.
    assert_eq!(
        end_txn(entry.as_ref(), 7, 0, true, 31),
        Err(TxnError::ConcurrentTransactions)
    );
    assert_eq!(
        add_partitions(entry.as_ref(), 7, 0, &orders(2), 31),
        Err(TxnError::ConcurrentTransactions)
    );
    apply(&mut entry, prepared.completed(40));
    let current = &entry.as_ref().unwrap().current;
    assert_eq!(current.state, TxnState::CompleteCommit);
    assert!(current.partitions.is_empty());
    assert_eq!(
        end_txn(entry.as_ref(), 7, 0, true, 41),
        Ok(EndOutcome::AlreadyDone)
    );
    assert_eq!(
        end_txn(entry.as_ref(), 7, 0, false, 41),
        Err(TxnError::InvalidTxnState)
    );
}

#[test]
fn a_new_producer_aborts_the_open_transaction_of_the_old_one() {
    let mut entry = open_transaction(60_000, 20);
    let InitOutcome::AbortThenRetry(aborting) = init(&mut entry, request(60_000), 8) else {
        panic!("an open transaction is aborted first");
    };
    assert_eq!(aborting.state, TxnState::PrepareAbort);
    assert_eq!(
        aborting.producer_epoch, 1,
        "the markers carry the fencing epoch"
    );
    assert_eq!(
        aborting.partitions.len(),
        1,
        "the abort covers the open partitions"
    );
    // The old producer is fenced; the new one retries until the abort is complete.
    assert_eq!(
        end_txn(entry.as_ref(), 7, 0, true, 30),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        init_producer_id(
            "t",
            entry.as_ref(),
            request(60_000),
            MAX_TIMEOUT_MS,
            30,
            || 9
        ),
        Err(TxnError::ConcurrentTransactions)
    );
    apply(&mut entry, aborting.completed(35));
    init(&mut entry, request(60_000), 9);
    assert_eq!(ids(&entry), (7, 2));
}

#[test]
fn timeouts_above_the_maximum_are_refused_and_expired_transactions_abort() {
    let outcome = init_producer_id(
        "t",
        None,
        request(MAX_TIMEOUT_MS + 1),
        MAX_TIMEOUT_MS,
        0,
        || 1,
    );
    assert_eq!(outcome, Err(TxnError::InvalidTransactionTimeout));
    let outcome = init_producer_id("t", None, request(0), MAX_TIMEOUT_MS, 0, || 1);
    assert_eq!(outcome, Err(TxnError::InvalidTransactionTimeout));
    let entry = open_transaction(1_000, 100);
    assert!(abort_timed_out(entry.as_ref().unwrap(), 1_100).is_none());
    let aborting = abort_timed_out(entry.as_ref().unwrap(), 1_101).expect("expired");
    assert_eq!(
        (aborting.state, aborting.producer_epoch),
        (TxnState::PrepareAbort, 1)
    );
}

#[test]
fn an_exhausted_epoch_rotates_the_producer_id_and_a_retried_bump_is_the_same_answer() {
    let mut entry = None;
    init(&mut entry, request(60_000), 7);
    entry.as_mut().unwrap().current.producer_epoch = i16::MAX - 1;
    init(&mut entry, request(60_000), 8);
    let current = &entry.as_ref().unwrap().current;
    assert_eq!((current.producer_id, current.producer_epoch), (8, 0));
    assert_eq!(current.previous_producer_id, 7);

    // KIP-360: a client that bumped from epoch 0 to 1 and lost the answer asks again with
    // epoch 0 and gets epoch 1 again, not 2; an epoch older than that is fenced.
    let mut entry = None;
    init(&mut entry, request(60_000), 7);
    let bumped = InitRequest {
        timeout_ms: 60_000,
        expected: Some((7, 0)),
    };
    init(&mut entry, bumped, 0);
    assert_eq!(ids(&entry), (7, 1));
    init(&mut entry, bumped, 0);
    assert_eq!(
        ids(&entry),
        (7, 1),
        "the retry is answered with the same epoch"
    );
    let stale = InitRequest {
        timeout_ms: 60_000,
        expected: Some((7, -5)),
    };
    assert_eq!(
        init_producer_id("t", entry.as_ref(), stale, MAX_TIMEOUT_MS, 0, || 0),
        Err(TxnError::ProducerFenced)
    );
    let stranger = InitRequest {
        timeout_ms: 60_000,
        expected: Some((99, 1)),
    };
    assert_eq!(
        init_producer_id("t", entry.as_ref(), stranger, MAX_TIMEOUT_MS, 0, || 0),
        Err(TxnError::ProducerFenced)
    );
}

#[test]
fn a_pending_write_holds_off_every_other_request() {
    let mut entry = None;
    init(&mut entry, request(60_000), 7);
    let pending = entry.as_ref().unwrap().current.clone();
    entry.as_mut().unwrap().begin(pending);
    assert_eq!(
        add_partitions(entry.as_ref(), 7, 0, &orders(0), 1),
        Err(TxnError::ConcurrentTransactions)
    );
    entry.as_mut().unwrap().fail();
    assert!(add_partitions(entry.as_ref(), 7, 0, &orders(0), 1).is_ok());
}

/// A client or the coordinator's clock, acting on one transactional id.
#[derive(Clone, Debug)]
enum Step {
    Init { retry: bool },
    Add { who: Who, partition: i32 },
    End { who: Who, commit: bool },
    Markers,
    Tick { ms: i64 },
}

/// Who sends a request: the current producer, the one it fenced, or a stranger.
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
        2 => any::<bool>().prop_map(|retry| Step::Init { retry }),
        4 => (who.clone(), 0..4i32).prop_map(|(who, partition)| Step::Add { who, partition }),
        3 => (who, any::<bool>()).prop_map(|(who, commit)| Step::End { who, commit }),
        3 => Just(Step::Markers),
        1 => (1..5_000i64).prop_map(|ms| Step::Tick { ms }),
    ]
}

proptest! {
    /// Against a model of what Kafka promises: transitions are legal, (producer id, epoch)
    /// only moves forward, a fenced producer or a stranger never gets a transaction
    /// changed, nothing is added while a commit or abort is being written, partitions are
    /// only held by an open or ending transaction, and every metadata reads back from its
    /// log record.
    #[test]
    fn the_state_machine_keeps_kafkas_promises(steps in proptest::collection::vec(step(), 1..60)) {
        let mut entry: Option<TxnEntry> = None;
        let mut now = 0i64;
        let mut next_id = 100i64;
        let mut fenced: Option<(i64, i16)> = None;
        let mut markers_due = false;
        for step in steps {
            now += 1;
            let before = entry.as_ref().map(|entry| entry.current.clone());
            let producer = before.as_ref().map(|current| (current.producer_id, current.producer_epoch));
            let who_ids = |who: Who| match who {
                Who::Current => producer.unwrap_or((-1, -1)),
                Who::Fenced => fenced.unwrap_or((-2, 0)),
                Who::Stranger => (9_999, 0),
            };
            let written = match step {
                Step::Init { retry } => {
                    let expected = if retry { producer } else { None };
                    next_id += 1;
                    let id = next_id;
                    match init_producer_id("t", entry.as_ref(), InitRequest { timeout_ms: 2_000, expected },
                                           MAX_TIMEOUT_MS, now, || id) {
                        Ok(InitOutcome::Write(next)) => Some(next),
                        Ok(InitOutcome::AbortThenRetry(next)) => { markers_due = true; Some(next) }
                        Err(error) => {
                            prop_assert!(markers_due || retry, "init refused: {error:?}");
                            None
                        }
                    }
                }
                Step::Add { who, partition } => {
                    let (producer_id, epoch) = who_ids(who);
                    let outcome = add_partitions(entry.as_ref(), producer_id, epoch, &orders(partition), now);
                    if !matches!(who, Who::Current) || producer.is_none() {
                        prop_assert!(outcome.is_err(), "{who:?} added: {outcome:?}");
                    }
                    if markers_due {
                        prop_assert!(outcome.is_err(), "added while markers were due: {outcome:?}");
                    }
                    match outcome {
                        Ok(AddOutcome::Write(next)) => Some(next),
                        _ => None,
                    }
                }
                Step::End { who, commit } => {
                    let (producer_id, epoch) = who_ids(who);
                    let outcome = end_txn(entry.as_ref(), producer_id, epoch, commit, now);
                    if !matches!(who, Who::Current) || producer.is_none() {
                        prop_assert!(outcome.is_err(), "{who:?} ended: {outcome:?}");
                    }
                    match outcome {
                        Ok(EndOutcome::Write(next)) => { markers_due = true; Some(next) }
                        _ => None,
                    }
                }
                Step::Markers if markers_due => {
                    markers_due = false;
                    before.as_ref().map(|current| current.completed(now))
                }
                Step::Markers => None,
                Step::Tick { ms } => {
                    now += ms;
                    match entry.as_ref().and_then(|entry| abort_timed_out(entry, now)) {
                        Some(next) => { markers_due = true; Some(next) }
                        None => None,
                    }
                }
            };
            let Some(next) = written else { continue };
            if let Some(before) = &before {
                prop_assert!(next.state.may_follow(before.state), "{:?} -> {:?}", before.state, next.state);
                let moved = next.producer_id != before.producer_id || next.producer_epoch >= before.producer_epoch;
                prop_assert!(moved, "the epoch went back: {before:?} -> {next:?}");
                if next.producer_epoch > before.producer_epoch || next.producer_id != before.producer_id {
                    fenced = Some((before.producer_id, before.producer_epoch));
                }
            }
            if !matches!(next.state, TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort) {
                prop_assert!(next.partitions.is_empty(), "{next:?}");
            }
            let (key, value) = super::super::state_log::record(&next);
            let (_, read) = super::super::state_log::decode(&key, Some(&value)).unwrap();
            let read = read.unwrap();
            prop_assert_eq!((read.producer_id, read.producer_epoch, read.state, &read.partitions),
                            (next.producer_id, next.producer_epoch, next.state, &next.partitions));
            apply(&mut entry, next);
        }
    }
}
