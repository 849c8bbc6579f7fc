//! Consumer groups: the group coordinator, for classic and KIP-848 consumer groups.
//!
//! - [`coordinator::Coordinator`] holds one shard's groups and offsets and drives their state
//!   machines; `coordinator_loading.rs` reads them from the `__consumer_offsets` partitions the
//!   shard leads.
//! - [`group::Group`] is one group's state machine, free of I/O and clocks.
//! - [`consumer_group::ConsumerGroup`] is one KIP-848 consumer group's state machine (the
//!   coordinator assigns, with an [`assignor`]), free of I/O and clocks too.
//! - [`offsets_topic`] encodes and decodes the `__consumer_offsets` records.
//! - [`lag`] measures the groups' consumer lag for `/metrics`.

pub mod assignor;
pub mod consumer_group;
pub mod coordinator;
pub mod group;
pub mod lag;
pub mod offsets_topic;
pub mod types;
