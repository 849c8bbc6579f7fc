//! Fetch v13–v17 against a real two-shard broker: topics by id (KIP-516), an unknown id,
//! the leader hints of v16 (KIP-951), and a follower naming itself in v15's
//! `replica_state`. Produce v10's leader hints too.

use crate::harness;

use harness::{batch, create_topic, decode_values, metadata, produce, topic_name, Broker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProduceRequest};
use kafka_protocol::ResponseError;
use spate_engine::metadata::placement::default_shard;
use spate_net::client::Client;

const TOPIC: &str = "by-id";

/// A Fetch of partition 0 of `topic_id` from offset 0, at `version`.
fn fetch_by_id(
    client: &mut Client,
    version: i16,
    topic_id: uuid::Uuid,
    replica: Option<ReplicaState>,
) -> FetchResponse {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_replica_state(replica.unwrap_or_default())
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    client.send(version, &request).expect("fetch")
}

#[test]
fn fetch_by_topic_id_with_leader_hints_and_a_follower_in_replica_state() {
    let broker = Broker::start(2);
    create_topic(&mut broker.client(0), TOPIC, 1);
    let owner = default_shard(TOPIC, 0, 2).0 as usize;
    let other = 1 - owner;
    produce(
        &mut broker.client(owner),
        TOPIC,
        0,
        batch(&["one", "two"], None),
        -1,
    );
    let described = metadata(&mut broker.client(0), Some(&[TOPIC]));
    let topic_id = described.topics[0].topic_id;
    assert!(!topic_id.is_nil(), "Metadata v12 gives the topic's id");
    let leader = described.topics[0].partitions[0].leader_id;

    // Every version from 13 reads by id and answers with the id.
    for version in 13..=17 {
        let response = fetch_by_id(&mut broker.client(owner), version, topic_id, None);
        let topic = &response.responses[0];
        assert_eq!(topic.topic_id, topic_id, "v{version}");
        let partition = &topic.partitions[0];
        assert_eq!(partition.error_code, 0, "v{version}");
        assert_eq!(partition.high_watermark, 2);
        let records = partition.records.clone().expect("records");
        let values: Vec<String> = decode_values(&records)
            .into_iter()
            .map(|(_, value)| value)
            .collect();
        assert_eq!(values, ["one", "two"], "v{version}");
    }

    // An id this broker does not know.
    let response = fetch_by_id(&mut broker.client(owner), 13, uuid::Uuid::new_v4(), None);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::UnknownTopicId.code()
    );

    // The other shard does not lead it: from v16 it says who does and where.
    let response = fetch_by_id(&mut broker.client(other), 16, topic_id, None);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(
        partition.error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
    assert_eq!(partition.current_leader.leader_id, leader);
    assert_eq!(
        partition.current_leader.leader_epoch,
        described.topics[0].partitions[0].leader_epoch
    );
    assert_eq!(response.node_endpoints.len(), 1, "{response:?}");
    assert_eq!(response.node_endpoints[0].node_id, leader);
    assert_eq!(
        response.node_endpoints[0].port,
        i32::from(broker.address(owner).port())
    );
    // v15 has no hints.
    let response = fetch_by_id(&mut broker.client(other), 15, topic_id, None);
    assert_eq!(
        response.responses[0].partitions[0].current_leader.leader_id,
        BrokerId(-1)
    );
    assert!(response.node_endpoints.is_empty());

    // A follower names itself in v15's replica_state: a broker that is no replica of the
    // partition is refused as Kafka refuses it, which a consumer's fetch would not be.
    let stranger = ReplicaState::default()
        .with_replica_id(BrokerId(other as i32))
        .with_replica_epoch(1);
    let response = fetch_by_id(&mut broker.client(owner), 15, topic_id, Some(stranger));
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::NotLeaderOrFollower.code()
    );

    // Produce v10: the same hint.
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(&["three"], None)))])]);
    let response = broker.client(other).send(10, &request).expect("produce");
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(
        partition.error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
    assert_eq!(partition.current_leader.leader_id, leader);
    assert_eq!(response.node_endpoints.len(), 1);
    assert_eq!(response.node_endpoints[0].node_id, leader);
}
