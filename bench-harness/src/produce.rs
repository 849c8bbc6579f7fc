//! The producer actor: one TCP connection to one partition leader, a fixed window of
//! requests in flight, and latency measured from each request's intended send time.
//!
//! With `--rate`, send times are scheduled in advance (open loop): when the broker falls
//! behind and the window is full, the wait counts against latency, so queueing is not hidden
//! (no coordinated omission). Without `--rate` the actor sends as fast as the window allows.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Buf, Bytes};
use hdrhistogram::Histogram;
use kafka_protocol::messages::{ProduceResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;

use crate::workload::{self, BatchShape, PRODUCE_VERSION};

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
    /// Requests per second for this connection (open loop), or as fast as possible.
    pub requests_per_s: Option<f64>,
    /// Measured time, after warm-up.
    pub duration: Duration,
    /// Time before measurement starts.
    pub warmup: Duration,
}

/// One connection's plan.
#[derive(Clone, Debug)]
pub struct ConnectionPlan {
    /// The leader of `partitions`.
    pub broker: SocketAddr,
    /// Partitions each request writes one batch to.
    pub partitions: Vec<i32>,
}

/// What one connection measured (measurement window only).
pub struct ConnectionResult {
    /// Produce-acknowledge latency in microseconds.
    pub latency_us: Histogram<u64>,
    /// Records acknowledged without error.
    pub records_acked: u64,
    /// Partition errors in responses.
    pub errors: u64,
    /// Records acknowledged per one-second bucket of the measurement window.
    pub records_per_second: Vec<u64>,
}

/// Runs one connection to completion.
pub fn run_connection(
    plan: &ConnectionPlan,
    settings: &ProduceSettings,
    start: Instant,
    seed: u64,
) -> anyhow::Result<ConnectionResult> {
    let batch = workload::encode_batch(&settings.shape, seed)?;
    let mut frame =
        workload::encode_request(&settings.topic, &plan.partitions, &batch, settings.acks)?;
    let mut writer = TcpStream::connect(plan.broker)
        .with_context(|| format!("cannot connect to {}", plan.broker))?;
    writer.set_nodelay(true)?;
    let reader = writer.try_clone()?;
    let records_per_request = (settings.shape.records_per_batch * plan.partitions.len()) as u64;
    let measure_from = start + settings.warmup;
    let stop_at = measure_from + settings.duration;
    let in_flight = Arc::new(InFlight::default());

    let reader_thread = {
        let in_flight = in_flight.clone();
        let buckets = settings.duration.as_secs().max(1) as usize;
        std::thread::spawn(move || {
            read_responses(
                reader,
                &in_flight,
                measure_from,
                records_per_request,
                buckets,
            )
        })
    };
    let mut correlation_id: i32 = 0;
    let interval = settings
        .requests_per_s
        .map(|rate| Duration::from_secs_f64(1.0 / rate));
    let mut next_send = Instant::now();
    loop {
        let intended = match interval {
            Some(interval) => {
                let intended = next_send;
                next_send += interval;
                intended
            }
            None => Instant::now(),
        };
        if intended >= stop_at {
            break;
        }
        in_flight.wait_for_room(settings.max_in_flight);
        // Closed loop: latency runs from the actual send. Open loop: from the schedule, so
        // time spent waiting for a window slot counts.
        let intended = if interval.is_some() {
            intended
        } else {
            Instant::now()
        };
        if let Some(wait) = intended.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        correlation_id = correlation_id.wrapping_add(1);
        workload::set_correlation_id(&mut frame, correlation_id);
        if settings.acks != 0 {
            in_flight.push(correlation_id, intended);
        }
        writer
            .write_all(&frame)
            .context("the broker closed the connection")?;
        if settings.acks == 0 && intended >= measure_from {
            in_flight.count_unacknowledged(records_per_request, measure_from);
        }
    }
    in_flight.finish();
    let mut result = reader_thread
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    if settings.acks == 0 {
        result.records_acked = in_flight.unacknowledged_records();
    }
    Ok(result)
}

