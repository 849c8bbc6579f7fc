//! `spate consume TOPIC`: prints records, one per line.
//!
//! Without `--group` it reads the partitions it is given (or all of them) from a start
//! offset. With `--group` it joins the group as a consumer ([`GroupMember`]), reads the
//! partitions the group assigns, resumes from the committed offsets, commits every 5 s and
//! on exit, and leaves the group on exit.

use spate_net::error_code::OFFSET_OUT_OF_RANGE;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest};
use serde_json::json;

use super::broker::{topic_name, Cluster, TopicLayout};
use super::datetime::parse_time_ms;
use super::group_member::GroupMember;
use super::offsets::{list_offsets, EARLIEST, LATEST};
use super::records::{decode_fetched, IncomingRecord};
use super::{error_name, ConnectionArgs};

/// How often a group consumer commits its positions.
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// The longest a Fetch waits for data (split between leaders when there are several).
const FETCH_WAIT_MS: i32 = 500;
/// Bytes a Fetch may return per partition and in all.
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const FETCH_MAX_BYTES: i32 = 16 << 20;

/// Fetch errors that fresh Metadata cures.
const REFRESH_METADATA: &[i16] = &[
    3,  // UNKNOWN_TOPIC_OR_PARTITION
    5,  // LEADER_NOT_AVAILABLE
    6,  // NOT_LEADER_OR_FOLLOWER
    74, // FENCED_LEADER_EPOCH
    75, // UNKNOWN_LEADER_EPOCH
];

/// `spate consume`.
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// The topic to read.
    topic: String,
    /// Join this consumer group: read the partitions it assigns, resume from its committed
    /// offsets, and commit what was printed (every 5 s and on exit).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Start at the earliest offset (with --group: where the group has no committed offset).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Where to start: an offset (needs --partition), `earliest` or `latest` (the default).
    #[arg(long, value_name = "N|earliest|latest", value_parser = parse_start, conflicts_with = "group")]
    offset: Option<Start>,
    /// Start at the first record at or after this time in every partition (the log end
    /// where there is none): ISO 8601 (2024-05-01T12:00:00Z; no zone means UTC) or
    /// milliseconds since the epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_time_ms,
          conflicts_with_all = ["group", "offset", "from_beginning"])]
    from_timestamp: Option<i64>,
    /// Read only this partition (default: all of them).
    #[arg(long, conflicts_with = "group")]
    partition: Option<i32>,
    /// read_uncommitted (default) or read_committed: whether records of open or aborted
    /// transactions are read (Fetch's isolation level; read_committed stops at the last
    /// stable offset).
    #[arg(long, value_enum, default_value = "read-uncommitted")]
    isolation_level: IsolationLevel,
    /// Exit after printing this many records.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Exit when no record arrived for this long.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Print each record's key before its value, separated by --key-separator.
    #[arg(long)]
    print_keys: bool,
    /// What goes between key and value with --print-keys.
    #[arg(long, default_value = "\t", value_name = "SEP")]
    key_separator: String,
    /// Print each record's headers first, as key:value pairs joined by commas (then the
    /// key separator); `--json` always includes them.
    #[arg(long)]
    print_headers: bool,
}

/// Fetch's isolation level.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum IsolationLevel {
    ReadUncommitted,
    ReadCommitted,
}

impl IsolationLevel {
    fn code(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// Where a partition starts when nothing else says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Start {
    /// The log start offset.
    Earliest,
    /// The log end offset: only new records.
    Latest,
    /// This offset.
    At(i64),
    /// The first record at or after this time (ms since the epoch), or the log end.
    Time(i64),
}

fn parse_start(text: &str) -> Result<Start, String> {
    match text {
        "earliest" | "beginning" => Ok(Start::Earliest),
        "latest" | "end" => Ok(Start::Latest),
        number => match number.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(Start::At(offset)),
            _ => Err(format!(
                "expected an offset, earliest or latest, got {text:?}"
            )),
        },
    }
}

