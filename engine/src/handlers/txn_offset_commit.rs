//! TxnOffsetCommit (key 28): a transactional producer commits a group's offsets inside its
//! transaction (`send_offsets_to_transaction`, after AddOffsetsToTxn). The group coordinator
//! writes them as the producer's transactional batch and holds them until the transaction's
//! marker: only a commit makes them the group's offsets (`groups::coordinator_txn`).
//!
//! Kafka's checks: WRITE on the transactional id, READ on the group (either refuses every
//! partition), READ on each topic and each partition's existence (that partition only).
//!
//! v5 is transaction protocol v2's (KIP-890): the client sent no AddOffsetsToTxn, so the
//! group's `__consumer_offsets` partition joins the transaction here, as a produce's
//! partition does (`transactions::partition_add`).

use std::rc::Rc;

use kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::errors::fenced_for_version;
use super::group_common::{check_coordinator, is_refused, merge_codes, refused_topics};
use super::{ApiSpec, RequestContext};
use crate::groups::offsets_topic::{self, OffsetValue};
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::TxnOffsetCommit, 0, 5);

/// The first version of transaction protocol v2.
const PROTOCOL_V2_VERSION: i16 = 5;

/// Writes the offsets into the producer's transaction.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let refused = {
        let access = Access::new(shard, context);
        if !access.allows(
            ResourceType::TransactionalId,
            &request.transactional_id,
            AclOperation::Write,
        ) {
            let refused = ResponseError::TransactionalIdAuthorizationFailed.code();
            return answer(request.topics, std::iter::repeat(refused));
        }
        if !access.group(&request.group_id, AclOperation::Read) {
            let refused = ResponseError::GroupAuthorizationFailed.code();
            return answer(request.topics, std::iter::repeat(refused));
        }
        let names = request.topics.iter().map(|topic| &*topic.name.0);
        refused_topics(&access, names, AclOperation::Read)
    };
    let image = shard.image();
    let now_ms = spate_net::records::now_ms();
    let mut prechecks = Vec::new();
    let mut offsets = Vec::new();
    for (index, topic) in request.topics.iter().enumerate() {
        for partition in &topic.partitions {
            let precheck = if is_refused(&refused, index) {
                ResponseError::TopicAuthorizationFailed.code()
            } else if image
                .partition(&topic.name.0, partition.partition_index)
                .is_none()
            {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                offsets.push((
                    topic.name.0.to_string(),
                    partition.partition_index,
                    OffsetValue {
                        offset: partition.committed_offset,
                        leader_epoch: partition.committed_leader_epoch,
                        metadata: partition
                            .committed_metadata
                            .as_deref()
                            .unwrap_or("")
                            .to_string(),
                        commit_timestamp_ms: now_ms,
                    },
                ));
                0
            };
            prechecks.push(precheck);
        }
    }
    let count = offsets.len();
    let committed = match check_coordinator(shard, &request.group_id) {
        Err(code) => vec![code; count],
        Ok(()) if offsets.is_empty() => Vec::new(),
        Ok(()) if context.version >= PROTOCOL_V2_VERSION => {
            match add_offsets_partition(shard, &request).await {
                Ok(()) => commit(shard, context, &request, offsets).await,
                Err(code) => vec![code; count],
            }
        }
        Ok(()) => commit(shard, context, &request, offsets).await,
    };
    answer(request.topics, merge_codes(prechecks, committed))
}

/// The group's `__consumer_offsets` partition in the producer's transaction (protocol v2),
/// unless it holds the producer's open transaction at this epoch already.
async fn add_offsets_partition(
    shard: &Rc<Shard>,
    request: &TxnOffsetCommitRequest,
) -> Result<(), i16> {
    let producer = (request.producer_id.0, request.producer_epoch);
    let index = shard.groups.partition_for(&request.group_id);
    let partition = shard
        .partitions
        .leader(offsets_topic::TOPIC, index, -1)
        .await
        .map_err(|_| ResponseError::NotCoordinator.code())?;
    if partition
        .log()
        .has_ongoing_transaction(producer.0, producer.1)
    {
        return Ok(());
    }
    crate::transactions::partition_add::add(
        shard,
        &request.transactional_id,
        producer,
        offsets_topic::TOPIC,
        index,
        false,
    )
    .await
    .map_err(|code| {
        // The group coordinator's answer for a coordinator it cannot reach: the client
        // retries it.
        if code == ResponseError::NotEnoughReplicas.code() {
            ResponseError::CoordinatorNotAvailable.code()
        } else {
            code
        }
    })
}

/// The group coordinator's commit of the offsets into the transaction.
async fn commit(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: &TxnOffsetCommitRequest,
    offsets: Vec<(String, i32, OffsetValue)>,
) -> Vec<i16> {
    let count = offsets.len();
    let member = (
        &*request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    match shard
        .groups
        .txn_commit(
            shard,
            &request.group_id,
            (request.producer_id.0, request.producer_epoch),
            member,
            offsets,
        )
        .await
    {
        Ok(codes) => codes,
        Err(code) => vec![fenced_for_version(code, context.version, 3); count],
    }
}

/// The response: the request's partitions with `codes`, in order.
fn answer(
    topics: Vec<TxnOffsetCommitRequestTopic>,
    mut codes: impl Iterator<Item = i16>,
) -> TxnOffsetCommitResponse {
    let topics = topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
