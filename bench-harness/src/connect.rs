//! `spate-bench connect`: how long a client takes to be served on a new connection, one
//! connection after another: TCP connect, the TLS handshake and the SASL login the client
//! properties ask for (SCRAM costs the client and the broker thousands of HMAC rounds each),
//! then a first request (Metadata for no topic, which a SASL listener refuses before the
//! login). A pool of clients reconnecting after a broker restart pays this per connection.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use hdrhistogram::Histogram;
use kafka_protocol::messages::MetadataRequest;
use serde::Serialize;

use crate::cpu::process_cpu_seconds;

/// `spate-bench connect`.
#[derive(Args, Clone, Debug)]
pub struct ConnectArgs {
    /// The broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Connections to open, one after another.
    #[arg(long, default_value_t = 200)]
    pub count: u32,
    /// A client property, librdkafka style (`-X security.protocol=SASL_SSL -X
    /// sasl.mechanism=SCRAM-SHA-512 ...`); repeat for several.
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// A file of client properties, one KEY=VALUE per line.
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<PathBuf>,
    /// Broker process id, to report its CPU time per connection.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Write the JSON result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No summary line on stdout.
    #[arg(long)]
    pub quiet: bool,
}

/// What `connect` measured.
#[derive(Debug, Serialize)]
pub struct ConnectResult {
    /// The client properties, without passwords.
    pub properties: Vec<String>,
    /// Connections opened and served.
    pub connections: u32,
    /// Connections served per second, one at a time.
    pub connections_per_second: f64,
    /// Time from connect to the first request's answer, milliseconds.
    pub mean_ms: f64,
    /// Its median.
    pub p50_ms: f64,
    /// Its 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// Broker CPU milliseconds per connection, with `--broker-pid`.
    pub broker_cpu_ms_per_connection: Option<f64>,
}

/// Runs `connect`.
pub fn run(args: &ConnectArgs) -> anyhow::Result<ConnectResult> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    crate::secure::configure_from(args.command_config.as_deref(), &args.properties)?;
    let address = args.brokers.split(',').next().unwrap_or_default().trim();
    let mut micros = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let cpu_before = args.broker_pid.map(process_cpu_seconds).transpose()?;
    let started = Instant::now();
    for _ in 0..args.count {
        let opened = Instant::now();
        let mut client = crate::secure::client(address, std::time::Duration::from_secs(10))?;
        client.set_client_id("spate-bench");
        let metadata = client.send(12, &MetadataRequest::default().with_topics(Some(vec![])))?;
        if metadata.brokers.is_empty() {
            bail!("{address} answered Metadata with no brokers");
        }
        micros.saturating_record(opened.elapsed().as_micros() as u64);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = args.broker_pid.map(process_cpu_seconds).transpose()?;
    let ms = |value: u64| value as f64 / 1000.0;
    let result = ConnectResult {
        properties: spate_engine::security::client::redacted(&args.properties),
        connections: args.count,
        connections_per_second: args.count as f64 / elapsed,
        mean_ms: micros.mean() / 1000.0,
        p50_ms: ms(micros.value_at_quantile(0.5)),
        p99_ms: ms(micros.value_at_quantile(0.99)),
        max_ms: ms(micros.max()),
        broker_cpu_ms_per_connection: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| (after - before) * 1000.0 / args.count as f64),
    };
    if !args.quiet {
        print_summary(&result);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    Ok(result)
}

fn print_summary(result: &ConnectResult) {
    println!(
        "{} connections, {:.0}/s one at a time; set-up to first answer: mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}",
        result.connections,
        result.connections_per_second,
        result.mean_ms,
        result.p50_ms,
        result.p99_ms,
        result.max_ms,
        result
            .broker_cpu_ms_per_connection
            .map(|cpu| format!("; broker CPU {cpu:.2} ms per connection"))
            .unwrap_or_default()
    );
}
