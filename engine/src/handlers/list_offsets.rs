//! ListOffsets (key 2): earliest, latest, by timestamp, and max timestamp; from v8 the
//! earliest local offset (KIP-405), from v9 the latest tiered offset (KIP-1005). Spate has no
//! tiered storage, so the earliest local offset is the log start offset and the latest
//! tiered offset is none (-1), as Kafka answers for a topic without remote storage.
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

use super::errors::partition_error_code;
use super::{ApiSpec, RequestContext};
use crate::partition::{Partition, PartitionError};
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;
use spate_net::error_code::TOPIC_AUTHORIZATION_FAILED;

/// Served versions. v0 (removed in Kafka 4, still sent by Burrow and old Sarama tools) is
/// decoded and encoded by `spate_net::legacy` around this handler.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::ListOffsets, 0, 9);

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// KIP-405's EARLIEST_LOCAL_TIMESTAMP (v8+).
const EARLIEST_LOCAL: i64 = -4;
/// isolation_level value for read_committed (v2+).
const READ_COMMITTED: i8 = 1;

/// Answers each partition.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let access = Access::new(shard, context);
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic_request in request.topics {
        let mut partitions = Vec::with_capacity(topic_request.partitions.len());
        let described = access.topic(&topic_request.name.0, AclOperation::Describe);
        for partition in topic_request.partitions {
            let index = partition.partition_index;
            let answer = ListOffsetsPartitionResponse::default()
                .with_partition_index(index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            if !described {
                partitions.push(answer.with_error_code(TOPIC_AUTHORIZATION_FAILED));
                continue;
            }
            let found = match shard
                .partitions
                .leader(&topic_request.name.0, index, partition.current_leader_epoch)
                .await
            {
                Ok(leader) => lookup(&leader, partition.timestamp, request.isolation_level)
                    .await
                    .map(|found| (found, leader.leader_epoch().0)),
                Err(error) => Err(error),
            };
            let answer = match found {
                Ok((Some((offset, timestamp)), epoch)) => answer
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    // The codec refuses a non-default epoch below v4, where the field does
                    // not exist.
                    .with_leader_epoch(if context.version >= 4 { epoch } else { -1 }),
                Ok((None, _)) => answer,
                Err(error) => answer.with_error_code(partition_error_code(&error, context.version)),
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
async fn lookup(
    partition: &Partition,
    timestamp: i64,
    isolation_level: i8,
) -> Result<Option<(i64, i64)>, PartitionError> {
    let found = match timestamp {
        // read_committed consumers start at the last stable offset, others at the high
        // watermark.
        LATEST if isolation_level == READ_COMMITTED => {
            return Ok(Some((partition.last_stable_offset().0, -1)))
        }
        LATEST => return Ok(Some((partition.high_watermark().0, -1))),
        EARLIEST | EARLIEST_LOCAL => return Ok(Some((partition.log_start_offset().0, -1))),
        MAX_TIMESTAMP => partition.max_timestamp().await?,
        target if target >= 0 => partition.offset_for_timestamp(target).await?,
        // LATEST_TIERED (-5, v9+) among them: nothing is tiered.
        _ => None,
    };
    Ok(found.map(|(offset, timestamp)| (offset.0, timestamp)))
}
