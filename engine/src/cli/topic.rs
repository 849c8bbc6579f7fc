//! `spate topic`: create, list, describe, delete and reconfigure topics.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest, ApiKey,
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use serde_json::json;

use super::broker::{str_bytes, topic_name, Cluster};
use super::output::{id_list, print_json, print_text, Table};
use super::{check_error, offsets, parse_key_value, topic_partitions, ConnectionArgs};

/// DescribeConfigs/AlterConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs config_source of a per-topic override.
const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
/// IncrementalAlterConfigs operations.
const OPERATION_SET: i8 = 0;
const OPERATION_DELETE: i8 = 1;
/// How long the broker may take to create or delete a topic.
const ADMIN_TIMEOUT_MS: i32 = 30_000;

/// `spate topic ...`
#[derive(Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand, Debug)]
enum TopicCommand {
    /// Create a topic.
    ///
    /// Example: spate topic create orders --partitions 6 --config retention.ms=86400000
    Create {
        /// The topic's name.
        name: String,
        /// Number of partitions.
        #[arg(long, required_unless_present = "replica_assignment")]
        partitions: Option<i32>,
        /// Copies of each partition; the broker's default when not given.
        #[arg(long)]
        replication_factor: Option<i16>,
        /// Each partition's brokers instead of --partitions and --replication-factor, as
        /// kafka-topics.sh takes them: partitions separated by commas, a partition's broker
        /// ids by colons, preferred leader first (e.g. 1024:2048,2048:3072).
        #[arg(long, value_name = "B:B,B:B,...", conflicts_with_all = ["partitions", "replication_factor"])]
        replica_assignment: Option<String>,
        /// A topic config, KEY=VALUE (e.g. retention.ms=86400000); repeat for several.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List topics with their partition counts.
    List,
    /// Show a topic's partitions (leaders, replicas, log start and end offsets) and configs.
    Describe {
        /// The topic's name.
        name: String,
        /// Show every config, not only the ones set on this topic.
        #[arg(long)]
        all_configs: bool,
    },
    /// Add partitions to a topic: --count is the new total, as Kafka's --partitions.
    ///
    /// Example: spate topic add-partitions orders --count 12
    AddPartitions {
        /// The topic's name.
        name: String,
        /// The number of partitions the topic will have.
        #[arg(long)]
        count: i32,
    },
    /// Delete a partition's records below an offset (DeleteRecords): the log start moves.
    ///
    /// Example: spate topic trim-prefix orders --partition 0 --offset 1000
    TrimPrefix {
        /// The topic's name.
        name: String,
        /// The partition.
        #[arg(long)]
        partition: i32,
        /// The new log start offset; -1 for the high watermark (everything goes).
        #[arg(long, allow_negative_numbers = true)]
        offset: i64,
    },
    /// Delete a topic and all its records.
    Delete {
        /// The topic's name.
        name: String,
    },
    /// Set or remove per-topic config overrides.
    ///
    /// Uses IncrementalAlterConfigs; on brokers without it, falls back to AlterConfigs with
    /// the topic's whole set of overrides.
    ///
    /// Example: spate topic alter-config orders --set retention.ms=3600000 --delete cleanup.policy
    AlterConfig {
        /// The topic's name.
        name: String,
        /// A config to set, KEY=VALUE; repeat for several.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// A config override to remove (back to the default); repeat for several.
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        /// Use AlterConfigs (key 33), which replaces the whole set of overrides, even when
        /// the broker has IncrementalAlterConfigs.
        #[arg(long)]
        use_alter_configs: bool,
    },
}

/// Runs `spate topic ...`.
pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let json = args.connection.json;
    let mut cluster = Cluster::connect(&args.connection)?;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            replica_assignment,
            configs,
        } => {
            let layout = match replica_assignment {
                Some(text) => Layout::Assigned(parse_replica_assignment(&text)?),
                None => Layout::Counted {
                    partitions: partitions.unwrap_or_default(),
                    replication_factor,
                },
            };
            create(&mut cluster, json, &name, layout, &configs)
        }
        TopicCommand::List => list(&mut cluster, json),
        TopicCommand::Describe { name, all_configs } => {
            describe(&mut cluster, json, &name, all_configs)
        }
        TopicCommand::AddPartitions { name, count } => {
            topic_partitions::add_partitions(&mut cluster, json, &name, count)
        }
        TopicCommand::TrimPrefix {
            name,
            partition,
            offset,
        } => topic_partitions::trim_prefix(&mut cluster, json, &name, partition, offset),
        TopicCommand::Delete { name } => delete(&mut cluster, json, &name),
        TopicCommand::AlterConfig {
            name,
            set,
            delete,
            use_alter_configs,
        } => {
            let change = ConfigChange {
                set: &set,
                delete: &delete,
                use_alter_configs,
            };
            alter_config(&mut cluster, json, &name, &change)
        }
    }
}

