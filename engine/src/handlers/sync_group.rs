//! SyncGroup (key 14): the leader hands out assignments; every member receives its own. The
//! request needs READ on the group.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::group_common::check_group;
use super::{ApiSpec, RequestContext};
use crate::groups::group::SyncRequest;
use crate::security::acl::AclOperation;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::SyncGroup, 0, 5);

/// Answers with the member's assignment once the leader has sent them.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    if let Err(error_code) = check_group(shard, context, &request.group_id, AclOperation::Read) {
        return SyncGroupResponse::default().with_error_code(error_code);
    }
    let sync = SyncRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|id| id.to_string()),
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.as_ref().map(|kind| kind.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|name| name.to_string()),
        assignments: request
            .assignments
            .iter()
            .map(|assignment| {
                (
                    assignment.member_id.to_string(),
                    assignment.assignment.clone(),
                )
            })
            .collect(),
    };
    let result = shard.groups.sync(shard, &request.group_id, sync).await;
    let v5 = context.version >= 5;
    SyncGroupResponse::default()
        .with_error_code(result.error_code)
        .with_protocol_type(
            result
                .protocol_type
                .filter(|_| v5)
                .map(StrBytes::from_string),
        )
        .with_protocol_name(
            result
                .protocol_name
                .filter(|_| v5)
                .map(StrBytes::from_string),
        )
        .with_assignment(result.assignment)
}
