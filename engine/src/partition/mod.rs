//! Partitions as a shard hosts them: the one interface between request handlers and logs.
//!
//! A tour:
//! - [`ids`] holds the identifiers (`TopicPartition`, `ShardId`, `NodeId`, `BrokerId`,
//!   `LeaderEpoch`, `ProducerId`), each its own type.
//! - [`replica::Partition`] is this shard's replica of one partition: its log, its role
//!   (leader with its ISR, or follower), its leader epoch and its named offsets (log start,
//!   high watermark, last stable offset, log end). It decides when an append is acknowledged
//!   for each acks level and wakes long-polling fetches when the high watermark advances.
//!   As a leader it tracks its followers' positions (the high watermark over the ISR, the
//!   ISR changes it wants); as a follower it appends its leader's batches and truncates.
//! - [`table::PartitionTable`] holds the shard's replicas and its current metadata image;
//!   handlers reach a partition through [`table::PartitionTable::leader`], which checks that
//!   the partition exists, is led here and matches the client's leader epoch, and opens its
//!   log on first use.
//! - [`error::PartitionError`] is why a partition refused; `handlers::errors` maps it to
//!   Kafka's codes.
//! - [`log_config`] turns a topic's configs into the log's settings.

pub mod error;
pub mod ids;
pub mod log_config;
pub mod replica;
pub mod table;
#[cfg(test)]
mod test_support;

pub use error::PartitionError;
pub use ids::{
    BrokerId, LeaderEpoch, NodeId, ProducerId, ShardId, TopicPartition, MAX_SHARDS_PER_NODE,
};
pub use replica::{Acks, Appended, Isolation, Partition, ProducedBatch, Role, WantedIsr};
pub use table::PartitionTable;
