//! A KIP-848 consumer group across the loss of its coordinator's node: the group epoch and
//! the offsets committed at the member epoch are in the replicated `__consumer_offsets`, so
//! the next coordinator goes on from them (its members rejoin, at a higher epoch).

use super::*;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, FindCoordinatorRequest, GroupId,
    OffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

const GROUP: &str = "kip848-failover";
const MEMBER: &str = "the-member";

/// The group's coordinator as `node` (index) sees it, once it names one that answers.
fn coordinator(cluster: &Cluster, node: usize) -> Option<SocketAddr> {
    let mut client =
        Client::connect(cluster.nodes[node].address(0), Duration::from_secs(5)).ok()?;
    let found = client
        .send(
            4,
            &FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![StrBytes::from_static_str(GROUP)]),
        )
        .ok()?;
    let entry = found.coordinators.first()?;
    (entry.error_code == 0).then(|| format!("{}:{}", entry.host, entry.port).parse().ok())?
}

fn join(address: SocketAddr, member_epoch: i32) -> Option<ConsumerGroupHeartbeatResponse> {
    let mut client = Client::connect(address, Duration::from_secs(5)).ok()?;
    let joining = member_epoch == 0;
    client
        .send(
            1,
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
                .with_member_id(StrBytes::from_static_str(MEMBER))
                .with_member_epoch(member_epoch)
                .with_rebalance_timeout_ms(if joining { 30_000 } else { -1 })
                .with_subscribed_topic_names(joining.then(|| vec![harness::topic_name(TOPIC)]))
                .with_topic_partitions(joining.then(Vec::<TopicPartitions>::new)),
        )
        .ok()
}

fn commit(address: SocketAddr, epoch: i32, offset: i64) -> i16 {
    let mut client = Client::connect(address, Duration::from_secs(5)).expect("connect");
    let response = client
        .send(
            9,
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
                .with_member_id(StrBytes::from_static_str(MEMBER))
                .with_generation_id_or_member_epoch(epoch)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(harness::topic_name(TOPIC))
                    .with_partitions(
                        (0..PARTITIONS)
                            .map(|partition| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(partition)
                                    .with_committed_offset(offset)
                            })
                            .collect(),
                    )]),
        )
        .expect("commit");
    response.topics[0].partitions[0].error_code
}

#[test]
fn a_consumer_groups_epoch_and_commits_survive_the_loss_of_its_coordinators_node() {
    let mut cluster = start_cluster();
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "kip848", 30);
    let address = coordinator(&cluster, 0).expect("a coordinator");
    let joined = join(address, 0).expect("joined");
    assert_eq!(
        (joined.error_code, joined.member_epoch),
        (0, 1),
        "{joined:?}"
    );
    assert_eq!(commit(address, 1, 7), 0);

    let victim = cluster
        .nodes
        .iter()
        .position(|node| node.address(0) == address)
        .expect("the coordinator is one of the nodes");
    cluster.nodes[victim].kill9();
    let survivor = (victim + 1) % 3;
    let deadline = Instant::now() + WAIT;
    // The new coordinator knows the group (not GROUP_ID_NOT_FOUND) but not the member, and
    // its epoch goes on from the one its predecessor wrote.
    let rejoined = loop {
        if let Some(moved) = coordinator(&cluster, survivor).filter(|moved| *moved != address) {
            if let Some(stale) = join(moved, 1) {
                if stale.error_code == ResponseError::UnknownMemberId.code() {
                    break join(moved, 0).expect("rejoined");
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the group never got a new coordinator\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        (rejoined.error_code, rejoined.member_epoch),
        (0, 2),
        "{rejoined:?}"
    );
    let (_, offsets) = committed_offsets(&cluster, survivor, GROUP).expect("described");
    assert_eq!(offsets, vec![7; PARTITIONS as usize]);
}
