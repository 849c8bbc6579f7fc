//! DeleteTopics (key 20): the controller removes the topics from the metadata; the shards that
//! host their partitions delete the logs in the background when they apply the change
//! (`PartitionTable::apply`), just as Kafka deletes partition directories asynchronously.

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::errors::controller_error_code;
use super::{ApiSpec, RequestContext};
use crate::metadata::controller::{ControllerError, ControllerReply, ControllerRequest};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Access, AUTHORIZATION_FAILED};
use crate::shard::Shard;

/// Served versions (v6 can name topics by id).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DeleteTopics, 1, 6);

/// Deletes each named topic, in one call to the controller.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let image = shard.image();
    let mut targets: Vec<(Option<String>, Uuid)> = request
        .topic_names
        .iter()
        .map(|name| (Some(name.0.to_string()), Uuid::nil()))
        .collect();
    targets.extend(request.topics.iter().map(|state| {
        let name = state.name.as_ref().map(|name| name.0.to_string());
        let name = name.or_else(|| {
            image
                .topic_by_id(state.topic_id)
                .map(|topic| topic.name.clone())
        });
        (name, state.topic_id)
    }));
    // DELETE on each topic (which implies DESCRIBE: without it, an unknown topic is refused
    // alike, so that its existence is not disclosed).
    let access = Access::new(shard, context);
    let allowed: Vec<bool> = targets
        .iter()
        .map(|(name, _)| {
            name.as_ref()
                .is_none_or(|name| access.topic(name, AclOperation::Delete))
        })
        .collect();
    let names: Vec<String> = targets
        .iter()
        .zip(&allowed)
        .filter(|(_, allowed)| **allowed)
        .filter_map(|((name, _), _)| name.clone())
        .collect();
    let mut outcomes = match shard
        .controller_call(ControllerRequest::DeleteTopics { names })
        .await
    {
        Ok(ControllerReply::DeleteTopics(results)) => results,
        Ok(_) => vec![Err(ControllerError::Unavailable); targets.len()],
        Err(error) => vec![Err(error); targets.len()],
    }
    .into_iter();
    let responses = targets
        .into_iter()
        .zip(allowed)
        .map(|((name, id), allowed)| {
            let result = DeletableTopicResult::default()
                .with_name(
                    name.clone()
                        .map(|name| TopicName(StrBytes::from_string(name))),
                )
                .with_topic_id(id);
            let Some(name) = name else {
                return result.with_error_code(ResponseError::UnknownTopicId.code());
            };
            if !allowed {
                return result
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)));
            }
            match outcomes.next().unwrap_or(Err(ControllerError::Unavailable)) {
                Ok(deleted) => {
                    tracing::info!(topic = %name, "deleted topic");
                    result.with_topic_id(deleted)
                }
                Err(error) => result
                    .with_error_code(controller_error_code(&error))
                    .with_error_message(Some(StrBytes::from_string(error.to_string()))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
