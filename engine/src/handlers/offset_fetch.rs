//! OffsetFetch (key 9): a group's committed offsets (-1 where none), for one group (v1-7)
//! or several (v8+).

use std::rc::Rc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::group_common::check_coordinator;
use super::{ApiSpec, RequestContext};
use crate::groups::coordinator::CommittedByTopic;
use crate::groups::offsets_topic::OffsetValue;
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
                let (mut error_code, mut committed) =
                    lookup(shard, &group.group_id, topics.as_deref());
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
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id.clone())
                    .with_error_code(error_code)
                    .with_topics(
                        committed
                            .into_iter()
                            .map(|(topic, partitions)| topic_v8(topic, partitions))
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
    let (error_code, committed) = lookup(shard, &request.group_id, topics.as_deref());
    OffsetFetchResponse::default()
        .with_error_code(if context.version >= 2 { error_code } else { 0 })
        .with_topics(
            committed
                .into_iter()
                .map(|(topic, partitions)| topic_v1(topic, partitions, error_code))
                .collect(),
        )
}

fn lookup(
    shard: &Shard,
    group_id: &GroupId,
    topics: Option<&[(String, Vec<i32>)]>,
) -> (i16, CommittedByTopic) {
    match check_coordinator(shard, group_id) {
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
            (error_code, empty.unwrap_or_default())
        }
        Ok(()) => (0, shard.groups.committed(group_id, topics)),
    }
}

fn topic_v1(
    topic: String,
    partitions: Vec<(i32, Option<OffsetValue>)>,
    error_code: i16,
) -> OffsetFetchResponseTopic {
    let partitions = partitions
        .into_iter()
        .map(|(partition, value)| {
            let (offset, epoch, metadata) = unpack(value);
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
) -> OffsetFetchResponseTopics {
    let partitions = partitions
        .into_iter()
        .map(|(partition, value)| {
            let (offset, epoch, metadata) = unpack(value);
            OffsetFetchResponsePartitions::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(epoch)
                .with_metadata(Some(metadata))
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
