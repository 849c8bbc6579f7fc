//! Large Produce requests against a real `spate serve`: their batches are received from the
//! socket straight into the DMA chunks they are written from (counted as `in_place`), at every
//! served layout (v3–v8 and the flexible v9–v11), next to small batches that stay in the
//! request; what was acknowledged reads back whole. Lying lengths, a client that hangs up
//! mid-batch and corrupt batches append nothing and cost the broker nothing.

use crate::harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use harness::{batch_now, create_topic, decode_values, fetch, free_port_range, topic_name, Broker};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader};

const PARTITIONS: i32 = 3;

fn value(partition: i32, round: usize, index: usize, bytes: usize) -> String {
    let tag = format!("p{partition}-r{round}-i{index}-");
    let fill = char::from(b'a' + (index % 26) as u8);
    format!(
        "{tag}{}",
        fill.to_string().repeat(bytes.saturating_sub(tag.len()))
    )
}

/// A batch of `count` records of about `bytes` bytes each.
fn batch(partition: i32, round: usize, count: usize, bytes: usize) -> Bytes {
    batch_now((0..count).map(|index| value(partition, round, index, bytes)))
}

fn request(batches: Vec<(i32, Bytes)>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("streamed"))
            .with_partition_data(
                batches
                    .into_iter()
                    .map(|(partition, records)| {
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(records))
                    })
                    .collect(),
            )])
}

fn frame(version: i16, request: &ProduceRequest) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_static_str(
            "stream-test",
        )));
    spate_net::codec::encode_request(&header, ApiKey::Produce, request)
        .expect("encode")
        .to_vec()
}

fn stats(stats_port: u16) -> serde_json::Value {
    let mut stream = TcpStream::connect(("127.0.0.1", stats_port)).expect("connect to stats");
    write!(stream, "GET /stats HTTP/1.0\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    serde_json::from_str(body).expect("JSON")
}

fn append_bytes(stats_port: u16, path: &str) -> u64 {
    stats(stats_port)["shards"][0]["produce_append_bytes"][path]
        .as_u64()
        .expect("produce_append_bytes counter")
}

/// Every value of a partition, in offset order.
fn read_partition(client: &mut spate_net::client::Client, partition: i32) -> Vec<String> {
    let mut values = Vec::new();
    loop {
        let response = fetch(client, "streamed", partition, values.len() as i64, 0);
        let answer = &response.responses[0].partitions[0];
        assert_eq!(answer.error_code, 0);
        let fetched = decode_values(answer.records.as_ref().expect("records"));
        let before = values.len();
        for (offset, value) in fetched {
            if offset as usize == values.len() {
                values.push(value);
            }
        }
        if values.len() == before {
            return values;
        }
    }
}

#[test]
fn large_batches_are_received_in_place_and_read_back_at_every_version() {
    let stats_port = free_port_range(1);
    let broker =
        Broker::start_with_args(1, &["--stats-listen", &format!("127.0.0.1:{stats_port}")]);
    let mut client = broker.client(0);
    create_topic(&mut client, "streamed", PARTITIONS);
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); PARTITIONS as usize];
    let mut large_bytes = 0u64;
    for (round, version) in [3i16, 8, 9, 11, 3, 9].into_iter().enumerate() {
        // Partition 0: a batch over two chunks; 1: a small batch that stays in the request;
        // 2: a batch of about one chunk; and one for a partition that does not exist.
        let shapes = [(0, 30, 9_000), (1, 3, 100), (2, 13, 10_000)];
        let mut batches: Vec<(i32, Bytes)> = shapes
            .iter()
            .map(|&(partition, count, bytes)| (partition, batch(partition, round, count, bytes)))
            .collect();
        batches.push((PARTITIONS + 5, batch(0, round, 10, 10_000)));
        for &(partition, count, bytes) in &shapes {
            expected[partition as usize]
                .extend((0..count).map(|index| value(partition, round, index, bytes)));
        }
        large_bytes += (batches[0].1.len() + batches[2].1.len()) as u64;
        let response = client.send(version, &request(batches)).expect("produce");
        let answers = &response.responses[0].partition_responses;
        assert_eq!(
            answers
                .iter()
                .map(|answer| answer.error_code)
                .collect::<Vec<_>>(),
            [0, 0, 0, 3],
            "v{version}"
        );
    }
    for partition in 0..PARTITIONS {
        assert_eq!(
            read_partition(&mut client, partition),
            expected[partition as usize],
            "partition {partition}"
        );
    }
    // One connection per partition: every large batch lined up with its log.
    assert_eq!(append_bytes(stats_port, "in_place"), large_bytes);
    assert!(append_bytes(stats_port, "copied") > 0, "small batches");
}

#[test]
fn bad_streamed_requests_append_nothing_and_the_broker_carries_on() {
    let stats_port = free_port_range(1);
    let mut broker =
        Broker::start_with_args(1, &["--stats-listen", &format!("127.0.0.1:{stats_port}")]);
    let mut client = broker.client(0);
    create_topic(&mut client, "streamed", PARTITIONS);
    let good = frame(9, &request(vec![(0, batch(0, 0, 30, 9_000))]));

    // A records length that runs past the frame's end: the frame is cut and its size
    // prefix made to match.
    let mut lying = good[..good.len() - 5_000].to_vec();
    let size = (lying.len() - 4) as i32;
    lying[..4].copy_from_slice(&size.to_be_bytes());
    // The client hangs up halfway through the batch.
    let half = good[..good.len() / 2].to_vec();
    for bytes in [lying, half] {
        let mut stream = TcpStream::connect(broker.address(0)).expect("connect");
        // The broker may close the connection as soon as it sees the lie, before the client
        // has sent everything or shut its side down: those calls may then fail (EPIPE,
        // ECONNRESET, ENOTCONN), which is the behaviour under test, not a failure of it.
        let _ = stream.write_all(&bytes);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(answer.is_empty(), "no response to a broken request");
    }
    // A corrupt batch (one record byte flipped) is refused with CORRUPT_MESSAGE.
    let mut corrupt = batch(0, 0, 30, 9_000).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let response = client
        .send(9, &request(vec![(0, Bytes::from(corrupt))]))
        .expect("produce");
    assert_eq!(response.responses[0].partition_responses[0].error_code, 2);

    assert!(
        read_partition(&mut client, 0).is_empty(),
        "nothing appended"
    );
    assert_eq!(append_bytes(stats_port, "in_place"), 0);
    assert!(broker.is_running(), "{}", broker.log());
    let log = broker.log();
    assert!(log.contains("malformed Produce request"), "{log}");
    assert!(log.contains("connection closed mid-frame"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // And the same connection-level path still serves good requests.
    let mut stream = TcpStream::connect(broker.address(0)).expect("connect");
    stream.write_all(&good).expect("send");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("a response");
    assert_eq!(read_partition(&mut client, 0).len(), 30);
    assert!(append_bytes(stats_port, "in_place") > 0);
}
