//! The transaction coordinator over the wire (issue 17), with Kafka's answers to what clients
//! get wrong, and its inspection APIs: FindCoordinator for a transactional id (which makes
//! `__transaction_state`), InitProducerId's timeout check, AddPartitionsToTxn's per-partition
//! refusals and producer checks, EndTxn from a fenced epoch, DescribeTransactions and
//! ListTransactions, and the coordinator's state read back after a restart.

use std::time::{Duration, Instant};

use crate::harness;

use harness::{create_topic, topic_name, Broker};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, FindCoordinatorRequest, InitProducerIdRequest, ListTransactionsRequest,
    ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_net::client::Client;
use spate_net::error_code::NONE;

const TOPIC: &str = "txn-coordinated";
const ID: &str = "coordinated-app";

fn id(name: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(name.to_string()))
}

/// Waits (bounded) until FindCoordinator names a coordinator for `name`; its node id.
fn find_coordinator(client: &mut Client, name: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request = FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![StrBytes::from_string(name.to_string())]);
        let response = client.send(4, &request).expect("find coordinator");
        let coordinator = &response.coordinators[0];
        if coordinator.error_code == NONE {
            return coordinator.node_id.0;
        }
        assert_eq!(
            coordinator.error_code,
            ResponseError::CoordinatorNotAvailable.code(),
            "while __transaction_state is being made"
        );
        assert!(Instant::now() < deadline, "no transaction coordinator");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn init(client: &mut Client, name: &str, timeout_ms: i32) -> (i16, i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(id(name)))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    // COORDINATOR_LOAD_IN_PROGRESS right after a start: retried, as clients do.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = client.send(4, &request).expect("init producer id");
        if answer.error_code != ResponseError::CoordinatorLoadInProgress.code()
            || Instant::now() > deadline
        {
            return (
                answer.error_code,
                answer.producer_id.0,
                answer.producer_epoch,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn add_partitions(
    client: &mut Client,
    producer: (i64, i16),
    partitions: &[(&str, i32)],
) -> Vec<i16> {
    let topics = partitions
        .iter()
        .map(|(topic, partition)| {
            AddPartitionsToTxnTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![*partition])
        })
        .collect();
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(id(ID))
        .with_v3_and_below_producer_id(ProducerId(producer.0))
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(topics);
    let response = client.send(3, &request).expect("add partitions");
    response
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|topic| {
            topic
                .results_by_partition
                .iter()
                .map(|partition| partition.partition_error_code)
        })
        .collect()
}

fn end(client: &mut Client, producer: (i64, i16), commit: bool) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(id(ID))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_committed(commit);
    client.send(3, &request).expect("end txn").error_code
}

/// DescribeTransactions, retried (bounded) while an id's partition is still loading, as
/// clients retry COORDINATOR_LOAD_IN_PROGRESS.
fn describe(client: &mut Client, names: &[&str]) -> DescribeTransactionsResponse {
    let request = DescribeTransactionsRequest::default()
        .with_transactional_ids(names.iter().map(|name| id(name)).collect());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client.send(0, &request).expect("describe transactions");
        let loading = response
            .transaction_states
            .iter()
            .any(|state| state.error_code == ResponseError::CoordinatorLoadInProgress.code());
        if !loading || Instant::now() > deadline {
            return response;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until the id's state is `state`.
fn wait_for_state(client: &mut Client, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = describe(client, &[ID]);
        let current = &described.transaction_states[0];
        if current.error_code == NONE && current.transaction_state.as_str() == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "state {} (error {}), not {state}",
            current.transaction_state.as_str(),
            current.error_code
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_coordinator_answers_as_kafka_and_its_state_survives_a_restart() {
    let mut broker = Broker::start(1);
    let mut client = broker.client(0);
    create_topic(&mut client, TOPIC, 2);
    assert_eq!(find_coordinator(&mut client, ID), 0);

    // transaction.max.timeout.ms is 15 minutes by default.
    let (code, _, _) = init(&mut client, ID, 900_001);
    assert_eq!(code, ResponseError::InvalidTransactionTimeout.code());
    let (code, producer_id, epoch) = init(&mut client, ID, 60_000);
    assert_eq!((code, epoch), (NONE, 0));
    let producer = (producer_id, epoch);

    // One unknown partition refuses it and leaves the others not attempted.
    let codes = add_partitions(&mut client, producer, &[(TOPIC, 0), ("no-such-topic", 0)]);
    assert_eq!(
        codes,
        vec![
            ResponseError::OperationNotAttempted.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
    let codes = add_partitions(&mut client, (producer_id + 1000, 0), &[(TOPIC, 0)]);
    assert_eq!(codes, vec![ResponseError::InvalidProducerIdMapping.code()]);
    let codes = add_partitions(&mut client, producer, &[(TOPIC, 0), (TOPIC, 1)]);
    assert_eq!(codes, vec![NONE, NONE]);

    let described = describe(&mut client, &[ID, "never-seen"]);
    let state = &described.transaction_states[0];
    assert_eq!(state.error_code, NONE);
    assert_eq!(state.transaction_state.as_str(), "Ongoing");
    assert_eq!(
        (state.producer_id.0, state.producer_epoch),
        (producer_id, 0)
    );
    assert_eq!(state.transaction_timeout_ms, 60_000);
    assert!(state.transaction_start_time_ms > 0);
    assert_eq!(state.topics.len(), 1);
    assert_eq!(state.topics[0].partitions, vec![0, 1]);
    assert_eq!(
        described.transaction_states[1].error_code,
        ResponseError::TransactionalIdNotFound.code()
    );

    let list = ListTransactionsRequest::default()
        .with_state_filters(vec![
            StrBytes::from_static_str("Ongoing"),
            StrBytes::from_static_str("Bogus"),
        ])
        .with_duration_filter(-1);
    // COORDINATOR_LOAD_IN_PROGRESS until all 50 partitions of the new topic are loaded:
    // retried, as admin clients do.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = client.send(1, &list).expect("list transactions");
        if listed.error_code != ResponseError::CoordinatorLoadInProgress.code()
            || Instant::now() > deadline
        {
            break listed;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(listed.error_code, NONE);
    assert_eq!(listed.unknown_state_filters.len(), 1);
    assert_eq!(listed.transaction_states.len(), 1);
    assert_eq!(listed.transaction_states[0].transactional_id.as_str(), ID);

    // A wrong epoch is a fenced producer (EndTxn v2+); the right one commits.
    assert_eq!(
        end(&mut client, (producer_id, 1), true),
        ResponseError::ProducerFenced.code()
    );
    assert_eq!(end(&mut client, producer, true), NONE);
    wait_for_state(&mut client, "CompleteCommit");
    // A retried EndTxn of a completed commit is answered with success.
    assert_eq!(end(&mut client, producer, true), NONE);

    // The state is read back from __transaction_state after a restart, and the next
    // producer of the id gets the next epoch of the same producer id.
    broker.restart();
    let mut client = broker.client(0);
    wait_for_state(&mut client, "CompleteCommit");
    let (code, again, epoch) = init(&mut client, ID, 60_000);
    assert_eq!((code, again, epoch), (NONE, producer_id, 1));
}
