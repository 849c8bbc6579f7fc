//! `spate cluster reassign` and `spate cluster reassignments`: Kafka's
//! `kafka-reassign-partitions.sh` over AlterPartitionReassignments and
//! ListPartitionReassignments (KIP-455).
//!
//! - `reassign --topic T --partition P[,P...] --replicas B1,B2,...` moves partitions onto
//!   the brokers named (the first becomes the preferred leader);
//! - `reassign --reassignment-json-file FILE` takes Kafka's plan,
//!   `{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}`, so a plan
//!   written for Kafka's tool works as it is (`log_dirs`, if present, must be "any");
//! - `--cancel` cancels the reassignments of the partitions named instead;
//! - `--verify` says for each partition of a plan whether it is done (exit code 2 while any
//!   is still moving, as `cluster health` does for an unhealthy cluster);
//! - `--generate --broker-list B1,B2,... --topic T...` prints a plan that spreads the
//!   topics' partitions over those brokers, keeping each partition's replica count, beside
//!   the current assignment (Kafka's `--generate`); nothing is changed;
//! - `--wait` waits until the partitions asked have finished moving.
//!
//! `reassignments` lists what is under way: replicas, those being added and removed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, ListPartitionReassignmentsRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::broker::{topic_name, Cluster};
use super::output::{print_json, print_text, Table};
use super::{check_error, error_name, ExitWith};

/// How long the broker may take for a request.
const TIMEOUT_MS: i32 = 30_000;
/// How often `--wait` asks.
const POLL: Duration = Duration::from_millis(250);
/// The exit code of `--verify` while a partition is still moving.
const IN_PROGRESS_EXIT_CODE: u8 = 2;

/// Kafka's reassignment plan (`kafka-reassign-partitions.sh --reassignment-json-file`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    /// Always 1.
    pub version: i32,
    /// A target per partition.
    pub partitions: Vec<PlannedPartition>,
}

/// One partition of a [`Plan`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedPartition {
    /// Its topic.
    pub topic: String,
    /// Its index.
    pub partition: i32,
    /// The broker ids it should end on, preferred leader first.
    pub replicas: Vec<i32>,
    /// Kafka's per-replica log directories; only "any" is served (Spate has one data
    /// directory per node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dirs: Option<Vec<String>>,
}

/// What `spate cluster reassign` was asked.
pub struct Reassign {
    /// The partitions and their targets (the targets are ignored by a cancellation).
    pub plan: Plan,
    /// Cancel instead.
    pub cancel: bool,
    /// Wait until the partitions have moved, at most this long.
    pub wait: Option<Duration>,
}

impl Plan {
    /// A plan read from Kafka's JSON format.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Plan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let plan: Plan = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a reassignment plan", path.display()))?;
        for partition in &plan.partitions {
            if let Some(dirs) = &partition.log_dirs {
                anyhow::ensure!(
                    dirs.iter().all(|dir| dir == "any"),
                    "{}-{}: log_dirs other than \"any\" are not served (a Spate node has one data directory)",
                    partition.topic,
                    partition.partition
                );
            }
        }
        Ok(plan)
    }

    /// The same target for several partitions of one topic.
    pub fn of_partitions(topic: &str, partitions: &[i32], replicas: &[i32]) -> Plan {
        Plan {
            version: 1,
            partitions: partitions
                .iter()
                .map(|partition| PlannedPartition {
                    topic: topic.to_string(),
                    partition: *partition,
                    replicas: replicas.to_vec(),
                    log_dirs: None,
                })
                .collect(),
        }
    }
}

