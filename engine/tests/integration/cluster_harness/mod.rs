//! A cluster of real `spate serve` processes on loopback for the cluster tests: nodes
//! 1..=count, each a voter of `--controller-quorum-voters` with one shard (or, with
//! `start_mixed`, some of them brokers only), observed the way an operator would
//! (DescribeQuorum, the `spate` CLI).

#![allow(dead_code)]

use std::time::{Duration, Instant};

use crate::harness::{free_port_range, Broker};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response;
use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

/// Election timeout given to the nodes: short, so that the tests are quick, and still many
/// heartbeats long.
pub const ELECTION_TIMEOUT_MS: &str = "300";
/// How long a test waits for the quorum to reach a state.
pub const WAIT: Duration = Duration::from_secs(30);
/// NOT_LEADER_OR_FOLLOWER.
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;

pub struct Cluster {
    pub nodes: Vec<Broker>,
    /// Node n's controller port is `controller_base + n - 1`.
    pub controller_base: u16,
}

/// What one node says about the quorum.
#[derive(Debug)]
pub struct View {
    pub leader: i32,
    pub epoch: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub voters: Vec<(i32, i64)>,
}

impl Cluster {
    /// Nodes 1..=count, each with one shard and a controller port.
    pub fn start(count: usize) -> Cluster {
        Cluster::start_with(count, &[])
    }

    /// [`Cluster::start`] with more `spate serve` arguments for every node.
    pub fn start_with(count: usize, extra_args: &[&str]) -> Cluster {
        let extra: Vec<String> = extra_args.iter().map(ToString::to_string).collect();
        Cluster::start_each(count, |_| extra.clone())
    }

