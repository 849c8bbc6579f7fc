//! The metadata seam against a real `spate serve`: the controller's answers are visible on
//! every shard at once, metadata survives restarts (and an old `topics.json` is migrated), a
//! changed shard count moves partitions with a new leader epoch, deleted topics leave no
//! directories even across a crash, and the node's partition limits hold.

use crate::harness;

use std::time::Duration;

use harness::{batch, create_topic, decode_values, fetch, metadata, produce, wait_for, Broker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest, FetchRequest};
use kafka_protocol::ResponseError;
use spate_engine::metadata::placement::default_shard;
use spate_net::client::Client;

/// The client of the shard that leads a partition, by the Metadata answer.
fn leader_client(
    broker: &Broker,
    client: &mut Client,
    topic: &str,
    partition: i32,
) -> (Client, i32) {
    let response = metadata(client, Some(&[topic]));
    let assignment = &response.topics[0].partitions[partition as usize];
    let shard = (assignment.leader_id.0 % 1024) as usize;
    (broker.client(shard), assignment.leader_epoch)
}

#[test]
fn a_topic_created_through_one_shard_is_served_by_every_shard_at_once() {
    let broker = Broker::start(2);
    // Shard 1 asks the controller on shard 0; the answer comes once both shards applied it.
    create_topic(&mut broker.client(1), "orders", 6);
    let mut clients = [broker.client(0), broker.client(1)];
    for partition in 0..6 {
        let owner = default_shard("orders", partition, 2).0 as usize;
        let response = produce(
            &mut clients[owner],
            "orders",
            partition,
            batch(&["a"], None),
            -1,
        );
        let answer = &response.responses[0].partition_responses[0];
        assert_eq!(
            answer.error_code, 0,
            "partition {partition} on shard {owner}"
        );
        let other = &mut clients[1 - owner];
        let refused = produce(other, "orders", partition, batch(&["b"], None), -1);
        assert_eq!(
            refused.responses[0].partition_responses[0].error_code,
            ResponseError::NotLeaderOrFollower.code()
        );
    }
    for client in &mut clients {
        let described = metadata(client, Some(&["orders"]));
        assert_eq!(described.topics[0].error_code, 0);
        assert_eq!(described.topics[0].partitions.len(), 6);
        assert_eq!(described.brokers.len(), 2);
    }
}

#[test]
fn metadata_survives_restarts_and_an_old_topics_json_is_migrated() {
    let mut broker = Broker::start(2);
    broker.stop();
    let data = broker.data_dir().join("data");
    std::fs::remove_dir_all(data.join("metadata")).expect("remove the new metadata");
    let id = "5b1c1a4e-6c39-4c35-9a2e-0a6a8f5f2b11";
    std::fs::write(
        data.join("topics.json"),
        format!(
            r#"{{"cluster_id":"legacycluster","producer_id_limit":5000,"topics":[{{"name":"legacy","id":"{id}","partitions":3,"configs":{{"retention.ms":"86400000"}}}}]}}"#
        ),
    )
    .expect("write topics.json");
    broker.start_again();
    let mut client = broker.client(0);
    let described = metadata(&mut client, Some(&["legacy"]));
    assert_eq!(described.cluster_id.as_deref(), Some("legacycluster"));
    assert_eq!(described.topics[0].topic_id.to_string(), id);
    assert_eq!(described.topics[0].partitions.len(), 3);
    assert!(data.join("topics.json.migrated").exists());
    assert!(!data.join("topics.json").exists());
    let (mut leader, _) = leader_client(&broker, &mut client, "legacy", 2);
    let response = produce(&mut leader, "legacy", 2, batch(&["kept"], None), -1);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    create_topic(&mut client, "later", 1);
    broker.restart();
    let mut client = broker.client(0);
    let described = metadata(&mut client, None);
    let mut names: Vec<String> = described
        .topics
        .iter()
        .map(|topic| topic.name.as_ref().unwrap().0.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["__consumer_offsets", "later", "legacy"]);
    assert_eq!(described.cluster_id.as_deref(), Some("legacycluster"));
    let (mut leader, _) = leader_client(&broker, &mut client, "legacy", 2);
    let fetched = fetch(&mut leader, "legacy", 2, 0, 0);
    let records = fetched.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(decode_values(&records), [(0, "kept".to_string())]);
}

