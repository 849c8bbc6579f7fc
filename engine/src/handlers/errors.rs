//! The one place that maps Spate's operating errors to Kafka error codes.

use kafka_protocol::ResponseError;
use spate_storage::{BatchError, StorageError};

use crate::metadata::controller::ControllerError;
use crate::partition::PartitionError;

/// Kafka's code for "no error".
pub use spate_net::error_code::NONE;

/// Kafka's code for a storage error. `produce_version` picks between codes that older
/// Produce versions do not know.
pub fn storage_error_code(error: &StorageError, produce_version: i16) -> i16 {
    let code = match error {
        StorageError::Batch(BatchError::Corrupt(_)) => ResponseError::CorruptMessage,
        StorageError::Batch(BatchError::InvalidRecord(_) | BatchError::InvalidRecords { .. })
            if produce_version < 8 =>
        {
            // INVALID_RECORD arrived with Produce v8; older clients know only CORRUPT_MESSAGE.
            ResponseError::CorruptMessage
        }
        StorageError::Batch(BatchError::InvalidRecord(_) | BatchError::InvalidRecords { .. }) => {
            ResponseError::InvalidRecord
        }
        StorageError::Batch(BatchError::TooLarge { .. }) => ResponseError::MessageTooLarge,
        StorageError::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        StorageError::InvalidTxnState => ResponseError::InvalidTxnState,
        StorageError::CoordinatorFenced => ResponseError::TransactionCoordinatorFenced,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Closed => ResponseError::NotLeaderOrFollower,
        // Only a replica that stopped leading truncates its log: retry at the leader.
        StorageError::Truncating => ResponseError::NotLeaderOrFollower,
        // A follower's append whose offsets do not continue its log: the follower's
        // fetcher handles it; no client's request reaches it.
        StorageError::UnexpectedAppendOffset { .. } => ResponseError::UnknownServerError,
        StorageError::Io(_) => ResponseError::KafkaStorageError,
    };
    code.code()
}

/// Kafka's code for a partition's refusal; `version` is the request's (see
/// [`storage_error_code`]).
pub fn partition_error_code(error: &PartitionError, version: i16) -> i16 {
    let code = match error {
        PartitionError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        PartitionError::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
        PartitionError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
        PartitionError::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch,
        PartitionError::InvalidRequiredAcks(_) => ResponseError::InvalidRequiredAcks,
        PartitionError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        PartitionError::NotEnoughReplicasAfterAppend { .. } => {
            ResponseError::NotEnoughReplicasAfterAppend
        }
        PartitionError::RequestTimedOut => ResponseError::RequestTimedOut,
        PartitionError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        PartitionError::Storage(error) => return storage_error_code(error, version),
    };
    code.code()
}

/// Kafka's code for a controller's refusal.
pub fn controller_error_code(error: &ControllerError) -> i16 {
    let code = match error {
        ControllerError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        ControllerError::UnknownTopic => ResponseError::UnknownTopicOrPartition,
        ControllerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        ControllerError::InvalidConfig(_) => ResponseError::InvalidConfig,
        ControllerError::PolicyViolation(_) => ResponseError::PolicyViolation,
        ControllerError::InternalTopic(_) => ResponseError::InvalidRequest,
        ControllerError::NotDurable(_) => ResponseError::KafkaStorageError,
        ControllerError::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
        ControllerError::InvalidUpdateVersion { .. } => ResponseError::InvalidUpdateVersion,
        ControllerError::IneligibleReplica(_) => ResponseError::IneligibleReplica,
        ControllerError::ElectionNotNeeded => ResponseError::ElectionNotNeeded,
        ControllerError::PreferredLeaderNotAvailable => ResponseError::PreferredLeaderNotAvailable,
        ControllerError::EligibleLeadersNotAvailable => ResponseError::EligibleLeadersNotAvailable,
        ControllerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        ControllerError::NoReassignmentInProgress => ResponseError::NoReassignmentInProgress,
        ControllerError::ResourceNotFound(_) => ResponseError::ResourceNotFound,
        ControllerError::Unavailable | ControllerError::NotController { .. } => {
            ResponseError::NotController
        }
    };
    code.code()
}

/// The code for a Kafka error.
pub fn code(error: ResponseError) -> i16 {
    error.code()
}

/// PRODUCER_FENCED (KIP-588) as a request of `version` can hear it: versions before
/// `since`, the first that knows it, hear INVALID_PRODUCER_EPOCH, as Kafka answers them.
pub fn fenced_for_version(code: i16, version: i16, since: i16) -> i16 {
    if code == ResponseError::ProducerFenced.code() && version < since {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    }
}