fn create(
    cluster: &mut Cluster,
    json: bool,
    name: &str,
    layout: Layout,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    let connection = cluster.any();
    let version = connection.version(ApiKey::CreateTopics, 2..=7)?;
    let topic = CreatableTopic::default().with_name(topic_name(name));
    let (asked_partitions, asked_factor) = match &layout {
        Layout::Counted {
            partitions,
            replication_factor,
        } => (*partitions, replication_factor.unwrap_or(-1)),
        Layout::Assigned(partitions) => (
            partitions.len() as i32,
            partitions
                .first()
                .map_or(-1, |replicas| replicas.len() as i16),
        ),
    };
    let topic = match layout {
        Layout::Counted {
            partitions,
            replication_factor,
        } => {
            if partitions < 1 {
                bail!("--partitions must be at least 1");
            }
            // -1 ("the broker's default") is understood from v4 on; older brokers need a
            // number.
            let replication_factor =
                replication_factor.unwrap_or(if version >= 4 { -1 } else { 1 });
            topic
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
        }
        Layout::Assigned(partitions) => topic
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(
                partitions
                    .into_iter()
                    .enumerate()
                    .map(|(index, brokers)| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(index as i32)
                            .with_broker_ids(brokers.into_iter().map(BrokerId).collect())
                    })
                    .collect(),
            ),
    };
    let topic = topic.with_configs(
        configs
            .iter()
            .map(|(key, value)| {
                CreatableTopicConfig::default()
                    .with_name(str_bytes(key))
                    .with_value(Some(str_bytes(value)))
            })
            .collect(),
    );
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(ADMIN_TIMEOUT_MS);
    let response = connection.send(version, &request)?;
    let result = response
        .topics
        .first()
        .context("the broker answered CreateTopics with no topics")?;
    check_error(result.error_code, result.error_message.as_deref(), || {
        format!("cannot create topic {name}")
    })?;
    let (partitions, replication_factor) = if version >= 5 {
        (result.num_partitions, result.replication_factor)
    } else {
        (asked_partitions, asked_factor)
    };
    if json {
        print_json(&json!({
            "topic": name,
            "partitions": partitions,
            "replication_factor": replication_factor,
            "configs": configs.iter().cloned().collect::<BTreeMap<String, String>>(),
        }));
    } else {
        print_text(&format!(
            "Created topic {name} with {partitions} partitions.\n"
        ));
    }
    Ok(())
}

fn list(cluster: &mut Cluster, json: bool) -> anyhow::Result<()> {
    let topics = cluster.topics()?;
    if json {
        let entries: Vec<_> = topics
            .iter()
            .map(|topic| {
                json!({
                    "name": topic.name,
                    "id": topic.id.to_string(),
                    "partitions": topic.partitions.len(),
                    "replication_factor": topic.partitions.first().map_or(0, |p| p.replicas.len()),
                    "internal": topic.internal,
                })
            })
            .collect();
        print_json(&json!(entries));
        return Ok(());
    }
    let mut table = Table::new(&["TOPIC", "PARTITIONS", "REPLICATION"]);
    for topic in &topics {
        table.row(vec![
            topic.name.clone(),
            topic.partitions.len().to_string(),
            topic
                .partitions
                .first()
                .map_or(0, |p| p.replicas.len())
                .to_string(),
        ]);
    }
    table.print();
    Ok(())
}

/// One config as DescribeConfigs reports it.
struct ConfigEntry {
    name: String,
    value: Option<String>,
    source: i8,
    read_only: bool,
    sensitive: bool,
}

