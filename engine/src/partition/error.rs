//! Why a partition refused a request. One `match` in `handlers::errors` maps each variant to
//! its Kafka error code.

use spate_storage::StorageError;

/// See the module docs.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The topic does not exist, or has no partition of that index. The client refreshes its
    /// metadata (UNKNOWN_TOPIC_OR_PARTITION).
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// This shard does not lead the partition (NOT_LEADER_OR_FOLLOWER): the client asks
    /// Metadata where it lives now.
    #[error("this broker does not lead the partition")]
    NotLeaderOrFollower,
    /// The client's `current_leader_epoch` is older than the partition's: it talks to us
    /// with stale metadata (FENCED_LEADER_EPOCH).
    #[error("the client's leader epoch {client} is older than the partition's {ours}")]
    FencedLeaderEpoch {
        /// The client's epoch.
        client: i32,
        /// The partition's.
        ours: i32,
    },
    /// The client's `current_leader_epoch` is newer than the partition's: this broker has not
    /// caught up with the metadata yet (UNKNOWN_LEADER_EPOCH, retriable).
    #[error("the client's leader epoch {client} is newer than the partition's {ours}")]
    UnknownLeaderEpoch {
        /// The client's epoch.
        client: i32,
        /// The partition's.
        ours: i32,
    },
    /// DeleteRecords above the high watermark (OFFSET_OUT_OF_RANGE). Reads out of range come
    /// from the log as [`StorageError::OffsetOutOfRange`].
    #[error("offset {requested} out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: spate_storage::Offset,
        /// The first offset still in the log.
        log_start: spate_storage::Offset,
        /// The high watermark then.
        high_watermark: spate_storage::Offset,
    },
    /// An acks=all produce while the ISR is smaller than `min.insync.replicas`
    /// (NOT_ENOUGH_REPLICAS, retriable): nothing was appended.
    #[error("the ISR has {isr} replicas, fewer than min.insync.replicas {min_insync}")]
    NotEnoughReplicas {
        /// The ISR's size.
        isr: usize,
        /// `min.insync.replicas`.
        min_insync: usize,
    },
    /// An acks=all produce appended, after which the ISR shrank below
    /// `min.insync.replicas` (NOT_ENOUGH_REPLICAS_AFTER_APPEND, retriable).
    #[error("the ISR shrank to {isr} replicas, fewer than min.insync.replicas {min_insync}, after the append")]
    NotEnoughReplicasAfterAppend {
        /// The ISR's size.
        isr: usize,
        /// `min.insync.replicas`.
        min_insync: usize,
    },
    /// An acks=all produce not acknowledged within the request's timeout
    /// (REQUEST_TIMED_OUT): it was appended, and may still become visible.
    #[error("not replicated to the in-sync replicas within the timeout")]
    RequestTimedOut,
    /// A Produce's `acks` is not -1, 0 or 1 (INVALID_REQUIRED_ACKS).
    #[error("acks must be -1, 0 or 1, not {0}")]
    InvalidRequiredAcks(i16),
    /// The log refused or failed; see [`StorageError`] for the code.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
