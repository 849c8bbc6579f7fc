//! Partition reassignment (KIP-455) across real processes, with `spate cluster reassign`:
//! a partition shrinks off its leader's node (whose copy is deleted), then moves back onto
//! that node while it is down; the controller's node is killed with the reassignment under
//! way, and the new controller completes it once the new replica has copied the log. The
//! idempotent acks=all producer runs between the steps; the verifier checks the result.

use super::*;
use cluster_harness::spate_until;

/// Partition 0's replicas as `node` answers Metadata.
fn replicas_seen_by(cluster: &Cluster, node: i32) -> Option<Vec<i32>> {
    let found = partition_metadata(cluster.nodes[node as usize - 1].address(0), 0)?;
    Some(found.replica_nodes.iter().map(|id| id.0).collect())
}

/// What `spate cluster reassignments --json` printed: (topic, partition, adding) of each.
fn reassignments(printed: &str) -> Vec<(String, i64, Vec<i64>)> {
    let listed: serde_json::Value = serde_json::from_str(printed).expect("json");
    listed["reassignments"]
        .as_array()
        .expect("reassignments")
        .iter()
        .map(|row| {
            (
                row["topic"].as_str().expect("topic").to_string(),
                row["partition"].as_i64().expect("partition"),
                row["adding_replicas"]
                    .as_array()
                    .expect("adding")
                    .iter()
                    .map(|id| id.as_i64().expect("id"))
                    .collect(),
            )
        })
        .collect()
}

/// `spate cluster reassign --verify` of `plan` on `node`: its exit code.
fn verify_plan(cluster: &Cluster, node: i32, plan: &std::path::Path) -> i32 {
    let bootstrap = cluster.nodes[node as usize - 1].address(0).to_string();
    std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
        .args([
            "cluster",
            "reassign",
            "--verify",
            "--reassignment-json-file",
        ])
        .arg(plan)
        .args(["--brokers", &bootstrap])
        .output()
        .expect("spate runs")
        .status
        .code()
        .unwrap_or(-1)
}

#[test]
fn a_partition_moves_off_a_node_and_back_through_a_kill_of_the_controllers_node() {
    let mut cluster = start_cluster();
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "before", 60);
    let (_, leader, _) = partition_state(&cluster, 0).expect("metadata");
    let moved = leader / 1024;
    let [b, c] = <[i32; 2]>::try_from(
        [1, 2, 3]
            .into_iter()
            .filter(|node| *node != moved)
            .collect::<Vec<_>>(),
    )
    .unwrap();

    // 1. Off the leader's node: b and c are in sync, so it completes at once; b, the first
    //    in sync, leads in a new epoch, and the old leader deletes its copy.
    reassign_and_wait(&cluster, c, TOPIC, 0, &[b * 1024, c * 1024]);
    wait_for_leader(&cluster, 0, b * 1024);
    let old_copy = cluster.nodes[moved as usize - 1]
        .data_dir()
        .join("data")
        .join(format!("{TOPIC}-0"));
    let deadline = Instant::now() + WAIT;
    while old_copy.exists() {
        assert!(
            Instant::now() < deadline,
            "{} is still there\n{}",
            old_copy.display(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        replicas_seen_by(&cluster, moved),
        Some(vec![b * 1024, c * 1024])
    );
    producer.send_many(&cluster, "shrunk", 30);
    // A topic created on the brokers named (kafka-topics.sh's --replica-assignment) lives
    // there, each partition led by its first replica.
    let pinned = format!("{}:{},{}:{}", c * 1024, b * 1024, b * 1024, moved * 1024);
    spate(
        &cluster,
        b,
        &["topic", "create", "pinned", "--replica-assignment", &pinned],
    );
    let described = spate_until(
        &cluster,
        c,
        &["topic", "describe", "pinned", "--json"],
        |printed| printed.contains("\"leader\""),
    );
    let described: serde_json::Value = serde_json::from_str(&described).expect("json");
    let layout: Vec<(i64, Vec<i64>)> = described["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|partition| {
            let replicas = partition["replicas"].as_array().expect("replicas");
            (
                partition["leader"].as_i64().expect("leader"),
                replicas.iter().map(|id| id.as_i64().expect("id")).collect(),
            )
        })
        .collect();
    let [on_b, on_c, on_moved] = [b, c, moved].map(|node| i64::from(node * 1024));
    assert_eq!(
        layout,
        [(on_c, vec![on_c, on_b]), (on_b, vec![on_b, on_moved])],
        "{described}"
    );

    // 2. Back onto that node while it is down, from a plan in Kafka's format: under way
    //    (listed, and --verify says so) until the node returns and catches up.
    cluster.node(moved).kill9();
    wait_until_fenced(&cluster, moved);
    let target = [moved * 1024, b * 1024, c * 1024];
    let plan_dir = tempfile::tempdir().unwrap();
    let plan = plan_dir.path().join("plan.json");
    std::fs::write(
        &plan,
        serde_json::json!({
            "version": 1,
            "partitions": [{"topic": TOPIC, "partition": 0, "replicas": target, "log_dirs": ["any", "any", "any"]}],
        })
        .to_string(),
    )
    .unwrap();
    spate(
        &cluster,
        b,
        &[
            "cluster",
            "reassign",
            "--execute",
            "--reassignment-json-file",
            plan.to_str().unwrap(),
        ],
    );
    spate_until(
        &cluster,
        c,
        &["cluster", "reassignments", "--json"],
        |printed| reassignments(printed) == [(TOPIC.to_string(), 0, vec![i64::from(moved * 1024)])],
    );
    assert_eq!(verify_plan(&cluster, b, &plan), 2, "still under way");
    producer.send_many(&cluster, "reassigning", 30);

    // 3. The controller's node dies with the reassignment under way; the moved node comes
    //    back, and with the last node forms a quorum whose new controller completes it.
    let controller = cluster.view(b).expect("quorum view").leader;
    assert!([b, c].contains(&controller), "{controller}");
    let survivor = if controller == b { c } else { b };
    cluster.node(controller).kill9();
    cluster.node(moved).start_again();
    producer.send_many(&cluster, "after", 30);
    spate_until(
        &cluster,
        survivor,
        &["cluster", "reassignments", "--json"],
        |printed| reassignments(printed).is_empty(),
    );
    assert_eq!(replicas_seen_by(&cluster, survivor), Some(target.to_vec()));
    assert_eq!(verify_plan(&cluster, survivor, &plan), 0, "complete");

    // 4. Everyone back: every replica holds the same batches, and every acknowledged
    //    record is read once, in order, at its offset.
    cluster.node(controller).start_again();
    producer.send_many(&cluster, "last", 30);
    wait_for_full_isr(&cluster);
    verify(&cluster, &producer);
}

