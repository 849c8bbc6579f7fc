//! AlterConfigs (key 33) and IncrementalAlterConfigs (key 44): change a topic's config
//! overrides. AlterConfigs replaces the whole set; IncrementalAlterConfigs sets, deletes,
//! appends to or subtracts from single entries. Open logs pick the change up at the next
//! catalog sync of their shard (within 100 ms). Broker settings are static (flags and the
//! config file) and are refused here.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ApiKey, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::catalog_error_code;
use super::{ApiSpec, RequestContext};
use crate::catalog::CatalogError;
use crate::shard::Shard;

/// Served versions of AlterConfigs.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::AlterConfigs, 0, 2);
/// Served versions of IncrementalAlterConfigs.
pub const INCREMENTAL_SPEC: ApiSpec = ApiSpec::new(ApiKey::IncrementalAlterConfigs, 0, 1);

const RESOURCE_TOPIC: i8 = 2;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// Replaces each topic's overrides.
pub fn handle(
    shard: &Rc<Shard>,
    _context: &RequestContext,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let configs = resource
                .configs
                .iter()
                .filter_map(|config| {
                    Some((config.name.to_string(), config.value.as_ref()?.to_string()))
                })
                .collect();
            let (error_code, message) = apply(
                shard,
                resource.resource_type,
                &resource.resource_name,
                request.validate_only,
                |_| Ok(configs),
            );
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
pub fn handle_incremental(
    shard: &Rc<Shard>,
    _context: &RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|resource| {
            let operations: Vec<(String, i8, Option<String>)> = resource
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
            let (error_code, message) = apply(
                shard,
                resource.resource_type,
                &resource.resource_name,
                request.validate_only,
                |current| apply_operations(current, &operations),
            );
            IncrementalResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(error_code)
                .with_error_message(message.map(StrBytes::from_string))
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Computes a topic's new overrides from its current ones and stores them.
fn apply(
    shard: &Shard,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String>,
) -> (i16, Option<String>) {
    if resource_type != RESOURCE_TOPIC {
        return (
            ResponseError::InvalidRequest.code(),
            Some("only topic configs can be changed at run time; broker settings come from flags, SPATE_* variables or the --config file".into()),
        );
    }
    let Some(topic) = shard.catalog().topic(name).cloned() else {
        return (
            ResponseError::UnknownTopicOrPartition.code(),
            Some(format!("Topic {name} does not exist")),
        );
    };
    let configs = match change(&topic.configs) {
        Ok(configs) => configs,
        Err(message) => return (ResponseError::InvalidConfig.code(), Some(message)),
    };
    match shard
        .node
        .catalog
        .set_topic_configs(name, configs, validate_only)
    {
        Ok(()) => {
            if !validate_only {
                tracing::info!(topic = name, "changed topic configs");
            }
            (0, None)
        }
        Err(CatalogError::Persist(reason)) => crate::fatal(&reason),
        Err(error) => (catalog_error_code(&error), Some(error.to_string())),
    }
}

/// Kafka's incremental operations; APPEND and SUBTRACT work on list configs
/// (`cleanup.policy`).
fn apply_operations(
    current: &BTreeMap<String, String>,
    operations: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, String> {
    let mut configs = current.clone();
    for (name, operation, value) in operations {
        let list = |configs: &BTreeMap<String, String>| -> Vec<String> {
            let effective = configs
                .get(name)
                .cloned()
                .or_else(|| crate::topic_config::find(name).map(|spec| spec.default.to_string()))
                .unwrap_or_default();
            effective
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_string)
                .collect()
        };
        match (*operation, value) {
            (SET, Some(value)) => {
                configs.insert(name.clone(), value.clone());
            }
            (DELETE, _) => {
                configs.remove(name);
            }
            (APPEND, Some(value)) => {
                let mut items = list(&configs);
                for item in value.split(',').map(str::trim) {
                    if !items.iter().any(|existing| existing == item) {
                        items.push(item.to_string());
                    }
                }
                configs.insert(name.clone(), items.join(","));
            }
            (SUBTRACT, Some(value)) => {
                let removed: Vec<&str> = value.split(',').map(str::trim).collect();
                let items: Vec<String> = list(&configs)
                    .into_iter()
                    .filter(|item| !removed.contains(&item.as_str()))
                    .collect();
                configs.insert(name.clone(), items.join(","));
            }
            (operation, _) => {
                return Err(format!(
                    "invalid operation {operation} or missing value for {name}"
                ))
            }
        }
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_operations_follow_kafka() {
        let current = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let changed = apply_operations(
            &current,
            &[
                ("retention.ms".into(), DELETE, None),
                ("cleanup.policy".into(), APPEND, Some("compact".into())),
                ("segment.bytes".into(), SET, Some("1048576".into())),
            ],
        )
        .unwrap();
        assert_eq!(
            changed.get("cleanup.policy").map(String::as_str),
            Some("delete,compact")
        );
        assert!(!changed.contains_key("retention.ms"));
        let subtracted = apply_operations(
            &changed,
            &[("cleanup.policy".into(), SUBTRACT, Some("delete".into()))],
        )
        .unwrap();
        assert_eq!(
            subtracted.get("cleanup.policy").map(String::as_str),
            Some("compact")
        );
        assert!(apply_operations(&current, &[("x".into(), 9, None)]).is_err());
    }
}
