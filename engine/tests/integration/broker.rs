//! End-to-end tests against a real `spate serve` process.

use crate::harness;

use spate_net::error_code::{
    CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, NONE, NOT_LEADER_OR_FOLLOWER, OFFSET_OUT_OF_RANGE,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::{
    batch, create_topic, create_topic_with_configs, decode_values, fetch, produce, Broker,
};
use kafka_protocol::messages::{ApiVersionsRequest, InitProducerIdRequest};
use spate_engine::metadata::placement::default_shard as shard_for;

/// The shard that owns partition 0 of `topic` and one that does not.
fn owner_and_other(topic: &str, smp: u32) -> (usize, usize) {
    let owner = shard_for(topic, 0, smp).0 as usize;
    (owner, (owner + 1) % smp as usize)
}

#[test]
fn produced_records_are_fetched_back_and_survive_a_restart() {
    let mut broker = Broker::start(2);
    let (owner, _) = owner_and_other("orders", 2);
    create_topic(&mut broker.client(0), "orders", 1);
    let mut client = broker.client(owner);
    let first = produce(&mut client, "orders", 0, batch(&["a", "b", "c"], None), -1);
    let partition = &first.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (NONE, 0));
    let second = produce(&mut client, "orders", 0, batch(&["d"], None), 1);
    assert_eq!(second.responses[0].partition_responses[0].base_offset, 3);

    let fetched = fetch(&mut client, "orders", 0, 0, 100);
    let data = &fetched.responses[0].partitions[0];
    assert_eq!((data.error_code, data.high_watermark), (NONE, 4));
    let values = decode_values(data.records.as_ref().unwrap());
    assert_eq!(
        values,
        vec![
            (0, "a".into()),
            (1, "b".into()),
            (2, "c".into()),
            (3, "d".into())
        ]
    );

    assert_eq!(broker.stop(), Some(0), "clean shutdown:\n{}", broker.log());
    broker.restart();
    let mut client = broker.client(owner);
    let after = fetch(&mut client, "orders", 0, 1, 100);
    let values = decode_values(after.responses[0].partitions[0].records.as_ref().unwrap());
    // Whole batches come back: the first batch holds offset 1, so it starts at 0.
    assert_eq!(
        values.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    let third = produce(&mut client, "orders", 0, batch(&["e"], None), -1);
    assert_eq!(third.responses[0].partition_responses[0].base_offset, 4);
}

#[test]
fn a_shard_refuses_partitions_it_does_not_own() {
    let broker = Broker::start(2);
    let (owner, other) = owner_and_other("routed", 2);
    create_topic(&mut broker.client(owner), "routed", 1);
    let response = produce(
        &mut broker.client(other),
        "routed",
        0,
        batch(&["x"], None),
        -1,
    );
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        NOT_LEADER_OR_FOLLOWER
    );
    let fetched = fetch(&mut broker.client(other), "routed", 0, 0, 0);
    assert_eq!(
        fetched.responses[0].partitions[0].error_code,
        NOT_LEADER_OR_FOLLOWER
    );
}

#[test]
fn corrupt_batches_are_rejected_and_nothing_is_appended() {
    let broker = Broker::start(1);
    let mut client = broker.client(0);
    create_topic(&mut client, "strict", 1);
    let mut damaged = batch(&["payload"], None).to_vec();
    let last = damaged.len() - 2;
    damaged[last] ^= 0xff; // inside the CRC-covered records
    let response = produce(&mut client, "strict", 0, damaged.into(), -1);
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        CORRUPT_MESSAGE
    );
    let fetched = fetch(&mut client, "strict", 0, 0, 0);
    assert_eq!(fetched.responses[0].partitions[0].high_watermark, 0);
    let beyond = fetch(&mut client, "strict", 0, 5, 0);
    assert_eq!(
        beyond.responses[0].partitions[0].error_code,
        OFFSET_OUT_OF_RANGE
    );
}

