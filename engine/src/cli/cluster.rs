//! `spate cluster info`: the cluster as a client sees it: its id, the controller, every
//! broker with its address and rack, and how many topics and partitions each broker leads.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use kafka_protocol::messages::{ApiKey, DescribeClusterRequest};
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
    /// Uses DescribeCluster where the broker has it, else Metadata.
    Info,
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
    let ClusterCommand::Info = args.command;
    let json = args.connection.json;
    let mut cluster = Cluster::connect(&args.connection.brokers)?;
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
    print_text(&text);
    Ok(())
}
