//! Topic configurations by their Kafka names: which exist, their defaults, and how a value
//! is checked. CreateTopics and DescribeConfigs read this table; the partition log reads
//! the few settings that storage honours today.

use std::collections::BTreeMap;

use crate::config::BrokerConfig;

/// The shape of a config value, as DescribeConfigs v3+ reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    /// true/false.
    Boolean,
    /// A 32-bit integer.
    Int,
    /// A 64-bit integer.
    Long,
    /// A floating-point number.
    Double,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// A comma-separated list from a fixed set.
    List(&'static [&'static str]),
}

impl ConfigType {
    /// Kafka's DescribeConfigs config_type code.
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::Choice(_) => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List(_) => 7,
        }
    }

    fn accepts(self, value: &str) -> bool {
        match self {
            ConfigType::Boolean => matches!(value, "true" | "false"),
            ConfigType::Int => value.parse::<i32>().is_ok(),
            ConfigType::Long => value.parse::<i64>().is_ok(),
            ConfigType::Double => value.parse::<f64>().is_ok(),
            ConfigType::Choice(choices) => choices.contains(&value),
            ConfigType::List(choices) => {
                value.split(',').all(|item| choices.contains(&item.trim()))
            }
        }
    }
}

/// One topic config Kafka defines.
pub struct TopicConfigSpec {
    /// Kafka's name.
    pub name: &'static str,
    /// The value used when the topic does not set it.
    pub default: &'static str,
    /// How values are checked and reported.
    pub kind: ConfigType,
}

const COMPRESSION: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// The topic configs Kafka 4.x defines, with Kafka's defaults. The broker-wide defaults for
/// `segment.bytes` and `max.message.bytes` come from the broker config (see
/// [`default_value`]).
pub const TOPIC_CONFIGS: &[TopicConfigSpec] = &[
    spec(
        "cleanup.policy",
        "delete",
        ConfigType::List(&["delete", "compact"]),
    ),
    spec(
        "compression.type",
        "producer",
        ConfigType::Choice(COMPRESSION),
    ),
    spec("delete.retention.ms", "86400000", ConfigType::Long),
    spec("file.delete.delay.ms", "60000", ConfigType::Long),
    spec("flush.messages", "9223372036854775807", ConfigType::Long),
    spec("flush.ms", "9223372036854775807", ConfigType::Long),
    spec("index.interval.bytes", "4096", ConfigType::Int),
    spec(
        "max.compaction.lag.ms",
        "9223372036854775807",
        ConfigType::Long,
    ),
    spec("max.message.bytes", "1048588", ConfigType::Int),
    spec(
        "message.timestamp.after.max.ms",
        "3600000",
        ConfigType::Long,
    ),
    spec(
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        ConfigType::Long,
    ),
    spec(
        "message.timestamp.type",
        "CreateTime",
        ConfigType::Choice(&["CreateTime", "LogAppendTime"]),
    ),
    spec("min.cleanable.dirty.ratio", "0.5", ConfigType::Double),
    spec("min.compaction.lag.ms", "0", ConfigType::Long),
    spec("min.insync.replicas", "1", ConfigType::Int),
    spec("preallocate", "false", ConfigType::Boolean),
    spec("retention.bytes", "-1", ConfigType::Long),
    spec("retention.ms", "604800000", ConfigType::Long),
    spec("segment.bytes", "1073741824", ConfigType::Int),
    spec("segment.index.bytes", "10485760", ConfigType::Int),
    spec("segment.jitter.ms", "0", ConfigType::Long),
    spec("segment.ms", "604800000", ConfigType::Long),
    spec(
        "unclean.leader.election.enable",
        "false",
        ConfigType::Boolean,
    ),
];

const fn spec(name: &'static str, default: &'static str, kind: ConfigType) -> TopicConfigSpec {
    TopicConfigSpec {
        name,
        default,
        kind,
    }
}

/// Looks a config up by its Kafka name.
pub fn find(name: &str) -> Option<&'static TopicConfigSpec> {
    TOPIC_CONFIGS.iter().find(|spec| spec.name == name)
}

