//! Metadata (key 3): the node's shards as brokers, and topics with their partition leaders.
//!
//! Every shard is advertised as its own broker on its own port, and each partition's leader
//! is the shard that owns it, so clients send produce and fetch straight to the right
//! thread.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{ApiSpec, RequestContext};
use crate::acl;
use crate::catalog::{validate_topic_name, TopicMeta};
use crate::placement::{broker_id, ShardId};
use crate::shard::Shard;

/// Served versions (13 changes nothing we need; 12 is what PROTOCOL.md recommends).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::Metadata, 0, 12);

/// Describes the requested topics (all of them when the list is null, or empty at v0).
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: MetadataRequest,
) -> MetadataResponse {
    let catalog = shard.catalog();
    let requested: Option<Vec<String>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && context.version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .filter_map(|topic| topic.name.map(|name| name.0.to_string()))
                .collect(),
        ),
    };
    // Before v4 there is no flag and brokers create topics when configured to.
    let allow_create = context.version < 4 || request.allow_auto_topic_creation;
    let topic_operations = acl::if_requested(
        request.include_topic_authorized_operations,
        acl::topic_operations(),
    );
    let topics = match requested {
        None => catalog
            .topics
            .values()
            .map(|topic| describe_topic(shard, topic, topic_operations))
            .collect(),
        Some(names) => names
            .iter()
            .map(|name| match validate_topic_name(name) {
                Err(_) => topic_error(name, ResponseError::InvalidTopicException),
                Ok(()) => match shard.topic_or_create(name, allow_create) {
                    Some(topic) => describe_topic(shard, &topic, topic_operations),
                    None => topic_error(name, ResponseError::UnknownTopicOrPartition),
                },
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(brokers(shard))
        .with_cluster_id(Some(StrBytes::from_string(catalog.cluster_id.clone())))
        .with_controller_id(BrokerId(broker_id(shard.node.node_id(), ShardId(0))))
        .with_topics(topics)
        .with_cluster_authorized_operations(acl::if_requested(
            request.include_cluster_authorized_operations,
            acl::cluster_operations(),
        ))
}

/// Every shard of this node, as a broker.
pub fn brokers(shard: &Shard) -> Vec<MetadataResponseBroker> {
    let node = &shard.node;
    (0..node.shard_count)
        .map(|index| {
            let id = ShardId(index);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(broker_id(node.node_id(), id)))
                .with_host(StrBytes::from_string(node.config.advertised_host.clone()))
                .with_port(i32::from(node.shard_port(id)))
        })
        .collect()
}

fn describe_topic(
    shard: &Shard,
    topic: &TopicMeta,
    authorized_operations: i32,
) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|partition| {
            let leader = BrokerId(shard.node.leader_broker_id(&topic.name, partition));
            MetadataResponsePartition::default()
                .with_partition_index(partition)
                .with_leader_id(leader)
                .with_leader_epoch(crate::LEADER_EPOCH)
                .with_replica_nodes(vec![leader])
                .with_isr_nodes(vec![leader])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(authorized_operations)
}

fn topic_error(name: &str, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_topic_authorized_operations(acl::NOT_REQUESTED)
}
