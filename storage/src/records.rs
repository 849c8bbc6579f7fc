//! The records inside a v2 batch, read in place: enough of each record (its extent, offset and
//! timestamp deltas, key, whether it is a tombstone) to check keys on compacted topics and to
//! filter records during compaction without decoding values or headers.
//!
//! A record is `length varint` followed by `attributes i8, timestampDelta varlong,
//! offsetDelta varint, keyLength varint, key, valueLength varint, value, headers`; varints are
//! zigzag-encoded. A compressed batch's records section is one compressed blob: it is
//! decompressed whole ([`decompress`]) and recompressed with the same codec ([`compress`]).

use crate::batch::{BatchInfo, HEADER_BYTES};
use crate::error::BatchError;
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use std::borrow::Cow;

/// One record of a batch, borrowed from the (decompressed) records section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawRecord<'a> {
    /// The whole record, its length prefix included: copying these bytes into a batch with the
    /// same base offset and base timestamp keeps the record as it was.
    pub bytes: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    /// `None` for a record without a key.
    pub key: Option<&'a [u8]>,
    /// The value is null: a tombstone on a compacted topic.
    pub tombstone: bool,
}

/// Reads a zigzag varint of at most `max_bytes` bytes (5 for varint, 10 for varlong).
pub(crate) fn read_varint(bytes: &mut &[u8], max_bytes: usize) -> Option<i64> {
    let mut value: u64 = 0;
    for (number, &byte) in bytes.iter().enumerate().take(max_bytes) {
        value |= ((byte & 0x7f) as u64) << (7 * number);
        if byte & 0x80 == 0 {
            *bytes = &bytes[number + 1..];
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// A length-prefixed optional byte string (`-1` is null).
pub(crate) fn read_nullable<'a>(bytes: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let length = read_varint(bytes, 5)?;
    if length < 0 {
        return Some(None);
    }
    let length = usize::try_from(length).ok()?;
    let (value, rest) = (bytes.get(..length)?, bytes.get(length..)?);
    *bytes = rest;
    Some(Some(value))
}

fn parse_record(bytes: &[u8]) -> Option<RawRecord<'_>> {
    let mut cursor = bytes;
    let length = usize::try_from(read_varint(&mut cursor, 5)?).ok()?;
    let prefix = bytes.len() - cursor.len();
    let record = bytes.get(..prefix + length)?;
    let mut body = &record[prefix..];
    let (_attributes, rest) = body.split_first()?;
    body = rest;
    let timestamp_delta = read_varint(&mut body, 10)?;
    let offset_delta = i32::try_from(read_varint(&mut body, 5)?).ok()?;
    let key = read_nullable(&mut body)?;
    let value = read_nullable(&mut body)?;
    Some(RawRecord {
        bytes: record,
        timestamp_delta,
        offset_delta,
        key,
        tombstone: value.is_none(),
    })
}

/// The records of an uncompressed records section, in order. Stops with an error at the first
/// record that does not parse; trailing bytes after `count` records are an error too.
pub(crate) fn iterate(
    section: &[u8],
    count: i32,
) -> impl Iterator<Item = Result<RawRecord<'_>, BatchError>> {
    let mut rest = section;
    let mut remaining = count.max(0);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        if remaining == 0 {
            if rest.is_empty() {
                return None;
            }
            failed = true;
            return Some(Err(BatchError::InvalidRecord(
                "bytes after the last record of the batch",
            )));
        }
        match parse_record(rest) {
            Some(record) => {
                rest = &rest[record.bytes.len()..];
                remaining -= 1;
                Some(Ok(record))
            }
            None => {
                failed = true;
                Some(Err(BatchError::InvalidRecord("a record does not parse")))
            }
        }
    })
}

/// The records section of a whole batch, decompressed if the batch is compressed.
pub(crate) fn records_section<'a>(
    batch: &'a [u8],
    info: &BatchInfo,
) -> Result<Cow<'a, [u8]>, BatchError> {
    let section = &batch[HEADER_BYTES..info.batch_bytes];
    match info.compression() {
        0 => Ok(Cow::Borrowed(section)),
        codec => Ok(Cow::Owned(decompress(codec, section)?.to_vec())),
    }
}

/// Decompresses a records section compressed with Kafka's `codec` (1 gzip, 2 snappy, 3 lz4,
/// 4 zstd).
pub(crate) fn decompress(codec: u8, compressed: &[u8]) -> Result<Bytes, BatchError> {
    fn run<D: Decompressor<Bytes, Buf = Bytes>>(compressed: &[u8]) -> anyhow::Result<Bytes> {
        let mut input = Bytes::copy_from_slice(compressed);
        D::decompress(&mut input, |output| {
            Ok(output.copy_to_bytes(output.remaining()))
        })
    }
    let decompressed = match codec {
        1 => run::<Gzip>(compressed),
        2 => run::<Snappy>(compressed),
        3 => run::<Lz4>(compressed),
        4 => run::<Zstd>(compressed),
        _ => return Err(BatchError::InvalidRecord("unknown compression codec")),
    };
    decompressed.map_err(|_| BatchError::Corrupt("the records do not decompress"))
}

