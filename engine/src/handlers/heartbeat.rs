//! Heartbeat (key 12): keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to
//! rejoin. The request needs READ on the group.

use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse};

use super::group_common::check_group;
use super::{ApiSpec, RequestContext};
use crate::security::acl::AclOperation;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::Heartbeat, 0, 4);

/// Records the heartbeat.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let error_code = match check_group(shard, context, &request.group_id, AclOperation::Read) {
        Err(error_code) => error_code,
        Ok(()) => shard.groups.heartbeat(
            &request.group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
        ),
    };
    HeartbeatResponse::default().with_error_code(error_code)
}