/// Every record of partition 0 of `topic` as the leader serves it (values in offset order).
fn read_all(cluster: &Cluster, node: i32, topic: &str) -> Vec<String> {
    let mut client = Client::connect(
        cluster.nodes[node as usize - 1].address(0),
        Duration::from_secs(5),
    )
    .expect("connects");
    let mut values = Vec::new();
    let mut next = 0;
    loop {
        let response = fetch(&mut client, topic, 0, next, 1000);
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, 0, "{}", cluster.logs());
        let records = decode_values(&data.records.clone().unwrap_or_default());
        if records.is_empty() {
            return values;
        }
        for (offset, value) in records {
            next = offset + 1;
            values.push(value);
        }
    }
}

/// A node replays its metadata log at start, and the shards follow each image: an old
/// record that took a partition off the node used to delete the node's copy then, although
/// a later record had given the partition back to it, with its data. A partition with one
/// replica lost everything that way.
#[test]
fn a_node_that_restarts_keeps_a_partition_moved_off_it_and_back() {
    let mut cluster = start_cluster();
    spate(
        &cluster,
        1,
        &["topic", "create", "solo", "--replica-assignment", "1024"],
    );
    let produce = |cluster: &Cluster, values: &[&str]| {
        let request = {
            use kafka_protocol::messages::produce_request::{
                PartitionProduceData, TopicProduceData,
            };
            kafka_protocol::messages::ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(harness::topic_name("solo"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(values, None)))])])
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = partition_metadata_of(cluster, "solo").map(|(leader, _)| leader);
            if let Some(leader) = leader.filter(|leader| *leader >= 0) {
                let address = cluster.nodes[leader as usize / 1024 - 1].address(0);
                if let Ok(mut client) = Client::connect(address, Duration::from_secs(5)) {
                    if let Ok(response) = client.send(9, &request) {
                        if response.responses[0].partition_responses[0].error_code == 0 {
                            return;
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "never acknowledged\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    produce(&cluster, &["a", "b"]);
    for replicas in [2048, 1024] {
        reassign_and_wait(&cluster, 1, "solo", 0, &[replicas]);
    }
    produce(&cluster, &["c"]);
    cluster.node(1).kill9();
    cluster.node(1).start_again();
    let deadline = Instant::now() + WAIT;
    while partition_metadata_of(&cluster, "solo").map(|(leader, _)| leader) != Some(1024) {
        assert!(Instant::now() < deadline, "{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        read_all(&cluster, 1, "solo"),
        ["a", "b", "c"],
        "{}",
        cluster.logs()
    );
}

/// (leader, replicas) of partition 0 of `topic` from the first node that answers.
fn partition_metadata_of(cluster: &Cluster, topic: &str) -> Option<(i32, Vec<i32>)> {
    cluster.nodes.iter().find_map(|node| {
        let mut client = Client::connect(node.address(0), Duration::from_secs(2)).ok()?;
        let request = kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(harness::topic_name(topic))),
        ]));
        let response = client.send(12, &request).ok()?;
        let partition = response.topics.first()?.partitions.first()?.clone();
        Some((
            partition.leader_id.0,
            partition.replica_nodes.iter().map(|id| id.0).collect(),
        ))
    })
}