#[test]
fn idempotent_retries_get_the_original_offset_and_gaps_are_refused() {
    let broker = Broker::start(1);
    let mut client = broker.client(0);
    create_topic(&mut client, "exactly-once", 1);
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let ids = client.send(4, &request).unwrap();
    assert_eq!(ids.error_code, NONE);
    let producer = (ids.producer_id.0, ids.producer_epoch, 0);
    let first = produce(
        &mut client,
        "exactly-once",
        0,
        batch(&["a", "b"], Some(producer)),
        -1,
    );
    assert_eq!(first.responses[0].partition_responses[0].base_offset, 0);
    let retry = produce(
        &mut client,
        "exactly-once",
        0,
        batch(&["a", "b"], Some(producer)),
        -1,
    );
    let retried = &retry.responses[0].partition_responses[0];
    assert_eq!((retried.error_code, retried.base_offset), (NONE, 0));
    let gap = produce(
        &mut client,
        "exactly-once",
        0,
        batch(&["z"], Some((producer.0, producer.1, 7))),
        -1,
    );
    assert_eq!(
        gap.responses[0].partition_responses[0].error_code,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    let next = produce(
        &mut client,
        "exactly-once",
        0,
        batch(&["c"], Some((producer.0, producer.1, 2))),
        -1,
    );
    assert_eq!(next.responses[0].partition_responses[0].base_offset, 2);
    // A batch that claims a transaction, in a request without a transactional id, is refused
    // as Kafka refuses it: it would open a transaction no coordinator ever ends.
    let transactional = harness::transactional_batch(
        &["in a transaction", "in a transaction"],
        (producer.0, producer.1, 3),
    );
    let refused = produce(&mut client, "exactly-once", 0, transactional, -1);
    assert_eq!(
        refused.responses[0].partition_responses[0].error_code,
        kafka_protocol::ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    let after = produce(
        &mut client,
        "exactly-once",
        0,
        batch(&["d"], Some((producer.0, producer.1, 3))),
        -1,
    );
    assert_eq!(after.responses[0].partition_responses[0].base_offset, 3);
}

#[test]
fn a_long_poll_wakes_when_data_arrives() {
    let broker = Broker::start(1);
    create_topic(&mut broker.client(0), "tail", 1);
    let address = broker.address(0);
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut client =
            spate_net::client::Client::connect(address, Duration::from_secs(5)).unwrap();
        produce(&mut client, "tail", 0, batch(&["late"], None), -1);
    });
    let started = Instant::now();
    let fetched = fetch(&mut broker.client(0), "tail", 0, 0, 20_000);
    producer.join().unwrap();
    let values = decode_values(fetched.responses[0].partitions[0].records.as_ref().unwrap());
    assert_eq!(values, vec![(0, "late".into())]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woke on data, not at the 20 s timeout"
    );
}

#[test]
fn too_new_api_versions_gets_unsupported_version_with_our_range() {
    let broker = Broker::start(1);
    let mut stream = TcpStream::connect(broker.address(0)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // ApiVersions v99, header v2: key, version, correlation id, client id, no tagged fields.
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&99i16.to_be_bytes());
    body.extend_from_slice(&77i32.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    body.push(0);
    stream
        .write_all(&(body.len() as i32).to_be_bytes())
        .unwrap();
    stream.write_all(&body).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).unwrap();
    assert_eq!(i32::from_be_bytes(response[0..4].try_into().unwrap()), 77);
    assert_eq!(
        i16::from_be_bytes(response[4..6].try_into().unwrap()),
        35,
        "UNSUPPORTED_VERSION"
    );
    assert_eq!(i32::from_be_bytes(response[6..10].try_into().unwrap()), 1);
    assert_eq!(i16::from_be_bytes(response[10..12].try_into().unwrap()), 18);
    assert_eq!(
        i16::from_be_bytes(response[14..16].try_into().unwrap()),
        4,
        "our maximum"
    );

    let versions = broker
        .client(0)
        .send(3, &ApiVersionsRequest::default())
        .unwrap();
    assert_eq!(versions.error_code, NONE);
    let produce = versions
        .api_keys
        .iter()
        .find(|api| api.api_key == 0)
        .unwrap();
    assert_eq!((produce.min_version, produce.max_version), (0, 12));
}

#[test]
fn hostile_frames_close_only_their_connection() {
    let mut broker = Broker::start(1);
    let hostile_prefixes: [&[u8]; 4] = [
        &(-5i32).to_be_bytes(),
        &(200 * 1024 * 1024i32).to_be_bytes(),
        // Unknown API key 999 in a well-formed frame.
        &[0, 0, 0, 10, 0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff],
        // A size that lies: 1000 announced, 3 sent, then the client vanishes.
        &[0, 0, 3, 0xe8, 1, 2, 3],
    ];
    for prefix in hostile_prefixes {
        let mut stream = TcpStream::connect(broker.address(0)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(prefix).unwrap();
        if prefix.len() < 10 || prefix[3] != 10 {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        let mut rest = Vec::new();
        // The broker closes: read returns end of stream (or a reset), never hangs.
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "no response to a hostile frame");
    }
    assert!(broker.is_running());
    let mut client = broker.client(0);
    create_topic(&mut client, "after-attack", 1);
    let response = produce(&mut client, "after-attack", 0, batch(&["ok"], None), -1);
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        NONE
    );
    assert!(
        broker
            .log()
            .lines()
            .filter(|line| line.contains("closing connection"))
            .count()
            >= 3
    );
}

