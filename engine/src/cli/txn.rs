//! `spate txn`: Kafka's `kafka-transactions.sh`. Lists and describes transactions at their
//! coordinators (ListTransactions, DescribeTransactions), shows the producers a partition's
//! leader remembers (DescribeProducers), finds hanging transactions, and aborts one.
//!
//! A transaction "hangs" in a partition when the partition holds its records with no marker
//! and its coordinator will never write one: the coordinator does not know the producer, has
//! moved on (another epoch, the transaction completed), or never learned of the partition (a
//! client that wrote without AddPartitionsToTxn). A hanging transaction holds the partition's
//! last stable offset back, so read_committed consumers stop there for ever. `find-hanging`
//! is Kafka's check: a transaction open in a partition for longer than
//! `--max-transaction-timeout` minutes (the brokers' `transaction.max.timeout.ms`; no live
//! transaction outlasts it) that its coordinator does not hold open there. `abort` writes the
//! abort marker the coordinator would have written (WriteTxnMarkers to the partition's
//! leader, which needs CLUSTER_ACTION).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::describe_producers_response::ProducerState;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest,
    ProducerId, TransactionalId, WriteTxnMarkersRequest,
};
use serde_json::json;

use super::broker::{str_bytes, topic_name, Cluster, KeyType};
use super::output::{print_json, print_text, Table};
use super::{check_error, error_name, ConnectionArgs};
use spate_net::error_code::COORDINATOR_LOAD_IN_PROGRESS;

/// Kafka's default `transaction.max.timeout.ms`, in minutes (`find-hanging`'s default).
const DEFAULT_MAX_TRANSACTION_TIMEOUT_MIN: i64 = 15;
/// How often and how long a coordinator still loading is asked again (20 × 250 ms).
const LOADING_RETRIES: usize = 20;
const LOADING_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);
/// States in which a coordinator still owes a transaction its markers.
const OPEN_STATES: [&str; 4] = [
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "PrepareEpochFence",
];

/// `spate txn ...`
#[derive(Args, Debug)]
pub struct TxnArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: TxnCommand,
}

#[derive(Subcommand, Debug)]
enum TxnCommand {
    /// List the transactional ids every broker coordinates, with their producer id and state.
    List {
        /// Only transactions in this state (Empty, Ongoing, PrepareCommit, PrepareAbort,
        /// CompleteCommit, CompleteAbort, Dead, PrepareEpochFence); repeat for several.
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
        /// Only this producer id; repeat for several.
        #[arg(long = "producer-id", value_name = "ID")]
        producer_ids: Vec<i64>,
        /// Only transactions running for at least this many milliseconds.
        #[arg(long, value_name = "MS")]
        duration_ms: Option<i64>,
    },
    /// Describe a transactional id at its coordinator: state, producer, timeout, start time
    /// and the partitions of its open transaction.
    Describe {
        /// The transactional id.
        transactional_id: String,
    },
    /// The producers each partition's leader remembers, with the first offset of any
    /// transaction they hold open there.
    ///
    /// Example: spate txn producers --topic orders --partition 0
    Producers {
        /// The topic.
        #[arg(long)]
        topic: String,
        /// Only these partitions (repeat for several; default: all).
        #[arg(long = "partition", value_name = "N")]
        partitions: Vec<i32>,
    },
    /// Transactions open in a partition that their coordinator will never end: they hold
    /// read_committed consumers back. Exit code 1 when there are any.
    FindHanging {
        /// Only this topic (default: every topic).
        #[arg(long)]
        topic: Option<String>,
        /// Only these partitions of --topic (repeat for several).
        #[arg(long = "partition", value_name = "N", requires = "topic")]
        partitions: Vec<i32>,
        /// Open at least this long (minutes) to be a candidate: the brokers'
        /// transaction.max.timeout.ms.
        #[arg(long, value_name = "MINUTES", default_value_t = DEFAULT_MAX_TRANSACTION_TIMEOUT_MIN)]
        max_transaction_timeout: i64,
    },
    /// Abort a transaction open in one partition by writing its abort marker there (for a
    /// hanging transaction: `find-hanging` names it). Give --start-offset (the producer is
    /// looked up with DescribeProducers) or the producer's id, epoch and coordinator epoch.
    ///
    /// Example: spate txn abort --topic orders --partition 0 --start-offset 1234
    Abort {
        /// The topic.
        #[arg(long)]
        topic: String,
        /// The partition.
        #[arg(long)]
        partition: i32,
        /// The first offset of the transaction in the partition.
        #[arg(long, value_name = "OFFSET", required_unless_present = "producer_id")]
        start_offset: Option<i64>,
        /// The producer id (instead of --start-offset).
        #[arg(long, value_name = "ID", conflicts_with = "start_offset",
              requires_all = ["producer_epoch", "coordinator_epoch"])]
        producer_id: Option<i64>,
        /// The producer's epoch (with --producer-id).
        #[arg(long, value_name = "EPOCH", requires = "producer_id")]
        producer_epoch: Option<i16>,
        /// The coordinator epoch the marker carries (with --producer-id).
        #[arg(long, value_name = "EPOCH", requires = "producer_id")]
        coordinator_epoch: Option<i32>,
    },
}

