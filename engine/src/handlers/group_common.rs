//! What the group handlers share: the authorizer's and the coordinator's checks.

use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// The checks a request about one group starts with, in Kafka's order:
/// GROUP_AUTHORIZATION_FAILED unless the request may do `operation` on the group (so that a
/// refused client learns nothing about the group, not even whether it is loading), then
/// [`check_coordinator`].
pub fn check_group(
    shard: &Shard,
    context: &RequestContext,
    group_id: &str,
    operation: AclOperation,
) -> Result<(), i16> {
    if !Access::new(shard, context).group(group_id, operation) {
        return Err(ResponseError::GroupAuthorizationFailed.code());
    }
    check_coordinator(shard, group_id)
}

/// NOT_COORDINATOR unless this shard leads the group's `__consumer_offsets` partition.
pub fn check_coordinator(shard: &Shard, group_id: &str) -> Result<(), i16> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId.code());
    }
    let (leader, partition) = shard.group_coordinator(group_id);
    match leader {
        Some(leader) if leader == shard.broker_id() && shard.groups.is_loading(partition) => {
            Err(ResponseError::CoordinatorLoadInProgress.code())
        }
        Some(leader) if leader == shard.broker_id() => Ok(()),
        Some(_) => Err(ResponseError::NotCoordinator.code()),
        None => Err(ResponseError::CoordinatorNotAvailable.code()),
    }
}

/// Per topic of a request, in its order, whether the request may not do `operation` on it;
/// empty, with nothing allocated, without an authorizer (read a missing flag as allowed).
pub fn refused_topics<'a>(
    access: &Access,
    names: impl Iterator<Item = &'a str>,
    operation: AclOperation,
) -> Vec<bool> {
    if !access.enabled() {
        return Vec::new();
    }
    names.map(|name| !access.topic(name, operation)).collect()
}

/// Whether the flags of [`refused_topics`] refuse the topic at `index`.
pub fn is_refused(refused: &[bool], index: usize) -> bool {
    refused.get(index) == Some(&true)
}

/// Per partition of a request, in its order: the partition's refusal (a non-zero code) where
/// it was kept from the coordinator, else the coordinator's next answer; `answered` holds one
/// answer per partition not refused.
pub fn merge_codes(
    refusals: impl IntoIterator<Item = i16>,
    answered: Vec<i16>,
) -> impl Iterator<Item = i16> {
    let mut answered = answered.into_iter();
    refusals.into_iter().map(move |refusal| match refusal {
        0 => answered.next().unwrap_or(0),
        refused => refused,
    })
}

/// An optional protocol string as the codec needs it: nullable from `nullable_since`,
/// an empty string before.
pub fn version_string(
    value: Option<String>,
    version: i16,
    nullable_since: i16,
) -> Option<kafka_protocol::protocol::StrBytes> {
    match value {
        Some(text) => Some(kafka_protocol::protocol::StrBytes::from_string(text)),
        None if version >= nullable_since => None,
        None => Some(kafka_protocol::protocol::StrBytes::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_codes_keep_request_order() {
        let topic_refused = ResponseError::TopicAuthorizationFailed.code();
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let refusals = [0, topic_refused, unknown, 0, topic_refused];
        let answered = vec![0, ResponseError::OffsetMetadataTooLarge.code()];
        let merged: Vec<i16> = merge_codes(refusals, answered).collect();
        assert_eq!(
            merged,
            [
                0,
                topic_refused,
                unknown,
                ResponseError::OffsetMetadataTooLarge.code(),
                topic_refused
            ]
        );
    }

    #[test]
    fn missing_flags_allow() {
        assert!(!is_refused(&[], 3));
        assert!(is_refused(&[false, true], 1));
        assert!(!is_refused(&[false, true], 0));
    }
}
