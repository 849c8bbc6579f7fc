//! `spate topic add-partitions` and `spate topic trim-prefix`: the commands that change a
//! topic's partitions rather than its configs.

use anyhow::{bail, Context};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, DeleteRecordsRequest};
use serde_json::json;

use super::broker::{topic_name, Cluster};
use super::check_error;
use super::output::{print_json, print_text};

/// How long the broker may take to add partitions or move a log start.
const ADMIN_TIMEOUT_MS: i32 = 30_000;

/// CreatePartitions: the topic grows to `count` partitions in all (Kafka's `--partitions`).
pub fn add_partitions(
    cluster: &mut Cluster,
    json: bool,
    name: &str,
    count: i32,
) -> anyhow::Result<()> {
    let before = cluster.topic(name)?.partitions.len();
    if count as i64 <= before as i64 {
        bail!("topic {name} has {before} partitions: --count is the new total and must be more");
    }
    let connection = cluster.any();
    let version = connection.version(ApiKey::CreatePartitions, 0..=3)?;
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(name))
            .with_count(count)
            .with_assignments(None)])
        .with_timeout_ms(ADMIN_TIMEOUT_MS)
        .with_validate_only(false);
    let response = connection.send(version, &request)?;
    let result = response
        .results
        .first()
        .context("the broker answered CreatePartitions with no topics")?;
    check_error(result.error_code, result.error_message.as_deref(), || {
        format!("cannot add partitions to {name}")
    })?;
    if json {
        print_json(&json!({"topic": name, "partitions_before": before, "partitions": count}));
    } else {
        print_text(&format!(
            "Topic {name} now has {count} partitions (was {before}).\n"
        ));
    }
    Ok(())
}

/// DeleteRecords: the partition's records below `offset` go (-1: all of them, up to the
/// high watermark), as Kafka's `kafka-delete-records.sh` does.
pub fn trim_prefix(
    cluster: &mut Cluster,
    json: bool,
    name: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<()> {
    if offset < -1 {
        bail!("--offset must be an offset, or -1 for the high watermark");
    }
    let leader = cluster.topic(name)?.leader(partition)?;
    let connection = cluster.broker(leader)?;
    let version = connection.version(ApiKey::DeleteRecords, 0..=2)?;
    let request = DeleteRecordsRequest::default()
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(name))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(partition)
                .with_offset(offset)])])
        .with_timeout_ms(ADMIN_TIMEOUT_MS);
    let response = connection.send(version, &request)?;
    let result = response
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .find(|answer| answer.partition_index == partition)
        .context("the broker answered DeleteRecords without the partition")?;
    check_error(result.error_code, None, || {
        format!("cannot trim {name}-{partition}")
    })?;
    if json {
        print_json(&json!({
            "topic": name, "partition": partition, "log_start_offset": result.low_watermark,
        }));
    } else {
        print_text(&format!(
            "Partition {name}-{partition} now starts at offset {}.\n",
            result.low_watermark
        ));
    }
    Ok(())
}
