//! One transactional id's state machine, free of I/O and clocks: Kafka's
//! `TransactionMetadata` and the decisions of its `TransactionCoordinator` for transaction
//! protocol v1 (InitProducerId with a transactional id, AddPartitionsToTxn, AddOffsetsToTxn,
//! EndTxn, and the abort of a transaction that outlived its timeout).
//!
//! Each decision either answers at once (an error, or a retry of something already done) or
//! returns the metadata to write to `__transaction_state`. The coordinator marks that
//! transition pending ([`TxnEntry::begin`]) so that no other request races it, writes the
//! record, then applies it ([`TxnEntry::complete`]) or drops it ([`TxnEntry::fail`]) and only
//! then answers, as Kafka does: what a client was told is always in the log.
//!
//! The states and the transitions each allows are Kafka's (`TransactionState`):
//!
//! ```text
//! Empty ──add──▶ Ongoing ──end(commit)──▶ PrepareCommit ──markers──▶ CompleteCommit
//!   ▲              │  └──end(abort), timeout, fence──▶ PrepareAbort ──markers──▶ CompleteAbort
//!   └──init (epoch bump)── CompleteCommit, CompleteAbort, Empty
//! ```

use std::collections::{BTreeMap, BTreeSet};

/// Kafka's `TransactionState`, with its ids in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    /// No transaction under way.
    Empty,
    /// Partitions were added; records may be in them.
    Ongoing,
    /// EndTxn(commit) was taken; commit markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fence; abort markers are being written.
    PrepareAbort,
    /// The commit markers are written.
    CompleteCommit,
    /// The abort markers are written.
    CompleteAbort,
    /// The transactional id expired.
    Dead,
    /// Being fenced by a newer producer (Kafka holds this only in memory, before its abort).
    PrepareEpochFence,
}

impl TxnState {
    /// The id in `TransactionLogValue.TransactionStatus`.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// The state of a log id.
    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions give (Kafka's `stateName`).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Whether a transition from `from` to `self` is one Kafka allows.
    pub fn may_follow(self, from: TxnState) -> bool {
        use TxnState::*;
        match self {
            Empty => matches!(from, Empty | CompleteCommit | CompleteAbort),
            Ongoing => matches!(from, Ongoing | Empty | CompleteCommit | CompleteAbort),
            PrepareCommit => from == Ongoing,
            // From Empty and Complete*: an abort of nothing, which protocol v2 allows.
            PrepareAbort => matches!(
                from,
                Ongoing | PrepareEpochFence | Empty | CompleteCommit | CompleteAbort
            ),
            CompleteCommit => from == PrepareCommit,
            CompleteAbort => from == PrepareAbort,
            Dead => matches!(from, Empty | CompleteCommit | CompleteAbort),
            PrepareEpochFence => from == Ongoing,
        }
    }
}

/// Why a transactional request is refused; each is one of Kafka's error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnError {
    /// CONCURRENT_TRANSACTIONS (51): another transition is under way; retry.
    ConcurrentTransactions,
    /// INVALID_PRODUCER_ID_MAPPING (49): the producer id is not this transactional id's.
    InvalidProducerIdMapping,
    /// PRODUCER_FENCED (90): a newer producer took the transactional id.
    ProducerFenced,
    /// INVALID_TXN_STATE (48): the request does not fit the transaction's state.
    InvalidTxnState,
    /// INVALID_TRANSACTION_TIMEOUT (50): not above zero, or above transaction.max.timeout.ms.
    InvalidTransactionTimeout,
}

impl TxnError {
    /// Kafka's error code.
    pub fn code(self) -> i16 {
        match self {
            TxnError::ConcurrentTransactions => 51,
            TxnError::InvalidProducerIdMapping => 49,
            TxnError::ProducerFenced => 90,
            TxnError::InvalidTxnState => 48,
            TxnError::InvalidTransactionTimeout => 50,
        }
    }
}

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_EPOCH: i16 = -1;