/// Runs `spate txn ...`.
pub fn run(args: TxnArgs) -> anyhow::Result<()> {
    let json = args.connection.json;
    let mut cluster = Cluster::connect(&args.connection)?;
    match args.command {
        TxnCommand::List {
            states,
            producer_ids,
            duration_ms,
        } => list(&mut cluster, json, &states, &producer_ids, duration_ms),
        TxnCommand::Describe { transactional_id } => {
            describe(&mut cluster, json, &transactional_id)
        }
        TxnCommand::Producers { topic, partitions } => {
            producers(&mut cluster, json, &topic, partitions)
        }
        TxnCommand::FindHanging {
            topic,
            partitions,
            max_transaction_timeout,
        } => find_hanging(
            &mut cluster,
            json,
            topic.as_deref(),
            partitions,
            max_transaction_timeout,
        ),
        TxnCommand::Abort {
            topic,
            partition,
            start_offset,
            producer_id,
            producer_epoch,
            coordinator_epoch,
        } => {
            let producer = match (start_offset, producer_id, producer_epoch, coordinator_epoch) {
                (Some(offset), _, _, _) => {
                    producer_at(&mut cluster, &topic, partition, offset)?
                }
                (None, Some(id), Some(epoch), Some(coordinator_epoch)) => Producer {
                    id,
                    epoch,
                    coordinator_epoch,
                },
                _ => bail!("give --start-offset, or --producer-id with --producer-epoch and --coordinator-epoch"),
            };
            abort(&mut cluster, json, &topic, partition, producer)
        }
    }
}

/// One transaction of a ListTransactions answer.
struct Listed {
    transactional_id: String,
    coordinator: i32,
    producer_id: i64,
    state: String,
}

