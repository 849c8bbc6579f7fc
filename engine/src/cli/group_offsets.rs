//! A group's committed offsets: OffsetFetch and OffsetCommit, at whatever version the
//! coordinator speaks (v8+ OffsetFetch batches groups; older versions name one group).

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{ApiKey, GroupId, OffsetCommitRequest, OffsetFetchRequest};

use super::broker::{str_bytes, topic_name, BrokerConnection};
use super::{check_error, error_name};

/// (topic, partition).
pub type TopicPartition = (String, i32);

/// The committed offset of each partition of `group`; -1 means "nothing committed".
/// `topics` = `None` asks for every topic the group has offsets for.
pub fn fetch_committed(
    coordinator: &mut BrokerConnection,
    group: &str,
    topics: Option<&BTreeMap<String, Vec<i32>>>,
) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    // "All topics" (a null topic list) needs v2.
    let lowest = if topics.is_some() { 1 } else { 2 };
    let version = coordinator.version(ApiKey::OffsetFetch, lowest..=9)?;
    let group_id = GroupId(str_bytes(group));
    let request = if version >= 8 {
        let topics = topics.map(|topics| {
            topics
                .iter()
                .map(|(topic, partitions)| {
                    OffsetFetchRequestTopics::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        });
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(group_id)
            .with_topics(topics)])
    } else {
        let topics = topics.map(|topics| {
            topics
                .iter()
                .map(|(topic, partitions)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        });
        OffsetFetchRequest::default()
            .with_group_id(group_id)
            .with_topics(topics)
    };
    let response = coordinator.send(version, &request)?;
    let what = || format!("cannot fetch the committed offsets of group {group}");
    let mut committed = BTreeMap::new();
    if version >= 8 {
        let answer = response
            .groups
            .first()
            .ok_or_else(|| anyhow::anyhow!("{}: the broker answered with no group", what()))?;
        check_error(answer.error_code, None, what)?;
        for topic in &answer.topics {
            for partition in &topic.partitions {
                check_error(partition.error_code, None, what)?;
                committed.insert(
                    (topic.name.0.to_string(), partition.partition_index),
                    partition.committed_offset,
                );
            }
        }
    } else {
        check_error(response.error_code, None, what)?;
        for topic in &response.topics {
            for partition in &topic.partitions {
                check_error(partition.error_code, None, what)?;
                committed.insert(
                    (topic.name.0.to_string(), partition.partition_index),
                    partition.committed_offset,
                );
            }
        }
    }
    Ok(committed)
}

/// Who commits: a member of the current generation, or nobody (generation -1 and an
/// empty member id, which a coordinator accepts only while the group has no members).
pub struct Committer<'a> {
    /// The group.
    pub group: &'a str,
    /// The generation, -1 for a commit from outside the group.
    pub generation: i32,
    /// The member id, empty for a commit from outside the group.
    pub member_id: &'a str,
}

/// Commits `offsets` (the next offset to consume, per partition of `topic`). Returns the
/// partitions the coordinator refused, with their error codes.
pub fn commit(
    coordinator: &mut BrokerConnection,
    committer: &Committer,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> anyhow::Result<Vec<(i32, i16)>> {
    let version = coordinator.version(ApiKey::OffsetCommit, 2..=9)?;
    let partitions = offsets
        .iter()
        .map(|(&partition, &offset)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_metadata(Some(str_bytes("")))
        })
        .collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes(committer.group)))
        .with_generation_id_or_member_epoch(committer.generation)
        .with_member_id(str_bytes(committer.member_id))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(partitions)]);
    let response = coordinator.send(version, &request)?;
    Ok(response
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter(|partition| partition.error_code != 0)
        .map(|partition| (partition.partition_index, partition.error_code))
        .collect())
}

/// `commit`, failing on the first refused partition.
pub fn commit_all(
    coordinator: &mut BrokerConnection,
    committer: &Committer,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    match commit(coordinator, committer, topic, offsets)?.first() {
        None => Ok(()),
        Some((partition, code)) => anyhow::bail!(
            "cannot commit the offset of {topic}-{partition} for group {}: {}",
            committer.group,
            error_name(*code)
        ),
    }
}
