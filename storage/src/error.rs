//! The operating errors of the storage crate. Bugs are `assert!`s, not variants here.

use crate::Offset;

/// Why a client-sent record batch was refused. The batch is not appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The bytes are damaged: truncated, a `batchLength` that disagrees with the bytes received,
    /// or a CRC-32C mismatch. The engine answers `CORRUPT_MESSAGE` (2).
    #[error("corrupt record batch: {0}")]
    Corrupt(&'static str),
    /// The bytes are intact but break the rules for a producer's batch: magic other than 2,
    /// more than one batch, a record count that disagrees with `lastOffsetDelta`, the control
    /// bit set, an unknown compression codec, or a producer id without a sequence. The engine
    /// answers `INVALID_RECORD` (87), or `CORRUPT_MESSAGE` for Produce below v8.
    #[error("invalid record batch: {0}")]
    InvalidRecord(&'static str),
    /// Some records of an intact batch break a rule of the topic (keyless records on a
    /// compacted topic). The engine answers `INVALID_RECORD` (87) with KIP-467's
    /// `record_errors`, one per refused record, so that clients fail exactly those.
    #[error("invalid records {records:?}: {reason}")]
    InvalidRecords {
        /// Why.
        reason: &'static str,
        /// The refused records' indexes in the batch (0 is its first record).
        records: Vec<i32>,
    },
    /// The batch is larger than the topic's `max.message.bytes`. The engine answers
    /// `MESSAGE_TOO_LARGE` (10).
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge {
        /// Size of the batch received, in bytes.
        size: usize,
        /// The limit in force.
        max: u32,
    },
}

/// Errors of [`crate::PartitionLog`] operations.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The batch was refused before anything was appended; see [`BatchError`] for the error
    /// code to answer.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// An idempotent producer sent a sequence number that does not follow its last batch (a
    /// gap, or a retry older than the five batches kept). The engine answers
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER` (45); nothing was appended.
    #[error("out of order sequence number")]
    OutOfOrderSequence,
    /// An idempotent producer sent an epoch older than the one this partition has seen: it was
    /// fenced by a newer instance. The engine answers `INVALID_PRODUCER_EPOCH` (47).
    #[error("producer epoch is older than the current one")]
    InvalidProducerEpoch,
    /// A transactional producer sent a batch outside a transaction while its transaction is
    /// open in this partition. The engine answers `INVALID_TXN_STATE` (48).
    #[error("a non-transactional batch from a producer whose transaction is open")]
    InvalidTxnState,
    /// A transaction marker came from a coordinator older than the one that wrote this
    /// producer's last marker. The engine answers `TRANSACTION_COORDINATOR_FENCED` (52).
    #[error("transaction marker from a fenced coordinator")]
    CoordinatorFenced,
    /// A read asked for an offset below the log start or above the durable end (or a
    /// DeleteRecords above it). The engine answers `OFFSET_OUT_OF_RANGE` (1).
    #[error("offset {requested} out of range [{log_start}, {durable_end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: Offset,
        /// The first offset still in the log.
        log_start: Offset,
        /// The durable end when the read was made (for a partition, the high watermark
        /// bounds it).
        durable_end: Offset,
    },
    /// A replicated batch ([`crate::PartitionLog::append_replicated`]) does not start where
    /// the log ends (or does not follow the batch before it): nothing was appended. The
    /// follower fetches again from the log end, or truncates first if it holds offsets the
    /// leader does not.
    #[error("replicated batch starts at offset {received}, expected {expected}")]
    UnexpectedAppendOffset {
        /// The offset the batch had to start at: the log end, or the offset after the
        /// previous batch.
        expected: Offset,
        /// The batch's base offset.
        received: Offset,
    },
    /// The log is being truncated ([`crate::PartitionLog::truncate_to`],
    /// [`crate::PartitionLog::truncate_fully_and_start_at`]): nothing was appended. Retriable
    /// once the truncation returns. Only a follower truncates, and only its fetcher appends
    /// to it (after awaiting the truncation), so a producer meeting this sent to a replica
    /// that is not the leader: the engine answers `NOT_LEADER_OR_FOLLOWER` (6).
    #[error("partition log is being truncated")]
    Truncating,
    /// The log is closing, closed or deleted. The engine answers `NOT_LEADER_OR_FOLLOWER` (6)
    /// so that the client refreshes its metadata.
    #[error("partition log is closed")]
    Closed,
    /// The disk failed us (write, sync, read, open). A failed write or `fdatasync` leaves the
    /// log unable to keep its durability promise: every later append and `wait_durable` returns
    /// this error too (KAFKA_STORAGE_ERROR to clients). A log that failed for lack of space is
    /// reopened by the engine once space is back (`PartitionLog::recoverable_failure`).
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}
