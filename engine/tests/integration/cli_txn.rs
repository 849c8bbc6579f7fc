//! `spate txn` against a real broker: a live transaction (its coordinator holds it open in
//! the partition) beside a hanging one (a producer that wrote transactional records its
//! coordinator never heard of, so no marker will ever end them and read_committed readers
//! stop at its first offset). `txn producers` shows both open, `txn find-hanging` names only
//! the hanging one, `txn abort` ends it, and once the live one commits the last stable
//! offset reaches the log end. With the ACL authorizer, DescribeProducers needs READ on the
//! topic and `txn abort` CLUSTER_ACTION.

use std::time::{Duration, Instant};

use crate::cli_support;
use crate::harness;

use cli_support::Broker;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, BrokerId, EndTxnRequest, FindCoordinatorRequest,
    InitProducerIdRequest, ListOffsetsRequest, ProduceRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use serde_json::Value;
use spate_net::client::Client;
use spate_net::error_code::NONE;

const TOPIC: &str = "hung";
const LIVE: &str = "live-app";
const READ_COMMITTED: i8 = 1;
const WAIT: Duration = Duration::from_secs(30);

fn id(name: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(name.to_string()))
}

/// A connection to broker `node_id` (shard s of a one-node broker listens on port + s).
fn connect(broker: &Broker, node_id: i64) -> Client {
    let port = broker.port + (node_id % 1024) as u16;
    Client::connect(format!("127.0.0.1:{port}"), Duration::from_secs(10)).expect("connect")
}

/// The coordinator of `name`, once `__transaction_state` exists.
fn coordinator(broker: &Broker, name: &str) -> Client {
    let mut any = connect(broker, 0);
    let deadline = Instant::now() + WAIT;
    loop {
        let request = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![StrBytes::from_string(name.to_string())]);
        let response = any.send(4, &request).expect("find coordinator");
        let found = &response.coordinators[0];
        if found.error_code == NONE {
            return connect(broker, i64::from(found.node_id.0));
        }
        assert!(Instant::now() < deadline, "no transaction coordinator");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// InitProducerId, with a transactional id or without (an idempotent producer), retried
/// while the coordinator loads.
fn init(client: &mut Client, name: Option<&str>) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(name.map(id))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = client.send(4, &request).expect("init producer id");
        if answer.error_code != ResponseError::CoordinatorLoadInProgress.code()
            || Instant::now() > deadline
        {
            assert_eq!(answer.error_code, NONE, "init producer id");
            return (answer.producer_id.0, answer.producer_epoch);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn add_partition(client: &mut Client, producer: (i64, i16)) {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(id(LIVE))
        .with_v3_and_below_producer_id(ProducerId(producer.0))
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(harness::topic_name(TOPIC))
            .with_partitions(vec![0])]);
    let response = client.send(3, &request).expect("add partitions");
    let code =
        response.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
    assert_eq!(code, NONE, "add partitions to txn");
}

/// One transactional batch of `values` on partition 0; its base offset.
fn produce(client: &mut Client, name: &str, producer: (i64, i16), values: &[&str]) -> i64 {
    let batch = harness::transactional_batch(values, (producer.0, producer.1, 0));
    let request = ProduceRequest::default()
        .with_transactional_id(Some(id(name)))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(harness::topic_name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let response = client.send(9, &request).expect("produce");
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, NONE, "transactional produce");
    partition.base_offset
}

/// ListOffsets latest: with read_committed, the last stable offset.
fn latest(client: &mut Client, isolation: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(harness::topic_name(TOPIC))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let response = client.send(7, &request).expect("list offsets");
    response.topics[0].partitions[0].offset
}

/// `spate txn find-hanging ... --json`: (exit code, the rows it printed).
fn find_hanging(broker: &Broker, extra: &[&str]) -> (Option<i32>, Vec<Value>) {
    let mut args = vec!["txn", "find-hanging", "--topic", TOPIC, "--json"];
    args.extend_from_slice(extra);
    let output = broker.run(&args, "");
    let rows: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{error}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), rows.as_array().expect("rows").clone())
}

/// (producer id, open transaction's first offset) of every producer `txn producers` shows.
fn open_transactions(broker: &Broker) -> Vec<(i64, Option<i64>)> {
    let rows = broker.json(&["txn", "producers", "--topic", TOPIC]);
    let mut open: Vec<(i64, Option<i64>)> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row["producer_id"].as_i64().unwrap(),
                row["current_transaction_start_offset"].as_i64(),
            )
        })
        .collect();
    open.sort();
    open
}