    /// [`Cluster::start`] with more `spate serve` arguments for each node (by index from
    /// 0), such as a stats port of its own.
    pub fn start_each(count: usize, extra_args: impl Fn(usize) -> Vec<String>) -> Cluster {
        let controller_base = free_port_range(count);
        let voters = (0..count)
            .map(|index| format!("{}@127.0.0.1:{}", index + 1, controller_base + index as u16))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..count)
            .map(|index| {
                let node_id = (index + 1).to_string();
                let mut args = vec![
                    "--node-id",
                    &node_id,
                    "--controller-quorum-voters",
                    &voters,
                    "--controller-quorum-election-timeout-ms",
                    ELECTION_TIMEOUT_MS,
                ];
                let extra = extra_args(index);
                args.extend(extra.iter().map(String::as_str));
                let mut broker = Broker::start_with_args(1, &args);
                broker.extra_ports = vec![controller_base + index as u16];
                broker
            })
            .collect();
        Cluster {
            nodes,
            controller_base,
        }
    }

    /// Nodes 1..=voters are the quorum's voters, nodes voters+1..=voters+brokers brokers only
    /// (learners of the quorum, each with a controller port of its own).
    pub fn start_mixed(voters: usize, brokers: usize, extra_args: &[&str]) -> Cluster {
        let controller_base = free_port_range(voters + brokers);
        let mut cluster = Cluster {
            nodes: Vec::new(),
            controller_base,
        };
        for _ in 0..voters + brokers {
            cluster.start_node(voters, extra_args);
        }
        cluster
    }

    /// Starts the next node (id `nodes.len() + 1`, controller port `controller_base + id -
    /// 1`): a voter if its id is at most `voters`, else a broker only. A node added after
    /// [`Cluster::start_mixed`] takes a controller port checked free now.
    pub fn start_node(&mut self, voters: usize, extra_args: &[&str]) -> i32 {
        let node_id = self.nodes.len() + 1;
        let quorum = (0..voters)
            .map(|index| {
                format!(
                    "{}@127.0.0.1:{}",
                    index + 1,
                    self.controller_base + index as u16
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut port = self.controller_base + node_id as u16 - 1;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            port = free_port_range(1);
        }
        let listen = format!("127.0.0.1:{port}");
        let id = node_id.to_string();
        let mut args = vec![
            "--node-id",
            &id,
            "--controller-quorum-voters",
            &quorum,
            "--controller-quorum-election-timeout-ms",
            ELECTION_TIMEOUT_MS,
        ];
        if node_id > voters {
            args.extend(["--controller-listen", &listen]);
        }
        args.extend_from_slice(extra_args);
        let mut broker = Broker::start_with_args(1, &args);
        broker.extra_ports = vec![port];
        self.nodes.push(broker);
        node_id as i32
    }

    pub fn node(&mut self, node_id: i32) -> &mut Broker {
        &mut self.nodes[node_id as usize - 1]
    }

    /// DescribeQuorum on `node_id`'s Kafka port; `None` if the node does not answer.
    pub fn view(&self, node_id: i32) -> Option<View> {
        let broker = &self.nodes[node_id as usize - 1];
        let mut client =
            spate_net::client::Client::connect(broker.address(0), Duration::from_secs(2)).ok()?;
        let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        let response = client.send(1, &request).ok()?;
        let partition: describe_quorum_response::PartitionData = response
            .topics
            .into_iter()
            .next()?
            .partitions
            .into_iter()
            .next()?;
        Some(View {
            leader: partition.leader_id.0,
            epoch: partition.leader_epoch,
            error_code: partition.error_code,
            high_watermark: partition.high_watermark,
            voters: partition
                .current_voters
                .iter()
                .map(|voter| (voter.replica_id.0, voter.log_end_offset))
                .collect(),
        })
    }

    /// Waits until a node among `alive` leads in an epoch above `above_epoch`, every node of
    /// `alive` agrees on it, and the leader sees each of `caught_up` at its high watermark.
    pub fn wait_for_leader(
        &self,
        alive: &[i32],
        caught_up: &[i32],
        above_epoch: i32,
    ) -> (i32, i32) {
        let deadline = Instant::now() + WAIT;
        loop {
            let views: Vec<(i32, Option<View>)> =
                alive.iter().map(|&node| (node, self.view(node))).collect();
            if let Some((leader, epoch)) = agreed_leader(&views, caught_up, above_epoch) {
                return (leader, epoch);
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader above epoch {above_epoch} among {alive:?}: {views:#?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(index, node)| format!("--- node {} ---\n{}", index + 1, node.log()))
            .collect()
    }
}

/// The leader and epoch every view agrees on, if the leader's own view says it leads and
/// shows each of `caught_up` at its high watermark.
pub fn agreed_leader(
    views: &[(i32, Option<View>)],
    caught_up: &[i32],
    above_epoch: i32,
) -> Option<(i32, i32)> {
    let (_, Some(first)) = views.first()? else {
        return None;
    };
    let (leader, epoch) = (first.leader, first.epoch);
    if leader < 0 || epoch <= above_epoch {
        return None;
    }
    for (node, view) in views {
        let view = view.as_ref()?;
        if (view.leader, view.epoch) != (leader, epoch) {
            return None;
        }
        let expected_error = if *node == leader {
            0
        } else {
            NOT_LEADER_OR_FOLLOWER
        };
        if view.error_code != expected_error {
            return None;
        }
        if *node == leader {
            let all_caught_up = caught_up.iter().all(|member| {
                view.voters
                    .iter()
                    .any(|(id, end)| id == member && *end >= view.high_watermark)
            });
            if !all_caught_up || view.voters.len() != 3 {
                return None;
            }
        }
    }
    Some((leader, epoch))
}

/// Runs the `spate` CLI against `node` and returns its standard output.
pub fn spate(cluster: &Cluster, node: i32, args: &[&str]) -> String {
    let bootstrap = cluster.nodes[node as usize - 1].address(0).to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(args)
        .args(["--brokers", &bootstrap])
        .output()
        .expect("spate runs");
    assert!(
        output.status.success(),
        "spate {args:?} on node {node} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs the `spate` CLI against `node` until it succeeds with an output that `ready`
/// accepts, and returns that output. Metadata reaches each node when that node applies the
/// quorum's commit, so a change acknowledged through one node shows on another a moment
/// later (as in Kafka, where clients retry UNKNOWN_TOPIC_OR_PARTITION): wait, never assume.
pub fn spate_until(
    cluster: &Cluster,
    node: i32,
    args: &[&str],
    ready: impl Fn(&str) -> bool,
) -> String {
    let bootstrap = cluster.nodes[node as usize - 1].address(0).to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
            .args(args)
            .args(["--brokers", &bootstrap])
            .output()
            .expect("spate runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && ready(&stdout) {
            return stdout;
        }
        assert!(
            Instant::now() < deadline,
            "spate {args:?} on node {node} never got ready: {}\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `spate cluster health --json` against `node`: its exit code and report.
pub fn health(cluster: &Cluster, node: i32) -> (i32, serde_json::Value) {
    let bootstrap = cluster.nodes[node as usize - 1].address(0).to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["cluster", "health", "--json", "--brokers", &bootstrap])
        .output()
        .expect("spate runs");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "cluster health printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

/// Waits until `node`'s Metadata lists exactly `expected` brokers.
pub fn wait_for_brokers(cluster: &Cluster, node: i32, expected: &[i64]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let info: serde_json::Value =
            serde_json::from_str(&spate(cluster, node, &["cluster", "info", "--json"]))
                .expect("json");
        let ids: Vec<i64> = info["brokers"]
            .as_array()
            .expect("brokers")
            .iter()
            .map(|broker| broker["id"].as_i64().expect("id"))
            .collect();
        if ids == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {node} lists {ids:?}, not {expected:?}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
