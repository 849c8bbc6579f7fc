//! The "consumer" protocol type of classic groups: the subscription a member sends in
//! JoinGroup, the assignment the leader hands out in SyncGroup, and the range assignor.
//!
//! Both are a version (i16) followed by the `ConsumerProtocolSubscription` or
//! `ConsumerProtocolAssignment` schema (v0-3) at that version. A newer version only adds
//! fields at the end, so a decoder reads a newer payload with the newest schema it knows.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::broker::{str_bytes, topic_name};

/// The newest schema version we can decode.
const NEWEST_SCHEMA: i16 = 3;
/// The version we write: v0 is the common ground every consumer decodes.
const WRITTEN_VERSION: i16 = 0;

/// A member's subscription: the topics it wants.
pub fn encode_subscription(topics: &[String]) -> anyhow::Result<Bytes> {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|topic| str_bytes(topic)).collect());
    let mut buffer = BytesMut::new();
    buffer.put_i16(WRITTEN_VERSION);
    subscription.encode(&mut buffer, WRITTEN_VERSION)?;
    Ok(buffer.freeze())
}

/// The topics of a subscription.
pub fn decode_subscription(bytes: &Bytes) -> anyhow::Result<Vec<String>> {
    let mut bytes = bytes.clone();
    if bytes.len() < 2 {
        anyhow::bail!("a consumer subscription of {} bytes", bytes.len());
    }
    let version = bytes.get_i16().clamp(0, NEWEST_SCHEMA);
    let subscription = ConsumerProtocolSubscription::decode(&mut bytes, version)?;
    Ok(subscription
        .topics
        .iter()
        .map(|topic| topic.to_string())
        .collect())
}

/// An assignment: topic → partitions.
pub fn encode_assignment(assignment: &BTreeMap<String, Vec<i32>>) -> anyhow::Result<Bytes> {
    let assigned = assignment
        .iter()
        .map(|(topic, partitions)| {
            AssignedPartitions::default()
                .with_topic(topic_name(topic))
                .with_partitions(partitions.clone())
        })
        .collect();
    let mut buffer = BytesMut::new();
    buffer.put_i16(WRITTEN_VERSION);
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(assigned)
        .encode(&mut buffer, WRITTEN_VERSION)?;
    Ok(buffer.freeze())
}

/// The topic → partitions of assignment bytes; empty bytes are an empty assignment.
pub fn decode_assignment(bytes: &Bytes) -> anyhow::Result<BTreeMap<String, Vec<i32>>> {
    let mut bytes = bytes.clone();
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    if bytes.len() < 2 {
        anyhow::bail!("a consumer assignment of {} bytes", bytes.len());
    }
    let version = bytes.get_i16().clamp(0, NEWEST_SCHEMA);
    let assignment = ConsumerProtocolAssignment::decode(&mut bytes, version)?;
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for assigned in assignment.assigned_partitions {
        let partitions = out.entry(assigned.topic.0.to_string()).or_default();
        partitions.extend(assigned.partitions);
        partitions.sort_unstable();
    }
    Ok(out)
}

/// Kafka's `RangeAssignor`: for each topic, its subscribers in member-id order each get a
/// contiguous range of partitions, the first `partitions % subscribers` one extra.
///
/// `subscriptions` is member id → topics; `partition_counts` is topic → partitions
/// (topics missing from it are skipped). Every member appears in the result.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut assignment: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
        .keys()
        .map(|member| (member.clone(), BTreeMap::new()))
        .collect();
    for (topic, &count) in partition_counts {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() {
            continue;
        }
        let per_member = count / members.len() as i32;
        let with_extra = count % members.len() as i32;
        for (index, member) in members.into_iter().enumerate() {
            let index = index as i32;
            let start = per_member * index + index.min(with_extra);
            let length = per_member + i32::from(index < with_extra);
            if length > 0 {
                assignment
                    .get_mut(member)
                    .expect("every member is in the map")
                    .insert(topic.clone(), (start..start + length).collect());
            }
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriptions(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        members
            .iter()
            .map(|(member, topics)| {
                (
                    member.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn range_gives_the_first_members_the_extra_partitions() {
        let subscriptions = subscriptions(&[("c", &["t"]), ("a", &["t"]), ("b", &["t", "u"])]);
        let counts = BTreeMap::from([("t".to_string(), 7), ("u".to_string(), 2)]);
        let assignment = range_assign(&subscriptions, &counts);
        assert_eq!(assignment["a"]["t"], vec![0, 1, 2]);
        assert_eq!(assignment["b"]["t"], vec![3, 4]);
        assert_eq!(assignment["c"]["t"], vec![5, 6]);
        assert_eq!(assignment["b"]["u"], vec![0, 1]);
        assert!(!assignment["a"].contains_key("u"));
    }

    #[test]
    fn members_beyond_the_partition_count_get_nothing() {
        let subscriptions = subscriptions(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let counts = BTreeMap::from([("t".to_string(), 2)]);
        let assignment = range_assign(&subscriptions, &counts);
        assert_eq!(assignment["a"]["t"], vec![0]);
        assert_eq!(assignment["b"]["t"], vec![1]);
        assert!(assignment["c"].is_empty());
    }

    #[test]
    fn subscription_and_assignment_round_trip() {
        let topics = vec!["orders".to_string(), "payments".to_string()];
        assert_eq!(
            decode_subscription(&encode_subscription(&topics).unwrap()).unwrap(),
            topics
        );
        let assignment = BTreeMap::from([
            ("orders".to_string(), vec![0, 2]),
            ("payments".to_string(), vec![1]),
        ]);
        assert_eq!(
            decode_assignment(&encode_assignment(&assignment).unwrap()).unwrap(),
            assignment
        );
        assert!(decode_assignment(&Bytes::new()).unwrap().is_empty());
    }

    /// What a Java consumer writes for a v3 assignment: version 3, one topic, user data null.
    #[test]
    fn decodes_a_hand_built_v3_assignment() {
        let mut bytes = BytesMut::new();
        bytes.put_i16(3);
        bytes.put_i32(1); // one topic
        bytes.put_i16(6);
        bytes.put_slice(b"orders");
        bytes.put_i32(2); // two partitions
        bytes.put_i32(4);
        bytes.put_i32(1);
        bytes.put_i32(-1); // null user data
        let decoded = decode_assignment(&bytes.freeze()).unwrap();
        assert_eq!(
            decoded,
            BTreeMap::from([("orders".to_string(), vec![1, 4])])
        );
    }
}
