//! The controller quorum across real processes: three `spate serve` nodes on loopback, each a
//! voter of `--controller-quorum-voters`, elect a leader over their controller ports, and
//! keep one through kill -9 of the leader, a restart from its data directory, and the loss
//! of two nodes out of three. Observed the way an operator would, with DescribeQuorum on each
//! node's Kafka port.

mod harness;

use std::time::{Duration, Instant};

use harness::{free_port_range, Broker};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response;
use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

/// Election timeout given to the nodes: short, so that the tests are quick, and still many
/// heartbeats long.
const ELECTION_TIMEOUT_MS: &str = "300";
/// How long a test waits for the quorum to reach a state.
const WAIT: Duration = Duration::from_secs(30);
/// NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

struct Cluster {
    nodes: Vec<Broker>,
    /// Node n's controller port is `controller_base + n - 1`.
    controller_base: u16,
}

/// What one node says about the quorum.
#[derive(Debug)]
struct View {
    leader: i32,
    epoch: i32,
    error_code: i16,
    high_watermark: i64,
    voters: Vec<(i32, i64)>,
}

impl Cluster {
    /// Nodes 1..=count, each with one shard and a controller port.
    fn start(count: usize) -> Cluster {
        let controller_base = free_port_range(count);
        let voters = (0..count)
            .map(|index| format!("{}@127.0.0.1:{}", index + 1, controller_base + index as u16))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..count)
            .map(|index| {
                let node_id = (index + 1).to_string();
                Broker::start_with_args(
                    1,
                    &[
                        "--node-id",
                        &node_id,
                        "--controller-quorum-voters",
                        &voters,
                        "--controller-quorum-election-timeout-ms",
                        ELECTION_TIMEOUT_MS,
                    ],
                )
            })
            .collect();
        Cluster {
            nodes,
            controller_base,
        }
    }

    fn node(&mut self, node_id: i32) -> &mut Broker {
        &mut self.nodes[node_id as usize - 1]
    }

    /// DescribeQuorum on `node_id`'s Kafka port; `None` if the node does not answer.
    fn view(&self, node_id: i32) -> Option<View> {
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
    fn wait_for_leader(&self, alive: &[i32], caught_up: &[i32], above_epoch: i32) -> (i32, i32) {
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

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(index, node)| format!("--- node {} ---\n{}", index + 1, node.log()))
            .collect()
    }
}

