//! OffsetDelete (key 47): removes a group's committed offsets for partitions it no longer
//! consumes (GROUP_SUBSCRIBED_TO_TOPIC for topics its members subscribe to).

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse};

use super::group_common::check_coordinator;
use super::{ApiSpec, RequestContext};
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::OffsetDelete, 0, 0);

/// Deletes the offsets.
pub async fn handle(
    shard: &Rc<Shard>,
    _context: &RequestContext,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |partition| (topic.name.0.to_string(), partition.partition_index))
        })
        .collect();
    let outcome = match check_coordinator(shard, &request.group_id) {
        Err(error_code) => Err(error_code),
        Ok(()) => {
            shard
                .groups
                .delete_offsets(shard, &request.group_id, &partitions)
                .await
        }
    };
    let codes = match outcome {
        Ok(codes) => codes,
        Err(error_code) => return OffsetDeleteResponse::default().with_error_code(error_code),
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
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
