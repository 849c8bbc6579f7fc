//! ListOffsets (key 2): earliest, latest, by timestamp, and max timestamp.
//!
//! Earliest and latest come from the log's offsets (earliest is the log start offset, which
//! retention and DeleteRecords move). Timestamp look-ups use the log's time index
//! (`PartitionLog::offset_for_timestamp`, `PartitionLog::max_timestamp`): the storage finds
//! the one batch that holds the answer and decodes it for the exact record.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use spate_storage::{PartitionLog, StorageError};

use super::errors::storage_error_code;
use super::{ApiSpec, RequestContext};
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::ListOffsets, 1, 7);

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// Answers each partition.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let catalog = shard.catalog();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic_request in request.topics {
        let mut partitions = Vec::with_capacity(topic_request.partitions.len());
        for partition in topic_request.partitions {
            let index = partition.partition_index;
            let answer = ListOffsetsPartitionResponse::default()
                .with_partition_index(index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let topic = catalog
                .topic(&topic_request.name.0)
                .filter(|topic| (0..topic.partitions).contains(&index));
            let answer = match topic {
                None => answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                Some(_) if !shard.owns(&topic_request.name.0, index) => {
                    answer.with_error_code(ResponseError::NotLeaderOrFollower.code())
                }
                Some(topic) => match super::offset_for_leader_epoch::check_leader_epoch(
                    partition.current_leader_epoch,
                ) {
                    Err(code) => answer.with_error_code(code),
                    Ok(()) => {
                        let result = match shard.log(topic, index).await {
                            Ok(log) => lookup(&log, partition.timestamp).await,
                            Err(error) => Err(error),
                        };
                        match result {
                            Ok(Some((offset, timestamp))) => answer
                                .with_offset(offset)
                                .with_timestamp(timestamp)
                                // The codec refuses a non-default epoch below v4, where the
                                // field does not exist.
                                .with_leader_epoch(if context.version >= 4 {
                                    crate::LEADER_EPOCH
                                } else {
                                    -1
                                }),
                            Ok(None) => answer,
                            Err(error) => {
                                answer.with_error_code(storage_error_code(&error, context.version))
                            }
                        }
                    }
                },
            };
            partitions.push(answer);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic_request.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The (offset, timestamp) answer for one partition, or `None` when no record qualifies.
async fn lookup(log: &PartitionLog, timestamp: i64) -> Result<Option<(i64, i64)>, StorageError> {
    let found = match timestamp {
        // No transactions yet: the last stable offset is the high watermark.
        LATEST => return Ok(Some((log.high_watermark().0, -1))),
        EARLIEST => return Ok(Some((log.log_start_offset().0, -1))),
        MAX_TIMESTAMP => log.max_timestamp().await?,
        target if target >= 0 => log.offset_for_timestamp(target).await?,
        _ => None,
    };
    Ok(found.map(|(offset, timestamp)| (offset.0, timestamp)))
}
