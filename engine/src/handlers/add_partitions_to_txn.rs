//! AddPartitionsToTxn (key 24): a transactional producer names the partitions it is about to
//! write in its transaction, before its first produce to each (transaction protocol v1), so
//! that the coordinator writes their markers when the transaction ends.
//!
//! Versions 0-3, the clients' (v4 and up batch transactions for brokers verifying a produce,
//! KIP-890, and are not served yet). Kafka's checks, in its order: WRITE on the transactional
//! id (every partition answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED); then WRITE on each
//! topic and each partition's existence: if any partition is refused, it answers why and the
//! others OPERATION_NOT_ATTEMPTED; else the coordinator's one answer for all.

use std::rc::Rc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey};
use kafka_protocol::ResponseError;

use super::errors::fenced_for_version;
use super::{ApiSpec, RequestContext};
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::AddPartitionsToTxn, 0, 3);

/// Adds the partitions to the producer's transaction.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let transactional_id = request.v3_and_below_transactional_id.0.to_string();
    let access = Access::new(shard, context);
    let image = shard.image();
    let partitions: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|topic| {
            let name = topic.name.0.to_string();
            topic
                .partitions
                .iter()
                .map(move |&partition| (name.clone(), partition))
        })
        .collect();
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
    let mut codes = codes.into_iter();
    let results = request
        .v3_and_below_topics
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
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
