//! `spate produce TOPIC`: one record per stdin line.
//!
//! Lines are read on their own thread and gathered into batches (up to `--batch-records`
//! records or `--batch-bytes` bytes, or whatever arrived within `--linger-ms`). Each batch
//! is split by partition, each partition's records become one v2 record batch, and each
//! leader gets one Produce request holding its partitions.

use spate_net::records::now_ms;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, ProduceRequest, ProducerId};
use kafka_protocol::records::Compression;
use serde_json::json;

use super::broker::{topic_name, Cluster, TopicLayout};
use super::records::{encode_batch, partition_for_key, OutgoingRecord, Sequenced};
use super::{error_name, output, ConnectionArgs};

/// How many times a partition's batch is retried after a retriable error.
const RETRIES: u32 = 5;
/// Errors after which a retry (with fresh Metadata) can succeed without duplicating
/// records: the broker did not append.
const RETRIABLE: &[i16] = &[
    3,  // UNKNOWN_TOPIC_OR_PARTITION: Metadata not propagated yet
    5,  // LEADER_NOT_AVAILABLE
    6,  // NOT_LEADER_OR_FOLLOWER
    19, // NOT_ENOUGH_REPLICAS (checked before the append)
];

/// `spate produce`.
#[derive(Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// The topic to write to; it must exist.
    topic: String,
    /// Split each line at the first SEP into key and value. Without it, records have no
    /// key. A line without SEP is reported and not sent.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Acknowledgements to wait for: 0 (none), 1 (the leader) or all (every in-sync replica).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: i16,
    /// Send every record to this partition. Otherwise keyed records go to
    /// murmur2(key) % partitions, as the Java client does, and unkeyed ones round-robin.
    #[arg(long)]
    partition: Option<i32>,
    /// Compression codec of the batches.
    #[arg(long, value_enum, default_value = "none")]
    compression: CompressionArg,
    /// Send once this many lines are waiting.
    #[arg(long, default_value_t = 500, value_name = "N")]
    batch_records: usize,
    /// Send once this many bytes of keys and values are waiting.
    #[arg(long, default_value_t = 16 * 1024, value_name = "BYTES")]
    batch_bytes: usize,
    /// Send what is waiting when no new line arrived for this long.
    #[arg(long, default_value_t = 5, value_name = "MS")]
    linger_ms: u64,
    /// A header on every record, KEY=VALUE; repeat for several (in order).
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    headers: Vec<(String, String)>,
    /// Produce as an idempotent producer (InitProducerId, then a producer id, epoch and
    /// sequence numbers on every batch): a batch resent after a lost answer or a broken
    /// connection is written once. Needs --acks all.
    #[arg(long)]
    idempotent: bool,
    /// The create time of every record: ISO 8601 (no zone means UTC) or milliseconds since
    /// the epoch. Default: when each line is read.
    #[arg(long, value_name = "TIME", value_parser = super::datetime::parse_time_ms)]
    timestamp: Option<i64>,
}

/// The `--compression` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionArg {
    fn codec(self) -> Compression {
        match self {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err(format!("expected 0, 1 or all, got {text:?}")),
    }
}

/// A line waiting to be sent.
struct Pending {
    line_number: u64,
    partition: i32,
    record: OutgoingRecord,
}

/// What happened to the lines so far.
#[derive(Default)]
struct Summary {
    lines: u64,
    produced: u64,
    failed: u64,
    /// Failure reason → how many lines.
    errors: BTreeMap<String, u64>,
}

impl Summary {
    fn fail(&mut self, reason: String, count: u64) {
        self.failed += count;
        *self.errors.entry(reason).or_default() += count;
    }
}

