//! ConsumerGroupHeartbeat (key 68, KIP-848): a consumer of a `group.protocol=consumer` group
//! joins, heartbeats, reports what it owns and learns its assignment, which the coordinator
//! computes (`groups::consumer_group`). v1 (Kafka 4, and the only version librdkafka uses)
//! adds the subscription regex and makes the member id the client's. The request needs READ
//! on the group, and DESCRIBE on every topic it subscribes to by name.

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::group_common::check_coordinator;
use super::{ApiSpec, RequestContext};
use crate::groups::assignor;
use crate::groups::consumer_group::Heartbeat;
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::ConsumerGroupHeartbeat, 0, 1);

/// Hands the heartbeat to the group's coordinator.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let refused = |code: i16, message: String| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message((!message.is_empty()).then(|| StrBytes::from_string(message)))
    };
    if let Some((error, message)) = refusal(&Access::new(shard, context), &request) {
        return refused(error.code(), message.to_string());
    }
    if request.group_id.is_empty() {
        return refused(
            ResponseError::InvalidRequest.code(),
            "GroupId can't be empty.".to_string(),
        );
    }
    if let Err(code) = check_coordinator(shard, &request.group_id) {
        return refused(code, String::new());
    }
    let topics = shard.groups.topics_view(&shard.image());
    let heartbeat = Heartbeat {
        version: context.version,
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|id| id.to_string()),
        rack_id: request.rack_id.map(|id| id.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|name| name.0.to_string()).collect()),
        subscribed_topic_regex: request
            .subscribed_topic_regex
            .map(|regex| regex.to_string()),
        server_assignor: request.server_assignor.map(|name| name.to_string()),
        owned: request.topic_partitions.map(|owned| {
            let mut assignment = assignor::Assignment::new();
            for topic in owned {
                assignment
                    .entry(topic.topic_id)
                    .or_default()
                    .extend(topic.partitions);
            }
            assignment
        }),
        client_id: context.client_id.clone().unwrap_or_default(),
        client_host: context.client_host.clone(),
    };
    match shard
        .groups
        .consumer_heartbeat(shard, &request.group_id, heartbeat, &topics)
        .await
    {
        Err((code, message)) => refused(code, message),
        Ok(answer) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(answer.member_id)))
            .with_member_epoch(answer.member_epoch)
            .with_heartbeat_interval_ms(answer.heartbeat_interval_ms)
            .with_assignment(answer.assignment.map(|assignment| {
                Assignment::default().with_topic_partitions(
                    assignment
                        .into_iter()
                        .map(|(topic_id, partitions)| {
                            TopicPartitions::default()
                                .with_topic_id(topic_id)
                                .with_partitions(partitions.into_iter().collect())
                        })
                        .collect(),
                )
            })),
    }
}

/// Kafka's refusal of a heartbeat, with Kafka's message: GROUP_AUTHORIZATION_FAILED without
/// READ on the group, then TOPIC_AUTHORIZATION_FAILED if a topic subscribed to by name may not
/// be described (its assignment would tell the client that it exists).
fn refusal(
    access: &Access,
    request: &ConsumerGroupHeartbeatRequest,
) -> Option<(ResponseError, &'static str)> {
    if !access.group(&request.group_id, AclOperation::Read) {
        return Some((
            ResponseError::GroupAuthorizationFailed,
            "Group authorization failed.",
        ));
    }
    let mut names = request.subscribed_topic_names.iter().flatten();
    let hidden_topic =
        access.enabled() && names.any(|name| !access.topic(&name.0, AclOperation::Describe));
    hidden_topic.then_some((
        ResponseError::TopicAuthorizationFailed,
        "Topic authorization failed.",
    ))
}
