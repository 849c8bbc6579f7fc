//! Fetches of sealed segments against a real `spate serve`: the records are spliced from the
//! segment files to the socket (no tail cache, small segments), arrive whole and in order at
//! every fetch size, are counted as spliced, and clients that hang up mid-send cost nothing.

use crate::harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use harness::{
    batch_now, create_topic, decode_values, free_port_range, produce, topic_name, Broker,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, RequestHeader};

const BATCHES: usize = 200;
const RECORDS_PER_BATCH: usize = 20;

fn value(offset: usize) -> String {
    format!("value-{offset:06}-{}", "x".repeat(offset % 97))
}

fn history_batch(first_offset: usize) -> Bytes {
    // Now, or retention.ms (7 days) would delete the segments under the test.
    batch_now((0..RECORDS_PER_BATCH).map(|index| value(first_offset + index)))
}

fn fetch_request(offset: i64, partition_max_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("history"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max_bytes)])])
}

fn spliced_bytes(stats_port: u16) -> u64 {
    let mut stream = TcpStream::connect(("127.0.0.1", stats_port)).expect("connect to stats");
    write!(stream, "GET /stats HTTP/1.0\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let stats: serde_json::Value = serde_json::from_str(body).expect("JSON");
    stats["shards"][0]["fetch_record_bytes"]["splice"]
        .as_u64()
        .expect("splice counter")
}

#[test]
fn sealed_segments_are_spliced_whole_and_in_order() {
    let stats_port = free_port_range(1);
    let stats_address = format!("127.0.0.1:{stats_port}");
    let broker = Broker::start_with_args(
        1,
        &[
            "--tail-cache-bytes",
            "0",
            "--segment-bytes",
            "65536",
            "--stats-listen",
            &stats_address,
        ],
    );
    let mut client = broker.client(0);
    create_topic(&mut client, "history", 1);
    for batch in 0..BATCHES {
        let response = produce(
            &mut client,
            "history",
            0,
            history_batch(batch * RECORDS_PER_BATCH),
            -1,
        );
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let end = (BATCHES * RECORDS_PER_BATCH) as i64;
    let segments = std::fs::read_dir(broker.data_dir().join("data").join("history-0"))
        .expect("partition dir")
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".log")
        })
        .count();
    assert!(segments > 4, "{segments} segments");

    // 1 byte (one whole batch each time, KIP-74), and sizes that cut inside batches.
    for partition_max_bytes in [1, 3_000, 10_000, 70_000, 1 << 20] {
        let mut offset = 0i64;
        let mut fetches = 0;
        while offset < end {
            let response = client
                .send(12, &fetch_request(offset, partition_max_bytes))
                .expect("fetch");
            let partition = &response.responses[0].partitions[0];
            assert_eq!(
                (partition.error_code, partition.high_watermark),
                (0, end),
                "offset {offset}, max {partition_max_bytes}"
            );
            let records = partition.records.clone().expect("records");
            assert!(!records.is_empty(), "no progress at {offset}");
            let values = decode_values(&records);
            // The batch holding `offset` comes whole, so it may start before it.
            for (stored_offset, stored_value) in values {
                if stored_offset < offset {
                    continue;
                }
                assert_eq!(stored_offset, offset, "max {partition_max_bytes}");
                assert_eq!(stored_value, value(offset as usize));
                offset += 1;
            }
            fetches += 1;
        }
        assert!(fetches >= 1);
    }
    assert!(spliced_bytes(stats_port) > 0, "sealed segments are spliced");

    // Clients that ask for a lot and hang up at once, or after a few bytes.
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(12)
        .with_correlation_id(7);
    let frame =
        spate_net::codec::encode_request(&header, ApiKey::Fetch, &fetch_request(0, 1 << 20))
            .unwrap();
    for round in 0..20 {
        let mut stream = TcpStream::connect(broker.address(0)).expect("connect");
        stream.write_all(&frame).expect("send fetch");
        if round % 2 == 1 {
            let mut some = [0u8; 100];
            let _ = stream.read(&mut some);
        }
        drop(stream);
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut broker = broker;
    assert!(broker.is_running(), "{}", broker.log());
    let response = broker
        .client(0)
        .send(12, &fetch_request(end - 1, 1 << 20))
        .expect("fetch after the hang-ups");
    let records = response.responses[0].partitions[0].records.clone().unwrap();
    let values = decode_values(&records);
    assert_eq!(values.last().map(|(offset, _)| *offset), Some(end - 1));
    assert!(!broker.log().contains("panicked"), "{}", broker.log());
}
