//! DescribeGroups (key 15): state, protocol and members with their assignments. An unknown
//! group is "Dead"; from v6 it also carries GROUP_ID_NOT_FOUND and a message (KIP-1043), as
//! Kafka 4 answers. So is a KIP-848 consumer group ("not a classic group"): clients describe
//! those with ConsumerGroupDescribe. Each group needs DESCRIBE, else it answers
//! GROUP_AUTHORIZATION_FAILED and nothing more.

use std::rc::Rc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::group_common::check_coordinator;
use super::{ApiSpec, RequestContext};
use crate::security::acl::{self, AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DescribeGroups, 0, 6);

/// DescribeGroups v6 is the first to report an unknown group as an error.
const NOT_FOUND_VERSION: i16 = 6;

/// Describes each group; an unknown group is reported as "Dead", as Kafka does.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let access = Access::new(shard, context);
    let groups = request
        .groups
        .into_iter()
        .map(|group_id| {
            // Asked for, the bitfield is filled in for every group, refused or failed ones
            // too: Kafka sends its "omitted" value with an error, which kafka-python cannot
            // decode (it raises ValueError instead of the group's error).
            let operations = acl::if_requested(request.include_authorized_operations, || {
                access.operations(ResourceType::Group, &group_id)
            });
            let described = if access.group(&group_id, AclOperation::Describe) {
                describe(shard, context.version, group_id)
            } else {
                DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code())
            };
            described.with_authorized_operations(operations)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// One group, without its authorized operations.
fn describe(shard: &Shard, version: i16, group_id: GroupId) -> DescribedGroup {
    let described = DescribedGroup::default().with_group_id(group_id.clone());
    if let Err(error_code) = check_coordinator(shard, &group_id) {
        return described.with_error_code(error_code);
    }
    let summary = match shard.groups.describe(&group_id) {
        Some(summary) if summary.group_type == "classic" => summary,
        other => {
            let dead = described.with_group_state(StrBytes::from_static_str("Dead"));
            if version < NOT_FOUND_VERSION {
                return dead;
            }
            let message = match other {
                None => format!("Group {} not found.", group_id.0),
                Some(_) => format!("Group {} is not a classic group.", group_id.0),
            };
            return dead
                .with_error_code(ResponseError::GroupIdNotFound.code())
                .with_error_message(Some(StrBytes::from_string(message)));
        }
    };
    let protocol = summary.protocol_name.clone();
    let members = summary
        .members
        .iter()
        .map(|member| {
            DescribedGroupMember::default()
                .with_member_id(StrBytes::from_string(member.member_id.clone()))
                .with_group_instance_id(member.group_instance_id.clone().map(StrBytes::from_string))
                .with_client_id(StrBytes::from_string(member.client_id.clone()))
                .with_client_host(StrBytes::from_string(member.client_host.clone()))
                .with_member_metadata(member.metadata_for(&protocol))
                .with_member_assignment(member.assignment.clone())
        })
        .collect();
    described
        .with_group_state(StrBytes::from_static_str(summary.state))
        .with_protocol_type(StrBytes::from_string(summary.protocol_type))
        .with_protocol_data(StrBytes::from_string(summary.protocol_name))
        .with_members(members)
}