/// Runs `spate produce`.
pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.connection)?;
    let topic = cluster.topic(&args.topic)?;
    let partition_count = topic.partitions.len() as i32;
    if let Some(partition) = args.partition {
        if !(0..partition_count).contains(&partition) {
            anyhow::bail!(
                "topic {} has no partition {partition} (it has {partition_count})",
                topic.name
            );
        }
    }
    if args.idempotent && args.acks != -1 {
        anyhow::bail!("--idempotent needs --acks all, as Kafka's producers do");
    }
    let idempotence = match args.idempotent {
        true => Some(Idempotence::start(&mut cluster)?),
        false => None,
    };
    let started = Instant::now();
    let mut producer = Producer {
        cluster,
        topic,
        acks: args.acks,
        compression: args.compression.codec(),
        summary: Summary::default(),
        idempotence,
    };
    super::catch_interrupts();
    let lines = spawn_stdin_reader();
    let linger = Duration::from_millis(args.linger_ms);
    let mut pending: Vec<Pending> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut next_unkeyed_partition = 0i32;
    let headers: Vec<(String, Bytes)> = args
        .headers
        .iter()
        .map(|(key, value)| (key.clone(), Bytes::from(value.clone())))
        .collect();
    loop {
        let line = if pending.is_empty() {
            match lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => Some(line),
                Err(RecvTimeoutError::Timeout) if !super::interrupted() => continue,
                Err(_) => None,
            }
        } else {
            match lines.recv_timeout(linger) {
                Ok(line) => Some(line),
                Err(RecvTimeoutError::Timeout) => {
                    producer.send(std::mem::take(&mut pending));
                    pending_bytes = 0;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => None,
            }
        };
        let Some(line) = line.filter(|_| !super::interrupted()) else {
            break;
        };
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                producer.send(std::mem::take(&mut pending));
                return Err(anyhow::anyhow!("cannot read stdin: {error}"));
            }
        };
        producer.summary.lines += 1;
        let line_number = producer.summary.lines;
        let (key, value) = match split_line(line, args.key_separator.as_deref()) {
            Some(parts) => parts,
            None => {
                eprintln!(
                    "spate: line {line_number}: no key separator {:?}; not sent",
                    args.key_separator.as_deref().unwrap_or("")
                );
                producer.summary.fail("no key separator".to_string(), 1);
                continue;
            }
        };
        let partition = match (args.partition, &key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, partition_count),
            (None, None) => {
                let partition = next_unkeyed_partition;
                next_unkeyed_partition = (next_unkeyed_partition + 1) % partition_count;
                partition
            }
        };
        pending_bytes += key.as_ref().map_or(0, Bytes::len) + value.len();
        pending.push(Pending {
            line_number,
            partition,
            record: OutgoingRecord {
                key,
                value,
                timestamp_ms: args.timestamp.unwrap_or_else(now_ms),
                headers: headers.clone(),
            },
        });
        if pending.len() >= args.batch_records.max(1) || pending_bytes >= args.batch_bytes {
            producer.send(std::mem::take(&mut pending));
            pending_bytes = 0;
        }
    }
    producer.send(pending);
    report(
        &producer.summary,
        &producer.topic.name,
        args.connection.json,
        started.elapsed(),
    )
}

fn report(summary: &Summary, topic: &str, json: bool, elapsed: Duration) -> anyhow::Result<()> {
    if json {
        output::print_json(&json!({
            "topic": topic,
            "lines": summary.lines,
            "produced": summary.produced,
            "failed": summary.failed,
            "errors": summary.errors,
        }));
    }
    if summary.failed == 0 {
        eprintln!(
            "spate: produced {} records to {topic} in {:.2} s",
            summary.produced,
            elapsed.as_secs_f64()
        );
        return Ok(());
    }
    eprintln!(
        "spate: produced {} of {} records to {topic}; {} failed:",
        summary.produced, summary.lines, summary.failed
    );
    for (reason, count) in &summary.errors {
        eprintln!("spate:   {count} × {reason}");
    }
    anyhow::bail!(
        "{} of {} records were not produced",
        summary.failed,
        summary.lines
    )
}

/// Reads stdin line by line on its own thread, so the main thread can send what it has
/// when the input pauses. Each line comes without its `\n` (or `\r\n`).
fn spawn_stdin_reader() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (sender, receiver) = mpsc::sync_channel(4096);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if sender.send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = sender.send(Err(error));
                    return;
                }
            }
        }
    });
    receiver
}

/// Key and value of a line; `None` when a separator is set and the line lacks it.
fn split_line(line: Vec<u8>, separator: Option<&str>) -> Option<(Option<Bytes>, Bytes)> {
    let Some(separator) = separator.map(str::as_bytes).filter(|sep| !sep.is_empty()) else {
        return Some((None, Bytes::from(line)));
    };
    let position = line
        .windows(separator.len())
        .position(|window| window == separator)?;
    let line = Bytes::from(line);
    Some((
        Some(line.slice(..position)),
        line.slice(position + separator.len()..),
    ))
}

