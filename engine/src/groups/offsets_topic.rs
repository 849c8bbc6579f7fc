//! Records of the internal topic `__consumer_offsets`, in Kafka's key and value schemas, so
//! that the topic reads the same as a Kafka broker's (group-coordinator
//! `OffsetCommitKey/Value`, `GroupMetadataKey/Value`).
//!
//! Non-flexible schemas: strings are i16-length-prefixed UTF-8 (-1 = null); a null record
//! value is a tombstone. A KIP-848 consumer group's epoch is Kafka 4's record type 3
//! (`ConsumerGroupMetadataKey` / `ConsumerGroupMetadataValue`, a flexible value: the epoch,
//! then an empty tagged-field section); its members are not written (see
//! `consumer_group`).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The internal topic's name.
pub const TOPIC: &str = "__consumer_offsets";
/// Kafka's default `offsets.topic.num.partitions`.
pub const DEFAULT_PARTITIONS: i32 = 50;

const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
const GROUP_METADATA_KEY_VERSION: i16 = 2;
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;
const CONSUMER_GROUP_METADATA_KEY_VERSION: i16 = 3;

/// The partition of `__consumer_offsets` that holds a group: Kafka's
/// `Utils.abs(groupId.hashCode()) % partitions`, with Java's `String.hashCode` over UTF-16.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions
}

/// A committed offset as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct OffsetValue {
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the record before it, or -1.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When it was committed (ms since the epoch).
    pub commit_timestamp_ms: i64,
}

/// What a record of the topic says.
#[derive(Clone, Debug, PartialEq)]
pub enum OffsetsRecord {
    /// An offset commit, or its deletion (`None`).
    Offset {
        /// Group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// `None` for a tombstone.
        value: Option<OffsetValue>,
    },
    /// A KIP-848 consumer group's epoch, or the group's deletion (`None`).
    ConsumerGroup {
        /// Group.
        group: String,
        /// The group epoch; `None` for a tombstone.
        epoch: Option<i32>,
    },
    /// A group's metadata, or its deletion (`None`).
    Group {
        /// Group.
        group: String,
        /// (protocol type, generation); `None` for a tombstone.
        value: Option<(String, i32)>,
    },
}

/// Encodes an offset commit's key and value.
pub fn offset_record(
    group: &str,
    topic: &str,
    partition: i32,
    value: Option<&OffsetValue>,
) -> (Bytes, Option<Bytes>) {
    let mut key = BytesMut::new();
    key.put_i16(OFFSET_COMMIT_KEY_VERSION);
    put_string(&mut key, group);
    put_string(&mut key, topic);
    key.put_i32(partition);
    let value = value.map(|value| {
        let mut bytes = BytesMut::new();
        bytes.put_i16(OFFSET_COMMIT_VALUE_VERSION);
        bytes.put_i64(value.offset);
        bytes.put_i32(value.leader_epoch);
        put_string(&mut bytes, &value.metadata);
        bytes.put_i64(value.commit_timestamp_ms);
        bytes.freeze()
    });
    (key.freeze(), value)
}

/// Encodes a group metadata record (members are not persisted: a restarted coordinator
/// starts the group empty at its generation, and consumers rejoin).
pub fn group_record(
    group: &str,
    value: Option<(&str, i32, Option<&str>, i64)>,
) -> (Bytes, Option<Bytes>) {
    let mut key = BytesMut::new();
    key.put_i16(GROUP_METADATA_KEY_VERSION);
    put_string(&mut key, group);
    let value = value.map(|(protocol_type, generation, protocol, timestamp_ms)| {
        let mut bytes = BytesMut::new();
        bytes.put_i16(GROUP_METADATA_VALUE_VERSION);
        put_string(&mut bytes, protocol_type);
        bytes.put_i32(generation);
        put_nullable_string(&mut bytes, protocol);
        put_nullable_string(&mut bytes, None); // leader
        bytes.put_i64(timestamp_ms);
        bytes.put_i32(0); // members
        bytes.freeze()
    });
    (key.freeze(), value)
}

/// Encodes a consumer group's epoch record (Kafka's ConsumerGroupMetadata, value v0).
pub fn consumer_group_record(group: &str, epoch: Option<i32>) -> (Bytes, Option<Bytes>) {
    let mut key = BytesMut::new();
    key.put_i16(CONSUMER_GROUP_METADATA_KEY_VERSION);
    put_string(&mut key, group);
    let value = epoch.map(|epoch| {
        let mut bytes = BytesMut::new();
        bytes.put_i16(0);
        bytes.put_i32(epoch);
        bytes.put_u8(0); // no tagged fields
        bytes.freeze()
    });
    (key.freeze(), value)
}