#[test]
fn a_hanging_transaction_is_found_and_aborted_and_a_live_one_is_left_alone() {
    // A hanging transaction needs a leader that does not verify first batches with their
    // coordinator (Kafka's transaction.partition.verification.enable=false, as before 3.6).
    let broker = Broker::start_with_args(&crate::transactions::UNVERIFIED);
    broker.ok(&["topic", "create", TOPIC, "--partitions", "1"]);
    let described = broker.json(&["topic", "describe", TOPIC]);
    let leader = described["partitions"][0]["leader"].as_i64().unwrap();
    let mut data = connect(&broker, leader);

    // The live transaction: begun at its coordinator, the partition added, a record written.
    let mut coordinator = coordinator(&broker, LIVE);
    let live = init(&mut coordinator, Some(LIVE));
    add_partition(&mut coordinator, live);
    assert_eq!(produce(&mut data, LIVE, live, &["live-0"]), 0);
    // The hanging one: a producer no coordinator knows writes transactional records.
    let stray = init(&mut data, None);
    assert_eq!(
        produce(&mut data, "stray", stray, &["stray-0", "stray-1"]),
        1
    );
    assert_eq!(
        latest(&mut data, READ_COMMITTED),
        0,
        "both hold the LSO back"
    );

    let mut expected = vec![(live.0, Some(0)), (stray.0, Some(1))];
    expected.sort();
    assert_eq!(open_transactions(&broker), expected);

    // Fresh transactions are not candidates under Kafka's default 15 minutes...
    let (code, rows) = find_hanging(&broker, &[]);
    assert_eq!((code, rows.len()), (Some(0), 0), "{rows:?}");
    // ...with 0, the stray one hangs and the live one, held open by its coordinator, does not.
    let (code, rows) = find_hanging(&broker, &["--max-transaction-timeout", "0"]);
    assert_eq!(
        code,
        Some(1),
        "find-hanging's exit code with a hanging transaction"
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["producer_id"], stray.0);
    assert_eq!(rows[0]["start_offset"], 1);

    let listed = broker.json(&["txn", "list"]);
    let states: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["transactional_id"].as_str().unwrap(),
                row["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(states, vec![(LIVE, "Ongoing")]);
    let live_described = broker.json(&["txn", "describe", LIVE]);
    assert_eq!(live_described["state"], "Ongoing");
    assert_eq!(live_described["producer_id"], live.0);
    assert_eq!(live_described["partitions"][0]["topic"], TOPIC);

    let abort_at = |offset| {
        [
            "txn",
            "abort",
            "--topic",
            TOPIC,
            "--partition",
            "0",
            "--start-offset",
            offset,
        ]
    };
    let refused = broker.fails(&abort_at("7"));
    assert!(
        refused.contains("no transaction starts at offset 7"),
        "{refused}"
    );
    broker.ok(&abort_at("1"));
    assert_eq!(open_transactions(&broker), {
        let mut open = vec![(live.0, Some(0)), (stray.0, None)];
        open.sort();
        open
    });
    let (code, rows) = find_hanging(&broker, &["--max-transaction-timeout", "0"]);
    assert_eq!((code, rows.len()), (Some(0), 0), "{rows:?}");

    // The live transaction commits through its coordinator: the LSO reaches the log end.
    let request = EndTxnRequest::default()
        .with_transactional_id(id(LIVE))
        .with_producer_id(ProducerId(live.0))
        .with_producer_epoch(live.1)
        .with_committed(true);
    let ended = coordinator.send(3, &request).expect("end txn").error_code;
    assert_eq!(ended, NONE);
    let deadline = Instant::now() + WAIT;
    loop {
        let stable = latest(&mut data, READ_COMMITTED);
        // 3 records, the abort marker, the commit marker.
        if stable == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the LSO stayed at {stable}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(latest(&mut data, 0), 5);
}

/// With the ACL authorizer: DescribeProducers needs READ on the topic, and aborting (a
/// WriteTxnMarkers, an inter-broker request) needs CLUSTER_ACTION on the cluster.
#[test]
fn txn_commands_are_authorized_as_kafka_authorizes_them() {
    let broker = Broker::start_with_sasl_listener(&[
        "--authorizer",
        "acl",
        "--super-users",
        "User:ANONYMOUS",
    ]);
    broker.ok(&["topic", "create", TOPIC, "--partitions", "1"]);
    for user in ["alice", "bob"] {
        broker.ok(&["user", "add", user, "--password", "secret"]);
    }
    broker.ok(&[
        "acl",
        "add",
        "--allow",
        "User:alice",
        "--operation",
        "Read",
        "--topic",
        TOPIC,
    ]);
    let sasl = broker.sasl_bootstrap();
    let as_user = |user: &'static str, args: &[&'static str]| {
        let mut command: Vec<&str> = args.to_vec();
        command.extend_from_slice(&[
            "--brokers",
            &sasl,
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            if user == "alice" {
                "sasl.username=alice"
            } else {
                "sasl.username=bob"
            },
            "-X",
            "sasl.password=secret",
        ]);
        broker.run(&command, "")
    };
    let producers = ["txn", "producers", "--topic", TOPIC, "--json"];
    // Alice may read the topic once her credential and ACL have reached the shards.
    let deadline = Instant::now() + WAIT;
    loop {
        let output = as_user("alice", &producers);
        if output.status.success() {
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "[]");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice never described the producers: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let abort = [
        "txn",
        "abort",
        "--topic",
        TOPIC,
        "--partition",
        "0",
        "--producer-id",
        "7",
        "--producer-epoch",
        "0",
        "--coordinator-epoch",
        "0",
    ];
    let refused = as_user("alice", &abort);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("CLUSTER_AUTHORIZATION_FAILED (31)"),
        "{stderr}"
    );
    // Bob may not even see the topic.
    let refused = as_user("bob", &producers);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("AUTHORIZATION_FAILED"), "{stderr}");
}
