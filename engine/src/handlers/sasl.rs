//! SaslHandshake (key 17) and SaslAuthenticate (key 36): a client authenticates on a SASL
//! listener (`crate::security::session` keeps the connection's state, and refuses every
//! other request until this is done).
//!
//! Only SaslHandshake v1 is served: after v0 a client sends the mechanism's messages as raw
//! frames instead of SaslAuthenticate requests, which every client since Kafka 1.0 avoids
//! when the broker offers v1.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{ApiSpec, RequestContext};
use crate::security::session::Session;
use crate::shard::Shard;

/// Served versions.
pub const HANDSHAKE_SPEC: ApiSpec = ApiSpec::new(ApiKey::SaslHandshake, 1, 1);
/// Served versions (v1 adds the session lifetime of KIP-368, v2 is flexible).
pub const AUTHENTICATE_SPEC: ApiSpec = ApiSpec::new(ApiKey::SaslAuthenticate, 0, 2);

/// Failed authentications are logged at most once a second per shard, with how many were not:
/// a client retrying with a wrong password (librdkafka reconnects every few tens of
/// milliseconds) must not flood the log.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(1);

thread_local! {
    /// When this shard last logged a failure, and failures since that were not logged.
    static FAILURES: Cell<(Option<Instant>, u64)> = const { Cell::new((None, 0)) };
}

fn log_failure(client: &str, reason: &str) {
    let now = Instant::now();
    let (last, unlogged) = FAILURES.get();
    if last.is_some_and(|last| now.duration_since(last) < FAILURE_LOG_INTERVAL) {
        FAILURES.set((last, unlogged + 1));
        return;
    }
    FAILURES.set((Some(now), 0));
    tracing::info!(
        %client,
        reason,
        not_logged_since = unlogged,
        "SASL authentication failed (logged at most once a second)"
    );
}

/// Picks the mechanism for the connection.
pub fn handshake(
    shard: &Rc<Shard>,
    session: &mut Session,
    request: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let config = &shard.node.config.sasl;
    let error_code = session.handshake(&request.mechanism, config);
    SaslHandshakeResponse::default()
        .with_error_code(error_code)
        .with_mechanisms(
            config
                .mechanisms
                .iter()
                .map(|mechanism| StrBytes::from_static_str(mechanism.name()))
                .collect(),
        )
}

/// One message of the mechanism's exchange.
pub fn authenticate(
    shard: &Rc<Shard>,
    context: &RequestContext,
    session: &mut Session,
    request: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    let image = shard.image();
    let outcome = session.authenticate(
        &request.auth_bytes,
        &image,
        &shard.node.config.sasl,
        Instant::now(),
    );
    if outcome.error_code == spate_net::error_code::NONE {
        if session.is_authenticated_now() {
            tracing::debug!(client = %context.client_host, principal = %session.principal(), "authenticated");
        }
    } else {
        let reason = outcome
            .log_reason
            .as_deref()
            .or(outcome.error_message.as_deref())
            .unwrap_or("");
        log_failure(&context.client_host, reason);
    }
    SaslAuthenticateResponse::default()
        .with_error_code(outcome.error_code)
        .with_error_message(outcome.error_message.map(StrBytes::from_string))
        .with_auth_bytes(Bytes::from(outcome.auth_bytes))
        .with_session_lifetime_ms(outcome.session_lifetime_ms)
}
