//! Kafka record batches (magic v2): a zero-copy view of the 61-byte header, the checks a broker
//! makes before accepting a producer's batch, and the lighter parse used on stored batches.
//!
//! The header is read through `zerocopy` big-endian field types rather than by hand-written
//! offsets, so the layout is declared once ([`BatchHeader`]) and checked at compile time.
//! Records themselves are never decoded here: the CRC-32C over `[21, end)` protects them,
//! compressed or not.

pub use crate::error::BatchError;
use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

/// Size of the v2 batch header (`RECORD_BATCH_OVERHEAD` in Kafka).
pub const HEADER_BYTES: usize = 61;
/// Bytes before the part that `batchLength` counts: `baseOffset` (8) and `batchLength` (4).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only record format Kafka 4 speaks.
pub const MAGIC_V2: i8 = 2;
/// The CRC-32C covers the batch from `attributes` (byte 21) to its end.
pub const CRC_COVERAGE_START: usize = 21;
/// Where `baseOffset` lives; the broker rewrites it (not covered by the CRC).
pub const BASE_OFFSET_BYTES: std::ops::Range<usize> = 0..8;
/// Where `partitionLeaderEpoch` lives; the broker rewrites it (not covered by the CRC).
pub const LEADER_EPOCH_BYTES: std::ops::Range<usize> = 12..16;

const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
const ATTRIBUTE_CONTROL: i16 = 0x20;
const COMPRESSION_CODEC_MAX: u8 = 4;
const MIN_BATCH_LENGTH: i32 = (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;

/// The 61-byte header of a v2 record batch, all fields big-endian, as it lies in memory.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Debug)]
#[repr(C)]
pub struct BatchHeader {
    /// Offset of the first record (assigned by the broker).
    pub base_offset: I64,
    /// Bytes after this field: total size minus 12.
    pub batch_length: I32,
    /// Leader epoch of the broker that appended the batch.
    pub partition_leader_epoch: I32,
    /// Record format: 2.
    pub magic: i8,
    /// CRC-32C (Castagnoli) over `[21, end)`.
    pub crc: U32,
    /// Codec (bits 0-2), timestamp type (3), transactional (4), control (5), delete horizon (6).
    pub attributes: I16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: I32,
    /// Timestamp of the first record.
    pub base_timestamp: I64,
    /// Largest timestamp in the batch.
    pub max_timestamp: I64,
    /// Idempotent producer id, or -1.
    pub producer_id: I64,
    /// Producer epoch, or -1.
    pub producer_epoch: I16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: I32,
    /// Number of records.
    pub records_count: I32,
}

const _: () = assert!(std::mem::size_of::<BatchHeader>() == HEADER_BYTES);
const _: () = assert!(std::mem::offset_of!(BatchHeader, attributes) == CRC_COVERAGE_START);
const _: () = assert!(std::mem::offset_of!(BatchHeader, partition_leader_epoch) == 12);

impl BatchHeader {
    /// Views the first 61 bytes of `bytes` as a header, or `None` if there are fewer.
    pub fn view(bytes: &[u8]) -> Option<&BatchHeader> {
        BatchHeader::ref_from_prefix(bytes)
            .ok()
            .map(|(header, _rest)| header)
    }

    /// Total size of the batch in bytes as its `batchLength` claims (may be nonsense).
    fn claimed_total_bytes(&self) -> i64 {
        self.batch_length.get() as i64 + LOG_OVERHEAD_BYTES as i64
    }
}

/// What the storage and the engine need to know about one batch, read from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    /// Number of records (`recordsCount`).
    pub record_count: i32,
    /// `lastOffsetDelta`: the batch covers offsets `base_offset ..= base_offset + delta`.
    pub last_offset_delta: i32,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record.
    pub base_sequence: i32,
    /// Raw attributes.
    pub attributes: i16,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Timestamp of the first record (`baseTimestamp`).
    pub first_timestamp: i64,
    /// Whole size of the batch in bytes, header included.
    pub batch_bytes: usize,
    /// `baseOffset` as stored in the bytes (meaningful for stored batches only).
    pub base_offset: i64,
    /// `partitionLeaderEpoch` as stored in the bytes (meaningful for stored batches only).
    pub partition_leader_epoch: i32,
    /// For a stored control batch holding a transaction marker, which one (read from its
    /// record's key); `None` for every other batch, and for batches described from their
    /// header alone (client batches, which may not be control batches).
    pub marker: Option<crate::txn::TxnMarker>,
}

