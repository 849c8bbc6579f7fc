//! Gauges a shard publishes about itself for `/metrics` and `/stats`: values that live in
//! the shard's single-threaded state (its replicas' logs, its executor's clock, its image),
//! copied once a second into [`ShardGauges`] by [`GaugePublisher::publish`] from the shard's
//! maintenance loop, so that a scrape reads a snapshot and never reaches into a shard.
//!
//! - **Log sizes** (`spate_log_size_bytes{topic,partition}`, Kafka's `Log` `Size`): the
//!   segment bytes of every replica the shard hosts, leader or follower. A replica closed
//!   while idle keeps its last size; one no longer hosted here drops out.
//! - **Busy time** (`spate_shard_busy_seconds_total`, `spate_shard_busy_ratio`): the time
//!   the shard's executor ran tasks or polled its rings rather than sleeping (glommio's
//!   `total_runtime`), as a counter and as the share of the last second.
//! - **Partition health** from the metadata image, recounted only when the image changes:
//!   `spate_under_replicated_partitions` counts the partitions this shard leads whose ISR is
//!   smaller than their replica set (Kafka's `UnderReplicatedPartitions`, per broker), and
//!   `spate_offline_partitions` the partitions without a live leader, counted only on the
//!   shard of the active controller as Kafka's `OfflinePartitionsCount` is (0 elsewhere), so
//!   that a sum over the cluster counts each once.
//!
//! Consumer lag is filled in by the group coordinators (`groups::lag`), on their own clock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metadata::image::{MetadataImage, PartitionAssignment};
use crate::shard::Shard;

/// One snapshot of a shard's gauges; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct ShardGauges {
    /// Log bytes of the replicas hosted here: (topic, partition, bytes), sorted; one
    /// `("", -1, total)` when topic labels are off.
    pub log_sizes: Vec<(String, i32, u64)>,
    /// Busy time, in seconds, since the shard started.
    pub busy_seconds: f64,
    /// The share of the last publishing interval the shard was busy, 0 to 1.
    pub busy_ratio: f64,
    /// Partitions led here whose ISR is smaller than their replica set.
    pub under_replicated: u64,
    /// Partitions without a live leader, on the active controller's shard; else 0.
    pub offline: u64,
    /// Consumer lag of the groups coordinated here (see `groups::lag`).
    pub consumer_lag: Vec<GroupLag>,
}

/// One group's lag on one partition: the high watermark less its committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLag {
    pub group: String,
    /// `""` with topic labels off, when `lag` sums the group's partitions.
    pub topic: String,
    /// -1 with topic labels off.
    pub partition: i32,
    pub lag: i64,
}

/// The shard-local state behind [`ShardGauges`].
pub struct GaugePublisher {
    /// Last known log size of each replica hosted here.
    sizes: HashMap<(String, i32), u64>,
    /// The replicas the image puts here, as of `image`.
    hosted: HashSet<(String, i32)>,
    image: Option<Arc<MetadataImage>>,
    /// Whether `offline` was counted as the active controller's shard.
    counted_offline: bool,
    under_replicated: u64,
    offline: u64,
    busy: Duration,
    published: Instant,
}

impl Default for GaugePublisher {
    fn default() -> Self {
        GaugePublisher {
            sizes: HashMap::new(),
            hosted: HashSet::new(),
            image: None,
            counted_offline: false,
            under_replicated: 0,
            offline: 0,
            busy: Duration::ZERO,
            published: Instant::now(),
        }
    }
}

impl GaugePublisher {
    /// Takes the shard's values and publishes them into its stats.
    pub fn publish(&mut self, shard: &Shard) {
        let image = shard.image();
        let counts_offline = shard.id == shard.node.controller_shard
            && shard
                .node
                .quorum_status
                .get()
                .is_none_or(|status| status.role == crate::cluster::status::QuorumRole::Leader);
        let same_image = self
            .image
            .as_ref()
            .is_some_and(|counted| Arc::ptr_eq(counted, &image));
        if !same_image || counts_offline != self.counted_offline {
            self.count_image(shard, &image, counts_offline);
            self.image = Some(image);
            self.counted_offline = counts_offline;
        }
        for replica in shard.partitions.open_replicas() {
            let key = replica.key();
            self.sizes.insert(
                (key.topic.to_string(), key.partition),
                replica.log().size_bytes(),
            );
        }
        let hosted = &self.hosted;
        self.sizes.retain(|key, _| hosted.contains(key));
        let mut log_sizes: Vec<(String, i32, u64)> = if shard.node.config.metrics_topic_labels {
            self.sizes
                .iter()
                .map(|((topic, partition), bytes)| (topic.clone(), *partition, *bytes))
                .collect()
        } else {
            vec![(String::new(), -1, self.sizes.values().sum())]
        };
        log_sizes.sort_unstable();

        // glommio hands out the time since the previous call and starts again from zero.
        let ran = glommio::executor().executor_stats().total_runtime();
        self.busy += ran;
        let now = Instant::now();
        let elapsed = now.duration_since(self.published);
        self.published = now;
        let busy_ratio = if elapsed.is_zero() {
            0.0
        } else {
            (ran.as_secs_f64() / elapsed.as_secs_f64()).min(1.0)
        };

        let stats = &shard.node.stats.shards[shard.id.0 as usize];
        let mut gauges = stats.gauges();
        gauges.log_sizes = log_sizes;
        gauges.busy_seconds = self.busy.as_secs_f64();
        gauges.busy_ratio = busy_ratio;
        gauges.under_replicated = self.under_replicated;
        gauges.offline = self.offline;
    }

