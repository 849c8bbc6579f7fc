//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch, which consumers use to
//! detect log truncation. The partition answers from its leader epochs
//! (`Partition::end_offset_for_epoch`).

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::errors::partition_error_code;
use super::{ApiSpec, RequestContext};
use crate::partition::LeaderEpoch;
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;
use spate_net::error_code::TOPIC_AUTHORIZATION_FAILED;

/// Served versions (librdkafka sends exactly v2).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::OffsetForLeaderEpoch, 2, 4);

/// Kafka's "no such epoch" answer.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// Answers each partition with the end offset of the requested epoch.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    // A follower (replica_id >= 0, v3+) needs CLUSTER_ACTION, a consumer DESCRIBE on the topic.
    let access = Access::new(shard, context);
    let follower_allowed = request.replica_id.0 < 0 || access.cluster(AclOperation::ClusterAction);
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic_request in request.topics {
        let mut partitions = Vec::with_capacity(topic_request.partitions.len());
        let allowed = follower_allowed
            && (request.replica_id.0 >= 0
                || access.topic(&topic_request.topic.0, AclOperation::Describe));
        for partition in topic_request.partitions {
            let index = partition.partition;
            let answer = EpochEndOffset::default()
                .with_partition(index)
                .with_leader_epoch(UNDEFINED_EPOCH)
                .with_end_offset(UNDEFINED_EPOCH_OFFSET);
            if !allowed {
                partitions.push(answer.with_error_code(TOPIC_AUTHORIZATION_FAILED));
                continue;
            }
            let answer = match shard
                .partitions
                .leader(
                    &topic_request.topic.0,
                    index,
                    partition.current_leader_epoch,
                )
                .await
            {
                Ok(leader) => {
                    match leader.end_offset_for_epoch(LeaderEpoch(partition.leader_epoch)) {
                        Some((epoch, end_offset)) => answer
                            .with_leader_epoch(epoch.0)
                            .with_end_offset(end_offset.0),
                        None => answer,
                    }
                }
                Err(error) => answer.with_error_code(partition_error_code(&error, context.version)),
            };
            partitions.push(answer);
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic_request.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
