//! The command-line flags of the load commands. `produce`, `consume` and `e2e` share the
//! flags that apply to them (the command-line contract), and the suite builds its
//! runs by parsing the same flags, so every scenario has a command line a user can repeat.

use std::path::PathBuf;

use clap::{Args, Parser};
use serde::Serialize;

/// Flags every load command takes.
#[derive(Args, Clone, Debug, Serialize)]
pub struct CommonArgs {
    /// Bootstrap broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic (created if missing).
    #[arg(long, default_value = "spate-bench")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Topic configs when it is created, KEY=VALUE, comma-separated (e.g.
    /// retention.bytes=1073741824,segment.bytes=134217728 for a soak that must not fill
    /// the disk).
    #[arg(long, value_delimiter = ',')]
    pub topic_config: Vec<String>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds before measurement starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Broker process id, to report its CPU-seconds per GiB.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Pin the generator's threads to these CPUs (e.g. 1 or 0,1).
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Write the JSON result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the picture (latency spectrum and throughput over time) here, as SVG.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Also report latency percentiles per interval of this many seconds (e.g. 60 for a
    /// soak): written as `latency_intervals_us` and drawn in the picture.
    #[arg(long)]
    pub interval_percentiles: Option<f64>,
    /// A client property, librdkafka style, as the `spate` CLI takes them (`-X
    /// security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=U -X
    /// sasl.password=P -X ssl.ca.location=FILE`); repeat for several. Passwords are not
    /// written to the JSON result.
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
    #[serde(serialize_with = "redacted")]
    pub properties: Vec<String>,
    /// A file of client properties, one KEY=VALUE per line (Kafka's --command-config).
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<PathBuf>,
}

/// Client properties as the JSON result shows them: without passwords.
fn redacted<S: serde::Serializer>(properties: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(spate_engine::security::client::redacted(properties))
}

/// Flags of the producing side.
#[derive(Args, Clone, Debug, Serialize)]
pub struct ProducerArgs {
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Records per batch (one batch per partition per request).
    #[arg(long, default_value_t = 64)]
    pub batch_records: usize,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Offered load: records per second (e.g. 50000) or megabytes per second (e.g.
    /// 100MB/s). Absent: as fast as possible.
    #[arg(long)]
    pub rate: Option<String>,
    /// Producer connections (partitions are spread over them; each talks to one leader).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Record keys: none, random:N (N distinct keys) or sequential.
    #[arg(long, default_value = "none")]
    pub keys: String,
    /// Stop once this much record payload was sent in all (e.g. 4GiB, to write a
    /// backlog); the run then ends before --duration.
    #[arg(long)]
    pub total_bytes: Option<String>,
}

/// Flags of the consuming side.
#[derive(Args, Clone, Debug, Serialize)]
pub struct ConsumerArgs {
    /// Consumer connections (partitions are spread over them; each talks to one leader).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Longest the broker may hold a Fetch waiting for data (fetch.max.wait.ms).
    #[arg(long, default_value_t = 100)]
    pub fetch_max_wait_ms: i32,
    /// Bytes a Fetch may return per partition (max.partition.fetch.bytes).
    #[arg(long, default_value_t = 1 << 20)]
    pub fetch_partition_max_bytes: i32,
}

/// `spate-bench produce`.
#[derive(Parser, Clone, Debug, Serialize)]
pub struct ProduceCommand {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub producer: ProducerArgs,
}

/// `spate-bench consume`.
#[derive(Parser, Clone, Debug, Serialize)]
pub struct ConsumeCommand {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub consumer: ConsumerArgs,
    /// Where to start: beginning (read the backlog) or end (read new records).
    #[arg(long, default_value = "beginning")]
    pub from: String,
    /// Stop once every partition is read to its high watermark (a catch-up read); the
    /// throughput is then over the time it took.
    #[arg(long)]
    pub until_caught_up: bool,
}

/// `spate-bench e2e`.
#[derive(Parser, Clone, Debug, Serialize)]
pub struct EndToEndCommand {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub producer: ProducerArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub consumer: ConsumerArgs,
    /// Seconds consumers keep reading after the producers stop, to collect the last
    /// records; records still unread then count as errors.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
}

/// Parses a command's flags from words, as the suite does.
pub fn parse_words<T: Parser>(words: &[String]) -> anyhow::Result<T> {
    let with_name = std::iter::once("spate-bench".to_string()).chain(words.iter().cloned());
    Ok(T::try_parse_from(with_name)?)
}
