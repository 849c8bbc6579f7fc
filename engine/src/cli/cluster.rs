//! `spate cluster info`: the cluster as a client sees it: its id, the controller, every
//! broker with its address and rack, how many topics and partitions each broker leads, and
//! the controller quorum (DescribeQuorum): its leader, epoch, high watermark and each voter's
//! progress. `spate cluster health` is in `cluster_health`, `elect-leaders` in
//! `cluster_elect`, `reassign` and `reassignments` in `cluster_reassign`.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::broker::Cluster;
use super::output::{print_json, print_text, Table};
use super::{check_error, ConnectionArgs};

/// `spate cluster ...`
#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// The cluster id, the controller and every broker (address, rack, partitions led).
    ///
    /// Uses DescribeCluster where the broker has it, else Metadata, and DescribeQuorum for the
    /// controller quorum.
    Info,
    /// Whether the cluster is healthy: offline, under-min-ISR and under-replicated
    /// partitions, brokers down, a controller. Exit code 0 when healthy, 2 when not.
    Health,
    /// Leader election (Kafka's kafka-leader-election.sh): each partition back to its
    /// preferred replica where that one is live and in sync, or with --unclean a live
    /// replica for a partition without a leader, even an out-of-sync one (it loses what
    /// that replica lacks). Every partition unless --topic (and --partition) narrow it.
    ElectLeaders {
        /// Only this topic's partitions.
        #[arg(long)]
        topic: Option<String>,
        /// Only these partitions of --topic (comma-separated).
        #[arg(long, value_delimiter = ',', requires = "topic")]
        partition: Vec<i32>,
        /// An unclean election: for partitions with no live leader, any live replica, even
        /// out of sync (what it lacks of the old leader's log is lost).
        #[arg(long)]
        unclean: bool,
    },
    /// Moves partitions to other brokers (Kafka's kafka-reassign-partitions.sh, KIP-455):
    /// the new replicas copy the log, and the old ones go once the new are in sync. Takes
    /// --topic, --partition and --replicas, or Kafka's plan file; --cancel, --verify and
    /// --generate as Kafka's tool has them.
    Reassign(ReassignArgs),
    /// The partition reassignments in progress: replicas, those being added and removed.
    Reassignments,
}

/// `spate cluster reassign` (see `cluster_reassign`).
#[derive(Args, Debug)]
struct ReassignArgs {
    /// The topic (with --partition and --replicas; or, with --generate, a topic to move,
    /// repeatable).
    #[arg(long)]
    topic: Vec<String>,
    /// Partitions of --topic (comma-separated; every partition when left out).
    #[arg(long, value_delimiter = ',')]
    partition: Vec<i32>,
    /// The broker ids the partitions should end on, preferred leader first
    /// (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "reassignment_json_file")]
    replicas: Vec<i32>,
    /// Kafka's plan: {"version":1,"partitions":[{"topic":..,"partition":..,"replicas":[..]}]}.
    #[arg(long, value_name = "FILE")]
    reassignment_json_file: Option<std::path::PathBuf>,
    /// Executes the plan (the default; accepted for Kafka's scripts).
    #[arg(long, conflicts_with_all = ["cancel", "verify", "generate"])]
    execute: bool,
    /// Cancels the reassignments of the partitions named: back to their replicas before.
    #[arg(long, conflicts_with_all = ["verify", "generate"])]
    cancel: bool,
    /// Says for each partition of the plan whether it has moved (exit code 2 while any is
    /// still moving).
    #[arg(long, conflicts_with = "generate", requires = "reassignment_json_file")]
    verify: bool,
    /// Prints a plan spreading the --topic(s) over --broker-list, changing nothing.
    #[arg(long, requires = "broker_list")]
    generate: bool,
    /// The brokers --generate spreads partitions over (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    broker_list: Vec<i32>,
    /// Waits until the partitions have moved (or the cancellation is done).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value_t = 300)]
    wait_timeout_seconds: u64,
}

