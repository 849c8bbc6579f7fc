//! OffsetCommit (key 8): a group's consumed positions, made durable in `__consumer_offsets`.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse};

use super::group_common::check_coordinator;
use super::{ApiSpec, RequestContext};
use crate::groups::offsets_topic::OffsetValue;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::OffsetCommit, 2, 9);

/// Commits every partition of the request, or fails them all with the group's error.
pub async fn handle(
    shard: &Rc<Shard>,
    _context: &RequestContext,
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
    let codes = match check_coordinator(shard, &request.group_id) {
        Err(error_code) => vec![error_code; offsets.len()],
        Ok(()) => {
            let member = (
                &*request.member_id,
                request.group_instance_id.as_deref(),
                request.generation_id_or_member_epoch,
            );
            match shard
                .groups
                .commit(shard, &request.group_id, member, offsets)
                .await
            {
                Ok(codes) => codes,
                Err(error_code) => vec![
                    error_code;
                    request
                        .topics
                        .iter()
                        .map(|topic| topic.partitions.len())
                        .sum()
                ],
            }
        }
    };
    let mut codes = codes.into_iter();
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
