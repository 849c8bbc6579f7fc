//! ListGroups (key 16): the groups this shard coordinates. Admin clients ask every broker
//! and merge the answers.

use std::rc::Rc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{ApiSpec, RequestContext};
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::ListGroups, 0, 5);

/// Lists groups, filtered by state (v4+) and type (v5: "classic" or "consumer").
pub fn handle(
    shard: &Rc<Shard>,
    _context: &RequestContext,
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
    let groups = shard
        .groups
        .list()
        .into_iter()
        .filter(|group| wants_state(group.state) && wants_type(group.group_type))
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