/// Runs `spate cluster reassign` (execute or cancel).
pub fn run(cluster: &mut Cluster, asked: Reassign, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        !asked.plan.partitions.is_empty(),
        "no partition to reassign"
    );
    let mut topics: Vec<ReassignableTopic> = Vec::new();
    for planned in &asked.plan.partitions {
        let replicas =
            (!asked.cancel).then(|| planned.replicas.iter().map(|id| BrokerId(*id)).collect());
        let partition = ReassignablePartition::default()
            .with_partition_index(planned.partition)
            .with_replicas(replicas);
        match topics.last_mut() {
            Some(last) if last.name.0.as_str() == planned.topic => last.partitions.push(partition),
            _ => topics.push(
                ReassignableTopic::default()
                    .with_name(topic_name(&planned.topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let connection = cluster.any();
    let version = connection
        .version(ApiKey::AlterPartitionReassignments, 0..=1)
        .context("the broker cannot reassign partitions")?;
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(TIMEOUT_MS)
        .with_allow_replication_factor_change(true)
        .with_topics(topics);
    let response = connection.send(version, &request)?;
    check_error(
        response.error_code,
        response.error_message.as_deref(),
        || "the controller refused the reassignment".to_string(),
    )?;
    let mut results: Vec<(String, i32, i16, Option<String>)> = Vec::new();
    for topic in &response.responses {
        for partition in &topic.partitions {
            results.push((
                topic.name.0.to_string(),
                partition.partition_index,
                partition.error_code,
                partition.error_message.as_ref().map(ToString::to_string),
            ));
        }
    }
    let failed = results.iter().filter(|(_, _, code, _)| *code != 0).count();
    let done = if failed == 0 {
        match asked.wait {
            Some(limit) => Some(wait_until_done(cluster, &asked.plan, limit)?),
            None => None,
        }
    } else {
        None
    };
    let what = if asked.cancel { "cancelled" } else { "started" };
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|(topic, partition, code, message)| {
                json!({
                    "topic": topic, "partition": partition, "ok": *code == 0,
                    "error": (*code != 0).then(|| error_name(*code)), "message": message,
                })
            })
            .collect();
        print_json(&json!({ "results": rows, "failed": failed, "completed": done }));
    } else {
        let mut table = Table::new(&["TOPIC", "PARTITION", "RESULT"]);
        for (topic, partition, code, message) in &results {
            let result = match (*code, message) {
                (0, _) => what.to_string(),
                (code, Some(message)) => format!("{}: {message}", error_name(code)),
                (code, None) => error_name(code),
            };
            table.row(vec![topic.clone(), partition.to_string(), result]);
        }
        let mut text = table.render();
        if done == Some(true) {
            text.push_str("\nEvery partition asked has finished moving.\n");
        }
        print_text(&text);
    }
    if failed > 0 {
        anyhow::bail!("{failed} partition(s) could not be reassigned");
    }
    if done == Some(false) {
        anyhow::bail!("the reassignment was still under way when --wait ran out");
    }
    Ok(())
}

/// The partitions under way, by (topic, partition): replicas, adding, removing.
type Ongoing = BTreeMap<(String, i32), (Vec<i32>, Vec<i32>, Vec<i32>)>;

/// ListPartitionReassignments, of every partition (`None`) or of those of `plan`.
fn ongoing(cluster: &mut Cluster, plan: Option<&Plan>) -> anyhow::Result<Ongoing> {
    let topics = plan.map(|plan| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for planned in &plan.partitions {
            by_topic
                .entry(&planned.topic)
                .or_default()
                .push(planned.partition);
        }
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                ListPartitionReassignmentsTopics::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(partitions)
            })
            .collect()
    });
    let connection = cluster.any();
    let version = connection
        .version(ApiKey::ListPartitionReassignments, 0..=0)
        .context("the broker cannot list reassignments")?;
    let request = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(TIMEOUT_MS)
        .with_topics(topics);
    let response = connection.send(version, &request)?;
    check_error(
        response.error_code,
        response.error_message.as_deref(),
        || "cannot list the reassignments".to_string(),
    )?;
    let ids = |brokers: &[BrokerId]| brokers.iter().map(|broker| broker.0).collect::<Vec<_>>();
    let mut found = Ongoing::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            found.insert(
                (topic.name.0.to_string(), partition.partition_index),
                (
                    ids(&partition.replicas),
                    ids(&partition.adding_replicas),
                    ids(&partition.removing_replicas),
                ),
            );
        }
    }
    Ok(found)
}

/// Waits until no partition of `plan` is reassigning, at most `limit`: whether they all
/// finished.
fn wait_until_done(cluster: &mut Cluster, plan: &Plan, limit: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        if ongoing(cluster, Some(plan))?.is_empty() {
            return Ok(true);
        }
        if Instant::now() >= deadline || super::interrupted() {
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}

/// Runs `spate cluster reassignments`: what is under way.
pub fn list(cluster: &mut Cluster, json: bool) -> anyhow::Result<()> {
    let found = ongoing(cluster, None)?;
    if json {
        let rows: Vec<_> = found
            .iter()
            .map(|((topic, partition), (replicas, adding, removing))| {
                json!({
                    "topic": topic, "partition": partition, "replicas": replicas,
                    "adding_replicas": adding, "removing_replicas": removing,
                })
            })
            .collect();
        print_json(&json!({ "reassignments": rows }));
        return Ok(());
    }
    if found.is_empty() {
        print_text("No partition reassignment is in progress.\n");
        return Ok(());
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]);
    for ((topic, partition), (replicas, adding, removing)) in &found {
        table.row(vec![
            topic.clone(),
            partition.to_string(),
            ids_text(replicas),
            ids_text(adding),
            ids_text(removing),
        ]);
    }
    print_text(&table.render());
    Ok(())
}

