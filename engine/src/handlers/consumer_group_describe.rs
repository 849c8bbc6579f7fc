//! ConsumerGroupDescribe (key 69, KIP-848): a consumer group's state, epochs, assignor and
//! members with their current and target assignments, as `kafka-consumer-groups.sh
//! --describe` and the admin clients ask for KIP-848 groups. v1 adds each member's type (1:
//! a consumer-protocol member; classic members inside consumer groups do not exist here).
//!
//! Each group needs DESCRIBE, else it answers GROUP_AUTHORIZATION_FAILED. As in Kafka 4, a
//! group whose members' assignments name a topic the request may not DESCRIBE answers
//! TOPIC_AUTHORIZATION_FAILED instead of its members, rather than disclose the topic.

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::GroupId;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::group_common::check_coordinator;
use super::{ApiSpec, RequestContext};
use crate::groups::assignor;
use crate::metadata::image::MetadataImage;
use crate::security::acl::{self, AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::ConsumerGroupDescribe, 0, 1);

/// Describes each group asked for.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let image = shard.image();
    let access = Access::new(shard, context);
    let groups = request
        .group_ids
        .into_iter()
        .map(|group_id| {
            // Filled in for every group, refused ones too, as DescribeGroups does.
            let operations = acl::if_requested(request.include_authorized_operations, || {
                access.operations(ResourceType::Group, &group_id)
            });
            let refused = DescribedGroup::default().with_group_id(group_id.clone());
            let described = if !access.group(&group_id, AclOperation::Describe) {
                refused.with_error_code(ResponseError::GroupAuthorizationFailed.code())
            } else {
                let described = describe(shard, &image, group_id);
                let may_describe = |topic: &str| access.topic(topic, AclOperation::Describe);
                if access.enabled() && names_hidden_topic(&described, may_describe) {
                    refused
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        .with_error_message(Some(StrBytes::from_static_str(HIDDEN_TOPIC)))
                } else {
                    described
                }
            };
            described.with_authorized_operations(operations)
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

/// Kafka's message for a group refused for its topics.
const HIDDEN_TOPIC: &str =
    "The group has described topic(s) that the client is not authorized to describe.";

/// One group, without its authorized operations.
fn describe(shard: &Shard, image: &MetadataImage, group_id: GroupId) -> DescribedGroup {
    let described = DescribedGroup::default().with_group_id(group_id.clone());
    if let Err(code) = check_coordinator(shard, &group_id) {
        return described.with_error_code(code);
    }
    let group = match shard.groups.consumer_group(&group_id) {
        Ok(group) => group,
        Err((code, message)) => {
            return described
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)))
        }
    };
    let empty = assignor::Assignment::new();
    let members = group
        .members()
        .map(|member| {
            Member::default()
                .with_member_id(StrBytes::from_string(member.member_id.clone()))
                .with_instance_id(member.instance_id.clone().map(StrBytes::from_string))
                .with_rack_id(member.rack_id.clone().map(StrBytes::from_string))
                .with_member_epoch(member.member_epoch)
                .with_client_id(StrBytes::from_string(member.client_id.clone()))
                .with_client_host(StrBytes::from_string(member.client_host.clone()))
                .with_subscribed_topic_names(
                    member
                        .subscribed_topic_names
                        .iter()
                        .map(|name| TopicName(StrBytes::from_string(name.clone())))
                        .collect(),
                )
                .with_subscribed_topic_regex(
                    member
                        .subscribed_topic_regex
                        .clone()
                        .map(StrBytes::from_string),
                )
                .with_assignment(described_assignment(image, &member.assigned))
                .with_target_assignment(described_assignment(
                    image,
                    group.target_of(&member.member_id).unwrap_or(&empty),
                ))
                .with_member_type(1)
        })
        .collect();
    described
        .with_group_state(StrBytes::from_static_str(group.state()))
        .with_group_epoch(group.group_epoch())
        .with_assignment_epoch(group.assignment_epoch())
        .with_assignor_name(StrBytes::from_static_str(group.assignor_name()))
        .with_members(members)
}

/// Whether a member's assignment or target assignment names a topic that `may_describe`
/// refuses.
fn names_hidden_topic(group: &DescribedGroup, may_describe: impl Fn(&str) -> bool) -> bool {
    group
        .members
        .iter()
        .flat_map(|member| [&member.assignment, &member.target_assignment])
        .flat_map(|assignment| &assignment.topic_partitions)
        .any(|topic| !may_describe(&topic.topic_name.0))
}

/// An assignment with topic names; topics gone from the image are left out, as in Kafka.
fn described_assignment(image: &MetadataImage, assignment: &assignor::Assignment) -> Assignment {
    Assignment::default().with_topic_partitions(
        assignment
            .iter()
            .filter_map(|(topic_id, partitions)| {
                let topic = image.topic_by_id(*topic_id)?;
                Some(
                    TopicPartitions::default()
                        .with_topic_id(*topic_id)
                        .with_topic_name(TopicName(StrBytes::from_string(topic.name.clone())))
                        .with_partitions(partitions.iter().copied().collect()),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigned(topic: &'static str) -> Assignment {
        Assignment::default().with_topic_partitions(vec![TopicPartitions::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partitions(vec![0])])
    }

    #[test]
    fn a_member_assigned_or_targeted_a_hidden_topic_hides_the_group() {
        let member = Member::default()
            .with_assignment(assigned("public"))
            .with_target_assignment(assigned("secret"));
        let group = DescribedGroup::default().with_members(vec![member]);
        assert!(names_hidden_topic(&group, |topic| topic != "secret"));
        assert!(!names_hidden_topic(&group, |_| true));
        assert!(!names_hidden_topic(&DescribedGroup::default(), |_| false));
    }
}