fn describe(
    cluster: &mut Cluster,
    json: bool,
    name: &str,
    all_configs: bool,
) -> anyhow::Result<()> {
    let topic = cluster.topic(name)?;
    let partitions = topic.partition_indexes();
    let bounds = offsets::log_bounds(cluster, &topic, &partitions)?;
    let configs = describe_configs(cluster, name)?;
    if json {
        let partitions: Vec<_> = topic
            .partitions
            .iter()
            .map(|partition| {
                let (start, end) = bounds[&partition.index];
                json!({
                    "partition": partition.index,
                    "leader": partition.leader,
                    "leader_epoch": partition.leader_epoch,
                    "replicas": partition.replicas,
                    "isr": partition.isr,
                    "log_start_offset": start,
                    "log_end_offset": end,
                })
            })
            .collect();
        let configs: Vec<_> = configs
            .iter()
            .map(|config| {
                json!({
                    "name": config.name,
                    "value": config.value,
                    "source": source_name(config.source),
                    "read_only": config.read_only,
                    "sensitive": config.sensitive,
                })
            })
            .collect();
        print_json(&json!({
            "name": topic.name,
            "id": topic.id.to_string(),
            "internal": topic.internal,
            "partitions": partitions,
            "configs": configs,
        }));
        return Ok(());
    }
    let mut text = format!(
        "Topic: {}  Id: {}  Partitions: {}  Replication: {}\n\n",
        topic.name,
        topic.id,
        topic.partitions.len(),
        topic.partitions.first().map_or(0, |p| p.replicas.len())
    );
    let mut table = Table::new(&[
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "ISR",
        "LOG-START-OFFSET",
        "LOG-END-OFFSET",
    ]);
    for partition in &topic.partitions {
        let (start, end) = bounds[&partition.index];
        table.row(vec![
            partition.index.to_string(),
            partition.leader.to_string(),
            id_list(&partition.replicas),
            id_list(&partition.isr),
            start.to_string(),
            end.to_string(),
        ]);
    }
    text.push_str(&table.render());
    let shown: Vec<&ConfigEntry> = configs
        .iter()
        .filter(|config| all_configs || config.source == SOURCE_DYNAMIC_TOPIC_CONFIG)
        .collect();
    if shown.is_empty() {
        text.push_str("\nConfigs: none set on this topic (--all-configs shows the defaults)\n");
    } else {
        text.push_str("\nConfigs:\n");
        let mut table = Table::new(&["NAME", "VALUE", "SOURCE"]);
        for config in shown {
            let value = match (&config.value, config.sensitive) {
                (_, true) => "(sensitive)".to_string(),
                (Some(value), false) => value.clone(),
                (None, false) => "(null)".to_string(),
            };
            table.row(vec![
                config.name.clone(),
                value,
                source_name(config.source).to_string(),
            ]);
        }
        text.push_str(&table.render());
    }
    print_text(&text);
    Ok(())
}

/// Every config of a topic (DescribeConfigs, sent to any broker), sorted by name.
fn describe_configs(cluster: &mut Cluster, name: &str) -> anyhow::Result<Vec<ConfigEntry>> {
    let connection = cluster.any();
    let version = connection.version(ApiKey::DescribeConfigs, 1..=4)?;
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(str_bytes(name))
            .with_configuration_keys(None)]);
    let response = connection.send(version, &request)?;
    let result = response
        .results
        .first()
        .context("the broker answered DescribeConfigs with no results")?;
    check_error(result.error_code, result.error_message.as_deref(), || {
        format!("cannot describe the configs of topic {name}")
    })?;
    let mut configs: Vec<ConfigEntry> = result
        .configs
        .iter()
        .map(|config| ConfigEntry {
            name: config.name.to_string(),
            value: config.value.as_ref().map(|value| value.to_string()),
            source: config.config_source,
            read_only: config.read_only,
            sensitive: config.is_sensitive,
        })
        .collect();
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(configs)
}

/// Kafka's name for a DescribeConfigs config_source.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

fn delete(cluster: &mut Cluster, json: bool, name: &str) -> anyhow::Result<()> {
    let connection = cluster.any();
    let version = connection.version(ApiKey::DeleteTopics, 1..=6)?;
    let request = if version >= 6 {
        DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic_name(name)))
        ])
    } else {
        DeleteTopicsRequest::default().with_topic_names(vec![topic_name(name)])
    };
    let response = connection.send(version, &request.with_timeout_ms(ADMIN_TIMEOUT_MS))?;
    let result = response
        .responses
        .first()
        .context("the broker answered DeleteTopics with no topics")?;
    if result.error_code == 3 {
        bail!("topic {name} does not exist");
    }
    check_error(result.error_code, result.error_message.as_deref(), || {
        format!("cannot delete topic {name}")
    })?;
    if json {
        print_json(&json!({ "topic": name, "deleted": true }));
    } else {
        print_text(&format!("Deleted topic {name}.\n"));
    }
    Ok(())
}

/// What `topic alter-config` changes.
struct ConfigChange<'a> {
    set: &'a [(String, String)],
    delete: &'a [String],
    use_alter_configs: bool,
}

