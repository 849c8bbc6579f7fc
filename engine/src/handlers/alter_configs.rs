//! AlterConfigs (key 33) and IncrementalAlterConfigs (key 44): change a topic's config
//! overrides. AlterConfigs replaces the whole set; IncrementalAlterConfigs sets, deletes,
//! appends to or subtracts from single entries. The controller computes and checks the new set
//! from the current one (so concurrent changes never lose each other), and open logs take it
//! when their shard applies the change. Broker settings are static (flags and the config file)
//! and are refused here.

use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ApiKey, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::controller_error_code;
use super::{ApiSpec, RequestContext};
use crate::metadata::controller::{
    ConfigChange, ControllerError, ControllerReply, ControllerRequest,
};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Access, AUTHORIZATION_FAILED};
use crate::shard::Shard;

/// Served versions of AlterConfigs.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::AlterConfigs, 0, 2);
/// Served versions of IncrementalAlterConfigs.
pub const INCREMENTAL_SPEC: ApiSpec = ApiSpec::new(ApiKey::IncrementalAlterConfigs, 0, 1);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Replaces each topic's overrides.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let changes = request.resources.iter().map(|resource| {
        let configs = resource
            .configs
            .iter()
            .filter_map(|config| {
                Some((config.name.to_string(), config.value.as_ref()?.to_string()))
            })
            .collect();
        (
            resource.resource_type,
            resource.resource_name.to_string(),
            ConfigChange::Replace(configs),
        )
    });
    let outcomes = apply(shard, context, changes.collect(), request.validate_only).await;
    let responses = request
        .resources
        .into_iter()
        .zip(outcomes)
        .map(|(resource, (error_code, message))| {
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(error_code)
                .with_error_message(message.map(StrBytes::from_string))
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// Applies each operation to each topic's overrides.
pub async fn handle_incremental(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let changes = request.resources.iter().map(|resource| {
        let operations = resource
            .configs
            .iter()
            .map(|config| {
                (
                    config.name.to_string(),
                    config.config_operation,
                    config.value.as_ref().map(|value| value.to_string()),
                )
            })
            .collect();
        (
            resource.resource_type,
            resource.resource_name.to_string(),
            ConfigChange::Incremental(operations),
        )
    });
    let outcomes = apply(shard, context, changes.collect(), request.validate_only).await;
    let responses = request
        .resources
        .into_iter()
        .zip(outcomes)
        .map(|(resource, (error_code, message))| {
            IncrementalResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(error_code)
                .with_error_message(message.map(StrBytes::from_string))
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Sends the topics' changes to the controller in one call; per resource, in order, the error
/// code and message.
async fn apply(
    shard: &Shard,
    context: &RequestContext,
    changes: Vec<(i8, String, ConfigChange)>,
    validate_only: bool,
) -> Vec<(i16, Option<String>)> {
    // ALTER_CONFIGS on the topic, or on the cluster for a broker; a refused change is not
    // sent to the controller.
    let access = Access::new(shard, context);
    let refusals: Vec<Option<i16>> = changes
        .iter()
        .map(|(resource_type, name, _)| match *resource_type {
            RESOURCE_TOPIC => (!access.topic(name, AclOperation::AlterConfigs))
                .then_some(ResponseError::TopicAuthorizationFailed.code()),
            RESOURCE_BROKER => (!access.cluster(AclOperation::AlterConfigs))
                .then_some(ResponseError::ClusterAuthorizationFailed.code()),
            _ => None,
        })
        .collect();
    let topics: Vec<(String, ConfigChange)> = changes
        .iter()
        .zip(&refusals)
        .filter(|((resource_type, _, _), refusal)| {
            *resource_type == RESOURCE_TOPIC && refusal.is_none()
        })
        .map(|((_, name, change), _)| (name.clone(), change.clone()))
        .collect();
    let count = topics.len();
    let call = ControllerRequest::AlterTopicConfigs {
        topics,
        validate_only,
    };
    let mut outcomes = match shard.controller_call(call).await {
        Ok(ControllerReply::AlterTopicConfigs(results)) => results,
        Ok(_) => vec![Err(ControllerError::Unavailable); count],
        Err(error) => vec![Err(error); count],
    }
    .into_iter();
    changes
        .into_iter()
        .zip(refusals)
        .map(|((resource_type, name, _), refusal)| {
            if let Some(code) = refusal {
                return (code, Some(AUTHORIZATION_FAILED.into()));
            }
            if resource_type != RESOURCE_TOPIC {
                return (
                    ResponseError::InvalidRequest.code(),
                    Some("only topic configs can be changed at run time; broker settings come from flags, SPATE_* variables or the --config file".into()),
                );
            }
            match outcomes.next().unwrap_or(Err(ControllerError::Unavailable)) {
                Ok(()) => {
                    if !validate_only {
                        tracing::info!(topic = %name, "changed topic configs");
                    }
                    (0, None)
                }
                Err(ControllerError::UnknownTopic) => (
                    ResponseError::UnknownTopicOrPartition.code(),
                    Some(format!("Topic {name} does not exist")),
                ),
                Err(error) => (controller_error_code(&error), Some(error.to_string())),
            }
        })
        .collect()
}
