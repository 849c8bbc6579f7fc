//! CreateTopics (key 19).

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::controller_error_code;
use super::{ApiSpec, RequestContext};
use crate::metadata::controller::{ControllerError, ControllerReply, ControllerRequest, NewTopic};
use crate::metadata::image::TopicImage;
use crate::partition::BrokerId;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Access, AUTHORIZATION_FAILED};
use crate::shard::Shard;
use crate::topic_config;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::CreateTopics, 2, 7);

/// Creates the topics in one call to the controller, which checks names, counts, replication
/// factors, configs and the node's limits.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut new_topics = Vec::with_capacity(request.topics.len());
    let mut refused: Vec<Option<(i16, String)>> = Vec::with_capacity(request.topics.len());
    let access = Access::new(shard, context);
    for topic in &request.topics {
        if !access.may_create_topic(&topic.name.0) {
            refused.push(Some((
                ResponseError::TopicAuthorizationFailed.code(),
                AUTHORIZATION_FAILED.into(),
            )));
            continue;
        }
        let assignments = match manual_assignments(topic) {
            Ok(assignments) => assignments,
            Err(refusal) => {
                refused.push(Some(refusal));
                continue;
            }
        };
        refused.push(None);
        new_topics.push(NewTopic {
            name: topic.name.0.to_string(),
            partitions: if assignments.is_empty() {
                (topic.num_partitions != -1).then_some(topic.num_partitions)
            } else {
                Some(assignments.len() as i32)
            },
            replication_factor: Some(topic.replication_factor),
            assignments,
            configs: topic
                .configs
                .iter()
                .filter_map(|config| {
                    Some((config.name.to_string(), config.value.as_ref()?.to_string()))
                })
                .collect::<BTreeMap<_, _>>(),
        });
    }
    let call = ControllerRequest::CreateTopics {
        topics: new_topics,
        validate_only: request.validate_only,
    };
    let mut outcomes = match shard.controller_call(call).await {
        Ok(ControllerReply::CreateTopics(results)) => results,
        Ok(_) => vec![Err(ControllerError::Unavailable); request.topics.len()],
        Err(error) => vec![Err(error); request.topics.len()],
    }
    .into_iter();
    let results = request
        .topics
        .into_iter()
        .zip(refused)
        .map(|(topic, refused)| {
            let result = CreatableTopicResult::default()
                .with_name(topic.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            let outcome = match refused {
                Some(refusal) => Err(refusal),
                None => outcomes
                    .next()
                    .unwrap_or(Err(ControllerError::Unavailable))
                    .map_err(|error| (controller_error_code(&error), error.to_string())),
            };
            match outcome {
                Ok(created) => {
                    if request.validate_only {
                        tracing::debug!(topic = %created.name, "validated topic creation");
                    } else {
                        tracing::info!(topic = %created.name, partitions = created.partition_count(), "created topic");
                    }
                    let configs_allowed =
                        access.topic(&created.name, AclOperation::DescribeConfigs);
                    created_result(shard, context, result, &created, configs_allowed)
                }
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

fn created_result(
    shard: &Shard,
    context: &RequestContext,
    result: CreatableTopicResult,
    created: &TopicImage,
    configs_allowed: bool,
) -> CreatableTopicResult {
    if !configs_allowed && context.version >= 5 {
        // Kafka's answer without DESCRIBE_CONFIGS: the topic, not its configs.
        return result
            .with_topic_id(created.id)
            .with_topic_config_error_code(ResponseError::TopicAuthorizationFailed.code());
    }
    let configs = topic_config::describe(&created.configs, &shard.node.config)
        .into_iter()
        .map(|config| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(config.name))
                .with_value(Some(StrBytes::from_string(config.value)))
                .with_config_source(config.source)
        })
        .collect();
    result
        .with_topic_id(created.id)
        .with_num_partitions(created.partition_count())
        .with_replication_factor(
            created
                .partitions
                .first()
                .map_or(1, |partition| partition.replicas.len() as i16),
        )
        .with_configs((context.version >= 5).then_some(configs))
}

/// A topic's explicit replica assignments (`kafka-topics.sh --replica-assignment`), each
/// partition's brokers by index; empty when the topic asks for a count and a factor. Kafka's
/// request checks: not both, and partitions numbered 0, 1, 2, ...
fn manual_assignments(
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<Vec<Vec<BrokerId>>, (i16, String)> {
    if topic.assignments.is_empty() {
        return Ok(Vec::new());
    }
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err((
            ResponseError::InvalidRequest.code(),
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
        ));
    }
    let mut by_index: Vec<(i32, Vec<BrokerId>)> = topic
        .assignments
        .iter()
        .map(|assignment| {
            let brokers = assignment
                .broker_ids
                .iter()
                .map(|id| BrokerId(id.0))
                .collect();
            (assignment.partition_index, brokers)
        })
        .collect();
    by_index.sort_by_key(|(index, _)| *index);
    if by_index
        .iter()
        .enumerate()
        .any(|(position, (index, _))| *index != position as i32)
    {
        return Err((
            ResponseError::InvalidReplicaAssignment.code(),
            "partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    Ok(by_index.into_iter().map(|(_, brokers)| brokers).collect())
}
