//! The broker's limits hold whatever clients send (issue 13): Fetch responses are bounded
//! (`fetch.max.bytes` caps a response, `max_bytes = 0` gets one batch as in KIP-74, and a
//! partition named more than once is refused rather than read again), and connections past
//! `max.connections` are closed at once instead of exhausting descriptors; and idle
//! partitions are closed when their segments hold more descriptors than the budget.

use crate::harness;

use bytes::Bytes;
use harness::{create_topic, produce, topic_name, Broker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use spate_engine::metadata::placement::default_shard;
use spate_net::client::Client;

/// A batch of `count` records of 10 KB each.
fn big_batch(count: usize) -> Bytes {
    let values: Vec<String> = (0..count)
        .map(|index| format!("{index:010}").repeat(1000))
        .collect();
    harness::batch_now(values)
}

fn fetch_many(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    max_bytes: i32,
) -> FetchResponse {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|partition| {
                        FetchPartition::default()
                            .with_partition(*partition)
                            .with_partition_max_bytes(10 << 20)
                    })
                    .collect(),
            )]);
    client.send(11, &request).expect("fetch")
}

fn record_bytes(response: &FetchResponse) -> Vec<usize> {
    response.responses[0]
        .partitions
        .iter()
        .map(|partition| partition.records.as_ref().map_or(0, Bytes::len))
        .collect()
}

#[test]
fn a_partition_named_250_times_with_max_bytes_0_gets_one_batch() {
    let broker = Broker::start(1);
    let mut client = broker.client(0);
    create_topic(&mut client, "amplified", 1);
    for _ in 0..3 {
        let response = produce(&mut client, "amplified", 0, big_batch(10), -1);
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let response = fetch_many(&mut client, "amplified", &[0; 250], 0);
    let partitions = &response.responses[0].partitions;
    assert_eq!(partitions.len(), 250);
    assert_eq!(partitions[0].error_code, 0);
    let sizes = record_bytes(&response);
    assert!(
        (100_000..150_000).contains(&sizes[0]),
        "one batch: {}",
        sizes[0]
    );
    for repeat in &partitions[1..] {
        assert_eq!(repeat.error_code, ResponseError::InvalidRequest.code());
    }
    assert_eq!(sizes[1..].iter().sum::<usize>(), 0);
}

#[test]
fn fetch_max_bytes_caps_a_response_whatever_the_client_asks() {
    let broker = Broker::start_with_args(2, &["--fetch-max-bytes", "150000"]);
    let mut clients = [broker.client(0), broker.client(1)];
    create_topic(&mut clients[0], "capped", 4);
    for partition in 0..4 {
        let owner = default_shard("capped", partition, 2).0 as usize;
        for _ in 0..3 {
            let response = produce(&mut clients[owner], "capped", partition, big_batch(10), -1);
            assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
        }
    }
    for (shard, client) in clients.iter_mut().enumerate() {
        let mine: Vec<i32> = (0..4)
            .filter(|partition| default_shard("capped", *partition, 2).0 as usize == shard)
            .collect();
        let response = fetch_many(client, "capped", &mine, i32::MAX);
        let total: usize = record_bytes(&response).iter().sum();
        // At most the cap plus the one batch that may cross it.
        assert!(
            total > 0 && total <= 150_000 + 110_000,
            "shard {shard}: {total}"
        );
    }
}

/// Whether a Metadata request on this connection is answered.
fn answers(stream: &mut std::net::TcpStream) -> bool {
    use std::io::{Read, Write};
    // Metadata v0 with an empty topic list, correlation id 7, no client id.
    let request: [u8; 18] = [0, 0, 0, 14, 0, 3, 0, 0, 0, 0, 0, 7, 255, 255, 0, 0, 0, 0];
    if stream.write_all(&request).is_err() {
        return false;
    }
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).is_ok()
}

#[test]
fn connections_past_max_connections_are_closed_and_places_come_back() {
    let broker = Broker::start_with_args(1, &["--max-connections", "5"]);
    let connect = || {
        let stream = std::net::TcpStream::connect(broker.address(0)).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        stream
    };
    // The harness's own probe of the port may hold a place for a moment: retry until five
    // connections are served.
    let mut held = Vec::new();
    harness::wait_for(
        "five served connections",
        std::time::Duration::from_secs(10),
        || {
            let mut stream = connect();
            if answers(&mut stream) {
                held.push(stream);
            }
            held.len() == 5
        },
    );
    let mut refused = connect();
    assert!(!answers(&mut refused), "the sixth connection is closed");
    drop(held.pop());
    harness::wait_for(
        "a place to come back",
        std::time::Duration::from_secs(10),
        || answers(&mut connect()),
    );
    assert!(
        answers(&mut held[0]),
        "admitted connections are served throughout"
    );
    assert!(broker.log().contains("max.connections"), "{}", broker.log());
}

/// Segment files of the broker's data directory that the broker has open.
fn open_segment_files(broker: &Broker) -> usize {
    let data_dir = broker.data_dir().canonicalize().expect("data dir");
    let pid = broker.pid().expect("running");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                .filter(|target| {
                    // Segments only (`<topic>-<partition>/<20 digits>.log`), not the metadata
                    // journal nor the broker's own log.
                    target.starts_with(&data_dir)
                        && !target
                            .parent()
                            .is_some_and(|parent| parent.ends_with("metadata"))
                        && target
                            .extension()
                            .is_some_and(|extension| extension == "log")
                        && target.file_stem().is_some_and(|stem| {
                            stem.len() == 20
                                && stem.to_string_lossy().bytes().all(|b| b.is_ascii_digit())
                        })
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn idle_partitions_are_closed_past_the_segment_budget_and_reopen_on_use() {
    let broker =
        Broker::start_with_args(1, &["--segment-bytes", "65536", "--open-segments-max", "4"]);
    let mut client = broker.client(0);
    create_topic(&mut client, "segmented", 3);
    for partition in 0..3 {
        for _ in 0..4 {
            let response = produce(&mut client, "segmented", partition, big_batch(5), -1);
            assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
        }
    }
    assert!(
        open_segment_files(&broker) > 4,
        "the test needs more segments than the budget"
    );
    // Idle for 10 s, the partitions are closed until their segments fit the budget.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while open_segment_files(&broker) > 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} segment files still open after 60 s: {:?}\n{}",
            open_segment_files(&broker),
            std::fs::read_dir(format!("/proc/{}/fd", broker.pid().unwrap()))
                .unwrap()
                .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                .collect::<Vec<_>>(),
            broker.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Each reopens on its next request, with everything it had.
    for partition in 0..3 {
        let mut offset = 0;
        while offset < 20 {
            let response = harness::fetch(&mut client, "segmented", partition, offset, 0);
            let data = &response.responses[0].partitions[0];
            assert_eq!(data.error_code, 0);
            let values = harness::decode_values(data.records.as_ref().expect("records"));
            assert!(!values.is_empty(), "partition {partition} at {offset}");
            offset = values.last().unwrap().0 + 1;
        }
    }
    assert!(broker.log().contains("closed idle partition logs"));
}