/// Whether `epoch` is the last a producer id can have before it must be replaced (Kafka's
/// `isEpochExhausted`: the markers of an abort need one more).
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// A transactional id's metadata (Kafka's `TransactionMetadata`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id in use.
    pub producer_id: i64,
    /// The producer id before the last rotation (-1: none).
    pub previous_producer_id: i64,
    /// The producer id handed out but not yet in use (-1: none).
    pub next_producer_id: i64,
    /// The epoch in use.
    pub producer_epoch: i16,
    /// The epoch before the last bump, so that a retried InitProducerId is recognised
    /// (KIP-360).
    pub last_producer_epoch: i16,
    /// transaction.timeout.ms of the producer.
    pub timeout_ms: i32,
    /// Where the transaction is.
    pub state: TxnState,
    /// The partitions of the transaction under way, `(topic, partition)`.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the transaction under way started (-1: none).
    pub start_ms: i64,
    /// When this metadata last changed.
    pub last_update_ms: i64,
    /// The transaction protocol version the client uses (0 or 1: v1; 2: KIP-890).
    pub client_transaction_version: i16,
}

impl TxnMetadata {
    /// A transactional id first seen now, before its first epoch.
    pub fn new(transactional_id: String, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id,
            producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: NO_EPOCH,
            last_producer_epoch: NO_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_transaction_version: 0,
        }
    }

    /// The partitions grouped by topic, as the log and the markers want them.
    pub fn partitions_by_topic(&self) -> BTreeMap<String, Vec<i32>> {
        let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &self.partitions {
            topics.entry(topic.clone()).or_default().push(*partition);
        }
        topics
    }

    /// Whether the transaction under way has outlived its timeout at `now_ms`.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && self.start_ms + i64::from(self.timeout_ms) < now_ms
    }

    /// This metadata moved to `state` at `now_ms`, everything else kept.
    pub(crate) fn to(&self, state: TxnState, now_ms: i64) -> TxnMetadata {
        debug_assert!(
            state.may_follow(self.state),
            "{:?} -> {state:?}",
            self.state
        );
        TxnMetadata {
            state,
            last_update_ms: now_ms,
            ..self.clone()
        }
    }

    /// The metadata once the markers of a prepared commit or abort are written: complete,
    /// with no partitions. A protocol v2 prepare that exhausted the epoch took a new producer
    /// id: the completion switches to it, at epoch 0 (Kafka's `prepareComplete`).
    pub fn completed(&self, now_ms: i64) -> TxnMetadata {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            _ => TxnState::CompleteAbort,
        };
        let mut next = self.to(state, now_ms);
        next.partitions.clear();
        if self.client_transaction_version >= super::state_v2::TRANSACTION_VERSION_2
            && self.next_producer_id >= 0
        {
            next.previous_producer_id = self.producer_id;
            next.producer_id = self.next_producer_id;
            next.producer_epoch = 0;
            next.next_producer_id = -1;
        }
        next
    }
}

/// What the coordinator keeps per transactional id: its metadata as in the log, and the
/// transition being written, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnEntry {
    /// As last written.
    pub current: TxnMetadata,
    /// Being written.
    pub pending: Option<TxnMetadata>,
}

impl TxnEntry {
    /// An entry as loaded from the log.
    pub fn new(current: TxnMetadata) -> TxnEntry {
        TxnEntry {
            current,
            pending: None,
        }
    }

    /// Marks `next` as being written; the caller checked that nothing else was.
    pub fn begin(&mut self, next: TxnMetadata) {
        debug_assert!(self.pending.is_none());
        self.pending = Some(next);
    }

    /// The pending transition was written: it is the metadata now.
    pub fn complete(&mut self) {
        if let Some(next) = self.pending.take() {
            self.current = next;
        }
    }

    /// The pending transition could not be written: it never happened.
    pub fn fail(&mut self) {
        self.pending = None;
    }
}

/// What an InitProducerId with a transactional id asks.
#[derive(Clone, Copy, Debug)]
pub struct InitRequest {
    /// transaction.timeout.ms.
    pub timeout_ms: i32,
    /// The producer id and epoch the client had (KIP-360), if any.
    pub expected: Option<(i64, i16)>,
}

/// What the coordinator does for an InitProducerId.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitOutcome {
    /// Write this (Empty, with the new epoch), then answer with its producer id and epoch.
    Write(TxnMetadata),
    /// A transaction of the previous producer is under way: write this abort (epoch bumped,
    /// which fences that producer), write its markers, and answer CONCURRENT_TRANSACTIONS so
    /// that the client retries once the abort is complete.
    AbortThenRetry(TxnMetadata),
}

