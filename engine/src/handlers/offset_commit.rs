//! OffsetCommit (key 8): a group's consumed positions, made durable in `__consumer_offsets`.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::group_common::check_coordinator;
use super::{ApiSpec, RequestContext};
use crate::groups::offsets_topic::OffsetValue;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::OffsetCommit, 2, 9);

/// Commits every partition of the request, or fails them all with the group's error. A
/// partition that does not exist gets UNKNOWN_TOPIC_OR_PARTITION, as in Kafka, and is not
/// committed.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let now_ms = spate_net::records::now_ms();
    let offsets: Vec<(String, i32, OffsetValue)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(move |partition| {
                let value = OffsetValue {
                    offset: partition.committed_offset,
                    leader_epoch: partition.committed_leader_epoch,
                    metadata: partition
                        .committed_metadata
                        .as_deref()
                        .unwrap_or("")
                        .to_string(),
                    commit_timestamp_ms: now_ms,
                };
                (topic.name.0.to_string(), partition.partition_index, value)
            })
        })
        .collect();
    let image = shard.image();
    let exists: Vec<bool> = offsets
        .iter()
        .map(|(topic, partition, _)| {
            image
                .topic(topic)
                .is_some_and(|topic| topic.partition(*partition).is_some())
        })
        .collect();
    let offsets: Vec<(String, i32, OffsetValue)> = offsets
        .into_iter()
        .zip(&exists)
        .filter_map(|(offset, exists)| exists.then_some(offset))
        .collect();
    let codes = match check_coordinator(shard, &request.group_id) {
        Err(error_code) => vec![error_code; offsets.len()],
        Ok(()) if offsets.is_empty() => Vec::new(),
        Ok(()) => {
            let member = (
                &*request.member_id,
                request.group_instance_id.as_deref(),
                request.generation_id_or_member_epoch,
            );
            match shard
                .groups
                .commit(shard, &request.group_id, member, context.version, offsets)
                .await
            {
                Ok(codes) => codes,
                Err(error_code) => vec![error_code; exists.iter().filter(|e| **e).count()],
            }
        }
    };
    let mut committed = codes.into_iter();
    let mut codes = exists.into_iter().map(|exists| {
        if exists {
            committed.next().unwrap_or(0)
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        }
    });
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
