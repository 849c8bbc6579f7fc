//! The one place that maps Spate's operating errors to Kafka error codes.

use kafka_protocol::ResponseError;
use spate_storage::{BatchError, StorageError};

use crate::catalog::CatalogError;

/// Kafka's code for "no error".
pub const NONE: i16 = 0;

/// Kafka's code for a storage error.
pub fn storage_error_code(error: &StorageError, produce_version: i16) -> i16 {
    let code = match error {
        StorageError::Batch(BatchError::Corrupt(_)) => ResponseError::CorruptMessage,
        StorageError::Batch(BatchError::InvalidRecord(_)) if produce_version < 8 => {
            // INVALID_RECORD arrived with Produce v8; older clients know only CORRUPT_MESSAGE.
            ResponseError::CorruptMessage
        }
        StorageError::Batch(BatchError::InvalidRecord(_)) => ResponseError::InvalidRecord,
        StorageError::Batch(BatchError::TooLarge { .. }) => ResponseError::MessageTooLarge,
        StorageError::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Closed => ResponseError::NotLeaderOrFollower,
        StorageError::Io(_) => ResponseError::KafkaStorageError,
    };
    code.code()
}

/// Kafka's code for a catalog error.
pub fn catalog_error_code(error: &CatalogError) -> i16 {
    let code = match error {
        CatalogError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        CatalogError::UnknownTopic => ResponseError::UnknownTopicOrPartition,
        CatalogError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        CatalogError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        CatalogError::InvalidConfig(_) => ResponseError::InvalidConfig,
        CatalogError::Persist(_) => ResponseError::KafkaStorageError,
    };
    code.code()
}

/// The code for a Kafka error.
pub fn code(error: ResponseError) -> i16 {
    error.code()
}
