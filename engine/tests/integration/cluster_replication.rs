//! Replication across real processes: three `spate serve` nodes, a topic with replication
//! factor 3 and min.insync.replicas=2, an idempotent acks=all producer that retries every
//! unanswered batch as a Kafka client does, and faults. One verifier checks each scenario:
//! every acknowledged record is read back exactly once, in the order it was produced, at the
//! offset its acknowledgement gave, and every replica holds the same batches.

use crate::cluster_harness;
use crate::harness;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cluster_harness::{health, spate, wait_for_brokers, Cluster, WAIT};
use harness::{batch, decode_values, fetch};
use spate_net::client::Client;

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
/// Fencing soon after a kill keeps the tests short; still six heartbeats long.
const NODE_ARGS: [&str; 4] = [
    "--broker-session-timeout-ms",
    "1800",
    "--broker-heartbeat-interval-ms",
    "300",
];
/// Errors a Kafka producer retries.
const RETRIABLE: [i16; 8] = [
    3,  // UNKNOWN_TOPIC_OR_PARTITION
    5,  // LEADER_NOT_AVAILABLE
    6,  // NOT_LEADER_OR_FOLLOWER
    7,  // REQUEST_TIMED_OUT
    19, // NOT_ENOUGH_REPLICAS
    20, // NOT_ENOUGH_REPLICAS_AFTER_APPEND
    74, // FENCED_LEADER_EPOCH
    75, // UNKNOWN_LEADER_EPOCH
];

/// An acknowledged record.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Acked {
    offset: i64,
    value: String,
}

/// An idempotent producer with one batch in flight, which sends each batch to the
/// partition's current leader and retries it, unchanged, until it is acknowledged.
struct Producer {
    producer_id: i64,
    sequences: HashMap<i32, i32>,
    clients: HashMap<SocketAddr, Client>,
    acked: HashMap<i32, Vec<Acked>>,
    /// Answers other than success, by error code (-1: no answer).
    refusals: HashMap<i16, usize>,
}

impl Producer {
    fn new(cluster: &Cluster) -> Producer {
        Producer {
            producer_id: harness::init_producer_id(&mut cluster.nodes[0].client(0)),
            sequences: HashMap::new(),
            clients: HashMap::new(),
            acked: HashMap::new(),
            refusals: HashMap::new(),
        }
    }

    /// Produces `value` to `partition` until it is acknowledged (or the test's patience
    /// runs out).
    fn send(&mut self, cluster: &Cluster, partition: i32, value: String) {
        let sequence = *self.sequences.entry(partition).or_insert(0);
        let records = batch(&[&value], Some((self.producer_id, 0, sequence)));
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(
                Instant::now() < deadline,
                "{value} never acknowledged ({:?})\n{}",
                self.refusals,
                cluster.logs()
            );
            let Some(leader) = leader_address(cluster, partition) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let client = match self.clients.entry(leader) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    match Client::connect(leader, Duration::from_secs(5)) {
                        Ok(client) => entry.insert(client),
                        Err(_) => {
                            *self.refusals.entry(-1).or_default() += 1;
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    }
                }
            };
            let request = acks_all(partition, records.clone(), 5_000);
            let answer = match client.send(9, &request) {
                Ok(response) => response.responses[0].partition_responses[0].clone(),
                Err(_) => {
                    self.clients.remove(&leader);
                    *self.refusals.entry(-1).or_default() += 1;
                    continue;
                }
            };
            match answer.error_code {
                0 => {
                    self.sequences.insert(partition, sequence + 1);
                    self.acked.entry(partition).or_default().push(Acked {
                        offset: answer.base_offset,
                        value,
                    });
                    return;
                }
                code if RETRIABLE.contains(&code) => {
                    *self.refusals.entry(code).or_default() += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                code => panic!("{value}: error {code} is not retriable\n{}", cluster.logs()),
            }
        }
    }

    /// `count` records, round-robin over the partitions.
    fn send_many(&mut self, cluster: &Cluster, label: &str, count: usize) {
        for index in 0..count {
            let partition = (index as i32) % PARTITIONS;
            self.send(cluster, partition, format!("{label}-{index}"));
        }
    }
}

