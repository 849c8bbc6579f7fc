//! The producing side, event-driven: a few generator threads (one per CPU of `--cpus`, or
//! one), each running a glommio executor with one task per connection, so a thousand
//! connections cost a thousand small tasks, not two thousand threads.
//!
//! A connection task keeps a window of `--max-in-flight` requests outstanding. With
//! `--rate`, its send times are fixed in advance (open loop, [`Schedule`]): when the broker
//! falls behind and the window is full, the wait counts against latency, so queueing is not
//! hidden (no coordinated omission). Without `--rate` it sends as fast as the window allows.
//! The connections of one thread record into the thread's one set of histograms (an
//! HdrHistogram per connection would cost ~170 KiB each and a merge per report).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::AsyncWriteExt;
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use kafka_protocol::messages::{ProduceResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;

use crate::intervals::IntervalHistograms;
use crate::progress::{LatencyRecorder, Progress};
use crate::schedule::{Schedule, StartGate};
use crate::secure::AsyncStream;
use crate::wire::FrameBuffer;
use crate::workload::{self, BatchShape, StampPlan, PRODUCE_VERSION};

/// What every connection does.
#[derive(Clone, Debug)]
pub struct ProduceSettings {
    /// Topic to write.
    pub topic: String,
    /// 0, 1 or -1.
    pub acks: i16,
    /// Batch shape.
    pub shape: BatchShape,
    /// Requests in flight per connection.
    pub max_in_flight: usize,
    /// Measured time, after warm-up.
    pub duration: Duration,
    /// Time before measurement starts.
    pub warmup: Duration,
    /// Stamp every record's value with its intended send time (end-to-end mode), in
    /// nanoseconds since the run's start.
    pub stamp_records: bool,
    /// Keep latency per interval of this length (`--interval-percentiles`).
    pub interval: Option<Duration>,
}

/// Longest wait for a response (or for a send to make progress) before the run fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Receive buffer per connection: produce responses are small, and several fit.
const RECEIVE_BUFFER_BYTES: usize = 16 << 10;

/// One connection's plan.
#[derive(Clone, Debug)]
pub struct ConnectionPlan {
    /// The leader of `partitions`.
    pub broker: SocketAddr,
    /// Partitions each request writes one batch to.
    pub partitions: Vec<i32>,
}

/// One connection's share of the load.
#[derive(Clone, Debug)]
pub struct ConnectionLoad {
    /// Requests per second (open loop), or as fast as possible.
    pub requests_per_s: Option<f64>,
    /// Where in the schedule's period the first send falls, 0..1, so that a thousand
    /// connections at the same rate do not all send at the same instant.
    pub phase: f64,
    /// Requests to send at most (`--total-bytes`), or until the window closes.
    pub requests_max: Option<u64>,
}

/// What one generator thread measured (measurement window only), for all its connections.
pub struct GeneratorResult {
    /// Produce-acknowledge latency in microseconds.
    pub latency_us: Histogram<u64>,
    /// The same, per interval, with `--interval-percentiles`.
    pub latency_intervals: Option<IntervalHistograms>,
    /// Records acknowledged without error (with acks=0: sent).
    pub records_acked: u64,
    /// Partition errors in responses.
    pub errors: u64,
    /// Records acknowledged per one-second bucket of the measurement window.
    pub records_per_second: Vec<u64>,
    /// When the last connection finished.
    pub finished_at: Instant,
}

/// How many generator threads a run uses: one per CPU given, never more than connections.
pub fn generator_threads(cpus: &[usize], connections: usize) -> usize {
    cpus.len().clamp(1, connections.max(1))
}

/// One generator thread's connections.
pub struct GeneratorPlan<'a> {
    /// The CPU to pin the thread to, if any.
    pub cpu: Option<usize>,
    /// (plan, load, seed) of each connection.
    pub connections: Vec<(&'a ConnectionPlan, ConnectionLoad, u64)>,
}

/// Runs one generator thread to completion on the calling thread: connects and encodes
/// every connection, waits at `gate` for the run's start, then drives them all.
pub fn run_generator(
    plan: GeneratorPlan<'_>,
    settings: &ProduceSettings,
    progress: &Arc<Progress>,
    gate: &StartGate,
) -> anyhow::Result<GeneratorResult> {
    let placement = plan.cpu.map_or(Placement::Unbound, Placement::Fixed);
    let executor = LocalExecutorBuilder::new(placement)
        .name("spate-bench-generator")
        // Network I/O needs no DMA buffers; keep the locked memory small.
        .io_memory(1 << 20)
        .ring_depth(1024)
        .make();
    let executor = match executor {
        Ok(executor) => executor,
        Err(error) => {
            gate.actor_ready(); // do not strand the other actors
            bail!("cannot start a glommio executor for the generator: {error}");
        }
    };
    executor.run(generate(plan.connections, settings, progress, gate))
}

async fn generate(
    connections: Vec<(&ConnectionPlan, ConnectionLoad, u64)>,
    settings: &ProduceSettings,
    progress: &Arc<Progress>,
    gate: &StartGate,
) -> anyhow::Result<GeneratorResult> {
    // The gate is passed even when preparing failed, so the other actors are not stranded.
    let mut prepared = Vec::with_capacity(connections.len());
    let mut failure = None;
    for (plan, load, seed) in connections {
        match prepare(plan, settings, seed).await {
            Ok(connection) => prepared.push((connection, load)),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    // Blocking here is fine: no task of this executor runs yet.
    let start = gate.actor_ready();
    if let Some(error) = failure {
        return Err(error);
    }
    let measure_from = start + settings.warmup;
    let shared = Rc::new(Shared {
        settings: settings.clone(),
        start,
        measure_from,
        stop_at: measure_from + settings.duration,
        progress: progress.clone(),
        measured: RefCell::new(Measured {
            latency: LatencyRecorder::new((!settings.stamp_records).then(|| progress.clone()))
                .with_intervals(
                    settings
                        .interval
                        .map(|interval| IntervalHistograms::new(measure_from, interval)),
                ),
            records_acked: 0,
            errors: 0,
            records_per_second: vec![0; settings.duration.as_secs().max(1) as usize],
        }),
    });
    let tasks: Vec<_> = prepared
        .into_iter()
        .map(|(connection, load)| {
            let shared = shared.clone();
            glommio::spawn_local(async move { drive(connection, load, &shared).await })
        })
        .collect();
    let mut outcome = Ok(());
    for task in tasks {
        if let Err(error) = task.await {
            outcome = outcome.and(Err(error));
        }
    }
    outcome?;
    let shared = Rc::try_unwrap(shared)
        .map_err(|_| anyhow::anyhow!("a connection task outlived the run"))?;
    let mut measured = shared.measured.into_inner();
    measured.latency.flush();
    Ok(GeneratorResult {
        latency_us: measured.latency.total,
        latency_intervals: measured.latency.intervals,
        records_acked: measured.records_acked,
        errors: measured.errors,
        records_per_second: measured.records_per_second,
        finished_at: Instant::now(),
    })
}

/// What a generator thread's connections share. Owned by the thread's executor; the
/// `RefCell` is never borrowed across an `.await`.
struct Shared {
    settings: ProduceSettings,
    start: Instant,
    measure_from: Instant,
    stop_at: Instant,
    progress: Arc<Progress>,
    measured: RefCell<Measured>,
}

struct Measured {
    latency: LatencyRecorder,
    records_acked: u64,
    errors: u64,
    records_per_second: Vec<u64>,
}

impl Shared {
    /// One response to a request of `records` records, `payload_bytes` of values, sent
    /// (intended) at `intended`, with `errors` partition errors.
    fn acknowledged(&self, intended: Instant, records: u64, payload_bytes: u64, errors: u64) {
        let now = Instant::now();
        // In end-to-end mode the line shows what consumers read, not what was acknowledged.
        if errors == 0 && !self.settings.stamp_records {
            self.progress.add_bytes(payload_bytes);
        }
        let mut measured = self.measured.borrow_mut();
        // Errors count whenever they happen, warm-up included: none is silently dropped.
        measured.errors += errors;
        if intended < self.measure_from || errors != 0 {
            return;
        }
        measured.records_acked += records;
        measured
            .latency
            .record(now.duration_since(intended).as_micros() as u64, 1, now);
        let bucket = now.duration_since(self.measure_from).as_secs() as usize;
        if let Some(slot) = measured.records_per_second.get_mut(bucket) {
            *slot += records;
        }
    }

    /// A request sent with acks=0: counted as sent.
    fn sent_unacknowledged(&self, intended: Instant, records: u64, payload_bytes: u64) {
        if !self.settings.stamp_records {
            self.progress.add_bytes(payload_bytes);
        }
        if intended >= self.measure_from && intended < self.stop_at {
            let mut measured = self.measured.borrow_mut();
            measured.records_acked += records;
            let bucket = intended.duration_since(self.measure_from).as_secs() as usize;
            if let Some(slot) = measured.records_per_second.get_mut(bucket) {
                *slot += records;
            }
        }
    }
}

/// A connection ready to send: its request encoded, its socket connected.
struct Prepared {
    frame: BytesMut,
    stamps: Option<StampPlan>,
    stream: AsyncStream,
    records_per_request: u64,
}

async fn prepare(
    plan: &ConnectionPlan,
    settings: &ProduceSettings,
    seed: u64,
) -> anyhow::Result<Prepared> {
    let batch = workload::encode_batch(&settings.shape, seed)?;
    let frame = workload::encode_request(&settings.topic, &plan.partitions, &batch, settings.acks)?;
    let stamps = if settings.stamp_records {
        let stamps = StampPlan::find(&frame, &batch)?;
        if stamps.batch_count() != plan.partitions.len() {
            bail!(
                "found {} of {} batches to stamp",
                stamps.batch_count(),
                plan.partitions.len()
            );
        }
        Some(stamps)
    } else {
        None
    };
    let stream = crate::secure::connect_async(plan.broker, RESPONSE_TIMEOUT).await?;
    Ok(Prepared {
        frame,
        stamps,
        stream,
        records_per_request: (settings.shape.records_per_batch * plan.partitions.len()) as u64,
    })
}

/// Requests sent on one connection and not yet answered, oldest first.
type Outstanding = RefCell<VecDeque<(i32, Instant)>>;

/// Drives one connection until its schedule ends and every response is in.
async fn drive(connection: Prepared, load: ConnectionLoad, shared: &Shared) -> anyhow::Result<()> {
    let Prepared {
        frame,
        stamps,
        stream,
        records_per_request,
    } = connection;
    let (reader, writer) = futures_lite::io::split(stream);
    let window = Semaphore::new(shared.settings.max_in_flight as u64);
    let outstanding: Outstanding = RefCell::new(VecDeque::new());
    let sender = Sender {
        shared,
        frame,
        stamps,
        records_per_request,
        window: &window,
        outstanding: &outstanding,
    };
    let receiver = receive(reader, shared, records_per_request, &window, &outstanding);
    // The receiver runs until the connection fails; the sender until it has sent its last
    // request and got every response back. Whichever ends first ends the connection.
    futures_lite::future::or(sender.run(writer, load), async {
        receiver.await?;
        bail!("the receiver stopped early")
    })
    .await
}

struct Sender<'a> {
    shared: &'a Shared,
    frame: BytesMut,
    stamps: Option<StampPlan>,
    records_per_request: u64,
    window: &'a Semaphore,
    outstanding: &'a Outstanding,
}

impl Sender<'_> {
    async fn run(
        mut self,
        mut writer: WriteHalf<AsyncStream>,
        load: ConnectionLoad,
    ) -> anyhow::Result<()> {
        let shared = self.shared;
        let settings = &shared.settings;
        let first = match load.requests_per_s {
            Some(rate) => shared.start + Duration::from_secs_f64(load.phase.clamp(0.0, 1.0) / rate),
            None => shared.start,
        };
        let mut schedule = Schedule::new(first, load.requests_per_s);
        let payload_bytes = self.records_per_request * settings.shape.record_size as u64;
        let mut correlation_id: i32 = 0;
        let mut sent = 0u64;
        loop {
            if load.requests_max.is_some_and(|max| sent >= max) {
                break;
            }
            let scheduled = schedule.next_send();
            if scheduled >= shared.stop_at {
                break;
            }
            if settings.acks != 0 {
                // The semaphore is never closed, so acquiring cannot fail.
                let _ = self.window.acquire(1).await;
            }
            // Closed loop: latency runs from the actual send. Open loop: from the schedule,
            // so time spent waiting for a window slot counts.
            let intended = if schedule.is_open_loop() {
                scheduled
            } else {
                Instant::now()
            };
            if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                glommio::timer::sleep(wait).await;
            }
            correlation_id = correlation_id.wrapping_add(1);
            workload::set_correlation_id(&mut self.frame, correlation_id);
            if let Some(stamps) = &self.stamps {
                let since_start = intended.duration_since(shared.start).as_nanos() as u64;
                stamps.stamp(&mut self.frame, since_start);
            }
            if settings.acks != 0 {
                self.outstanding
                    .borrow_mut()
                    .push_back((correlation_id, intended));
            }
            writer
                .write_all(&self.frame)
                .await
                .context("the broker closed the connection")?;
            // TLS may hold the request's last record back until flushed.
            writer
                .flush()
                .await
                .context("the broker closed the connection")?;
            sent += 1;
            if settings.acks == 0 {
                shared.sent_unacknowledged(intended, self.records_per_request, payload_bytes);
            }
        }
        if settings.acks != 0 {
            // Every permit back: every response is in.
            let _ = self.window.acquire(settings.max_in_flight as u64).await;
        }
        Ok(())
    }
}

