//! CreatePartitions (key 37): raises a topic's partition count.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::controller_error_code;
use super::{ApiSpec, RequestContext};
use crate::metadata::controller::{ControllerError, ControllerReply, ControllerRequest};
use crate::partition::BrokerId;
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Access, AUTHORIZATION_FAILED};
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::CreatePartitions, 0, 3);

/// Grows each topic to its requested count, in one call to the controller.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    // ALTER on each topic; refused topics are not sent to the controller.
    let access = Access::new(shard, context);
    let allowed: Vec<bool> = request
        .topics
        .iter()
        .map(|topic| access.topic(&topic.name.0, AclOperation::Alter))
        .collect();
    let mut is_allowed = allowed.iter().copied();
    let mut is_allowed_too = allowed.iter().copied();
    let topics: Vec<(String, i32)> = request
        .topics
        .iter()
        .filter(|_| is_allowed.next().unwrap_or(false))
        .map(|topic| (topic.name.0.to_string(), topic.count))
        .collect();
    // The replicas of each new partition, where the request names them.
    let assignments = request
        .topics
        .iter()
        .filter(|_| is_allowed_too.next().unwrap_or(false))
        .map(|topic| {
            topic.assignments.as_ref().map(|assignments| {
                assignments
                    .iter()
                    .map(|assignment| {
                        assignment
                            .broker_ids
                            .iter()
                            .map(|id| BrokerId(id.0))
                            .collect()
                    })
                    .collect()
            })
        })
        .collect();
    let call = ControllerRequest::CreatePartitions {
        topics: topics.clone(),
        assignments,
        validate_only: request.validate_only,
    };
    let mut outcomes = match shard.controller_call(call).await {
        Ok(ControllerReply::CreatePartitions(results)) => results,
        Ok(_) => vec![Err(ControllerError::Unavailable); topics.len()],
        Err(error) => vec![Err(error); topics.len()],
    }
    .into_iter();
    let results = request
        .topics
        .into_iter()
        .zip(allowed)
        .map(|(topic, allowed)| {
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            if !allowed {
                return result
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)));
            }
            match outcomes.next().unwrap_or(Err(ControllerError::Unavailable)) {
                Ok(()) if request.validate_only => {
                    tracing::debug!(topic = %topic.name.0, count = topic.count, "validated adding partitions");
                    result
                }
                Ok(()) => {
                    tracing::info!(topic = %topic.name.0, count = topic.count, "added partitions");
                    result
                }
                Err(error) => result
                    .with_error_code(controller_error_code(&error))
                    .with_error_message(Some(StrBytes::from_string(error.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
