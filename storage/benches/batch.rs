//! The per-batch work of the produce path before a batch reaches the log: its CRC-32C and
//! the whole client-batch validation, on a 64 KiB batch of 1 KiB records.
//!
//! `cargo bench -p spate-storage --bench batch`

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::time::Duration;

const RECORDS: usize = 64;
const RECORD_BYTES: usize = 1000;

fn batch_64_kib() -> Vec<u8> {
    let records: Vec<Record> = (0..RECORDS)
        .map(|index| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: index as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(vec![b'x' ^ index as u8; RECORD_BYTES])),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buffer, &records, &options).expect("encodes");
    buffer.to_vec()
}

fn batch_benches(c: &mut Criterion) {
    let batch = batch_64_kib();
    assert!(spate_storage::batch::validate_client_batch(&batch, 1 << 20).is_ok());
    let mut group = c.benchmark_group("batch");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("crc32c_64KiB", |b| {
        b.iter(|| {
            crc32c::crc32c(std::hint::black_box(
                &batch[spate_storage::batch::CRC_COVERAGE_START..],
            ))
        })
    });
    group.bench_function("validate_client_batch_64KiB", |b| {
        b.iter(|| {
            spate_storage::batch::validate_client_batch(std::hint::black_box(&batch), 1 << 20)
                .is_ok()
        })
    });
    group.finish();
}

criterion_group!(benches, batch_benches);
criterion_main!(benches);