/// ListTransactions at every broker, merged.
fn list_all(
    cluster: &mut Cluster,
    states: &[String],
    producer_ids: &[i64],
    duration_ms: Option<i64>,
) -> anyhow::Result<Vec<Listed>> {
    cluster.metadata(Some(&[]))?;
    let broker_ids: Vec<i32> = cluster.brokers().keys().copied().collect();
    let mut listed = Vec::new();
    for broker_id in broker_ids {
        let connection = cluster.broker(broker_id)?;
        let lowest = if duration_ms.is_some() { 1 } else { 0 };
        let version = connection
            .version(ApiKey::ListTransactions, lowest..=1)
            .context("the broker cannot list transactions (ListTransactions)")?;
        let mut request = ListTransactionsRequest::default()
            .with_state_filters(states.iter().map(|state| str_bytes(state)).collect())
            .with_producer_id_filters(producer_ids.iter().map(|&id| ProducerId(id)).collect());
        if let Some(duration) = duration_ms {
            request = request.with_duration_filter(duration);
        }
        // A coordinator still loading its partitions answers COORDINATOR_LOAD_IN_PROGRESS
        // for a moment (a broker just started, or `__transaction_state` just made).
        let mut response = connection.send(version, &request)?;
        for _ in 0..LOADING_RETRIES {
            if response.error_code != COORDINATOR_LOAD_IN_PROGRESS {
                break;
            }
            std::thread::sleep(LOADING_BACKOFF);
            response = connection.send(version, &request)?;
        }
        check_error(response.error_code, None, || {
            format!("cannot list the transactions of broker {broker_id}")
        })?;
        if let Some(unknown) = response.unknown_state_filters.first() {
            bail!("no transaction state is called {unknown}");
        }
        listed.extend(response.transaction_states.into_iter().map(|state| Listed {
            transactional_id: state.transactional_id.0.to_string(),
            coordinator: broker_id,
            producer_id: state.producer_id.0,
            state: state.transaction_state.to_string(),
        }));
    }
    listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    Ok(listed)
}

fn list(
    cluster: &mut Cluster,
    json: bool,
    states: &[String],
    producer_ids: &[i64],
    duration_ms: Option<i64>,
) -> anyhow::Result<()> {
    let listed = list_all(cluster, states, producer_ids, duration_ms)?;
    if json {
        let rows: Vec<_> = listed
            .iter()
            .map(|txn| {
                json!({
                    "transactional_id": txn.transactional_id, "coordinator": txn.coordinator,
                    "producer_id": txn.producer_id, "state": txn.state,
                })
            })
            .collect();
        print_json(&json!(rows));
        return Ok(());
    }
    let mut table = Table::new(&["TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID", "STATE"]);
    for txn in listed {
        table.row(vec![
            txn.transactional_id,
            txn.coordinator.to_string(),
            txn.producer_id.to_string(),
            txn.state,
        ]);
    }
    table.print();
    Ok(())
}

/// DescribeTransactions of one id at its coordinator.
fn describe_one(cluster: &mut Cluster, transactional_id: &str) -> anyhow::Result<TransactionState> {
    let connection = cluster.coordinator_of(transactional_id, KeyType::Transaction)?;
    let version = connection
        .version(ApiKey::DescribeTransactions, 0..=0)
        .context("the broker cannot describe transactions (DescribeTransactions)")?;
    let request = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![TransactionalId(str_bytes(transactional_id))]);
    let mut attempts = 0;
    let state = loop {
        let response = connection.send(version, &request)?;
        let state = response
            .transaction_states
            .into_iter()
            .next()
            .context("the coordinator described nothing")?;
        if state.error_code != COORDINATOR_LOAD_IN_PROGRESS || attempts == LOADING_RETRIES {
            break state;
        }
        attempts += 1;
        std::thread::sleep(LOADING_BACKOFF);
    };
    check_error(state.error_code, None, || {
        format!("cannot describe transactional id {transactional_id}")
    })?;
    Ok(state)
}

