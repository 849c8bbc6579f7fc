//! `spate-bench suite --out DIR`: the standard scenarios against one broker, each written as
//! a JSON result and an SVG picture, plus `summary.md` with the exact command lines and every
//! figure beside the machine's limits measured in the same run.
//!
//! The scenarios: max throughput; latency at 10, 50 and 90% of that maximum (open loop);
//! many producers (1, 10, 100 and, without `--quick`, 1000 connections) at half the maximum;
//! keyed traffic over many partitions (100 with `--quick`, else 1000); end-to-end at half
//! the maximum; and, without `--quick` (or when `--only` names them), a catch-up read of a
//! large backlog from a cold page cache and a soak at half the maximum with percentiles per
//! minute.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use crate::args::{parse_words, EndToEndCommand, ProduceCommand};
use crate::compare::show;
use crate::limits::{self, Limits, LimitsArgs};
use crate::report::RunResult;

/// Flags of `spate-bench suite`.
#[derive(clap::Args, Clone, Debug)]
pub struct SuiteArgs {
    /// Directory for the results (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Bootstrap broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Broker process id, to report its CPU-seconds per GiB.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Shorter runs, and at most 100 connections and 100 partitions.
    #[arg(long)]
    pub quick: bool,
    /// Directory on the broker's disk for the limits (default: --out).
    #[arg(long)]
    pub limits_dir: Option<PathBuf>,
    /// Skip measuring the limits.
    #[arg(long)]
    pub skip_limits: bool,
    /// Pin the generator's threads to these CPUs.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Run each scenario this many times and keep the run with the median throughput.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Measured seconds per run (default 5 with --quick, else 15).
    #[arg(long)]
    pub duration: Option<f64>,
    /// A name for the broker under test, used in summary.md.
    #[arg(long, default_value = "broker")]
    pub label: String,
    /// Prefix of the topics the suite creates (use a fresh one per broker start).
    #[arg(long, default_value = "suite")]
    pub topic_prefix: String,
    /// Only run these scenarios (comma-separated names or name prefixes: `producers`
    /// selects every producers-N). summary.md still lists every result in --out.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// The broker's maximum records/s, when max-throughput is not run in this invocation
    /// (latency-at-N% and the half-load scenarios are fractions of it).
    #[arg(long)]
    pub max_records_per_s: Option<f64>,
    /// Backlog the catch-up scenario writes and reads back.
    #[arg(long, default_value = "4GiB")]
    pub catchup_backlog: String,
    /// Measured seconds of the soak (percentiles per minute).
    #[arg(long, default_value_t = 600.0)]
    pub soak_duration: f64,
}

/// The soak's topic keeps at most 1 GiB per partition in 128 MiB segments, deleted a second
/// after they expire (Kafka waits a minute: 24 GB at 400 MB/s), so an hour at
/// hundreds of MB/s does not fill the disk (and the broker's deletions are part of it).
const SOAK_TOPIC_CONFIG: &str =
    "retention.bytes=1073741824,segment.bytes=134217728,file.delete.delay.ms=1000";

/// Every scenario, in the order they run and are listed.
const SCENARIOS: [&str; 13] = [
    "max-throughput",
    "latency-at-10pct",
    "latency-at-50pct",
    "latency-at-90pct",
    "producers-1",
    "producers-10",
    "producers-100",
    "producers-1000",
    "keyed-100-partitions",
    "keyed-1000-partitions",
    "end-to-end",
    "catch-up",
    "soak",
];

/// One scenario's outcome, for the summary: a result, or why it failed.
struct Row {
    name: String,
    result: Result<RunResult, String>,
}

