//! OffsetDelete (key 47): removes a group's committed offsets for partitions it no longer
//! consumes (GROUP_SUBSCRIBED_TO_TOPIC for topics its members subscribe to). The request
//! needs DELETE on the group (else the top-level error) and READ on each topic (else that
//! topic's partitions are refused and keep their offsets).

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;

use super::group_common::{check_group, is_refused, merge_codes, refused_topics};
use super::{ApiSpec, RequestContext};
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::OffsetDelete, 0, 0);

/// Deletes the offsets.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    if let Err(error_code) = check_group(shard, context, &request.group_id, AclOperation::Delete) {
        return OffsetDeleteResponse::default().with_error_code(error_code);
    }
    let refused = refused_topics(
        &Access::new(shard, context),
        request.topics.iter().map(|topic| &*topic.name.0),
        AclOperation::Read,
    );
    // Per partition: TOPIC_AUTHORIZATION_FAILED, or 0 for those handed to the coordinator.
    let refusals: Vec<i16> = request
        .topics
        .iter()
        .enumerate()
        .flat_map(|(index, topic)| {
            let refusal = if is_refused(&refused, index) {
                ResponseError::TopicAuthorizationFailed.code()
            } else {
                0
            };
            std::iter::repeat_n(refusal, topic.partitions.len())
        })
        .collect();
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .enumerate()
        .filter(|(index, _)| !is_refused(&refused, *index))
        .flat_map(|(_, topic)| {
            topic
                .partitions
                .iter()
                .map(move |partition| (topic.name.0.to_string(), partition.partition_index))
        })
        .collect();
    let codes = match shard
        .groups
        .delete_offsets(shard, &request.group_id, &partitions)
        .await
    {
        Ok(codes) => codes,
        Err(error_code) => return OffsetDeleteResponse::default().with_error_code(error_code),
    };
    let mut codes = merge_codes(refusals, codes);
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
