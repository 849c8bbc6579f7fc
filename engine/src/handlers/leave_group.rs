//! LeaveGroup (key 13): members leave (v3+ in batches, by member or instance id). The request
//! needs READ on the group; a refusal is the top-level error, for every version.

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::group_common::check_group;
use super::{ApiSpec, RequestContext};
use crate::security::acl::AclOperation;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::LeaveGroup, 0, 5);

/// Removes the members; the rest of the group rebalances.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    if let Err(error_code) = check_group(shard, context, &request.group_id, AclOperation::Read) {
        return LeaveGroupResponse::default().with_error_code(error_code);
    }
    let members: Vec<(String, Option<String>)> = if context.version >= 3 {
        request
            .members
            .iter()
            .map(|member| {
                (
                    member.member_id.to_string(),
                    member.group_instance_id.as_ref().map(|id| id.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let codes = shard.groups.leave(shard, &request.group_id, &members);
    if context.version < 3 {
        return LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0));
    }
    let responses = members
        .into_iter()
        .zip(codes)
        .map(|((member_id, instance), error_code)| {
            MemberResponse::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_group_instance_id(instance.map(StrBytes::from_string))
                .with_error_code(error_code)
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}
