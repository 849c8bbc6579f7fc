//! `spate cluster elect-leaders`: Kafka's `kafka-leader-election.sh`. A preferred election
//! (the default) moves each partition's leadership back to its preferred replica (the first)
//! where that replica is live and in sync: after a node's failure and return, its partitions
//! stay led by the others until then (or until the controller's automatic rebalance). An
//! unclean election (`--unclean`) gives a partition with no live leader any live replica,
//! even one out of sync, losing what that replica lacks: the last resort when nothing in
//! sync will come back. Exit code 1 if an election was refused (one not needed is no
//! failure).

use std::collections::BTreeMap;

use anyhow::Context;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest};
use serde_json::json;

use super::broker::{topic_name, Cluster};
use super::output::{print_json, print_text, Table};
use super::{check_error, error_name};

/// ElectionType values.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;
/// ELECTION_NOT_NEEDED: the leader is already the one an election would pick.
const ELECTION_NOT_NEEDED: i16 = 84;
/// How long the broker may take.
const TIMEOUT_MS: i32 = 30_000;

/// What to elect: every partition, a topic's, or some partitions of a topic.
pub struct Election {
    /// Only this topic.
    pub topic: Option<String>,
    /// Only these partitions of `topic` (all of them when empty).
    pub partitions: Vec<i32>,
    /// An unclean election instead of a preferred one.
    pub unclean: bool,
}

/// Runs `spate cluster elect-leaders`.
pub fn run(cluster: &mut Cluster, election: Election, json: bool) -> anyhow::Result<()> {
    let asked = match &election.topic {
        None => None,
        Some(name) => {
            let partitions = if election.partitions.is_empty() {
                cluster.topic(name)?.partition_indexes()
            } else {
                election.partitions.clone()
            };
            Some(vec![TopicPartitions::default()
                .with_topic(topic_name(name))
                .with_partitions(partitions)])
        }
    };
    let connection = cluster.any();
    let version = connection
        .version(ApiKey::ElectLeaders, 0..=2)
        .context("the broker cannot elect leaders")?;
    if version == 0 && election.unclean {
        anyhow::bail!("the broker serves only preferred elections (ElectLeaders v0)");
    }
    let request = ElectLeadersRequest::default()
        .with_election_type(if election.unclean { UNCLEAN } else { PREFERRED })
        .with_topic_partitions(asked)
        .with_timeout_ms(TIMEOUT_MS);
    let response = connection.send(version, &request)?;
    check_error(response.error_code, None, || {
        "the controller refused the election".to_string()
    })?;
    // (topic, partition) -> error code and message.
    let mut results: BTreeMap<(String, i32), (i16, Option<String>)> = BTreeMap::new();
    for topic in &response.replica_election_results {
        for partition in &topic.partition_result {
            results.insert(
                (topic.topic.0.to_string(), partition.partition_id),
                (
                    partition.error_code,
                    partition.error_message.as_ref().map(ToString::to_string),
                ),
            );
        }
    }
    let failed = results
        .values()
        .filter(|(code, _)| *code != 0 && *code != ELECTION_NOT_NEEDED)
        .count();
    if json {
        let rows: Vec<_> = results
            .iter()
            .map(|((topic, partition), (code, message))| {
                json!({
                    "topic": topic, "partition": partition,
                    "elected": *code == 0,
                    "error": (*code != 0).then(|| error_name(*code)),
                    "message": message,
                })
            })
            .collect();
        print_json(&json!({ "results": rows, "failed": failed }));
    } else if results.is_empty() {
        print_text("Every partition is led by the replica the election would pick.\n");
    } else {
        let mut table = Table::new(&["TOPIC", "PARTITION", "RESULT"]);
        for ((topic, partition), (code, message)) in &results {
            let result = match (*code, message) {
                (0, _) => "elected".to_string(),
                (ELECTION_NOT_NEEDED, _) => "not needed".to_string(),
                (code, Some(message)) => format!("{}: {message}", error_name(code)),
                (code, None) => error_name(code),
            };
            table.row(vec![topic.clone(), partition.to_string(), result]);
        }
        print_text(&table.render());
    }
    if failed > 0 {
        anyhow::bail!("{failed} partition(s) could not elect the leader asked for");
    }
    Ok(())
}
