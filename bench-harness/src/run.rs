//! One run of `produce`, `consume` or `e2e`: set up the topic, plan the connections, start
//! the actors on their threads, and fold what they measured into a [`RunResult`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;

use crate::admin;
use crate::args::{
    CommonArgs, ConsumeCommand, ConsumerArgs, EndToEndCommand, ProduceCommand, ProducerArgs,
};
use crate::consume::{
    self, ConsumeSettings, ConsumerContext, ConsumerResult, Drain, StartFrom, StopRule,
};
use crate::cpu;
use crate::produce::{self, ConnectionPlan, ConnectionResult, ProduceSettings};
use crate::progress::Progress;
use crate::report::{new_latency_histogram, spectrum, HostFacts, Percentiles, RunResult};
use crate::schedule::StartGate;
use crate::workload::{self, BatchShape, Keys};

/// Runs `spate-bench produce`.
pub fn run_produce(command: &ProduceCommand) -> anyhow::Result<RunResult> {
    let common = &command.common;
    pin_to(&common.cpus)?;
    let settings = produce_settings(common, &command.producer, false)?;
    let plans = connect_plans(common, command.producer.producers)?;
    let rate = records_per_s(&command.producer)?;
    let progress = Progress::new();
    let gate = StartGate::new(plans.len());
    let actors = Actors {
        progress: &progress,
        gate: &gate,
    };
    let (results, clock) = std::thread::scope(|scope| {
        let handles = spawn_producers(scope, &plans, &settings, rate, &actors);
        let clock = gate.open(|| Clock::begin(common, "ack", &progress));
        (join_all(handles), clock)
    });
    let broker_cpu_s = clock.finish(None)?;
    let totals = ProducerTotals::fold(results?)?;
    let series = totals
        .series_records
        .iter()
        .map(|&records| records as f64 * settings.shape.record_size as f64 / 1e6);
    let payload_bytes = totals.records as f64 * settings.shape.record_size as f64;
    Ok(finish_result(ResultParts {
        scenario: "produce",
        parameters: serde_json::to_value(command)?,
        measured_s: common.duration,
        payload_bytes,
        records: totals.records,
        latency: &totals.latency,
        produce_latency: None,
        errors: totals.errors,
        broker_cpu_s,
        series_mb_s: series.collect(),
    }))
}