#[test]
fn a_changed_shard_count_moves_partitions_with_a_new_leader_epoch() {
    let mut broker = Broker::start(2);
    create_topic(&mut broker.client(0), "moving", 4);
    let mut client = broker.client(0);
    let mut moved = Vec::new();
    for partition in 0..4 {
        let (mut leader, epoch) = leader_client(&broker, &mut client, "moving", partition);
        assert_eq!(epoch, 0);
        let value = format!("p{partition}");
        let response = produce(&mut leader, "moving", partition, batch(&[&value], None), -1);
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
        if default_shard("moving", partition, 2).0 == 1 {
            moved.push(partition);
        }
    }
    assert!(!moved.is_empty());
    broker.stop();
    broker.smp = 1;
    broker.start_again();
    let mut client = broker.client(0);
    // The broker of the shard that is gone is no longer listed: nothing serves its port.
    let brokers: Vec<i32> = metadata(&mut client, None)
        .brokers
        .iter()
        .map(|broker| broker.node_id.0)
        .collect();
    assert_eq!(brokers, [0]);
    for partition in 0..4 {
        let (mut leader, epoch) = leader_client(&broker, &mut client, "moving", partition);
        let expected_epoch = if moved.contains(&partition) { 1 } else { 0 };
        assert_eq!(epoch, expected_epoch, "partition {partition}");
        let fetched = fetch(&mut leader, "moving", partition, 0, 0);
        let records = fetched.responses[0].partitions[0].records.clone().unwrap();
        assert_eq!(decode_values(&records), [(0, format!("p{partition}"))]);
    }
    // A client that still holds the old epoch of a moved partition is fenced.
    let stale = FetchRequest::default()
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(harness::topic_name("moving"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(moved[0])
                .with_current_leader_epoch(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response = client.send(12, &stale).expect("fetch");
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::FencedLeaderEpoch.code()
    );
}

#[test]
fn a_deleted_topic_leaves_no_directory_even_when_the_broker_is_killed_at_once() {
    let mut broker = Broker::start(2);
    let mut client = broker.client(0);
    create_topic(&mut client, "doomed", 8);
    for partition in 0..8 {
        let (mut leader, _) = leader_client(&broker, &mut client, "doomed", partition);
        let response = produce(&mut leader, "doomed", partition, batch(&["x"], None), -1);
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let data = broker.data_dir().join("data");
    let directories = || {
        std::fs::read_dir(&data)
            .expect("data dir")
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("doomed"))
            .count()
    };
    assert_eq!(directories(), 8);
    let delete = DeleteTopicsRequest::default()
        .with_topics(vec![
            DeleteTopicState::default().with_name(Some(harness::topic_name("doomed")))
        ])
        .with_timeout_ms(10_000);
    let response = client.send(6, &delete).expect("delete topics");
    assert_eq!(response.responses[0].error_code, 0);
    // The deletion is durable once answered; the directories go in the background, which a
    // crash right now interrupts.
    broker.kill9();
    broker.start_again();
    wait_for(
        "the deleted topic's directories to go",
        Duration::from_secs(10),
        || directories() == 0,
    );
    let described = metadata(&mut broker.client(0), Some(&["doomed"]));
    assert_eq!(
        described.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[test]
fn partition_limits_refuse_what_would_exhaust_the_node() {
    let broker = Broker::start_with_args(1, &["--max-broker-partitions", "200"]);
    let mut client = broker.client(0);
    let create = |name: &str, partitions: i32| {
        CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(harness::topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)])
    };
    for (name, partitions) in [("huge", i32::MAX), ("large", 25_000), ("past-node", 151)] {
        let response = client
            .send(7, &create(name, partitions))
            .expect("create topics");
        let result = &response.topics[0];
        assert_eq!(
            result.error_code,
            ResponseError::PolicyViolation.code(),
            "{name}"
        );
        assert!(result.error_message.is_some());
    }
    // The node still serves, and what fits is created (50 offsets partitions + 150 = 200).
    let response = client.send(7, &create("fits", 150)).expect("create topics");
    assert_eq!(response.topics[0].error_code, 0);
    let described = metadata(&mut client, None);
    assert_eq!(described.topics.len(), 2);
}
