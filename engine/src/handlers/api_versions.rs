//! ApiVersions (key 18): which APIs and versions this broker serves, straight from
//! [`super::APIS`], and the feature levels (KIP-584) clients read: `transaction.version`,
//! supported 0-2 and finalized at `--transaction-version` (default 2), which tells Kafka 4
//! clients to use transaction protocol v2 (KIP-890).

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{ApiSpec, RequestContext, APIS};
use crate::shard::Shard;

/// Kafka's feature name.
const TRANSACTION_VERSION: &str = "transaction.version";
/// The highest transaction.version this broker serves.
pub const MAX_TRANSACTION_VERSION: i16 = 2;
/// ApiVersions v3 leaves out features whose supported minimum is 0 (KAFKA-17011).
const FEATURES_FROM_0_VERSION: i16 = 4;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::ApiVersions, 0, 4);

/// Lists every API in the handler table, and the feature levels.
pub fn handle(
    shard: &Shard,
    context: &RequestContext,
    _request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    let api_keys = APIS
        .iter()
        .map(|spec| {
            ApiVersion::default()
                .with_api_key(spec.key as i16)
                .with_min_version(spec.advertised_min)
                .with_max_version(spec.max)
        })
        .collect();
    let level = shard.node.config.transactions.transaction_version;
    let supported = if context.version >= FEATURES_FROM_0_VERSION {
        vec![SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
            .with_min_version(0)
            .with_max_version(MAX_TRANSACTION_VERSION)]
    } else {
        Vec::new()
    };
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys)
        .with_supported_features(supported)
        // Kafka's epoch is its metadata offset; the levels here change only with the flag
        // across a restart, so the epoch follows the level: a client sees an upgrade to
        // v2 (it takes the features of the highest epoch it has seen, and only a newer one).
        .with_finalized_features_epoch(1 + i64::from(level))
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
            .with_min_version_level(level)
            .with_max_version_level(level)])
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