/// Runs `spate-bench consume`.
pub fn run_consume(command: &ConsumeCommand) -> anyhow::Result<RunResult> {
    let common = &command.common;
    pin_to(&common.cpus)?;
    let settings = consume_settings(
        common,
        &command.consumer,
        StartFrom::parse(&command.from)?,
        false,
    );
    let plans = connect_plans(common, command.consumer.consumers)?;
    let stop = if command.until_caught_up {
        StopRule::CaughtUp
    } else {
        StopRule::WindowEnd
    };
    let starts = plans
        .iter()
        .map(|plan| {
            consume::start_offsets(plan.broker, &common.topic, &plan.partitions, settings.from)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let progress = Progress::new();
    let gate = StartGate::new(plans.len());
    let actors = Actors {
        progress: &progress,
        gate: &gate,
    };
    let (results, clock) = std::thread::scope(|scope| {
        let handles = spawn_consumers(scope, &plans, starts, (&settings, &stop), &actors);
        let clock = gate.open(|| Clock::begin(common, "fetch", &progress));
        (join_all(handles), clock)
    });
    let results = results?;
    let last_finish = results.iter().map(|result| result.finished_at).max();
    // A catch-up read ends when it has caught up; the window is what it took.
    let measured_s = match last_finish {
        Some(end) if command.until_caught_up => end
            .saturating_duration_since(clock.measure_from)
            .as_secs_f64()
            .clamp(1e-3, common.duration),
        _ => common.duration,
    };
    let broker_cpu_s = clock.finish(last_finish.filter(|_| command.until_caught_up))?;
    let totals = ConsumerTotals::fold(&results)?;
    Ok(finish_result(ResultParts {
        scenario: "consume",
        parameters: serde_json::to_value(command)?,
        measured_s,
        payload_bytes: totals.value_bytes as f64,
        records: totals.records,
        latency: &totals.fetch_latency,
        produce_latency: None,
        errors: totals.errors,
        broker_cpu_s,
        series_mb_s: totals
            .series_bytes
            .iter()
            .map(|&bytes| bytes as f64 / 1e6)
            .collect(),
    }))
}

/// Runs `spate-bench e2e`: producers stamp each record with its intended send time and
/// consumers, on their own threads in this process, read it back from the log end.
pub fn run_e2e(command: &EndToEndCommand) -> anyhow::Result<RunResult> {
    let common = &command.common;
    pin_to(&common.cpus)?;
    let produce_settings = produce_settings(common, &command.producer, true)?;
    let consume_settings = consume_settings(common, &command.consumer, StartFrom::End, true);
    let producer_plans = connect_plans(common, command.producer.producers)?;
    let consumer_plans = plan_connections(
        &admin::partition_leaders(&common.brokers, &common.topic)?,
        command.consumer.consumers,
    );
    let starts = consumer_plans
        .iter()
        .map(|plan| {
            consume::start_offsets(plan.broker, &common.topic, &plan.partitions, StartFrom::End)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let drain = Drain::new();
    let stop = StopRule::Drain(drain.clone());
    let rate = records_per_s(&command.producer)?;
    let progress = Progress::new();
    let gate = StartGate::new(consumer_plans.len() + producer_plans.len());
    let actors = Actors {
        progress: &progress,
        gate: &gate,
    };
    let (producer_results, consumer_results, clock) = std::thread::scope(|scope| {
        let consumers = spawn_consumers(
            scope,
            &consumer_plans,
            starts,
            (&consume_settings, &stop),
            &actors,
        );
        let producers = spawn_producers(scope, &producer_plans, &produce_settings, rate, &actors);
        let clock = gate.open(|| Clock::begin(common, "end-to-end", &progress));
        let producer_results = join_all(producers);
        let acknowledged = producer_results.as_ref().map_or(0, |results| {
            results.iter().map(|result| result.records_acked).sum()
        });
        let deadline = clock.stop_at + Duration::from_secs_f64(command.drain);
        let deadline_ms = deadline.duration_since(clock.start).as_millis() as u64;
        // On a producer failure the consumers stop at once (target 0).
        drain.set_target(
            if producer_results.is_ok() {
                acknowledged
            } else {
                0
            },
            deadline_ms,
        );
        (producer_results, join_all(consumers), clock)
    });
    let broker_cpu_s = clock.finish(None)?;
    let producers = ProducerTotals::fold(producer_results?)?;
    let consumers = ConsumerTotals::fold(&consumer_results?)?;
    let unread = producers.records.saturating_sub(drain.consumed());
    if unread > 0 {
        eprintln!("spate-bench: {unread} acknowledged records were not consumed before the drain deadline");
    }
    Ok(finish_result(ResultParts {
        scenario: "e2e",
        parameters: serde_json::to_value(command)?,
        measured_s: common.duration,
        payload_bytes: consumers.value_bytes as f64,
        records: consumers.records,
        latency: &consumers.end_to_end,
        produce_latency: Some(&producers.latency),
        errors: producers.errors + consumers.errors + unread,
        broker_cpu_s,
        series_mb_s: consumers
            .series_bytes
            .iter()
            .map(|&bytes| bytes as f64 / 1e6)
            .collect(),
    }))
}

/// The run's clock, its progress line and its broker CPU probe.
struct Clock {
    start: Instant,
    measure_from: Instant,
    stop_at: Instant,
    progress: Arc<Progress>,
    reporter: Option<std::thread::JoinHandle<()>>,
    cpu_probe: Option<(
        mpsc::Sender<()>,
        std::thread::JoinHandle<anyhow::Result<f64>>,
    )>,
}

impl Clock {
    /// Starts the clock now; returns the start too, for [`StartGate::open`].
    fn begin(
        common: &CommonArgs,
        latency_label: &'static str,
        progress: &Arc<Progress>,
    ) -> (Instant, Clock) {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(common.warmup);
        let stop_at = measure_from + Duration::from_secs_f64(common.duration);
        let progress = progress.clone();
        let reporter =
            (!common.quiet).then(|| progress.spawn_reporter(start, measure_from, latency_label));
        let cpu_probe = common.broker_pid.map(|pid| {
            let (stop_early, stopped) = mpsc::channel();
            let thread =
                std::thread::spawn(move || measure_cpu(pid, measure_from, stop_at, &stopped));
            (stop_early, thread)
        });
        let clock = Clock {
            start,
            measure_from,
            stop_at,
            progress,
            reporter,
            cpu_probe,
        };
        (start, clock)
    }

    /// Stops the progress line and returns the broker's CPU seconds in the window (ended
    /// early at `ended_at` for a catch-up read).
    fn finish(self, ended_at: Option<Instant>) -> anyhow::Result<Option<f64>> {
        self.progress.finish();
        if let Some(reporter) = self.reporter {
            let _ = reporter.join();
        }
        let Some((stop_early, thread)) = self.cpu_probe else {
            return Ok(None);
        };
        if ended_at.is_some() {
            let _ = stop_early.send(());
        }
        let seconds = thread
            .join()
            .map_err(|_| anyhow::anyhow!("cpu probe panicked"))??;
        Ok(Some(seconds))
    }
}

fn measure_cpu(
    pid: u32,
    from: Instant,
    until: Instant,
    stopped: &mpsc::Receiver<()>,
) -> anyhow::Result<f64> {
    if let Some(wait) = from.checked_duration_since(Instant::now()) {
        if stopped.recv_timeout(wait).is_ok() {
            return Ok(0.0);
        }
    }
    let before = cpu::process_cpu_seconds(pid)?;
    if let Some(wait) = until.checked_duration_since(Instant::now()) {
        let _ = stopped.recv_timeout(wait);
    }
    Ok(cpu::process_cpu_seconds(pid)? - before)
}

fn produce_settings(
    common: &CommonArgs,
    producer: &ProducerArgs,
    stamp_records: bool,
) -> anyhow::Result<ProduceSettings> {
    let acks: i16 = match producer.acks.as_str() {
        "all" | "-1" => -1,
        "1" => 1,
        "0" => 0,
        other => bail!("--acks must be 0, 1 or all, not {other}"),
    };
    if producer.producers == 0 || producer.batch_records == 0 || producer.max_in_flight == 0 {
        bail!("--producers, --batch-records and --max-in-flight must be at least 1");
    }
    let compression = workload::parse_compression(&producer.compression)?;
    if stamp_records
        && (producer.record_size < crate::records::STAMP_BYTES
            || compression != kafka_protocol::records::Compression::None)
    {
        bail!("e2e needs --record-size of at least 8 and --compression none (stamps are written in place)");
    }
    if stamp_records && acks == 0 {
        bail!("e2e needs acks 1 or all, to know how many records to wait for");
    }
    Ok(ProduceSettings {
        topic: common.topic.clone(),
        acks,
        shape: BatchShape {
            record_size: producer.record_size,
            records_per_batch: producer.batch_records,
            compression,
            keys: Keys::parse(&producer.keys)?,
        },
        max_in_flight: producer.max_in_flight,
        requests_per_s: None,
        duration: Duration::from_secs_f64(common.duration),
        warmup: Duration::from_secs_f64(common.warmup),
        stamp_records,
    })
}

fn consume_settings(
    common: &CommonArgs,
    consumer: &ConsumerArgs,
    from: StartFrom,
    read_stamps: bool,
) -> ConsumeSettings {
    ConsumeSettings {
        topic: common.topic.clone(),
        from,
        fetch_max_wait_ms: consumer.fetch_max_wait_ms,
        partition_max_bytes: consumer.fetch_partition_max_bytes,
        duration: Duration::from_secs_f64(common.duration),
        warmup: Duration::from_secs_f64(common.warmup),
        read_stamps,
    }
}

/// Creates the topic if needed and spreads its partitions over `connections`.
fn connect_plans(common: &CommonArgs, connections: usize) -> anyhow::Result<Vec<ConnectionPlan>> {
    if connections == 0 {
        bail!("at least one connection is needed");
    }
    admin::ensure_topic(&common.brokers, &common.topic, common.partitions)?;
    let leaders = admin::partition_leaders(&common.brokers, &common.topic)?;
    Ok(plan_connections(&leaders, connections))
}

type Handles<'scope, T> = Vec<std::thread::ScopedJoinHandle<'scope, anyhow::Result<T>>>;

/// What every actor shares: the progress line and the start gate.
struct Actors<'a> {
    progress: &'a Arc<Progress>,
    gate: &'a StartGate,
}

/// `--rate` as records per second for the whole run, if given.
fn records_per_s(producer: &ProducerArgs) -> anyhow::Result<Option<f64>> {
    producer
        .rate
        .as_deref()
        .map(|rate| parse_rate(rate, producer.record_size))
        .transpose()
}

fn spawn_producers<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    plans: &'scope [ConnectionPlan],
    settings: &ProduceSettings,
    records_per_s: Option<f64>,
    actors: &Actors<'scope>,
) -> Handles<'scope, ConnectionResult> {
    plans
        .iter()
        .enumerate()
        .map(|(index, plan)| {
            let mut settings = settings.clone();
            settings.requests_per_s = records_per_s.map(|rate| {
                let records_per_request =
                    (settings.shape.records_per_batch * plan.partitions.len()) as f64;
                rate / plans.len() as f64 / records_per_request
            });
            let (progress, gate) = (actors.progress, actors.gate);
            scope.spawn(move || {
                produce::run_connection(plan, &settings, index as u64 + 1, progress, gate)
            })
        })
        .collect()
}

fn spawn_consumers<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    plans: &'scope [ConnectionPlan],
    starts: Vec<BTreeMap<i32, i64>>,
    (settings, stop): (&'scope ConsumeSettings, &'scope StopRule),
    actors: &Actors<'scope>,
) -> Handles<'scope, ConsumerResult> {
    plans
        .iter()
        .zip(starts)
        .map(|(plan, positions)| {
            let context = ConsumerContext {
                settings,
                gate: actors.gate,
                stop,
                progress: actors.progress,
            };
            scope.spawn(move || consume::run_consumer(plan, positions, &context))
        })
        .collect()
}

