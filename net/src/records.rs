//! Building record batches (magic v2) for the producers Spate itself runs: the group
//! coordinator's writes to `__consumer_offsets`, the CLI's `spate produce`, the bench
//! harness and tests.
//!
//! The `kafka_protocol` encoder starts a new batch whenever `offset - sequence` changes
//! between records, and takes the batch's baseSequence from the first record. Records made
//! here carry `sequence = offset - 1` and producer id -1: one call, one batch, baseSequence
//! -1, exactly as a non-idempotent Java producer writes it.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A record without a producer id, at `index` within its batch.
pub fn plain_record(
    index: usize,
    key: Option<Bytes>,
    value: Option<Bytes>,
    timestamp_ms: i64,
) -> Record {
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: index as i64,
        sequence: index as i32 - 1,
        timestamp: timestamp_ms,
        key,
        value,
        headers: Default::default(),
        delete_horizon: false,
    }
}

/// Adds a header to a record.
pub fn with_header(mut record: Record, key: &str, value: Option<Bytes>) -> Record {
    record
        .headers
        .insert(StrBytes::from_string(key.to_string()), value);
    record
}

/// Encodes records as one v2 batch.
pub fn encode_batch(records: &[Record], compression: Compression) -> anyhow::Result<BytesMut> {
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buffer,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buffer)
}

/// Wall-clock milliseconds since the Unix epoch, for record timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_records_make_one_batch() {
        let records: Vec<Record> = (0..10)
            .map(|index| {
                plain_record(
                    index,
                    Some(Bytes::from(format!("k{index}"))),
                    Some(Bytes::from("v")),
                    5,
                )
            })
            .collect();
        let mut encoded = encode_batch(&records, Compression::Lz4).unwrap().freeze();
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut encoded).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].records.len(), 10);
        let base_sequence = i32::from_be_bytes(
            encode_batch(&records, Compression::None).unwrap()[53..57]
                .try_into()
                .unwrap(),
        );
        assert_eq!(base_sequence, -1);
    }
}