struct Producer {
    cluster: Cluster,
    topic: TopicLayout,
    acks: i16,
    compression: Compression,
    summary: Summary,
    /// With --idempotent.
    idempotence: Option<Idempotence>,
}

/// An idempotent producer's identity and each partition's next sequence number.
struct Idempotence {
    producer_id: i64,
    producer_epoch: i16,
    next_sequence: BTreeMap<i32, i32>,
}

impl Idempotence {
    /// InitProducerId without a transactional id: a fresh producer id and epoch.
    fn start(cluster: &mut Cluster) -> anyhow::Result<Idempotence> {
        let connection = cluster.any();
        let version = connection.version(ApiKey::InitProducerId, 0..=4)?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = connection.send(version, &request)?;
        super::check_error(response.error_code, None, || {
            "cannot get a producer id".to_string()
        })?;
        Ok(Idempotence {
            producer_id: response.producer_id.0,
            producer_epoch: response.producer_epoch,
            next_sequence: BTreeMap::new(),
        })
    }

    /// The sequence numbers of the next `count` records to `partition`.
    fn take(&mut self, partition: i32, count: usize) -> anyhow::Result<Sequenced> {
        let next = self.next_sequence.entry(partition).or_insert(0);
        let base_sequence = *next;
        let after = i64::from(base_sequence) + count as i64;
        if after > i64::from(i32::MAX) {
            anyhow::bail!("partition {partition} ran out of sequence numbers: start again");
        }
        *next = after as i32;
        Ok(Sequenced {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence,
        })
    }
}

/// One partition's records on their way to its leader.
struct PartitionBatch {
    partition: i32,
    first_line: u64,
    records: Vec<OutgoingRecord>,
    attempts: u32,
    /// The batch as first encoded: an idempotent batch is resent byte for byte, with the
    /// sequence numbers it was given, so that the broker can tell a resend.
    encoded: Option<Bytes>,
}

impl Producer {
    /// Sends the pending lines, retrying partitions that failed with retriable errors.
    fn send(&mut self, pending: Vec<Pending>) {
        let mut by_partition: BTreeMap<i32, PartitionBatch> = BTreeMap::new();
        for item in pending {
            by_partition
                .entry(item.partition)
                .or_insert_with(|| PartitionBatch {
                    partition: item.partition,
                    first_line: item.line_number,
                    records: Vec::new(),
                    attempts: 0,
                    encoded: None,
                })
                .records
                .push(item.record);
        }
        let mut batches: Vec<PartitionBatch> = by_partition.into_values().collect();
        while !batches.is_empty() {
            let retry = self.send_round(batches);
            if retry.is_empty() {
                break;
            }
            let attempt = retry.iter().map(|batch| batch.attempts).max().unwrap_or(0);
            std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
            if let Ok(topic) = self.cluster.topic(&self.topic.name) {
                self.topic = topic;
            }
            batches = retry;
        }
    }

    /// One Produce request per leader; returns the batches to retry.
    fn send_round(&mut self, batches: Vec<PartitionBatch>) -> Vec<PartitionBatch> {
        let mut by_leader: BTreeMap<i32, Vec<PartitionBatch>> = BTreeMap::new();
        for batch in batches {
            match self.topic.leader(batch.partition) {
                Ok(leader) => by_leader.entry(leader).or_default().push(batch),
                Err(error) => self
                    .summary
                    .fail(format!("{error:#}"), batch.records.len() as u64),
            }
        }
        let mut retry = Vec::new();
        for (leader, batches) in by_leader {
            retry.extend(self.send_to_leader(leader, batches));
        }
        retry
    }