fn join_all<T>(handles: Handles<'_, T>) -> anyhow::Result<Vec<T>> {
    handles
        .into_iter()
        .map(|handle| {
            handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("an actor thread panicked")))
        })
        .collect()
}

struct ProducerTotals {
    latency: Histogram<u64>,
    records: u64,
    errors: u64,
    series_records: Vec<u64>,
}

impl ProducerTotals {
    fn fold(results: Vec<ConnectionResult>) -> anyhow::Result<ProducerTotals> {
        let mut totals = ProducerTotals {
            latency: new_latency_histogram(),
            records: 0,
            errors: 0,
            series_records: Vec::new(),
        };
        for result in results {
            totals.latency.add(&result.latency_us)?;
            totals.records += result.records_acked;
            totals.errors += result.errors;
            add_series(&mut totals.series_records, &result.records_per_second);
        }
        Ok(totals)
    }
}

struct ConsumerTotals {
    fetch_latency: Histogram<u64>,
    end_to_end: Histogram<u64>,
    records: u64,
    value_bytes: u64,
    errors: u64,
    series_bytes: Vec<u64>,
}

impl ConsumerTotals {
    fn fold(results: &[ConsumerResult]) -> anyhow::Result<ConsumerTotals> {
        let mut totals = ConsumerTotals {
            fetch_latency: new_latency_histogram(),
            end_to_end: new_latency_histogram(),
            records: 0,
            value_bytes: 0,
            errors: 0,
            series_bytes: Vec::new(),
        };
        for result in results {
            totals.fetch_latency.add(&result.fetch_latency_us)?;
            totals.end_to_end.add(&result.end_to_end_us)?;
            totals.records += result.records;
            totals.value_bytes += result.value_bytes;
            totals.errors += result.errors;
            add_series(&mut totals.series_bytes, &result.bytes_per_second);
        }
        Ok(totals)
    }
}