/// Requests sent and not yet answered, shared by a connection's two threads.
#[derive(Default)]
struct InFlight {
    state: Mutex<InFlightState>,
    changed: Condvar,
}

#[derive(Default)]
struct InFlightState {
    sent: VecDeque<(i32, Instant)>,
    finished: bool,
    acks_zero_records: u64,
}

impl InFlight {
    fn wait_for_room(&self, max_in_flight: usize) {
        let mut state = self.state.lock().expect("in-flight lock");
        while state.sent.len() >= max_in_flight {
            state = self.changed.wait(state).expect("in-flight lock");
        }
    }

    fn push(&self, correlation_id: i32, intended: Instant) {
        self.state
            .lock()
            .expect("in-flight lock")
            .sent
            .push_back((correlation_id, intended));
        self.changed.notify_all();
    }

    /// The oldest request, waiting for one; `None` once the writer finished and all are in.
    fn pop(&self) -> Option<(i32, Instant)> {
        let mut state = self.state.lock().expect("in-flight lock");
        loop {
            if let Some(entry) = state.sent.pop_front() {
                self.changed.notify_all();
                return Some(entry);
            }
            if state.finished {
                return None;
            }
            state = self.changed.wait(state).expect("in-flight lock");
        }
    }

    fn finish(&self) {
        self.state.lock().expect("in-flight lock").finished = true;
        self.changed.notify_all();
    }

    fn count_unacknowledged(&self, records: u64, _measure_from: Instant) {
        self.state.lock().expect("in-flight lock").acks_zero_records += records;
    }

    fn unacknowledged_records(&self) -> u64 {
        self.state.lock().expect("in-flight lock").acks_zero_records
    }
}

fn read_responses(
    mut reader: TcpStream,
    in_flight: &InFlight,
    measure_from: Instant,
    records_per_request: u64,
    buckets: usize,
) -> anyhow::Result<ConnectionResult> {
    let mut result = ConnectionResult {
        latency_us: new_latency_histogram()?,
        records_acked: 0,
        errors: 0,
        records_per_second: vec![0; buckets],
    };
    let mut frame = Vec::new();
    while let Some((correlation_id, intended)) = in_flight.pop() {
        read_frame(&mut reader, &mut frame)?;
        let mut body = Bytes::copy_from_slice(&frame);
        let header = ResponseHeader::decode(&mut body, 0)?;
        if header.correlation_id != correlation_id {
            bail!(
                "response out of order: expected {correlation_id}, got {}",
                header.correlation_id
            );
        }
        let response = ProduceResponse::decode(&mut body, PRODUCE_VERSION)?;
        let errors = response
            .responses
            .iter()
            .flat_map(|topic| &topic.partition_responses)
            .filter(|partition| partition.error_code != 0)
            .count() as u64;
        let now = Instant::now();
        if intended < measure_from {
            continue;
        }
        result.errors += errors;
        if errors == 0 {
            result.records_acked += records_per_request;
            let latency = now.duration_since(intended).as_micros() as u64;
            result.latency_us.saturating_record(latency.max(1));
            let bucket = now.duration_since(measure_from).as_secs() as usize;
            if let Some(slot) = result.records_per_second.get_mut(bucket) {
                *slot += records_per_request;
            }
        }
    }
    Ok(result)
}

/// Latencies from 1 us to 10 minutes at 3 significant digits; larger values are clamped
/// (and would show as a 10-minute max, which no run should come near).
pub fn new_latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

fn read_frame(reader: &mut TcpStream, frame: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut prefix = [0u8; 4];
    reader
        .read_exact(&mut prefix)
        .context("the broker closed the connection")?;
    let size = (&prefix[..]).get_i32();
    if !(0..=1 << 28).contains(&size) {
        bail!("response of invalid size {size}");
    }
    frame.resize(size as usize, 0);
    reader.read_exact(frame)?;
    Ok(())
}
