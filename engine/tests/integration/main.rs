//! The engine's integration tests: real `spate` processes (one node, clusters, the operator
//! CLI) driven over real sockets. One test binary for all of them, with one module per area:
//! each binary of a release build is linked with thin LTO, and 24 separate binaries took
//! most of CI's `cargo test` step to link (about 17 of its 20 minutes) for 3 minutes of
//! tests.
//!
//! Run one area with a filter on its module, e.g. `cargo test --release -p spate-engine
//! --test integration lifecycle::`. Tests run two at a time (one per core) as before; each
//! starts its own brokers on ports from `harness::free_port_range`, which never hands out
//! a port twice in one process.

mod cli_support;
mod cluster_harness;
mod harness;

mod async_client;
mod broker;
mod cli;
mod cli_acl;
mod cli_admin;
mod cli_quota;
mod cli_records;
mod cli_txn;
mod cluster_quorum;
mod cluster_replication;
mod consumer_groups;
mod fetch_versions;
mod host;
mod lifecycle;
mod limits;
mod log_dirs;
mod log_dump;
mod metadata;
mod newer_versions;
mod produce_stream;
mod shard_replication;
mod stats;
mod transactions;
mod txn_coordinator;
mod txn_v2;
mod zero_copy;
