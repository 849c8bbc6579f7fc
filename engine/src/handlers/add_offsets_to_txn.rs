//! AddOffsetsToTxn (key 25): a transactional producer about to commit a group's offsets in
//! its transaction (`send_offsets_to_transaction`) adds the group's `__consumer_offsets`
//! partition to it, so that the transaction's marker reaches the group coordinator. WRITE on
//! the transactional id, then READ on the group, as Kafka checks.

use std::rc::Rc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ApiKey};
use kafka_protocol::ResponseError;

use super::errors::fenced_for_version;
use super::{ApiSpec, RequestContext};
use crate::groups::offsets_topic;
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions (v4 is flexible; v5 would be transaction protocol v2's).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::AddOffsetsToTxn, 0, 4);

/// Adds the group's offsets partition to the producer's transaction.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let access = Access::new(shard, context);
    let transactional_id = request.transactional_id.0.as_str();
    let code = if !access.allows(
        ResourceType::TransactionalId,
        transactional_id,
        AclOperation::Write,
    ) {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else if !access.group(&request.group_id, AclOperation::Read) {
        ResponseError::GroupAuthorizationFailed.code()
    } else {
        let partition = (
            offsets_topic::TOPIC.to_string(),
            shard.groups.partition_for(&request.group_id),
        );
        match shard
            .txns
            .add_partitions(
                shard,
                transactional_id,
                (request.producer_id.0, request.producer_epoch),
                &[partition],
            )
            .await
        {
            Ok(()) => 0,
            Err(code) => fenced_for_version(code, context.version, 2),
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
