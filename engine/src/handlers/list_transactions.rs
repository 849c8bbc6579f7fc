//! ListTransactions (key 66, KIP-664): the transactional ids this broker (shard) coordinates,
//! with their producer id and state, filtered by state names, producer ids and (v1, KIP-994)
//! how long the transaction has run. An admin client asks every broker and merges the
//! answers. Only ids the request may DESCRIBE are listed; a state filter that names no
//! state comes back in `unknown_state_filters`, as Kafka answers it.

use std::rc::Rc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ApiKey, ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::{ApiSpec, RequestContext};
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;
use crate::transactions::state::TxnState;

/// Served versions (v2's transactional id pattern, KIP-1152, is not served yet).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::ListTransactions, 0, 1);

const STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::Dead,
    TxnState::PrepareEpochFence,
];

/// Lists the transactions this shard coordinates.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let access = Access::new(shard, context);
    let (states, unknown): (Vec<_>, Vec<_>) = request
        .state_filters
        .iter()
        .partition(|name| STATES.iter().any(|state| state.name() == name.as_str()));
    let wanted: Vec<TxnState> = STATES
        .into_iter()
        .filter(|state| states.iter().any(|name| name.as_str() == state.name()))
        .collect();
    let now_ms = spate_net::records::now_ms();
    // A duration filter (v1) keeps transactions running for at least that long.
    let min_duration =
        (context.version >= 1 && request.duration_filter >= 0).then_some(request.duration_filter);
    let listed = shard.txns.list(|metadata| {
        (request.state_filters.is_empty() || wanted.contains(&metadata.state))
            && (request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .contains(&ProducerId(metadata.producer_id)))
            && min_duration.is_none_or(|duration| {
                metadata.start_ms >= 0 && now_ms - metadata.start_ms >= duration
            })
    });
    let response = ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown.into_iter().cloned().collect::<Vec<StrBytes>>());
    match listed {
        Err(code) => response.with_error_code(code),
        Ok(listed) => response.with_transaction_states(
            listed
                .into_iter()
                .filter(|metadata| {
                    access.allows_quietly(
                        ResourceType::TransactionalId,
                        &metadata.transactional_id,
                        AclOperation::Describe,
                    )
                })
                .map(|metadata| {
                    TransactionState::default()
                        .with_transactional_id(TransactionalId(StrBytes::from_string(
                            metadata.transactional_id,
                        )))
                        .with_producer_id(ProducerId(metadata.producer_id))
                        .with_transaction_state(StrBytes::from_static_str(metadata.state.name()))
                })
                .collect(),
        ),
    }
}
