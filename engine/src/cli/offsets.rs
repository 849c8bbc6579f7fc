//! ListOffsets: a partition's log start and end, and the first offset at or after a time.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest};

use super::broker::{topic_name, Cluster, TopicLayout};
use super::check_error;

/// The ListOffsets timestamp that asks for the log end offset (the high watermark).
pub const LATEST: i64 = -1;
/// The ListOffsets timestamp that asks for the log start offset.
pub const EARLIEST: i64 = -2;

/// For each partition, the offset ListOffsets returns for `timestamp` (`LATEST`,
/// `EARLIEST`, or milliseconds since the epoch). For a time after the last record the
/// broker answers -1, which is kept.
pub fn list_offsets(
    cluster: &mut Cluster,
    topic: &TopicLayout,
    partitions: &[i32],
    timestamp: i64,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut offsets = BTreeMap::new();
    for (leader, led) in topic.by_leader(partitions)? {
        let connection = cluster.broker(leader)?;
        let version = connection.version(ApiKey::ListOffsets, 1..=7)?;
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(&topic.name))
                .with_partitions(
                    led.iter()
                        .map(|&partition| {
                            ListOffsetsPartition::default()
                                .with_partition_index(partition)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let response = connection.send(version, &request)?;
        for answer in response.topics.iter().flat_map(|topic| &topic.partitions) {
            check_error(answer.error_code, None, || {
                format!(
                    "cannot list offsets of {}-{}",
                    topic.name, answer.partition_index
                )
            })?;
            offsets.insert(answer.partition_index, answer.offset);
        }
    }
    for partition in partitions {
        if !offsets.contains_key(partition) {
            anyhow::bail!(
                "the broker did not answer ListOffsets for {}-{partition}",
                topic.name
            );
        }
    }
    Ok(offsets)
}

/// Log start and log end offset of each partition.
pub fn log_bounds(
    cluster: &mut Cluster,
    topic: &TopicLayout,
    partitions: &[i32],
) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
    let starts = list_offsets(cluster, topic, partitions, EARLIEST)?;
    let ends = list_offsets(cluster, topic, partitions, LATEST)?;
    Ok(starts
        .into_iter()
        .map(|(partition, start)| (partition, (start, ends[&partition])))
        .collect())
}
