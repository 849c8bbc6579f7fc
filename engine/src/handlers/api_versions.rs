//! ApiVersions (key 18): which APIs and versions this broker serves, straight from
//! [`super::APIS`].

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{ApiSpec, RequestContext, APIS};

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::ApiVersions, 0, 4);

/// Lists every API in the handler table.
pub fn handle(_context: &RequestContext, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    let api_keys = APIS
        .iter()
        .map(|spec| {
            ApiVersion::default()
                .with_api_key(spec.key as i16)
                .with_min_version(spec.advertised_min)
                .with_max_version(spec.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys)
        // Kafka reports -1 when no feature versions have been finalized.
        .with_finalized_features_epoch(-1)
}

/// The KIP-511 reply to a too-new ApiVersions request.
pub fn unsupported_version_reply(context: &RequestContext) -> bytes::BytesMut {
    tracing::debug!(
        version = context.version,
        client = ?context.client_id,
        "ApiVersions version above our maximum; replying with our range"
    );
    spate_net::codec::encode_api_versions_unsupported(context.correlation_id, SPEC.min, SPEC.max)
}