fn describe(cluster: &mut Cluster, json: bool, transactional_id: &str) -> anyhow::Result<()> {
    let (coordinator, _) = cluster.find_coordinator_of(transactional_id, KeyType::Transaction)?;
    let state = describe_one(cluster, transactional_id)?;
    let partitions: Vec<(String, i32)> = state
        .topics
        .iter()
        .flat_map(|topic| {
            let name = topic.topic.0.to_string();
            topic.partitions.iter().map(move |&p| (name.clone(), p))
        })
        .collect();
    let start_ms = state.transaction_start_time_ms;
    let duration_ms = (start_ms >= 0).then(|| now_ms() - start_ms);
    if json {
        print_json(&json!({
            "transactional_id": transactional_id,
            "coordinator": coordinator,
            "state": state.transaction_state.to_string(),
            "producer_id": state.producer_id.0,
            "producer_epoch": state.producer_epoch,
            "timeout_ms": state.transaction_timeout_ms,
            "start_time_ms": (start_ms >= 0).then_some(start_ms),
            "duration_ms": duration_ms,
            "partitions": partitions.iter()
                .map(|(topic, partition)| json!({"topic": topic, "partition": partition}))
                .collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let mut table = Table::new(&[
        "COORDINATOR",
        "TRANSACTIONAL-ID",
        "PRODUCER-ID",
        "EPOCH",
        "STATE",
        "TIMEOUT-MS",
        "START-TIME-MS",
        "DURATION-MS",
        "PARTITIONS",
    ]);
    table.row(vec![
        coordinator.to_string(),
        transactional_id.to_string(),
        state.producer_id.0.to_string(),
        state.producer_epoch.to_string(),
        state.transaction_state.to_string(),
        state.transaction_timeout_ms.to_string(),
        if start_ms >= 0 {
            start_ms.to_string()
        } else {
            "-".into()
        },
        duration_ms.map_or("-".into(), |ms| ms.to_string()),
        if partitions.is_empty() {
            "-".into()
        } else {
            partitions
                .iter()
                .map(|(topic, partition)| format!("{topic}-{partition}"))
                .collect::<Vec<_>>()
                .join(",")
        },
    ]);
    table.print();
    Ok(())
}

/// Each partition's producers (DescribeProducers at its leader), or its error.
fn describe_producers(
    cluster: &mut Cluster,
    topic: &str,
    partitions: Vec<i32>,
) -> anyhow::Result<BTreeMap<i32, Result<Vec<ProducerState>, i16>>> {
    let layout = cluster.topic(topic)?;
    let partitions = if partitions.is_empty() {
        layout.partition_indexes()
    } else {
        partitions
    };
    let mut described = BTreeMap::new();
    for (leader, indexes) in layout.by_leader(&partitions)? {
        let connection = cluster.broker(leader)?;
        let version = connection
            .version(ApiKey::DescribeProducers, 0..=0)
            .context("the broker cannot describe producers (DescribeProducers)")?;
        let request = DescribeProducersRequest::default()
            .with_topics(vec![TopicRequest::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(indexes)]);
        let response = connection.send(version, &request)?;
        for answer in response
            .topics
            .into_iter()
            .flat_map(|topic| topic.partitions)
        {
            let result = if answer.error_code == 0 {
                Ok(answer.active_producers)
            } else {
                Err(answer.error_code)
            };
            described.insert(answer.partition_index, result);
        }
    }
    Ok(described)
}

fn producers(
    cluster: &mut Cluster,
    json: bool,
    topic: &str,
    partitions: Vec<i32>,
) -> anyhow::Result<()> {
    let described = describe_producers(cluster, topic, partitions)?;
    let mut rows = Vec::new();
    for (partition, result) in &described {
        let producers = match result {
            Ok(producers) => producers,
            Err(code) => bail!("partition {partition} of {topic}: {}", error_name(*code)),
        };
        for producer in producers {
            rows.push((*partition, producer));
        }
    }
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(partition, p)| {
                json!({
                    "topic": topic, "partition": partition, "producer_id": p.producer_id.0,
                    "producer_epoch": p.producer_epoch, "last_sequence": p.last_sequence,
                    "last_timestamp_ms": p.last_timestamp,
                    "coordinator_epoch": p.coordinator_epoch,
                    "current_transaction_start_offset":
                        (p.current_txn_start_offset >= 0).then_some(p.current_txn_start_offset),
                })
            })
            .collect();
        print_json(&json!(rows));
        return Ok(());
    }
    let mut table = Table::new(&[
        "PARTITION",
        "PRODUCER-ID",
        "EPOCH",
        "LAST-SEQUENCE",
        "LAST-TIMESTAMP-MS",
        "COORDINATOR-EPOCH",
        "TXN-START-OFFSET",
    ]);
    for (partition, p) in rows {
        table.row(vec![
            partition.to_string(),
            p.producer_id.0.to_string(),
            p.producer_epoch.to_string(),
            p.last_sequence.to_string(),
            p.last_timestamp.to_string(),
            p.coordinator_epoch.to_string(),
            if p.current_txn_start_offset >= 0 {
                p.current_txn_start_offset.to_string()
            } else {
                "-".into()
            },
        ]);
    }
    table.print();
    Ok(())
}

/// A transaction open in one partition.
struct OpenTxn {
    topic: String,
    partition: i32,
    producer: ProducerState,
}

/// Why an open transaction hangs, or `None` when its coordinator still holds it open there.
fn hanging_reason(
    open: &OpenTxn,
    owners: &BTreeMap<i64, Vec<String>>,
    descriptions: &BTreeMap<String, TransactionState>,
) -> Option<String> {
    let producer_id = open.producer.producer_id.0;
    let Some(ids) = owners.get(&producer_id) else {
        return Some("no coordinator knows the producer".into());
    };
    for id in ids {
        let Some(state) = descriptions.get(id) else {
            continue;
        };
        let holds_partition = state.topics.iter().any(|topic| {
            topic.topic.0.as_str() == open.topic && topic.partitions.contains(&open.partition)
        });
        if state.producer_id.0 == producer_id
            && OPEN_STATES.contains(&state.transaction_state.as_str())
            && holds_partition
        {
            return None;
        }
    }
    Some(format!(
        "the coordinator of {} does not hold it open in this partition",
        ids.join(",")
    ))
}

fn find_hanging(
    cluster: &mut Cluster,
    json: bool,
    topic: Option<&str>,
    partitions: Vec<i32>,
    max_timeout_min: i64,
) -> anyhow::Result<()> {
    let topics: Vec<String> = match topic {
        Some(topic) => vec![topic.to_string()],
        None => cluster.topics()?.into_iter().map(|t| t.name).collect(),
    };
    let now = now_ms();
    let threshold_ms = max_timeout_min.saturating_mul(60_000);
    let mut candidates = Vec::new();
    for name in &topics {
        for (partition, result) in describe_producers(cluster, name, partitions.clone())? {
            let producers = match result {
                Ok(producers) => producers,
                Err(code) => bail!("partition {partition} of {name}: {}", error_name(code)),
            };
            candidates.extend(
                producers
                    .into_iter()
                    .filter(|p| {
                        p.current_txn_start_offset >= 0 && now - p.last_timestamp >= threshold_ms
                    })
                    .map(|producer| OpenTxn {
                        topic: name.clone(),
                        partition,
                        producer,
                    }),
            );
        }
    }
    // Which transactional ids the candidates' producer ids belong to, and their state.
    let producer_ids: Vec<i64> = candidates
        .iter()
        .map(|open| open.producer.producer_id.0)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut owners: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut descriptions = BTreeMap::new();
    if !producer_ids.is_empty() {
        for listed in list_all(cluster, &[], &producer_ids, None)? {
            owners
                .entry(listed.producer_id)
                .or_default()
                .push(listed.transactional_id.clone());
            let state = describe_one(cluster, &listed.transactional_id)?;
            descriptions.insert(listed.transactional_id, state);
        }
    }
    let hanging: Vec<(&OpenTxn, String)> = candidates
        .iter()
        .filter_map(|open| Some((open, hanging_reason(open, &owners, &descriptions)?)))
        .collect();
    if json {
        let rows: Vec<_> = hanging
            .iter()
            .map(|(open, reason)| {
                json!({
                    "topic": open.topic, "partition": open.partition,
                    "producer_id": open.producer.producer_id.0,
                    "producer_epoch": open.producer.producer_epoch,
                    "coordinator_epoch": open.producer.coordinator_epoch,
                    "start_offset": open.producer.current_txn_start_offset,
                    "last_timestamp_ms": open.producer.last_timestamp,
                    "reason": reason,
                })
            })
            .collect();
        print_json(&json!(rows));
    } else if hanging.is_empty() {
        print_text("No hanging transactions.\n");
    } else {
        let mut table = Table::new(&[
            "TOPIC",
            "PARTITION",
            "PRODUCER-ID",
            "EPOCH",
            "COORDINATOR-EPOCH",
            "START-OFFSET",
            "OPEN-FOR-MIN",
            "WHY",
        ]);
        for (open, reason) in &hanging {
            table.row(vec![
                open.topic.clone(),
                open.partition.to_string(),
                open.producer.producer_id.0.to_string(),
                open.producer.producer_epoch.to_string(),
                open.producer.coordinator_epoch.to_string(),
                open.producer.current_txn_start_offset.to_string(),
                ((now - open.producer.last_timestamp) / 60_000).to_string(),
                reason.clone(),
            ]);
        }
        table.print();
    }
    if hanging.is_empty() {
        Ok(())
    } else {
        Err(super::ExitWith(1).into())
    }
}

/// What an abort marker names.
#[derive(Clone, Copy, Debug)]
struct Producer {
    id: i64,
    epoch: i16,
    coordinator_epoch: i32,
}

/// The producer whose transaction starts at `offset` in the partition.
fn producer_at(
    cluster: &mut Cluster,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<Producer> {
    let described = describe_producers(cluster, topic, vec![partition])?;
    let producers = match described.get(&partition) {
        Some(Ok(producers)) => producers,
        Some(Err(code)) => bail!("partition {partition} of {topic}: {}", error_name(*code)),
        None => bail!("the leader of partition {partition} of {topic} did not answer for it"),
    };
    let producer = producers
        .iter()
        .find(|p| p.current_txn_start_offset == offset)
        .with_context(|| {
            format!("no transaction starts at offset {offset} of partition {partition} of {topic}")
        })?;
    Ok(Producer {
        id: producer.producer_id.0,
        epoch: i16::try_from(producer.producer_epoch).context("producer epoch out of range")?,
        // -1: no marker yet; a marker's coordinator epoch must not be below the last one.
        coordinator_epoch: producer.coordinator_epoch.max(0),
    })
}

fn abort(
    cluster: &mut Cluster,
    json: bool,
    topic: &str,
    partition: i32,
    producer: Producer,
) -> anyhow::Result<()> {
    let leader = cluster.topic(topic)?.leader(partition)?;
    let connection = cluster.broker(leader)?;
    let version = connection
        .version(ApiKey::WriteTxnMarkers, 0..=1)
        .context("the broker cannot take transaction markers (WriteTxnMarkers)")?;
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer.id))
            .with_producer_epoch(producer.epoch)
            .with_transaction_result(false)
            .with_coordinator_epoch(producer.coordinator_epoch)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![partition])])]);
    let response = connection.send(version, &request)?;
    let code = response
        .markers
        .iter()
        .flat_map(|marker| &marker.topics)
        .flat_map(|topic| &topic.partitions)
        .find(|answer| answer.partition_index == partition)
        .map(|answer| answer.error_code)
        .context("the leader did not answer for the partition")?;
    check_error(code, None, || {
        format!(
            "the abort marker of producer {} on partition {partition} of {topic} was refused",
            producer.id
        )
    })?;
    if json {
        print_json(&json!({
            "topic": topic, "partition": partition, "producer_id": producer.id,
            "producer_epoch": producer.epoch, "coordinator_epoch": producer.coordinator_epoch,
            "aborted": true,
        }));
    } else {
        print_text(&format!(
            "Aborted the transaction of producer {} (epoch {}) in partition {partition} of {topic}.\n",
            producer.id, producer.epoch
        ));
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
