//! DeleteRecords (key 21): moves each partition's log start offset up to the requested
//! offset (`-1` means the high watermark). Records below it become unreadable at once (a
//! fetch there gets OFFSET_OUT_OF_RANGE and consumers reset per their policy), the new start
//! is persisted before the answer, and segments wholly below it are deleted in the background.
//! The answer carries the new low watermark (the log start offset).

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};
use spate_storage::{Offset, StorageError};

use super::errors::partition_error_code;
use super::{ApiSpec, RequestContext};
use crate::partition::{Partition, PartitionError};
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;
use spate_net::error_code::TOPIC_AUTHORIZATION_FAILED;

/// Served versions (v2 is the flexible encoding).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DeleteRecords, 0, 2);

/// Kafka's `DeleteRecordsRequest.HIGH_WATERMARK`: delete everything below the high watermark.
const HIGH_WATERMARK: i64 = -1;
/// DeleteRecords carries no leader epoch.
const ANY_LEADER_EPOCH: i32 = -1;

/// Answers each partition.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let access = Access::new(shard, context);
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic_request in request.topics {
        let mut partitions = Vec::with_capacity(topic_request.partitions.len());
        let allowed = access.topic(&topic_request.name.0, AclOperation::Delete);
        for partition in topic_request.partitions {
            let index = partition.partition_index;
            let answer = DeleteRecordsPartitionResult::default()
                .with_partition_index(index)
                .with_low_watermark(-1);
            if !allowed {
                partitions.push(answer.with_error_code(TOPIC_AUTHORIZATION_FAILED));
                continue;
            }
            let result = match shard
                .partitions
                .leader(&topic_request.name.0, index, ANY_LEADER_EPOCH)
                .await
            {
                Ok(leader) => delete_before(&leader, partition.offset).await,
                Err(error) => Err(error),
            };
            let answer = match result {
                Ok(low_watermark) => answer.with_low_watermark(low_watermark.0),
                Err(error) => {
                    if let PartitionError::Storage(StorageError::Io(reason)) = &error {
                        tracing::error!(topic = %topic_request.name.0, partition = index, %reason, "DeleteRecords failed");
                    }
                    answer.with_error_code(partition_error_code(&error, context.version))
                }
            };
            partitions.push(answer);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic_request.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Moves the log start of one partition; returns the new low watermark.
async fn delete_before(partition: &Partition, offset: i64) -> Result<Offset, PartitionError> {
    let target = if offset == HIGH_WATERMARK {
        partition.high_watermark()
    } else {
        Offset(offset)
    };
    partition.delete_records_before(target).await
}
