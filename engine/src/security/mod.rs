//! Security: listeners with Kafka's security protocols, and SASL authentication.
//!
//! A tour:
//! - [`settings`] holds `spate serve`'s listener and security flags and resolves them.
//! - [`listeners`] parses `--listeners` / `--advertised-listeners`; each connection knows the
//!   listener it arrived on, and clients are told that listener's endpoints.
//! - [`session`] is one connection's SASL state: on a SASL listener nothing but ApiVersions,
//!   SaslHandshake and SaslAuthenticate is served until the client has authenticated, frames
//!   are small and nothing is streamed into a log meanwhile.
//! - [`scram`] and [`plain`] are the mechanisms' server sides, pure functions over the
//!   messages (Kafka's `ScramSaslServer` and `PlainSaslServer`).
//! - Credentials live in the metadata image (`MetadataRecord::ScramCredential`), written by
//!   the controller (AlterUserScramCredentials, `spate user add`), so every shard and, in a
//!   cluster, every node checks the same ones. Only SCRAM credentials are stored (salted and
//!   hashed, never a password); SASL/PLAIN checks its password against them, as Redpanda does.
//!
//! - [`client`] is the other side, for Spate's own clients (the CLI, `spate-bench`):
//!   librdkafka-style properties, the rustls client configuration, a sans-IO SASL login.
//! - [`tls`] builds the rustls acceptor of `SSL` and `SASL_SSL` listeners; [`certificate`]
//!   reads a verified client certificate's subject as the connection's principal
//!   (`User:CN=alice,O=acme`, Kafka's default), which [`principal_mapping`] may rewrite
//!   (`--ssl-principal-mapping-rules`, Kafka's rules).
//! - [`acl`] holds ACLs with Kafka's semantics (`--authorizer acl`; its `store` the index and the checks), kept in the metadata
//!   image (`MetadataRecord::Acl`); [`authorizer`]'s `Access` is what handlers ask before
//!   they act, with the connection's principal from its [`session`].
//!
//! Client quotas, the other half of keeping one client from taking the broker, are in
//! `crate::quota`.
//!
//! - [`inter_broker`] is how brokers reach each other: the listener, and the credentials a
//!   broker logs in with on a SASL one.
//!
//! The controller quorum's port has its own mutual TLS (`cluster::raft::transport`).
//!
//! Not yet built (issue 18): kTLS (no kernel TLS module on the reference host).

pub mod acl;
pub mod authorizer;
pub mod certificate;
pub mod client;
pub mod inter_broker;
pub mod listeners;
pub mod plain;
pub mod principal_mapping;
pub mod scram;
pub mod scram_client;
pub mod session;
pub mod settings;
pub mod tls;

pub use listeners::{Listener, ListenerEndpoint, SecurityProtocol};

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often each kind of refusal is logged per shard.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

thread_local! {
    /// Per kind of refusal: when this shard last logged one, and how many it did not log since.
    static REFUSALS: RefCell<HashMap<&'static str, (Instant, u64)>> = RefCell::new(HashMap::new());
}

/// Logs a refused client (a failed TLS handshake or SASL authentication) as one line, at
/// most once a second per shard and kind, with how many were not logged: a client retrying
/// with a wrong password or certificate (librdkafka reconnects every few tens of
/// milliseconds) must not flood the log.
pub fn log_refusal(kind: &'static str, client: &str, reason: &str) {
    log_refusal_with(kind, client, || reason.to_string());
}

/// [`log_refusal`] with a reason made only when the line is logged.
pub fn log_refusal_with(kind: &'static str, client: &str, reason: impl FnOnce() -> String) {
    let now = Instant::now();
    let unlogged = REFUSALS.with(|refusals| {
        let mut refusals = refusals.borrow_mut();
        match refusals.get_mut(kind) {
            Some((last, unlogged)) if now.duration_since(*last) < REFUSAL_LOG_INTERVAL => {
                *unlogged += 1;
                None
            }
            Some((last, unlogged)) => {
                *last = now;
                Some(std::mem::take(unlogged))
            }
            None => {
                refusals.insert(kind, (now, 0));
                Some(0)
            }
        }
    });
    if let Some(unlogged) = unlogged {
        let reason = reason();
        tracing::info!(
            %client,
            reason,
            not_logged_since = unlogged,
            "{kind} (logged at most once a second)"
        );
    }
}