/// Decodes one record; `None` for key versions this broker does not read (the other KIP-848
/// records a Kafka broker writes: members, assignments, regexes) or malformed bytes.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<OffsetsRecord> {
    let mut key = key;
    let version = get_i16(&mut key)?;
    match version {
        0 | 1 => {
            let group = get_string(&mut key)?;
            let topic = get_string(&mut key)?;
            let partition = get_i32(&mut key)?;
            let value = match value {
                None => None,
                Some(bytes) => Some(decode_offset_value(bytes)?),
            };
            Some(OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        2 => {
            let group = get_string(&mut key)?;
            let value = match value {
                None => None,
                Some(mut bytes) => {
                    let _version = get_i16(&mut bytes)?;
                    let protocol_type = get_string(&mut bytes)?;
                    let generation = get_i32(&mut bytes)?;
                    Some((protocol_type, generation))
                }
            };
            Some(OffsetsRecord::Group { group, value })
        }
        3 => {
            let group = get_string(&mut key)?;
            let epoch = match value {
                None => None,
                Some(mut bytes) => {
                    let _version = get_i16(&mut bytes)?;
                    Some(get_i32(&mut bytes)?)
                }
            };
            Some(OffsetsRecord::ConsumerGroup { group, epoch })
        }
        _ => None,
    }
}

/// OffsetCommitValue versions 0 to 3.
fn decode_offset_value(mut bytes: &[u8]) -> Option<OffsetValue> {
    let version = get_i16(&mut bytes)?;
    let offset = get_i64(&mut bytes)?;
    let leader_epoch = if version >= 3 {
        get_i32(&mut bytes)?
    } else {
        -1
    };
    let metadata = get_string(&mut bytes)?;
    let commit_timestamp_ms = get_i64(&mut bytes)?;
    (0..=3).contains(&version).then_some(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

/// Writes a non-flexible string (i16 length, UTF-8), also for `transactions::state_log`.
pub(crate) fn put_string(bytes: &mut BytesMut, text: &str) {
    let length = i16::try_from(text.len()).unwrap_or(i16::MAX);
    bytes.put_i16(length);
    bytes.put_slice(&text.as_bytes()[..length as usize]);
}

fn put_nullable_string(bytes: &mut BytesMut, text: Option<&str>) {
    match text {
        Some(text) => put_string(bytes, text),
        None => bytes.put_i16(-1),
    }
}

/// Reads a big-endian i16, `None` past the end (these readers serve `transactions` too).
pub(crate) fn get_i16(bytes: &mut &[u8]) -> Option<i16> {
    (bytes.len() >= 2).then(|| bytes.get_i16())
}

pub(crate) fn get_i32(bytes: &mut &[u8]) -> Option<i32> {
    (bytes.len() >= 4).then(|| bytes.get_i32())
}

pub(crate) fn get_i64(bytes: &mut &[u8]) -> Option<i64> {
    (bytes.len() >= 8).then(|| bytes.get_i64())
}

pub(crate) fn get_string(bytes: &mut &[u8]) -> Option<String> {
    let length = get_i16(bytes)?;
    if length < 0 {
        return Some(String::new());
    }
    let length = length as usize;
    if bytes.len() < length {
        return None;
    }
    let text = std::str::from_utf8(&bytes[..length]).ok()?.to_string();
    bytes.advance(length);
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_java_string_hashcode() {
        // Values from a JVM: "my-group".hashCode() == -1906497762, |h| % 50 == 12.
        assert_eq!(partition_for("my-group", 50), 12);
        // Non-ASCII goes through UTF-16 code units, as in Java: 243500762 % 50 == 12.
        assert_eq!(partition_for("grüppe-✓", 50), 12);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Utils.abs gives 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("", 50), 0);
    }

    #[test]
    fn records_round_trip() {
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 0,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        };
        let (key, bytes) = offset_record("g", "t", 3, Some(&value));
        assert_eq!(
            decode(&key, bytes.as_deref()),
            Some(OffsetsRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(value)
            })
        );
        let (key, tombstone) = offset_record("g", "t", 3, None);
        assert!(matches!(
            decode(&key, tombstone.as_deref()),
            Some(OffsetsRecord::Offset { value: None, .. })
        ));
        let (key, bytes) = group_record("g", Some(("consumer", 7, Some("range"), 5)));
        assert_eq!(
            decode(&key, bytes.as_deref()),
            Some(OffsetsRecord::Group {
                group: "g".into(),
                value: Some(("consumer".into(), 7))
            })
        );
        for epoch in [Some(12), None] {
            let (key, bytes) = consumer_group_record("g", epoch);
            assert_eq!(
                decode(&key, bytes.as_deref()),
                Some(OffsetsRecord::ConsumerGroup {
                    group: "g".into(),
                    epoch
                })
            );
        }
    }

    #[test]
    fn malformed_or_unknown_records_are_skipped() {
        assert_eq!(decode(&[0, 9, 0, 1], None), None);
        assert_eq!(decode(&[0, 1, 0, 50, b'x'], None), None);
        assert_eq!(decode(&[], Some(&[1, 2])), None);
    }
}