fn add_series(total: &mut Vec<u64>, one: &[u64]) {
    if total.len() < one.len() {
        total.resize(one.len(), 0);
    }
    for (sum, value) in total.iter_mut().zip(one) {
        *sum += value;
    }
}

struct ResultParts<'a> {
    scenario: &'static str,
    parameters: serde_json::Value,
    measured_s: f64,
    payload_bytes: f64,
    records: u64,
    latency: &'a Histogram<u64>,
    produce_latency: Option<&'a Histogram<u64>>,
    errors: u64,
    broker_cpu_s: Option<f64>,
    series_mb_s: Vec<f64>,
}

fn finish_result(parts: ResultParts<'_>) -> RunResult {
    let gib = parts.payload_bytes / (1u64 << 30) as f64;
    RunResult {
        scenario: parts.scenario.into(),
        parameters: parts.parameters,
        host: HostFacts::probe(),
        measured_s: parts.measured_s,
        throughput_mb_s: parts.payload_bytes / parts.measured_s / 1e6,
        records_per_s: parts.records as f64 / parts.measured_s,
        latency_us: Percentiles::from_histogram(parts.latency),
        produce_latency_us: parts.produce_latency.map(Percentiles::from_histogram),
        errors: parts.errors,
        broker_cpu_s_per_gib: parts
            .broker_cpu_s
            .filter(|_| gib > 0.0)
            .map(|cpu| cpu / gib),
        broker_cpu_s: parts.broker_cpu_s,
        series_mb_s: parts.series_mb_s,
        latency_spectrum_us: spectrum(parts.latency),
        limits: None,
        command: None,
    }
}

