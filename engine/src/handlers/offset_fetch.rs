//! OffsetFetch (key 9): a group's committed offsets (-1 where none), for one group (v1-7)
//! or several (v8+). Each group needs DESCRIBE (else GROUP_AUTHORIZATION_FAILED for it), and
//! each topic too: a named one without it answers TOPIC_AUTHORIZATION_FAILED per partition,
//! and a fetch of every offset leaves it out, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::group_common::{check_group, is_refused};
use super::{ApiSpec, RequestContext};
use crate::groups::coordinator::CommittedByTopic;
use crate::groups::offsets_topic::OffsetValue;
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::OffsetFetch, 1, 9);

/// Looks up committed offsets.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if context.version >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|group| {
                let topics = group.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|topic| (topic.name.0.to_string(), topic.partition_indexes.clone()))
                        .collect::<Vec<_>>()
                });
                let (mut error_code, mut committed, refused) =
                    lookup(shard, context, &group.group_id, topics.as_deref());
                // v9: a KIP-848 member fetches at its member epoch.
                if error_code == 0 {
                    error_code = shard.groups.check_fetch(
                        &group.group_id,
                        group.member_id.as_deref(),
                        group.member_epoch,
                    );
                    if error_code != 0 {
                        committed = Vec::new();
                    }
                }
                let unstable = unstable_check(shard, &group.group_id, request.require_stable);
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id.clone())
                    .with_error_code(error_code)
                    .with_topics(
                        committed
                            .into_iter()
                            .enumerate()
                            .map(|(index, (topic, partitions))| {
                                let error_code = topic_error(&refused, index, 0);
                                topic_v8(topic, partitions, error_code, &unstable)
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|topic| (topic.name.0.to_string(), topic.partition_indexes.clone()))
            .collect::<Vec<_>>()
    });
    let (error_code, committed, refused) =
        lookup(shard, context, &request.group_id, topics.as_deref());
    let unstable = unstable_check(shard, &request.group_id, request.require_stable);
    OffsetFetchResponse::default()
        .with_error_code(if context.version >= 2 { error_code } else { 0 })
        .with_topics(
            committed
                .into_iter()
                .enumerate()
                .map(|(index, (topic, partitions))| {
                    let error_code = topic_error(&refused, index, error_code);
                    topic_v1(topic, partitions, error_code, &unstable)
                })
                .collect(),
        )
}

/// A group's committed offsets, or its error with every named partition at -1; with the
/// flags of [`hide_refused`].
fn lookup(
    shard: &Shard,
    context: &RequestContext,
    group_id: &GroupId,
    topics: Option<&[(String, Vec<i32>)]>,
) -> (i16, CommittedByTopic, Vec<bool>) {
    match check_group(shard, context, group_id, AclOperation::Describe) {
        Err(error_code) => {
            let empty = topics.map(|topics| {
                topics
                    .iter()
                    .map(|(topic, partitions)| {
                        (
                            topic.clone(),
                            partitions
                                .iter()
                                .map(|partition| (*partition, None))
                                .collect(),
                        )
                    })
                    .collect()
            });
            (error_code, empty.unwrap_or_default(), Vec::new())
        }
        Ok(()) => {
            let mut committed = shard.groups.committed(group_id, topics);
            let access = Access::new(shard, context);
            let refused = if access.enabled() {
                hide_refused(&mut committed, topics.is_some(), |topic| {
                    access.topic(topic, AclOperation::Describe)
                })
            } else {
                Vec::new()
            };
            (0, committed, refused)
        }
    }
}

/// Hides the offsets of topics the request may not DESCRIBE: named ones keep their
/// partitions, without offsets, and are flagged (in `committed`'s order) to answer
/// TOPIC_AUTHORIZATION_FAILED; when every offset was asked for, they are left out.
fn hide_refused(
    committed: &mut CommittedByTopic,
    named: bool,
    may_describe: impl Fn(&str) -> bool,
) -> Vec<bool> {
    if !named {
        committed.retain(|(topic, _)| may_describe(topic));
        return Vec::new();
    }
    committed
        .iter_mut()
        .map(|(topic, partitions)| {
            let refused = !may_describe(topic);
            if refused {
                partitions.iter_mut().for_each(|(_, value)| *value = None);
            }
            refused
        })
        .collect()
}

/// A topic's partition error: TOPIC_AUTHORIZATION_FAILED if [`hide_refused`] flagged it,
/// else `otherwise`.
fn topic_error(refused: &[bool], index: usize, otherwise: i16) -> i16 {
    if is_refused(refused, index) {
        ResponseError::TopicAuthorizationFailed.code()
    } else {
        otherwise
    }
}

