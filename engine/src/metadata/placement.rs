//! The default placement policy: which shard of a node leads a new partition.
//!
//! Placement is data: the controller decides each partition's leader once, when the
//! partition is created (or when a changed shard count forces a move), and stores it in the
//! metadata image, where every handler, the Metadata response and recovery read it. This
//! policy is only how the controller decides. Partition directories do not depend on the
//! shard, so moving a partition between shards of a node moves no data.

use crate::partition::{BrokerId, NodeId, ShardId};

/// The broker that leads a new partition on `node`: partitions of one topic go round-robin
/// over the shards from a start picked by the topic name's hash, so small topics do not all
/// pile onto shard 0.
pub fn default_leader(node: NodeId, topic: &str, partition: i32, shard_count: u32) -> BrokerId {
    BrokerId::of_shard(node, default_shard(topic, partition, shard_count))
}

/// The broker that leads a new partition in a cluster of several nodes (each with its shard
/// count): partitions of one topic go round-robin over the nodes, from a start picked by the
/// topic name's hash, and over each node's shards as on one node. Replicas come with
/// replication.
pub fn spread_leader(nodes: &[(NodeId, u32)], topic: &str, partition: i32) -> BrokerId {
    assert!(!nodes.is_empty() && partition >= 0);
    let start = u64::from(fnv1a(topic.as_bytes()));
    let slot = start + partition as u64;
    let (node, shard_count) = nodes[(slot % nodes.len() as u64) as usize];
    let round = (partition as u64 / nodes.len() as u64) as i32;
    default_leader(node, topic, round, shard_count.max(1))
}

/// A node as placement sees it: its id, shard count and rack.
#[derive(Clone, Debug)]
pub struct PlacementNode {
    /// The node.
    pub id: NodeId,
    /// Its shards (at least one).
    pub shard_count: u32,
    /// Its rack, if it has one.
    pub rack: Option<String>,
}

/// The replicas of a new partition, preferred leader first: the leader where
/// [`spread_leader`] puts it, the others on the nodes that follow the leader's in id order,
/// preferring racks not used yet (Kafka's rack-aware assignment, in its simplest form). Each
/// replica sits on the shard of its node that [`default_shard`] picks, so one topic's
/// replicas spread over the shards too.
///
/// When `factor` is above the node count, the replicas past one per node go to other shards
/// of the same nodes, again in ring order from the leader's node (a node with one shard
/// takes no second replica): the rule for clusters smaller than the factor, and how
/// a single node takes factors up to its shard count. Such replicas share their node's
/// fate: they satisfy tools that ask for a factor, and one replica's damaged segment can be
/// read from the other, but they do not survive the loss of the node or its disk. `factor`
/// must not exceed the total shard count.
pub fn spread_replicas(
    nodes: &[PlacementNode],
    topic: &str,
    partition: i32,
    factor: usize,
) -> Vec<BrokerId> {
    let total: usize = nodes
        .iter()
        .map(|node| node.shard_count.max(1) as usize)
        .sum();
    assert!(factor >= 1 && factor <= total);
    let counts: Vec<(NodeId, u32)> = nodes
        .iter()
        .map(|node| (node.id, node.shard_count))
        .collect();
    let leader = spread_leader(&counts, topic, partition);
    let first = nodes
        .iter()
        .position(|node| node.id == leader.node())
        .expect("the leader is on one of the nodes");
    let round = (partition as u64 / nodes.len() as u64) as i32;
    let mut chosen = vec![first];
    let ring: Vec<usize> = (1..nodes.len())
        .map(|step| (first + step) % nodes.len())
        .collect();
    while chosen.len() < factor.min(nodes.len()) {
        let used_rack = |index: &usize| {
            nodes[*index].rack.is_some()
                && chosen
                    .iter()
                    .any(|taken| nodes[*taken].rack == nodes[*index].rack)
        };
        let next = ring
            .iter()
            .copied()
            .filter(|index| !chosen.contains(index))
            .find(|index| !used_rack(index))
            .or_else(|| ring.iter().copied().find(|index| !chosen.contains(index)))
            .expect("factor is at most the node count");
        chosen.push(next);
    }
    let mut replicas = vec![leader];
    for index in &chosen[1..] {
        let node = &nodes[*index];
        // A different slot per replica, so that a topic's followers do not pile onto the
        // shard that leads its partitions on that node.
        let slot = round + chosen.len() as i32;
        replicas.push(default_leader(
            node.id,
            topic,
            slot,
            node.shard_count.max(1),
        ));
    }
    // More replicas than nodes: further shards of the chosen nodes, in the same order.
    let mut lap = 1;
    while replicas.len() < factor {
        for index in &chosen {
            if replicas.len() == factor {
                break;
            }
            let node = &nodes[*index];
            let shard_count = node.shard_count.max(1);
            let taken: Vec<ShardId> = replicas
                .iter()
                .filter(|broker| broker.node() == node.id)
                .map(|broker| broker.shard())
                .collect();
            if taken.len() >= shard_count as usize {
                continue;
            }
            let start = default_shard(topic, round + lap, shard_count).0;
            let shard = (0..shard_count)
                .map(|step| ShardId((start + step) % shard_count))
                .find(|shard| !taken.contains(shard))
                .expect("the node has a shard left");
            replicas.push(BrokerId::of_shard(node.id, shard));
        }
        lap += 1;
    }
    replicas
}

