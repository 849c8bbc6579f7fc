//! FindCoordinator (key 10): which broker (shard) coordinates a consumer group (the leader of
//! the group's `__consumer_offsets` partition) or a transactional id (the leader of its
//! `__transaction_state` partition, made on the first lookup), from the metadata image. A key the request
//! may not DESCRIBE (the group, or the transactional id) is refused, as Kafka does, without
//! saying where it lives.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{ApiSpec, RequestContext};
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;
use crate::transactions::coordinator::TxnCoordinator;

/// Served versions: v4 batches keys; v5 only allows TRANSACTION_ABORTABLE (KIP-890) and v6
/// the share-group key type (KIP-932), which Spate answers with INVALID_REQUEST like any
/// key type it has no coordinator for.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::FindCoordinator, 0, 6);

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Finds the coordinator of each key.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if context.version >= 4 {
        request.coordinator_keys.clone()
    } else {
        vec![request.key.clone()]
    };
    let access = Access::new(shard, context);
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| find(shard, &access, request.key_type, key, context.listener))
        .collect();
    if context.version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let Some(only) = coordinators.into_iter().next() else {
        return FindCoordinatorResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    };
    FindCoordinatorResponse::default()
        .with_error_code(only.error_code)
        .with_error_message(only.error_message.filter(|_| context.version >= 1))
        .with_node_id(only.node_id)
        .with_host(only.host)
        .with_port(only.port)
}

fn find(
    shard: &Rc<Shard>,
    access: &Access,
    key_type: i8,
    key: StrBytes,
    listener: &str,
) -> Coordinator {
    let answer = Coordinator::default()
        .with_key(key.clone())
        .with_node_id(BrokerId(-1))
        .with_port(-1);
    let not_available = ResponseError::CoordinatorNotAvailable.code();
    match key_type {
        KEY_TYPE_GROUP if !access.group(&key, AclOperation::Describe) => {
            answer.with_error_code(ResponseError::GroupAuthorizationFailed.code())
        }
        KEY_TYPE_GROUP => {
            let leader = shard.group_coordinator(&key).0;
            located(shard, answer, leader, listener, |answer| {
                answer.with_error_code(not_available)
            })
        }
        KEY_TYPE_TRANSACTION
            if !access.allows(ResourceType::TransactionalId, &key, AclOperation::Describe) =>
        {
            answer.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
        }
        KEY_TYPE_TRANSACTION => {
            let leader = TxnCoordinator::coordinator_of(shard, &key).map(|(_, leader)| leader);
            located(shard, answer, leader, listener, |answer| {
                // Kafka makes `__transaction_state` on the first lookup; clients retry
                // COORDINATOR_NOT_AVAILABLE meanwhile.
                shard.txns.ensure_topic(shard);
                answer.with_error_code(not_available)
            })
        }
        _ => answer.with_error_code(ResponseError::InvalidRequest.code()),
    }
}

/// The answer naming `leader`'s endpoint on `listener`; `otherwise(answer)` if there is no
/// leader or it has no such endpoint.
fn located(
    shard: &Shard,
    answer: Coordinator,
    leader: Option<crate::partition::BrokerId>,
    listener: &str,
    otherwise: impl FnOnce(Coordinator) -> Coordinator,
) -> Coordinator {
    let image = shard.image();
    let Some((id, (host, port))) = leader
        .and_then(|leader| image.broker(leader))
        .and_then(|broker| Some((broker.id, broker.endpoint(listener)?)))
    else {
        return otherwise(answer);
    };
    answer
        .with_node_id(BrokerId(id.0))
        .with_host(StrBytes::from_string(host.to_string()))
        .with_port(i32::from(port))
}
