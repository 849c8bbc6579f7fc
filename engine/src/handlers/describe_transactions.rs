//! DescribeTransactions (key 65, KIP-664): the state of transactional ids on their
//! coordinator: state, producer id and epoch, timeout, start time and partitions, so that an
//! operator can find a hanging transaction. Each id needs DESCRIBE on it
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); partitions of topics the request may not
//! DESCRIBE are left out, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{ApiSpec, RequestContext};
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DescribeTransactions, 0, 0);

/// Describes each transactional id of the request.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let access = Access::new(shard, context);
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let answer = TransactionState::default()
                .with_transactional_id(id.clone())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            if !access.allows(ResourceType::TransactionalId, &id, AclOperation::Describe) {
                return answer
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
            }
            let metadata = match shard.txns.describe(shard, &id) {
                Ok(metadata) => metadata,
                Err(code) => return answer.with_error_code(code),
            };
            let topics = metadata
                .partitions_by_topic()
                .into_iter()
                .filter(|(topic, _)| access.topic(topic, AclOperation::Describe))
                .map(|(topic, partitions)| {
                    TopicData::default()
                        .with_topic(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(partitions)
                })
                .collect();
            answer
                .with_transaction_state(StrBytes::from_static_str(metadata.state.name()))
                .with_transaction_timeout_ms(metadata.timeout_ms)
                .with_transaction_start_time_ms(metadata.start_ms)
                .with_producer_id(ProducerId(metadata.producer_id))
                .with_producer_epoch(metadata.producer_epoch)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
