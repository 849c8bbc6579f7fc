//! OffsetCommit (key 8): a group's consumed positions, made durable in `__consumer_offsets`.
//! The request needs READ on the group (else every partition is refused) and READ on each
//! topic (else that topic's partitions are); nothing refused is committed.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::group_common::{check_coordinator, is_refused, merge_codes, refused_topics};
use super::{ApiSpec, RequestContext};
use crate::groups::offsets_topic::OffsetValue;
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
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
    let refused = {
        let access = Access::new(shard, context);
        if !access.group(&request.group_id, AclOperation::Read) {
            let refused = ResponseError::GroupAuthorizationFailed.code();
            return answer(request.topics, std::iter::repeat(refused));
        }
        let names = request.topics.iter().map(|topic| &*topic.name.0);
        refused_topics(&access, names, AclOperation::Read)
    };
    let image = shard.image();
    let prechecks = prechecks(&request.topics, &refused, |topic, partition| {
        image.partition(topic, partition).is_some()
    });
    let now_ms = spate_net::records::now_ms();
    let offsets: Vec<(String, i32, OffsetValue)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |partition| (topic, partition))
        })
        .zip(&prechecks)
        .filter(|(_, precheck)| **precheck == 0)
        .map(|((topic, partition), _)| {
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
        .collect();
    let count = offsets.len();
    let committed = match check_coordinator(shard, &request.group_id) {
        Err(error_code) => vec![error_code; count],
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
                Err(error_code) => vec![error_code; count],
            }
        }
    };
    answer(request.topics, merge_codes(prechecks, committed))
}

/// Each partition's code before the coordinator sees it, in request order:
/// TOPIC_AUTHORIZATION_FAILED where `refused` (per topic) says so, then
/// UNKNOWN_TOPIC_OR_PARTITION where the partition does not `exist`, else 0: to commit.
fn prechecks(
    topics: &[OffsetCommitRequestTopic],
    refused: &[bool],
    exists: impl Fn(&str, i32) -> bool,
) -> Vec<i16> {
    let exists = &exists;
    topics
        .iter()
        .enumerate()
        .flat_map(|(index, topic)| {
            let refused = is_refused(refused, index);
            topic.partitions.iter().map(move |partition| {
                if refused {
                    ResponseError::TopicAuthorizationFailed.code()
                } else if exists(&topic.name.0, partition.partition_index) {
                    0
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                }
            })
        })
        .collect()
}

/// The response: the request's partitions with `codes`, in order.
fn answer(
    topics: Vec<OffsetCommitRequestTopic>,
    mut codes: impl Iterator<Item = i16>,
) -> OffsetCommitResponse {
    let topics = topics
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

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn topic(name: &'static str, partitions: &[i32]) -> OffsetCommitRequestTopic {
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&index| {
                        OffsetCommitRequestPartition::default().with_partition_index(index)
                    })
                    .collect(),
            )
    }

    #[test]
    fn refused_topics_are_kept_from_the_coordinator() {
        let topics = [
            topic("allowed", &[0, 1]),
            topic("secret", &[0]),
            topic("allowed", &[7]),
        ];
        let exists = |name: &str, partition: i32| name != "nowhere" && partition < 2;
        let prechecks = prechecks(&topics, &[false, true, false], exists);
        let topic_refused = ResponseError::TopicAuthorizationFailed.code();
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(prechecks, [0, 0, topic_refused, unknown]);
    }

    #[test]
    fn without_an_authorizer_only_existence_counts() {
        let topics = [topic("a", &[0, 5])];
        let prechecks = prechecks(&topics, &[], |_, partition| partition == 0);
        assert_eq!(
            prechecks,
            [0, ResponseError::UnknownTopicOrPartition.code()]
        );
    }

    #[test]
    fn a_refused_group_fails_every_partition() {
        let refused = ResponseError::GroupAuthorizationFailed.code();
        let response = answer(
            vec![topic("a", &[0, 1]), topic("b", &[3])],
            std::iter::repeat(refused),
        );
        let codes: Vec<(i32, i16)> = response
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .map(|partition| (partition.partition_index, partition.error_code))
            .collect();
        assert_eq!(codes, [(0, refused), (1, refused), (3, refused)]);
    }
}
