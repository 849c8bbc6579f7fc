//! The replicated cluster (issue 15), in progress.
//!
//! A tour:
//! - [`config`]: `--controller-quorum-voters` and the flags around it.
//! - [`raft`]: the controller quorum on openraft (the only module that names it): the log
//!   store, the metadata state machine, the network, and the [`raft::quorum::Quorum`] facade.
//! - [`member`]: this node's member, started on the controller's shard (shard 0); the node's
//!   registration (`StartNode`) and heartbeats.
//! - [`publisher`]: the images the member applies, handed to the node's shards in order.
//! - [`forwarding`]: controller calls from a node whose member does not lead, to the leader's
//!   node.
//! - [`status`]: the quorum as DescribeQuorum and `spate cluster info` show it.
//! - [`fetcher`]: a follower shard's fetch sessions, one per leader broker it copies from.
//! - [`isr`]: the ISR changes a leader asks of the controller (AlterPartition).
//!
//! The controller itself is `metadata::controller_task`, over the quorum's log instead of the
//! local journal. `README.md` here holds the plan and what is left.

pub mod config;
pub mod fetcher;
pub mod forwarding;
pub mod isr;
pub mod member;
pub mod publisher;
pub mod raft;
pub mod status;
