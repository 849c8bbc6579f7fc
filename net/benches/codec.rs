//! The protocol work per request on the hot paths: decoding a Produce request that carries
//! a 64 KiB batch (header, then body), and encoding a Fetch response that carries 1 MiB of
//! records.
//!
//! `cargo bench -p spate-net --bench codec`

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, ProduceRequest, RequestHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

fn produce_frame() -> Bytes {
    // The decoder does not look inside the records, so any 64 KiB stand in for a batch.
    let records = Bytes::from(vec![7u8; 64 << 10]);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let frame =
        spate_net::codec::encode_request(&header, ApiKey::Produce, &request).expect("encodes");
    // The broker decodes what follows the size prefix.
    frame.freeze().slice(4..)
}

fn fetch_response() -> ResponseKind {
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_high_watermark(1 << 20)
        .with_records(Some(Bytes::from(vec![3u8; 1 << 20])));
    ResponseKind::Fetch(FetchResponse::default().with_responses(
        vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("bench")))
        .with_partitions(vec![partition])],
    ))
}

fn codec_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let frame = produce_frame();
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("produce_decode_64KiB", |b| {
        b.iter(|| {
            let request = spate_net::Request::decode_header(std::hint::black_box(frame.clone()))
                .expect("header");
            request.decode_body().expect("body")
        })
    });
    let response = fetch_response();
    group.throughput(Throughput::Bytes(1 << 20));
    group.bench_function("fetch_response_encode_1MiB", |b| {
        b.iter(|| {
            spate_net::encode_response(ApiKey::Fetch, 11, 1, std::hint::black_box(&response))
                .expect("encodes")
        })
    });
    group.finish();
}

criterion_group!(benches, codec_benches);
criterion_main!(benches);
