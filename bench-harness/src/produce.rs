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

use crate::progress::{LatencyRecorder, Progress};
use crate::schedule::{Schedule, StartGate};
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
    /// Requests per second for this connection (open loop), or as fast as possible.
    pub requests_per_s: Option<f64>,
    /// Measured time, after warm-up.
    pub duration: Duration,
    /// Time before measurement starts.
    pub warmup: Duration,
    /// Stamp every record's value with its intended send time (end-to-end mode), in
    /// nanoseconds since the run's start.
    pub stamp_records: bool,
}

/// Longest wait for a response before the run fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Records acknowledged without error (with acks=0: sent).
    pub records_acked: u64,
    /// Partition errors in responses.
    pub errors: u64,
    /// Records acknowledged per one-second bucket of the measurement window.
    pub records_per_second: Vec<u64>,
}

/// A connection ready to send: its request encoded, its socket connected.
struct Prepared {
    frame: bytes::BytesMut,
    stamps: Option<StampPlan>,
    writer: TcpStream,
    reader: TcpStream,
}

fn prepare(
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
    let writer = TcpStream::connect(plan.broker)
        .with_context(|| format!("cannot connect to {}", plan.broker))?;
    writer.set_nodelay(true)?;
    let reader = writer.try_clone()?;
    // A broker that stops answering fails the run instead of hanging it.
    reader.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
    writer.set_write_timeout(Some(RESPONSE_TIMEOUT))?;
    Ok(Prepared {
        frame,
        stamps,
        writer,
        reader,
    })
}

/// Runs one connection to completion: prepares it, waits at `gate` for the run's start, then
/// sends until the window closes.
pub fn run_connection(
    plan: &ConnectionPlan,
    settings: &ProduceSettings,
    seed: u64,
    progress: &Arc<Progress>,
    gate: &StartGate,
) -> anyhow::Result<ConnectionResult> {
    // The gate is passed even when preparing failed, so the other actors are not stranded.
    let prepared = prepare(plan, settings, seed);
    let start = gate.actor_ready();
    let Prepared {
        mut frame,
        stamps,
        mut writer,
        reader,
    } = prepared?;
    let records_per_request = (settings.shape.records_per_batch * plan.partitions.len()) as u64;
    let request_payload_bytes = records_per_request * settings.shape.record_size as u64;
    let measure_from = start + settings.warmup;
    let stop_at = measure_from + settings.duration;
    let in_flight = Arc::new(InFlight::default());

    let reader_thread = {
        let in_flight = in_flight.clone();
        let window = MeasurementWindow {
            measure_from,
            buckets: settings.duration.as_secs().max(1) as usize,
            records_per_request,
            request_payload_bytes,
            report_latency: !settings.stamp_records,
        };
        let progress = progress.clone();
        std::thread::spawn(move || {
            let result = read_responses(reader, &in_flight, &window, progress);
            in_flight.reader_stopped();
            result
        })
    };
    let mut correlation_id: i32 = 0;
    let mut schedule = Schedule::new(Instant::now(), settings.requests_per_s);
    let mut send_loop = || -> anyhow::Result<()> {
        loop {
            let intended = schedule.next_send();
            if intended >= stop_at {
                break;
            }
            if !in_flight.wait_for_room(settings.max_in_flight) {
                return Ok(()); // the reader stopped: its error is the one to report
            }
            // Closed loop: latency runs from the actual send. Open loop: from the schedule, so
            // time spent waiting for a window slot counts.
            let intended = if schedule.is_open_loop() {
                intended
            } else {
                Instant::now()
            };
            if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            correlation_id = correlation_id.wrapping_add(1);
            workload::set_correlation_id(&mut frame, correlation_id);
            if let Some(stamps) = &stamps {
                stamps.stamp(&mut frame, intended.duration_since(start).as_nanos() as u64);
            }
            if settings.acks != 0 {
                in_flight.push(correlation_id, intended);
            }
            writer
                .write_all(&frame)
                .context("the broker closed the connection")?;
            if settings.acks == 0 {
                if !settings.stamp_records {
                    progress.add_bytes(request_payload_bytes);
                }
                if intended >= measure_from {
                    in_flight.count_unacknowledged(records_per_request);
                }
            }
        }
        Ok(())
    };
    let sent = send_loop();
    in_flight.finish();
    let mut result = reader_thread
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    sent?;
    if settings.acks == 0 {
        result.records_acked = in_flight.unacknowledged_records();
    }
    Ok(result)
}