/// Runs the suite.
pub fn run(args: &SuiteArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let limits = if args.skip_limits {
        None
    } else {
        eprintln!("== limits");
        let limits_args = LimitsArgs {
            dir: args.limits_dir.clone().unwrap_or_else(|| args.out.clone()),
            size_mib: if args.quick { 512 } else { 1024 },
            queue_depth: 4,
            tcp_seconds: if args.quick { 2.0 } else { 3.0 },
            repeat: args.repeat,
            json: Some(args.out.join("limits.json")),
        };
        Some(limits::run(&limits_args)?)
    };
    let mut suite = Suite {
        args,
        limits: limits.as_ref(),
        rows: Vec::new(),
    };
    let partitions = 4;
    let max = suite.scenario(
        "max-throughput",
        "produce",
        &format!("--partitions {partitions} --producers {partitions}"),
    )?;
    let max_records_per_s = args
        .max_records_per_s
        .or(max.map(|max| max.records_per_s))
        .unwrap_or(10_000.0)
        .max(1000.0);
    for percent in [10, 50, 90] {
        let rate = (max_records_per_s * percent as f64 / 100.0).round();
        suite.scenario(
            &format!("latency-at-{percent}pct"),
            "produce",
            &format!("--partitions {partitions} --producers {partitions} --rate {rate}"),
        )?;
    }
    let half = (max_records_per_s / 2.0).round();
    let connections: &[usize] = if args.quick {
        &[1, 10, 100]
    } else {
        &[1, 10, 100, 1000]
    };
    for &producers in connections {
        suite.scenario(
            &format!("producers-{producers}"),
            "produce",
            &format!("--partitions 10 --producers {producers} --rate {half} --max-in-flight 2"),
        )?;
    }
    let keyed_partitions = if args.quick { 100 } else { 1000 };
    suite.scenario(
        &format!("keyed-{keyed_partitions}-partitions"),
        "produce",
        &format!(
            "--partitions {keyed_partitions} --producers 4 --keys random:100000 --batch-records 8"
        ),
    )?;
    suite.scenario(
        "end-to-end",
        "e2e",
        &format!("--partitions {partitions} --producers {partitions} --consumers 1 --rate {half} --fetch-max-wait-ms 10"),
    )?;
    // The long scenarios run in a full suite, or in a quick one when named.
    let named = |name: &str| args.only.iter().any(|only| only == name);
    if !args.quick || named("catch-up") {
        suite.catch_up()?;
    }
    if !args.quick || named("soak") {
        suite.scenario(
            "soak",
            "produce",
            &format!(
                "--partitions {partitions} --producers {partitions} --rate {half} \
                 --interval-percentiles 60 --topic-config {SOAK_TOPIC_CONFIG}"
            ),
        )?;
    }
    let summary = suite.summary();
    std::fs::write(args.out.join("summary.md"), &summary)?;
    println!("{summary}");
    Ok(())
}

struct Suite<'a> {
    args: &'a SuiteArgs,
    limits: Option<&'a Limits>,
    rows: Vec<Row>,
}

