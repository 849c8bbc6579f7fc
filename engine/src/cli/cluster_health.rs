//! `spate cluster health`: whether the cluster can take every write and serve every read it
//! should, for an operator's script or an alert: partitions without a leader (offline),
//! with fewer in-sync replicas than replicas (under-replicated) or than their
//! `min.insync.replicas` (under-min-ISR: acks=all producers are refused), brokers named as
//! replicas that the cluster does not list (down or fenced), and a controller quorum
//! without a leader. Exit code 0 when healthy, 2 when not (1: the cluster could not be
//! asked), like Redpanda's `rpk cluster health` with its verdict in the exit code.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest};
use serde_json::json;

use super::broker::{str_bytes, Cluster, TopicLayout};
use super::output::{id_list, print_json, print_text};
use super::{check_error, ExitWith};

/// DescribeConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// The exit code of an unhealthy cluster.
pub const UNHEALTHY_EXIT_CODE: u8 = 2;

/// A partition named in the report.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PartitionName {
    topic: String,
    partition: i32,
}

impl std::fmt::Display for PartitionName {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}-{}", self.topic, self.partition)
    }
}

/// What is wrong, by kind.
#[derive(Debug, Default)]
struct Health {
    controller: i32,
    brokers: Vec<i32>,
    brokers_down: BTreeSet<i32>,
    offline: Vec<PartitionName>,
    under_replicated: Vec<PartitionName>,
    under_min_isr: Vec<PartitionName>,
    /// Set when the node asked runs a controller quorum and knows no leader for it.
    quorum_without_leader: bool,
    partitions: usize,
}

impl Health {
    fn reasons(&self) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if self.controller < 0 || self.quorum_without_leader {
            reasons.push("no_controller");
        }
        if !self.brokers_down.is_empty() {
            reasons.push("brokers_down");
        }
        if !self.offline.is_empty() {
            reasons.push("offline_partitions");
        }
        if !self.under_min_isr.is_empty() {
            reasons.push("under_min_isr_partitions");
        }
        if !self.under_replicated.is_empty() {
            reasons.push("under_replicated_partitions");
        }
        reasons
    }
}

/// Runs `spate cluster health`.
pub fn run(cluster: &mut Cluster, json: bool) -> anyhow::Result<()> {
    let metadata = cluster.metadata(None)?;
    let topics = cluster.topics()?;
    let min_insync = min_insync_replicas(cluster, &topics)?;
    let mut health = Health {
        controller: metadata.controller_id.0,
        brokers: metadata
            .brokers
            .iter()
            .map(|broker| broker.node_id.0)
            .collect(),
        ..Health::default()
    };
    health.brokers.sort();
    let listed: BTreeSet<i32> = health.brokers.iter().copied().collect();
    for topic in &topics {
        let wanted = min_insync.get(&topic.name).copied().unwrap_or(1);
        for partition in &topic.partitions {
            health.partitions += 1;
            let name = PartitionName {
                topic: topic.name.clone(),
                partition: partition.index,
            };
            health.brokers_down.extend(
                partition
                    .replicas
                    .iter()
                    .filter(|replica| !listed.contains(replica)),
            );
            if partition.leader < 0 {
                health.offline.push(name.clone());
            }
            if partition.isr.len() < partition.replicas.len() {
                health.under_replicated.push(name.clone());
            }
            if (partition.isr.len() as i64) < wanted {
                health.under_min_isr.push(name);
            }
        }
    }
    let connection = cluster.any();
    if connection.supports(ApiKey::DescribeQuorum) {
        // A single node runs no quorum and says so with an error; a quorum node that knows
        // no leader answers leader -1.
        if let Ok(quorum) = super::cluster::describe_quorum(connection) {
            health.quorum_without_leader = quorum.leader < 0;
        }
    }
    let reasons = health.reasons();
    let healthy = reasons.is_empty();
    let names = |partitions: &[PartitionName]| -> Vec<String> {
        partitions.iter().map(ToString::to_string).collect()
    };
    if json {
        print_json(&json!({
            "healthy": healthy,
            "unhealthy_reasons": reasons,
            "controller_id": health.controller,
            "brokers": health.brokers,
            "brokers_down": health.brokers_down,
            "partitions": health.partitions,
            "offline_partitions": names(&health.offline),
            "under_min_isr_partitions": names(&health.under_min_isr),
            "under_replicated_partitions": names(&health.under_replicated),
        }));
    } else {
        let list = |partitions: &[PartitionName]| -> String {
            const SHOWN: usize = 20;
            let mut text = names(&partitions[..partitions.len().min(SHOWN)]).join(" ");
            if partitions.len() > SHOWN {
                text.push_str(&format!(" ... ({} more)", partitions.len() - SHOWN));
            }
            text
        };
        let down: Vec<i32> = health.brokers_down.iter().copied().collect();
        let text = format!(
            "Healthy: {healthy}\n\
             Unhealthy reasons: {}\n\
             Controller: {}\n\
             Brokers: {}\n\
             Brokers down: {}\n\
             Partitions: {}\n\
             Offline partitions ({}): {}\n\
             Under-min-ISR partitions ({}): {}\n\
             Under-replicated partitions ({}): {}\n",
            if healthy {
                "-".to_string()
            } else {
                reasons.join(", ")
            },
            if health.controller < 0 {
                "none".to_string()
            } else {
                health.controller.to_string()
            },
            id_list(&health.brokers),
            if down.is_empty() {
                "-".to_string()
            } else {
                id_list(&down)
            },
            health.partitions,
            health.offline.len(),
            list(&health.offline),
            health.under_min_isr.len(),
            list(&health.under_min_isr),
            health.under_replicated.len(),
            list(&health.under_replicated),
        );
        print_text(&text);
    }
    if healthy {
        Ok(())
    } else {
        Err(ExitWith(UNHEALTHY_EXIT_CODE).into())
    }
}

/// Each topic's effective `min.insync.replicas`, from one DescribeConfigs for them all.
fn min_insync_replicas(
    cluster: &mut Cluster,
    topics: &[TopicLayout],
) -> anyhow::Result<BTreeMap<String, i64>> {
    if topics.is_empty() {
        return Ok(BTreeMap::new());
    }
    let connection = cluster.any();
    let version = connection.version(ApiKey::DescribeConfigs, 1..=4)?;
    let resources = topics
        .iter()
        .map(|topic| {
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(&topic.name))
                .with_configuration_keys(Some(vec![str_bytes("min.insync.replicas")]))
        })
        .collect();
    let request = DescribeConfigsRequest::default().with_resources(resources);
    let response = connection.send(version, &request)?;
    let mut found = BTreeMap::new();
    for result in &response.results {
        let topic = result.resource_name.to_string();
        check_error(result.error_code, result.error_message.as_deref(), || {
            format!("cannot describe the configs of topic {topic}")
        })?;
        let value = result
            .configs
            .iter()
            .find(|config| config.name.as_str() == "min.insync.replicas")
            .and_then(|config| config.value.as_ref())
            .and_then(|value| value.parse().ok())
            .unwrap_or(1);
        found.insert(topic, value);
    }
    Ok(found)
}
