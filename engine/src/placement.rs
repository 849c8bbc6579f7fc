//! Where partitions live and how shards are named to clients.
//!
//! [`shard_for`] is the one partition-to-shard function; every handler, the metadata view
//! and the start-up recovery use it, so a partition is always served by the same shard for
//! a given shard count. Partition directories do not depend on the shard, so a restart with
//! a different `--smp` simply moves partitions.

/// A shard of this node: one pinned executor thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u32);

/// A node of the cluster (`--node-id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(pub i32);

/// Shards per node that broker ids leave room for.
pub const MAX_SHARDS_PER_NODE: u32 = 1024;

/// The broker id clients see for a shard: every shard is its own Kafka broker.
pub fn broker_id(node: NodeId, shard: ShardId) -> i32 {
    assert!(shard.0 < MAX_SHARDS_PER_NODE);
    node.0 * MAX_SHARDS_PER_NODE as i32 + shard.0 as i32
}

/// The shard that owns a partition. Partitions of one topic go round-robin from a start
/// picked by the topic name's hash, so small topics do not all pile onto shard 0.
pub fn shard_for(topic: &str, partition: i32, shard_count: u32) -> ShardId {
    assert!(shard_count > 0 && partition >= 0);
    let start = u64::from(fnv1a(topic.as_bytes()));
    ShardId(((start + partition as u64) % u64::from(shard_count)) as u32)
}

/// FNV-1a: a stable hash (unlike std's `DefaultHasher`, it never changes between builds).
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
            per_shard[shard_for("events", partition, 4).0 as usize] += 1;
        }
        assert_eq!(per_shard, [100; 4]);
    }

    #[test]
    fn placement_is_stable() {
        assert_eq!(shard_for("events", 3, 2), shard_for("events", 3, 2));
        assert_eq!(shard_for("any", 7, 1), ShardId(0));
        assert_eq!(broker_id(NodeId(2), ShardId(3)), 2051);
    }
}
