//! Transaction protocol v2 (KIP-890 part 2) over the wire, as a Kafka 4 producer speaks it (no
//! Kafka 4 client can be installed here, so the test sends its requests in its order): it
//! reads `transaction.version` 2 from ApiVersions, never sends AddPartitionsToTxn or
//! AddOffsetsToTxn, produces at Produce v12 (each partition's leader adds it to the
//! transaction, across shards with AddPartitionsToTxn v5), commits offsets with
//! TxnOffsetCommit v5, and ends each transaction with EndTxn v5, whose answer is the epoch
//! of the next one. A retried EndTxn is answered as done, a batch of the epoch before is
//! fenced, and the coordinator's state (Kafka 4's flexible log values) survives a restart.
//!
//! And KIP-890 part 1 for protocol v1 producers: a leader takes a producer's first
//! transactional batch of a transaction only once its coordinator confirms that the
//! partition was added (AddPartitionsToTxn v3 by the client), so no transaction hangs.

use std::time::{Duration, Instant};

use crate::harness;

use harness::{create_topic, metadata, topic_name, Broker};
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiVersionsRequest, DescribeTransactionsRequest, EndTxnRequest,
    FetchRequest, FindCoordinatorRequest, GroupId, InitProducerIdRequest, OffsetFetchRequest,
    ProduceRequest, ProducerId, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use spate_net::client::Client;
use spate_net::error_code::NONE;

const TOPIC: &str = "txn-v2";
const PARTITIONS: i32 = 4;
const ID: &str = "v2-app";
const GROUP: &str = "v2-group";
const READ_COMMITTED: i8 = 1;
const WAIT: Duration = Duration::from_secs(30);

fn id() -> TransactionalId {
    TransactionalId(StrBytes::from_static_str(ID))
}

/// FindCoordinator (key type 0 group, 1 transaction), retried until it names one; the shard.
fn coordinator(client: &mut Client, key: &str, key_type: i8) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let request = FindCoordinatorRequest::default()
            .with_key_type(key_type)
            .with_coordinator_keys(vec![StrBytes::from_string(key.to_string())]);
        let response = client.send(4, &request).expect("find coordinator");
        let found = &response.coordinators[0];
        if found.error_code == NONE {
            return (found.node_id.0 % 1024) as usize;
        }
        assert!(Instant::now() < deadline, "no coordinator for {key}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// InitProducerId for the transactional id at its coordinator, retried while it loads:
/// (producer id, epoch).
fn init(txn_client: &mut Client) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(id()))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = txn_client.send(5, &request).expect("init producer id");
        if answer.error_code == NONE {
            return (answer.producer_id.0, answer.producer_epoch);
        }
        assert!(Instant::now() < deadline, "init: {}", answer.error_code);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The shard leading each partition of the topic.
fn leaders(client: &mut Client) -> Vec<usize> {
    let response = metadata(client, Some(&[TOPIC]));
    let mut partitions: Vec<(i32, usize)> = response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, (p.leader_id.0 % 1024) as usize))
        .collect();
    partitions.sort();
    partitions.into_iter().map(|(_, leader)| leader).collect()
}

/// Produce v12 of one transactional batch to `partition` at its leader; the error code.
fn produce_v12(client: &mut Client, partition: i32, producer: (i64, i16), values: &[&str]) -> i16 {
    produce_at(client, 12, partition, producer, values)
}

/// Produce at `version` of one transactional batch (first sequence 0); the error code.
fn produce_at(
    client: &mut Client,
    version: i16,
    partition: i32,
    producer: (i64, i16),
    values: &[&str],
) -> i16 {
    let batch = harness::transactional_batch(values, (producer.0, producer.1, 0));
    let request = ProduceRequest::default()
        .with_transactional_id(Some(id()))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let response = client.send(version, &request).expect("produce");
    response.responses[0].partition_responses[0].error_code
}