impl BatchInfo {
    fn from_header(header: &BatchHeader, batch_bytes: usize) -> BatchInfo {
        BatchInfo {
            record_count: header.records_count.get(),
            last_offset_delta: header.last_offset_delta.get(),
            producer_id: header.producer_id.get(),
            producer_epoch: header.producer_epoch.get(),
            base_sequence: header.base_sequence.get(),
            attributes: header.attributes.get(),
            max_timestamp: header.max_timestamp.get(),
            first_timestamp: header.base_timestamp.get(),
            batch_bytes,
            base_offset: header.base_offset.get(),
            partition_leader_epoch: header.partition_leader_epoch.get(),
            marker: None,
        }
    }

    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd (validated batches only).
    pub fn compression(&self) -> u8 {
        (self.attributes & ATTRIBUTE_COMPRESSION_MASK) as u8
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }

    /// Offset of the last record of a stored batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Sequence number of the last record, wrapping past `i32::MAX` to 0 as Kafka does
    /// (`DefaultRecordBatch.incrementSequence`).
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0.
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    assert!(sequence >= 0 && increment >= 0);
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// Validates exactly one client-sent batch occupying all of `bytes`.
///
/// Checks, in Kafka's order: the header is complete; magic is 2; `batchLength` matches the
/// bytes received; the size is within `max_message_bytes`; the CRC-32C over `[21, end)`
/// matches; `lastOffsetDelta + 1 == recordsCount > 0`; the codec is known; the control bit is
/// unset; a producer id comes with a sequence.
pub fn validate_client_batch(
    bytes: &[u8],
    max_message_bytes: u32,
) -> Result<BatchInfo, BatchError> {
    validate_client_parts(&[bytes], max_message_bytes)
}

/// [`validate_client_batch`] for a batch that lies in several pieces of memory, in order (a
/// batch received straight into DMA chunks). The header may span pieces.
pub fn validate_client_parts(
    parts: &[&[u8]],
    max_message_bytes: u32,
) -> Result<BatchInfo, BatchError> {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    let Some(header_bytes) = copy_header(parts) else {
        return Err(BatchError::Corrupt(
            "batch is shorter than the 61-byte header",
        ));
    };
    let Some(header) = BatchHeader::view(&header_bytes) else {
        unreachable!("copy_header returns HEADER_BYTES bytes")
    };
    if header.magic != MAGIC_V2 {
        return Err(BatchError::InvalidRecord("record batch magic is not 2"));
    }
    let claimed = header.claimed_total_bytes();
    if header.batch_length.get() < MIN_BATCH_LENGTH || claimed > total as i64 {
        return Err(BatchError::Corrupt(
            "batchLength does not match the bytes received",
        ));
    }
    if claimed < total as i64 {
        return Err(BatchError::InvalidRecord(
            "more than one record batch in a partition",
        ));
    }
    if total > max_message_bytes as usize {
        return Err(BatchError::TooLarge {
            size: total,
            max: max_message_bytes,
        });
    }
    if crc_of_parts(parts, CRC_COVERAGE_START) != header.crc.get() {
        return Err(BatchError::Corrupt("CRC-32C mismatch"));
    }
    let info = BatchInfo::from_header(header, total);
    if info.record_count <= 0 || info.last_offset_delta as i64 + 1 != info.record_count as i64 {
        return Err(BatchError::InvalidRecord(
            "recordsCount disagrees with lastOffsetDelta",
        ));
    }
    if info.compression() > COMPRESSION_CODEC_MAX {
        return Err(BatchError::InvalidRecord("unknown compression codec"));
    }
    if info.is_control() {
        return Err(BatchError::InvalidRecord(
            "producers may not send control batches",
        ));
    }
    if info.producer_id >= 0 && info.base_sequence < 0 {
        return Err(BatchError::InvalidRecord(
            "idempotent batch without a base sequence",
        ));
    }
    Ok(info)
}

/// A batch's bytes as pieces of memory, in order; most batches fit in a few DMA chunks.
pub type Parts<'bytes> = smallvec::SmallVec<[&'bytes [u8]; 8]>;