/// InitProducerId with a transactional id (Kafka's `handleInitProducerId` and
/// `prepareInitProducerIdTransit`). `entry` is `None` for an id never seen; `new_producer_id`
/// is asked only when one is needed.
pub fn init_producer_id(
    transactional_id: &str,
    entry: Option<&TxnEntry>,
    request: InitRequest,
    max_timeout_ms: i32,
    now_ms: i64,
    new_producer_id: impl FnOnce() -> i64,
) -> Result<InitOutcome, TxnError> {
    if request.timeout_ms <= 0 || request.timeout_ms > max_timeout_ms {
        return Err(TxnError::InvalidTransactionTimeout);
    }
    let current = match entry {
        Some(entry) if entry.pending.is_some() => return Err(TxnError::ConcurrentTransactions),
        Some(entry) => &entry.current,
        None => {
            let fresh = TxnMetadata::new(
                transactional_id.to_string(),
                new_producer_id(),
                request.timeout_ms,
                now_ms,
            );
            return Ok(InitOutcome::Write(bump_to_empty(
                &fresh,
                request.timeout_ms,
                now_ms,
            )));
        }
    };
    // A producer that says which id and epoch it had (KIP-360) must be this id's current
    // producer, or its previous one retrying a rotation it never heard the answer to
    // (Kafka's `isValidProducerId`); anyone else is a zombie.
    if let Some((producer_id, epoch)) = request.expected {
        let valid = current.producer_epoch == NO_EPOCH
            || producer_id == current.producer_id
            || (producer_id == current.previous_producer_id && epoch_exhausted(epoch));
        if !valid {
            return Err(TxnError::ProducerFenced);
        }
    }
    match current.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => Err(TxnError::ConcurrentTransactions),
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
            let expected_epoch = request.expected.map(|(_, epoch)| epoch);
            if epoch_exhausted(current.producer_epoch)
                && expected_epoch.is_none_or(|epoch| epoch == current.producer_epoch)
            {
                let mut rotated = current.to(TxnState::Empty, now_ms);
                rotated.previous_producer_id = current.producer_id;
                rotated.producer_id = new_producer_id();
                rotated.producer_epoch = 0;
                rotated.last_producer_epoch = NO_EPOCH;
                rotated.timeout_ms = request.timeout_ms;
                rotated.partitions.clear();
                rotated.start_ms = -1;
                return Ok(InitOutcome::Write(rotated));
            }
            // Kafka's `prepareIncrementProducerEpoch`.
            match expected_epoch {
                Some(epoch)
                    if current.producer_epoch != NO_EPOCH && epoch != current.producer_epoch =>
                {
                    if epoch != current.last_producer_epoch {
                        return Err(TxnError::ProducerFenced);
                    }
                    // A retry of the bump already made: the same answer, written again.
                    let mut same = current.to(TxnState::Empty, now_ms);
                    same.timeout_ms = request.timeout_ms;
                    Ok(InitOutcome::Write(same))
                }
                _ => Ok(InitOutcome::Write(bump_to_empty(
                    current,
                    request.timeout_ms,
                    now_ms,
                ))),
            }
        }
        TxnState::Ongoing => Ok(InitOutcome::AbortThenRetry(fence_and_abort(
            current, now_ms,
        ))),
        // Neither is ever written (Dead is a tombstone, PrepareEpochFence lives in memory).
        TxnState::Dead | TxnState::PrepareEpochFence => Err(TxnError::ConcurrentTransactions),
    }
}

fn bump_to_empty(current: &TxnMetadata, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
    let mut next = current.to(TxnState::Empty, now_ms);
    next.last_producer_epoch = current.producer_epoch;
    next.producer_epoch = current.producer_epoch + 1;
    next.timeout_ms = timeout_ms;
    next.partitions.clear();
    next.start_ms = -1;
    next
}

/// The abort of an ongoing transaction that a newer producer or the timeout ends: the epoch
/// is bumped first (unless exhausted), so that the old producer's next request is fenced
/// and the markers carry an epoch it cannot write under.
fn fence_and_abort(current: &TxnMetadata, now_ms: i64) -> TxnMetadata {
    let fencing = current.to(TxnState::PrepareEpochFence, now_ms);
    let mut aborting = fencing.to(TxnState::PrepareAbort, now_ms);
    if !epoch_exhausted(current.producer_epoch) {
        aborting.last_producer_epoch = current.producer_epoch;
        aborting.producer_epoch = current.producer_epoch + 1;
    }
    aborting
}

