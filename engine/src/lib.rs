//! The Spate broker.
//!
//! A tour, from the outside in:
//! - [`node`] starts a node: preflight checks, then one pinned glommio executor per shard.
//! - [`shard::Shard`] is one executor's state: the partition logs it owns (placed by
//!   [`placement::shard_for`]), its cached view of the [`catalog`], and its connections.
//! - [`connection`] reads a client's requests in order and writes responses in order,
//!   letting pipelined produces share a group commit.
//! - [`handlers`] holds one module per Kafka API and the table ([`handlers::APIS`]) that is
//!   the only list of what we serve.
//! - [`config`] and [`topic_config`] hold broker settings and Kafka's topic configs.
//!
//! Data path rule: a produce or fetch is served entirely by the shard that owns the
//! partition; nothing on that path crosses threads.

pub mod acl;
pub mod catalog;
pub mod cleaner;
pub mod config;
pub mod connection;
pub mod groups;
pub mod handlers;
pub mod host;
pub mod log_scan;
pub mod node;
pub mod notify;
pub mod placement;
pub mod shard;
pub mod splice;
pub mod stats;
pub mod topic_config;

/// The leader epoch of every partition on a single node: leadership never moves.
pub const LEADER_EPOCH: i32 = 0;

/// Stops the whole process after an environmental failure that leaves the broker unable to
/// keep its promises (a failed fsync, a catalog that cannot be written). Exiting beats
/// letting one shard die while the others go on serving.
pub fn fatal(reason: &dyn std::fmt::Display) -> ! {
    tracing::error!("fatal: {reason}; stopping the broker");
    eprintln!("spate: fatal: {reason}");
    std::process::exit(2)
}