/// The first [`HEADER_BYTES`] of a batch in pieces, or `None` if there are fewer.
pub(crate) fn copy_header(parts: &[&[u8]]) -> Option<[u8; HEADER_BYTES]> {
    let mut header = [0u8; HEADER_BYTES];
    let mut filled = 0;
    for part in parts {
        let take = part.len().min(HEADER_BYTES - filled);
        header[filled..filled + take].copy_from_slice(&part[..take]);
        filled += take;
        if filled == HEADER_BYTES {
            return Some(header);
        }
    }
    None
}

/// CRC-32C of the bytes of `parts` (taken in order as one run) from `start` on.
fn crc_of_parts(parts: &[&[u8]], start: usize) -> u32 {
    parts_after(parts, start)
        .iter()
        .fold(0, |crc, part| crc32c::crc32c_append(crc, part))
}

/// The bytes of `parts` (taken in order as one run) from `start` on, as pieces.
pub(crate) fn parts_after<'bytes>(parts: &[&'bytes [u8]], start: usize) -> Parts<'bytes> {
    let mut skip = start;
    let mut rest = Parts::new();
    for part in parts {
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        rest.push(&part[skip..]);
        skip = 0;
    }
    rest
}

/// Attributes bit that marks LogAppendTime batches.
pub const TIMESTAMP_TYPE_LOG_APPEND_TIME: i16 = 1 << 3;
/// Where the attributes and maxTimestamp sit in the header.
const ATTRIBUTES_BYTES: std::ops::Range<usize> = 21..23;
const MAX_TIMESTAMP_BYTES: std::ops::Range<usize> = 35..43;
const CRC_BYTES: std::ops::Range<usize> = 17..21;

/// Marks a batch as LogAppendTime stamped at `now_ms`: sets attributes bit 3 and
/// maxTimestamp, and recomputes the CRC over the patched header and the unchanged records
/// (Kafka's `DefaultRecordBatch.setMaxTimestamp`). Returns `now_ms`.
pub fn stamp_log_append_time(header: &mut [u8; HEADER_BYTES], records: &[u8], now_ms: i64) -> i64 {
    stamp_log_append_time_parts(header, &[records], now_ms)
}

/// [`stamp_log_append_time`] for records that lie in several pieces, in order.
pub(crate) fn stamp_log_append_time_parts(
    header: &mut [u8; HEADER_BYTES],
    records: &[&[u8]],
    now_ms: i64,
) -> i64 {
    let attributes = i16::from_be_bytes([header[21], header[22]]) | TIMESTAMP_TYPE_LOG_APPEND_TIME;
    header[ATTRIBUTES_BYTES].copy_from_slice(&attributes.to_be_bytes());
    header[MAX_TIMESTAMP_BYTES].copy_from_slice(&now_ms.to_be_bytes());
    let crc = records.iter().fold(
        crc32c::crc32c(&header[CRC_COVERAGE_START..]),
        |crc, part| crc32c::crc32c_append(crc, part),
    );
    header[CRC_BYTES].copy_from_slice(&crc.to_be_bytes());
    now_ms
}

/// Parses the stored batch at the start of `bytes` (more bytes may follow it), checking the
/// header and the CRC but none of the rules that apply to producers only (control batches and
/// compacted batches are legal here).
///
/// Returns `None` if the bytes hold no complete, intact batch: too short, a `batchLength` that
/// runs past the end, a bad magic, or a CRC mismatch. Recovery stops there.
pub fn parse_stored_batch(bytes: &[u8]) -> Option<BatchInfo> {
    match peek_stored_batch(bytes) {
        StoredBatch::Complete(info) => Some(info),
        StoredBatch::Incomplete { .. } | StoredBatch::Invalid => None,
    }
}

/// What lies at the start of a buffer of stored bytes, for readers that fetch more bytes when
/// a batch is cut by the end of their buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoredBatch {
    /// An intact batch (CRC checked).
    Complete(BatchInfo),
    /// The buffer ends inside the batch, which needs this many bytes in all (61 when even the
    /// header is cut, so ask again once it is read).
    Incomplete { batch_bytes: usize },
    /// Not a batch: zeros, garbage, or a CRC mismatch.
    Invalid,
}