/// What the response reader needs to know about the measurement window.
struct MeasurementWindow {
    measure_from: Instant,
    buckets: usize,
    records_per_request: u64,
    request_payload_bytes: u64,
    /// Whether acknowledged bytes and latency feed the progress line (not in end-to-end
    /// mode, where the line shows the consumers).
    report_latency: bool,
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
    reader_gone: bool,
    acks_zero_records: u64,
}

impl InFlight {
    /// Waits until fewer than `max_in_flight` requests are outstanding; false if the
    /// reader has stopped (the connection failed), so nothing will ever make room.
    fn wait_for_room(&self, max_in_flight: usize) -> bool {
        let mut state = self.state.lock().expect("in-flight lock");
        while state.sent.len() >= max_in_flight && !state.reader_gone {
            state = self.changed.wait(state).expect("in-flight lock");
        }
        !state.reader_gone
    }

    /// The reader stopped, normally or on an error.
    fn reader_stopped(&self) {
        self.state.lock().expect("in-flight lock").reader_gone = true;
        self.changed.notify_all();
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

    fn count_unacknowledged(&self, records: u64) {
        self.state.lock().expect("in-flight lock").acks_zero_records += records;
    }

    fn unacknowledged_records(&self) -> u64 {
        self.state.lock().expect("in-flight lock").acks_zero_records
    }
}

fn read_responses(
    mut reader: TcpStream,
    in_flight: &InFlight,
    window: &MeasurementWindow,
    progress: Arc<Progress>,
) -> anyhow::Result<ConnectionResult> {
    let mut latency = LatencyRecorder::new(window.report_latency.then(|| progress.clone()));
    let mut records_acked = 0;
    let mut errors_total = 0;
    let mut records_per_second = vec![0; window.buckets];
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
        // In end-to-end mode the line shows what consumers read, not what was acknowledged.
        if errors == 0 && window.report_latency {
            progress.add_bytes(window.request_payload_bytes);
        }
        // Errors count whenever they happen, warm-up included: none is silently dropped.
        errors_total += errors;
        if intended < window.measure_from {
            continue;
        }
        if errors == 0 {
            records_acked += window.records_per_request;
            latency.record(now.duration_since(intended).as_micros() as u64, 1);
            let bucket = now.duration_since(window.measure_from).as_secs() as usize;
            if let Some(slot) = records_per_second.get_mut(bucket) {
                *slot += window.records_per_request;
            }
        }
    }
    latency.flush();
    Ok(ConnectionResult {
        latency_us: latency.total,
        records_acked,
        errors: errors_total,
        records_per_second,
    })
}

/// Reads one size-prefixed response frame into `frame` (without the prefix).
pub(crate) fn read_frame(reader: &mut TcpStream, frame: &mut Vec<u8>) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression;

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
        let settings = ProduceSettings {
            topic: "t".into(),
            acks: -1,
            shape: BatchShape {
                record_size: 100,
                records_per_batch: 10,
                compression: Compression::None,
                keys: workload::Keys::None,
            },
            max_in_flight: 2,
            requests_per_s: None,
            duration: Duration::from_secs(30),
            warmup: Duration::ZERO,
            stamp_records: false,
        };
        let plan = ConnectionPlan {
            broker,
            partitions: vec![0],
        };
        let gate = Arc::new(StartGate::new(1));
        let progress = Progress::new();
        let actor = {
            let gate = gate.clone();
            std::thread::spawn(move || run_connection(&plan, &settings, 1, &progress, &gate))
        };
        let started = gate.open(|| {
            let now = Instant::now();
            (now, now)
        });
        assert!(actor.join().unwrap().is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