/// Whether a partition's replicas share a node (placed by [`spread_replicas`] for a factor
/// above the node count).
pub fn replicas_share_a_node(replicas: &[BrokerId]) -> bool {
    replicas.iter().enumerate().any(|(index, broker)| {
        replicas[..index]
            .iter()
            .any(|other| other.node() == broker.node())
    })
}

/// The shard [`default_leader`] picks.
pub fn default_shard(topic: &str, partition: i32, shard_count: u32) -> ShardId {
    assert!(shard_count > 0 && partition >= 0);
    let start = u64::from(fnv1a(topic.as_bytes()));
    ShardId(((start + partition as u64) % u64::from(shard_count)) as u32)
}

/// FNV-1a: a stable hash (unlike std's `DefaultHasher`, it never changes between builds), so
/// a restart with the same shard count keeps every partition where it was.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_of_a_topic_spread_evenly() {
        let mut per_shard = [0; 4];
        for partition in 0..400 {
            per_shard[default_shard("events", partition, 4).0 as usize] += 1;
        }
        assert_eq!(per_shard, [100; 4]);
    }

    #[test]
    fn partitions_spread_over_nodes_and_their_shards() {
        let nodes = [(NodeId(1), 2), (NodeId(2), 1), (NodeId(3), 2)];
        let mut per_broker = std::collections::BTreeMap::new();
        for partition in 0..600 {
            *per_broker
                .entry(spread_leader(&nodes, "events", partition))
                .or_insert(0) += 1;
        }
        let per_node = |node: i32| -> i32 {
            per_broker
                .iter()
                .filter(|(broker, _)| broker.node() == NodeId(node))
                .map(|(_, count)| *count)
                .sum()
        };
        assert_eq!((per_node(1), per_node(2), per_node(3)), (200, 200, 200));
        assert_eq!(per_broker.len(), 5, "every shard of every node leads some");
    }

    #[test]
    fn replicas_go_to_distinct_nodes_and_racks() {
        let node = |id: i32, shards: u32, rack: &str| PlacementNode {
            id: NodeId(id),
            shard_count: shards,
            rack: Some(rack.to_string()),
        };
        let nodes = [
            node(1, 2, "a"),
            node(2, 1, "a"),
            node(3, 2, "b"),
            node(4, 1, "b"),
        ];
        let mut leaders = std::collections::BTreeMap::new();
        for partition in 0..400 {
            let replicas = spread_replicas(&nodes, "events", partition, 2);
            assert_eq!(
                replicas[0],
                spread_leader(
                    &[
                        (NodeId(1), 2),
                        (NodeId(2), 1),
                        (NodeId(3), 2),
                        (NodeId(4), 1)
                    ],
                    "events",
                    partition
                )
            );
            assert_ne!(replicas[0].node(), replicas[1].node());
            let rack = |broker: BrokerId| if broker.node().0 <= 2 { "a" } else { "b" };
            assert_ne!(
                rack(replicas[0]),
                rack(replicas[1]),
                "two racks, two replicas"
            );
            *leaders.entry(replicas[0].node()).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![100; 4]);
        let three = spread_replicas(&nodes[..3], "t", 0, 3);
        let mut distinct: Vec<_> = three.iter().map(|broker| broker.node()).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3);
    }

    #[test]
    fn more_replicas_than_nodes_go_to_distinct_shards() {
        let node = |id: i32, shards: u32| PlacementNode {
            id: NodeId(id),
            shard_count: shards,
            rack: None,
        };
        // One node: a factor up to its shard count, every replica on its own shard, the
        // leader where a factor of one would put it.
        let one = [node(0, 4)];
        for partition in 0..40 {
            for factor in 1..=4 {
                let replicas = spread_replicas(&one, "events", partition, factor);
                assert_eq!(replicas.len(), factor);
                assert_eq!(
                    replicas[0],
                    default_leader(NodeId(0), "events", partition, 4)
                );
                let mut shards: Vec<_> = replicas.iter().map(|broker| broker.shard()).collect();
                shards.sort();
                shards.dedup();
                assert_eq!(shards.len(), factor, "{replicas:?}");
            }
        }
        // Two nodes, factor 3: one replica on each node first, the third on the node with a
        // shard left.
        let two = [node(1, 1), node(2, 2)];
        for partition in 0..20 {
            let replicas = spread_replicas(&two, "t", partition, 3);
            let mut distinct = replicas.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "{replicas:?}");
            assert_ne!(replicas[0].node(), replicas[1].node());
            assert!(replicas_share_a_node(&replicas));
            assert!(!replicas_share_a_node(&replicas[..2]));
        }
    }

    #[test]
    fn placement_is_stable() {
        assert_eq!(default_shard("events", 3, 2), default_shard("events", 3, 2));
        assert_eq!(default_shard("any", 7, 1), ShardId(0));
        assert_eq!(default_leader(NodeId(2), "any", 0, 1), BrokerId(2048));
    }
}
