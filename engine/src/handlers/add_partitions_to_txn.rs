//! AddPartitionsToTxn (key 24): a transactional producer names the partitions it is about to
//! write in its transaction, before its first produce to each (transaction protocol v1), so
//! that the coordinator writes their markers when the transaction ends.
//!
//! Versions 0-3 are the clients'. Kafka's checks, in its order: WRITE on the transactional id
//! (every partition answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED); then WRITE on each topic
//! and each partition's existence: if any partition is refused, it answers why and the others
//! OPERATION_NOT_ATTEMPTED; else the coordinator's one answer for all.
//!
//! Versions 4 and up are the brokers' (KIP-890): a batch of transactions, each from a
//! partition leader, needing CLUSTER_ACTION (else the top-level CLUSTER_AUTHORIZATION_FAILED).
//! With `verify_only=false` the leader adds its partitions for a protocol v2 producer
//! (`transactions::partition_add`); with `verify_only=true` it asks whether they are in the
//! transaction, each answering NONE or TRANSACTION_ABORTABLE. Unknown partitions are
//! refused as in v0-3; topic ACLs are not checked (the leader checked WRITE on the produce).

use std::rc::Rc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey};
use kafka_protocol::ResponseError;

use super::errors::fenced_for_version;
use super::{ApiSpec, RequestContext};
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::AddPartitionsToTxn, 0, 5);

/// The first version brokers send.
const BROKER_VERSION: i16 = 4;

/// Adds the partitions to the producer's transaction.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if context.version >= BROKER_VERSION {
        return handle_from_brokers(shard, context, request).await;
    }
    let transactional_id = request.v3_and_below_transactional_id.0.to_string();
    let access = Access::new(shard, context);
    let image = shard.image();
    let partitions = partitions_of(&request.v3_and_below_topics);
    let codes: Vec<i16> = if !access.allows(
        ResourceType::TransactionalId,
        &transactional_id,
        AclOperation::Write,
    ) {
        vec![ResponseError::TransactionalIdAuthorizationFailed.code(); partitions.len()]
    } else {
        let refusals: Vec<i16> = partitions
            .iter()
            .map(|(topic, partition)| {
                if !access.topic(topic, AclOperation::Write) {
                    ResponseError::TopicAuthorizationFailed.code()
                } else if image.partition(topic, *partition).is_none() {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    0
                }
            })
            .collect();
        if refusals.iter().any(|&code| code != 0) {
            refusals
                .into_iter()
                .map(|code| match code {
                    0 => ResponseError::OperationNotAttempted.code(),
                    refused => refused,
                })
                .collect()
        } else {
            let code = match shard
                .txns
                .add_partitions(
                    shard,
                    &transactional_id,
                    (
                        request.v3_and_below_producer_id.0,
                        request.v3_and_below_producer_epoch,
                    ),
                    &partitions,
                )
                .await
            {
                Ok(()) => 0,
                Err(code) => fenced_for_version(code, context.version, 2),
            };
            vec![code; partitions.len()]
        }
    };
    let results = results_by_topic(request.v3_and_below_topics, codes);
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

/// AddPartitionsToTxn v4+: each transaction of the batch, in order.
async fn handle_from_brokers(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if !Access::new(shard, context).cluster(AclOperation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut results = Vec::with_capacity(request.transactions.len());
    for transaction in request.transactions {
        let transactional_id = transaction.transactional_id.0.to_string();
        let producer = (transaction.producer_id.0, transaction.producer_epoch);
        let partitions = partitions_of(&transaction.topics);
        let image = shard.image();
        let unknown: Vec<bool> = partitions
            .iter()
            .map(|(topic, partition)| image.partition(topic, *partition).is_none())
            .collect();
        drop(image);
        let codes: Vec<i16> = if unknown.iter().any(|&unknown| unknown) {
            unknown
                .into_iter()
                .map(|unknown| {
                    if unknown {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        ResponseError::OperationNotAttempted.code()
                    }
                })
                .collect()
        } else if transaction.verify_only {
            match shard
                .txns
                .verify_partitions(shard, &transactional_id, producer, &partitions)
            {
                Ok(added) => added
                    .into_iter()
                    .map(|added| {
                        if added {
                            0
                        } else {
                            ResponseError::TransactionAbortable.code()
                        }
                    })
                    .collect(),
                Err(code) => vec![code; partitions.len()],
            }
        } else {
            let code = match shard
                .txns
                .add_partitions_implicitly(shard, &transactional_id, producer, &partitions)
                .await
            {
                Ok(()) => 0,
                Err(code) => code,
            };
            vec![code; partitions.len()]
        };
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(transaction.transactional_id)
                .with_topic_results(results_by_topic(transaction.topics, codes)),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// Every (topic, partition) of the request's topics, in order.
fn partitions_of(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|topic| {
            let name = topic.name.0.to_string();
            topic
                .partitions
                .iter()
                .map(move |&partition| (name.clone(), partition))
        })
        .collect()
}

/// The answers of `topics`' partitions, one code each in order.
fn results_by_topic(
    topics: Vec<AddPartitionsToTxnTopic>,
    codes: Vec<i16>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut codes = codes.into_iter();
    topics
        .into_iter()
        .map(|topic| {
            AddPartitionsToTxnTopicResult::default()
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .map(|&partition| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(partition)
                                .with_partition_error_code(codes.next().unwrap_or_default())
                        })
                        .collect(),
                )
                .with_name(topic.name)
        })
        .collect()
}
