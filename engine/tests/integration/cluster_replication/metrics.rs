//! `/metrics` across the cluster: consumer lag measured by a group's coordinator from the
//! high watermarks of leaders on other nodes, and under-replicated partitions while a node
//! is down, as the survivors count them and `spate cluster health` reports them.

use super::*;

/// `GET /metrics` of a node's stats port; `None` while it does not answer (a node down).
fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_string())
}

/// The sum, over the nodes that answer, of the series of `family` whose labels contain
/// `labels` (e.g. `group="g"`; empty: every series).
fn cluster_sum(stats_ports: &[u16], family: &str, labels: &str) -> f64 {
    stats_ports
        .iter()
        .filter_map(|&port| scrape(port))
        .map(|metrics| {
            metrics
                .lines()
                .filter(|line| line.starts_with(&format!("{family}{{")) && line.contains(labels))
                .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum::<f64>()
        })
        .sum()
}

#[test]
fn consumer_lag_and_under_replicated_partitions_are_measured_across_nodes() {
    let stats_base = harness::free_port_range(3);
    let stats_ports: Vec<u16> = (0..3).map(|node| stats_base + node).collect();
    let mut cluster = started(Cluster::start_each(3, |index| {
        let mut args: Vec<String> = NODE_ARGS.iter().map(ToString::to_string).collect();
        args.extend([
            "--stats-listen".to_string(),
            format!("127.0.0.1:{}", stats_ports[index]),
            "--metrics-consumer-lag-interval-ms".to_string(),
            "200".to_string(),
        ]);
        args
    }));
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "lag", 30);
    // The group's coordinator is on one node and the partitions' leaders on all three: its
    // lag is read from two other nodes' leaders and maybe its own.
    spate(
        &cluster,
        1,
        &[
            "group",
            "reset-offsets",
            "lagging",
            "--topic",
            TOPIC,
            "--to-offset",
            "4",
            "--execute",
        ],
    );
    let wanted = (30 - 4 * PARTITIONS) as f64;
    let deadline = Instant::now() + WAIT;
    loop {
        let lag = cluster_sum(
            &stats_ports,
            "spate_consumer_group_lag",
            "group=\"lagging\"",
        );
        if lag == wanted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag {lag}, not {wanted}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        cluster_sum(&stats_ports, "spate_under_replicated_partitions", ""),
        0.0
    );

    // A node down: every partition of factor 3 is under-replicated, counted once, by its
    // leader's shard, as `spate cluster health` lists them; none is offline.
    let victim = 3;
    cluster.node(victim).kill9();
    wait_until_fenced(&cluster, victim);
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, report) = health(&cluster, 1);
        let listed = report["under_replicated_partitions"]
            .as_array()
            .map_or(0, Vec::len) as f64;
        let counted = cluster_sum(&stats_ports, "spate_under_replicated_partitions", "");
        if counted == listed && counted >= PARTITIONS as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics count {counted} under-replicated partitions, health lists {listed}: {report}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        cluster_sum(&stats_ports, "spate_offline_partitions", ""),
        0.0
    );
    cluster.node(victim).start_again();
    wait_for_full_isr(&cluster);
    let deadline = Instant::now() + WAIT;
    while cluster_sum(&stats_ports, "spate_under_replicated_partitions", "") != 0.0 {
        assert!(Instant::now() < deadline, "still under-replicated");
        std::thread::sleep(Duration::from_millis(100));
    }
}
