//! Consumer lag (`spate_consumer_group_lag{group,topic,partition}`), measured by each shard's
//! coordinator for the groups it coordinates, every `--metrics-consumer-lag-interval-ms`.
//!
//! The lag of a group on a partition is the partition's high watermark less the group's
//! committed offset (0 when the commit is at or past it), as `kafka-consumer-groups.sh
//! --describe` and lag exporters compute it. The coordinator knows the committed offsets;
//! the high watermarks are the partitions' leaders': a partition this shard leads is read
//! directly, the others are asked of their leaders with one ListOffsets (latest) per leader
//! broker per pass, over connections the pass keeps for the next one. So the work per
//! pass is proportional to the committed partitions of this shard's groups, whatever the
//! scrape rate, and a scrape only copies the last result ([`crate::gauges`]).
//!
//! A partition whose leader cannot be asked (no leader, a broken connection, an error)
//! has no sample in that pass; its lag reappears with the next pass that reaches it. With
//! topic labels off (`--metrics-topic-labels false`) a group's lag is the sum over its
//! partitions, one series per group.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::gauges::GroupLag;
use crate::partition::BrokerId as Broker;
use crate::shard::Shard;

/// ListOffsets versions asked (v1: one offset per partition; v7 as the replica fetcher's
/// client stops there).
const LIST_OFFSETS_VERSIONS: std::ops::RangeInclusive<i16> = 1..=7;

/// Connections to the leader brokers asked, by `host:port`.
type Connections = HashMap<String, crate::cluster::PeerConnection>;

/// Measures this shard's groups' lag every interval until shutdown (nothing when the
/// interval is off).
pub async fn run(shard: Rc<Shard>) {
    let Some(interval) = shard.node.config.metrics_consumer_lag_interval else {
        return;
    };
    let mut connections = Connections::new();
    let mut ends = HashMap::new();
    while !shard.node.is_shutting_down() {
        glommio::timer::sleep(interval).await;
        let committed = shard.groups.committed_offsets();
        let lag = if committed.is_empty() {
            connections.clear();
            ends.clear();
            Vec::new()
        } else {
            ends = high_watermarks(&shard, &committed, &ends, &mut connections).await;
            lag_of(committed, &ends, shard.node.config.metrics_topic_labels)
        };
        shard.node.stats.shards[shard.id.0 as usize]
            .gauges()
            .consumer_lag = lag;
    }
}

/// Each group's lag where the partition's high watermark is known, sorted; summed per
/// group without topic labels.
fn lag_of(
    committed: Vec<(String, String, i32, i64)>,
    ends: &HashMap<(String, i32), i64>,
    topic_labels: bool,
) -> Vec<GroupLag> {
    let mut lag: BTreeMap<(String, String, i32), i64> = BTreeMap::new();
    for (group, topic, partition, offset) in committed {
        let Some(&end) = ends.get(&(topic.clone(), partition)) else {
            continue;
        };
        let behind = end.saturating_sub(offset.max(0)).max(0);
        let key = if topic_labels {
            (group, topic, partition)
        } else {
            (group, String::new(), -1)
        };
        *lag.entry(key).or_default() += behind;
    }
    lag.into_iter()
        .map(|((group, topic, partition), lag)| GroupLag {
            group,
            topic,
            partition,
            lag,
        })
        .collect()
}