async fn receive(
    mut reader: ReadHalf<AsyncStream>,
    shared: &Shared,
    records_per_request: u64,
    window: &Semaphore,
    outstanding: &Outstanding,
) -> anyhow::Result<()> {
    let payload_bytes = records_per_request * shared.settings.shape.record_size as u64;
    let mut buffer = FrameBuffer::new(RECEIVE_BUFFER_BYTES);
    loop {
        let frame = buffer
            .next_frame(&mut reader)
            .await
            .context("the broker closed the connection")?;
        let Some((correlation_id, intended)) = outstanding.borrow_mut().pop_front() else {
            bail!("a response to no request");
        };
        let errors = partition_errors(frame, correlation_id)?;
        window.signal(1);
        shared.acknowledged(intended, records_per_request, payload_bytes, errors);
    }
}

/// The partition errors of one produce response, checking it answers `correlation_id`.
fn partition_errors(frame: &[u8], correlation_id: i32) -> anyhow::Result<u64> {
    let mut body = Bytes::copy_from_slice(frame);
    let header = ResponseHeader::decode(&mut body, 0)?;
    if header.correlation_id != correlation_id {
        bail!(
            "response out of order: expected {correlation_id}, got {}",
            header.correlation_id
        );
    }
    let response = ProduceResponse::decode(&mut body, PRODUCE_VERSION)?;
    Ok(response
        .responses
        .iter()
        .flat_map(|topic| &topic.partition_responses)
        .filter(|partition| partition.error_code != 0)
        .count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression;
    use std::io::Read;

    fn settings(duration: Duration) -> ProduceSettings {
        ProduceSettings {
            topic: "t".into(),
            acks: -1,
            shape: BatchShape {
                record_size: 100,
                records_per_batch: 10,
                compression: Compression::None,
                keys: workload::Keys::None,
            },
            max_in_flight: 2,
            duration,
            warmup: Duration::ZERO,
            stamp_records: false,
            interval: None,
        }
    }

    fn run_alone(
        plan: &ConnectionPlan,
        settings: &ProduceSettings,
        loads: Vec<ConnectionLoad>,
    ) -> (anyhow::Result<GeneratorResult>, Instant) {
        let gate = StartGate::new(1);
        let progress = Progress::new();
        std::thread::scope(|scope| {
            let actor = scope.spawn(|| {
                let connections = loads
                    .into_iter()
                    .enumerate()
                    .map(|(index, load)| (plan, load, index as u64 + 1))
                    .collect();
                let plan = GeneratorPlan {
                    cpu: None,
                    connections,
                };
                run_generator(plan, settings, &progress, &gate)
            });
            let started = gate.open(|| {
                let now = Instant::now();
                (now, now)
            });
            (actor.join().unwrap(), started)
        })
    }

    /// Regression: when the broker went away, the writer waited for window room forever.
    #[test]
    fn a_broker_that_hangs_up_fails_the_run_instead_of_hanging_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let broker = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer); // take part of a request, then hang up
            }
        });
        let plan = ConnectionPlan {
            broker,
            partitions: vec![0],
        };
        let load = ConnectionLoad {
            requests_per_s: None,
            phase: 0.0,
            requests_max: None,
        };
        let (outcome, started) = run_alone(&plan, &settings(Duration::from_secs(30)), vec![load]);
        assert!(outcome.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// The open-loop rate holds per connection across many connections on one thread, and
    /// a request budget (`--total-bytes`) ends a connection early.
    #[test]
    fn many_connections_on_one_thread_keep_their_rate() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let broker = listener.local_addr().unwrap();
        std::thread::spawn(move || crate::sink::serve(listener));
        let plan = ConnectionPlan {
            broker,
            partitions: vec![0],
        };
        // 200 connections at 20 requests/s each for 1 s: 4,000 requests of 10 records.
        let mut loads: Vec<ConnectionLoad> = (0..200)
            .map(|index| ConnectionLoad {
                requests_per_s: Some(20.0),
                phase: index as f64 / 200.0,
                requests_max: None,
            })
            .collect();
        // One more connection, as fast as possible but capped at 7 requests.
        loads.push(ConnectionLoad {
            requests_per_s: None,
            phase: 0.0,
            requests_max: Some(7),
        });
        let (outcome, _) = run_alone(&plan, &settings(Duration::from_secs(1)), loads);
        let result = outcome.unwrap();
        assert_eq!(result.errors, 0);
        let expected = 200 * 20 * 10 + 7 * 10;
        assert_eq!(result.records_acked, expected as u64);
        assert_eq!(result.latency_us.len(), 200 * 20 + 7);
        // Loopback to a sink on an idle thread: acknowledged well within the schedule.
        assert!(result.latency_us.value_at_quantile(0.5) < 50_000);
    }
}
