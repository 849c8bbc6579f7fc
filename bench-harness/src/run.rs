//! One run of `produce`, `consume` or `e2e`: set up the topic, plan the connections, start
//! the actors on their threads, and fold what they measured into a [`RunResult`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::admin;
use crate::args::{
    CommonArgs, ConsumeCommand, ConsumerArgs, EndToEndCommand, ProduceCommand, ProducerArgs,
};
use crate::consume::{
    self, ConsumeSettings, ConsumerContext, ConsumerResult, Drain, StartFrom, StopRule,
};
use crate::cpu;
use crate::intervals::INTERVALS_MAX;
use crate::produce::{
    self, ConnectionLoad, ConnectionPlan, GeneratorPlan, GeneratorResult, ProduceSettings,
};
use crate::progress::Progress;
use crate::report::RunResult;
use crate::schedule::StartGate;
use crate::totals::{finish_result, ConsumerTotals, CpuSeconds, ProducerTotals, ResultParts};
use crate::workload::{self, BatchShape, Keys};

/// Runs `spate-bench produce`.
pub fn run_produce(command: &ProduceCommand) -> anyhow::Result<RunResult> {
    let common = &command.common;
    pin_to(&common.cpus)?;
    crate::secure::configure(common)?;
    let settings = produce_settings(common, &command.producer, false)?;
    let plans = connect_plans(common, command.producer.producers)?;
    let load = ProduceLoad::from_args(&command.producer)?;
    let progress = Progress::new();
    let gate = StartGate::new(produce::generator_threads(&common.cpus, plans.len()));
    let actors = Actors {
        progress: &progress,
        gate: &gate,
        cpus: &common.cpus,
    };
    let (results, clock) = std::thread::scope(|scope| {
        let handles = spawn_producers(scope, &plans, &settings, &load, &actors);
        let clock = gate.open(|| Clock::begin(common, "ack", &progress));
        (join_all(handles), clock)
    });
    let totals = ProducerTotals::fold(results?)?;
    // With --total-bytes the run ends when the budget is spent; the window is what it took.
    let ended_early = load
        .total_bytes
        .is_some()
        .then_some(totals.finished_at)
        .filter(|&finished| finished < clock.stop_at);
    let measured_s = match ended_early {
        Some(end) => end
            .saturating_duration_since(clock.measure_from)
            .as_secs_f64()
            .max(1e-3),
        None => common.duration,
    };
    let cpu_s = clock.finish(ended_early)?;
    let series = totals
        .series_records
        .iter()
        .map(|&records| records as f64 * settings.shape.record_size as f64 / 1e6);
    let payload_bytes = totals.records as f64 * settings.shape.record_size as f64;
    Ok(finish_result(ResultParts {
        scenario: "produce",
        parameters: serde_json::to_value(command)?,
        measured_s,
        payload_bytes,
        records: totals.records,
        latency: &totals.latency,
        latency_intervals: totals.intervals.as_ref(),
        produce_latency: None,
        errors: totals.errors,
        cpu_s,
        series_mb_s: series.collect(),
    }))
}

