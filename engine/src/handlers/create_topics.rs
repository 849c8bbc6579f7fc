//! CreateTopics (key 19).

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::catalog_error_code;
use super::{ApiSpec, RequestContext};
use crate::catalog::CatalogError;
use crate::shard::Shard;
use crate::topic_config;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::CreateTopics, 2, 7);

/// Creates each topic; a single node accepts replication factor 1 (or -1, the default).
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let partitions = match topic.num_partitions {
            -1 => shard.node.config.default_partitions,
            count => count,
        };
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|config| {
                Some((config.name.to_string(), config.value.as_ref()?.to_string()))
            })
            .collect();
        let outcome = if !matches!(topic.replication_factor, -1 | 1) {
            Err((
                ResponseError::InvalidReplicationFactor.code(),
                format!(
                    "Replication factor {} is larger than the 1 broker node this single-node cluster has.",
                    topic.replication_factor
                ),
            ))
        } else if !topic.assignments.is_empty() {
            Err((
                ResponseError::InvalidReplicaAssignment.code(),
                "Manual replica assignments are not supported: partitions are placed on shards by Spate.".into(),
            ))
        } else {
            shard
                .node
                .catalog
                .create_topic(&name, partitions, configs, request.validate_only)
                .map_err(|error| {
                    if let CatalogError::Persist(reason) = &error {
                        crate::fatal(reason);
                    }
                    (catalog_error_code(&error), error.to_string())
                })
        };
        results.push(match outcome {
            Ok(created) => {
                tracing::info!(topic = %name, partitions, validate_only = request.validate_only, "created topic");
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
                    .with_num_partitions(created.partitions)
                    .with_replication_factor(1)
                    .with_configs((context.version >= 5).then_some(configs))
            }
            Err((code, message)) => result
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}