/// Compresses a records section with Kafka's `codec`, as [`decompress`] reads it.
pub(crate) fn compress(codec: u8, raw: &[u8]) -> Result<BytesMut, BatchError> {
    fn run<C: Compressor<BytesMut, BufMut = BytesMut>>(raw: &[u8]) -> anyhow::Result<BytesMut> {
        let mut output = BytesMut::with_capacity(raw.len() / 2 + 64);
        C::compress(&mut output, |input| {
            input.extend_from_slice(raw);
            Ok(())
        })?;
        Ok(output)
    }
    let compressed = match codec {
        1 => run::<Gzip>(raw),
        2 => run::<Snappy>(raw),
        3 => run::<Lz4>(raw),
        4 => run::<Zstd>(raw),
        _ => return Err(BatchError::InvalidRecord("unknown compression codec")),
    };
    compressed.map_err(|_| BatchError::InvalidRecord("the records do not compress"))
}

/// Refuses a producer's batch that holds a record without a key: on a compacted topic such a
/// record could never be cleaned (Kafka answers INVALID_RECORD too).
pub(crate) fn check_keys(batch: &[u8], info: &BatchInfo) -> Result<(), BatchError> {
    let section = records_section(batch, info)?;
    let mut keyless = Vec::new();
    for (index, record) in iterate(&section, info.record_count).enumerate() {
        if record?.key.is_none() {
            keyless.push(index as i32);
        }
    }
    if keyless.is_empty() {
        return Ok(());
    }
    Err(BatchError::InvalidRecords {
        reason: "compacted topic cannot accept a record without a key",
        records: keyless,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::validate_client_batch;
    use crate::testing::{encode_keyed, KeyValue};
    use kafka_protocol::records::Compression;

    /// A record's key and value, borrowed.
    type Pair<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    fn encode(records: &[Pair<'_>], codec: Compression) -> Bytes {
        let owned: Vec<KeyValue> = records
            .iter()
            .map(|(key, value)| (key.map(<[u8]>::to_vec), value.map(<[u8]>::to_vec)))
            .collect();
        encode_keyed(&owned, codec, (1_000, 1))
    }

    #[test]
    fn reads_keys_tombstones_and_deltas_in_every_codec() {
        let input: &[Pair<'_>] = &[
            (Some(b"alpha"), Some(b"1")),
            (Some(b"beta"), None),
            (Some(b""), Some(&[7u8; 300])),
        ];
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = encode(input, codec);
            let info = validate_client_batch(&batch, u32::MAX).unwrap();
            let section = records_section(&batch, &info).unwrap();
            let records: Vec<RawRecord> = iterate(&section, info.record_count)
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(records.len(), 3, "{codec:?}");
            for (number, record) in records.iter().enumerate() {
                assert_eq!(record.offset_delta, number as i32);
                assert_eq!(record.timestamp_delta, number as i64);
                assert_eq!(record.key, input[number].0);
                assert_eq!(record.tombstone, input[number].1.is_none());
            }
            assert!(check_keys(&batch, &info).is_ok());
            if codec != Compression::None {
                let raw: Vec<u8> = records.iter().flat_map(|r| r.bytes.to_vec()).collect();
                let again = decompress(
                    info.compression(),
                    &compress(info.compression(), &raw).unwrap(),
                )
                .unwrap();
                assert_eq!(&again[..], &raw[..]);
            }
        }
    }

    #[test]
    fn refuses_keyless_records_and_garbage() {
        let batch = encode(
            &[(Some(b"k"), Some(b"v")), (None, Some(b"v"))],
            Compression::None,
        );
        let info = validate_client_batch(&batch, u32::MAX).unwrap();
        assert!(matches!(
            check_keys(&batch, &info),
            Err(BatchError::InvalidRecords { records, .. }) if records == [1]
        ));
        // A length that runs past the section, and trailing bytes, do not parse.
        assert!(iterate(&[0x7e, 0, 0], 1).next().unwrap().is_err());
        let one = encode(&[(Some(b"k"), Some(b"v"))], Compression::None);
        let mut section = one[HEADER_BYTES..].to_vec();
        section.push(0);
        let results: Vec<_> = iterate(&section, 1).collect();
        assert!(results[0].is_ok() && results[1].is_err());
    }
}
