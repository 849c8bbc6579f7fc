//! `spate-bench`: load and latency measurement against any Kafka-compatible broker.
//!
//! A tour: [`workload`] pre-encodes produce requests; [`produce`] runs one connection per
//! thread pair with a bounded window and open-loop scheduling; [`admin`] creates the topic
//! and finds partition leaders; [`cpu`] reads the broker's CPU time from /proc; [`report`]
//! prints and writes the result.

mod admin;
mod cpu;
mod produce;
mod report;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use produce::{ConnectionPlan, ProduceSettings};
use report::{Percentiles, RunResult};
use workload::BatchShape;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Throughput and latency harness for Kafka-compatible brokers.
#[derive(Parser)]
#[command(name = "spate-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce as fast as possible, or at a fixed rate, and measure acknowledge latency.
    Produce(ProduceArgs),
}

#[derive(Parser, Debug, serde::Serialize)]
struct ProduceArgs {
    /// Bootstrap broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic (created if missing).
    #[arg(long, default_value = "spate-bench")]
    topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records per batch (one batch per partition per request).
    #[arg(long, default_value_t = 64)]
    batch_records: usize,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Offered load: records per second (e.g. 50000) or megabytes per second (e.g. 100MB/s).
    /// Absent: as fast as possible.
    #[arg(long)]
    rate: Option<String>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds before measurement starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Producer connections (partitions are spread over them; each talks to one leader).
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    max_in_flight: usize,
    /// Broker process id, to report its CPU-seconds per GiB.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Pin the generator's threads to these CPUs (e.g. 1 or 0,1).
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Write the JSON result here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Produce(args) => run_produce(args),
    };
    if let Err(error) = outcome {
        eprintln!("spate-bench: {error:#}");
        std::process::exit(1);
    }
}

fn run_produce(args: ProduceArgs) -> anyhow::Result<()> {
    let acks: i16 = match args.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("--acks must be 0, 1 or all, not {other}"),
    };
    if args.producers == 0 || args.batch_records == 0 || args.max_in_flight == 0 {
        bail!("--producers, --batch-records and --max-in-flight must be at least 1");
    }
    pin_to(&args.cpus)?;
    admin::ensure_topic(&args.brokers, &args.topic, args.partitions)?;
    let leaders = admin::partition_leaders(&args.brokers, &args.topic)?;
    let plans = plan_connections(&leaders, args.producers);
    let records_per_s = args
        .rate
        .as_deref()
        .map(|rate| parse_rate(rate, args.record_size))
        .transpose()?;
    let settings = ProduceSettings {
        topic: args.topic.clone(),
        acks,
        shape: BatchShape {
            record_size: args.record_size,
            records_per_batch: args.batch_records,
            compression: workload::parse_compression(&args.compression)?,
        },
        max_in_flight: args.max_in_flight,
        requests_per_s: None,
        duration: Duration::from_secs_f64(args.duration),
        warmup: Duration::from_secs_f64(args.warmup),
    };
    let start = Instant::now();
    let measure_from = start + settings.warmup;
    let cpu_probe = args.broker_pid.map(|pid| (pid, measure_from));
    let cpu_thread = cpu_probe.map(|(pid, from)| {
        let until = from + settings.duration;
        std::thread::spawn(move || measure_cpu(pid, from, until))
    });
    let results: Vec<anyhow::Result<produce::ConnectionResult>> = std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(index, plan)| {
                let mut settings = settings.clone();
                settings.requests_per_s = records_per_s.map(|rate| {
                    let records_per_request = (args.batch_records * plan.partitions.len()) as f64;
                    rate / plans.len() as f64 / records_per_request
                });
                let cpus = args.cpus.clone();
                scope.spawn(move || {
                    pin_to(&cpus)?;
                    produce::run_connection(plan, &settings, start, index as u64 + 1)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("producer thread panicked")))
            })
            .collect()
    });
    let broker_cpu_s = cpu_thread
        .map(|thread| {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("cpu probe panicked"))?
        })
        .transpose()?;
    let mut latency = produce::new_latency_histogram()?;
    let mut records = 0u64;
    let mut errors = 0u64;
    let mut series = vec![0u64; settings.duration.as_secs().max(1) as usize];
    for result in results {
        let result = result?;
        latency.add(&result.latency_us)?;
        records += result.records_acked;
        errors += result.errors;
        for (total, bucket) in series.iter_mut().zip(&result.records_per_second) {
            *total += bucket;
        }
    }
    let seconds = settings.duration.as_secs_f64();
    let payload_bytes = records as f64 * args.record_size as f64;
    let result = RunResult {
        scenario: "produce".into(),
        parameters: serde_json::to_value(&args)?,
        throughput_mb_s: payload_bytes / seconds / 1e6,
        records_per_s: records as f64 / seconds,
        latency_us: Percentiles::from_histogram(&latency),
        errors,
        broker_cpu_s_per_gib: broker_cpu_s
            .filter(|_| payload_bytes > 0.0)
            .map(|cpu| cpu / (payload_bytes / (1u64 << 30) as f64)),
        broker_cpu_s,
        series_mb_s: series
            .iter()
            .map(|&records| records as f64 * args.record_size as f64 / 1e6)
            .collect(),
    };
    println!("{}", result.summary());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&result)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Spreads partitions over connections, never mixing leaders in one connection.
fn plan_connections(
    leaders: &BTreeMap<i32, std::net::SocketAddr>,
    producers: usize,
) -> Vec<ConnectionPlan> {
    let mut by_leader: BTreeMap<std::net::SocketAddr, Vec<i32>> = BTreeMap::new();
    for (&partition, &leader) in leaders {
        by_leader.entry(leader).or_default().push(partition);
    }
    let mut plans = Vec::new();
    let leader_count = by_leader.len();
    for (index, (broker, partitions)) in by_leader.into_iter().enumerate() {
        // Each leader gets its share of the connections, at least one.
        let share =
            (producers / leader_count + usize::from(index < producers % leader_count)).max(1);
        for connection in 0..share {
            let mine: Vec<i32> = partitions
                .iter()
                .copied()
                .skip(connection % partitions.len())
                .step_by(share.max(1))
                .collect();
            let mine = if mine.is_empty() {
                vec![partitions[connection % partitions.len()]]
            } else {
                mine
            };
            plans.push(ConnectionPlan {
                broker,
                partitions: mine,
            });
        }
    }
    plans
}

fn parse_rate(rate: &str, record_size: usize) -> anyhow::Result<f64> {
    let value = match rate.strip_suffix("MB/s") {
        Some(megabytes) => megabytes.trim().parse::<f64>()? * 1e6 / record_size as f64,
        None => rate
            .parse::<f64>()
            .context("--rate takes records/s (50000) or MB/s (100MB/s)")?,
    };
    if value <= 0.0 {
        bail!("--rate must be positive");
    }
    Ok(value)
}

fn measure_cpu(pid: u32, from: Instant, until: Instant) -> anyhow::Result<f64> {
    if let Some(wait) = from.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    let before = cpu::process_cpu_seconds(pid)?;
    if let Some(wait) = until.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    Ok(cpu::process_cpu_seconds(pid)? - before)
}

fn pin_to(cpus: &[usize]) -> anyhow::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: building a cpu set and applying it to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "cannot pin to CPUs {cpus:?}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}
