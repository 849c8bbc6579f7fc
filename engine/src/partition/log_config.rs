//! The log settings of a partition: Kafka's topic configs (the topic's overrides, else the
//! broker's defaults) turned into `spate_storage::LogConfig`.

use std::collections::BTreeMap;

use spate_storage::LogConfig;

use crate::config::BrokerConfig;
use crate::topic_config;

/// The log settings for a topic with these overrides.
pub fn log_config(configs: &BTreeMap<String, String>, broker: &BrokerConfig) -> LogConfig {
    let setting = |name: &str| topic_config::effective(configs, name, broker);
    let defaults = LogConfig::default();
    let cleanup_policy = setting("cleanup.policy");
    let policies: Vec<&str> = cleanup_policy.split(',').map(str::trim).collect();
    LogConfig {
        segment_bytes: setting("segment.bytes")
            .parse()
            .unwrap_or(defaults.segment_bytes),
        index_interval_bytes: setting("index.interval.bytes")
            .parse()
            .unwrap_or(defaults.index_interval_bytes),
        max_message_bytes: setting("max.message.bytes")
            .parse()
            .unwrap_or(defaults.max_message_bytes),
        log_append_time: setting("message.timestamp.type") == "LogAppendTime",
        write_in_flight_bytes_max: broker.write_in_flight_bytes_max,
        zero_ahead_bytes: broker.log_zero_ahead_bytes,
        segment_ms: setting("segment.ms")
            .parse::<i64>()
            .map_or(defaults.segment_ms, |segment_ms| segment_ms.max(1)),
        retention_delete: policies.contains(&"delete"),
        retention_ms: setting("retention.ms")
            .parse()
            .unwrap_or(defaults.retention_ms),
        retention_bytes: setting("retention.bytes")
            .parse()
            .unwrap_or(defaults.retention_bytes),
        file_delete_delay_ms: setting("file.delete.delay.ms")
            .parse()
            .unwrap_or(defaults.file_delete_delay_ms),
        compact: policies.contains(&"compact"),
        delete_retention_ms: setting("delete.retention.ms")
            .parse()
            .unwrap_or(defaults.delete_retention_ms),
        min_cleanable_dirty_ratio: setting("min.cleanable.dirty.ratio")
            .parse::<f64>()
            .ok()
            .filter(|ratio| ratio.is_finite())
            .map_or(defaults.min_cleanable_dirty_ratio, |ratio| {
                ratio.clamp(0.0, 1.0)
            }),
        min_compaction_lag_ms: setting("min.compaction.lag.ms")
            .parse()
            .unwrap_or(defaults.min_compaction_lag_ms),
        max_compaction_lag_ms: setting("max.compaction.lag.ms")
            .parse()
            .unwrap_or(defaults.max_compaction_lag_ms),
    }
}
