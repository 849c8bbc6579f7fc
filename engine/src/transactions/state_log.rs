//! Records of the internal topic `__transaction_state`, in Kafka's key and value schemas
//! (`TransactionLogKey`, `TransactionLogValue` of Kafka's transaction coordinator), so that
//! the topic reads the same as a Kafka broker's and a transactional id lives on the partition
//! Kafka would put it on.
//!
//! Key: `[i16 version = 0][string transactional_id]`. Value: `[i16 version]` then version 0
//! (not flexible) or version 1 (flexible: compact strings and arrays, and tagged fields for the
//! previous and next producer ids and the client's transaction version). Spate writes version
//! 0 while it serves transaction protocol v1 only, and reads both. A null value is a
//! tombstone: the transactional id expired.

use bytes::{BufMut, Bytes, BytesMut};

use super::state::{TxnMetadata, TxnState};
use crate::groups::offsets_topic::{get_i16, get_i32, get_i64, get_string, put_string};

/// The internal topic's name.
pub const TOPIC: &str = "__transaction_state";
/// Kafka's default `transaction.state.log.num.partitions`.
pub const DEFAULT_PARTITIONS: i32 = 50;

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;
/// Kafka 4's flexible value version (KIP-890).
const FLEXIBLE_VALUE_VERSION: i16 = 1;

/// The partition of `__transaction_state` that holds a transactional id: Kafka's
/// `Utils.abs(transactionalId.hashCode()) % partitions`, as for groups.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::groups::offsets_topic::partition_for(transactional_id, partitions)
}

/// The record that stores `metadata` (key and value). The value is Kafka's version 0 unless
/// it carries what only version 1 (flexible, Kafka 4) holds: a protocol v2 client, or the
/// previous or next producer id of a rotation, written as tagged fields (which Kafka 4.0
/// leaves out: its coordinator that takes over forgets them).
pub fn record(metadata: &TxnMetadata) -> (Bytes, Bytes) {
    let mut key = BytesMut::new();
    key.put_i16(KEY_VERSION);
    put_string(&mut key, &metadata.transactional_id);
    let flexible = metadata.client_transaction_version != 0
        || metadata.previous_producer_id >= 0
        || metadata.next_producer_id >= 0;
    let mut value = BytesMut::new();
    value.put_i16(if flexible {
        FLEXIBLE_VALUE_VERSION
    } else {
        VALUE_VERSION
    });
    value.put_i64(metadata.producer_id);
    value.put_i16(metadata.producer_epoch);
    value.put_i32(metadata.timeout_ms);
    value.put_i8(metadata.state.id());
    // Kafka writes the partitions grouped by topic, and none once a transaction is complete.
    let topics = metadata.partitions_by_topic();
    if flexible {
        put_varint(&mut value, topics.len() as u32 + 1);
        for (topic, partitions) in &topics {
            put_varint(&mut value, topic.len() as u32 + 1);
            value.put_slice(topic.as_bytes());
            put_varint(&mut value, partitions.len() as u32 + 1);
            for partition in partitions {
                value.put_i32(*partition);
            }
            value.put_u8(0); // the topic's tagged fields
        }
    } else {
        value.put_i32(topics.len() as i32);
        for (topic, partitions) in &topics {
            put_string(&mut value, topic);
            value.put_i32(partitions.len() as i32);
            for partition in partitions {
                value.put_i32(*partition);
            }
        }
    }
    value.put_i64(metadata.last_update_ms);
    value.put_i64(metadata.start_ms);
    if flexible {
        // Tagged fields, each only when not its default: 0 PreviousProducerId, 1
        // NextProducerId, 2 ClientTransactionVersion.
        let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
        if metadata.previous_producer_id >= 0 {
            tagged.push((0, metadata.previous_producer_id.to_be_bytes().to_vec()));
        }
        if metadata.next_producer_id >= 0 {
            tagged.push((1, metadata.next_producer_id.to_be_bytes().to_vec()));
        }
        if metadata.client_transaction_version != 0 {
            tagged.push((
                2,
                metadata.client_transaction_version.to_be_bytes().to_vec(),
            ));
        }
        put_varint(&mut value, tagged.len() as u32);
        for (tag, bytes) in tagged {
            put_varint(&mut value, tag);
            put_varint(&mut value, bytes.len() as u32);
            value.put_slice(&bytes);
        }
    }
    (key.freeze(), value.freeze())
}

fn put_varint(bytes: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        bytes.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    bytes.put_u8(value as u8);
}

/// The tombstone of an expired transactional id.
pub fn tombstone(transactional_id: &str) -> Bytes {
    let mut key = BytesMut::new();
    key.put_i16(KEY_VERSION);
    put_string(&mut key, transactional_id);
    key.freeze()
}

