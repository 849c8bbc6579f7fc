//! Record batches on the client side: encoding one v2 batch per partition, cutting fetched
//! bytes into whole batches, and Kafka's default partitioner.

use anyhow::Context;
use bytes::{Buf, Bytes};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};
use spate_net::records::{plain_record, with_header};

/// Bytes of a batch header before the records (`RECORD_BATCH_OVERHEAD`).
const BATCH_HEADER_BYTES: usize = 61;
/// baseOffset (8) + batchLength (4): the part of a batch its length does not count.
const LOG_OVERHEAD_BYTES: usize = 12;

/// A record to produce.
pub struct OutgoingRecord {
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    /// Create time, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// Headers, in order.
    pub headers: Vec<(String, Bytes)>,
}

/// An idempotent producer's identity and the sequence number of a batch's first record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequenced {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// Encodes `records` as exactly one v2 batch: without a producer id (baseSequence -1) as a
/// non-idempotent Java producer writes it, or, when `sequenced` is given, with its
/// producer id and epoch, and sequence numbers from `base_sequence` on (which must not pass
/// `i32::MAX`: the CLI's producer stops first, 2^31 records being beyond any CLI run).
pub fn encode_batch(
    records: &[OutgoingRecord],
    compression: Compression,
    sequenced: Option<Sequenced>,
) -> anyhow::Result<Bytes> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    if let Some(sequenced) = sequenced {
        assert!(
            sequenced.base_sequence >= 0
                && i64::from(sequenced.base_sequence) + records.len() as i64 <= i64::from(i32::MAX),
            "sequence numbers of a batch stay below i32::MAX"
        );
    }
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let plain = plain_record(
                index,
                record.key.clone(),
                Some(record.value.clone()),
                record.timestamp_ms,
            );
            let mut record = record.headers.iter().fold(plain, |with, (key, value)| {
                with_header(with, key, Some(value.clone()))
            });
            if let Some(sequenced) = sequenced {
                // The encoder takes the batch's baseSequence from the first record and keeps
                // one batch while offset - sequence stays the same.
                record.producer_id = sequenced.producer_id;
                record.producer_epoch = sequenced.producer_epoch;
                record.sequence = sequenced.base_sequence + index as i32;
            }
            record
        })
        .collect();
    Ok(spate_net::records::encode_batch(&records, compression)?.freeze())
}

/// A record read from a fetch response.
pub struct IncomingRecord {
    /// Its offset in the partition.
    pub offset: i64,
    /// Create or log-append time, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value, if any (a tombstone has none).
    pub value: Option<Bytes>,
    /// The headers, in order (a header's value may be null).
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// The data records of the whole batches in fetched bytes (a fetch response may end with a
/// truncated batch, which is left for the next fetch), and the offset after the last whole
/// batch (`None` when there is none). Control records (transaction markers) are skipped.
pub fn decode_fetched(records: &Bytes) -> anyhow::Result<(Vec<IncomingRecord>, Option<i64>)> {
    let mut out = Vec::new();
    let mut next_offset = None;
    let mut rest = records.clone();
    while rest.len() >= LOG_OVERHEAD_BYTES {
        let base_offset = (&rest[0..8]).get_i64();
        let length = (&rest[8..12]).get_i32();
        let total = LOG_OVERHEAD_BYTES as i64 + i64::from(length);
        if length < 0 || (rest.len() as i64) < total {
            break;
        }
        let mut batch = rest.split_to(total as usize);
        if batch.len() < BATCH_HEADER_BYTES {
            anyhow::bail!(
                "a fetched batch is {} bytes, shorter than its header",
                batch.len()
            );
        }
        let last_offset_delta = (&batch[23..27]).get_i32();
        next_offset = Some(base_offset + i64::from(last_offset_delta) + 1);
        let set = RecordBatchDecoder::decode(&mut batch)
            .with_context(|| format!("cannot decode the batch at offset {base_offset}"))?;
        out.extend(
            set.records
                .into_iter()
                .filter(|record| !record.control)
                .map(|record| IncomingRecord {
                    offset: record.offset,
                    timestamp_ms: record.timestamp,
                    key: record.key,
                    value: record.value,
                    headers: record
                        .headers
                        .into_iter()
                        .map(|(key, value)| (key.to_string(), value))
                        .collect(),
                }),
        );
    }
    Ok((out, next_offset))
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut hash: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M);
        hash ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        hash ^= u32::from(tail[0]);
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^= hash >> 15;
    hash as i32
}

/// The partition the Java client's default partitioner picks for a keyed record:
/// `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                *expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn keyed_partition_is_non_negative() {
        for key in ["21", "foobar", "abc", ""] {
            let partition = partition_for_key(key.as_bytes(), 7);
            assert!((0..7).contains(&partition));
        }
    }

    fn outgoing(count: usize) -> Vec<OutgoingRecord> {
        (0..count)
            .map(|index| OutgoingRecord {
                key: (index % 2 == 0).then(|| Bytes::from(format!("k{index}"))),
                value: Bytes::from(format!("value-{index}")),
                timestamp_ms: 1_700_000_000_000 + index as i64,
                headers: vec![("h".into(), Bytes::from(format!("{index}")))],
            })
            .collect()
    }

    #[test]
    fn many_records_encode_as_exactly_one_batch_without_a_producer() {
        for compression in [Compression::None, Compression::Gzip] {
            let bytes = encode_batch(&outgoing(500), compression, None).unwrap();
            let infos = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
            assert_eq!(infos.len(), 1);
            assert_eq!(infos[0].record_count, 500);
            assert_eq!(infos[0].producer_id, -1);
            assert_eq!(infos[0].base_sequence, -1);
        }
    }

    #[test]
    fn an_idempotent_batch_carries_its_producer_and_sequences() {
        let sequenced = Sequenced {
            producer_id: 42,
            producer_epoch: 3,
            base_sequence: 100,
        };
        let bytes = encode_batch(&outgoing(7), Compression::Lz4, Some(sequenced)).unwrap();
        let infos = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
        assert_eq!(infos.len(), 1, "one batch");
        assert_eq!(
            (
                infos[0].producer_id,
                infos[0].producer_epoch,
                infos[0].base_sequence
            ),
            (42, 3, 100)
        );
        assert_eq!(infos[0].record_count, 7);
    }

    #[test]
    fn decoding_keeps_whole_batches_and_leaves_a_truncated_tail() {
        let first = encode_batch(&outgoing(3), Compression::None, None).unwrap();
        let mut second =
            BytesMut::from(&encode_batch(&outgoing(2), Compression::None, None).unwrap()[..]);
        // A broker assigns offsets: the second batch starts at 3.
        second[0..8].copy_from_slice(&3i64.to_be_bytes());
        let mut joined = BytesMut::new();
        joined.extend_from_slice(&first);
        joined.extend_from_slice(&second);
        let whole = joined.clone().freeze();
        let (records, next) = decode_fetched(&whole).unwrap();
        assert_eq!(
            records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(next, Some(5));
        assert_eq!(records[0].key.as_deref(), Some(&b"k0"[..]));
        assert_eq!(records[1].key, None);
        assert_eq!(
            records[1].headers,
            vec![("h".to_string(), Some(Bytes::from_static(b"1")))]
        );

        let truncated = joined.freeze().slice(..first.len() + 20);
        let (records, next) = decode_fetched(&truncated).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(next, Some(3));
    }
}
