//! The consumer actor: one TCP connection to one partition leader, one Fetch (v11) in flight,
//! reading its partitions as fast as the broker serves them.
//!
//! Fetched batches are walked in place ([`crate::records`]) rather than decoded into owned
//! records, so the consumer costs little more than the bytes it reads. In end-to-end mode it
//! reads each record's send stamp and records produce-to-consume latency.

use spate_net::error_code::OFFSET_OUT_OF_RANGE;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::intervals::IntervalHistograms;
use crate::produce::ConnectionPlan;
use crate::progress::{LatencyRecorder, Progress};
use crate::records::{complete_batches, read_stamp, BatchView};
use crate::report::new_latency_histogram;
use crate::schedule::StartGate;
use crate::wire::read_frame;

/// Fetch version the consumer speaks (every broker in scope serves it).
pub const FETCH_VERSION: i16 = 11;
const LIST_OFFSETS_VERSION: i16 = 1;
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
/// Bytes one Fetch may return in all.
const FETCH_MAX_BYTES: i32 = 64 << 20;

/// Where consumers start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The log start: read the backlog.
    Beginning,
    /// The log end: read only what is written from now on.
    End,
}

impl StartFrom {
    /// Parses `beginning` or `end`.
    pub fn parse(text: &str) -> anyhow::Result<StartFrom> {
        match text {
            "beginning" | "earliest" => Ok(StartFrom::Beginning),
            "end" | "latest" => Ok(StartFrom::End),
            other => bail!("--from takes beginning or end, not {other:?}"),
        }
    }
}

/// What every consumer does.
#[derive(Clone, Debug)]
pub struct ConsumeSettings {
    /// Topic to read.
    pub topic: String,
    /// Where to start.
    pub from: StartFrom,
    /// Longest the broker may hold a Fetch waiting for data.
    pub fetch_max_wait_ms: i32,
    /// Bytes one Fetch may return per partition.
    pub partition_max_bytes: i32,
    /// Measured time, after warm-up.
    pub duration: Duration,
    /// Time before measurement starts.
    pub warmup: Duration,
    /// Read send stamps and record end-to-end latency (the `e2e` command).
    pub read_stamps: bool,
    /// Keep the reported latency per interval of this length (`--interval-percentiles`).
    pub interval: Option<Duration>,
}

/// When a consumer stops.
pub enum StopRule {
    /// At the end of the measurement window.
    WindowEnd,
    /// When every partition is read up to its high watermark, or at the window's end.
    CaughtUp,
    /// End-to-end: once all records produced in the window were read, or at a deadline.
    Drain(Arc<Drain>),
}

/// End-to-end consumers stop when they have read, between them, every record the producers
/// had acknowledged in the measurement window; the producers set the target when done.
pub struct Drain {
    target: AtomicU64,
    consumed: AtomicU64,
    deadline_ms: AtomicU64,
}

impl Drain {
    /// No target yet: consumers keep reading.
    pub fn new() -> Arc<Drain> {
        Arc::new(Drain {
            target: AtomicU64::new(u64::MAX),
            consumed: AtomicU64::new(0),
            deadline_ms: AtomicU64::new(u64::MAX),
        })
    }

    /// The producers are done: `records` were acknowledged in the window; give up at
    /// `deadline_ms` after the run's start.
    pub fn set_target(&self, records: u64, deadline_ms: u64) {
        self.deadline_ms.store(deadline_ms, Ordering::SeqCst);
        self.target.store(records, Ordering::SeqCst);
    }

    /// Records read in the window by all consumers.
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::SeqCst)
    }

    fn is_done(&self, elapsed_ms: u64) -> bool {
        self.consumed() >= self.target.load(Ordering::SeqCst)
            || elapsed_ms >= self.deadline_ms.load(Ordering::SeqCst)
    }
}

/// What one consumer measured (measurement window only).
pub struct ConsumerResult {
    /// Fetch round trip, microseconds.
    pub fetch_latency_us: Histogram<u64>,
    /// Produce-to-consume latency, microseconds (end-to-end mode).
    pub end_to_end_us: Histogram<u64>,
    /// The reported latency (end-to-end in that mode, else the fetch round trip) per
    /// interval, with `--interval-percentiles`.
    pub latency_intervals: Option<IntervalHistograms>,
    /// Records read.
    pub records: u64,
    /// Record value bytes read.
    pub value_bytes: u64,
    /// Partition errors in responses.
    pub errors: u64,
    /// Value bytes read per one-second bucket of the window.
    pub bytes_per_second: Vec<u64>,
    /// When this consumer stopped.
    pub finished_at: Instant,
}