/// Like [`parse_stored_batch`], telling an incomplete batch from an invalid one.
pub(crate) fn peek_stored_batch(bytes: &[u8]) -> StoredBatch {
    peek(bytes, true)
}

/// The same without the CRC check, for reads of synced data that the consumer checks anyway
/// (Kafka does not verify CRCs on fetch either).
pub(crate) fn peek_stored_header(bytes: &[u8]) -> StoredBatch {
    peek(bytes, false)
}

fn peek(bytes: &[u8], verify_crc: bool) -> StoredBatch {
    let Some(header) = BatchHeader::view(bytes) else {
        return StoredBatch::Incomplete {
            batch_bytes: HEADER_BYTES,
        };
    };
    if header.magic != MAGIC_V2 || header.batch_length.get() < MIN_BATCH_LENGTH {
        return StoredBatch::Invalid;
    }
    let batch_bytes = header.claimed_total_bytes() as usize;
    if batch_bytes > bytes.len() {
        return StoredBatch::Incomplete { batch_bytes };
    }
    if verify_crc && crc32c::crc32c(&bytes[CRC_COVERAGE_START..batch_bytes]) != header.crc.get() {
        return StoredBatch::Invalid;
    }
    let mut info = BatchInfo::from_header(header, batch_bytes);
    if info.last_offset_delta < 0 || info.record_count < 0 || info.base_offset < 0 {
        return StoredBatch::Invalid;
    }
    if info.is_control() {
        // Two dozen bytes; read so that recovery and followers know a commit from an abort.
        info.marker = crate::txn::marker_of(&bytes[HEADER_BYTES..batch_bytes]);
    }
    StoredBatch::Complete(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encode_batch, BatchSpec};
    use proptest::prelude::*;

    const MAX: u32 = 1_048_588;

    fn fix_crc(bytes: &mut [u8]) {
        let crc = crc32c::crc32c(&bytes[CRC_COVERAGE_START..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn accepts_a_hand_built_batch() {
        let bytes = encode_batch(&BatchSpec::records(3, 10));
        let info = validate_client_batch(&bytes, MAX).unwrap();
        assert_eq!(info.record_count, 3);
        assert_eq!(info.last_offset_delta, 2);
        assert_eq!(info.batch_bytes, bytes.len());
        assert_eq!(info.producer_id, -1);
        assert_eq!(info.compression(), 0);
        assert!(!info.is_control() && !info.is_transactional());
        assert_eq!(parse_stored_batch(&bytes), Some(info));
    }

    #[test]
    fn accepts_batches_from_the_kafka_protocol_encoder() {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let records: Vec<Record> = (0..5)
                .map(|sequence| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: 7,
                    producer_epoch: 1,
                    timestamp_type: TimestampType::Creation,
                    offset: sequence as i64,
                    sequence,
                    timestamp: 1_700_000_000_000 + sequence as i64,
                    key: Some(bytes::Bytes::from(format!("key-{sequence}"))),
                    value: Some(bytes::Bytes::from(vec![sequence as u8; 100])),
                    headers: Default::default(),
                })
                .collect();
            let mut encoded = bytes::BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression,
            };
            RecordBatchEncoder::encode(&mut encoded, &records, &options).unwrap();
            let info = validate_client_batch(&encoded, MAX).unwrap();
            assert_eq!(info.record_count, 5);
            assert_eq!(info.producer_id, 7);
            assert_eq!(info.producer_epoch, 1);
            assert_eq!(info.base_sequence, 0);
            assert_eq!(info.last_sequence(), 4);
            assert_eq!(info.max_timestamp, 1_700_000_000_004);
            assert_eq!(info.compression() != 0, compression != Compression::None);
        }
    }

    #[test]
    fn rejects_each_defect_with_its_variant() {
        let good = encode_batch(&BatchSpec::records(2, 20));

        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0x01;
        assert_eq!(
            validate_client_batch(&bad_crc, MAX),
            Err(BatchError::Corrupt("CRC-32C mismatch"))
        );

        let mut wrong_magic = good.clone();
        wrong_magic[16] = 1;
        assert!(matches!(
            validate_client_batch(&wrong_magic, MAX),
            Err(BatchError::InvalidRecord(_))
        ));

        let mut lying_long = good.clone();
        let length = i32::from_be_bytes(lying_long[8..12].try_into().unwrap());
        lying_long[8..12].copy_from_slice(&(length + 1).to_be_bytes());
        assert!(matches!(
            validate_client_batch(&lying_long, MAX),
            Err(BatchError::Corrupt(_))
        ));

        let mut lying_short = good.clone();
        lying_short[8..12].copy_from_slice(&(length - 1).to_be_bytes());
        assert!(matches!(
            validate_client_batch(&lying_short, MAX),
            Err(BatchError::InvalidRecord(_))
        ));

        assert!(matches!(
            validate_client_batch(&good[..good.len() - 1], MAX),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(
            validate_client_batch(&good[..40], MAX),
            Err(BatchError::Corrupt(_))
        ));

        let mut count_mismatch = good.clone();
        count_mismatch[57..61].copy_from_slice(&3i32.to_be_bytes());
        fix_crc(&mut count_mismatch);
        assert!(matches!(
            validate_client_batch(&count_mismatch, MAX),
            Err(BatchError::InvalidRecord(_))
        ));

        let mut control = good.clone();
        control[22] |= 0x20;
        fix_crc(&mut control);
        assert_eq!(
            validate_client_batch(&control, MAX),
            Err(BatchError::InvalidRecord(
                "producers may not send control batches"
            ))
        );
        assert!(
            parse_stored_batch(&control).is_some(),
            "stored control batches are legal"
        );

        let mut no_sequence = encode_batch(&BatchSpec::records(2, 20).producer(5, 0, 0));
        no_sequence[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut no_sequence);
        assert!(matches!(
            validate_client_batch(&no_sequence, MAX),
            Err(BatchError::InvalidRecord(_))
        ));

        let mut unknown_codec = good.clone();
        unknown_codec[22] |= 0x07;
        fix_crc(&mut unknown_codec);
        assert!(matches!(
            validate_client_batch(&unknown_codec, MAX),
            Err(BatchError::InvalidRecord(_))
        ));

        let size = good.len();
        assert_eq!(
            validate_client_batch(&good, size as u32 - 1),
            Err(BatchError::TooLarge {
                size,
                max: size as u32 - 1
            })
        );
        assert!(validate_client_batch(&good, size as u32).is_ok());
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn stored_parse_reports_incomplete_batches() {
        let bytes = encode_batch(&BatchSpec::records(4, 30));
        assert_eq!(
            peek_stored_batch(&bytes[..30]),
            StoredBatch::Incomplete {
                batch_bytes: HEADER_BYTES
            }
        );
        assert_eq!(
            peek_stored_batch(&bytes[..bytes.len() - 1]),
            StoredBatch::Incomplete {
                batch_bytes: bytes.len()
            }
        );
        assert_eq!(peek_stored_batch(&[0u8; 100]), StoredBatch::Invalid);
        let mut followed = bytes.clone();
        followed.extend_from_slice(&[0xAB; 17]);
        assert_eq!(
            parse_stored_batch(&followed).map(|info| info.batch_bytes),
            Some(bytes.len())
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = validate_client_batch(&bytes, MAX);
            let _ = parse_stored_batch(&bytes);
        }

        #[test]
        fn damaged_real_batches_never_panic(
            position in 0usize..200,
            value in any::<u8>(),
            cut in 0usize..200,
        ) {
            let mut bytes = encode_batch(&BatchSpec::records(3, 40));
            let position = position % bytes.len();
            bytes[position] = value;
            bytes.truncate(cut.max(1).min(bytes.len()));
            let _ = validate_client_batch(&bytes, MAX);
            let _ = parse_stored_batch(&bytes);
        }
    }

    #[test]
    fn log_append_time_stamp_keeps_the_batch_valid() {
        let original = encode_batch(&BatchSpec::records(3, 10));
        let mut header = [0u8; HEADER_BYTES];
        header.copy_from_slice(&original[..HEADER_BYTES]);
        stamp_log_append_time(&mut header, &original[HEADER_BYTES..], 1_234_567);
        let mut stamped = header.to_vec();
        stamped.extend_from_slice(&original[HEADER_BYTES..]);
        let info = validate_client_batch(&stamped, u32::MAX).expect("still valid");
        assert_eq!(info.max_timestamp, 1_234_567);
        assert_ne!(info.attributes & TIMESTAMP_TYPE_LOG_APPEND_TIME, 0);
    }
}