impl Suite<'_> {
    /// Runs one scenario (`repeat` times, keeping the median by throughput) unless `--only`
    /// leaves it out; returns its result.
    fn scenario(
        &mut self,
        name: &str,
        kind: &str,
        flags: &str,
    ) -> anyhow::Result<Option<RunResult>> {
        let args = self.args;
        let selected = |only: &String| name == only || name.starts_with(&format!("{only}-"));
        if !args.only.is_empty() && !args.only.iter().any(selected) {
            return Ok(None);
        }
        let (duration, warmup) = match (args.duration, args.quick) {
            _ if name == "soak" => (args.soak_duration, 3.0),
            (Some(duration), _) => (duration, (duration / 5.0).clamp(1.0, 3.0)),
            (None, true) => (5.0, 1.0),
            (None, false) => (15.0, 3.0),
        };
        let topic = format!(
            "{}-{}",
            args.topic_prefix,
            name.split("-at-").next().unwrap_or(name)
        );
        let mut command = format!(
            "{kind} --brokers {} --topic {topic} --record-size {} --acks all --duration {duration} --warmup {warmup} {flags}",
            args.brokers, args.record_size
        );
        if let Some(pid) = args.broker_pid {
            let _ = write!(command, " --broker-pid {pid}");
        }
        if !args.cpus.is_empty() {
            let cpus: Vec<String> = args.cpus.iter().map(usize::to_string).collect();
            let _ = write!(command, " --cpus {}", cpus.join(","));
        }
        eprintln!("== {name}: spate-bench {command}");
        let words: Vec<String> = command
            .split_whitespace()
            .skip(1)
            .map(String::from)
            .collect();
        let mut runs = Vec::new();
        // A soak is long by design: once.
        let repeat = if name == "soak" {
            1
        } else {
            args.repeat.max(1)
        };
        for _ in 0..repeat {
            let outcome = match kind {
                "e2e" => crate::run::run_e2e(&parse_words::<EndToEndCommand>(&words)?),
                _ => crate::run::run_produce(&parse_words::<ProduceCommand>(&words)?),
            };
            match outcome {
                Ok(result) => {
                    eprintln!("{}", result.summary());
                    runs.push(result);
                }
                Err(error) => {
                    // A broker that fails one scenario still gets the others measured.
                    eprintln!("scenario {name} failed: {error:#}");
                    self.rows.push(Row {
                        name: name.to_string(),
                        result: Err(format!("{error:#}")),
                    });
                    return Ok(None);
                }
            }
        }
        runs.sort_by(|a, b| a.throughput_mb_s.total_cmp(&b.throughput_mb_s));
        let mut result = runs.swap_remove(runs.len() / 2);
        result.limits = self.limits.map(serde_json::to_value).transpose()?;
        result.command = Some(format!("spate-bench {command}"));
        self.keep(name, result)
    }

    /// Writes a scenario's JSON and picture and adds its row.
    fn keep(&mut self, name: &str, result: RunResult) -> anyhow::Result<Option<RunResult>> {
        result.write_json(&self.args.out.join(format!("{name}.json")))?;
        crate::svg::write_many(
            &[(&self.args.label, &result)],
            &self.args.out.join(format!("{name}.svg")),
        )?;
        self.rows.push(Row {
            name: name.to_string(),
            result: Ok(result.clone()),
        });
        Ok(Some(result))
    }

    /// The catch-up read: a backlog written, the page cache dropped, read from offset 0.
    /// Its own limits are measured right before the read, on the same disk.
    fn catch_up(&mut self) -> anyhow::Result<()> {
        let args = self.args;
        let mut words = format!(
            "catchup --brokers {} --topic {}-catchup --backlog {} --record-size {} --quiet",
            args.brokers, args.topic_prefix, args.catchup_backlog, args.record_size
        );
        let limits_dir = args.limits_dir.clone().unwrap_or_else(|| args.out.clone());
        let _ = write!(words, " --limits-dir {}", limits_dir.display());
        if let Some(pid) = args.broker_pid {
            let _ = write!(words, " --broker-pid {pid}");
        }
        if !args.cpus.is_empty() {
            let cpus: Vec<String> = args.cpus.iter().map(usize::to_string).collect();
            let _ = write!(words, " --cpus {}", cpus.join(","));
        }
        eprintln!("== catch-up: spate-bench {words}");
        let parsed: Vec<String> = words.split_whitespace().skip(1).map(String::from).collect();
        #[derive(clap::Parser)]
        struct Catchup {
            #[command(flatten)]
            args: crate::catchup::CatchupArgs,
        }
        let catchup = parse_words::<Catchup>(&parsed)?.args;
        match crate::catchup::run(&catchup) {
            Ok(mut result) => {
                result.command = Some(format!("spate-bench {words}"));
                self.keep("catch-up", result)?;
            }
            Err(error) => {
                eprintln!("scenario catch-up failed: {error:#}");
                self.rows.push(Row {
                    name: "catch-up".into(),
                    result: Err(format!("{error:#}")),
                });
            }
        }
        Ok(())
    }

    /// Every row of this invocation, plus the results earlier invocations left in --out
    /// (a broker restarted between scenarios is measured by several invocations).
    fn all_rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = SCENARIOS
            .iter()
            .filter(|name| !self.rows.iter().any(|row| row.name == **name))
            .filter_map(|name| {
                let text = std::fs::read_to_string(self.args.out.join(format!("{name}.json")));
                let result: RunResult = serde_json::from_str(&text.ok()?).ok()?;
                Some(Row {
                    name: name.to_string(),
                    result: Ok(result),
                })
            })
            .collect();
        rows.extend(self.rows.iter().map(|row| Row {
            name: row.name.clone(),
            result: row.result.clone(),
        }));
        let rank = |name: &str| SCENARIOS.iter().position(|known| *known == name);
        rows.sort_by_key(|row| rank(&row.name).unwrap_or(usize::MAX));
        rows
    }

    fn summary(&self) -> String {
        let args = self.args;
        let mut text = format!("# spate-bench suite: {}\n\n", args.label);
        let host = crate::report::HostFacts::probe();
        let _ = writeln!(
            text,
            "Host: {} CPUs ({}), {:.0} GiB, Linux {}. Records of {} bytes, acks=all, {} run(s) \
             per scenario (median by throughput).\n",
            host.cpus, host.cpu_model, host.memory_gib, host.kernel, args.record_size, args.repeat
        );
        let stored_limits: Option<Limits> = std::fs::read_to_string(args.out.join("limits.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let limits = self.limits.or(stored_limits.as_ref());
        let disk_sync = limits.map(|limits| limits.direct_write_fdatasync_mb_s);
        let disk_write = limits.map(|limits| limits.direct_write_mb_s);
        if let Some(limits) = limits {
            let _ = writeln!(
                text,
                "Limits (same run, {}): O_DIRECT write 1 MiB QD{} {:.0} MB/s; 1 MiB write + \
                 fdatasync {:.0} MB/s (fdatasync p50 {} us, p99 {} us); O_DIRECT read {:.0} MB/s; \
                 TCP loopback {:.0} MB/s.\n",
                limits.dir,
                limits.queue_depth,
                limits.direct_write_mb_s,
                limits.direct_write_fdatasync_mb_s,
                limits.fdatasync_p50_us,
                limits.fdatasync_p99_us,
                limits.direct_read_mb_s,
                limits.tcp_loopback_mb_s
            );
        }
        text.push_str(
            "| scenario | MB/s | % of disk write | % of write+fdatasync | records/s | p50 us | p99 us \
             | p99.9 us | p99.99 us | max us | CPU s/GiB | errors |\n",
        );
        text.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let rows = self.all_rows();
        let mut commands = String::new();
        for row in &rows {
            let result = match &row.result {
                Ok(result) => result,
                Err(error) => {
                    let _ = writeln!(
                        text,
                        "| {} | failed: {} |",
                        row.name,
                        error.replace('|', "/")
                    );
                    continue;
                }
            };
            if let Some(command) = &result.command {
                let _ = writeln!(commands, "{command}");
            }
            let latency = &result.latency_us;
            let share = |limit: Option<f64>| {
                show(limit.map(|limit| result.throughput_mb_s / limit * 100.0))
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                row.name,
                show(Some(result.throughput_mb_s)),
                share(disk_write),
                share(disk_sync),
                result.records_per_s,
                latency.p50,
                latency.p99,
                latency.p999,
                latency.p9999,
                latency.max,
                result
                    .broker_cpu_s_per_gib
                    .map_or("-".into(), |cpu| format!("{cpu:.2}")),
                result.errors
            );
        }
        for row in &rows {
            let Ok(result) = &row.result else { continue };
            if let Some(facts) = &result.catchup {
                let _ = writeln!(
                    text,
                    "\ncatch-up: {:.2} GB backlog read at {} MB/s in {:.1} s ({} of the O_DIRECT \
                     read measured right before it); page cache {}.",
                    facts.backlog_bytes as f64 / 1e9,
                    show(Some(result.throughput_mb_s)),
                    facts.read_s,
                    facts
                        .share_of_direct_read
                        .map_or("-".into(), |share| format!("{:.1}%", share * 100.0)),
                    if facts.page_cache_dropped {
                        "dropped"
                    } else {
                        "NOT dropped"
                    }
                );
            }
            if let Some(intervals) = &result.latency_intervals_us {
                let p99: Vec<u64> = intervals
                    .intervals
                    .iter()
                    .map(|interval| interval.latency_us.p99)
                    .collect();
                let _ = writeln!(
                    text,
                    "\n{}: p99 per {} s interval (us): {:?}",
                    row.name, intervals.interval_s, p99
                );
            }
        }
        text.push_str(
            "\nLatency is produce-acknowledge, except end-to-end (produce to consume) and \
             catch-up (fetch round trip). Commands:\n\n```\n",
        );
        text.push_str(&commands);
        text.push_str("```\n");
        text
    }
}
