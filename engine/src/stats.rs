//! Per-shard counters, and the `--stats-listen` HTTP endpoint that shows them.
//!
//! Each shard owns one [`ShardStats`] and is its only writer (relaxed atomic adds on its own
//! cache lines: no lock, no message); the endpoint's thread only reads. Besides requests,
//! bytes and connections, the counters prove the thread-per-core claim: every interaction of
//! a shard with state another shard can change is counted in `cross_shard`, by kind. Produce
//! and fetch traffic touch none of it; a benchmark reads `/stats` before and after and shows
//! zero (see BENCHMARKS.md).
//!
//! Endpoints (plain HTTP/1.0, one request per connection):
//! - `GET /stats`: JSON, one object per shard plus process facts (RSS, CPU seconds, start-up
//!   time);
//! - `GET /metrics`: the same in Prometheus' text format (`stats_prometheus.rs`).

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Kafka API keys counted individually (higher keys share the last slot).
const API_KEY_SLOTS: usize = 96;
/// Error codes counted per API: -1 (UNKNOWN_SERVER_ERROR) up to `ERROR_SLOTS - 2`, Kafka's
/// highest code with room to spare; a higher one counts in the last slot.
const ERROR_SLOTS: usize = 160;

/// The kinds of cross-shard interaction a shard can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossShard {
    /// The shard applied a metadata image the controller's shard sent it.
    MetadataUpdate,
    /// The shard asked the controller on another shard (create, delete or change topics, a
    /// block of producer ids).
    ControllerCall,
}

impl CrossShard {
    /// Every kind, in report order.
    pub const ALL: [CrossShard; 2] = [CrossShard::MetadataUpdate, CrossShard::ControllerCall];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            CrossShard::MetadataUpdate => "metadata_update",
            CrossShard::ControllerCall => "controller_call",
        }
    }
}

/// Where the record bytes of fetch responses come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchSource {
    /// Slices of the tail cache, sent without a copy.
    TailCache,
    /// Read from the active segment with O_DIRECT and copied once.
    FileCopy,
    /// Sealed segment ranges spliced from the page cache to the socket.
    Splice,
}

impl FetchSource {
    /// Every source, in report order.
    pub const ALL: [FetchSource; 3] = [
        FetchSource::TailCache,
        FetchSource::FileCopy,
        FetchSource::Splice,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            FetchSource::TailCache => "tail_cache",
            FetchSource::FileCopy => "file_copy",
            FetchSource::Splice => "splice",
        }
    }

    /// The source of a piece of fetched records.
    pub fn of(piece: &spate_storage::RecordsPiece) -> FetchSource {
        match piece {
            spate_storage::RecordsPiece::Cached(_) => FetchSource::TailCache,
            spate_storage::RecordsPiece::Copied(_) => FetchSource::FileCopy,
            spate_storage::RecordsPiece::File(_) => FetchSource::Splice,
        }
    }
}

/// One shard's counters. Aligned so that two shards never write the same cache line.
#[repr(align(128))]
pub struct ShardStats {
    requests: [AtomicU64; API_KEY_SLOTS],
    /// Error codes in responses, by API and code: `[api * ERROR_SLOTS + code + 1]`.
    request_errors: Box<[AtomicU64]>,
    request_bytes: AtomicU64,
    /// Requests whose client was over a quota, and the time their connections were muted.
    throttled_requests: AtomicU64,
    throttle_ms: AtomicU64,
    connections_accepted: AtomicU64,
    connections_closed: AtomicU64,
    partitions_open: AtomicU64,
    cross_shard: [AtomicU64; CrossShard::ALL.len()],
    fetch_record_bytes: [AtomicU64; FetchSource::ALL.len()],
    /// Produced batch bytes appended: [received in place, copied].
    produce_append_bytes: [AtomicU64; 2],
    /// Bytes in and out by topic (`""` for all of them when topic labels are off), created
    /// on a partition's first use of it ([`ShardStats::topic_traffic`]).
    topics: std::sync::Mutex<std::collections::BTreeMap<String, Arc<TopicTraffic>>>,
    /// Whether `topics` is keyed by topic (`--metrics-topic-labels`).
    topic_labels: std::sync::atomic::AtomicBool,
    /// Request latency per API and stage (see `latency`).
    pub latencies: crate::latency::RequestLatencies,
    /// What the shard's logs record: fdatasync latency, group commit sizes, I/O in flight.
    pub log_metrics: Arc<spate_storage::metrics::LogMetrics>,
    /// What the shard publishes about itself once a second (see `gauges`).
    gauges: std::sync::Mutex<crate::gauges::ShardGauges>,
}