/// EndTxn v5: (error, producer id, epoch).
fn end_v5(client: &mut Client, producer: (i64, i16), commit: bool) -> (i16, i64, i16) {
    let request = EndTxnRequest::default()
        .with_transactional_id(id())
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_committed(commit);
    let response = client.send(5, &request).expect("end txn v5");
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

/// DescribeTransactions of the id: (state, epoch, partitions as topic-partition).
fn describe(client: &mut Client) -> (String, i16, Vec<String>) {
    let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![id()]);
    let deadline = Instant::now() + WAIT;
    loop {
        let response = client.send(0, &request).expect("describe transactions");
        let state = &response.transaction_states[0];
        if state.error_code == NONE {
            let mut partitions: Vec<String> = state
                .topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .map(move |p| format!("{}-{p}", topic.topic.0.as_str()))
                })
                .collect();
            partitions.sort();
            return (
                state.transaction_state.to_string(),
                state.producer_epoch,
                partitions,
            );
        }
        assert_eq!(
            state.error_code,
            ResponseError::CoordinatorLoadInProgress.code()
        );
        assert!(Instant::now() < deadline, "the coordinator never loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the transaction is complete (its markers written).
fn wait_complete(client: &mut Client, state: &str) {
    let deadline = Instant::now() + WAIT;
    while describe(client).0 != state {
        assert!(Instant::now() < deadline, "never reached {state}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The values a read_committed fetch of `partition` from 0 returns (aborted ones dropped, as
/// a consumer drops them).
fn committed_values(client: &mut Client, partition: i32) -> Vec<String> {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(READ_COMMITTED)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(TOPIC))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response = client.send(11, &request).expect("fetch");
    let answer = &response.responses[0].partitions[0];
    assert_eq!(answer.error_code, NONE);
    let aborted: Vec<(i64, i64)> = answer
        .aborted_transactions
        .iter()
        .flatten()
        .map(|txn| (txn.producer_id.0, txn.first_offset))
        .collect();
    let mut values = Vec::new();
    if let Some(records) = &answer.records {
        let mut bytes = records.clone();
        for batch in RecordBatchDecoder::decode_all(&mut bytes).expect("decode") {
            for record in batch.records.iter().filter(|r| !r.control) {
                let dropped = aborted.iter().any(|&(producer, first)| {
                    producer == record.producer_id && first <= record.offset
                });
                if !dropped {
                    let value = record.value.as_ref().expect("a value");
                    values.push(String::from_utf8_lossy(value).into_owned());
                }
            }
        }
    }
    values
}

#[test]
fn a_kafka_4_producer_runs_transactions_with_protocol_v2() {
    let mut broker = Broker::start(2);
    let mut client = broker.client(0);
    create_topic(&mut client, TOPIC, PARTITIONS);

    // The client reads the finalized transaction.version (any node; the highest epoch).
    let versions = client
        .send(4, &ApiVersionsRequest::default())
        .expect("api versions");
    let finalized: Vec<(String, i16)> = versions
        .finalized_features
        .iter()
        .map(|feature| (feature.name.to_string(), feature.max_version_level))
        .collect();
    assert_eq!(finalized, vec![("transaction.version".to_string(), 2)]);
    assert!(versions.finalized_features_epoch > 0);

    let coordinator_shard = coordinator(&mut client, ID, 1);
    let mut txn_client = broker.client(coordinator_shard);
    let (producer_id, epoch) = init(&mut txn_client);
    assert_eq!(epoch, 0);

    let leaders = leaders(&mut client);
    assert!(
        leaders.contains(&0) && leaders.contains(&1),
        "partitions on both shards, so that some adds cross shards: {leaders:?}"
    );
    let mut clients = [broker.client(0), broker.client(1)];

    // Transaction 1, epoch 0: no AddPartitionsToTxn; the leaders add the partitions.
    for partition in 0..PARTITIONS {
        let leader = &mut clients[leaders[partition as usize]];
        let value = format!("t1-{partition}");
        assert_eq!(
            produce_v12(leader, partition, (producer_id, 0), &[&value]),
            NONE
        );
    }
    let (state, epoch, partitions) = describe(&mut txn_client);
    assert_eq!((state.as_str(), epoch), ("Ongoing", 0));
    assert_eq!(
        partitions,
        (0..PARTITIONS)
            .map(|p| format!("{TOPIC}-{p}"))
            .collect::<Vec<_>>()
    );
    // The group's offsets, with no AddOffsetsToTxn first.
    let group_shard = coordinator(&mut client, GROUP, 0);
    let mut group_client = broker.client(group_shard);
    let commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(id())
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(0)
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)])]);
    let answer = group_client.send(5, &commit).expect("txn offset commit v5");
    assert_eq!(answer.topics[0].partitions[0].error_code, NONE);
    let (_, _, partitions) = describe(&mut txn_client);
    assert!(
        partitions
            .iter()
            .any(|p| p.starts_with("__consumer_offsets-")),
        "{partitions:?}"
    );

    // EndTxn v5 bumps the epoch and says so.
    assert_eq!(
        end_v5(&mut txn_client, (producer_id, 0), true),
        (NONE, producer_id, 1)
    );
    wait_complete(&mut txn_client, "CompleteCommit");
    // A retry of it (the client never heard the answer) is done, with the same answer.
    assert_eq!(
        end_v5(&mut txn_client, (producer_id, 0), true),
        (NONE, producer_id, 1)
    );
    let offsets = OffsetFetchRequest::default()
        .with_require_stable(true)
        .with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic_name(TOPIC))
                .with_partition_indexes(vec![0])]))]);
    let fetched = group_client.send(8, &offsets).expect("offset fetch");
    assert_eq!(
        fetched.groups[0].topics[0].partitions[0].committed_offset,
        1
    );

    // Transaction 2, epoch 1, aborted: its records stay invisible to read_committed.
    for partition in 0..PARTITIONS {
        let leader = &mut clients[leaders[partition as usize]];
        let value = format!("t2-{partition}");
        assert_eq!(
            produce_v12(leader, partition, (producer_id, 1), &[&value]),
            NONE
        );
    }
    assert_eq!(
        end_v5(&mut txn_client, (producer_id, 1), false),
        (NONE, producer_id, 2)
    );
    wait_complete(&mut txn_client, "CompleteAbort");
    for partition in 0..PARTITIONS {
        let leader = &mut clients[leaders[partition as usize]];
        assert_eq!(
            committed_values(leader, partition),
            vec![format!("t1-{partition}")]
        );
    }
    // A zombie of epoch 1 is fenced by the bump that ended its transaction.
    let zombie = produce_v12(&mut clients[leaders[0]], 0, (producer_id, 1), &["zombie"]);
    assert_eq!(zombie, ResponseError::InvalidProducerEpoch.code());
    // So is its EndTxn, and a commit of nothing is no transaction to end.
    assert_eq!(
        end_v5(&mut txn_client, (producer_id, 0), false).0,
        ResponseError::ProducerFenced.code()
    );
    assert_eq!(
        end_v5(&mut txn_client, (producer_id, 2), true).0,
        ResponseError::InvalidTxnState.code()
    );

    // Another broker asking for verification only (KIP-890 part 1) needs CLUSTER_ACTION,
    // which the default authorizer-less broker grants; a partition not in the transaction
    // is TRANSACTION_ABORTABLE.
    let verify = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(id())
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(2)
            .with_verify_only(true)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(vec![0])]),
    ]);
    let verified = txn_client.send(5, &verify).expect("add partitions v5");
    assert_eq!(
        verified.results_by_transaction[0].topic_results[0].results_by_partition[0]
            .partition_error_code,
        ResponseError::TransactionAbortable.code()
    );

    // The coordinator's state reads back after a restart (Kafka 4's flexible values).
    broker.restart();
    let mut txn_client = broker.client(coordinator_shard);
    let (state, epoch, _) = describe(&mut txn_client);
    assert_eq!((state.as_str(), epoch), ("CompleteAbort", 2));
    let mut leader = broker.client(leaders[0]);
    assert_eq!(
        produce_v12(&mut leader, 0, (producer_id, 2), &["t3-0"]),
        NONE
    );
    assert_eq!(
        end_v5(&mut txn_client, (producer_id, 2), true),
        (NONE, producer_id, 3)
    );
}