/// Runs `spate consume`.
pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.connection)?;
    let topic = cluster.topic(&args.topic)?;
    super::catch_interrupts();
    let mut consumer = Consumer {
        reset: if args.from_beginning {
            Start::Earliest
        } else {
            Start::Latest
        },
        cluster,
        topic,
        positions: BTreeMap::new(),
        printer: Printer::new(&args),
        printed: 0,
    };
    let outcome = match args.group.clone() {
        None => consumer.run_assigned(&args),
        Some(group) => consumer.run_in_group(&args, &group),
    };
    eprintln!("spate: consumed {} records", consumer.printed);
    outcome
}

/// Prints records and remembers whether stdout went away.
struct Printer {
    out: BufWriter<std::io::Stdout>,
    json: bool,
    print_keys: bool,
    print_headers: bool,
    separator: Vec<u8>,
    topic: String,
    closed: bool,
}

impl Printer {
    fn new(args: &ConsumeArgs) -> Printer {
        Printer {
            out: BufWriter::new(std::io::stdout()),
            json: args.connection.json,
            print_keys: args.print_keys,
            print_headers: args.print_headers,
            separator: args.key_separator.as_bytes().to_vec(),
            topic: args.topic.clone(),
            closed: false,
        }
    }

    fn print(&mut self, partition: i32, record: &IncomingRecord) -> anyhow::Result<()> {
        let result = if self.json {
            let text = |bytes: &Option<bytes::Bytes>| {
                bytes
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            };
            let headers: serde_json::Map<String, serde_json::Value> = record
                .headers
                .iter()
                .map(|(key, value)| (key.clone(), json!(text(value))))
                .collect();
            let line = json!({
                "topic": self.topic,
                "partition": partition,
                "offset": record.offset,
                "timestamp": record.timestamp_ms,
                "key": text(&record.key),
                "value": text(&record.value),
                "headers": headers,
            });
            writeln!(self.out, "{line}")
        } else {
            let mut line = Vec::new();
            if self.print_headers {
                for (index, (key, value)) in record.headers.iter().enumerate() {
                    if index > 0 {
                        line.push(b',');
                    }
                    line.extend_from_slice(key.as_bytes());
                    line.push(b':');
                    line.extend_from_slice(value.as_deref().unwrap_or(b"null"));
                }
                line.extend_from_slice(&self.separator);
            }
            if self.print_keys {
                line.extend_from_slice(record.key.as_deref().unwrap_or(b"null"));
                line.extend_from_slice(&self.separator);
            }
            line.extend_from_slice(record.value.as_deref().unwrap_or(b"null"));
            line.push(b'\n');
            self.out.write_all(&line)
        };
        self.check(result)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        let result = self.out.flush();
        self.check(result)
    }

    /// A closed pipe (`spate consume ... | head`) ends consumption quietly.
    fn check(&mut self, result: std::io::Result<()>) -> anyhow::Result<()> {
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(error) => bail!("cannot write to stdout: {error}"),
        }
    }
}

struct Consumer {
    cluster: Cluster,
    topic: TopicLayout,
    /// Partition → next offset to read.
    positions: BTreeMap<i32, i64>,
    /// Where to go when there is no committed offset or the position fell out of range.
    reset: Start,
    printer: Printer,
    printed: u64,
}

/// Why the consume loop stopped or goes on.
#[derive(PartialEq)]
enum Progress {
    Continue,
    Done,
}