/// With `require_stable` (v7+, KIP-447: a read_committed consumer), whether a partition's
/// offset is held by an open transaction of the group (a TxnOffsetCommit whose marker has not
/// arrived): it answers UNSTABLE_OFFSET_COMMIT, which the client retries, rather than an
/// offset the transaction is about to replace.
fn unstable_check<'a>(
    shard: &'a Shard,
    group_id: &'a str,
    require_stable: bool,
) -> impl Fn(&str, i32) -> bool + 'a {
    move |topic, partition| {
        require_stable
            && shard
                .groups
                .has_pending_txn_offset(group_id, topic, partition)
    }
}

/// A partition's offset and code, UNSTABLE_OFFSET_COMMIT (and no offset) where `unstable`.
fn partition_answer(
    topic: &str,
    partition: i32,
    value: Option<OffsetValue>,
    error_code: i16,
    unstable: &impl Fn(&str, i32) -> bool,
) -> (i64, i32, StrBytes, i16) {
    if error_code == 0 && unstable(topic, partition) {
        let (offset, epoch, metadata) = unpack(None);
        return (
            offset,
            epoch,
            metadata,
            ResponseError::UnstableOffsetCommit.code(),
        );
    }
    let (offset, epoch, metadata) = unpack(value);
    (offset, epoch, metadata, error_code)
}

fn topic_v1(
    topic: String,
    partitions: Vec<(i32, Option<OffsetValue>)>,
    error_code: i16,
    unstable: &impl Fn(&str, i32) -> bool,
) -> OffsetFetchResponseTopic {
    let partitions = partitions
        .into_iter()
        .map(|(partition, value)| {
            let (offset, epoch, metadata, error_code) =
                partition_answer(&topic, partition, value, error_code, unstable);
            OffsetFetchResponsePartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(epoch)
                .with_metadata(Some(metadata))
                .with_error_code(error_code)
        })
        .collect();
    OffsetFetchResponseTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic)))
        .with_partitions(partitions)
}

fn topic_v8(
    topic: String,
    partitions: Vec<(i32, Option<OffsetValue>)>,
    error_code: i16,
    unstable: &impl Fn(&str, i32) -> bool,
) -> OffsetFetchResponseTopics {
    let partitions = partitions
        .into_iter()
        .map(|(partition, value)| {
            let (offset, epoch, metadata, error_code) =
                partition_answer(&topic, partition, value, error_code, unstable);
            OffsetFetchResponsePartitions::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(epoch)
                .with_metadata(Some(metadata))
                .with_error_code(error_code)
        })
        .collect();
    OffsetFetchResponseTopics::default()
        .with_name(TopicName(StrBytes::from_string(topic)))
        .with_partitions(partitions)
}

fn unpack(value: Option<OffsetValue>) -> (i64, i32, StrBytes) {
    match value {
        Some(value) => (
            value.offset,
            value.leader_epoch,
            StrBytes::from_string(value.metadata),
        ),
        None => (-1, -1, StrBytes::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(offset: i64) -> Option<OffsetValue> {
        Some(OffsetValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        })
    }

    fn committed() -> CommittedByTopic {
        vec![
            ("public".to_string(), vec![(0, offset(10)), (1, None)]),
            ("secret".to_string(), vec![(0, offset(20))]),
        ]
    }

    #[test]
    fn named_topics_without_describe_are_refused_and_their_offsets_hidden() {
        let mut committed = committed();
        let refused = hide_refused(&mut committed, true, |topic| topic != "secret");
        assert_eq!(refused, [false, true]);
        assert_eq!(committed[0].1, [(0, offset(10)), (1, None)]);
        assert_eq!(committed[1], ("secret".to_string(), vec![(0, None)]));
        assert_eq!(topic_error(&refused, 0, 0), 0);
        assert_eq!(
            topic_error(&refused, 1, 0),
            ResponseError::TopicAuthorizationFailed.code()
        );
    }

    #[test]
    fn all_offsets_leave_out_topics_without_describe() {
        let mut committed = committed();
        let refused = hide_refused(&mut committed, false, |topic| topic != "secret");
        assert!(refused.is_empty());
        let topics: Vec<&str> = committed.iter().map(|(topic, _)| topic.as_str()).collect();
        assert_eq!(topics, ["public"]);
    }
}