impl Default for ShardStats {
    fn default() -> Self {
        ShardStats {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            request_errors: (0..API_KEY_SLOTS * ERROR_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            request_bytes: AtomicU64::new(0),
            throttled_requests: AtomicU64::new(0),
            throttle_ms: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            partitions_open: AtomicU64::new(0),
            cross_shard: std::array::from_fn(|_| AtomicU64::new(0)),
            fetch_record_bytes: std::array::from_fn(|_| AtomicU64::new(0)),
            produce_append_bytes: std::array::from_fn(|_| AtomicU64::new(0)),
            topics: Default::default(),
            topic_labels: std::sync::atomic::AtomicBool::new(true),
            latencies: Default::default(),
            log_metrics: Default::default(),
            gauges: Default::default(),
        }
    }
}

/// A topic's traffic on one shard, as Kafka's BytesInPerSec and BytesOutPerSec count it:
/// produced batch bytes appended by the leader, and record bytes sent to consumers
/// (replication is neither). Handlers look the handle up per partition answered
/// ([`ShardStats::topic_traffic`]).
#[derive(Default)]
pub struct TopicTraffic {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl TopicTraffic {
    /// Produced bytes appended.
    pub fn bytes_in(&self, bytes: usize) {
        add(&self.bytes_in, bytes as u64);
    }

