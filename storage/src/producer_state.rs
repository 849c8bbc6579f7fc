//! Idempotent producer state: per producer id, its epoch and its last five batches.
//!
//! Owned by the partition's shard inside `LogState`; only touched synchronously from `append`
//! and from recovery, never across an `.await`.
//!
//! Choice for unknown producer ids: like Kafka 3.x and later, a producer id this partition has
//! no state for is accepted at any sequence number. Its state may have been lost to retention
//! or (here) to a restart that did not scan the segment holding its batches, and refusing it
//! would wedge the producer. The price is that a retry of a batch whose state is gone is
//! appended again.
//!
//! Producer ids expire (Kafka's `producer.id.expiration.ms`): an entry whose last batch came
//! longer ago than that is dropped by [`ProducerStateTable::expire`], so the table holds the
//! producers of the last day, not every id ever seen. Recovery counts a batch it finds as
//! appended when the log opens: a restart never expires a producer early.

use crate::batch::{increment_sequence, BatchInfo};
use crate::error::StorageError;
use crate::txn::{AbortedTxn, TxnMarker};
use crate::Offset;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`; clients cap in-flight requests at 5.
pub(crate) const RETAINED_BATCHES_PER_PRODUCER: usize = 5;

/// One of a producer's last batches. Fields are the crate's so that `producer_snapshot`
/// can write and read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetainedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: Offset,
    pub last_offset: Offset,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; never empty; at most `RETAINED_BATCHES_PER_PRODUCER`.
    pub batches: VecDeque<RetainedBatch>,
    /// When its last batch was appended (wall clock, ms since the epoch).
    pub last_append_ms: i64,
    /// The first offset of its open transaction in this partition, if one is open (see
    /// `txn`).
    pub current_txn_first_offset: Option<Offset>,
    /// The epoch of the transaction coordinator that wrote its last marker (-1: none yet);
    /// markers of an older coordinator are refused.
    pub coordinator_epoch: i32,
}

impl ProducerEntry {
    pub fn new(epoch: i16, now_ms: i64) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::with_capacity(RETAINED_BATCHES_PER_PRODUCER),
            last_append_ms: now_ms,
            current_txn_first_offset: None,
            coordinator_epoch: -1,
        }
    }
}

/// What `append` does with a batch that passed the sequence checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: append nothing, answer with its offsets.
    Duplicate {
        base_offset: Offset,
        last_offset: Offset,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProducerStateTable {
    /// By producer id.
    pub producers: HashMap<i64, ProducerEntry>,
    /// The open transactions: first offset -> producer id (the producers' own
    /// `current_txn_first_offset`, ordered, for the last stable offset).
    pub ongoing: BTreeMap<Offset, i64>,
    /// Transactions completed while their marker may still be above the high watermark:
    /// first offset -> marker offset (Kafka's `unreplicatedTxns`). They bound the last stable
    /// offset until the high watermark passes their marker. Not kept across a restart.
    pub unstable_completed: BTreeMap<Offset, Offset>,
}

/// What a marker ended, for the caller to index an abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub producer_id: i64,
    /// `None` when the producer wrote nothing to this partition in the transaction (the
    /// marker is written anyway).
    pub first_offset: Option<Offset>,
    pub marker_offset: Offset,
    pub commit: bool,
}

impl ProducerStateTable {
    /// Builds the ordered index of open transactions from the entries (after loading a
    /// snapshot).
    pub fn index_ongoing(&mut self) {
        self.ongoing = self
            .producers
            .iter()
            .filter_map(|(&id, entry)| Some((entry.current_txn_first_offset?, id)))
            .collect();
    }

    /// The base sequence the producer's next batch here must carry at `epoch`: one past its
    /// last retained batch, or 0 for an epoch this partition has not seen (how a coordinator
    /// that writes as the producer, the group coordinator's TxnOffsetCommit, numbers its
    /// batches so that they pass [`Self::check`]).
    pub fn next_sequence(&self, producer_id: i64, epoch: i16) -> i32 {
        match self.producers.get(&producer_id) {
            Some(entry) if entry.epoch == epoch => entry
                .batches
                .back()
                .map_or(0, |last| increment_sequence(last.last_sequence, 1)),
            _ => 0,
        }
    }

    /// Checks a validated client batch against the producer's state, changing nothing.
    pub fn check(&self, batch: &BatchInfo) -> Result<SequenceCheck, StorageError> {
        if batch.producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch);
        }
        // Kafka's `ProducerAppendInfo.checkProducerEpoch`/`append`: a plain batch while the
        // producer's transaction is open here is refused.
        if !batch.is_transactional() && entry.current_txn_first_offset.is_some() {
            return Err(StorageError::InvalidTxnState);
        }
        if batch.producer_epoch > entry.epoch {
            return if batch.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(StorageError::OutOfOrderSequence)
            };
        }
        let last_sequence = batch.last_sequence();
        if let Some(retained) = entry.batches.iter().find(|retained| {
            retained.first_sequence == batch.base_sequence
                && retained.last_sequence == last_sequence
        }) {
            return Ok(SequenceCheck::Duplicate {
                base_offset: retained.base_offset,
                last_offset: retained.last_offset,
            });
        }
        let latest = entry.batches.back().map(|retained| retained.last_sequence);
        match latest {
            Some(latest) if batch.base_sequence != increment_sequence(latest, 1) => {
                Err(StorageError::OutOfOrderSequence)
            }
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a batch that was appended at `base_offset ..= last_offset` (or, in recovery,
    /// found in the log). A newer epoch replaces the retained batches.
    pub fn record(
        &mut self,
        batch: &BatchInfo,
        base_offset: Offset,
        last_offset: Offset,
        now_ms: i64,
    ) {
        if batch.producer_id < 0 || batch.base_sequence < 0 {
            return;
        }
        let retained = RetainedBatch {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            base_offset,
            last_offset,
        };
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry::new(batch.producer_epoch, now_ms));
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == RETAINED_BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(retained);
        assert!(entry.batches.len() <= RETAINED_BATCHES_PER_PRODUCER);
        if batch.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(base_offset);
            self.ongoing.insert(base_offset, batch.producer_id);
        }
    }

    /// Checks a transaction marker the coordinator asks to append for `producer_id` (Kafka's
    /// `ProducerAppendInfo.appendEndTxnMarker`): refused if the producer has moved to a newer
    /// epoch (`INVALID_PRODUCER_EPOCH`) or a newer coordinator wrote its last marker
    /// (`TRANSACTION_COORDINATOR_FENCED`).
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: TxnMarker,
    ) -> Result<(), StorageError> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch);
        }
        if marker.coordinator_epoch < entry.coordinator_epoch {
            return Err(StorageError::CoordinatorFenced);
        }
        Ok(())
    }

    /// Records a marker appended (or found in the log) at `marker_offset`: the producer's open
    /// transaction here, if any, ends. A newer epoch starts the producer's sequences afresh.
    pub fn record_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: TxnMarker,
        marker_offset: Offset,
        now_ms: i64,
    ) -> CompletedTxn {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::new(producer_epoch, now_ms));
        if producer_epoch != entry.epoch {
            entry.epoch = producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = entry.coordinator_epoch.max(marker.coordinator_epoch);
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
        let first_offset = entry.current_txn_first_offset.take();
        if let Some(first_offset) = first_offset {
            self.ongoing.remove(&first_offset);
            self.unstable_completed.insert(first_offset, marker_offset);
        }
        CompletedTxn {
            producer_id,
            first_offset,
            marker_offset,
            commit: marker.commit,
        }
    }

    /// Records a batch found in the log (recovery, a follower's append): a marker ends a
    /// transaction, any other batch is recorded as appended. Returns the abort to index, if
    /// the batch was one.
    pub fn replay(
        &mut self,
        batch: &BatchInfo,
        base_offset: Offset,
        last_offset: Offset,
        now_ms: i64,
    ) -> Option<AbortedTxn> {
        if !batch.is_control() {
            self.record(batch, base_offset, last_offset, now_ms);
            return None;
        }
        let marker = batch.marker?;
        let completed = self.record_marker(
            batch.producer_id,
            batch.producer_epoch,
            marker,
            base_offset,
            now_ms,
        );
        self.aborted(completed)
    }

    /// The abort to index for a completed transaction (none for a commit, or a transaction
    /// that wrote nothing here), with the last stable offset as it stands once it completed.
    pub fn aborted(&self, completed: CompletedTxn) -> Option<AbortedTxn> {
        if completed.commit {
            return None;
        }
        let first_offset = completed.first_offset?;
        let last_stable_offset = self
            .ongoing
            .first_key_value()
            .map_or(completed.marker_offset.next(), |(&first, _)| first);
        Some(AbortedTxn {
            producer_id: completed.producer_id,
            first_offset,
            last_offset: completed.marker_offset,
            last_stable_offset,
        })
    }

    /// The first offset not yet stable given the high watermark: the oldest open transaction,
    /// or a completed one whose marker the high watermark has not passed. Forgets completed
    /// transactions the high watermark has passed.
    pub fn first_unstable_offset(&mut self, high_watermark: Offset) -> Option<Offset> {
        self.unstable_completed
            .retain(|_, &mut marker_offset| marker_offset >= high_watermark);
        let open = self.ongoing.first_key_value().map(|(&first, _)| first);
        let completed = self
            .unstable_completed
            .first_key_value()
            .map(|(&first, _)| first);
        match (open, completed) {
            (Some(open), Some(completed)) => Some(open.min(completed)),
            (open, completed) => open.or(completed),
        }
    }

    /// The first offset of a transaction still open, or decided by a marker at or past
    /// `end`, without forgetting anything (the cleaner's bound: [`Self::first_unstable_offset`]
    /// prunes by the high watermark, which only the engine knows).
    pub fn first_undecided_offset(&self, end: Offset) -> Option<Offset> {
        let open = self.ongoing.first_key_value().map(|(&first, _)| first);
        let completed = self
            .unstable_completed
            .iter()
            .filter(|(_, &marker_offset)| marker_offset >= end)
            .map(|(&first, _)| first)
            .min();
        match (open, completed) {
            (Some(open), Some(completed)) => Some(open.min(completed)),
            (open, completed) => open.or(completed),
        }
    }

    /// Drops the producers whose last batch was appended `expiration_ms` or longer before
    /// `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        // Never one whose transaction is open here (Kafka's `isProducerExpired`).
        self.producers.retain(|_, entry| {
            entry.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(entry.last_append_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Number of producer ids with state.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, base_sequence: i32, record_count: i32) -> BatchInfo {
        BatchInfo {
            record_count,
            last_offset_delta: record_count - 1,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            attributes: 0,
            max_timestamp: 0,
            first_timestamp: 0,
            batch_bytes: 100,
            base_offset: 0,
            partition_leader_epoch: 0,
            marker: None,
        }
    }

    fn append(table: &mut ProducerStateTable, info: &BatchInfo, base: i64) -> SequenceCheck {
        let check = table.check(info).unwrap();
        if check == SequenceCheck::Append {
            table.record(
                info,
                Offset(base),
                Offset(base + info.last_offset_delta as i64),
                base * 1000,
            );
        }
        check
    }

    #[test]
    fn producers_idle_past_the_expiration_are_dropped_and_then_start_anywhere() {
        let mut table = ProducerStateTable::default();
        append(&mut table, &batch(1, 0, 0, 1), 0); // appended at 0 ms
        append(&mut table, &batch(2, 0, 0, 1), 10); // at 10 s
        assert_eq!(table.expire(9_999, 10_000), 0);
        assert_eq!(table.expire(10_000, 10_000), 1);
        assert_eq!(table.producer_count(), 1);
        // Producer 1 is unknown again: any sequence is accepted.
        assert_eq!(
            table.check(&batch(1, 0, 42, 1)).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(
            table.check(&batch(2, 0, 42, 1)).unwrap_err().to_string(),
            StorageError::OutOfOrderSequence.to_string()
        );
    }

    #[test]
    fn unknown_producers_start_anywhere_and_then_must_be_contiguous() {
        let mut table = ProducerStateTable::default();
        assert_eq!(
            append(&mut table, &batch(1, 0, 42, 3), 0),
            SequenceCheck::Append
        );
        assert_eq!(
            append(&mut table, &batch(1, 0, 45, 2), 3),
            SequenceCheck::Append
        );
        assert!(matches!(
            table.check(&batch(1, 0, 48, 1)),
            Err(StorageError::OutOfOrderSequence)
        ));
        assert!(matches!(
            table.check(&batch(1, 0, 46, 1)),
            Err(StorageError::OutOfOrderSequence)
        ));
        assert_eq!(
            table.check(&batch(-1, -1, -1, 1)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn duplicates_of_the_last_five_batches_return_their_offsets() {
        let mut table = ProducerStateTable::default();
        for index in 0..7 {
            append(&mut table, &batch(9, 2, index * 2, 2), index as i64 * 2);
        }
        // Batches 2..=6 are retained, 0 and 1 are not.
        assert_eq!(
            table.check(&batch(9, 2, 4, 2)).unwrap(),
            SequenceCheck::Duplicate {
                base_offset: Offset(4),
                last_offset: Offset(5)
            }
        );
        assert_eq!(
            table.check(&batch(9, 2, 12, 2)).unwrap(),
            SequenceCheck::Duplicate {
                base_offset: Offset(12),
                last_offset: Offset(13)
            }
        );
        assert!(matches!(
            table.check(&batch(9, 2, 2, 2)),
            Err(StorageError::OutOfOrderSequence)
        ));
        // Same first sequence but a different range is not a duplicate.
        assert!(matches!(
            table.check(&batch(9, 2, 12, 3)),
            Err(StorageError::OutOfOrderSequence)
        ));
    }

    #[test]
    fn epochs_fence_old_producers_and_restart_sequences() {
        let mut table = ProducerStateTable::default();
        append(&mut table, &batch(3, 5, 0, 10), 0);
        assert!(matches!(
            table.check(&batch(3, 4, 10, 1)),
            Err(StorageError::InvalidProducerEpoch)
        ));
        assert!(matches!(
            table.check(&batch(3, 6, 10, 1)),
            Err(StorageError::OutOfOrderSequence)
        ));
        assert_eq!(
            append(&mut table, &batch(3, 6, 0, 1), 10),
            SequenceCheck::Append
        );
        assert!(matches!(
            table.check(&batch(3, 5, 10, 1)),
            Err(StorageError::InvalidProducerEpoch)
        ));
        assert_eq!(
            table.check(&batch(3, 6, 1, 1)).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(table.producer_count(), 1);
    }

    #[test]
    fn sequences_wrap_to_zero_after_i32_max() {
        let mut table = ProducerStateTable::default();
        append(&mut table, &batch(4, 0, i32::MAX - 1, 2), 0);
        assert_eq!(
            table.check(&batch(4, 0, 0, 5)).unwrap(),
            SequenceCheck::Append
        );
        // A batch that itself wraps.
        let mut wrap = ProducerStateTable::default();
        append(&mut wrap, &batch(4, 0, i32::MAX - 1, 4), 0);
        assert_eq!(
            wrap.check(&batch(4, 0, 2, 1)).unwrap(),
            SequenceCheck::Append
        );
        assert!(matches!(
            wrap.check(&batch(4, 0, i32::MAX - 1, 4)).unwrap(),
            SequenceCheck::Duplicate { .. }
        ));
    }
}
