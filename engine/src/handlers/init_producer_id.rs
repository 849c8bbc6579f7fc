//! InitProducerId (key 22): producer ids for idempotent producers.
//!
//! Ids come from the catalog's persisted allocator, so they are unique on this node across
//! restarts. A producer that sends its current id and epoch (KIP-360, v3+) gets the epoch
//! bumped, which restarts its sequence numbers at 0 on every partition. Transactional ids
//! are refused until transactions are implemented.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::{ApiSpec, RequestContext};
use crate::catalog::CatalogError;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::InitProducerId, 0, 5);

/// Hands out a producer id and epoch.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    // Kafka's transaction coordinator answers an empty transactional id with INVALID_REQUEST.
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| id.0.is_empty())
    {
        return response.with_error_code(ResponseError::InvalidRequest.code());
    }
    if request.transactional_id.is_some() {
        tracing::info!(client = ?context.client_id, "refusing transactional producer: transactions are not supported yet");
        return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let current_id = request.producer_id.0;
    let current_epoch = request.producer_epoch;
    // Bump the epoch of a known producer unless it would overflow; then start a new id.
    if current_id >= 0 && (0..i16::MAX - 1).contains(&current_epoch) {
        return response
            .with_producer_id(ProducerId(current_id))
            .with_producer_epoch(current_epoch + 1);
    }
    match shard.node.catalog.allocate_producer_id() {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(CatalogError::Persist(reason)) => crate::fatal(&reason),
        Err(error) => {
            tracing::error!(%error, "cannot allocate producer id");
            response.with_error_code(ResponseError::UnknownServerError.code())
        }
    }
}