    fn send_to_leader(&mut self, leader: i32, batches: Vec<PartitionBatch>) -> Vec<PartitionBatch> {
        let mut partitions = Vec::new();
        let mut sendable = Vec::new();
        for mut batch in batches {
            match self.encode(&mut batch) {
                Ok(bytes) => {
                    partitions.push(
                        PartitionProduceData::default()
                            .with_index(batch.partition)
                            .with_records(Some(bytes)),
                    );
                    sendable.push(batch);
                }
                Err(error) => self.summary.fail(
                    format!("cannot encode a batch: {error:#}"),
                    batch.records.len() as u64,
                ),
            }
        }
        if sendable.is_empty() {
            return Vec::new();
        }
        let request = ProduceRequest::default()
            .with_acks(self.acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&self.topic.name))
                .with_partition_data(partitions)]);
        let answer = self.cluster.broker(leader).and_then(|connection| {
            let version = connection.version(ApiKey::Produce, 3..=11)?;
            if self.acks == 0 {
                connection
                    .send_without_response(version, &request)
                    .map(|()| None)
            } else {
                connection.send(version, &request).map(Some)
            }
        });
        let response = match answer {
            Ok(None) => {
                self.summary.produced +=
                    sendable.iter().map(|b| b.records.len() as u64).sum::<u64>();
                return Vec::new();
            }
            Ok(Some(response)) => response,
            Err(error) => {
                self.cluster.drop_broker(leader);
                if self.idempotence.is_some() {
                    // The broker recognises a resent idempotent batch: resend.
                    return self.retry_or_fail(sendable, &format!("{error:#}"));
                }
                // The connection may be half-used; a retry could duplicate records, so
                // report them failed rather than resend.
                let reason = format!("{error:#}");
                for batch in &sendable {
                    self.summary
                        .fail(reason.clone(), batch.records.len() as u64);
                }
                return Vec::new();
            }
        };
        let codes: BTreeMap<i32, i16> = response
            .responses
            .iter()
            .flat_map(|topic| &topic.partition_responses)
            .map(|partition| (partition.index, partition.error_code))
            .collect();
        let mut retry = Vec::new();
        for mut batch in sendable {
            let count = batch.records.len() as u64;
            match codes.get(&batch.partition).copied() {
                Some(0) => self.summary.produced += count,
                Some(code) if RETRIABLE.contains(&code) && batch.attempts < RETRIES => {
                    batch.attempts += 1;
                    retry.push(batch);
                }
                Some(code) => {
                    eprintln!(
                        "spate: lines from {} ({count} records) to partition {}: {}",
                        batch.first_line,
                        batch.partition,
                        error_name(code)
                    );
                    self.summary.fail(error_name(code), count);
                }
                None => self.summary.fail(
                    format!("no answer for partition {}", batch.partition),
                    count,
                ),
            }
        }
        retry
    }

    /// The batch's bytes: encoded once, with sequence numbers when idempotent.
    fn encode(&mut self, batch: &mut PartitionBatch) -> anyhow::Result<Bytes> {
        if let Some(bytes) = &batch.encoded {
            return Ok(bytes.clone());
        }
        let sequenced = match &mut self.idempotence {
            Some(idempotence) => Some(idempotence.take(batch.partition, batch.records.len())?),
            None => None,
        };
        let bytes = encode_batch(&batch.records, self.compression, sequenced)?;
        batch.encoded = Some(bytes.clone());
        Ok(bytes)
    }

    /// Batches that may be sent again, and the failure of those out of attempts.
    fn retry_or_fail(&mut self, batches: Vec<PartitionBatch>, reason: &str) -> Vec<PartitionBatch> {
        let mut retry = Vec::new();
        for mut batch in batches {
            if batch.attempts < RETRIES {
                batch.attempts += 1;
                retry.push(batch);
            } else {
                self.summary
                    .fail(reason.to_string(), batch.records.len() as u64);
            }
        }
        retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        let (key, value) = split_line(b"k:v:w".to_vec(), Some(":")).unwrap();
        assert_eq!(key.as_deref(), Some(&b"k"[..]));
        assert_eq!(&value[..], b"v:w");
        assert!(split_line(b"novalue".to_vec(), Some(":")).is_none());
        let (key, value) = split_line(b"a::b".to_vec(), Some("::")).unwrap();
        assert_eq!((key.as_deref(), &value[..]), (Some(&b"a"[..]), &b"b"[..]));
        let (key, value) = split_line(b"plain".to_vec(), None).unwrap();
        assert_eq!((key, &value[..]), (None, &b"plain"[..]));
    }

    #[test]
    fn acks_accept_kafka_spellings() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert!(parse_acks("2").is_err());
    }
}