/// An acks=all Produce of `records` to `partition` of `TOPIC`.
fn acks_all(
    partition: i32,
    records: bytes::Bytes,
    timeout_ms: i32,
) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    kafka_protocol::messages::ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(harness::topic_name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// The Kafka address of `partition`'s leader, as the first live node that answers says.
fn leader_address(cluster: &Cluster, partition: i32) -> Option<SocketAddr> {
    let (_, leader, _) = partition_state(cluster, partition)?;
    let node = leader / 1024;
    (leader >= 0).then(|| cluster.nodes[node as usize - 1].address(0))
}

/// (node answering, leader, ISR) of `partition` from the first node that answers.
fn partition_state(cluster: &Cluster, partition: i32) -> Option<(usize, i32, Vec<i32>)> {
    cluster
        .nodes
        .iter()
        .enumerate()
        .find_map(|(index, node)| Some((index, partition_metadata(node.address(0), partition)?)))
        .map(|(index, found)| {
            (
                index,
                found.leader_id.0,
                found.isr_nodes.iter().map(|id| id.0).collect(),
            )
        })
}

/// `partition` of `TOPIC` as the node at `address` answers Metadata; `None` if it does not
/// answer within two seconds (or does not know the partition).
fn partition_metadata(
    address: SocketAddr,
    partition: i32,
) -> Option<kafka_protocol::messages::metadata_response::MetadataResponsePartition> {
    let mut client = Client::connect(address, Duration::from_secs(2)).ok()?;
    let request = kafka_protocol::messages::MetadataRequest::default()
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(harness::topic_name(TOPIC))),
        ]))
        .with_allow_auto_topic_creation(false);
    let response = client.send(12, &request).ok()?;
    response
        .topics
        .first()?
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
        .cloned()
}