#[test]
fn a_protocol_v1_producers_first_batch_waits_for_its_partition_to_be_added() {
    let broker = Broker::start(2);
    let mut client = broker.client(0);
    create_topic(&mut client, TOPIC, PARTITIONS);
    let coordinator_shard = coordinator(&mut client, ID, 1);
    let mut txn_client = broker.client(coordinator_shard);
    let producer = init(&mut txn_client);
    let leaders = leaders(&mut client);
    let mut clients = [broker.client(0), broker.client(1)];
    for partition in 0..PARTITIONS {
        let leader = &mut clients[leaders[partition as usize]];
        // Not added: refused, with the code each version knows.
        assert_eq!(
            produce_at(leader, 11, partition, producer, &["early"]),
            ResponseError::TransactionAbortable.code(),
            "partition {partition}"
        );
        assert_eq!(
            produce_at(leader, 9, partition, producer, &["early"]),
            ResponseError::InvalidTxnState.code()
        );
    }
    // A producer id no coordinator gave this transactional id.
    let stray = (producer.0 + 1000, 0);
    assert_eq!(
        produce_at(&mut clients[leaders[0]], 11, 0, stray, &["stray"]),
        ResponseError::InvalidProducerIdMapping.code()
    );
    // Added by the client (AddPartitionsToTxn v3), the batches are taken.
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(id())
        .with_v3_and_below_producer_id(ProducerId(producer.0))
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions((0..PARTITIONS).collect())]);
    let added = txn_client.send(3, &add).expect("add partitions v3");
    for result in &added.results_by_topic_v3_and_below[0].results_by_partition {
        assert_eq!(result.partition_error_code, NONE);
    }
    for partition in 0..PARTITIONS {
        let leader = &mut clients[leaders[partition as usize]];
        assert_eq!(produce_at(leader, 11, partition, producer, &["ok"]), NONE);
    }
    let (state, _, partitions) = describe(&mut txn_client);
    assert_eq!(state, "Ongoing");
    assert_eq!(partitions.len(), PARTITIONS as usize);
}
