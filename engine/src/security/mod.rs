//! Security: listeners with Kafka's security protocols, and SASL authentication.
//!
//! A tour:
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
//! Not yet built (issue 18): TLS listeners, ACLs, quotas, SASL between brokers.

pub mod listeners;
pub mod plain;
pub mod scram;
pub mod session;

pub use listeners::{Listener, ListenerEndpoint, SecurityProtocol};