impl Consumer {
    fn run_assigned(&mut self, args: &ConsumeArgs) -> anyhow::Result<()> {
        let partitions = match args.partition {
            Some(partition) => {
                self.topic.leader(partition)?;
                vec![partition]
            }
            None => self.topic.partition_indexes(),
        };
        let start = match args.offset {
            Some(Start::At(_)) if args.partition.is_none() => {
                bail!("--offset N needs --partition (or use earliest/latest)")
            }
            Some(start) => start,
            None => args.from_timestamp.map_or(self.reset, Start::Time),
        };
        self.positions = self.resolve(&partitions, start)?;
        let mut idle_since = Instant::now();
        loop {
            let before = self.printed;
            if self.poll(args)? == Progress::Done {
                return self.printer.flush();
            }
            if self.printed > before {
                idle_since = Instant::now();
            } else if args
                .timeout_ms
                .is_some_and(|ms| idle_since.elapsed() >= Duration::from_millis(ms))
            {
                return self.printer.flush();
            }
        }
    }

    fn run_in_group(&mut self, args: &ConsumeArgs, group: &str) -> anyhow::Result<()> {
        let (mut member, partitions) =
            GroupMember::join(&mut self.cluster, group, &self.topic.name)?;
        self.start_from_committed(&mut member, &partitions)?;
        let mut last_commit = Instant::now();
        let mut idle_since = Instant::now();
        let outcome = loop {
            if member.rejoin_needed() {
                if let Err(error) = member.commit(&self.positions) {
                    eprintln!("spate: {error:#}");
                }
                let partitions = match member.rejoin(&mut self.cluster) {
                    Ok(partitions) => partitions,
                    Err(error) => break Err(error),
                };
                if let Err(error) = self.start_from_committed(&mut member, &partitions) {
                    break Err(error);
                }
            }
            let before = self.printed;
            match self.poll(args) {
                Ok(Progress::Done) => break Ok(()),
                Ok(Progress::Continue) => {}
                Err(error) => break Err(error),
            }
            if self.printed > before {
                idle_since = Instant::now();
            } else if args
                .timeout_ms
                .is_some_and(|ms| idle_since.elapsed() >= Duration::from_millis(ms))
            {
                break Ok(());
            }
            if last_commit.elapsed() >= COMMIT_INTERVAL {
                if let Err(error) = member.commit(&self.positions) {
                    break Err(error);
                }
                last_commit = Instant::now();
            }
        };
        self.printer.flush()?;
        let committed = member.commit(&self.positions);
        let left = member.leave();
        outcome.and(committed).and(left)
    }

    /// Positions for newly assigned partitions: the committed offsets, or the reset policy
    /// where the group has none.
    fn start_from_committed(
        &mut self,
        member: &mut GroupMember,
        partitions: &[i32],
    ) -> anyhow::Result<()> {
        self.topic = self.cluster.topic(&self.topic.name)?;
        let committed = member.committed(partitions)?;
        let missing: Vec<i32> = committed
            .iter()
            .filter(|(_, &offset)| offset < 0)
            .map(|(&p, _)| p)
            .collect();
        let mut positions: BTreeMap<i32, i64> = committed
            .into_iter()
            .filter(|(_, offset)| *offset >= 0)
            .collect();
        positions.extend(self.resolve(&missing, self.reset)?);
        self.positions = positions;
        Ok(())
    }

    /// The offset `start` means for each partition.
    fn resolve(&mut self, partitions: &[i32], start: Start) -> anyhow::Result<BTreeMap<i32, i64>> {
        match start {
            Start::At(offset) => Ok(partitions
                .iter()
                .map(|&partition| (partition, offset))
                .collect()),
            Start::Earliest => list_offsets(&mut self.cluster, &self.topic, partitions, EARLIEST),
            Start::Latest => list_offsets(&mut self.cluster, &self.topic, partitions, LATEST),
            Start::Time(time_ms) => {
                let mut found = list_offsets(&mut self.cluster, &self.topic, partitions, time_ms)?;
                // -1: nothing that recent; start at the end, as Kafka's tools do.
                let after: Vec<i32> = found
                    .iter()
                    .filter(|(_, &offset)| offset < 0)
                    .map(|(&partition, _)| partition)
                    .collect();
                found.extend(list_offsets(
                    &mut self.cluster,
                    &self.topic,
                    &after,
                    LATEST,
                )?);
                Ok(found)
            }
        }
    }

