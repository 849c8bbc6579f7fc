//! AlterPartitionReassignments (key 45) and ListPartitionReassignments (key 46), KIP-455:
//! `kafka-reassign-partitions.sh`, AdminClient `alterPartitionReassignments` and
//! `listPartitionReassignments`, and `spate cluster reassign`. An alteration is one call to
//! the controller, whichever node it was sent to (`metadata::controller_reassign` does the
//! work); the list is read from this node's image, which follows the controller's within
//! moments.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::controller_error_code;
use super::{ApiSpec, RequestContext};
use crate::metadata::controller::{
    ControllerError, ControllerReply, ControllerRequest, ReassignmentTarget,
};
use crate::metadata::image::PartitionAssignment;
use crate::partition::BrokerId;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Access, AUTHORIZATION_FAILED};
use crate::shard::Shard;

/// Served versions of AlterPartitionReassignments (v1: `allow_replication_factor_change`).
pub const ALTER_SPEC: ApiSpec = ApiSpec::new(ApiKey::AlterPartitionReassignments, 0, 1);
/// Served versions of ListPartitionReassignments.
pub const LIST_SPEC: ApiSpec = ApiSpec::new(ApiKey::ListPartitionReassignments, 0, 0);

/// See the module docs.
pub async fn alter(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if !Access::new(shard, context).cluster(AclOperation::Alter) {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)));
    }
    let allow_factor_change = context.version == 0 || request.allow_replication_factor_change;
    let asked: Vec<ReassignmentTarget> = request
        .topics
        .iter()
        .flat_map(|topic| {
            let name = topic.name.0.to_string();
            topic.partitions.iter().map(move |partition| {
                let target = partition
                    .replicas
                    .as_ref()
                    .map(|replicas| replicas.iter().map(|id| BrokerId(id.0)).collect());
                ((name.clone(), partition.partition_index), target)
            })
        })
        .collect();
    let response = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_factor_change);
    if asked.is_empty() {
        return response;
    }
    let call = ControllerRequest::AlterReassignments {
        partitions: asked,
        allow_factor_change,
    };
    let results = match shard.controller_call(call).await {
        Ok(ControllerReply::AlterReassignments(results)) => results,
        Ok(_) => return failed(response, ControllerError::Unavailable),
        Err(error) => return failed(response, error),
    };
    // By topic, in the order asked.
    let mut topics: Vec<ReassignableTopicResponse> = Vec::new();
    for ((topic, partition), result) in results {
        let answer = ReassignablePartitionResponse::default().with_partition_index(partition);
        let answer = match result {
            Ok(()) => {
                tracing::info!(%topic, partition, "partition reassignment changed on request");
                answer
            }
            Err(error) => answer
                .with_error_code(controller_error_code(&error))
                .with_error_message(Some(StrBytes::from_string(error.to_string()))),
        };
        match topics.last_mut() {
            Some(last) if last.name.0.as_str() == topic => last.partitions.push(answer),
            _ => topics.push(
                ReassignableTopicResponse::default()
                    .with_name(TopicName(StrBytes::from_string(topic)))
                    .with_partitions(vec![answer]),
            ),
        }
    }
    response.with_responses(topics)
}

/// The whole request refused (the controller is not reachable): a top-level error.
fn failed(
    response: AlterPartitionReassignmentsResponse,
    error: ControllerError,
) -> AlterPartitionReassignmentsResponse {
    response
        .with_error_code(controller_error_code(&error))
        .with_error_message(Some(StrBytes::from_string(error.to_string())))
}

/// See the module docs: the reassignments under way, of every partition or of those asked
/// (partitions that do not exist or are not reassigning are left out, as Kafka does).
pub fn list(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !Access::new(shard, context).cluster(AclOperation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)));
    }
    let image = shard.image();
    let mut found: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    let mut add = |topic: &str, index: i32, assignment: &PartitionAssignment| {
        if !assignment.is_reassigning() {
            return;
        }
        let ids = |brokers: &[BrokerId]| {
            brokers
                .iter()
                .map(|broker| kafka_protocol::messages::BrokerId(broker.0))
                .collect()
        };
        found.entry(topic.to_string()).or_default().push(
            OngoingPartitionReassignment::default()
                .with_partition_index(index)
                .with_replicas(ids(&assignment.replicas))
                .with_adding_replicas(ids(&assignment.adding))
                .with_removing_replicas(ids(&assignment.removing)),
        );
    };
    match &request.topics {
        None => {
            for topic in image.topics() {
                for (index, assignment) in topic.partitions.iter().enumerate() {
                    add(&topic.name, index as i32, assignment);
                }
            }
        }
        Some(asked) => {
            for asked in asked {
                let Some(topic) = image.topic(&asked.name.0) else {
                    continue;
                };
                for index in &asked.partition_indexes {
                    if let Some(assignment) = topic.partition(*index) {
                        add(&topic.name, *index, assignment);
                    }
                }
            }
        }
    }
    let topics = found
        .into_iter()
        .map(|(name, partitions)| {
            OngoingTopicReassignment::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