fn alter_config(
    cluster: &mut Cluster,
    json: bool,
    name: &str,
    change: &ConfigChange,
) -> anyhow::Result<()> {
    let (set, delete) = (change.set, change.delete);
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
    }
    if !change.use_alter_configs && cluster.any().supports(ApiKey::IncrementalAlterConfigs) {
        alter_incrementally(cluster, name, set, delete)?;
    } else {
        alter_whole_set(cluster, name, set, delete)?;
    }
    if json {
        print_json(&json!({
            "topic": name,
            "set": set.iter().cloned().collect::<BTreeMap<String, String>>(),
            "deleted": delete,
        }));
    } else {
        print_text(&format!("Updated the configs of topic {name}.\n"));
    }
    Ok(())
}

/// IncrementalAlterConfigs (key 44): only the named keys change.
fn alter_incrementally(
    cluster: &mut Cluster,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
) -> anyhow::Result<()> {
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let connection = cluster.any();
    let version = connection.version(ApiKey::IncrementalAlterConfigs, 0..=1)?;
    let configs = set
        .iter()
        .map(|(key, value)| {
            AlterableConfig::default()
                .with_name(str_bytes(key))
                .with_config_operation(OPERATION_SET)
                .with_value(Some(str_bytes(value)))
        })
        .chain(delete.iter().map(|key| {
            AlterableConfig::default()
                .with_name(str_bytes(key))
                .with_config_operation(OPERATION_DELETE)
                .with_value(None)
        }))
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(str_bytes(name))
            .with_configs(configs),
    ]);
    let response = connection.send(version, &request)?;
    let result = response
        .responses
        .first()
        .context("the broker answered IncrementalAlterConfigs with nothing")?;
    check_error(result.error_code, result.error_message.as_deref(), || {
        format!("cannot change the configs of topic {name}")
    })
}

/// AlterConfigs (key 33) replaces a topic's whole set of overrides, so read the current
/// overrides first and send them back with the changes applied.
fn alter_whole_set(
    cluster: &mut Cluster,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
) -> anyhow::Result<()> {
    use alter_configs_request::{AlterConfigsResource, AlterableConfig};
    cluster.topic(name)?;
    let current: Vec<ConfigEntry> = describe_configs(cluster, name)?
        .into_iter()
        .filter(|config| config.source == SOURCE_DYNAMIC_TOPIC_CONFIG)
        .collect();
    if let Some(sensitive) = current.iter().find(|config| config.sensitive) {
        bail!(
            "topic {name} has a sensitive override ({}) that AlterConfigs would erase, and this broker lacks IncrementalAlterConfigs",
            sensitive.name
        );
    }
    let mut overrides: BTreeMap<String, Option<String>> = current
        .into_iter()
        .map(|config| (config.name, config.value))
        .collect();
    for key in delete {
        overrides.remove(key);
    }
    for (key, value) in set {
        overrides.insert(key.clone(), Some(value.clone()));
    }
    let connection = cluster.any();
    let version = connection.version(ApiKey::AlterConfigs, 0..=2)?;
    let configs = overrides
        .iter()
        .map(|(key, value)| {
            AlterableConfig::default()
                .with_name(str_bytes(key))
                .with_value(value.as_deref().map(str_bytes))
        })
        .collect();
    let request =
        AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(str_bytes(name))
            .with_configs(configs)]);
    let response = connection.send(version, &request)?;
    let result = response
        .responses
        .first()
        .context("the broker answered AlterConfigs with nothing")?;
    check_error(result.error_code, result.error_message.as_deref(), || {
        format!("cannot change the configs of topic {name}")
    })
}

/// How a topic to create is laid out: a count (and factor) for the broker to place, or each
/// partition's brokers.
enum Layout {
    Counted {
        partitions: i32,
        replication_factor: Option<i16>,
    },
    Assigned(Vec<Vec<i32>>),
}

/// kafka-topics.sh's `--replica-assignment`: `1:2,2:3` is partition 0 on brokers 1 and 2,
/// partition 1 on 2 and 3.
fn parse_replica_assignment(text: &str) -> anyhow::Result<Vec<Vec<i32>>> {
    text.split(',')
        .map(|partition| {
            partition
                .split(':')
                .map(|id| {
                    id.trim().parse::<i32>().map_err(|_| {
                        anyhow::anyhow!("--replica-assignment: '{id}' is not a broker id (expected e.g. 1024:2048,2048:3072)")
                    })
                })
                .collect()
        })
        .collect()
}
