//! EndTxn (key 26): a transactional producer commits or aborts its transaction. Answered once
//! the coordinator has written the prepared commit or abort to `__transaction_state`; the
//! markers follow (the producer's next transaction waits for them with
//! CONCURRENT_TRANSACTIONS). WRITE on the transactional id, as Kafka checks.
//!
//! v5 is transaction protocol v2's (KIP-890): the coordinator bumps the producer's epoch as
//! it prepares (`transactions::state_v2`) and answers the producer id and epoch for the next
//! transaction.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, EndTxnRequest, EndTxnResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::errors::fenced_for_version;
use super::{ApiSpec, RequestContext};
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::EndTxn, 0, 5);

/// The first version of transaction protocol v2.
const PROTOCOL_V2_VERSION: i16 = 5;

/// Commits or aborts the producer's transaction.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let transactional_id = request.transactional_id.0.as_str();
    let producer = (request.producer_id.0, request.producer_epoch);
    let result = if !Access::new(shard, context).allows(
        ResourceType::TransactionalId,
        transactional_id,
        AclOperation::Write,
    ) {
        Err(ResponseError::TransactionalIdAuthorizationFailed.code())
    } else if context.version >= PROTOCOL_V2_VERSION {
        shard
            .txns
            .end_txn_v2(shard, transactional_id, producer, request.committed)
            .await
    } else {
        shard
            .txns
            .end_txn(shard, transactional_id, producer, request.committed)
            .await
            .map(|()| producer)
    };
    match result {
        Ok((producer_id, producer_epoch)) => EndTxnResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch),
        Err(code) => EndTxnResponse::default()
            .with_error_code(fenced_for_version(code, context.version, 2))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}