/// Runs `spate-bench consume`.
pub fn run_consume(command: &ConsumeCommand) -> anyhow::Result<RunResult> {
    let common = &command.common;
    pin_to(&common.cpus)?;
    crate::secure::configure(common)?;
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
        cpus: &common.cpus,
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
    let cpu_s = clock.finish(last_finish.filter(|_| command.until_caught_up))?;
    let totals = ConsumerTotals::fold(results)?;
    Ok(finish_result(ResultParts {
        scenario: "consume",
        parameters: serde_json::to_value(command)?,
        measured_s,
        payload_bytes: totals.value_bytes as f64,
        records: totals.records,
        latency: &totals.fetch_latency,
        latency_intervals: totals.intervals.as_ref(),
        produce_latency: None,
        errors: totals.errors,
        cpu_s,
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
    crate::secure::configure(common)?;
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
    let load = ProduceLoad::from_args(&command.producer)?;
    let progress = Progress::new();
    let gate = StartGate::new(
        consumer_plans.len() + produce::generator_threads(&common.cpus, producer_plans.len()),
    );
    let actors = Actors {
        progress: &progress,
        gate: &gate,
        cpus: &common.cpus,
    };
    let (producer_results, consumer_results, clock) = std::thread::scope(|scope| {
        let consumers = spawn_consumers(
            scope,
            &consumer_plans,
            starts,
            (&consume_settings, &stop),
            &actors,
        );
        let producers = spawn_producers(scope, &producer_plans, &produce_settings, &load, &actors);
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
    let cpu_s = clock.finish(None)?;
    let producers = ProducerTotals::fold(producer_results?)?;
    let consumers = ConsumerTotals::fold(consumer_results?)?;
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
        latency_intervals: consumers.intervals.as_ref(),
        produce_latency: Some(&producers.latency),
        errors: producers.errors + consumers.errors + unread,
        cpu_s,
        series_mb_s: consumers
            .series_bytes
            .iter()
            .map(|&bytes| bytes as f64 / 1e6)
            .collect(),
    }))
}

/// The run's clock, its progress line and its CPU probes (the broker's, and this
/// process's: the generator's own cost, which says how far it is from its ceiling).
struct Clock {
    start: Instant,
    measure_from: Instant,
    stop_at: Instant,
    progress: Arc<Progress>,
    reporter: Option<std::thread::JoinHandle<()>>,
    broker_probe: Option<CpuProbe>,
    generator_probe: CpuProbe,
}

/// A thread that reads a process's CPU time at the window's start and end.
struct CpuProbe {
    stop_early: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<anyhow::Result<f64>>,
}

impl CpuProbe {
    fn start(pid: u32, from: Instant, until: Instant) -> CpuProbe {
        let (stop_early, stopped) = mpsc::channel();
        let thread = std::thread::spawn(move || measure_cpu(pid, from, until, &stopped));
        CpuProbe { stop_early, thread }
    }

    fn finish(self, early: bool) -> anyhow::Result<f64> {
        if early {
            let _ = self.stop_early.send(());
        }
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("cpu probe panicked"))?
    }
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
        let broker_probe = common
            .broker_pid
            .map(|pid| CpuProbe::start(pid, measure_from, stop_at));
        let generator_probe = CpuProbe::start(std::process::id(), measure_from, stop_at);
        let clock = Clock {
            start,
            measure_from,
            stop_at,
            progress,
            reporter,
            broker_probe,
            generator_probe,
        };
        (start, clock)
    }

    /// Stops the progress line and returns the CPU seconds used in the window (ended
    /// early at `ended_at` for a catch-up read or a byte budget).
    fn finish(self, ended_at: Option<Instant>) -> anyhow::Result<CpuSeconds> {
        self.progress.finish();
        if let Some(reporter) = self.reporter {
            let _ = reporter.join();
        }
        let early = ended_at.is_some();
        let broker = self
            .broker_probe
            .map(|probe| probe.finish(early))
            .transpose()?;
        // The generator's own figure is informative; a failure to read it is not fatal.
        let generator = self.generator_probe.finish(early).ok();
        Ok(CpuSeconds { broker, generator })
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
    let interval = interval_of(common)?;
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
        duration: Duration::from_secs_f64(common.duration),
        warmup: Duration::from_secs_f64(common.warmup),
        stamp_records,
        interval,
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
        // Checked by the producing side where it applies; a consumer alone gets None for
        // an invalid value rather than a second error path.
        interval: interval_of(common).ok().flatten(),
    }
}

/// `--interval-percentiles` as a duration, checked against the run's length.
fn interval_of(common: &CommonArgs) -> anyhow::Result<Option<Duration>> {
    let Some(seconds) = common.interval_percentiles else {
        return Ok(None);
    };
    if seconds.is_nan() || seconds < 1.0 {
        bail!("--interval-percentiles must be at least 1 second");
    }
    if common.duration / seconds > INTERVALS_MAX as f64 {
        bail!("--interval-percentiles {seconds} would make more than {INTERVALS_MAX} intervals");
    }
    Ok(Some(Duration::from_secs_f64(seconds)))
}

/// Creates the topic if needed and spreads its partitions over `connections`.
fn connect_plans(common: &CommonArgs, connections: usize) -> anyhow::Result<Vec<ConnectionPlan>> {
    if connections == 0 {
        bail!("at least one connection is needed");
    }
    admin::ensure_topic(
        &common.brokers,
        &common.topic,
        common.partitions,
        &common.topic_config,
    )?;
    let leaders = admin::partition_leaders(&common.brokers, &common.topic)?;
    Ok(plan_connections(&leaders, connections))
}

