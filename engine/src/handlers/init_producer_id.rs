//! InitProducerId (key 22): producer ids for idempotent producers.
//!
//! Ids come in blocks from the controller, which persists how far it has handed them out, so
//! they are never reused across restarts; each shard hands out its block. With a
//! transactional id the request goes to the id's transaction coordinator
//! (`transactions::coordinator`), which keeps the id's producer id and bumps its epoch.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::errors::{controller_error_code, fenced_for_version};
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
    let access = Access::new(shard, context);
    if let Some(transactional_id) = &request.transactional_id {
        if !access.allows(
            ResourceType::TransactionalId,
            transactional_id,
            AclOperation::Write,
        ) {
            return response
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
        }
        shard.txns.ensure_topic(shard);
        // v3+ (KIP-360): the producer id and epoch the client had, -1 for none.
        let expected = (request.producer_id.0 >= 0 && request.producer_epoch >= 0)
            .then_some((request.producer_id.0, request.producer_epoch));
        return match shard
            .txns
            .init_producer_id(
                shard,
                transactional_id,
                request.transaction_timeout_ms,
                expected,
            )
            .await
        {
            Ok((producer_id, epoch)) => response
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(code) => response.with_error_code(fenced_for_version(code, context.version, 4)),
        };
    }
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic
    // (KIP-679, Kafka 3.0+).
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
