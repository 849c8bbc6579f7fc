//! SaslHandshake (key 17) and SaslAuthenticate (key 36): a client authenticates on a SASL
//! listener (`crate::security::session` keeps the connection's state, and refuses every
//! other request until this is done).
//!
//! Only SaslHandshake v1 is served: after v0 a client sends the mechanism's messages as raw
//! frames instead of SaslAuthenticate requests, which every client since Kafka 1.0 avoids
//! when the broker offers v1.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{ApiSpec, RequestContext};
use crate::security::session::Session;
use crate::shard::Shard;

/// Served versions: v1. v0 is advertised as Kafka 4 advertises it (0-1), because
/// librdkafka before 2.x's KIP-896 work enables SASL only when the broker's range includes
/// v0 (`rdkafka_feature.c`: "SASL Handshake not supported by broker"; Debian's kcat, on
/// librdkafka 2.0.2, cannot authenticate otherwise); those clients then send v1. A real v0
/// handshake (raw, unframed SASL tokens after it) closes the connection.
pub const HANDSHAKE_SPEC: ApiSpec = ApiSpec {
    key: ApiKey::SaslHandshake,
    advertised_min: 0,
    min: 1,
    max: 1,
};
/// Served versions (v1 adds the session lifetime of KIP-368, v2 is flexible).
pub const AUTHENTICATE_SPEC: ApiSpec = ApiSpec::new(ApiKey::SaslAuthenticate, 0, 2);

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
        crate::security::log_refusal("SASL authentication failed", &context.client_host, reason);
    }
    SaslAuthenticateResponse::default()
        .with_error_code(outcome.error_code)
        .with_error_message(outcome.error_message.map(StrBytes::from_string))
        .with_auth_bytes(Bytes::from(outcome.auth_bytes))
        .with_session_lifetime_ms(outcome.session_lifetime_ms)
}