/// Checks that a request comes from the transactional id's current producer (Kafka's order:
/// the id, then the epoch, then a transition under way).
fn current_producer(
    entry: &TxnEntry,
    producer_id: i64,
    epoch: i16,
) -> Result<&TxnMetadata, TxnError> {
    let current = &entry.current;
    if current.producer_id != producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if current.producer_epoch != epoch {
        return Err(TxnError::ProducerFenced);
    }
    if entry.pending.is_some() {
        return Err(TxnError::ConcurrentTransactions);
    }
    Ok(current)
}

/// What the coordinator does for AddPartitionsToTxn (and AddOffsetsToTxn, whose partition is
/// the group's `__consumer_offsets` partition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddOutcome {
    /// Every partition is already in the transaction: answer success.
    AlreadyAdded,
    /// Write this (Ongoing with the partitions), then answer success.
    Write(TxnMetadata),
}

/// AddPartitionsToTxn v0-3 for one transactional id (Kafka's
/// `handleAddPartitionsToTransaction`).
pub fn add_partitions(
    entry: Option<&TxnEntry>,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<AddOutcome, TxnError> {
    let entry = entry.ok_or(TxnError::InvalidProducerIdMapping)?;
    let current = current_producer(entry, producer_id, epoch)?;
    add_to(current, partitions, now_ms)
}

/// The add itself, once the producer checks passed (both protocols): the partitions join the
/// open transaction, or start one from Empty or Complete*.
pub(crate) fn add_to(
    current: &TxnMetadata,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<AddOutcome, TxnError> {
    match current.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort => Err(TxnError::ConcurrentTransactions),
        TxnState::Ongoing
            if partitions
                .iter()
                .all(|partition| current.partitions.contains(partition)) =>
        {
            Ok(AddOutcome::AlreadyAdded)
        }
        TxnState::Ongoing
        | TxnState::Empty
        | TxnState::CompleteCommit
        | TxnState::CompleteAbort => {
            let mut next = current.to(TxnState::Ongoing, now_ms);
            if current.state != TxnState::Ongoing {
                next.start_ms = now_ms;
            }
            next.partitions.extend(partitions.iter().cloned());
            Ok(AddOutcome::Write(next))
        }
        TxnState::Dead | TxnState::PrepareEpochFence => Err(TxnError::ConcurrentTransactions),
    }
}

/// What the coordinator does for an EndTxn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndOutcome {
    /// A retry of an EndTxn already complete: answer success.
    AlreadyDone,
    /// Write this (PrepareCommit or PrepareAbort), answer success, then write the markers to
    /// its partitions and [`TxnMetadata::completed`].
    Write(TxnMetadata),
}

/// EndTxn v0-4 (Kafka's `endTransaction` for a client, transaction protocol v1).
pub fn end_txn(
    entry: Option<&TxnEntry>,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<EndOutcome, TxnError> {
    let entry = entry.ok_or(TxnError::InvalidProducerIdMapping)?;
    let current = current_producer(entry, producer_id, epoch)?;
    match (current.state, commit) {
        (TxnState::Ongoing, true) => Ok(EndOutcome::Write(
            current.to(TxnState::PrepareCommit, now_ms),
        )),
        (TxnState::Ongoing, false) => Ok(EndOutcome::Write(
            current.to(TxnState::PrepareAbort, now_ms),
        )),
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
            Ok(EndOutcome::AlreadyDone)
        }
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(TxnError::ConcurrentTransactions)
        }
        (TxnState::Dead | TxnState::PrepareEpochFence, _) => Err(TxnError::ConcurrentTransactions),
        _ => Err(TxnError::InvalidTxnState),
    }
}

/// The abort of a transaction that outlived its timeout (Kafka's
/// `abortTimedOutTransactions`): the epoch bumped, so that its producer is fenced; `None`
/// when nothing is due.
pub fn abort_timed_out(entry: &TxnEntry, now_ms: i64) -> Option<TxnMetadata> {
    (entry.pending.is_none() && entry.current.timed_out(now_ms))
        .then(|| fence_and_abort(&entry.current, now_ms))
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