/// The value a topic without an override has: the broker's default where the broker has one.
pub fn default_value(spec: &TopicConfigSpec, broker: &BrokerConfig) -> String {
    match spec.name {
        "segment.bytes" => broker.segment_bytes.to_string(),
        "max.message.bytes" => broker.max_message_bytes.to_string(),
        _ => spec.default.to_string(),
    }
}

/// Checks a set of overrides; the error names the first bad entry, as Kafka's
/// INVALID_CONFIG message does.
pub fn validate(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in configs {
        let spec = find(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
        if !spec.kind.accepts(value) {
            return Err(format!("Invalid value {value} for configuration {name}"));
        }
    }
    if let Some(bytes) = configs.get("segment.bytes") {
        if bytes.parse::<i64>().is_ok_and(|bytes| bytes < 14) {
            return Err(
                "Invalid value for configuration segment.bytes: must be at least 14".into(),
            );
        }
    }
    Ok(())
}

/// The effective value of a setting for a topic with these overrides.
pub fn effective(configs: &BTreeMap<String, String>, name: &str, broker: &BrokerConfig) -> String {
    configs
        .get(name)
        .cloned()
        .or_else(|| find(name).map(|spec| default_value(spec, broker)))
        .unwrap_or_default()
}

/// Kafka's config_source for a value set on the topic.
pub const SOURCE_TOPIC: i8 = 1;
/// Kafka's config_source for a broker-wide default.
pub const SOURCE_DEFAULT: i8 = 5;

/// One config of a topic as DescribeConfigs and CreateTopics (v5+) report it.
pub struct DescribedConfig {
    /// Kafka's name.
    pub name: &'static str,
    /// The effective value.
    pub value: String,
    /// [`SOURCE_TOPIC`] or [`SOURCE_DEFAULT`].
    pub source: i8,
    /// The value's type.
    pub kind: ConfigType,
}

/// Every topic config with its effective value, in Kafka's name order.
pub fn describe(configs: &BTreeMap<String, String>, broker: &BrokerConfig) -> Vec<DescribedConfig> {
    TOPIC_CONFIGS
        .iter()
        .map(|spec| match configs.get(spec.name) {
            Some(value) => DescribedConfig {
                name: spec.name,
                value: value.clone(),
                source: SOURCE_TOPIC,
                kind: spec.kind,
            },
            None => DescribedConfig {
                name: spec.name,
                value: default_value(spec, broker),
                source: SOURCE_DEFAULT,
                kind: spec.kind,
            },
        })
        .collect()
}

/// IncrementalAlterConfigs' operations (Kafka's `AlterConfigOp.OpType` codes).
pub const SET: i8 = 0;
/// Removes the override.
pub const DELETE: i8 = 1;
/// Adds items to a list config.
pub const APPEND: i8 = 2;
/// Removes items from a list config.
pub const SUBTRACT: i8 = 3;

/// Kafka's incremental operations; APPEND and SUBTRACT work on list configs
/// (`cleanup.policy`).
pub fn apply_incremental(
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
    fn accepts_known_values_and_rejects_bad_ones() {
        let ok = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact,delete".to_string()),
            ("retention.ms".to_string(), "5000".to_string()),
        ]);
        assert!(validate(&ok).is_ok());
        let unknown = BTreeMap::from([("retention.msx".to_string(), "1".to_string())]);
        assert!(validate(&unknown).unwrap_err().contains("Unknown"));
        let bad = BTreeMap::from([("retention.ms".to_string(), "soon".to_string())]);
        assert!(validate(&bad).unwrap_err().contains("retention.ms"));
    }

    #[test]
    fn incremental_operations_follow_kafka() {
        let current = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let changed = apply_incremental(
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
        let subtracted = apply_incremental(
            &changed,
            &[("cleanup.policy".into(), SUBTRACT, Some("delete".into()))],
        )
        .unwrap();
        assert_eq!(
            subtracted.get("cleanup.policy").map(String::as_str),
            Some("compact")
        );
        assert!(apply_incremental(&current, &[("x".into(), 9, None)]).is_err());
    }
}
