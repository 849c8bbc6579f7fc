//! Consumer groups: the classic group coordinator.
//!
//! - [`coordinator::Coordinator`] holds one shard's groups and offsets and drives their state
//!   machines; `coordinator_loading.rs` reads them from the `__consumer_offsets` partitions the
//!   shard leads.
//! - [`group::Group`] is one group's state machine, free of I/O and clocks.
//! - [`offsets_topic`] encodes and decodes the `__consumer_offsets` records.
//! - [`lag`] measures the groups' consumer lag for `/metrics`.

pub mod coordinator;
pub mod group;
pub mod lag;
pub mod offsets_topic;
pub mod types;