/// A record read back: the transactional id and its metadata, `None` for a tombstone.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<(String, Option<TxnMetadata>)> {
    let mut key = key;
    if get_i16(&mut key)? != KEY_VERSION {
        return None;
    }
    let transactional_id = get_string(&mut key)?;
    let Some(mut value) = value else {
        return Some((transactional_id, None));
    };
    let metadata = match get_i16(&mut value)? {
        0 => decode_v0(&mut value, transactional_id.clone())?,
        1 => decode_v1(&mut value, transactional_id.clone())?,
        _ => return None,
    };
    Some((transactional_id, Some(metadata)))
}

/// The fields both versions start with: producer id, epoch, timeout and state.
fn decode_head(value: &mut &[u8], transactional_id: String) -> Option<TxnMetadata> {
    let producer_id = get_i64(value)?;
    let producer_epoch = get_i16(value)?;
    let timeout_ms = get_i32(value)?;
    let state = TxnState::from_id(get_i8(value)?)?;
    let mut metadata = TxnMetadata::new(transactional_id, producer_id, timeout_ms, 0);
    metadata.producer_epoch = producer_epoch;
    metadata.state = state;
    Some(metadata)
}

fn decode_v0(value: &mut &[u8], transactional_id: String) -> Option<TxnMetadata> {
    let mut metadata = decode_head(value, transactional_id)?;
    let topics = get_i32(value)?;
    for _ in 0..topics.max(0) {
        let topic = get_string(value)?;
        let count = get_i32(value)?;
        for _ in 0..count.max(0) {
            metadata.partitions.insert((topic.clone(), get_i32(value)?));
        }
    }
    metadata.last_update_ms = get_i64(value)?;
    metadata.start_ms = get_i64(value)?;
    Some(metadata)
}

fn decode_v1(value: &mut &[u8], transactional_id: String) -> Option<TxnMetadata> {
    let mut metadata = decode_head(value, transactional_id)?;
    // A compact nullable array: length + 1, 0 for null.
    let topics = get_varint(value)?;
    for _ in 0..topics.saturating_sub(1) {
        let topic = get_compact_string(value)?;
        let count = get_varint(value)?.checked_sub(1)?;
        for _ in 0..count {
            metadata.partitions.insert((topic.clone(), get_i32(value)?));
        }
        skip_tagged_fields(value)?;
    }
    metadata.last_update_ms = get_i64(value)?;
    metadata.start_ms = get_i64(value)?;
    for _ in 0..get_varint(value)? {
        let tag = get_varint(value)?;
        let size = get_varint(value)? as usize;
        if value.len() < size {
            return None;
        }
        let mut field = &value[..size];
        match tag {
            0 => metadata.previous_producer_id = get_i64(&mut field)?,
            1 => metadata.next_producer_id = get_i64(&mut field)?,
            2 => metadata.client_transaction_version = get_i16(&mut field)?,
            _ => {}
        }
        *value = &value[size..];
    }
    Some(metadata)
}

fn get_i8(bytes: &mut &[u8]) -> Option<i8> {
    let (&first, rest) = bytes.split_first()?;
    *bytes = rest;
    Some(first as i8)
}

/// An unsigned varint of at most 5 bytes.
fn get_varint(bytes: &mut &[u8]) -> Option<u32> {
    let mut result = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = get_i8(bytes)? as u8;
        result |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(result);
        }
    }
    None
}

fn get_compact_string(bytes: &mut &[u8]) -> Option<String> {
    let length = get_varint(bytes)?.checked_sub(1)? as usize;
    if bytes.len() < length {
        return None;
    }
    let text = std::str::from_utf8(&bytes[..length]).ok()?.to_string();
    *bytes = &bytes[length..];
    Some(text)
}