/// The log start or end of each of `partitions`, from their leader.
pub fn start_offsets(
    leader: SocketAddr,
    topic: &str,
    partitions: &[i32],
    from: StartFrom,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut client = crate::secure::client(&leader.to_string(), Duration::from_secs(10))?;
    client.set_client_id("spate-bench");
    let timestamp = match from {
        StartFrom::Beginning => EARLIEST,
        StartFrom::End => LATEST,
    };
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&partition| {
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let response = client.send(LIST_OFFSETS_VERSION, &request)?;
    let mut offsets = BTreeMap::new();
    for answer in response.topics.iter().flat_map(|topic| &topic.partitions) {
        if answer.error_code != 0 {
            bail!(
                "ListOffsets for {topic}-{} failed with error {}",
                answer.partition_index,
                answer.error_code
            );
        }
        offsets.insert(answer.partition_index, answer.offset);
    }
    if offsets.len() != partitions.len() {
        bail!(
            "ListOffsets answered for {} of {} partitions",
            offsets.len(),
            partitions.len()
        );
    }
    Ok(offsets)
}

/// The run-wide facts a consumer needs.
pub struct ConsumerContext<'a> {
    /// Settings shared by all consumers.
    pub settings: &'a ConsumeSettings,
    /// Where the run's start is given; send stamps count nanoseconds from it.
    pub gate: &'a StartGate,
    /// When to stop.
    pub stop: &'a StopRule,
    /// The progress line.
    pub progress: &'a Arc<Progress>,
}

