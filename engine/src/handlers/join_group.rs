//! JoinGroup (key 11): join or rejoin a consumer group; held until the rebalance completes.
//! The request needs READ on the group.

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::group_common::{check_group, version_string};
use super::{ApiSpec, RequestContext};
use crate::groups::group::JoinRequest;
use crate::security::acl::AclOperation;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::JoinGroup, 0, 9);

/// Joins the member; answers when the group's join phase completes.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    let version = context.version;
    if let Err(error_code) = check_group(shard, context, &request.group_id, AclOperation::Read) {
        return JoinGroupResponse::default()
            .with_error_code(error_code)
            .with_generation_id(-1)
            .with_member_id(request.member_id)
            .with_protocol_name(version_string(None, version, 7));
    }
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        client_id: context.client_id.clone().unwrap_or_default(),
        client_host: context.client_host.clone(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|protocol| (protocol.name.to_string(), protocol.metadata.clone()))
            .collect(),
        requires_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let result = shard.groups.join(shard, &request.group_id, join).await;
    let members = result
        .members
        .into_iter()
        .map(|(member_id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_group_instance_id(
                    instance.filter(|_| version >= 5).map(StrBytes::from_string),
                )
                .with_metadata(metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(result.error_code)
        .with_generation_id(result.generation_id)
        .with_protocol_type(
            result
                .protocol_type
                .filter(|_| version >= 7)
                .map(StrBytes::from_string),
        )
        .with_protocol_name(version_string(result.protocol_name, version, 7))
        .with_leader(StrBytes::from_string(result.leader))
        .with_skip_assignment(result.skip_assignment && version >= 9)
        .with_member_id(StrBytes::from_string(result.member_id))
        .with_members(members)
}