/// `spate cluster reassign`: which of Kafka's modes, from the flags.
fn reassign(cluster: &mut Cluster, args: ReassignArgs, json: bool) -> anyhow::Result<()> {
    use super::cluster_reassign::{self as tool, Plan, Reassign};
    if args.generate {
        return tool::generate(cluster, &args.topic, &args.broker_list, json);
    }
    let plan = match &args.reassignment_json_file {
        Some(path) => Plan::from_file(path)?,
        None => {
            let [topic] = &args.topic[..] else {
                anyhow::bail!("name one --topic (with --partition and --replicas), or give --reassignment-json-file");
            };
            anyhow::ensure!(
                args.cancel || !args.replicas.is_empty(),
                "--replicas names the brokers the partitions should end on"
            );
            let partitions = if args.partition.is_empty() {
                cluster.topic(topic)?.partition_indexes()
            } else {
                args.partition.clone()
            };
            Plan::of_partitions(topic, &partitions, &args.replicas)
        }
    };
    if args.verify {
        return tool::verify(cluster, &plan, json);
    }
    let asked = Reassign {
        plan,
        cancel: args.cancel,
        wait: args
            .wait
            .then(|| std::time::Duration::from_secs(args.wait_timeout_seconds)),
    };
    tool::run(cluster, asked, json)
}

/// One broker as the cluster describes it.
struct BrokerRow {
    host: String,
    port: i32,
    rack: Option<String>,
    fenced: bool,
}

impl BrokerRow {
    fn new(host: &StrBytes, port: i32, rack: Option<&StrBytes>, fenced: bool) -> BrokerRow {
        BrokerRow {
            host: host.to_string(),
            port,
            rack: rack.map(|rack| rack.to_string()),
            fenced,
        }
    }
}

/// Runs `spate cluster ...`.
pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let json = args.connection.json;
    let mut cluster = Cluster::connect(&args.connection)?;
    match args.command {
        ClusterCommand::Info => {}
        ClusterCommand::Health => return super::cluster_health::run(&mut cluster, json),
        ClusterCommand::ElectLeaders {
            topic,
            partition,
            unclean,
        } => {
            let election = super::cluster_elect::Election {
                topic,
                partitions: partition,
                unclean,
            };
            return super::cluster_elect::run(&mut cluster, election, json);
        }
        ClusterCommand::Reassign(args) => return reassign(&mut cluster, args, json),
        ClusterCommand::Reassignments => return super::cluster_reassign::list(&mut cluster, json),
    }
    let metadata = cluster.metadata(None)?;
    let mut cluster_id = metadata.cluster_id.as_ref().map(|id| id.to_string());
    let mut controller = metadata.controller_id.0;
    let mut brokers: BTreeMap<i32, BrokerRow> = metadata
        .brokers
        .iter()
        .map(|broker| {
            let row = BrokerRow::new(&broker.host, broker.port, broker.rack.as_ref(), false);
            (broker.node_id.0, row)
        })
        .collect();
    let connection = cluster.any();
    if connection.supports(ApiKey::DescribeCluster) {
        let version = connection.version(ApiKey::DescribeCluster, 0..=1)?;
        let response = connection.send(version, &DescribeClusterRequest::default())?;
        check_error(
            response.error_code,
            response.error_message.as_deref(),
            || "cannot describe the cluster".to_string(),
        )?;
        cluster_id = Some(response.cluster_id.to_string());
        controller = response.controller_id.0;
        brokers = response
            .brokers
            .iter()
            .map(|broker| {
                let rack = broker.rack.as_ref();
                let row = BrokerRow::new(&broker.host, broker.port, rack, broker.is_fenced);
                (broker.broker_id.0, row)
            })
            .collect();
    }
    let quorum = if connection.supports(ApiKey::DescribeQuorum) {
        Some(describe_quorum(connection)?)
    } else {
        None
    };
    // Partitions led per broker, and topics (internal ones included) from Metadata.
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    let mut partitions = 0usize;
    for topic in &metadata.topics {
        for partition in &topic.partitions {
            partitions += 1;
            *led.entry(partition.leader_id.0).or_default() += 1;
        }
    }
    if json {
        let rows: Vec<_> = brokers
            .iter()
            .map(|(id, broker)| {
                json!({
                    "id": id, "host": broker.host, "port": broker.port, "rack": broker.rack,
                    "fenced": broker.fenced, "is_controller": *id == controller,
                    "leader_partitions": led.get(id).copied().unwrap_or(0),
                })
            })
            .collect();
        print_json(&json!({
            "cluster_id": cluster_id, "controller_id": controller, "brokers": rows,
            "topics": metadata.topics.len(), "partitions": partitions,
            "quorum": quorum.as_ref().map(Quorum::to_json),
        }));
        return Ok(());
    }
    let mut text = format!(
        "Cluster: {}  Controller: {controller}  Brokers: {}  Topics: {}  Partitions: {partitions}\n\n",
        cluster_id.as_deref().unwrap_or("(none)"),
        brokers.len(),
        metadata.topics.len(),
    );
    let mut table = Table::new(&["ID", "HOST", "PORT", "RACK", "LEADER-PARTITIONS", "STATE"]);
    for (id, broker) in &brokers {
        let state = match (broker.fenced, *id == controller) {
            (true, _) => "fenced",
            (false, true) => "controller",
            (false, false) => "",
        };
        table.row(vec![
            id.to_string(),
            broker.host.clone(),
            broker.port.to_string(),
            broker.rack.clone().unwrap_or_else(|| "-".into()),
            led.get(id).copied().unwrap_or(0).to_string(),
            state.to_string(),
        ]);
    }
    text.push_str(&table.render());
    if let Some(quorum) = &quorum {
        text.push('\n');
        text.push_str(&quorum.render());
    }
    print_text(&text);
    Ok(())
}

