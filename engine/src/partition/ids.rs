//! The identifiers the broker passes around, each a distinct type so that a shard index is
//! never mistaken for a broker id, nor a leader epoch for a partition index.

use std::fmt;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

/// A shard of this node: one pinned executor thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardId(pub u32);

/// A node of the cluster (`--node-id`): one `spate serve` process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub i32);

/// A Kafka broker id as clients see it. Every shard is its own broker:
/// `node_id * MAX_SHARDS_PER_NODE + shard` ([`BrokerId::of_shard`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BrokerId(pub i32);

/// Shards per node that broker ids leave room for.
pub const MAX_SHARDS_PER_NODE: u32 = 1024;

impl BrokerId {
    /// The broker id of a shard.
    pub fn of_shard(node: NodeId, shard: ShardId) -> BrokerId {
        assert!(shard.0 < MAX_SHARDS_PER_NODE);
        BrokerId(node.0 * MAX_SHARDS_PER_NODE as i32 + shard.0 as i32)
    }

    /// The node this broker id belongs to.
    pub fn node(self) -> NodeId {
        NodeId(self.0.div_euclid(MAX_SHARDS_PER_NODE as i32))
    }

    /// The shard of its node this broker id names.
    pub fn shard(self) -> ShardId {
        ShardId(self.0.rem_euclid(MAX_SHARDS_PER_NODE as i32) as u32)
    }
}

impl fmt::Display for BrokerId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

/// A partition's leader epoch: bumped by the controller each time leadership moves, stamped
/// into every batch the leader appends, and checked against the `current_leader_epoch` that
/// clients send so that a stale leader is never read from or written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaderEpoch(pub i32);

impl LeaderEpoch {
    /// The epoch a new partition starts with.
    pub const INITIAL: LeaderEpoch = LeaderEpoch(0);

    /// The next epoch.
    pub fn next(self) -> LeaderEpoch {
        LeaderEpoch(self.0 + 1)
    }
}

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

/// An idempotent producer's id, handed out by InitProducerId.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProducerId(pub i64);

/// A partition of a topic: the key the partition table, logs and metrics use.
///
/// The topic name is shared (`Rc<str>`): keys are cloned into tasks and logs without copying
/// the name. Shard-local, like the partitions it names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: Rc<str>,
    /// The partition's index in its topic, from 0.
    pub partition: i32,
}

impl TopicPartition {
    /// The key of a partition.
    pub fn new(topic: impl Into<Rc<str>>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}-{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_ids_name_their_node_and_shard() {
        let broker = BrokerId::of_shard(NodeId(2), ShardId(3));
        assert_eq!(broker, BrokerId(2051));
        assert_eq!((broker.node(), broker.shard()), (NodeId(2), ShardId(3)));
        assert_eq!(TopicPartition::new("orders", 7).to_string(), "orders-7");
    }
}