fn skip_tagged_fields(bytes: &mut &[u8]) -> Option<()> {
    for _ in 0..get_varint(bytes)? {
        get_varint(bytes)?;
        let size = get_varint(bytes)? as usize;
        if bytes.len() < size {
            return None;
        }
        *bytes = &bytes[size..];
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> TxnMetadata {
        let mut metadata = TxnMetadata::new("payments-1".into(), 4000, 60_000, 1_000);
        metadata.producer_epoch = 3;
        metadata.state = TxnState::Ongoing;
        metadata.partitions.insert(("orders".into(), 2));
        metadata.partitions.insert(("orders".into(), 0));
        metadata.partitions.insert(("audit".into(), 7));
        metadata.start_ms = 1_500;
        metadata.last_update_ms = 1_600;
        metadata
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let metadata = ongoing();
        let (key, value) = record(&metadata);
        let (id, read) = decode(&key, Some(&value)).unwrap();
        assert_eq!(id, "payments-1");
        let read = read.unwrap();
        assert_eq!(read.producer_id, 4000);
        assert_eq!(read.producer_epoch, 3);
        assert_eq!(read.timeout_ms, 60_000);
        assert_eq!(read.state, TxnState::Ongoing);
        assert_eq!(read.partitions, metadata.partitions);
        assert_eq!((read.start_ms, read.last_update_ms), (1_500, 1_600));
        assert_eq!(
            decode(&tombstone("payments-1"), None).unwrap(),
            ("payments-1".into(), None)
        );
    }

    #[test]
    fn the_value_is_laid_out_as_kafkas_version_0() {
        let (key, value) = record(&ongoing());
        assert_eq!(&key[..], b"\x00\x00\x00\x0apayments-1");
        let mut expected = vec![0, 0]; // version
        expected.extend(4000i64.to_be_bytes());
        expected.extend(3i16.to_be_bytes());
        expected.extend(60_000i32.to_be_bytes());
        expected.push(1); // Ongoing
        expected.extend(2i32.to_be_bytes()); // topics, by name
        expected.extend(b"\x00\x05audit");
        expected.extend(1i32.to_be_bytes());
        expected.extend(7i32.to_be_bytes());
        expected.extend(b"\x00\x06orders");
        expected.extend(2i32.to_be_bytes());
        expected.extend(0i32.to_be_bytes());
        expected.extend(2i32.to_be_bytes());
        expected.extend(1_600i64.to_be_bytes());
        expected.extend(1_500i64.to_be_bytes());
        assert_eq!(&value[..], &expected[..]);
    }

    #[test]
    fn a_flexible_version_1_value_from_kafka_4_is_read() {
        let mut value = vec![0, 1];
        value.extend(4000i64.to_be_bytes());
        value.extend(5i16.to_be_bytes());
        value.extend(30_000i32.to_be_bytes());
        value.push(4); // CompleteCommit
        value.push(2); // one topic
        value.extend(b"\x07orders"); // compact string
        value.push(2); // one partition
        value.extend(1i32.to_be_bytes());
        value.push(0); // the topic's tagged fields
        value.extend(9i64.to_be_bytes());
        value.extend(8i64.to_be_bytes());
        value.push(2); // tagged fields: previous producer id, client transaction version
        value.extend([0, 8]);
        value.extend(3999i64.to_be_bytes());
        value.extend([2, 2]);
        value.extend(2i16.to_be_bytes());
        let key = tombstone("t");
        let (_, read) = decode(&key, Some(&value)).unwrap();
        let read = read.unwrap();
        assert_eq!(read.state, TxnState::CompleteCommit);
        assert_eq!(read.producer_epoch, 5);
        assert_eq!(read.previous_producer_id, 3999);
        assert_eq!(read.next_producer_id, -1);
        assert_eq!(read.client_transaction_version, 2);
        assert!(read.partitions.contains(&("orders".to_string(), 1)));
        assert_eq!((read.last_update_ms, read.start_ms), (9, 8));
    }

    #[test]
    fn a_protocol_v2_value_is_written_as_version_1_and_reads_back() {
        let mut metadata = ongoing();
        metadata.client_transaction_version = 2;
        metadata.previous_producer_id = 3999;
        metadata.next_producer_id = 4001;
        let (key, value) = record(&metadata);
        assert_eq!(&value[..2], &[0, 1]);
        let (_, read) = decode(&key, Some(&value)).unwrap();
        let read = read.unwrap();
        assert_eq!(read.partitions, metadata.partitions);
        assert_eq!(
            (
                read.previous_producer_id,
                read.next_producer_id,
                read.client_transaction_version
            ),
            (3999, 4001, 2)
        );
        assert_eq!((read.start_ms, read.last_update_ms), (1_500, 1_600));
        for cut in 0..value.len() {
            assert!(decode(&key, Some(&value[..cut])).is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn damaged_records_are_refused_without_a_panic() {
        let (key, value) = record(&ongoing());
        for cut in 0..value.len() {
            assert!(decode(&key, Some(&value[..cut])).is_none(), "cut at {cut}");
        }
        assert!(decode(&key[..3], Some(&value)).is_none());
        let mut unknown_state = value.to_vec();
        unknown_state[16] = 42;
        assert!(decode(&key, Some(&unknown_state)).is_none());
    }

    #[test]
    fn transactional_ids_spread_over_partitions_as_in_kafka() {
        // Java: Math.abs("payments-1".hashCode()) % 50.
        let hash = "payments-1".encode_utf16().fold(0i32, |hash, unit| {
            hash.wrapping_mul(31).wrapping_add(unit as i32)
        });
        assert_eq!(partition_for("payments-1", 50), hash.abs() % 50);
    }
}