/// The controller quorum as DescribeQuorum tells it.
pub(super) struct Quorum {
    /// The quorum's leader, -1 when it has none.
    pub(super) leader: i32,
    epoch: i32,
    high_watermark: i64,
    /// Set when the node asked does not lead the quorum (it knows only the leader).
    error: Option<String>,
    voters: Vec<ReplicaState>,
    observers: Vec<ReplicaState>,
}

pub(super) fn describe_quorum(
    connection: &mut super::broker::BrokerConnection,
) -> anyhow::Result<Quorum> {
    let version = connection.version(ApiKey::DescribeQuorum, 0..=2)?;
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let response = connection.send(version, &request)?;
    check_error(
        response.error_code,
        response.error_message.as_deref(),
        || "cannot describe the controller quorum".to_string(),
    )?;
    let partition = response
        .topics
        .into_iter()
        .flat_map(|topic| topic.partitions)
        .find(|partition| partition.partition_index == 0)
        .ok_or_else(|| anyhow::anyhow!("DescribeQuorum answered without the metadata log"))?;
    let error = (partition.error_code != 0).then(|| {
        partition.error_message.as_ref().map_or_else(
            || format!("error {}", partition.error_code),
            |message| message.to_string(),
        )
    });
    Ok(Quorum {
        leader: partition.leader_id.0,
        epoch: partition.leader_epoch,
        high_watermark: partition.high_watermark,
        error,
        voters: partition.current_voters,
        observers: partition.observers,
    })
}

impl Quorum {
    fn to_json(&self) -> serde_json::Value {
        let members = |replicas: &[ReplicaState]| -> Vec<serde_json::Value> {
            replicas
                .iter()
                .map(|replica| {
                    json!({
                        "id": replica.replica_id.0, "log_end_offset": replica.log_end_offset,
                        "lag": (self.high_watermark - replica.log_end_offset).max(0),
                        "last_fetch_timestamp": replica.last_fetch_timestamp,
                        "last_caught_up_timestamp": replica.last_caught_up_timestamp,
                    })
                })
                .collect()
        };
        json!({
            "leader_id": self.leader, "leader_epoch": self.epoch,
            "high_watermark": self.high_watermark, "error": self.error,
            "voters": members(&self.voters), "observers": members(&self.observers),
        })
    }

    fn render(&self) -> String {
        let mut text = format!(
            "Controller quorum: leader {}  epoch {}  high watermark {}\n",
            self.leader, self.epoch, self.high_watermark
        );
        if let Some(error) = &self.error {
            text.push_str(&format!(
                "({error}; ask the leader's node for each voter's progress)\n"
            ));
            return text;
        }
        let mut table = Table::new(&["NODE", "ROLE", "LOG-END-OFFSET", "LAG"]);
        for (replicas, role) in [(&self.voters, "voter"), (&self.observers, "observer")] {
            for replica in replicas {
                let role = if replica.replica_id.0 == self.leader {
                    "leader"
                } else {
                    role
                };
                table.row(vec![
                    replica.replica_id.0.to_string(),
                    role.to_string(),
                    replica.log_end_offset.to_string(),
                    (self.high_watermark - replica.log_end_offset)
                        .max(0)
                        .to_string(),
                ]);
            }
        }
        text.push_str(&table.render());
        text
    }
}
