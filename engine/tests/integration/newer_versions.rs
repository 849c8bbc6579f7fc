//! The newer versions of the describing APIs against a real broker: ListOffsets v8–v9
//! (earliest local and latest tiered offsets), Metadata v13, DescribeGroups v6 (an unknown
//! group is GROUP_ID_NOT_FOUND), DescribeCluster v2, FindCoordinator v6, and
//! DescribeTopicPartitions with its cursor.

use crate::harness;

use harness::{batch, create_topic, produce, topic_name, Broker};
use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeGroupsRequest, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, FindCoordinatorRequest, GroupId, ListOffsetsRequest,
    MetadataRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_engine::metadata::placement::default_shard;
use spate_net::client::Client;

/// ListOffsets of partition 0 of `topic` at `timestamp`: (error, offset, timestamp).
fn list_offset(client: &mut Client, version: i16, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    let response = client.send(version, &request).expect("list offsets");
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.offset, partition.timestamp)
}

#[test]
fn list_offsets_metadata_groups_cluster_and_coordinator_at_their_newest_versions() {
    let broker = Broker::start(1);
    let mut client = broker.client(0);
    create_topic(&mut client, "newer", 1);
    produce(&mut client, "newer", 0, batch(&["a", "b", "c"], None), -1);

    // v8: the earliest local offset is the log start; v9: nothing is tiered.
    assert_eq!(list_offset(&mut client, 8, "newer", -2), (0, 0, -1));
    assert_eq!(list_offset(&mut client, 8, "newer", -4), (0, 0, -1));
    assert_eq!(list_offset(&mut client, 9, "newer", -1), (0, 3, -1));
    assert_eq!(list_offset(&mut client, 9, "newer", -5), (0, -1, -1));

    let metadata = client
        .send(
            13,
            &MetadataRequest::default()
                .with_topics(None)
                .with_allow_auto_topic_creation(false),
        )
        .expect("metadata v13");
    assert_eq!(metadata.error_code, 0);
    let described = metadata
        .topics
        .iter()
        .find(|topic| {
            topic
                .name
                .as_ref()
                .is_some_and(|name| name.0.as_str() == "newer")
        })
        .expect("the topic");
    assert!(!described.topic_id.is_nil());

    // v10+: topics asked for by id (as a KIP-848 consumer resolves its assignment) are
    // described by name; an unknown id is UNKNOWN_TOPIC_ID, answered with that id.
    let id = described.topic_id;
    let stranger = uuid::Uuid::from_u128(7);
    let by_id = client
        .send(
            12,
            &MetadataRequest::default()
                .with_topics(Some(
                    [id, stranger]
                        .into_iter()
                        .map(|topic_id| {
                            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                                .with_topic_id(topic_id)
                                .with_name(None)
                        })
                        .collect(),
                ))
                .with_allow_auto_topic_creation(false),
        )
        .expect("metadata by topic id");
    let answered: Vec<(i16, Option<&str>, uuid::Uuid, usize)> = by_id
        .topics
        .iter()
        .map(|topic| {
            (
                topic.error_code,
                topic.name.as_ref().map(|name| name.0.as_str()),
                topic.topic_id,
                topic.partitions.len(),
            )
        })
        .collect();
    assert_eq!(
        answered,
        [
            (0, Some("newer"), id, 1),
            (ResponseError::UnknownTopicId.code(), None, stranger, 0)
        ]
    );

    let unknown = || {
        DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str("nobody"))])
    };
    let v5 = client.send(5, &unknown()).expect("describe groups v5");
    assert_eq!(
        v5.groups[0].error_code, 0,
        "before v6 an unknown group is only Dead"
    );
    assert_eq!(v5.groups[0].group_state.as_str(), "Dead");
    let v6 = client.send(6, &unknown()).expect("describe groups v6");
    assert_eq!(
        v6.groups[0].error_code,
        ResponseError::GroupIdNotFound.code()
    );
    assert_eq!(v6.groups[0].group_state.as_str(), "Dead");
    assert!(v6.groups[0].error_message.is_some());

    let cluster = client
        .send(
            2,
            &DescribeClusterRequest::default()
                .with_endpoint_type(1)
                .with_include_fenced_brokers(true),
        )
        .expect("describe cluster v2");
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.brokers.len(), 1);
    assert!(!cluster.brokers[0].is_fenced);
    assert_eq!(cluster.brokers[0].port, i32::from(broker.address(0).port()));

    let coordinator = client
        .send(
            6,
            &FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![StrBytes::from_static_str("some-group")]),
        )
        .expect("find coordinator v6");
    assert_eq!(coordinator.coordinators[0].error_code, 0);
    assert_eq!(
        coordinator.coordinators[0].port,
        i32::from(broker.address(0).port())
    );
    // The share-group key type (KIP-932): no such coordinator here.
    let share = client
        .send(
            6,
            &FindCoordinatorRequest::default()
                .with_key_type(2)
                .with_coordinator_keys(vec![StrBytes::from_static_str("shared")]),
        )
        .expect("find coordinator v6");
    assert_eq!(
        share.coordinators[0].error_code,
        ResponseError::InvalidRequest.code()
    );
}

