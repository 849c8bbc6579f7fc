//! DescribeConfigs (key 32): topic configs (overrides and defaults) and a few broker
//! settings, by Kafka's names.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{ApiSpec, RequestContext};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Access, AUTHORIZATION_FAILED};
use crate::shard::Shard;
use crate::topic_config::{self, ConfigType, DescribedConfig, SOURCE_DEFAULT};

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DescribeConfigs, 1, 4);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's config_source for a static broker setting.
const SOURCE_STATIC_BROKER: i8 = 4;

/// Describes each resource.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let access = Access::new(shard, context);
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            // DESCRIBE_CONFIGS on the topic, or on the cluster for a broker.
            let refusal = match resource.resource_type {
                RESOURCE_TOPIC
                    if !access.topic(&resource.resource_name, AclOperation::DescribeConfigs) =>
                {
                    Some(ResponseError::TopicAuthorizationFailed)
                }
                RESOURCE_BROKER if !access.cluster(AclOperation::DescribeConfigs) => {
                    Some(ResponseError::ClusterAuthorizationFailed)
                }
                _ => None,
            };
            if let Some(error) = refusal {
                return result
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)));
            }
            let configs = match resource.resource_type {
                RESOURCE_TOPIC => match shard.image().topic(&resource.resource_name) {
                    Some(topic) => topic_config::describe(&topic.configs, &shard.node.config),
                    None => {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "Topic {} does not exist",
                                &*resource.resource_name
                            ))))
                    }
                },
                RESOURCE_BROKER => broker_configs(shard),
                _ => {
                    return result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(StrBytes::from_static_str(
                            "Only topic and broker resources are supported",
                        )))
                }
            };
            let wanted = resource.configuration_keys.as_ref();
            let configs = configs
                .into_iter()
                .filter(|config| {
                    wanted.is_none_or(|keys| keys.iter().any(|key| &**key == config.name))
                })
                .map(|config| describe_one(config, context.version, request.include_synonyms))
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn describe_one(
    config: DescribedConfig,
    version: i16,
    include_synonyms: bool,
) -> DescribeConfigsResourceResult {
    let value = StrBytes::from_string(config.value);
    let synonyms = if include_synonyms {
        vec![DescribeConfigsSynonym::default()
            .with_name(StrBytes::from_static_str(config.name))
            .with_value(Some(value.clone()))
            .with_source(config.source)]
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(config.name))
        .with_value(Some(value))
        .with_config_source(config.source)
        .with_synonyms(synonyms)
        .with_config_type(if version >= 3 {
            config.kind.kafka_code()
        } else {
            0
        })
}

fn broker_configs(shard: &Shard) -> Vec<DescribedConfig> {
    let config = &shard.node.config;
    let setting = |name: &'static str, value: String, kind: ConfigType| DescribedConfig {
        name,
        value,
        source: SOURCE_STATIC_BROKER,
        kind,
    };
    vec![
        setting(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            ConfigType::Boolean,
        ),
        setting("broker.id", shard.broker_id().to_string(), ConfigType::Int),
        setting(
            "log.dirs",
            config.data_dir.display().to_string(),
            ConfigType::List(&[]),
        ),
        setting(
            "log.segment.bytes",
            config.segment_bytes.to_string(),
            ConfigType::Int,
        ),
        setting(
            "message.max.bytes",
            config.max_message_bytes.to_string(),
            ConfigType::Int,
        ),
        setting("node.id", config.node_id.to_string(), ConfigType::Int),
        setting(
            "num.partitions",
            config.default_partitions.to_string(),
            ConfigType::Int,
        ),
        setting(
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
            ConfigType::Int,
        ),
        DescribedConfig {
            name: "default.replication.factor",
            value: "1".into(),
            source: SOURCE_DEFAULT,
            kind: ConfigType::Int,
        },
    ]
}