    /// One Fetch from each leader; prints what came back.
    fn poll(&mut self, args: &ConsumeArgs) -> anyhow::Result<Progress> {
        if super::interrupted()
            || self.printer.closed
            || args.count.is_some_and(|count| self.printed >= count)
        {
            return Ok(Progress::Done);
        }
        if self.positions.is_empty() {
            // Nothing assigned (more group members than partitions): wait for a rebalance.
            std::thread::sleep(Duration::from_millis(FETCH_WAIT_MS as u64));
            return Ok(Progress::Continue);
        }
        let partitions: Vec<i32> = self.positions.keys().copied().collect();
        let by_leader = self.topic.by_leader(&partitions)?;
        let wait_ms = (FETCH_WAIT_MS / by_leader.len() as i32).max(50);
        for (leader, led) in by_leader {
            if self.fetch_from(leader, &led, wait_ms, args)? == Progress::Done {
                return Ok(Progress::Done);
            }
        }
        self.printer.flush()?;
        Ok(Progress::Continue)
    }

    fn fetch_from(
        &mut self,
        leader: i32,
        partitions: &[i32],
        wait_ms: i32,
        args: &ConsumeArgs,
    ) -> anyhow::Result<Progress> {
        let request = FetchRequest::default()
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            .with_isolation_level(args.isolation_level.code())
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&self.topic.name))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&partition| {
                            FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset(self.positions[&partition])
                                .with_partition_max_bytes(PARTITION_MAX_BYTES)
                        })
                        .collect(),
                )]);
        let answer = self.cluster.broker(leader).and_then(|connection| {
            let version = connection.version(ApiKey::Fetch, 4..=12)?;
            connection.send(version, &request)
        });
        let response = match answer {
            Ok(response) => response,
            Err(error) => {
                self.cluster.drop_broker(leader);
                return Err(error);
            }
        };
        if response.error_code != 0 {
            bail!(
                "fetch from {} failed: {}",
                self.topic.name,
                error_name(response.error_code)
            );
        }
        for data in response
            .responses
            .iter()
            .flat_map(|topic| &topic.partitions)
        {
            let partition = data.partition_index;
            match data.error_code {
                0 => {}
                OFFSET_OUT_OF_RANGE => {
                    let reset = self.resolve(&[partition], self.reset)?;
                    eprintln!(
                        "spate: offset {} of {}-{partition} is out of range; moving to {}",
                        self.positions[&partition], self.topic.name, reset[&partition]
                    );
                    self.positions.extend(reset);
                    continue;
                }
                code if REFRESH_METADATA.contains(&code) => {
                    std::thread::sleep(Duration::from_millis(200));
                    self.topic = self.cluster.topic(&self.topic.name)?;
                    continue;
                }
                code => bail!(
                    "cannot fetch {}-{partition}: {}",
                    self.topic.name,
                    error_name(code)
                ),
            }
            let Some(bytes) = &data.records else { continue };
            let (records, next_offset) = decode_fetched(bytes)?;
            let position = self.positions[&partition];
            for record in records.iter().filter(|record| record.offset >= position) {
                if args.count.is_some_and(|count| self.printed >= count) || self.printer.closed {
                    return Ok(Progress::Done);
                }
                self.printer.print(partition, record)?;
                self.printed += 1;
                self.positions.insert(partition, record.offset + 1);
            }
            if let Some(next_offset) = next_offset {
                // Past trailing control records and compacted-away offsets too.
                let position = self.positions[&partition].max(next_offset);
                self.positions.insert(partition, position);
            }
        }
        Ok(Progress::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_offsets_parse() {
        assert_eq!(parse_start("earliest"), Ok(Start::Earliest));
        assert_eq!(parse_start("latest"), Ok(Start::Latest));
        assert_eq!(parse_start("42"), Ok(Start::At(42)));
        assert!(parse_start("-3").is_err());
        assert!(parse_start("soon").is_err());
    }
}