    /// Recounts what depends on the image alone.
    fn count_image(&mut self, shard: &Shard, image: &MetadataImage, counts_offline: bool) {
        let here = shard.partitions.broker();
        self.hosted.clear();
        self.under_replicated = 0;
        self.offline = 0;
        for topic in image.topics() {
            for (index, assignment) in topic.partitions.iter().enumerate() {
                if assignment.replicas.contains(&here) {
                    self.hosted.insert((topic.name.clone(), index as i32));
                }
                if assignment.leader == here && assignment.isr.len() < assignment.replicas.len() {
                    self.under_replicated += 1;
                }
                if counts_offline
                    && (assignment.leader == PartitionAssignment::NO_LEADER
                        || !image.is_live(assignment.leader))
                {
                    self.offline += 1;
                }
            }
        }
    }
}

impl ShardGauges {
    /// The shard's part of `GET /stats`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut log_sizes = serde_json::Map::new();
        for (topic, partition, bytes) in &self.log_sizes {
            let topic = log_sizes
                .entry(topic.clone())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            topic[partition.to_string()] = (*bytes).into();
        }
        let lag: Vec<serde_json::Value> = self
            .consumer_lag
            .iter()
            .map(|lag| {
                serde_json::json!({
                    "group": lag.group,
                    "topic": lag.topic,
                    "partition": lag.partition,
                    "lag": lag.lag,
                })
            })
            .collect();
        serde_json::json!({
            "log_size_bytes": log_sizes,
            "busy_s": self.busy_seconds,
            "busy_ratio": self.busy_ratio,
            "under_replicated_partitions": self.under_replicated,
            "offline_partitions": self.offline,
            "consumer_lag": lag,
        })
    }
}

/// A per-shard family: name, Prometheus type, the value.
type GaugeSeries = (&'static str, &'static str, fn(&ShardGauges) -> String);

/// The gauge families of `GET /metrics`, every shard's.
pub(crate) fn write_prometheus(text: &mut String, shards: &[Arc<crate::stats::ShardStats>]) {
    use crate::stats::{escape_label, family};
    use std::fmt::Write as _;
    let snapshots: Vec<ShardGauges> = shards.iter().map(|stats| stats.gauges().clone()).collect();
    let per_shard: [GaugeSeries; 4] = [
        ("spate_under_replicated_partitions", "gauge", |g| {
            g.under_replicated.to_string()
        }),
        ("spate_offline_partitions", "gauge", |g| {
            g.offline.to_string()
        }),
        ("spate_shard_busy_seconds_total", "counter", |g| {
            g.busy_seconds.to_string()
        }),
        ("spate_shard_busy_ratio", "gauge", |g| {
            g.busy_ratio.to_string()
        }),
    ];
    for (name, kind, value) in per_shard {
        family(text, name, kind);
        for (id, gauges) in snapshots.iter().enumerate() {
            let _ = writeln!(text, "{name}{{shard=\"{id}\"}} {}", value(gauges));
        }
    }
    family(text, "spate_log_size_bytes", "gauge");
    for (id, gauges) in snapshots.iter().enumerate() {
        for (topic, partition, bytes) in &gauges.log_sizes {
            let labels = if topic.is_empty() {
                String::new()
            } else {
                format!(
                    ",topic=\"{}\",partition=\"{partition}\"",
                    escape_label(topic)
                )
            };
            let _ = writeln!(
                text,
                "spate_log_size_bytes{{shard=\"{id}\"{labels}}} {bytes}"
            );
        }
    }
    // A group is coordinated by one shard of the cluster: no shard label, so that a
    // coordinator moving to another shard keeps the series.
    family(text, "spate_consumer_group_lag", "gauge");
    for gauges in &snapshots {
        for lag in &gauges.consumer_lag {
            let group = escape_label(&lag.group);
            let labels = if lag.topic.is_empty() {
                String::new()
            } else {
                format!(
                    ",topic=\"{}\",partition=\"{}\"",
                    escape_label(&lag.topic),
                    lag.partition
                )
            };
            let _ = writeln!(
                text,
                "spate_consumer_group_lag{{group=\"{group}\"{labels}}} {}",
                lag.lag
            );
        }
    }
}