#[test]
fn log_append_time_topics_are_stamped_by_the_broker() {
    let broker = Broker::start(1);
    let mut client = broker.client(0);
    create_topic_with_configs(
        &mut client,
        "stamped",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let response = produce(&mut client, "stamped", 0, batch(&["a", "b"], None), -1);
    let stamp = response.responses[0].partition_responses[0].log_append_time_ms;
    assert!(stamp > 1_700_000_000_000, "log_append_time_ms {stamp}");
    let fetched = fetch(&mut client, "stamped", 0, 0, 0);
    let records = fetched.responses[0].partitions[0].records.clone().unwrap();
    // Clients read a LogAppendTime batch's record timestamps from its maxTimestamp.
    let info = spate_storage::batch::parse_stored_batch(&records).expect("valid stored batch");
    assert_eq!(info.max_timestamp, stamp);
    assert_ne!(
        info.attributes & spate_storage::batch::TIMESTAMP_TYPE_LOG_APPEND_TIME,
        0
    );
}

#[test]
fn altered_topic_configs_take_effect_on_open_logs() {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    use kafka_protocol::protocol::StrBytes;

    let broker = Broker::start(1);
    let mut client = broker.client(0);
    create_topic(&mut client, "tunable", 1);
    let big = vec!["x".repeat(2000).leak() as &str; 4];
    let accepted = produce(&mut client, "tunable", 0, batch(&big, None), -1);
    assert_eq!(
        accepted.responses[0].partition_responses[0].error_code,
        NONE
    );

    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("tunable"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("max.message.bytes"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("1000")))]),
    ]);
    let altered = client.send(1, &request).unwrap();
    assert_eq!(
        altered.responses[0].error_code, NONE,
        "{:?}",
        altered.responses[0].error_message
    );

    // The shard applies catalog changes within its 100 ms maintenance tick.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let refused = produce(&mut client, "tunable", 0, batch(&big, None), -1);
        if refused.responses[0].partition_responses[0].error_code == MESSAGE_TOO_LARGE {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "max.message.bytes=1000 never took effect"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Regression: with a relative --data-dir (the default is ./spate-data), partition
/// directories failed to open ("Bad file descriptor ... Opening directory") and the broker
/// stopped on the first produce.
#[test]
fn a_relative_data_dir_works() {
    let workdir = tempfile::tempdir().unwrap();
    let port = harness::free_port_range(1);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
        .current_dir(workdir.path())
        .args(["serve", "--data-dir", "relative-data", "--smp", "1"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        if let Ok(client) =
            spate_net::client::Client::connect(("127.0.0.1", port), Duration::from_secs(5))
        {
            break client;
        }
        assert!(Instant::now() < deadline, "broker did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    create_topic(&mut client, "relative", 1);
    let response = produce(&mut client, "relative", 0, batch(&["a"], None), -1);
    let still_running = child.try_wait().unwrap().is_none();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    assert!(
        still_running,
        "broker died: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        NONE
    );
    assert!(workdir.path().join("relative-data/relative-0").is_dir());
}

/// OffsetForLeaderEpoch (v4) for partition 0 of `topic`: (error, leader epoch, end offset).
fn end_offset_for_epoch(
    client: &mut spate_net::client::Client,
    topic: &str,
    epoch: i32,
) -> (i16, i32, i64) {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::OffsetForLeaderEpochRequest;
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(harness::topic_name(topic))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(epoch)])]);
    let response = client.send(4, &request).expect("offset for leader epoch");
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.leader_epoch, answer.end_offset)
}

#[test]
fn leader_epochs_are_checkpointed_and_answered_after_a_restart() {
    let mut broker = Broker::start(1);
    create_topic(&mut broker.client(0), "epochs", 1);
    let mut client = broker.client(0);
    produce(&mut client, "epochs", 0, batch(&["a", "b"], None), -1);
    produce(&mut client, "epochs", 0, batch(&["c"], None), -1);
    assert_eq!(end_offset_for_epoch(&mut client, "epochs", 0), (NONE, 0, 3));
    // An epoch above every known one is undefined (Kafka's -1, -1).
    assert_eq!(
        end_offset_for_epoch(&mut client, "epochs", 1),
        (NONE, -1, -1)
    );
    let checkpoint = broker
        .data_dir()
        .join("data")
        .join("epochs-0")
        .join("leader-epoch-checkpoint");
    assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n0 0\n");
    broker.kill9();
    broker.start_again();
    let mut client = broker.client(0);
    assert_eq!(end_offset_for_epoch(&mut client, "epochs", 0), (NONE, 0, 3));
    assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n0 0\n");
}