fn describe_partitions(
    client: &mut Client,
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsResponse {
    let request = DescribeTopicPartitionsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|name| TopicRequest::default().with_name(topic_name(name)))
                .collect(),
        )
        .with_response_partition_limit(limit)
        .with_cursor(cursor.map(|(topic, partition)| {
            Cursor::default()
                .with_topic_name(topic_name(topic))
                .with_partition_index(partition)
        }));
    client.send(0, &request).expect("describe topic partitions")
}

/// (topic, partition) pairs of a response, in order.
fn described(response: &DescribeTopicPartitionsResponse) -> Vec<(String, i32)> {
    response
        .topics
        .iter()
        .flat_map(|topic| {
            let name = topic.name.as_ref().map(|name| name.0.to_string());
            topic
                .partitions
                .iter()
                .map(move |partition| (name.clone().unwrap_or_default(), partition.partition_index))
        })
        .collect()
}

#[test]
fn describe_topic_partitions_pages_through_topics_in_name_order() {
    let broker = Broker::start(2);
    let mut client = broker.client(0);
    create_topic(&mut client, "pages-b", 3);
    create_topic(&mut client, "pages-a", 2);

    // Both topics by name, three partitions per page: a, a, b | b, b.
    let first = describe_partitions(&mut client, &["pages-b", "pages-a"], 3, None);
    assert_eq!(
        described(&first),
        [
            ("pages-a".into(), 0),
            ("pages-a".into(), 1),
            ("pages-b".into(), 0)
        ]
    );
    let next = first.next_cursor.as_ref().expect("a cursor");
    assert_eq!(
        (next.topic_name.0.as_str(), next.partition_index),
        ("pages-b", 1)
    );
    let second = describe_partitions(
        &mut client,
        &["pages-a", "pages-b"],
        3,
        Some(("pages-b", 1)),
    );
    assert_eq!(
        described(&second),
        [("pages-b".into(), 1), ("pages-b".into(), 2)]
    );
    assert!(second.next_cursor.is_none());

    // What each partition says matches Metadata: its leader is its owner shard's broker.
    for topic in first.topics.iter().chain(&second.topics) {
        let name = topic.name.as_ref().expect("name").0.to_string();
        assert!(!topic.topic_id.is_nil());
        assert!(!topic.is_internal);
        for partition in &topic.partitions {
            assert_eq!(partition.error_code, 0);
            let owner = default_shard(&name, partition.partition_index, 2).0;
            assert_eq!(partition.leader_id.0 % 1024, owner as i32);
            assert_eq!(partition.isr_nodes, partition.replica_nodes);
        }
    }

    // A limit that ends exactly at a topic's end points at the next topic.
    let exact = describe_partitions(&mut client, &["pages-a", "pages-b"], 2, None);
    let next = exact.next_cursor.as_ref().expect("a cursor");
    assert_eq!(
        (next.topic_name.0.as_str(), next.partition_index),
        ("pages-b", 0)
    );

    // Every topic (the internal offsets topic among them, once a group made it).
    let all = describe_partitions(&mut client, &[], 2000, None);
    let names: Vec<String> = described(&all).into_iter().map(|(name, _)| name).collect();
    assert!(names.windows(2).all(|pair| pair[0] <= pair[1]), "{names:?}");
    assert_eq!(
        names
            .iter()
            .filter(|name| name.starts_with("pages-"))
            .count(),
        5
    );

    // An unknown topic by name; a cursor that names no requested topic.
    let unknown = describe_partitions(&mut client, &["pages-missing"], 10, None);
    assert_eq!(
        unknown.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let stray = describe_partitions(&mut client, &["pages-a"], 10, Some(("pages-b", 0)));
    assert_eq!(
        stray.topics[0].error_code,
        ResponseError::InvalidRequest.code()
    );
}
