//! Cluster metadata: the image every shard reads, the records that change it, and the
//! controller that decides them.
//!
//! A tour:
//! - [`image::MetadataImage`] is an immutable, versioned picture of the cluster: brokers
//!   (id, host, port, rack), topics (id, name, configs) and partition assignments (replicas,
//!   ISR, leader, leader epoch). Metadata, FindCoordinator and DescribeCluster answer from it;
//!   each shard's `PartitionTable` reads placement and epochs from it.
//! - [`records::MetadataRecord`] is one change (KRaft's record types); an image is the result of
//!   applying records in order.
//! - [`controller::ControllerState`] turns requests (create, delete and repartition topics,
//!   change configs, hand out producer ids) into records and answers, enforcing the node's
//!   limits. It does no I/O. Its replication decisions (replica placement, fencing, leader
//!   elections, AlterPartition) are in `controller_replication.rs`; replicas named by
//!   clients (reassignments, KIP-455, and CreateTopics/CreatePartitions assignments) in
//!   `controller_reassign.rs`; topic requests (create, delete, repartition, configs) in
//!   `controller_topics.rs`.
//! - [`controller_task::ControllerTask`] runs it on the controller's shard: batches calls,
//!   persists their records in the [`store::MetadataStore`] journal (fdatasync'ed off the
//!   shard), publishes the new image to every shard as a [`MetadataUpdate`] over the channel
//!   mesh (`crate::mesh`), and answers once every shard has applied it.
//! - [`placement`] is the default policy by which the controller picks a new partition's
//!   leader shard.
//!
//! Every change goes through the controller: shards never write metadata themselves. On one
//! node the controller is shard 0 with a local journal; on a replicated cluster a Raft
//! quorum (`crate::cluster::raft`) is behind the same state machine.

use std::sync::Arc;

pub mod bootstrap;
pub mod controller;
pub mod controller_task;
pub mod image;
pub mod placement;
pub mod records;
pub mod store;

/// A new image and the records that made it, as the controller publishes it to every shard.
#[derive(Clone)]
pub struct MetadataUpdate {
    /// The new image.
    pub image: Arc<image::MetadataImage>,
    /// The records applied since the previous image, in order.
    pub records: Arc<Vec<records::MetadataRecord>>,
}

impl MetadataUpdate {
    /// The image's version.
    pub fn version(&self) -> u64 {
        self.image.version
    }
}
