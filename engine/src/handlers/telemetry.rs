//! GetTelemetrySubscriptions (key 71) and PushTelemetry (key 72), KIP-714: clients that
//! support client metrics ask the broker which metrics to push. Spate collects none, so it
//! answers with an empty subscription (no requested metrics), after which clients push
//! nothing; a push that arrives anyway is accepted and dropped. Without these APIs, Java and
//! librdkafka clients log a warning at start.

use kafka_protocol::messages::{
    ApiKey, GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse,
    PushTelemetryRequest, PushTelemetryResponse,
};

use super::{ApiSpec, RequestContext};

/// Served versions.
pub const SUBSCRIPTIONS_SPEC: ApiSpec = ApiSpec::new(ApiKey::GetTelemetrySubscriptions, 0, 0);
/// Served versions.
pub const PUSH_SPEC: ApiSpec = ApiSpec::new(ApiKey::PushTelemetry, 0, 0);

/// How long a client waits before asking again (Kafka's default push interval, 5 min).
const PUSH_INTERVAL_MS: i32 = 300_000;

/// An empty subscription; a client without an instance id gets one.
pub fn subscriptions(
    _context: &RequestContext,
    request: GetTelemetrySubscriptionsRequest,
) -> GetTelemetrySubscriptionsResponse {
    let instance_id = if request.client_instance_id.is_nil() {
        uuid::Uuid::new_v4()
    } else {
        request.client_instance_id
    };
    GetTelemetrySubscriptionsResponse::default()
        .with_client_instance_id(instance_id)
        .with_subscription_id(0)
        .with_accepted_compression_types(Vec::new())
        .with_push_interval_ms(PUSH_INTERVAL_MS)
        .with_telemetry_max_bytes(0)
        .with_delta_temporality(true)
        .with_requested_metrics(Vec::new())
}

/// Accepts and drops a push.
pub fn push(_context: &RequestContext, _request: PushTelemetryRequest) -> PushTelemetryResponse {
    PushTelemetryResponse::default()
}
