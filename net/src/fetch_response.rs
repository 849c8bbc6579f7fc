//! The Fetch response (versions 4–17) encoded as a frame of pieces, so that the records are
//! sent from where they are (tail cache chunks, segment files) instead of being copied into
//! one buffer first.
//!
//! kafka-protocol's encoder takes the records as one `Bytes`; this one writes everything else
//! the same way, byte for byte (checked against it for every version in the tests), and
//! leaves each partition's records as pieces of the frame, including the tagged fields of
//! v12+ (a leader's `diverging_epoch` for a follower whose log runs past its own; the
//! `current_leader` hint of KIP-951) and v16's `node_endpoints` (where those leaders are).
//! Topics are named from v4 to v12 and identified by id from v13 (KIP-516).

use bytes::BufMut;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::FetchResponse;

use crate::response::{Frame, FrameBuilder, RecordPieces};
use crate::wire::WireWrite;

/// Versions this encoder writes (those the engine's Fetch handler serves).
pub const VERSIONS: std::ops::RangeInclusive<i16> = 4..=17;

/// Encodes `response` as a frame with the response header for `correlation_id`. `records`
/// holds, per topic and partition in the response's order, the records to send in place of
/// the partition's `records` field (which must be `None` where records are given: `None` in
/// both writes a null).
pub fn encode<R: RecordPieces>(
    version: i16,
    correlation_id: i32,
    response: &FetchResponse,
    records: Vec<Vec<Option<R>>>,
) -> Frame<R::Piece> {
    assert!(
        VERSIONS.contains(&version),
        "Fetch v{version} not encoded here"
    );
    let flexible = version >= 12;
    let mut out = FrameBuilder::new();
    out.bytes.put_i32(correlation_id);
    if ApiKey::Fetch.response_header_version(version) >= 1 {
        out.bytes.put_no_tagged_fields(); // no tagged fields
    }
    out.bytes.put_i32(response.throttle_time_ms);
    if version >= 7 {
        out.bytes.put_i16(response.error_code);
        out.bytes.put_i32(response.session_id);
    }
    out.bytes
        .put_array_length(flexible, response.responses.len());
    let mut records = records.into_iter();
    for topic in &response.responses {
        let mut topic_records = records.next().unwrap_or_default().into_iter();
        if version <= 12 {
            out.bytes.put_string(flexible, topic.topic.0.as_bytes());
        } else {
            out.bytes.put_slice(topic.topic_id.as_bytes());
        }
        out.bytes.put_array_length(flexible, topic.partitions.len());
        for partition in &topic.partitions {
            let bytes = &mut out.bytes;
            bytes.put_i32(partition.partition_index);
            bytes.put_i16(partition.error_code);
            bytes.put_i64(partition.high_watermark);
            bytes.put_i64(partition.last_stable_offset);
            if version >= 5 {
                bytes.put_i64(partition.log_start_offset);
            }
            match &partition.aborted_transactions {
                None => out.bytes.put_null_array(flexible),
                Some(aborted) => {
                    out.bytes.put_array_length(flexible, aborted.len());
                    for transaction in aborted {
                        out.bytes.put_i64(transaction.producer_id.0);
                        out.bytes.put_i64(transaction.first_offset);
                        if flexible {
                            out.bytes.put_no_tagged_fields();
                        }
                    }
                }
            }
            if version >= 11 {
                out.bytes.put_i32(partition.preferred_read_replica.0);
            }
            match (topic_records.next().flatten(), &partition.records) {
                (Some(records), _) => {
                    out.bytes.put_bytes_length(flexible, Some(records.len()));
                    out.records(&records);
                }
                (None, Some(inline)) => {
                    out.bytes.put_bytes_length(flexible, Some(inline.len()));
                    out.bytes.put_slice(inline);
                }
                (None, None) => out.bytes.put_bytes_length(flexible, None),
            }
            if flexible {
                put_partition_tagged_fields(&mut out.bytes, version, partition);
            }
        }
        if flexible {
            out.bytes.put_no_tagged_fields(); // topic tagged fields
        }
    }
    if flexible {
        put_response_tagged_fields(&mut out.bytes, version, response);
    }
    out.finish()
}

