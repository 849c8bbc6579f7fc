//! EndTxn (key 26): a transactional producer commits or aborts its transaction. Answered once
//! the coordinator has written the prepared commit or abort to `__transaction_state`; the
//! markers follow (the producer's next transaction waits for them with
//! CONCURRENT_TRANSACTIONS). WRITE on the transactional id, as Kafka checks.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, EndTxnRequest, EndTxnResponse};
use kafka_protocol::ResponseError;

use super::errors::fenced_for_version;
use super::{ApiSpec, RequestContext};
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions (v5 is transaction protocol v2's, KIP-890, not served yet).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::EndTxn, 0, 4);

/// Commits or aborts the producer's transaction.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let transactional_id = request.transactional_id.0.as_str();
    let code = if !Access::new(shard, context).allows(
        ResourceType::TransactionalId,
        transactional_id,
        AclOperation::Write,
    ) {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else {
        match shard
            .txns
            .end_txn(
                shard,
                transactional_id,
                (request.producer_id.0, request.producer_epoch),
                request.committed,
            )
            .await
        {
            Ok(()) => 0,
            Err(code) => fenced_for_version(code, context.version, 2),
        }
    };
    EndTxnResponse::default().with_error_code(code)
}