/// Waits until every partition has a leader and all three replicas in its ISR.
fn wait_for_full_isr(cluster: &Cluster) {
    let deadline = Instant::now() + WAIT;
    for partition in 0..PARTITIONS {
        loop {
            if let Some((_, leader, isr)) = partition_state(cluster, partition) {
                if leader >= 0 && isr.len() == 3 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "partition {partition} never got its full ISR back: {:?}\n{}",
                partition_state(cluster, partition),
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The verifier: each partition read from its leader holds every acknowledged record exactly
/// once, in order, at its acknowledged offset (records whose produce was never acknowledged
/// may be there too, as in Kafka); and every replica's log holds the same batches (`spate log
/// dump` of each node's segment), once the followers caught up.
fn verify(cluster: &Cluster, producer: &Producer) {
    for partition in 0..PARTITIONS {
        let acked = producer.acked.get(&partition).cloned().unwrap_or_default();
        let leader = leader_address(cluster, partition).expect("a leader");
        let mut client = Client::connect(leader, Duration::from_secs(5)).expect("connects");
        let ours: std::collections::HashSet<&str> =
            acked.iter().map(|record| record.value.as_str()).collect();
        let mut read: Vec<Acked> = Vec::new();
        let mut next = 0;
        let deadline = Instant::now() + WAIT;
        loop {
            let response = fetch(&mut client, TOPIC, partition, next, 100);
            let data = &response.responses[0].partitions[0];
            assert_eq!(data.error_code, 0, "partition {partition}");
            let records = decode_values(&data.records.clone().unwrap_or_default());
            if records.is_empty() && next >= data.high_watermark {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partition {partition}: reading never ends"
            );
            for (offset, value) in records {
                next = offset + 1;
                if ours.contains(value.as_str()) {
                    read.push(Acked { offset, value });
                }
            }
        }
        assert_eq!(
            read, acked,
            "partition {partition}: the acknowledged records are not each read once, in order, at their offsets"
        );
        // Every replica ends up with the same batches at the same offsets.
        let deadline = Instant::now() + WAIT;
        loop {
            let dumps: Vec<String> = cluster
                .nodes
                .iter()
                .map(|node| dump(node, partition))
                .collect();
            if dumps.iter().all(|other| *other == dumps[0]) && !dumps[0].is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partition {partition}: the replicas differ:\n{}",
                dumps.join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The batch lines of `spate log dump` of `partition`'s first segment on `node`.
fn dump(node: &harness::Broker, partition: i32) -> String {
    let path = node
        .data_dir()
        .join("data")
        .join(format!("{TOPIC}-{partition}"))
        .join("00000000000000000000.log");
    harness::dumped_batches(&path)
}

#[test]
fn a_followers_kill_9_keeps_every_acknowledged_record_on_its_disk() {
    // A follower reports only what it fdatasync'ed, and its leader acknowledges on that:
    // every acknowledged record must be in the killed follower's files.
    let mut cluster = start_cluster();
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "before", 300);
    wait_for_full_isr(&cluster);
    let (_, leader, _) = partition_state(&cluster, 0).expect("metadata");
    let follower = [1, 2, 3]
        .into_iter()
        .find(|&node| node != leader / 1024)
        .unwrap();
    let acknowledged = producer.acked[&0].last().expect("acknowledged").offset;
    cluster.node(follower).kill9();
    let on_disk = dump(&cluster.nodes[follower as usize - 1], 0);
    assert!(
        on_disk.contains(&format!("lastOffset: {acknowledged} ")),
        "the killed follower's file lacks offset {acknowledged}:\n{on_disk}"
    );
    // It recovers, catches up and rejoins; nothing acknowledged is missing anywhere.
    cluster.node(follower).start_again();
    producer.send_many(&cluster, "after", 30);
    wait_for_full_isr(&cluster);
    verify(&cluster, &producer);
}

fn start_cluster() -> Cluster {
    start_cluster_with(&NODE_ARGS)
}

fn start_cluster_with(node_args: &[&str]) -> Cluster {
    started(Cluster::start_with(3, node_args))
}

/// A started three-node cluster once it serves `TOPIC` with every ISR full.
fn started(cluster: Cluster) -> Cluster {
    cluster.wait_for_leader(&[1, 2, 3], &[1, 2, 3], 0);
    for node in [1, 2, 3] {
        wait_for_brokers(&cluster, node, &[1024, 2048, 3072]);
    }
    create_topic(&cluster, 1, 3, &["--config", "min.insync.replicas=2"]);
    wait_for_full_isr(&cluster);
    cluster
}

/// `spate cluster reassign --wait` through `node`: `partition` of `topic` onto `replicas`.
fn reassign_and_wait(cluster: &Cluster, node: i32, topic: &str, partition: i32, replicas: &[i32]) {
    let partition = partition.to_string();
    let replicas: Vec<String> = replicas.iter().map(ToString::to_string).collect();
    let args = [
        "cluster",
        "reassign",
        "--topic",
        topic,
        "--partition",
        &partition,
        "--replicas",
        &replicas.join(","),
        "--wait",
    ];
    spate(cluster, node, &args);
}

/// `spate topic create` of `TOPIC` through `node`, `PARTITIONS` partitions of `factor`
/// replicas, with `more` arguments.
fn create_topic(cluster: &Cluster, node: i32, factor: i16, more: &[&str]) {
    let (partitions, factor) = (PARTITIONS.to_string(), factor.to_string());
    let mut args = vec![
        "topic",
        "create",
        TOPIC,
        "--partitions",
        &partitions,
        "--replication-factor",
        &factor,
    ];
    args.extend_from_slice(more);
    spate(cluster, node, &args);
}

#[test]
fn a_leaders_kill_9_under_idempotent_acks_all_load_loses_and_duplicates_nothing() {
    let mut cluster = start_cluster();
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "before", 30);

    let (_, leader, _) = partition_state(&cluster, 0).expect("metadata");
    let victim = leader / 1024;
    cluster.node(victim).kill9();
    // The producer keeps going through the failover: its batches are retried, unchanged,
    // until a new leader from the ISR acknowledges them.
    producer.send_many(&cluster, "during", 60);
    let (_, new_leader, isr) = partition_state(&cluster, 0).expect("metadata");
    assert_ne!(new_leader / 1024, victim, "the leadership moved");
    assert!(
        !isr.contains(&leader),
        "the dead node left the ISR: {isr:?}"
    );
    // `spate cluster health` says what an operator must know, in its exit code too (from
    // another node, once its image has the fencing).
    let witness = if victim == 1 { 2 } else { 1 };
    let ours: Vec<String> = (0..PARTITIONS).map(|p| format!("{TOPIC}-{p}")).collect();
    let report = wait_for_health(&cluster, witness, |code, report| {
        let under: Vec<&str> = report["under_replicated_partitions"]
            .as_array()
            .map(|names| names.iter().filter_map(|name| name.as_str()).collect())
            .unwrap_or_default();
        code == 2
            && report["brokers_down"] == serde_json::json!([leader])
            && ours.iter().all(|name| under.contains(&name.as_str()))
    });
    assert_eq!(report["healthy"], false, "{report}");
    assert_eq!(
        report["offline_partitions"],
        serde_json::json!([]),
        "{report}"
    );

    // The killed node returns, catches up and rejoins every ISR.
    cluster.node(victim).start_again();
    producer.send_many(&cluster, "after", 30);
    wait_for_full_isr(&cluster);
    verify(&cluster, &producer);
    let report = wait_for_health(&cluster, witness, |code, _| code == 0);
    assert_eq!(
        report["unhealthy_reasons"],
        serde_json::json!([]),
        "{report}"
    );
    // The victim's partition stays led elsewhere until a preferred election moves it back
    // (`spate cluster elect-leaders`, Kafka's ElectLeaders).
    let (_, now_leading, _) = partition_state(&cluster, 0).expect("metadata");
    assert_ne!(now_leading, leader);
    let elected: serde_json::Value = serde_json::from_str(&spate(
        &cluster,
        witness,
        &["cluster", "elect-leaders", "--topic", TOPIC, "--json"],
    ))
    .expect("json");
    assert!(
        elected["results"].as_array().is_some_and(|rows| rows
            .iter()
            .any(|row| row["partition"] == 0 && row["elected"] == true)),
        "{elected}"
    );
    wait_for_leader(&cluster, 0, leader);
}

/// Waits until `partition` is led by `broker` (in the first answering node's Metadata).
fn wait_for_leader(cluster: &Cluster, partition: i32, broker: i32) {
    let deadline = Instant::now() + WAIT;
    while partition_state(cluster, partition).map(|(_, leader, _)| leader) != Some(broker) {
        assert!(
            Instant::now() < deadline,
            "partition {partition} never led by {broker}: {:?}\n{}",
            partition_state(cluster, partition),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn leadership_returns_to_the_preferred_replicas_once_their_node_is_back() {
    // The controller checks the leader balance every second instead of Kafka's 300.
    let mut args = NODE_ARGS.to_vec();
    args.extend(["--leader-imbalance-check-interval-seconds", "1"]);
    let mut cluster = start_cluster_with(&args);
    // Just created, every partition is led by its preferred replica.
    let preferred: Vec<i32> = (0..PARTITIONS)
        .map(|partition| partition_state(&cluster, partition).expect("metadata").1)
        .collect();
    let victim = preferred[0] / 1024;
    cluster.node(victim).kill9();
    wait_until_fenced(&cluster, victim);
    cluster.node(victim).start_again();
    wait_for_full_isr(&cluster);
    for (partition, broker) in preferred.iter().enumerate() {
        wait_for_leader(&cluster, partition as i32, *broker);
    }
}

/// `spate cluster health` on `node` until `wanted` accepts its exit code and report.
fn wait_for_health(
    cluster: &Cluster,
    node: i32,
    wanted: impl Fn(i32, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, report) = health(cluster, node);
        if wanted(code, &report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "cluster health on node {node}: exit {code}, {report}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until no partition is led by `victim`'s broker or has it in its ISR; returns how
/// long that took.
fn wait_until_fenced(cluster: &Cluster, victim: i32) -> Duration {
    let started = Instant::now();
    let broker = victim * 1024;
    for partition in 0..PARTITIONS {
        loop {
            if let Some((_, leader, isr)) = partition_state(cluster, partition) {
                if leader >= 0 && leader != broker && !isr.contains(&broker) {
                    break;
                }
            }
            assert!(
                started.elapsed() < WAIT,
                "partition {partition} still names node {victim}: {:?}\n{}",
                partition_state(cluster, partition),
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    started.elapsed()
}

#[test]
fn with_two_of_three_nodes_down_nothing_is_acknowledged_and_nothing_is_lost() {
    let mut cluster = start_cluster();
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "before", 30);

    // Two nodes go: the survivor's partitions keep an ISR of one, below
    // min.insync.replicas, and the controller quorum has no majority either.
    cluster.node(2).kill9();
    cluster.node(3).kill9();
    let address = cluster.nodes[0].address(0);
    let mut client = Client::connect(address, Duration::from_secs(5)).expect("connects");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answers = HashMap::new();
    while Instant::now() < deadline {
        for partition in 0..PARTITIONS {
            let request = acks_all(partition, batch(&["never"], None), 1_000);
            let response = client.send(9, &request).expect("the survivor answers");
            let code = response.responses[0].partition_responses[0].error_code;
            assert_ne!(
                code, 0,
                "a produce was acknowledged by a lone node (partition {partition})"
            );
            *answers.entry(code).or_insert(0) += 1;
        }
    }
    assert!(
        answers.keys().all(|code| RETRIABLE.contains(code)),
        "{answers:?}"
    );

    // They return: nothing acknowledged was lost, and the cluster takes writes again.
    cluster.node(2).start_again();
    cluster.node(3).start_again();
    wait_for_full_isr(&cluster);
    producer.send_many(&cluster, "after", 30);
    verify(&cluster, &producer);
}

/// `partition`'s (leader, leader epoch) as `node` alone answers Metadata.
fn leadership_seen_by(cluster: &Cluster, node: i32, partition: i32) -> Option<(i32, i32)> {
    let found = partition_metadata(cluster.nodes[node as usize - 1].address(0), partition)?;
    Some((found.leader_id.0, found.leader_epoch))
}

#[test]
fn a_restarted_node_serves_clients_only_once_it_has_caught_up_with_the_quorum() {
    // A node killed while it led a partition replays, at its restart, an image in which it
    // still leads it; the quorum has since fenced it and moved the leadership. As a Kafka
    // broker does, it must catch up with the quorum before it answers any client: told
    // otherwise, clients would send their produce to a leader that is not one.
    let mut cluster = start_cluster();
    let (_, leader, _) = partition_state(&cluster, 0).expect("metadata");
    let victim = leader / 1024;
    let (_, epoch_led) = leadership_seen_by(&cluster, victim, 0).expect("the leader answers");
    cluster.node(victim).kill9();
    wait_until_fenced(&cluster, victim);
    // The others go too, so that the victim, restarted alone, cannot catch up.
    let others: Vec<i32> = [1, 2, 3].into_iter().filter(|&n| n != victim).collect();
    for &node in &others {
        cluster.node(node).kill9();
    }
    cluster.node(victim).start_again();
    assert_eq!(
        leadership_seen_by(&cluster, victim, 0),
        None,
        "a node that has not caught up with the quorum answered a client\n{}",
        cluster.logs()
    );
    // With the others back it catches up, then serves, and its first answer is already
    // newer than the leadership it had when it was killed.
    for &node in &others {
        cluster.node(node).start_again();
    }
    let deadline = Instant::now() + WAIT;
    let (_, epoch_seen) = loop {
        if let Some(seen) = leadership_seen_by(&cluster, victim, 0) {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node never served\n{}",
            cluster.logs()
        );
    };
    assert!(
        epoch_seen > epoch_led,
        "its first answer is its stale image: epoch {epoch_seen}, it led in {epoch_led}"
    );
    wait_for_full_isr(&cluster);
}

/// The committed offsets of `group` for `TOPIC` as `spate group describe` shows them through
/// `node`, with its coordinator's address; `None` while the group cannot be described.
fn committed_offsets(cluster: &Cluster, node: usize, group: &str) -> Option<(String, Vec<i64>)> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["group", "describe", group, "--json", "--brokers"])
        .arg(cluster.nodes[node].address(0).to_string())
        .output()
        .ok()?;
    let Ok(described) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
        eprintln!("describe: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    };
    let coordinator = described["coordinator"].as_str()?.to_string();
    let offsets = described["offsets"]
        .as_array()?
        .iter()
        .map(|row| row["committed_offset"].as_i64().unwrap_or(-1))
        .collect();
    Some((coordinator, offsets))
}

#[test]
fn committed_group_offsets_survive_the_loss_of_their_coordinators_node() {
    let mut cluster = start_cluster();
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "before", 30);
    // __consumer_offsets is replicated on the three nodes (offsets.topic.replication.factor
    // defaults to min(3, voters)).
    let described = spate(
        &cluster,
        1,
        &["topic", "describe", "__consumer_offsets", "--json"],
    );
    let described: serde_json::Value = serde_json::from_str(&described).expect("json");
    for partition in described["partitions"].as_array().expect("partitions") {
        assert_eq!(
            partition["replicas"].as_array().map(Vec::len),
            Some(3),
            "{partition}"
        );
    }
    spate(
        &cluster,
        1,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            TOPIC,
            "--to-offset",
            "7",
            "--execute",
        ],
    );
    let (coordinator, offsets) = committed_offsets(&cluster, 0, "billing").expect("described");
    assert_eq!(offsets, vec![7; PARTITIONS as usize]);
    let victim = cluster
        .nodes
        .iter()
        .position(|node| node.address(0).to_string() == coordinator)
        .expect("the coordinator is one of the nodes");
    cluster.nodes[victim].kill9();
    let survivor = (victim + 1) % 3;
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = committed_offsets(&cluster, survivor, "billing");
        match seen.clone() {
            Some((moved_to, offsets)) if moved_to != coordinator => {
                assert_eq!(
                    offsets,
                    vec![7; PARTITIONS as usize],
                    "the committed offsets moved with the coordinator"
                );
                break;
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the group never got a new coordinator (last seen {seen:?})\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_rolling_sigterm_restart_gives_producers_only_retriable_errors_and_loses_nothing() {
    let mut cluster = start_cluster();
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "before", 15);
    for node in 1..=3 {
        // SIGTERM is a controlled shutdown: the controller moves the node's leaderships to
        // other ISR members before it stops, so it leads nothing when it has exited.
        assert_eq!(
            cluster.node(node).stop(),
            Some(0),
            "clean exit of node {node}"
        );
        for partition in 0..PARTITIONS {
            let (_, leader, isr) = partition_state(&cluster, partition).expect("metadata");
            assert_ne!(
                leader / 1024,
                node,
                "node {node} still leads partition {partition}"
            );
            assert!(isr.iter().all(|broker| broker / 1024 != node), "{isr:?}");
        }
        producer.send_many(&cluster, &format!("without-{node}"), 15);
        cluster.node(node).start_again();
        wait_for_full_isr(&cluster);
        producer.send_many(&cluster, &format!("with-{node}"), 15);
    }
    verify(&cluster, &producer);
}

// Reads from the closest replica (KIP-392), in a file of its own.
#[path = "cluster_replication/follower_reads.rs"]
mod follower_reads;
// Partition reassignment (KIP-455), in a file of its own.
#[path = "cluster_replication/reassignment.rs"]
mod reassignment;
// Brokers that are not voters (learners of the quorum), in a file of their own.
#[path = "cluster_replication/brokers_only.rs"]
mod brokers_only;

#[path = "cluster_replication/fencing.rs"]
mod fencing;

#[path = "cluster_replication/metrics.rs"]
mod metrics;

#[path = "cluster_replication/consumer_groups.rs"]
mod consumer_groups;

#[path = "cluster_replication/high_watermark.rs"]
mod high_watermark;
