//! Transaction protocol v2 (KIP-890 part 2, `transaction.version=2`, Kafka 4's clients): the
//! decisions that differ from v1 ([`super::state`]), still free of I/O and clocks.
//!
//! - **Partitions are added by their leaders**, not by the client: a transactional batch at
//!   Produce v12 (or a TxnOffsetCommit v5) makes the partition's leader send
//!   AddPartitionsToTxn v5 with `verify_only=false` to the coordinator
//!   ([`add_partitions`]), which starts a transaction implicitly from Empty or Complete*.
//!   With `verify_only=true` (v4+, KIP-890 part 1) the coordinator only says whether the
//!   partitions are in the transaction ([`verify_partitions`]).
//! - **Every EndTxn bumps the epoch** ([`end_txn`]): the prepared commit or abort is written
//!   with epoch + 1, its markers carry that epoch (so a late batch of the transaction just
//!   ended is fenced at every partition), and EndTxn v5 answers the new epoch, which the
//!   client uses for its next transaction. A retry of an EndTxn that already bumped is
//!   recognised by its epoch being one below. When the epoch is exhausted the prepare
//!   carries a new producer id ([`TxnMetadata::next_producer_id`]) that the completion
//!   switches to, epoch 0.
//! - An abort from Empty or Complete* is allowed (an abort of nothing, with its bump), as
//!   Kafka 4 allows it.
//!
//! The check orders and outcomes are Kafka 4.0's `TransactionCoordinator` (after KAFKA-18660:
//! a transition in flight is answered CONCURRENT_TRANSACTIONS before the producer checks, so
//! that a new transaction's first add does not fence itself).

use super::state::{
    add_to, epoch_exhausted, AddOutcome, TxnEntry, TxnError, TxnMetadata, TxnState,
};

/// `ClientTransactionVersion` of a v2 client, written with its transitions.
pub const TRANSACTION_VERSION_2: i16 = 2;

/// AddPartitionsToTxn v4+ with `verify_only=false` (a partition leader adding its partition
/// for a v2 client): Kafka's `handleAddPartitionsToTransaction` with TV2.
pub fn add_partitions(
    entry: Option<&TxnEntry>,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<AddOutcome, TxnError> {
    let entry = entry.ok_or(TxnError::InvalidProducerIdMapping)?;
    if entry.pending.is_some() {
        return Err(TxnError::ConcurrentTransactions);
    }
    let current = &entry.current;
    if current.producer_id != producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if current.producer_epoch != epoch {
        return Err(TxnError::ProducerFenced);
    }
    match add_to(current, partitions, now_ms)? {
        AddOutcome::Write(mut next) => {
            next.client_transaction_version = TRANSACTION_VERSION_2;
            Ok(AddOutcome::Write(next))
        }
        already => Ok(already),
    }
}

/// Whether a partition is in the producer's transaction (AddPartitionsToTxn v4+ with
/// `verify_only=true`, Kafka's `handleVerifyPartitionsInTransaction`): one answer per
/// partition, NONE or TRANSACTION_ABORTABLE, after the producer checks. Writes nothing.
pub fn verify_partitions(
    entry: Option<&TxnEntry>,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
) -> Result<Vec<bool>, TxnError> {
    let current = &entry.ok_or(TxnError::InvalidProducerIdMapping)?.current;
    if current.producer_id != producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if current.producer_epoch != epoch {
        return Err(TxnError::ProducerFenced);
    }
    if matches!(
        current.state,
        TxnState::PrepareCommit | TxnState::PrepareAbort
    ) {
        return Err(TxnError::ConcurrentTransactions);
    }
    Ok(partitions
        .iter()
        .map(|partition| current.partitions.contains(partition))
        .collect())
}

/// What the coordinator does for an EndTxn v5.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndOutcome {
    /// A retry of an EndTxn already taken: answer success with the id's producer id and
    /// epoch as they are.
    AlreadyDone {
        /// The producer id to answer.
        producer_id: i64,
        /// The epoch to answer.
        producer_epoch: i16,
    },
    /// Write this (PrepareCommit or PrepareAbort, epoch bumped), answer success with the
    /// producer id and epoch of its completion ([`TxnMetadata::completed`]), then write the
    /// markers and the completion. `new_producer_id` was used when the epoch was exhausted.
    Write(TxnMetadata),
}

/// EndTxn v5 (Kafka 4's `endTransaction` for a TV2 client). `new_producer_id` is asked only
/// when the epoch is exhausted.
pub fn end_txn(
    entry: Option<&TxnEntry>,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
    new_producer_id: impl FnOnce() -> i64,
) -> Result<EndOutcome, TxnError> {
    let entry = entry.ok_or(TxnError::InvalidProducerIdMapping)?;
    let current = &entry.current;
    // The client retries an EndTxn whose epoch bump it never heard of with its old epoch; one
    // that rotated the producer id, with the old id at the last epoch.
    let retry_on_overflow = current.previous_producer_id == producer_id
        && epoch == i16::MAX - 1
        && current.producer_epoch == 0;
    let retry_on_bump = i32::from(current.producer_epoch) == i32::from(epoch) + 1;
    if current.producer_id != producer_id && !retry_on_overflow {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    let valid_epoch = match current.state {
        TxnState::Ongoing | TxnState::Empty | TxnState::Dead | TxnState::PrepareEpochFence => {
            epoch == current.producer_epoch
        }
        TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
        TxnState::CompleteCommit | TxnState::CompleteAbort => {
            retry_on_bump || retry_on_overflow || epoch == current.producer_epoch
        }
    };
    if !valid_epoch {
        return Err(TxnError::ProducerFenced);
    }
    if entry.pending.is_some() {
        return Err(TxnError::ConcurrentTransactions);
    }
    let is_retry = retry_on_bump || retry_on_overflow;
    let already_done = || {
        Ok(EndOutcome::AlreadyDone {
            producer_id: current.producer_id,
            producer_epoch: current.producer_epoch,
        })
    };
    match (current.state, commit) {
        (TxnState::Ongoing, _) => Ok(EndOutcome::Write(prepare(
            current,
            commit,
            now_ms,
            new_producer_id,
        ))),
        (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
            Err(TxnError::ConcurrentTransactions)
        }
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if is_retry => {
            already_done()
        }
        // An abort of no transaction: allowed, with its epoch bump.
        (TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort, false)
            if !is_retry =>
        {
            Ok(EndOutcome::Write(prepare(
                current,
                false,
                now_ms,
                new_producer_id,
            )))
        }
        _ => Err(TxnError::InvalidTxnState),
    }
}

/// The prepared commit or abort with the epoch bumped (Kafka's `prepareAbortOrCommit` with
/// TV2); an exhausted epoch takes a new producer id for the completion.
fn prepare(
    current: &TxnMetadata,
    commit: bool,
    now_ms: i64,
    new_producer_id: impl FnOnce() -> i64,
) -> TxnMetadata {
    let state = if commit {
        TxnState::PrepareCommit
    } else {
        TxnState::PrepareAbort
    };
    let mut next = current.to(state, now_ms);
    if epoch_exhausted(current.producer_epoch) {
        next.next_producer_id = new_producer_id();
    }
    next.last_producer_epoch = current.producer_epoch;
    next.producer_epoch = current.producer_epoch.saturating_add(1);
    next.client_transaction_version = TRANSACTION_VERSION_2;
    next
}

#[cfg(test)]
#[path = "state_v2_tests.rs"]
mod tests;
