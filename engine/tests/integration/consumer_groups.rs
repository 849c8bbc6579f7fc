//! KIP-848 consumer groups on the wire against a real broker: joins (a client's member id at
//! v1, the broker's at v0), Kafka's refusals, ConsumerGroupDescribe, how the classic APIs see a
//! consumer group, commits at the member epoch, and a group epoch that survives a restart.
//! The assignment rules themselves are the state machine's unit tests
//! (`groups::consumer_group`); a real client's run is `ci/compat/test_groups_kip848.py`.

use crate::harness;

use harness::{create_topic, Broker};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    DescribeGroupsRequest, GroupId, JoinGroupRequest, ListGroupsRequest, OffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_net::client::Client;

const GROUP: &str = "kip848";

fn heartbeat(
    client: &mut Client,
    version: i16,
    member_id: &str,
    member_epoch: i32,
    owned: Option<Vec<TopicPartitions>>,
) -> ConsumerGroupHeartbeatResponse {
    let joining = member_epoch == 0;
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_member_epoch(member_epoch)
        .with_rebalance_timeout_ms(if joining { 30_000 } else { -1 })
        .with_subscribed_topic_names(joining.then(|| vec![harness::topic_name("orders")]))
        .with_topic_partitions(owned.or_else(|| joining.then(Vec::new)));
    client.send(version, &request).expect("heartbeat")
}

fn commit(client: &mut Client, version: i16, member_id: &str, epoch: i32) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(harness::topic_name("orders"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(0)])]);
    let response = client.send(version, &request).expect("commit");
    response.topics[0].partitions[0].error_code
}

fn assigned(response: &ConsumerGroupHeartbeatResponse) -> usize {
    response.assignment.as_ref().map_or(0, |a| {
        a.topic_partitions.iter().map(|t| t.partitions.len()).sum()
    })
}

#[test]
fn consumer_groups_join_refuse_describe_commit_and_keep_their_epoch_over_a_restart() {
    let mut broker = Broker::start(1);
    let mut client = broker.client(0);
    create_topic(&mut client, "orders", 4);

    // v1: the member id is the client's; the first member gets everything.
    let first = heartbeat(&mut client, 1, "member-one", 0, None);
    assert_eq!((first.error_code, first.member_epoch), (0, 1), "{first:?}");
    assert_eq!(
        first.member_id.as_ref().map(|id| id.to_string()),
        Some("member-one".to_string())
    );
    assert_eq!(assigned(&first), 4);
    assert!(first.heartbeat_interval_ms > 0);
    // v0: an empty id is the broker's to choose; v1 refuses it.
    let second = heartbeat(&mut client, 0, "", 0, None);
    assert_eq!(
        (second.error_code, second.member_epoch),
        (0, 2),
        "{second:?}"
    );
    let second_id = second.member_id.clone().expect("a member id").to_string();
    assert!(!second_id.is_empty());
    let refused = heartbeat(&mut client, 1, "", 0, None);
    assert_eq!(refused.error_code, ResponseError::InvalidRequest.code());
    // Epochs from the future, and members never seen.
    let ahead = heartbeat(&mut client, 1, "member-one", 9, None);
    assert_eq!(ahead.error_code, ResponseError::FencedMemberEpoch.code());
    let stranger = heartbeat(&mut client, 1, "nobody", 1, None);
    assert_eq!(stranger.error_code, ResponseError::UnknownMemberId.code());
    // A group this coordinator does not know: the member rejoins (not GROUP_ID_NOT_FOUND,
    // which Java clients take as fatal).
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("never-seen")))
        .with_member_id(StrBytes::from_static_str("m"))
        .with_member_epoch(3);
    let missing = client.send(1, &request).expect("heartbeat");
    assert_eq!(missing.error_code, ResponseError::UnknownMemberId.code());

    // The classic APIs: JoinGroup is refused, DescribeGroups calls it Dead, ListGroups v5
    // names its type.
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range"))
        ]);
    let joined = client.send(5, &join).expect("join");
    assert_eq!(
        joined.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let described = client
        .send(
            6,
            &DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_static_str(GROUP))]),
        )
        .expect("describe groups");
    assert_eq!(
        (
            described.groups[0].error_code,
            described.groups[0].group_state.as_str()
        ),
        (ResponseError::GroupIdNotFound.code(), "Dead")
    );
    let listed = client
        .send(5, &ListGroupsRequest::default())
        .expect("list groups");
    let ours = listed
        .groups
        .iter()
        .find(|group| group.group_id.0.as_str() == GROUP)
        .expect("listed");
    assert_eq!(
        (ours.protocol_type.as_str(), ours.group_type.as_str()),
        ("consumer", "consumer")
    );

    // ConsumerGroupDescribe: both members, the assignment epoch, targets covering the topic.
    let described = client
        .send(
            1,
            &ConsumerGroupDescribeRequest::default().with_group_ids(vec![
                GroupId(StrBytes::from_static_str(GROUP)),
                GroupId(StrBytes::from_static_str("no-such-group")),
            ]),
        )
        .expect("consumer group describe");
    let group = &described.groups[0];
    assert_eq!(
        (
            group.error_code,
            group.group_epoch,
            group.assignment_epoch,
            group.assignor_name.as_str(),
            group.members.len()
        ),
        (0, 2, 2, "uniform", 2),
        "{group:?}"
    );
    let targets: usize = group
        .members
        .iter()
        .flat_map(|member| &member.target_assignment.topic_partitions)
        .map(|topic| {
            assert_eq!(topic.topic_name.0.as_str(), "orders");
            topic.partitions.len()
        })
        .sum();
    assert_eq!(targets, 4);
    assert_eq!(
        described.groups[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );

    // Commits: at the member's epoch from v9 on; stale epochs and old versions refused.
    assert_eq!(commit(&mut client, 9, &second_id, 2), 0);
    assert_eq!(
        commit(&mut client, 9, "member-one", 2),
        ResponseError::StaleMemberEpoch.code()
    );
    assert_eq!(
        commit(&mut client, 8, &second_id, 2),
        ResponseError::UnsupportedVersion.code()
    );

    // A restart forgets the members (they rejoin, as classic members do) but not the epoch.
    drop(client);
    broker.restart();
    let mut client = broker.client(0);
    let gone = heartbeat(&mut client, 1, "member-one", 1, None);
    assert_eq!(gone.error_code, ResponseError::UnknownMemberId.code());
    let back = heartbeat(&mut client, 1, "member-one", 0, None);
    assert_eq!((back.error_code, back.member_epoch), (0, 3), "{back:?}");
    assert_eq!(assigned(&back), 4);
    // Leaving: epoch -1 comes back, and the member is gone; the empty group stays, at the
    // epoch its departure raised, across another restart.
    let left = heartbeat(&mut client, 1, "member-one", -1, Some(Vec::new()));
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    let after = heartbeat(&mut client, 1, "member-one", 3, Some(Vec::new()));
    assert_eq!(after.error_code, ResponseError::UnknownMemberId.code());
    drop(client);
    broker.restart();
    let mut client = broker.client(0);
    let described = client
        .send(
            1,
            &ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(StrBytes::from_static_str(GROUP))]),
        )
        .expect("consumer group describe");
    let group = &described.groups[0];
    assert_eq!(
        (
            group.error_code,
            group.group_state.as_str(),
            group.group_epoch
        ),
        (0, "Empty", 4),
        "{group:?}"
    );
}
