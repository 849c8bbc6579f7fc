//! Pre-encoded produce requests, so that the generator spends its time on the socket and
//! not on encoding: each connection encodes its request once and only patches the
//! correlation id before each send.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Produce request version used by the generator (every broker in scope serves it).
pub const PRODUCE_VERSION: i16 = 7;
/// Where the correlation id sits in a request frame: after the size prefix, api key and
/// api version.
const CORRELATION_ID_AT: usize = 8;

/// What one request carries.
#[derive(Clone, Debug)]
pub struct BatchShape {
    /// Bytes of each record's value.
    pub record_size: usize,
    /// Records per batch (one batch per partition per request).
    pub records_per_batch: usize,
    /// Batch compression.
    pub compression: Compression,
}

/// Encodes one record batch of `shape`. Values are pseudo-random bytes (so compression
/// has realistic work) and keys are absent.
pub fn encode_batch(shape: &BatchShape, seed: u64) -> anyhow::Result<Bytes> {
    let mut state = seed | 1;
    let records: Vec<Record> = (0..shape.records_per_batch)
        .map(|index| {
            let value: Vec<u8> = (0..shape.record_size)
                .map(|_| {
                    // xorshift: cheap, deterministic, incompressible enough.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Printable bytes, so compressed codecs see text-like data.
                    b'a' + (state % 26) as u8
                })
                .collect();
            Record {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: index as i64,
                // The encoder starts a new batch whenever offset - sequence changes.
                sequence: index as i32,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from(value)),
                headers: Default::default(),
                delete_horizon: false,
            }
        })
        .collect();
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buffer,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: shape.compression,
        },
    )?;
    Ok(buffer.freeze())
}

/// A produce request frame for `partitions` of `topic`, each carrying `batch`.
pub fn encode_request(
    topic: &str,
    partitions: &[i32],
    batch: &Bytes,
    acks: i16,
) -> anyhow::Result<BytesMut> {
    let partition_data = partitions
        .iter()
        .map(|&partition| {
            PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.clone()))
        })
        .collect();
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(partition_data)]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(PRODUCE_VERSION)
        .with_client_id(Some(StrBytes::from_static_str("spate-bench")));
    spate_net::codec::encode_request(&header, ApiKey::Produce, &request)
}

/// Sets the correlation id of an encoded request frame.
pub fn set_correlation_id(frame: &mut [u8], correlation_id: i32) {
    frame[CORRELATION_ID_AT..CORRELATION_ID_AT + 4].copy_from_slice(&correlation_id.to_be_bytes());
}

/// Parses a compression name as the flags spell it.
pub fn parse_compression(name: &str) -> anyhow::Result<Compression> {
    Ok(match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => anyhow::bail!("unknown compression {other:?} (none, gzip, snappy, lz4, zstd)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_has_the_requested_shape_and_a_valid_crc() {
        let shape = BatchShape {
            record_size: 100,
            records_per_batch: 10,
            compression: Compression::None,
        };
        let mut batch = encode_batch(&shape, 7).unwrap();
        assert!(batch.len() > 1000);
        let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch).unwrap();
        assert_eq!(decoded.records.len(), 10);
        assert!(decoded
            .records
            .iter()
            .all(|record| record.value.as_ref().unwrap().len() == 100));
    }

    #[test]
    fn correlation_id_is_patched_in_place() {
        let shape = BatchShape {
            record_size: 10,
            records_per_batch: 1,
            compression: Compression::None,
        };
        let batch = encode_batch(&shape, 1).unwrap();
        let mut frame = encode_request("t", &[0, 1], &batch, -1).unwrap();
        set_correlation_id(&mut frame, 0x0102_0304);
        assert_eq!(&frame[8..12], &[1, 2, 3, 4]);
        let size = i32::from_be_bytes(frame[0..4].try_into().unwrap()) as usize;
        assert_eq!(size + 4, frame.len());
    }
}
