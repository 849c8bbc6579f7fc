//! The operator commands of the `spate` binary: `topic`, `group`, `produce`, `consume`,
//! `cluster`, `user`, `acl`, `quota` and `txn`.
//!
//! They speak the Kafka protocol to any Kafka-compatible broker, not only to Spate, so they
//! negotiate every API version with ApiVersions and route each request the way a Kafka
//! client does (partition leaders from Metadata, group coordinators from FindCoordinator).
//!
//! A tour:
//! - [`broker::Cluster`] is the bootstrap connection plus one [`broker::BrokerConnection`]
//!   per broker it has talked to; each connection knows the broker's API versions.
//! - [`offsets`] looks up log start/end offsets and offsets by timestamp (ListOffsets).
//! - [`topic`], [`group`], [`produce`] and [`consume`] are the commands, one module each;
//!   [`group_member`] is the classic consumer-group membership that `consume --group`
//!   runs; [`consumer_protocol`] holds its subscription/assignment codec and the range
//!   assignor, and [`group_offsets`] commits and fetches group offsets.
//! - [`records`] encodes and decodes record batches and holds Kafka's murmur2 partitioner.
//! - [`output`] prints tables and JSON; [`datetime`] parses `--to-datetime`.
//! - [`user`] is `spate user add|list|remove` (SCRAM credentials, online or offline);
//!   [`security`] connects to TLS and SASL listeners (`-X`, `--command-config`).
//! - [`acl`] is `spate acl add|list|remove` (CreateAcls, DescribeAcls, DeleteAcls), on the
//!   broker's ACL types (`spate_engine::security::acl`).
//! - [`quota`] is `spate quota set|list|remove` (AlterClientQuotas, DescribeClientQuotas):
//!   byte-rate and request-percentage quotas of users and client ids.
//! - [`txn`] is `spate txn list|describe|producers|find-hanging|abort` (KIP-664's
//!   ListTransactions, DescribeTransactions, DescribeProducers; WriteTxnMarkers to abort a
//!   hanging transaction).
//! - [`cluster`] is `spate cluster info`, [`cluster_health`] `spate cluster health`,
//!   [`cluster_elect`] `spate cluster elect-leaders`.
//!
//! Every command returns `anyhow::Result`; `main` prints an error as one `spate: ...` line
//! and exits non-zero. A command whose verdict is its exit code (`cluster health`) returns
//! [`ExitWith`], which `main` turns into that code without a line.

pub mod acl;
pub mod broker;
pub mod cluster;
pub mod cluster_elect;
pub mod cluster_health;
pub mod cluster_reassign;
pub mod consume;
pub mod consumer_protocol;
pub mod datetime;
pub mod group;
pub mod group_member;
pub mod group_offsets;
pub mod group_reset;
pub mod log_dump;
pub mod offsets;
pub mod output;
pub mod produce;
pub mod quota;
pub mod records;
pub mod security;
pub mod topic;
pub mod topic_partitions;
pub mod txn;
pub mod user;

use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

/// A command's verdict as an exit code, its report already printed: `main` exits with the
/// code and prints nothing more.
#[derive(Debug, thiserror::Error)]
#[error("exit code {0}")]
pub struct ExitWith(pub u8);

/// Flags every operator command takes.
#[derive(Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// Bootstrap broker(s) to connect to, as HOST:PORT; several may be given separated by
    /// commas and the first that answers is used. Any Kafka-compatible broker works.
    #[arg(
        long,
        global = true,
        env = "SPATE_BROKERS",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT[,HOST:PORT...]"
    )]
    pub brokers: String,
    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// A client property, librdkafka style (`-X security.protocol=SASL_SSL -X
    /// sasl.mechanism=SCRAM-SHA-512 -X sasl.username=U -X sasl.password=P -X
    /// ssl.ca.location=FILE`); repeat for several.
    #[arg(
        short = 'X',
        long = "property",
        global = true,
        value_name = "KEY=VALUE"
    )]
    pub properties: Vec<String>,
    /// A file of client properties, one KEY=VALUE per line (Kafka's --command-config).
    #[arg(long, global = true, env = "SPATE_COMMAND_CONFIG", value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
}

pub use spate_net::error_code::error_name;

/// Fails with `what: NAME (code)[: message]` when `code` is not 0.
pub fn check_error(
    code: i16,
    message: Option<&str>,
    what: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    match message.filter(|message| !message.is_empty()) {
        Some(message) => anyhow::bail!("{}: {}: {message}", what(), error_name(code)),
        None => anyhow::bail!("{}: {}", what(), error_name(code)),
    }
}

/// Parses `key=value` (the value may itself contain `=`).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    // A second Ctrl-C means "stop now", without the orderly commit and LeaveGroup.
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        unsafe { libc::_exit(130) };
    }
}

/// Makes SIGINT and SIGTERM set a flag instead of killing the process, so that a consumer
/// can commit its offsets and leave its group. A second signal exits at once.
pub fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic and calls the async-signal-safe `_exit`.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether SIGINT or SIGTERM arrived since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_splits_at_the_first_equals_sign() {
        assert_eq!(
            parse_key_value("a=b=c"),
            Ok(("a".to_string(), "b=c".to_string()))
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