/// The high watermarks of the committed partitions that could be read.
async fn high_watermarks(
    shard: &Rc<Shard>,
    committed: &[(String, String, i32, i64)],
    previous: &HashMap<(String, i32), i64>,
    connections: &mut Connections,
) -> HashMap<(String, i32), i64> {
    let image = shard.image();
    let here = shard.partitions.broker();
    let mut ends = HashMap::new();
    let mut remote: BTreeMap<Broker, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    let mut wanted: Vec<(String, i32)> = committed
        .iter()
        .map(|(_, topic, partition, _)| (topic.clone(), *partition))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    for (topic, partition) in wanted {
        let Some(assignment) = image.partition(&topic, partition) else {
            continue;
        };
        if assignment.leader == here {
            // A log closed while idle (`PartitionTable::close_idle`) took no produce since:
            // its last high watermark still holds, and reopening it every pass would undo
            // what closing it saved.
            let end = match shard.partitions.open_replica(&topic, partition) {
                Some(replica) => Some(replica.high_watermark().0),
                None => match previous.get(&(topic.clone(), partition)) {
                    Some(&end) => Some(end),
                    None => shard
                        .partitions
                        .leader(&topic, partition, -1)
                        .await
                        .ok()
                        .map(|replica| replica.high_watermark().0),
                },
            };
            if let Some(end) = end {
                ends.insert((topic, partition), end);
            }
        } else if image.is_live(assignment.leader) {
            remote
                .entry(assignment.leader)
                .or_default()
                .entry(topic)
                .or_default()
                .push(partition);
        }
    }
    let mut used = Vec::new();
    for (leader, topics) in remote {
        let Some(address) = image
            .broker(leader)
            .and_then(|broker| shard.node.config.inter_broker.address_of(broker))
        else {
            continue;
        };
        match ask_leader(&shard.node.inter_broker, connections, &address, &topics).await {
            Ok(answers) => ends.extend(answers),
            Err(error) => {
                tracing::debug!(%address, %error, "consumer lag: cannot ask the leader");
                connections.remove(&address);
            }
        }
        used.push(address);
    }
    connections.retain(|address, _| used.contains(address));
    ends
}

/// One ListOffsets (latest, read uncommitted: the high watermark) to a leader broker.
async fn ask_leader(
    security: &crate::security::client::ClientSecurity,
    connections: &mut Connections,
    address: &str,
    topics: &BTreeMap<String, Vec<i32>>,
) -> Result<Vec<((String, i32), i64)>, String> {
    if connections.get(address).is_none_or(|open| open.is_broken()) {
        let connection = crate::cluster::connect(security, address, "spate-lag-monitor", 1 << 20)
            .await
            .map_err(|error| error.to_string())?;
        connections.insert(address.to_string(), connection);
    }
    let Some(connection) = connections.get_mut(address) else {
        unreachable!()
    };
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(0)
        .with_topics(
            topics
                .iter()
                .map(|(topic, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|&partition| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(partition)
                                        .with_current_leader_epoch(-1)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let (_, response) = connection
        .call(LIST_OFFSETS_VERSIONS, &request)
        .await
        .map_err(|error| error.to_string())?;
    Ok(response
        .topics
        .into_iter()
        .flat_map(|topic| {
            let name = topic.name.0.to_string();
            topic
                .partitions
                .into_iter()
                .filter(|answer| answer.error_code == 0 && answer.offset >= 0)
                .map(move |answer| ((name.clone(), answer.partition_index), answer.offset))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_high_watermark_less_the_commit_and_never_negative() {
        let committed = vec![
            ("g".to_string(), "t".to_string(), 0, 5),
            ("g".to_string(), "t".to_string(), 1, 12),
            ("g".to_string(), "u".to_string(), 0, 0),
            ("h".to_string(), "t".to_string(), 0, 10),
        ];
        let ends: HashMap<(String, i32), i64> =
            [(("t".to_string(), 0), 10), (("t".to_string(), 1), 10)]
                .into_iter()
                .collect();
        let flat = |lag: Vec<GroupLag>| -> Vec<(String, String, i32, i64)> {
            lag.into_iter()
                .map(|lag| (lag.group, lag.topic, lag.partition, lag.lag))
                .collect()
        };
        let owned = |rows: &[(&str, &str, i32, i64)]| -> Vec<(String, String, i32, i64)> {
            rows.iter()
                .map(|&(g, t, p, l)| (g.to_string(), t.to_string(), p, l))
                .collect()
        };
        // "u" has no known end: no sample.
        assert_eq!(
            flat(lag_of(committed.clone(), &ends, true)),
            owned(&[("g", "t", 0, 5), ("g", "t", 1, 0), ("h", "t", 0, 0)])
        );
        assert_eq!(
            flat(lag_of(committed, &ends, false)),
            owned(&[("g", "", -1, 5), ("h", "", -1, 0)])
        );
    }
}
