//! The Spate broker.
//!
//! A tour, from the outside in:
//! - [`node`] starts a node: preflight checks, the metadata at start
//!   ([`metadata::bootstrap`]), then one pinned glommio executor per shard.
//! - [`shard::Shard`] is one executor's state: its [`partition::PartitionTable`] (the
//!   partitions it hosts and its current [`metadata`] image), its consumer-group
//!   coordinator, and on shard 0 the controller. Shards talk to each other only through typed
//!   control messages over the channel [`mesh`].
//! - [`connection`] reads a client's requests in order and writes responses in order,
//!   letting pipelined produces share a group commit.
//! - [`handlers`] holds one module per Kafka API and the table ([`handlers::APIS`]) that is
//!   the only list of what we serve. Handlers reach partitions only through
//!   [`partition::PartitionTable::leader`] and change metadata only through the controller
//!   ([`shard::Shard::controller_call`]).
//! - [`security`] has listeners, TLS, SASL and the ACL authorizer; [`quota`] the client
//!   quotas each shard enforces.
//! - [`config`] and [`topic_config`] hold broker settings and Kafka's topic configs.
//! - [`stats`] serves `/stats` and `/metrics` from per-shard counters; [`latency`] and
//!   [`request_errors`] feed its request latency and error families, and [`gauges`] the
//!   values each shard publishes about itself once a second (log sizes, busy time, partition
//!   health, consumer lag from [`groups::lag`]).
//! - [`transactions`] is the transaction coordinator in progress (issue 17): its state
//!   machine and `__transaction_state` records so far.
//! - [`cluster`] is the replicated cluster in progress: the controller quorum's Raft
//!   ([`cluster::raft`]), the only module that names openraft.
//!
//! Data path rule: a produce or fetch is served entirely by the shard that owns the
//! partition; nothing on that path crosses threads.

pub mod cleaner;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod connection_limits;
pub mod gauges;
pub mod groups;
pub mod handlers;
pub mod host;
pub mod latency;
pub mod log_scan;
pub mod mesh;
pub mod metadata;
pub mod node;
pub mod notify;
pub mod oneshot;
pub mod partition;
pub mod quota;
pub mod request_errors;
pub mod security;
pub mod shard;
pub mod shutdown_marker;
pub mod splice;
pub mod stats;
pub mod topic_config;
pub mod transactions;
