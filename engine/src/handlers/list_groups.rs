//! ListGroups (key 16): the groups this shard coordinates. Admin clients ask every broker
//! and merge the answers. With DESCRIBE on the cluster a request sees every group, else
//! only those it may DESCRIBE (the others are left out, without an error), as in Kafka.

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{ApiSpec, RequestContext};
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::ListGroups, 0, 5);

/// Lists groups, filtered by state (v4+) and type (v5: "classic" or "consumer").
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let wants_state = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|wanted| wanted.eq_ignore_ascii_case(state))
    };
    let wants_type = |group_type: &str| {
        request.types_filter.is_empty()
            || request
                .types_filter
                .iter()
                .any(|wanted| wanted.eq_ignore_ascii_case(group_type))
    };
    let access = Access::new(shard, context);
    let sees_all = access.cluster(AclOperation::Describe);
    let may_describe = |group_id: &str| sees_all || access.group(group_id, AclOperation::Describe);
    let groups = shard
        .groups
        .list()
        .into_iter()
        .filter(|group| {
            wants_state(group.state)
                && wants_type(group.group_type)
                && may_describe(&group.group_id)
        })
        .map(|group| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(group.group_id)))
                .with_protocol_type(StrBytes::from_string(group.protocol_type))
                .with_group_state(StrBytes::from_static_str(group.state))
                .with_group_type(StrBytes::from_static_str(group.group_type))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
