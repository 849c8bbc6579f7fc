//! Just enough of the v2 record-batch format to walk what a Fetch returns without
//! decoding it into owned records: batch boundaries, offsets, and where each record's value
//! sits. The end-to-end mode reads its send timestamps through it, and the producer uses it
//! once, at encode time, to find the value bytes it stamps before each send.

use anyhow::{bail, Context};

/// Bytes of the fixed batch header (through `recordsCount`).
pub const BATCH_HEADER_BYTES: usize = 61;
/// Where the CRC-32C sits, and where its coverage starts (the attributes).
pub const CRC_AT: usize = 17;
const CRC_COVERAGE_START: usize = 21;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const RECORD_COUNT_AT: usize = 57;
const COMPRESSION_MASK: i16 = 0x07;

/// Bytes of the send timestamp at the start of every end-to-end record's value.
pub const STAMP_BYTES: usize = 8;

/// One complete batch inside a fetched or encoded buffer.
#[derive(Clone, Copy, Debug)]
pub struct BatchView<'a> {
    /// The whole batch, header included.
    pub bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Offset of the batch's first record.
    pub fn base_offset(&self) -> i64 {
        i64::from_be_bytes(self.bytes[0..8].try_into().expect("8 bytes"))
    }

    /// The offset after the batch's last record: where the next fetch starts.
    pub fn next_offset(&self) -> i64 {
        self.base_offset() + i64::from(read_i32(self.bytes, LAST_OFFSET_DELTA_AT)) + 1
    }

    /// Records the batch holds.
    pub fn record_count(&self) -> u64 {
        read_i32(self.bytes, RECORD_COUNT_AT).max(0) as u64
    }

    /// Whether the records section is compressed (and so cannot be walked in place).
    pub fn is_compressed(&self) -> bool {
        let attributes = i16::from_be_bytes(
            self.bytes[ATTRIBUTES_AT..ATTRIBUTES_AT + 2]
                .try_into()
                .expect("2 bytes"),
        );
        attributes & COMPRESSION_MASK != 0
    }

    /// Calls `visit(value_start, value_len)` for each record of an uncompressed batch, with
    /// `value_start` relative to the batch start. A record without a value reports length 0.
    pub fn for_each_value(&self, mut visit: impl FnMut(usize, usize)) -> anyhow::Result<()> {
        if self.is_compressed() {
            bail!("cannot walk the records of a compressed batch in place");
        }
        let mut cursor = Cursor {
            bytes: self.bytes,
            at: BATCH_HEADER_BYTES,
        };
        for _ in 0..self.record_count() {
            let length = cursor.varint()?;
            let record_end = cursor.at + usize::try_from(length).context("negative record")?;
            cursor.skip(1)?; // attributes
            cursor.varint()?; // timestamp delta
            cursor.varint()?; // offset delta
            let key_length = cursor.varint()?;
            cursor.skip(usize::try_from(key_length).unwrap_or(0))?;
            let value_length = cursor.varint()?;
            let value_length = usize::try_from(value_length).unwrap_or(0);
            visit(cursor.at, value_length);
            if record_end > self.bytes.len() {
                bail!("record runs past its batch");
            }
            cursor.at = record_end;
        }
        Ok(())
    }
}

/// The complete batches at the start of `buffer`, in order. A trailing partial batch (a
/// fetch cut short by its byte limit) is left out, as Kafka clients do.
pub fn complete_batches(buffer: &[u8]) -> impl Iterator<Item = BatchView<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rest = &buffer[at..];
        if rest.len() < BATCH_HEADER_BYTES {
            return None;
        }
        let batch_length = read_i32(rest, 8);
        let total = 12usize.checked_add(usize::try_from(batch_length).ok()?)?;
        if total < BATCH_HEADER_BYTES || total > rest.len() {
            return None;
        }
        at += total;
        Some(BatchView {
            bytes: &rest[..total],
        })
    })
}

/// Recomputes a batch's CRC-32C after its bytes were changed in place.
pub fn refresh_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_COVERAGE_START..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The first [`STAMP_BYTES`] of a value as a timestamp, if the value is long enough.
pub fn read_stamp(value: &[u8]) -> Option<u64> {
    value
        .get(..STAMP_BYTES)
        .map(|bytes| u64::from_be_bytes(bytes.try_into().expect("8 bytes")))
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    /// A zigzag varint (Kafka's varint and varlong share the encoding).
    fn varint(&mut self) -> anyhow::Result<i64> {
        let mut raw = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .context("varint runs past its batch")?;
            self.at += 1;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        bail!("varint longer than 10 bytes")
    }

    fn skip(&mut self, bytes: usize) -> anyhow::Result<()> {
        if self.at + bytes > self.bytes.len() {
            bail!("field runs past its batch");
        }
        self.at += bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{encode_batch, BatchShape, Keys};
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    fn shape(records: usize) -> BatchShape {
        BatchShape {
            record_size: 100,
            records_per_batch: records,
            compression: Compression::None,
            keys: Keys::Random(1000),
        }
    }

    #[test]
    fn walks_values_of_an_encoded_batch() {
        let batch = encode_batch(&shape(7), 3).unwrap();
        let mut two = batch.to_vec();
        two.extend_from_slice(&batch);
        two.extend_from_slice(&batch[..30]); // a partial third batch is ignored
        let batches: Vec<_> = complete_batches(&two).collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].record_count(), 7);
        assert_eq!(batches[0].next_offset(), 7);
        let mut values = Vec::new();
        batches[0]
            .for_each_value(|start, len| values.push((start, len)))
            .unwrap();
        assert_eq!(values.len(), 7);
        assert!(values.iter().all(|&(_, len)| len == 100));
    }

    #[test]
    fn stamped_values_keep_a_valid_crc() {
        let batch = encode_batch(&shape(3), 9).unwrap();
        let mut bytes = batch.to_vec();
        let mut starts = Vec::new();
        BatchView { bytes: &bytes }
            .for_each_value(|start, _| starts.push(start))
            .unwrap();
        for &start in &starts {
            bytes[start..start + 8].copy_from_slice(&42u64.to_be_bytes());
        }
        refresh_crc(&mut bytes);
        let decoded = RecordBatchDecoder::decode(&mut bytes::Bytes::from(bytes)).unwrap();
        for record in &decoded.records {
            assert_eq!(read_stamp(record.value.as_ref().unwrap()), Some(42));
        }
    }
}
