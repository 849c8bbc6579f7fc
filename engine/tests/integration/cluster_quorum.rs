//! The controller quorum across real processes: three `spate serve` nodes on loopback, each a
//! voter of `--controller-quorum-voters`, elect a leader over their controller ports, and
//! keep one through kill -9 of the leader, a restart from its data directory, and the loss
//! of two nodes out of three. Observed the way an operator would, with DescribeQuorum on each
//! node's Kafka port.

use crate::cluster_harness;

use std::time::{Duration, Instant};

use cluster_harness::{spate, spate_until, wait_for_brokers, Cluster, WAIT};

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
    // Node 2 learns of the topic when it applies the quorum's commit, a moment after node 1
    // answered: every broker of the cluster leads some of its six partitions.
    spate_until(&cluster, 2, &["topic", "describe", "spread"], |described| {
        ["1024", "2048", "3072"]
            .iter()
            .all(|broker| described.contains(broker))
    });
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
