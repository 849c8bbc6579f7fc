//! Consumers read from the closest replica (KIP-392): a leader sends a consumer of another
//! rack to the in-sync follower there, which serves every acknowledged record.

use super::*;

/// A consumer's Fetch of partition 0 of `TOPIC` from offset 0 at `version`, naming `rack`.
fn consumer_fetch(
    address: SocketAddr,
    version: i16,
    rack: &str,
) -> kafka_protocol::messages::fetch_response::PartitionData {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let request = kafka_protocol::messages::FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_rack_id(kafka_protocol::protocol::StrBytes::from_string(
            rack.to_string(),
        ))
        .with_topics(vec![FetchTopic::default()
            .with_topic(harness::topic_name(TOPIC))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let mut client = Client::connect(address, Duration::from_secs(5)).expect("connects");
    let response = client.send(version, &request).expect("fetch");
    response.responses[0].partitions[0].clone()
}

#[test]
fn a_consumer_in_a_followers_rack_is_sent_to_that_follower_and_reads_there() {
    let cluster = start_cluster();
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "racked", 30);
    let acked: Vec<String> = producer.acked[&0]
        .iter()
        .map(|record| record.value.clone())
        .collect();
    let (_, leader, isr) = partition_state(&cluster, 0).expect("metadata");
    let follower = *isr
        .iter()
        .find(|broker| **broker != leader)
        .expect("a follower");
    let address = |broker: i32| cluster.nodes[broker as usize / 1024 - 1].address(0);
    // Each node is its own rack by default: `node-<id>`.
    let follower_rack = format!("node-{}", follower / 1024);
    let leader_rack = format!("node-{}", leader / 1024);
    // The leader sends a consumer of the follower's rack there, with no records.
    let sent = consumer_fetch(address(leader), 12, &follower_rack);
    assert_eq!(sent.error_code, 0);
    assert_eq!(sent.preferred_read_replica.0, follower);
    assert!(sent
        .records
        .as_ref()
        .is_none_or(|records| records.is_empty()));
    // A consumer of the leader's rack, or of none, reads from the leader.
    for rack in [leader_rack.as_str(), ""] {
        let read = consumer_fetch(address(leader), 12, rack);
        assert_eq!(read.preferred_read_replica.0, -1);
        assert!(!decode_values(&read.records.unwrap_or_default()).is_empty());
    }
    // The follower serves every acknowledged record (once its high watermark, which
    // follows the leader's a fetch behind, has caught up).
    let deadline = Instant::now() + WAIT;
    loop {
        let read = consumer_fetch(address(follower), 12, &follower_rack);
        assert_eq!(read.error_code, 0, "{read:?}");
        let values: Vec<String> = decode_values(&read.records.unwrap_or_default())
            .into_iter()
            .map(|(_, value)| value)
            .collect();
        if values == acked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower serves {values:?}, not {acked:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A client older than Fetch v11 knows nothing of follower reads: the follower refuses.
    let old = consumer_fetch(address(follower), 10, "");
    assert_eq!(old.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
}