    /// Record bytes sent to a consumer.
    pub fn bytes_out(&self, bytes: usize) {
        add(&self.bytes_out, bytes as u64);
    }
}

fn add(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

impl ShardStats {
    /// A request frame of `bytes` bytes for Kafka API `api_key`.
    pub fn request(&self, api_key: i16, bytes: usize) {
        let slot = (api_key.max(0) as usize).min(API_KEY_SLOTS - 1);
        add(&self.requests[slot], 1);
        add(&self.request_bytes, bytes as u64);
    }

    /// A request whose client is over a quota, and how long its connection is muted.
    pub fn throttled(&self, throttle: std::time::Duration) {
        add(&self.throttled_requests, 1);
        add(&self.throttle_ms, throttle.as_millis() as u64);
    }

    /// The error codes of a response to Kafka API `api_key` (see `request_errors`).
    pub fn response_errors(&self, api_key: i16, each: impl FnOnce(&mut dyn FnMut(i16))) {
        let api = (api_key.max(0) as usize).min(API_KEY_SLOTS - 1);
        each(&mut |code| {
            let slot = (i32::from(code) + 1).clamp(0, ERROR_SLOTS as i32 - 1) as usize;
            add(&self.request_errors[api * ERROR_SLOTS + slot], 1);
        });
    }

    /// (API slot, error code, count) of every error counted.
    fn request_errors(&self) -> impl Iterator<Item = (usize, i16, u64)> + '_ {
        self.request_errors
            .iter()
            .enumerate()
            .filter_map(|(index, counter)| {
                let count = Self::read(counter);
                (count > 0).then(|| {
                    let code = (index % ERROR_SLOTS) as i16 - 1;
                    (index / ERROR_SLOTS, code, count)
                })
            })
    }

    /// The traffic counters of `topic` on this shard (shared by all topics when topic labels
    /// are off). Takes an uncontended lock (the scrape is the only other taker): a produce
    /// takes it once per partition appended to, a fetch once per partition with records.
    pub fn topic_traffic(&self, topic: &str) -> Arc<TopicTraffic> {
        let key = if self.topic_labels.load(Ordering::Relaxed) {
            topic
        } else {
            ""
        };
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(found) = topics.get(key) {
            return found.clone();
        }
        let traffic = Arc::new(TopicTraffic::default());
        topics.insert(key.to_string(), traffic.clone());
        traffic
    }

    /// (topic, bytes in, bytes out) of every topic counted, `""` for all of them.
    fn topic_bytes(&self) -> Vec<(String, u64, u64)> {
        let topics = self
            .topics
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        topics
            .iter()
            .map(|(topic, traffic)| {
                (
                    topic.clone(),
                    Self::read(&traffic.bytes_in),
                    Self::read(&traffic.bytes_out),
                )
            })
            .collect()
    }

    /// A connection accepted.
    pub fn connection_opened(&self) {
        add(&self.connections_accepted, 1);
    }

    /// A connection ended.
    pub fn connection_closed(&self) {
        add(&self.connections_closed, 1);
    }

    /// How many partition logs the shard has open.
    pub fn set_partitions_open(&self, count: usize) {
        self.partitions_open.store(count as u64, Ordering::Relaxed);
    }

    /// One cross-shard interaction of this kind.
    pub fn cross_shard(&self, kind: CrossShard) {
        add(&self.cross_shard[kind as usize], 1);
    }

    /// Record bytes of a fetch response, by where they come from.
    pub fn fetch_records(&self, records: &spate_storage::Records) {
        for piece in records.pieces() {
            add(
                &self.fetch_record_bytes[FetchSource::of(piece) as usize],
                piece.len() as u64,
            );
        }
    }

    /// A produced batch of `bytes` appended: received where it is written from (`in_place`,
    /// one copy of the payload), or copied from a request buffer (two).
    pub fn produce_append(&self, bytes: usize, in_place: bool) {
        add(
            &self.produce_append_bytes[usize::from(!in_place)],
            bytes as u64,
        );
    }

    /// The shard's published gauges, to update or read (held only to copy).
    pub fn gauges(&self) -> std::sync::MutexGuard<'_, crate::gauges::ShardGauges> {
        // Every update is a few stores: a panic while holding it left whole values.
        self.gauges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counters split by a label, per family of [`LABELLED_FAMILIES`]: (label value,
    /// count) pairs.
    fn labelled(&self) -> [Vec<(&'static str, u64)>; LABELLED_FAMILIES.len()] {
        [
            CrossShard::ALL
                .map(|kind| (kind.name(), Self::read(&self.cross_shard[kind as usize])))
                .to_vec(),
            FetchSource::ALL
                .map(|source| {
                    let bytes = Self::read(&self.fetch_record_bytes[source as usize]);
                    (source.name(), bytes)
                })
                .to_vec(),
            ["in_place", "copied"]
                .into_iter()
                .zip(&self.produce_append_bytes)
                .map(|(path, bytes)| (path, Self::read(bytes)))
                .collect(),
        ]
    }
}

/// The counter families split by a label, as (family, label): the family is the key in
/// `/stats` and `spate_<family>_total` in `/metrics` (see [`ShardStats::labelled`]).
const LABELLED_FAMILIES: [(&str, &str); 3] = [
    ("cross_shard", "kind"),
    ("fetch_record_bytes", "source"),
    ("produce_append_bytes", "path"),
];

thread_local! {
    /// The stats of the shard running on this thread, for code that does not hold the shard.
    static CURRENT: RefCell<Option<Arc<ShardStats>>> = const { RefCell::new(None) };
}

/// Makes `stats` the current thread's shard stats (called once by each shard at start), and
/// its log metrics the ones this thread's logs record into.
pub fn enter_shard(stats: Arc<ShardStats>) {
    spate_storage::metrics::install(stats.log_metrics.clone());
    CURRENT.with(|current| *current.borrow_mut() = Some(stats));
}

/// Runs `update` on the current thread's shard stats (nothing outside shards).
pub fn update_current(update: impl FnOnce(&ShardStats)) {
    CURRENT.with(|current| {
        if let Some(stats) = current.borrow().as_ref() {
            update(stats);
        }
    });
}

/// Counts a cross-shard interaction on the current shard (nothing outside shards, e.g. in the
/// start-up code or tests).
pub fn cross_shard(kind: CrossShard) {
    CURRENT.with(|current| {
        if let Some(stats) = current.borrow().as_ref() {
            stats.cross_shard(kind);
        }
    });
}

/// The counters of every shard of the node, and when the process started.
pub struct NodeStats {
    /// Indexed by shard id.
    pub shards: Vec<Arc<ShardStats>>,
    started: Instant,
    /// From the process start to the first moment every shard served, once known.
    startup_ms: AtomicU64,
    /// The data directory, whose file system's free space is reported.
    data_dir: Option<std::path::PathBuf>,
}

impl NodeStats {
    /// Counters for `shard_count` shards, the clock starting now.
    pub fn new(shard_count: usize, started: Instant) -> NodeStats {
        NodeStats {
            shards: (0..shard_count).map(|_| Arc::default()).collect(),
            started,
            startup_ms: AtomicU64::new(0),
            data_dir: None,
        }
    }

    /// Reports the free space of the file system holding `data_dir`.
    pub fn with_data_dir(mut self, data_dir: std::path::PathBuf) -> NodeStats {
        self.data_dir = Some(data_dir);
        self
    }

    /// Records that every shard serves now; returns the start-up time in ms.
    pub fn mark_serving(&self) -> u64 {
        let elapsed = self.started.elapsed().as_millis() as u64;
        self.startup_ms.store(elapsed, Ordering::Relaxed);
        elapsed
    }

    /// The JSON document of `GET /stats`.
    pub fn to_json(&self) -> serde_json::Value {
        let shards: Vec<serde_json::Value> = self
            .shards
            .iter()
            .enumerate()
            .map(|(id, stats)| {
                let mut requests = serde_json::Map::new();
                for (key, counter) in stats.requests.iter().enumerate() {
                    let count = ShardStats::read(counter);
                    if count > 0 {
                        requests.insert(api_name(key), count.into());
                    }
                }
                let mut errors = serde_json::Map::new();
                for (key, code, count) in stats.request_errors() {
                    let api = errors
                        .entry(api_name(key))
                        .or_insert_with(|| serde_json::Value::Object(Default::default()));
                    api[crate::request_errors::error_name(code)] = count.into();
                }
                let topics: serde_json::Map<String, serde_json::Value> = stats
                    .topic_bytes()
                    .into_iter()
                    .map(|(topic, bytes_in, bytes_out)| {
                        (
                            topic,
                            serde_json::json!({"bytes_in": bytes_in, "bytes_out": bytes_out}),
                        )
                    })
                    .collect();
                let accepted = ShardStats::read(&stats.connections_accepted);
                let closed = ShardStats::read(&stats.connections_closed);
                let mut shard = serde_json::json!({
                    "topics": topics,
                    "shard": id,
                    "requests": requests,
                    "request_errors": errors,
                    "request_bytes": ShardStats::read(&stats.request_bytes),
                    "throttled_requests": ShardStats::read(&stats.throttled_requests),
                    "throttle_ms": ShardStats::read(&stats.throttle_ms),
                    "connections_accepted": accepted,
                    "connections_open": accepted.saturating_sub(closed),
                    "partitions_open": ShardStats::read(&stats.partitions_open),
                    "request_latency": latency_json(&stats.latencies),
                });
                if let serde_json::Value::Object(gauges) = stats.gauges().to_json() {
                    for (name, value) in gauges {
                        shard[name] = value;
                    }
                }
                shard["io_in_flight"] = spate_storage::metrics::IoOp::ALL
                    .iter()
                    .map(|op| {
                        let count =
                            stats.log_metrics.in_flight[*op as usize].load(Ordering::Relaxed);
                        (op.name().to_string(), serde_json::Value::from(count))
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                for ((family, _), values) in LABELLED_FAMILIES.iter().zip(stats.labelled()) {
                    let values: serde_json::Map<String, serde_json::Value> = values
                        .into_iter()
                        .map(|(name, value)| (name.to_string(), value.into()))
                        .collect();
                    shard[*family] = values.into();
                }
                shard
            })
            .collect();
        let process = process_facts();
        serde_json::json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "startup_ms": self.startup_ms.load(Ordering::Relaxed),
            "rss_bytes": process.rss_bytes,
            "cpu_s": process.cpu_s,
            "disk_free_bytes": self.disk_free_bytes(),
            "shards": shards,
        })
    }
}

impl NodeStats {
    /// Whether per-topic families carry a topic label (`--metrics-topic-labels`); set before
    /// the shards start.
    pub fn with_topic_labels(self, labelled: bool) -> NodeStats {
        for shard in &self.shards {
            shard.topic_labels.store(labelled, Ordering::Relaxed);
        }
        self
    }

    /// Bytes available to the broker on the data directory's file system.
    fn disk_free_bytes(&self) -> Option<u64> {
        let dir = self.data_dir.as_ref()?;
        let (_, available) = crate::host::file_system_bytes(dir).ok()?;
        u64::try_from(available).ok()
    }
}

fn latency_json(latencies: &crate::latency::RequestLatencies) -> serde_json::Value {
    let mut apis = serde_json::Map::new();
    for slot in 0..crate::latency::API_SLOTS {
        let mut stages = serde_json::Map::new();
        for stage in crate::latency::Stage::ALL {
            let (count, sum_s) = latencies.count_and_sum(slot, stage);
            if count > 0 {
                stages.insert(
                    stage.name().to_string(),
                    serde_json::json!({"count": count, "sum_s": sum_s}),
                );
            }
        }
        if !stages.is_empty() {
            apis.insert(api_name(slot), stages.into());
        }
    }
    apis.into()
}

/// Kafka's name of an API key slot (`Produce`, `Fetch`, ...), or `api_N`.
fn api_name(key: usize) -> String {
    i16::try_from(key)
        .ok()
        .and_then(|key| kafka_protocol::messages::ApiKey::try_from(key).ok())
        .map_or_else(|| format!("api_{key}"), |api| format!("{api:?}"))
}

struct ProcessFacts {
    rss_bytes: u64,
    cpu_s: f64,
}

/// Resident memory and CPU time of this process, from /proc.
fn process_facts() -> ProcessFacts {
    // SAFETY: sysconf has no preconditions.
    let (page_bytes, ticks) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
        )
    };
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // utime and stime are fields 14 and 15; the command name (field 2) may hold spaces, so
    // count from its closing parenthesis.
    let cpu_ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| {
            let rest = &text[text.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    ProcessFacts {
        rss_bytes: rss_pages * page_bytes,
        cpu_s: cpu_ticks as f64 / ticks,
    }
}

/// Serves `/stats` and `/metrics` on `address` from a thread of its own (not a shard: it
/// only reads counters). Binding fails at start, with one line.
pub fn serve(address: SocketAddr, stats: Arc<NodeStats>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address).map_err(|error| {
        anyhow::anyhow!(
            "cannot listen for stats on {address}: {error} (choose another --stats-listen)"
        )
    })?;
    std::thread::Builder::new()
        .name("spate-stats".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut request_line = String::new();
                if BufReader::new(&stream)
                    .read_line(&mut request_line)
                    .is_err()
                {
                    continue;
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("");
                let (status, content_type, body) = match path {
                    "/stats" => (
                        "200 OK",
                        "application/json",
                        serde_json::to_string_pretty(&stats.to_json()).unwrap_or_default() + "\n",
                    ),
                    "/metrics" => (
                        "200 OK",
                        "text/plain; version=0.0.4",
                        stats.to_prometheus(),
                    ),
                    _ => (
                        "404 Not Found",
                        "text/plain",
                        "try /stats or /metrics\n".to_string(),
                    ),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })?;
    Ok(())
}

#[path = "stats_prometheus.rs"]
mod prometheus;
#[cfg(test)]
use prometheus::HELP;
pub(crate) use prometheus::{escape_label, family};

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
