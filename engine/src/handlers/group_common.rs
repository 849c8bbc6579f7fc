//! What the group handlers share: checking that this shard coordinates the group.

use kafka_protocol::ResponseError;

use crate::shard::Shard;

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
