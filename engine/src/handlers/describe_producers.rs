//! DescribeProducers (key 61, KIP-664): the producers a partition's leader remembers, with
//! their epoch, last sequence, last write, the epoch of the coordinator that wrote their last
//! marker and, for a producer with a transaction open there, the transaction's first offset.
//! An open transaction whose coordinator no longer knows it is a "hanging" one: it holds the
//! last stable offset back for every read_committed consumer, and `spate txn abort` ends it
//! with a marker written as its coordinator would (`cli::txn`).
//!
//! Kafka's checks, in its order: READ on the topic (TOPIC_AUTHORIZATION_FAILED), a partition
//! that exists (UNKNOWN_TOPIC_OR_PARTITION), led here (NOT_LEADER_OR_FOLLOWER).

use std::rc::Rc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, ProducerId,
};
use kafka_protocol::ResponseError;

use super::errors::partition_error_code;
use super::{ApiSpec, RequestContext};
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DescribeProducers, 0, 0);

/// DescribeProducers carries no leader epoch.
const ANY_LEADER_EPOCH: i32 = -1;

/// Describes the producers of each partition of the request.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let access = Access::new(shard, context);
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let allowed = access.topic(&name, AclOperation::Read);
        let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
        for index in topic.partition_indexes {
            let answer = PartitionResponse::default().with_partition_index(index);
            if !allowed {
                partitions
                    .push(answer.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let partition = match shard
                .partitions
                .leader(&name, index, ANY_LEADER_EPOCH)
                .await
            {
                Ok(partition) => partition,
                Err(error) => {
                    partitions.push(
                        answer.with_error_code(partition_error_code(&error, context.version)),
                    );
                    continue;
                }
            };
            let producers = partition
                .log()
                .active_producers()
                .into_iter()
                .map(|producer| {
                    ProducerState::default()
                        .with_producer_id(ProducerId(producer.producer_id))
                        .with_producer_epoch(i32::from(producer.epoch))
                        .with_last_sequence(producer.last_sequence)
                        .with_last_timestamp(producer.last_append_ms)
                        .with_coordinator_epoch(producer.coordinator_epoch)
                        .with_current_txn_start_offset(
                            producer
                                .current_txn_first_offset
                                .map_or(-1, |offset| offset.0),
                        )
                })
                .collect();
            partitions.push(answer.with_active_producers(producers));
        }
        topics.push(
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}