/// The leader and epoch every view agrees on, if the leader's own view says it leads and
/// shows each of `caught_up` at its high watermark.
fn agreed_leader(
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
fn spate(cluster: &Cluster, node: i32, args: &[&str]) -> String {
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

#[test]
fn any_node_describes_the_whole_cluster_and_serves_its_partitions() {
    let cluster = Cluster::start(3);
    cluster.wait_for_leader(&[1, 2, 3], &[1, 2, 3], 0);
    // Every node registers its broker through the controller (forwarded to the leader's
    // node by the two others); wait until every node's image lists all three.
    for node in [1, 2, 3] {
        wait_for_brokers(&cluster, node, &[1024, 2048, 3072]);
        let info: serde_json::Value =
            serde_json::from_str(&spate(&cluster, node, &["cluster", "info", "--json"]))
                .expect("json");
        let racks: Vec<&str> = info["brokers"]
            .as_array()
            .expect("brokers")
            .iter()
            .map(|broker| broker["rack"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(racks, ["node-1", "node-2", "node-3"], "{info}");
    }
    // A topic created through a node that does not lead the quorum is placed over all
    // three nodes, and records produced through one node are read back through another.
    spate(
        &cluster,
        1,
        &["topic", "create", "spread", "--partitions", "6"],
    );
    let described = spate(&cluster, 2, &["topic", "describe", "spread"]);
    for broker in ["1024", "2048", "3072"] {
        assert!(described.contains(broker), "{described}");
    }
    let mut producer = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["produce", "spread", "--brokers"])
        .arg(cluster.nodes[0].address(0).to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spate produce");
    {
        use std::io::Write;
        let mut input = producer.stdin.take().expect("stdin");
        for value in 0..60 {
            writeln!(input, "value-{value}").expect("writes");
        }
    }
    assert!(producer.wait().expect("waits").success());
    let consumed = spate(
        &cluster,
        3,
        &[
            "consume",
            "spread",
            "--from-beginning",
            "--count",
            "60",
            "--timeout-ms",
            "20000",
        ],
    );
    let mut values: Vec<&str> = consumed.lines().collect();
    values.sort_by_key(|value| {
        value
            .trim_start_matches("value-")
            .parse::<u32>()
            .unwrap_or(0)
    });
    let expected: Vec<String> = (0..60).map(|value| format!("value-{value}")).collect();
    assert_eq!(values, expected);
}

/// Sends `bytes` to `node`'s controller port and checks that the node closes the connection
/// (rather than leaving it hanging) within the wait.
fn controller_port_closes_after(cluster: &Cluster, node: i32, bytes: &[u8], half_close: bool) {
    use std::io::{Read, Write};
    let port = cluster.controller_base + node as u16 - 1;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    stream.write_all(bytes).expect("writes");
    if half_close {
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-closes");
    }
    let mut answer = Vec::new();
    // The node answers nothing a hostile peer could use and closes: read sees the end.
    // A reset is a close too (the node closed with our bytes unread); a timeout is a hang.
    let read = stream.read_to_end(&mut answer);
    let closed = match &read {
        Ok(_) => true,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "node {node} did not close the connection: {read:?}");
}

#[test]
fn hostile_bytes_on_the_controller_port_close_the_connection_and_harm_nothing() {
    let cluster = Cluster::start(3);
    let (leader, epoch) = cluster.wait_for_leader(&[1, 2, 3], &[1, 2, 3], 0);
    let mut oversized_hello = u32::MAX.to_be_bytes().to_vec();
    oversized_hello.push(0);
    let garbage = {
        let mut frame = 9u32.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0, b'{', b'n', b'o', b'p', b'e', 0xff, 0xfe, b'}']);
        frame
    };
    let wrong_version = {
        let body = br#"{"version":99,"node_id":7}"#;
        let mut frame = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        frame.push(0);
        frame.extend_from_slice(body);
        frame
    };
    let unknown_kind_after_hello = {
        let body = br#"{"version":1,"node_id":7}"#;
        let mut frames = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        frames.push(0);
        frames.extend_from_slice(body);
        frames.extend_from_slice(&3u32.to_be_bytes());
        frames.extend_from_slice(&[42, b'{', b'}']);
        frames
    };
    for node in [1, 2, 3] {
        controller_port_closes_after(&cluster, node, &oversized_hello, false);
        controller_port_closes_after(&cluster, node, &garbage, false);
        controller_port_closes_after(&cluster, node, &wrong_version, false);
        controller_port_closes_after(&cluster, node, &unknown_kind_after_hello, false);
        // Half a frame, then the peer goes away.
        controller_port_closes_after(&cluster, node, &[0, 0, 1, 0, 2, b'{'], true);
    }
    // Nobody crashed, the same leader still leads, and the quorum still commits.
    for node in &cluster.nodes {
        assert!(!node.log().contains("panicked"), "{}", cluster.logs());
    }
    let (still, same_epoch) = cluster.wait_for_leader(&[1, 2, 3], &[1, 2, 3], 0);
    assert_eq!((still, same_epoch), (leader, epoch));
    spate(
        &cluster,
        2,
        &["topic", "create", "still-works", "--partitions", "1"],
    );
    let warned = cluster.nodes.iter().any(|node| {
        node.log()
            .contains("closing a controller quorum connection")
    });
    assert!(warned, "each refusal is logged: {}", cluster.logs());
}

#[test]
fn three_nodes_elect_a_controller_and_survive_the_leaders_kill_9() {
    let mut cluster = Cluster::start(3);
    let (leader, epoch) = cluster.wait_for_leader(&[1, 2, 3], &[1, 2, 3], 0);
    // An acknowledged metadata change, made through the leader's own node just before the
    // kill, must survive it.
    spate(
        &cluster,
        leader,
        &["topic", "create", "before-kill", "--partitions", "2"],
    );

    cluster.node(leader).kill9();
    let alive: Vec<i32> = [1, 2, 3].into_iter().filter(|&n| n != leader).collect();
    let (new_leader, new_epoch) = cluster.wait_for_leader(&alive, &alive, epoch);
    assert_ne!(new_leader, leader);
    // The new leader's node answers as controller in Metadata on every live node, so admin
    // requests of clients go to it.
    for node in alive.iter().copied() {
        let deadline = Instant::now() + WAIT;
        loop {
            let info: serde_json::Value =
                serde_json::from_str(&spate(&cluster, node, &["cluster", "info", "--json"]))
                    .expect("json");
            if info["controller_id"] == i64::from(new_leader * 1024) {
                break;
            }
            assert!(Instant::now() < deadline, "node {node}: {info}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    spate(
        &cluster,
        alive[0],
        &["topic", "create", "after-failover", "--partitions", "3"],
    );

    // The killed node comes back from its files, follows, catches up, and registers again.
    cluster.node(leader).restart();
    cluster.wait_for_leader(&[1, 2, 3], &[1, 2, 3], new_epoch - 1);
    for node in [1, 2, 3] {
        wait_for_brokers(&cluster, node, &[1024, 2048, 3072]);
    }
}

/// Waits until `node`'s Metadata lists exactly `expected` brokers.
fn wait_for_brokers(cluster: &Cluster, node: i32, expected: &[i64]) {
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

#[test]
fn with_two_of_three_down_no_one_leads_and_the_quorum_returns() {
    let mut cluster = Cluster::start(3);
    let (leader, epoch) = cluster.wait_for_leader(&[1, 2, 3], &[1, 2, 3], 0);
    let survivor = if leader == 1 { 2 } else { 1 };
    let down: Vec<i32> = [1, 2, 3].into_iter().filter(|&n| n != survivor).collect();
    for &node in &down {
        cluster.node(node).kill9();
    }
    // Alone, the survivor may stand for election but can never win one.
    let deadline = Instant::now() + WAIT;
    loop {
        let view = cluster.view(survivor).expect("the survivor answers");
        assert!(
            view.error_code != 0 || view.leader != survivor || view.epoch <= epoch,
            "a lone node must not lead a new epoch: {view:?}"
        );
        if view.leader != leader || view.epoch > epoch {
            break; // it noticed the leader is gone
        }
        assert!(
            Instant::now() < deadline,
            "the survivor never noticed: {view:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ne!(cluster.view(survivor).expect("answers").error_code, 0);
    for &node in &down {
        cluster.node(node).restart();
    }
    cluster.wait_for_leader(&[1, 2, 3], &[1, 2, 3], epoch);
}
