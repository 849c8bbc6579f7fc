//! InitProducerId (key 22): producer ids for idempotent producers.
//!
//! Ids come in blocks from the controller, which persists how far it has handed them out, so
//! they are never reused across restarts; each shard hands out its block. Transactional ids
//! are refused until transactions are implemented.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::errors::controller_error_code;
use super::{ApiSpec, RequestContext};
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::InitProducerId, 0, 5);

/// Hands out a producer id and epoch.
pub async fn handle(
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
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic
    // (KIP-679, Kafka 3.0+).
    let access = Access::new(shard, context);
    if !access.cluster(AclOperation::IdempotentWrite)
        && !access.any(ResourceType::Topic, AclOperation::Write)
    {
        return response.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    // Without a transactional id Kafka always hands out a new producer id with epoch 0
    // (TransactionCoordinator.handleInitProducerId): the id and epoch a client sends prove
    // nothing, and bumping them would let anyone fence another producer.
    match shard.allocate_producer_id().await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => {
            tracing::warn!(%error, "cannot allocate a producer id");
            response.with_error_code(controller_error_code(&error))
        }
    }
}