/// Reads `plan.partitions` from `positions` until the stop rule says so.
pub fn run_consumer(
    plan: &ConnectionPlan,
    mut positions: BTreeMap<i32, i64>,
    context: &ConsumerContext<'_>,
) -> anyhow::Result<ConsumerResult> {
    let settings = context.settings;
    let connected = crate::secure::client(&plan.broker.to_string(), Duration::from_secs(10))
        .and_then(|mut client| {
            // A broker that stops answering fails the run instead of hanging it.
            let wait = Duration::from_millis(settings.fetch_max_wait_ms.max(0) as u64);
            client.set_timeout(wait + Duration::from_secs(60))?;
            Ok(client.into_transport())
        });
    // The gate is passed even when connecting failed, so the other actors are not stranded.
    let start = context.gate.actor_ready();
    let mut stream = connected?;
    let measure_from = start + settings.warmup;
    let stop_at = measure_from + settings.duration;
    // The progress line shows end-to-end latency in that mode, else the fetch round trip.
    let shown = Some(context.progress.clone());
    let (fetch_shown, end_to_end_shown) = if settings.read_stamps {
        (None, shown)
    } else {
        (shown, None)
    };
    let intervals = settings
        .interval
        .map(|interval| IntervalHistograms::new(measure_from, interval));
    let (fetch_intervals, end_to_end_intervals) = if settings.read_stamps {
        (None, intervals)
    } else {
        (intervals, None)
    };
    let mut fetch_latency = LatencyRecorder::new(fetch_shown).with_intervals(fetch_intervals);
    let mut end_to_end =
        LatencyRecorder::new(end_to_end_shown).with_intervals(end_to_end_intervals);
    let mut result = ConsumerResult {
        fetch_latency_us: new_latency_histogram(),
        end_to_end_us: new_latency_histogram(),
        latency_intervals: None,
        records: 0,
        value_bytes: 0,
        errors: 0,
        bytes_per_second: vec![0; settings.duration.as_secs().max(1) as usize],
        finished_at: Instant::now(),
    };
    let mut high_watermarks: BTreeMap<i32, i64> = BTreeMap::new();
    let mut frame = Vec::new();
    let mut correlation_id = 0i32;
    loop {
        let now = Instant::now();
        let elapsed_ms = now.duration_since(start).as_millis() as u64;
        let done = match context.stop {
            StopRule::WindowEnd => now >= stop_at,
            StopRule::CaughtUp => {
                now >= stop_at
                    || (high_watermarks.len() == positions.len()
                        && positions
                            .iter()
                            .all(|(partition, position)| high_watermarks[partition] <= *position))
            }
            StopRule::Drain(drain) => drain.is_done(elapsed_ms),
        };
        if done {
            break;
        }
        correlation_id = correlation_id.wrapping_add(1);
        let request = encode_fetch(&settings.topic, &positions, settings, correlation_id)?;
        let sent_at = Instant::now();
        stream
            .write_all(&request)
            .and_then(|()| stream.flush())
            .context("the broker closed the connection")?;
        read_frame(&mut stream, &mut frame)?;
        let received_at = Instant::now();
        let mut body = Bytes::from(std::mem::take(&mut frame));
        let header = ResponseHeader::decode(
            &mut body,
            ApiKey::Fetch.response_header_version(FETCH_VERSION),
        )?;
        if header.correlation_id != correlation_id {
            bail!(
                "fetch response for {} instead of {correlation_id}",
                header.correlation_id
            );
        }
        let response = FetchResponse::decode(&mut body, FETCH_VERSION)?;
        let in_window = received_at >= measure_from && received_at < stop_at;
        if response.error_code != 0 {
            result.errors += 1;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let mut read = Tally::default();
        for partition in response
            .responses
            .iter()
            .flat_map(|topic| &topic.partitions)
        {
            let index = partition.partition_index;
            if partition.error_code == OFFSET_OUT_OF_RANGE {
                result.errors += 1;
                let reset = start_offsets(plan.broker, &settings.topic, &[index], settings.from)?;
                positions.extend(reset);
                continue;
            }
            if partition.error_code != 0 {
                result.errors += 1;
                continue;
            }
            high_watermarks.insert(index, partition.high_watermark);
            let Some(records) = &partition.records else {
                continue;
            };
            let Some(position) = positions.get_mut(&index) else {
                continue;
            };
            for batch in complete_batches(records) {
                if batch.next_offset() <= *position {
                    continue; // a batch the broker returned from before our position
                }
                *position = batch.next_offset();
                read.add_batch(&batch, settings.read_stamps)?;
            }
        }
        context.progress.add_bytes(read.value_bytes);
        if in_window {
            fetch_latency.record(
                received_at.duration_since(sent_at).as_micros() as u64,
                1,
                received_at,
            );
        }
        let received_ns = received_at.duration_since(start).as_nanos() as u64;
        let window_ns = (
            settings.warmup.as_nanos() as u64,
            (settings.warmup + settings.duration).as_nanos() as u64,
        );
        let counted = if settings.read_stamps {
            read.stamped_in(window_ns, (received_ns, received_at), &mut end_to_end)
        } else if in_window {
            (read.records, read.value_bytes)
        } else {
            (0, 0)
        };
        result.records += counted.0;
        result.value_bytes += counted.1;
        if let StopRule::Drain(drain) = context.stop {
            drain.consumed.fetch_add(counted.0, Ordering::SeqCst);
        }
        if in_window || settings.read_stamps {
            let bucket = received_at
                .saturating_duration_since(measure_from)
                .as_secs() as usize;
            if let Some(slot) = result.bytes_per_second.get_mut(bucket) {
                *slot += counted.1;
            }
        }
    }
    fetch_latency.flush();
    result.fetch_latency_us = fetch_latency.total;
    end_to_end.flush();
    result.end_to_end_us = end_to_end.total;
    result.latency_intervals = fetch_latency.intervals.or(end_to_end.intervals);
    result.finished_at = Instant::now();
    Ok(result)
}

/// What one Fetch response carried.
#[derive(Default)]
struct Tally {
    records: u64,
    value_bytes: u64,
    /// (send stamp in ns, value bytes) of each stamped record, end-to-end mode only.
    stamps: Vec<(u64, u64)>,
}

impl Tally {
    fn add_batch(&mut self, batch: &BatchView<'_>, read_stamps: bool) -> anyhow::Result<()> {
        self.records += batch.record_count();
        if batch.is_compressed() {
            // Not walked in place: count the batch's bytes as its payload.
            self.value_bytes += batch.bytes.len() as u64;
            return Ok(());
        }
        let mut value_bytes = 0u64;
        let stamps = &mut self.stamps;
        batch.for_each_value(|start, len| {
            value_bytes += len as u64;
            if read_stamps {
                if let Some(stamp) = read_stamp(&batch.bytes[start..start + len]) {
                    stamps.push((stamp, len as u64));
                }
            }
        })?;
        self.value_bytes += value_bytes;
        Ok(())
    }

    /// Records end-to-end latency for stamps sent inside the window; returns the (records,
    /// value bytes) so counted.
    fn stamped_in(
        &mut self,
        (from_ns, until_ns): (u64, u64),
        (received_ns, received_at): (u64, Instant),
        end_to_end: &mut LatencyRecorder,
    ) -> (u64, u64) {
        let mut counted = (0, 0);
        for &(stamp, bytes) in &self.stamps {
            if stamp < from_ns || stamp >= until_ns {
                continue;
            }
            let latency_us = received_ns.saturating_sub(stamp) / 1000;
            end_to_end.record(latency_us, 1, received_at);
            counted.0 += 1;
            counted.1 += bytes;
        }
        counted
    }
}

fn encode_fetch(
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    settings: &ConsumeSettings,
    correlation_id: i32,
) -> anyhow::Result<bytes::BytesMut> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(settings.fetch_max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                positions
                    .iter()
                    .map(|(&partition, &offset)| {
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(settings.partition_max_bytes)
                    })
                    .collect(),
            )]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(FETCH_VERSION)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("spate-bench")));
    spate_net::codec::encode_request(&header, ApiKey::Fetch, &request)
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}