/// The response's tagged fields (v12+): v16's `node_endpoints` (tag 0), the brokers that
/// the partitions' `current_leader` hints name, when there are any.
fn put_response_tagged_fields(bytes: &mut bytes::BytesMut, version: i16, response: &FetchResponse) {
    use kafka_protocol::protocol::Encodable;
    if version < 16 || response.node_endpoints.is_empty() {
        bytes.put_no_tagged_fields();
        return;
    }
    let mut encoded = bytes::BytesMut::new();
    encoded.put_array_length(true, response.node_endpoints.len());
    for endpoint in &response.node_endpoints {
        // In-memory encoding of a struct of plain fields: nothing can fail.
        endpoint
            .encode(&mut encoded, version)
            .expect("a node endpoint encodes");
    }
    bytes.put_uvarint(1);
    bytes.put_uvarint(0);
    bytes.put_uvarint(encoded.len() as u32);
    bytes.put_slice(&encoded);
}

/// A partition's tagged fields (v12+) as kafka-protocol writes them: each one that is not
/// at its default, in tag order (0 `diverging_epoch`, which a leader sends a follower whose
/// log runs past its own; 1 `current_leader`; 2 `snapshot_id`).
fn put_partition_tagged_fields(
    bytes: &mut bytes::BytesMut,
    version: i16,
    partition: &kafka_protocol::messages::fetch_response::PartitionData,
) {
    use kafka_protocol::protocol::Encodable;
    let mut fields: Vec<(u32, bytes::BytesMut)> = Vec::new();
    let mut field = |tag: u32, value: &dyn Fn(&mut bytes::BytesMut) -> anyhow::Result<()>| {
        let mut encoded = bytes::BytesMut::new();
        // These fixed-size structs encode into memory: nothing can fail.
        value(&mut encoded).expect("a tagged field encodes");
        fields.push((tag, encoded));
    };
    if partition.diverging_epoch != Default::default() {
        field(0, &|buf| partition.diverging_epoch.encode(buf, version));
    }
    if partition.current_leader != Default::default() {
        field(1, &|buf| partition.current_leader.encode(buf, version));
    }
    if partition.snapshot_id != Default::default() {
        field(2, &|buf| partition.snapshot_id.encode(buf, version));
    }
    bytes.put_uvarint(fields.len() as u32);
    for (tag, encoded) in fields {
        bytes.put_uvarint(tag);
        bytes.put_uvarint(encoded.len() as u32);
        bytes.put_slice(&encoded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::InlineRecords;
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, ProducerId, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    /// (topic name, per partition: (index, error, aborted transactions?, records?)).
    type Shape = Vec<(
        String,
        Vec<(i32, i16, Option<Vec<(i64, i64)>>, Option<Vec<u8>>)>,
    )>;

    fn response_of(
        shape: &Shape,
        inline: bool,
    ) -> (FetchResponse, Vec<Vec<Option<InlineRecords>>>) {
        let mut all_records = Vec::new();
        let topics = shape
            .iter()
            .map(|(name, partitions)| {
                let mut topic_records = Vec::new();
                let partitions = partitions
                    .iter()
                    .map(|(index, error, aborted, records)| {
                        let data = PartitionData::default()
                            .with_partition_index(*index)
                            .with_error_code(*error)
                            .with_high_watermark(*index as i64 * 1000 + 7)
                            .with_last_stable_offset(*index as i64 * 1000 + 5)
                            .with_log_start_offset(3)
                            .with_preferred_read_replica(BrokerId(-1))
                            .with_aborted_transactions(aborted.as_ref().map(|list| {
                                list.iter()
                                    .map(|&(producer, first)| {
                                        AbortedTransaction::default()
                                            .with_producer_id(ProducerId(producer))
                                            .with_first_offset(first)
                                    })
                                    .collect()
                            }));
                        let bytes = records.as_ref().map(|bytes| Bytes::from(bytes.clone()));
                        if inline {
                            topic_records.push(None);
                            data.with_records(bytes)
                        } else {
                            topic_records.push(bytes.map(InlineRecords::new));
                            data.with_records(None)
                        }
                    })
                    .collect();
                all_records.push(topic_records);
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(name.clone())))
                    .with_topic_id(topic_id_of(name))
                    .with_partitions(partitions)
            })
            .collect();
        let response = FetchResponse::default()
            .with_throttle_time_ms(11)
            .with_error_code(0)
            .with_session_id(0)
            .with_responses(topics);
        (response, all_records)
    }

    /// A topic id made from its name, so that each topic of a shape has its own.
    fn topic_id_of(name: &str) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        for (i, byte) in name.bytes().enumerate() {
            bytes[i % 16] ^= byte;
        }
        uuid::Uuid::from_bytes(bytes)
    }

    fn shape() -> impl Strategy<Value = Shape> {
        let partition = (
            0..3000i32,
            0..5i16,
            proptest::option::of(proptest::collection::vec((0..1000i64, 0..1000i64), 0..3)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..9000)),
        );
        proptest::collection::vec(
            ("[a-z._-]{1,40}", proptest::collection::vec(partition, 0..4)),
            0..4,
        )
    }

    /// A leader tells a follower whose log runs past its own where to truncate with the
    /// v12 tagged field `diverging_epoch`. This encoder used to leave every tagged field out,
    /// so over TCP the follower saw an empty answer, fetched again at once, and never
    /// truncated nor rejoined the ISR (found with `failover-stall.py`: a killed leader with
    /// an unreplicated tail, restarted).
    #[test]
    fn the_tagged_partition_fields_of_v12_are_written_as_kafka_protocol_writes_them() {
        use kafka_protocol::messages::fetch_response::{
            EpochEndOffset, LeaderIdAndEpoch, SnapshotId,
        };
        let shape: Shape = vec![(
            "stall".into(),
            vec![(0, 0, None, None), (1, 0, None, None), (2, 0, None, None)],
        )];
        let (mut response, _) = response_of(&shape, true);
        let partitions = &mut response.responses[0].partitions;
        partitions[0].diverging_epoch = EpochEndOffset::default()
            .with_epoch(14)
            .with_end_offset(33657);
        partitions[1].current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(3072))
            .with_leader_epoch(15);
        partitions[2].snapshot_id = SnapshotId::default().with_end_offset(9).with_epoch(2);
        partitions[2].diverging_epoch = EpochEndOffset::default().with_epoch(1).with_end_offset(5);
        let expected = crate::encode_response(
            ApiKey::Fetch,
            12,
            42,
            &ResponseKind::Fetch(response.clone()),
        )
        .unwrap();
        let ours = encode::<InlineRecords>(12, 42, &response, Vec::new()).flatten();
        assert_eq!(&ours[..], &expected[..]);
    }

    /// KIP-951: from v16 a partition refused with NOT_LEADER_OR_FOLLOWER names its leader
    /// (`current_leader`) and the response says where that leader listens
    /// (`node_endpoints`, a tagged field of the response); topics go by id from v13.
    #[test]
    fn the_leader_hints_of_v16_are_written_as_kafka_protocol_writes_them() {
        use kafka_protocol::messages::fetch_response::{LeaderIdAndEpoch, NodeEndpoint};
        let shape: Shape = vec![("hint".into(), vec![(0, 6, None, None), (1, 0, None, None)])];
        for version in 12..=17 {
            let (mut response, _) = response_of(&shape, true);
            response.responses[0].partitions[0].current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(2048))
                .with_leader_epoch(4);
            if version >= 16 {
                response.node_endpoints = vec![NodeEndpoint::default()
                    .with_node_id(BrokerId(2048))
                    .with_host(StrBytes::from_static_str("127.0.0.2"))
                    .with_port(9192)
                    .with_rack(Some(StrBytes::from_static_str("r2")))];
            }
            let expected = crate::encode_response(
                ApiKey::Fetch,
                version,
                42,
                &ResponseKind::Fetch(response.clone()),
            )
            .unwrap();
            let ours = encode::<InlineRecords>(version, 42, &response, Vec::new()).flatten();
            assert_eq!(&ours[..], &expected[..], "v{version}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn pieces_encode_exactly_as_kafka_protocol(shape in shape(), version in 4i16..=17) {
            let (inline_response, _) = response_of(&shape, true);
            let expected = crate::encode_response(
                ApiKey::Fetch,
                version,
                42,
                &ResponseKind::Fetch(inline_response.clone()),
            )
            .unwrap();
            // Records given inline and records given as pieces encode the same bytes.
            let inline = encode::<InlineRecords>(version, 42, &inline_response, Vec::new());
            prop_assert_eq!(&inline.flatten()[..], &expected[..]);
            let (response, records) = response_of(&shape, false);
            prop_assert_eq!(&encode(version, 42, &response, records).flatten()[..], &expected[..]);
        }
    }
}