/// Spreads partitions over connections, never mixing leaders in one connection.
pub fn plan_connections(
    leaders: &BTreeMap<i32, SocketAddr>,
    connections: usize,
) -> Vec<ConnectionPlan> {
    let mut by_leader: BTreeMap<SocketAddr, Vec<i32>> = BTreeMap::new();
    for (&partition, &leader) in leaders {
        by_leader.entry(leader).or_default().push(partition);
    }
    let mut plans = Vec::new();
    let leader_count = by_leader.len();
    for (index, (broker, partitions)) in by_leader.into_iter().enumerate() {
        // Each leader gets its share of the connections, at least one.
        let share =
            (connections / leader_count + usize::from(index < connections % leader_count)).max(1);
        for connection in 0..share {
            let mine: Vec<i32> = partitions
                .iter()
                .copied()
                .skip(connection % partitions.len())
                .step_by(share)
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

/// Records per second from `--rate`: a count (50000) or megabytes per second (100MB/s).
pub fn parse_rate(rate: &str, record_size: usize) -> anyhow::Result<f64> {
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

/// Pins the calling thread (and the threads it starts later) to `cpus`.
pub fn pin_to(cpus: &[usize]) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_parses_records_and_megabytes() {
        assert_eq!(parse_rate("50000", 1024).unwrap(), 50000.0);
        assert_eq!(parse_rate("100MB/s", 1000).unwrap(), 100_000.0);
        assert!(parse_rate("0", 10).is_err());
        assert!(parse_rate("fast", 10).is_err());
    }

    #[test]
    fn plans_cover_every_partition_once_per_connection_group() {
        let leader: SocketAddr = "127.0.0.1:9092".parse().unwrap();
        let leaders: BTreeMap<i32, SocketAddr> =
            (0..10).map(|partition| (partition, leader)).collect();
        let plans = plan_connections(&leaders, 3);
        assert_eq!(plans.len(), 3);
        let mut seen: Vec<i32> = plans
            .iter()
            .flat_map(|plan| plan.partitions.clone())
            .collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        // More connections than partitions: every connection still writes somewhere.
        let plans = plan_connections(&leaders, 25);
        assert_eq!(plans.len(), 25);
        assert!(plans.iter().all(|plan| plan.partitions.len() == 1));
    }
}
