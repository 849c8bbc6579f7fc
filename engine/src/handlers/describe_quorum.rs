//! DescribeQuorum (key 55): the controller quorum's state, as `kafka-metadata-quorum describe
//! --status` and `spate cluster info` show it.
//!
//! Kafka's metadata log is the partition `__cluster_metadata`-0, and so is ours: the request
//! names it, and any other partition is UNKNOWN_TOPIC_OR_PARTITION. Only the quorum's leader
//! knows every member's log end, so, as in Kafka's Raft client, a member that does not lead
//! answers NOT_LEADER_OR_FOLLOWER; ours also fills in the leader and epoch it knows of, so a
//! tool can go to the leader. (Kafka brokers forward the request to the active controller;
//! Spate will once nodes forward controller calls.)
//!
//! A one-node cluster has no quorum: its controller is shard 0 with a local journal. It is
//! described as what it is, a quorum of one that this node leads in epoch 0, whose log is the
//! journal (its end is the metadata image's version).

use std::rc::Rc;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{ApiSpec, RequestContext};
use crate::cluster::status::{MemberStatus, QuorumRole, QuorumStatus};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Access, AUTHORIZATION_FAILED};
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DescribeQuorum, 0, 2);

/// Kafka's name of the metadata log.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// Describes the quorum this node belongs to.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    if !Access::new(shard, context).cluster(AclOperation::Describe) {
        return DescribeQuorumResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(
                (context.version >= 2).then(|| StrBytes::from_static_str(AUTHORIZATION_FAILED)),
            );
    }
    let status = shard
        .node
        .quorum_status
        .get()
        .unwrap_or_else(|| single_node_status(shard));
    let now_ms = spate_net::records::now_ms();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let known = topic.topic_name.as_str() == METADATA_TOPIC;
            let partitions = topic
                .partitions
                .into_iter()
                .map(|partition| {
                    if known && partition.partition_index == 0 {
                        describe(&status, now_ms)
                    } else {
                        PartitionData::default()
                            .with_partition_index(partition.partition_index)
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    }
                })
                .collect();
            TopicData::default()
                .with_topic_name(topic.topic_name)
                .with_partitions(partitions)
        })
        .collect();
    let response = DescribeQuorumResponse::default().with_topics(topics);
    if context.version >= 2 {
        response.with_nodes(nodes(shard, &status))
    } else {
        response
    }
}

fn describe(status: &QuorumStatus, now_ms: i64) -> PartitionData {
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(status.leader.unwrap_or(-1)))
        .with_leader_epoch(i32::try_from(status.term).unwrap_or(i32::MAX));
    if status.role != QuorumRole::Leader {
        return partition
            .with_error_code(ResponseError::NotLeaderOrFollower.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "node {} does not lead the controller quorum; node {} does",
                status.node_id,
                status
                    .leader
                    .map_or_else(|| "none".to_string(), |leader| leader.to_string())
            ))));
    }
    let replica = |member: &MemberStatus| {
        let heard_ms = member.last_heard_ms_ago.map_or(-1, |ago| {
            now_ms - i64::try_from(ago).unwrap_or(i64::MAX / 2)
        });
        let log_end = member
            .log_end
            .map_or(-1, |end| i64::try_from(end).unwrap_or(i64::MAX));
        ReplicaState::default()
            .with_replica_id(BrokerId(member.node_id))
            .with_log_end_offset(log_end)
            .with_last_fetch_timestamp(heard_ms)
            .with_last_caught_up_timestamp(if member.log_end >= Some(status.committed_end) {
                heard_ms
            } else {
                -1
            })
    };
    partition
        .with_high_watermark(i64::try_from(status.committed_end).unwrap_or(i64::MAX))
        .with_current_voters(
            status
                .members
                .iter()
                .filter(|member| member.voter)
                .map(replica)
                .collect(),
        )
        .with_observers(
            status
                .members
                .iter()
                .filter(|member| !member.voter)
                .map(replica)
                .collect(),
        )
}

/// v2's `nodes`: each voter's controller listener. The quorum voters list is all a node
/// knows of other controllers' addresses.
fn nodes(shard: &Rc<Shard>, status: &QuorumStatus) -> Vec<Node> {
    let Some(cluster) = &shard.node.config.cluster else {
        return vec![Node::default()
            .with_node_id(BrokerId(status.node_id))
            .with_listeners(vec![listener(
                &shard.node.config.advertised_host,
                shard.node.config.listen.port(),
            )])];
    };
    cluster
        .voters
        .iter()
        .filter_map(|voter| {
            let (host, port) = voter.address.rsplit_once(':')?;
            let port = port.parse().ok()?;
            Some(
                Node::default()
                    .with_node_id(BrokerId(voter.node_id))
                    .with_listeners(vec![listener(host, port)]),
            )
        })
        .collect()
}

fn listener(host: &str, port: u16) -> Listener {
    Listener::default()
        .with_name(StrBytes::from_static_str("CONTROLLER"))
        .with_host(StrBytes::from_string(host.to_string()))
        .with_port(port)
}

/// A one-node cluster as a quorum of one (see the module docs).
fn single_node_status(shard: &Rc<Shard>) -> QuorumStatus {
    let node_id = shard.node.config.node_id;
    let end = shard.image().version;
    QuorumStatus {
        node_id,
        role: QuorumRole::Leader,
        leader: Some(node_id),
        term: 0,
        committed_end: end,
        log_end: end,
        members: vec![MemberStatus {
            node_id,
            voter: true,
            log_end: Some(end),
            last_heard_ms_ago: Some(0),
        }],
    }
}
