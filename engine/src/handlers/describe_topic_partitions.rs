//! DescribeTopicPartitions (key 75, KIP-966): Metadata's description of topics and their
//! partitions, paginated for clusters with many partitions. Topics go in name order, at
//! most `response_partition_limit` partitions per response (and never more than
//! [`PARTITION_LIMIT`], Kafka's `max.request.partition.size.limit`); when a response stops
//! short, `next_cursor` names the topic and partition the next request starts from. An empty
//! topic list means every topic. Kafka's admin client (`describeTopics`) and tools such as
//! Kafka UI use it in place of Metadata.
//!
//! Partitions are described exactly as Metadata describes them (`metadata::describe_topic`);
//! Spate keeps no eligible leader replicas (KIP-966's ELR), so those lists are empty.

use std::rc::Rc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::metadata::{describe_topic, fenced_node};
use super::{ApiSpec, RequestContext};
use crate::security::acl::{self, AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DescribeTopicPartitions, 0, 0);

/// The most partitions one response describes, whatever the request asks (Kafka's
/// `max.request.partition.size.limit` default).
pub const PARTITION_LIMIT: usize = 2000;

/// Describes the requested topics from the cursor on, up to the limit.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = shard.image();
    let access = Access::new(shard, context);
    let every_topic = request.topics.is_empty();
    // All topics: those the principal may DESCRIBE; by name: the others refused below.
    let mut names: Vec<String> = if every_topic {
        image
            .topics()
            .filter(|topic| {
                access.allows_quietly(ResourceType::Topic, &topic.name, AclOperation::Describe)
            })
            .map(|topic| topic.name.clone())
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|topic| topic.name.0.to_string())
            .collect()
    };
    names.sort();
    names.dedup();
    let (cursor_topic, mut first_partition) = match &request.cursor {
        None => (String::new(), 0),
        Some(cursor) => (cursor.topic_name.0.to_string(), cursor.partition_index),
    };
    // Kafka's checks: a cursor must name a requested topic and a real partition index.
    let cursor_is_valid = request.cursor.is_none()
        || (first_partition >= 0 && (every_topic || names.contains(&cursor_topic)));
    if !cursor_is_valid {
        let topics = names
            .iter()
            .map(|name| topic_error(name, ResponseError::InvalidRequest))
            .collect();
        return DescribeTopicPartitionsResponse::default().with_topics(topics);
    }
    let limit = usize::try_from(request.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, PARTITION_LIMIT);
    let mut remaining = limit;
    let fenced = fenced_node(shard);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names.iter().filter(|name| **name >= cursor_topic) {
        if remaining == 0 {
            next_cursor = Some(cursor(name, 0));
            break;
        }
        if !every_topic && !access.topic(name, AclOperation::Describe) {
            topics.push(topic_error(name, ResponseError::TopicAuthorizationFailed));
            continue;
        }
        let Some(topic) = image.topic(name) else {
            // Asked for by name and unknown; a topic deleted while paging all of them is
            // simply gone.
            if !every_topic {
                topics.push(topic_error(name, ResponseError::UnknownTopicOrPartition));
            }
            continue;
        };
        let described = describe_topic(
            &image,
            topic,
            access.operations(ResourceType::Topic, name),
            fenced,
        );
        let start = usize::try_from(first_partition).unwrap_or(0);
        first_partition = 0;
        let partitions: Vec<DescribeTopicPartitionsResponsePartition> = described
            .partitions
            .into_iter()
            .skip(start)
            .take(remaining)
            .map(|partition| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(partition.error_code)
                    .with_partition_index(partition.partition_index)
                    .with_leader_id(partition.leader_id)
                    .with_leader_epoch(partition.leader_epoch)
                    .with_replica_nodes(partition.replica_nodes)
                    .with_isr_nodes(partition.isr_nodes)
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(partition.offline_replicas)
            })
            .collect();
        remaining -= partitions.len();
        let next = start + partitions.len();
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(described.name)
                .with_topic_id(described.topic_id)
                .with_is_internal(described.is_internal)
                .with_partitions(partitions)
                .with_topic_authorized_operations(described.topic_authorized_operations),
        );
        if next < topic.partitions.len() {
            next_cursor = Some(cursor(name, next as i32));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_index(partition)
}

fn topic_error(name: &str, error: ResponseError) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(error.code())
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_topic_authorized_operations(acl::NOT_REQUESTED)
}