/// Runs `spate cluster reassign --verify`: each planned partition done or not.
pub fn verify(cluster: &mut Cluster, plan: &Plan, json: bool) -> anyhow::Result<()> {
    let under_way = ongoing(cluster, Some(plan))?;
    let mut rows = Vec::new();
    for planned in &plan.partitions {
        let key = (planned.topic.clone(), planned.partition);
        let state = if under_way.contains_key(&key) {
            "in progress".to_string()
        } else {
            let layout = cluster.topic(&planned.topic)?;
            let replicas = layout
                .partitions
                .iter()
                .find(|layout| layout.index == planned.partition)
                .map(|layout| layout.replicas.clone())
                .with_context(|| {
                    format!(
                        "topic {} has no partition {}",
                        planned.topic, planned.partition
                    )
                })?;
            if replicas == planned.replicas {
                "complete".to_string()
            } else {
                format!("not as planned: replicas are {}", ids_text(&replicas))
            }
        };
        rows.push((planned.topic.clone(), planned.partition, state));
    }
    let moving = rows
        .iter()
        .filter(|(_, _, state)| state == "in progress")
        .count();
    let differing = rows
        .iter()
        .filter(|(_, _, state)| state.starts_with("not as planned"))
        .count();
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(topic, partition, state)| json!({"topic": topic, "partition": partition, "state": state}))
            .collect();
        print_json(
            &json!({ "partitions": rows, "in_progress": moving, "not_as_planned": differing }),
        );
    } else {
        let mut table = Table::new(&["TOPIC", "PARTITION", "STATE"]);
        for (topic, partition, state) in &rows {
            table.row(vec![topic.clone(), partition.to_string(), state.clone()]);
        }
        print_text(&table.render());
    }
    if differing > 0 {
        anyhow::bail!("{differing} partition(s) are not where the plan puts them");
    }
    if moving > 0 {
        return Err(ExitWith(IN_PROGRESS_EXIT_CODE).into());
    }
    Ok(())
}

/// Runs `spate cluster reassign --generate`: a plan spreading `topics` over `brokers`.
pub fn generate(
    cluster: &mut Cluster,
    topics: &[String],
    brokers: &[i32],
    json: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(!topics.is_empty(), "--generate needs at least one --topic");
    anyhow::ensure!(!brokers.is_empty(), "--generate needs --broker-list");
    let mut current = Plan {
        version: 1,
        partitions: Vec::new(),
    };
    let mut proposed = Plan {
        version: 1,
        partitions: Vec::new(),
    };
    // Kafka starts each topic at a random broker; a stable start (by name) keeps the output
    // reproducible while still spreading leaders of several topics.
    for topic in topics {
        let layout = cluster.topic(topic)?;
        let start = topic.bytes().map(usize::from).sum::<usize>();
        for partition in &layout.partitions {
            let factor = partition.replicas.len().max(1);
            anyhow::ensure!(
                factor <= brokers.len(),
                "{topic}-{} has {factor} replicas, more than the {} brokers listed",
                partition.index,
                brokers.len()
            );
            let first = start + partition.index as usize;
            let replicas = (0..factor)
                .map(|replica| brokers[(first + replica) % brokers.len()])
                .collect();
            current.partitions.push(PlannedPartition {
                topic: topic.clone(),
                partition: partition.index,
                replicas: partition.replicas.clone(),
                log_dirs: None,
            });
            proposed.partitions.push(PlannedPartition {
                topic: topic.clone(),
                partition: partition.index,
                replicas,
                log_dirs: None,
            });
        }
    }
    if json {
        print_json(&json!({ "current": current, "proposed": proposed }));
    } else {
        print_text(&format!(
            "Current partition replica assignment\n{}\n\nProposed partition reassignment configuration\n{}\n",
            serde_json::to_string(&current)?,
            serde_json::to_string(&proposed)?
        ));
    }
    Ok(())
}

fn ids_text(ids: &[i32]) -> String {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    ids.join(",")
}
