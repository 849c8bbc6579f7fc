//! Appends of batches whose offsets a leader assigned elsewhere: what a Kafka follower does
//! with the batches it fetched (`UnifiedLog.appendAsFollower`).
//!
//! A follower's copy of the log must be byte for byte the leader's: the batches are stored as
//! received, `baseOffset` and `partitionLeaderEpoch` included, and go through the same
//! pending buffer, roll rules, indexes, tail cache and group commit as a producer's batch
//! (`appender::BatchToAppend`). What differs is the checking:
//! - every batch is checked before any is appended (all or nothing): an intact v2 header,
//!   the CRC-32C, `max.message.bytes`, and offsets that continue the log exactly (the first
//!   batch starts at the log end, each next one right after the previous one's last offset);
//! - producer rules are not applied (a leader already did, and Kafka does not validate
//!   sequences on replication): control batches and compacted batches (fewer records than
//!   offsets) are legal, and every idempotent batch is recorded in the producer state without
//!   a check, so that this replica recognises retries once it leads;
//! - a batch whose `partitionLeaderEpoch` is newer than the latest epoch known starts that
//!   epoch at its base offset, so the flusher writes the leader-epoch-checkpoint before the
//!   group commit that makes it durable, as for a leader's own appends.
//!
//! Offsets must be contiguous, where Kafka also accepts gaps above the log end (a leader's
//! compacted segments): recovery walks the active segment expecting the next offset after
//! each batch, so a gap there would cut the log at the next restart.

use crate::appender::{BatchBytes, BatchToAppend};
use crate::batch::{self, BatchInfo, StoredBatch, HEADER_BYTES};
use crate::error::{BatchError, StorageError};
use crate::log::{Appended, LogState, PartitionLog, Status};
use crate::Offset;

impl PartitionLog {
    /// Appends `records`, one or more whole stored batches exactly as a leader sent them (its
    /// offsets, its epochs, not rewritten), after checking all of them (see the module docs):
    /// nothing is appended if one is refused. Returns at once with the first batch's base
    /// offset and the last batch's last offset (`duplicate` and `in_place` false,
    /// `log_append_time_ms` `None`); [`Self::wait_durable`] as for [`Self::append`].
    ///
    /// Errors: `Batch(Corrupt)` for bytes that are not intact batches (or no batch at all),
    /// `Batch(TooLarge)` past `max.message.bytes`, `UnexpectedAppendOffset` when the offsets
    /// do not continue the log (the follower fetches again from the log end, or truncates),
    /// `Truncating` while a truncation runs, `Closed`, and the log's `Io` failure.
    pub fn append_replicated(&self, records: &[u8]) -> Result<Appended, StorageError> {
        let config = self.shared.config.get();
        let mut state = self.shared.state.borrow_mut();
        check_open(&state)?;
        let batches = check_replicated_batches(records, state.log_end, config.max_message_bytes)?;
        let (Some(first), Some(last)) = (batches.first(), batches.last()) else {
            unreachable!("checking refuses records without a batch")
        };
        let appended = Appended {
            base_offset: Offset(first.base_offset),
            last_offset: Offset(last.last_offset()),
            duplicate: false,
            log_append_time_ms: None,
            in_place: false,
        };
        let now_ms = crate::now_ms();
        let mut position = 0;
        for info in &batches {
            let bytes = &records[position..position + info.batch_bytes];
            position += info.batch_bytes;
            let Some(header) = batch::copy_header(&[bytes]) else {
                unreachable!("a checked batch has a header")
            };
            let base_offset = Offset(info.base_offset);
            let last_offset = Offset(info.last_offset());
            let to_append = BatchToAppend {
                bytes: BatchBytes::Slices {
                    header: &header,
                    body: &bytes[HEADER_BYTES..],
                },
                base_offset,
                last_offset,
                max_timestamp: info.max_timestamp,
                now_ms,
            };
            state.append_to_segment(to_append, &config);
            // The leader's markers end transactions here too (see `txn`).
            if let Some(aborted) = state
                .producers
                .replay(info, base_offset, last_offset, now_ms)
            {
                state.aborted.push(aborted);
            }
            // A leader's log holds batches of every epoch it kept: only a newer one starts.
            state
                .epochs
                .assign_if_newer(info.partition_leader_epoch, base_offset);
            state.log_end = last_offset.next();
        }
        assert_eq!(position, records.len());
        assert_eq!(state.log_end, appended.last_offset.next());
        state.wake_flusher();
        Ok(appended)
    }
}

/// Refuses appends to a log that failed, is closing or is being truncated.
pub(crate) fn check_open(state: &LogState) -> Result<(), StorageError> {
    if let Some(failure) = &state.failure {
        return Err(StorageError::Io(failure.to_error()));
    }
    if state.status != Status::Open {
        return Err(StorageError::Closed);
    }
    if state.truncating {
        return Err(StorageError::Truncating);
    }
    Ok(())
}

/// Checks that `records` is a sequence of intact batches continuing the log at `log_end`;
/// returns them in order. One allocation per call, not per batch beyond the vector's growth.
fn check_replicated_batches(
    mut records: &[u8],
    log_end: Offset,
    max_message_bytes: u32,
) -> Result<Vec<BatchInfo>, StorageError> {
    let mut batches = Vec::new();
    let mut expected = log_end;
    while !records.is_empty() {
        let info = match batch::peek_stored_batch(records) {
            StoredBatch::Complete(info) => info,
            StoredBatch::Incomplete { .. } => {
                return Err(BatchError::Corrupt("replicated records end inside a batch").into())
            }
            StoredBatch::Invalid => {
                return Err(
                    BatchError::Corrupt("replicated batch has a bad header, magic or CRC").into(),
                )
            }
        };
        if info.batch_bytes > max_message_bytes as usize {
            return Err(BatchError::TooLarge {
                size: info.batch_bytes,
                max: max_message_bytes,
            }
            .into());
        }
        if info.base_offset != expected.0 {
            return Err(StorageError::UnexpectedAppendOffset {
                expected,
                received: Offset(info.base_offset),
            });
        }
        expected = Offset(info.last_offset()).next();
        records = &records[info.batch_bytes..];
        batches.push(info);
    }
    if batches.is_empty() {
        return Err(BatchError::Corrupt("replicated records hold no batch").into());
    }
    Ok(batches)
}

#[cfg(test)]
#[path = "replica_tests.rs"]
pub(crate) mod tests;
