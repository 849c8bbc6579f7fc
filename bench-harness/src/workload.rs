//! Pre-encoded produce requests, so that the generator spends its time on the socket and
//! not on encoding: each connection encodes its request once and only patches the
//! correlation id before each send.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use spate_net::records::{encode_batch as encode_records, now_ms, plain_record};

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
    /// Record keys.
    pub keys: Keys,
}

/// How records are keyed (`--keys`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// No key.
    None,
    /// A key drawn at random from this many distinct keys.
    Random(u64),
    /// Keys 0, 1, 2, ... in record order.
    Sequential,
}

impl Keys {
    /// Parses `none`, `random:N` or `sequential`.
    pub fn parse(text: &str) -> anyhow::Result<Keys> {
        Ok(match text {
            "none" => Keys::None,
            "sequential" => Keys::Sequential,
            other => match other.strip_prefix("random:").map(str::parse::<u64>) {
                Some(Ok(count)) if count > 0 => Keys::Random(count),
                _ => anyhow::bail!("--keys takes none, sequential or random:N, not {other:?}"),
            },
        })
    }
}

/// Encodes one record batch of `shape` with the shared builder ([`spate_net::records`]).
/// Values are pseudo-random bytes (so compression has realistic work); keys are 16
/// printable bytes when `shape.keys` asks for them. Every record carries the wall-clock
/// time of encoding (a batch is encoded once and sent for the whole run), so brokers that
/// enforce time-based retention keep what the run writes.
pub fn encode_batch(shape: &BatchShape, seed: u64) -> anyhow::Result<Bytes> {
    let mut state = seed | 1;
    let mut next_random = move || {
        // xorshift: cheap, deterministic, incompressible enough.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let timestamp_ms = now_ms();
    let records: Vec<_> = (0..shape.records_per_batch)
        .map(|index| {
            let key = match shape.keys {
                Keys::None => None,
                Keys::Random(count) => Some(next_random() % count),
                Keys::Sequential => Some(seed.wrapping_mul(1 << 32) + index as u64),
            }
            .map(|key| Bytes::from(format!("key-{key:012}")));
            let value: Vec<u8> = (0..shape.record_size)
                // Printable bytes, so compressed codecs see text-like data.
                .map(|_| b'a' + (next_random() % 26) as u8)
                .collect();
            plain_record(index, key, Some(Bytes::from(value)), timestamp_ms)
        })
        .collect();
    Ok(encode_records(&records, shape.compression)?.freeze())
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

/// Where the record values of every batch sit in a request frame, so the end-to-end mode
/// can stamp each value with its send time and refresh each batch's CRC before a send.
#[derive(Clone, Debug, Default)]
pub struct StampPlan {
    /// (start, end) of each batch in the frame.
    batches: Vec<(usize, usize)>,
    /// Value starts relative to a batch start (the same for every batch: they are copies).
    values: Vec<usize>,
}

impl StampPlan {
    /// Finds the copies of `batch` in `frame`. Every value must hold a whole stamp.
    pub fn find(frame: &[u8], batch: &[u8]) -> anyhow::Result<StampPlan> {
        let mut values = Vec::new();
        let mut too_short = false;
        crate::records::BatchView { bytes: batch }.for_each_value(|start, len| {
            too_short |= len < crate::records::STAMP_BYTES;
            values.push(start);
        })?;
        if too_short {
            anyhow::bail!("end-to-end records need values of at least 8 bytes");
        }
        let mut batches = Vec::new();
        let mut at = 0;
        while at + batch.len() <= frame.len() {
            if frame[at..at + batch.len()] == *batch {
                batches.push((at, at + batch.len()));
                at += batch.len();
            } else {
                at += 1;
            }
        }
        Ok(StampPlan { batches, values })
    }

    /// Copies of the batch found in the frame.
    pub fn batch_count(&self) -> usize {
        self.batches.len()
    }

    /// Writes `stamp` into every value and refreshes every batch's CRC.
    pub fn stamp(&self, frame: &mut [u8], stamp: u64) {
        for &(start, end) in &self.batches {
            let batch = &mut frame[start..end];
            for &value in &self.values {
                batch[value..value + crate::records::STAMP_BYTES]
                    .copy_from_slice(&stamp.to_be_bytes());
            }
            crate::records::refresh_crc(batch);
        }
    }
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
            keys: Keys::Sequential,
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
            keys: Keys::None,
        };
        let batch = encode_batch(&shape, 1).unwrap();
        let mut frame = encode_request("t", &[0, 1], &batch, -1).unwrap();
        set_correlation_id(&mut frame, 0x0102_0304);
        assert_eq!(&frame[8..12], &[1, 2, 3, 4]);
        let size = i32::from_be_bytes(frame[0..4].try_into().unwrap()) as usize;
        assert_eq!(size + 4, frame.len());
    }

    #[test]
    fn stamp_plan_finds_every_partition_copy() {
        let shape = BatchShape {
            record_size: 16,
            records_per_batch: 4,
            compression: Compression::None,
            keys: Keys::None,
        };
        let batch = encode_batch(&shape, 5).unwrap();
        let mut frame = encode_request("t", &[0, 1, 2], &batch, -1).unwrap();
        let plan = StampPlan::find(&frame, &batch).unwrap();
        assert_eq!(plan.batch_count(), 3);
        plan.stamp(&mut frame, 77);
        let request = spate_net::Request::decode_header(frame.freeze().slice(4..)).unwrap();
        let kafka_protocol::messages::RequestKind::Produce(produce) =
            request.decode_body().unwrap()
        else {
            panic!("not a produce request");
        };
        for partition in &produce.topic_data[0].partition_data {
            let mut records = partition.records.clone().unwrap();
            let decoded =
                kafka_protocol::records::RecordBatchDecoder::decode(&mut records).unwrap();
            for record in decoded.records {
                let value = record.value.unwrap();
                assert_eq!(crate::records::read_stamp(&value), Some(77));
            }
        }
    }

    #[test]
    fn keys_parse() {
        assert_eq!(Keys::parse("none").unwrap(), Keys::None);
        assert_eq!(Keys::parse("random:10").unwrap(), Keys::Random(10));
        assert!(Keys::parse("random:0").is_err());
        assert!(Keys::parse("bogus").is_err());
    }
}
