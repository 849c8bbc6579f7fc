//! The `spate` command.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spate_engine::config::ServeArgs;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Spate: a Kafka-compatible streaming broker, thread-per-core on io_uring.
#[derive(Parser)]
#[command(
    name = "spate",
    version,
    about,
    after_help = "The operator commands (topic, group, produce, consume, cluster, user, acl, quota) speak the Kafka protocol to any \
Kafka-compatible broker: --brokers HOST:PORT (or SPATE_BROKERS; default 127.0.0.1:9092) picks it, \
--json prints machine-readable output. `spate <command> --help` explains every flag."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. With no flags: single node, data in ./spate-data, listening on
    /// 127.0.0.1:9092 (shard s on port 9092+s), one shard per CPU.
    Serve(Box<ServeArgs>),
    /// Create, list, describe, delete and reconfigure topics on any Kafka-compatible broker.
    Topic(cli::topic::TopicArgs),
    /// List, describe, reset the offsets of, and delete consumer groups.
    Group(cli::group::GroupArgs),
    /// Write stdin to a topic, one record per line.
    Produce(cli::produce::ProduceArgs),
    /// Print a topic's records on stdout, one per line, alone or as a group member.
    Consume(cli::consume::ConsumeArgs),
    /// The cluster's id, controller and brokers.
    Cluster(cli::cluster::ClusterArgs),
    /// Inspect a partition's files offline: `spate log dump FILE...`.
    Log(cli::log_dump::LogArgs),
    /// Add, list and remove the users SASL clients authenticate as (SCRAM credentials).
    User(cli::user::UserArgs),
    /// Add, list and remove the ACLs a broker's authorizer checks (`--authorizer acl`).
    Acl(cli::acl::AclArgs),
    /// Set, list and remove the byte-rate and request quotas of users and client ids.
    Quota(cli::quota::QuotaArgs),
    /// List and describe transactions, show partitions' producers, find and abort hanging
    /// transactions.
    Txn(cli::txn::TxnArgs),
}

/// The log filter without `SPATE_LOG`. openraft's heartbeat worker warns about every failed
/// heartbeat, one line per peer every few tens of milliseconds for as long as a peer is
/// unreachable (a network partition, a node down): the fencing and the replication errors
/// already say so once, so its own lines are kept to errors.
const DEFAULT_LOG_FILTER: &str = "info,openraft::core::heartbeat=error";

fn main() -> ExitCode {
    // First, before the heap grows: see the function's docs.
    spate_engine::host::disable_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.resolve().and_then(spate_engine::node::run),
        Command::Topic(args) => cli::topic::run(args),
        Command::Group(args) => cli::group::run(args),
        Command::Produce(args) => cli::produce::run(args),
        Command::Consume(args) => cli::consume::run(args),
        Command::Cluster(args) => cli::cluster::run(args),
        Command::Log(args) => cli::log_dump::run(args),
        Command::User(args) => cli::user::run(args),
        Command::Acl(args) => cli::acl::run(args),
        Command::Quota(args) => cli::quota::run(args),
        Command::Txn(args) => cli::txn::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<cli::ExitWith>() {
            Some(cli::ExitWith(code)) => ExitCode::from(*code),
            None => {
                eprintln!("spate: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}