type Handles<'scope, T> = Vec<std::thread::ScopedJoinHandle<'scope, anyhow::Result<T>>>;

/// What every actor shares: the progress line, the start gate, the generator's CPUs.
struct Actors<'a> {
    progress: &'a Arc<Progress>,
    gate: &'a StartGate,
    cpus: &'a [usize],
}

/// The producers' load for the whole run: `--rate` and `--total-bytes`.
struct ProduceLoad {
    records_per_s: Option<f64>,
    total_bytes: Option<u64>,
}

impl ProduceLoad {
    fn from_args(producer: &ProducerArgs) -> anyhow::Result<ProduceLoad> {
        Ok(ProduceLoad {
            records_per_s: producer
                .rate
                .as_deref()
                .map(|rate| parse_rate(rate, producer.record_size))
                .transpose()?,
            total_bytes: producer
                .total_bytes
                .as_deref()
                .map(parse_bytes)
                .transpose()?,
        })
    }

    /// One connection's share, for a connection writing `partitions` partitions, the
    /// `index`th of `connections`.
    fn share(
        &self,
        shape: &BatchShape,
        partitions: usize,
        (index, connections): (usize, usize),
    ) -> ConnectionLoad {
        let records_per_request = (shape.records_per_batch * partitions) as f64;
        let request_bytes = records_per_request * shape.record_size as f64;
        ConnectionLoad {
            requests_per_s: self
                .records_per_s
                .map(|rate| rate / connections as f64 / records_per_request),
            phase: index as f64 / connections as f64,
            requests_max: self.total_bytes.map(|bytes| {
                (bytes as f64 / connections as f64 / request_bytes)
                    .ceil()
                    .max(1.0) as u64
            }),
        }
    }
}

/// Starts the generator threads, one per CPU of `--cpus` (or one), each driving its share
/// of the connections from one glommio executor.
fn spawn_producers<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    plans: &'scope [ConnectionPlan],
    settings: &'scope ProduceSettings,
    load: &ProduceLoad,
    actors: &Actors<'scope>,
) -> Handles<'scope, GeneratorResult> {
    let threads = produce::generator_threads(actors.cpus, plans.len());
    let mut generators: Vec<GeneratorPlan<'scope>> = (0..threads)
        .map(|thread| GeneratorPlan {
            cpu: actors.cpus.get(thread).copied(),
            connections: Vec::new(),
        })
        .collect();
    for (index, plan) in plans.iter().enumerate() {
        let share = load.share(&settings.shape, plan.partitions.len(), (index, plans.len()));
        generators[index % threads]
            .connections
            .push((plan, share, index as u64 + 1));
    }
    generators
        .into_iter()
        .map(|generator| {
            let (progress, gate) = (actors.progress, actors.gate);
            scope.spawn(move || produce::run_generator(generator, settings, progress, gate))
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

/// Bytes from a count (4294967296) or with a unit (4GiB, 512MiB, 2GB, 100MB).
pub fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let units: [(&str, f64); 6] = [
        ("GiB", (1u64 << 30) as f64),
        ("MiB", (1u64 << 20) as f64),
        ("KiB", 1024.0),
        ("GB", 1e9),
        ("MB", 1e6),
        ("KB", 1e3),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|(unit, scale)| text.strip_suffix(unit).map(|number| (number, *scale)))
        .unwrap_or((text, 1.0));
    let value = number
        .trim()
        .parse::<f64>()
        .with_context(|| format!("{text:?} is not a size (e.g. 4GiB, 512MiB, 1000000)"))?
        * scale;
    if value.is_nan() || value < 1.0 {
        bail!("a size must be at least one byte, not {text:?}");
    }
    Ok(value as u64)
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
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn load_is_shared_over_connections() {
        let shape = BatchShape {
            record_size: 1000,
            records_per_batch: 10,
            compression: kafka_protocol::records::Compression::None,
            keys: Keys::None,
        };
        let load = ProduceLoad {
            records_per_s: Some(100_000.0),
            total_bytes: Some(1_000_000),
        };
        // 4 connections of 2 partitions: 20 records (20 kB) per request.
        let share = load.share(&shape, 2, (1, 4));
        assert_eq!(share.requests_per_s, Some(1250.0));
        assert_eq!(share.phase, 0.25);
        assert_eq!(share.requests_max, Some(13)); // 250 kB / 20 kB, rounded up
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
