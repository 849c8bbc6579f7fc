//! DeleteTopics (key 20): removes topics from the catalog. The shards that own their
//! partitions notice the change and delete the logs (see `Shard::sync_with_catalog`),
//! just as Kafka deletes partition directories asynchronously.

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::errors::catalog_error_code;
use super::{ApiSpec, RequestContext};
use crate::catalog::CatalogError;
use crate::shard::Shard;

/// Served versions (v6 can name topics by id).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DeleteTopics, 1, 6);

/// Deletes each named topic.
pub fn handle(
    shard: &Rc<Shard>,
    _context: &RequestContext,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let catalog = shard.catalog();
    let mut targets: Vec<(Option<String>, Uuid)> = request
        .topic_names
        .iter()
        .map(|name| (Some(name.0.to_string()), Uuid::nil()))
        .collect();
    targets.extend(request.topics.iter().map(|state| {
        (
            state.name.as_ref().map(|name| name.0.to_string()),
            state.topic_id,
        )
    }));
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let name = name.or_else(|| catalog.topic_by_id(id).map(|topic| topic.name.clone()));
            let result = DeletableTopicResult::default()
                .with_name(
                    name.clone()
                        .map(|name| TopicName(StrBytes::from_string(name))),
                )
                .with_topic_id(id);
            let Some(name) = name else {
                return result.with_error_code(ResponseError::UnknownTopicId.code());
            };
            match shard.node.catalog.delete_topic(&name) {
                Ok(deleted) => {
                    tracing::info!(topic = %name, "deleted topic");
                    result.with_topic_id(deleted.id)
                }
                Err(error) => {
                    if let CatalogError::Persist(reason) = &error {
                        crate::fatal(reason);
                    }
                    result
                        .with_error_code(catalog_error_code(&error))
                        .with_error_message(Some(StrBytes::from_string(error.to_string())))
                }
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
