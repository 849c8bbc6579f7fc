//! `GET /metrics`: the node's counters in Prometheus' text exposition format, with a
//! `# HELP` and `# TYPE` for every family ([`HELP`] is the one list of them; a test checks
//! that every family written has its entry).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::*;
use crate::latency::write_histogram;

impl NodeStats {
    /// The text of `GET /metrics` (Prometheus exposition format).
    pub fn to_prometheus(&self) -> String {
        let mut text = String::new();
        let process = process_facts();
        family(&mut text, "spate_process_resident_memory_bytes", "gauge");
        let _ = writeln!(
            text,
            "spate_process_resident_memory_bytes {}",
            process.rss_bytes
        );
        family(&mut text, "spate_process_cpu_seconds_total", "counter");
        let _ = writeln!(text, "spate_process_cpu_seconds_total {}", process.cpu_s);
        family(&mut text, "spate_build_info", "gauge");
        let _ = writeln!(
            text,
            "spate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(free) = self.disk_free_bytes() {
            family(&mut text, "spate_disk_free_bytes", "gauge");
            let _ = writeln!(text, "spate_disk_free_bytes {free}");
        }
        crate::gauges::write_prometheus(&mut text, &self.shards);
        family(&mut text, "spate_io_uring_in_flight", "gauge");
        for (id, stats) in self.shards.iter().enumerate() {
            for op in spate_storage::metrics::IoOp::ALL {
                let count = stats.log_metrics.in_flight[op as usize].load(Ordering::Relaxed);
                let _ = writeln!(
                    text,
                    "spate_io_uring_in_flight{{shard=\"{id}\",op=\"{}\"}} {count}",
                    op.name()
                );
            }
        }
        family(&mut text, "spate_request_latency_seconds", "histogram");
        for (id, stats) in self.shards.iter().enumerate() {
            stats.latencies.write_prometheus(&mut text, id, api_name);
        }
        let log_histograms: [LogHistogram; 3] = [
            ("spate_fsync_latency_seconds", 1e6, |metrics| {
                &metrics.fsync_latency_us
            }),
            ("spate_group_commit_bytes", 1.0, |metrics| {
                &metrics.group_commit_bytes
            }),
            ("spate_io_uring_depth", 1.0, |metrics| &metrics.io_depth),
        ];
        for (name, scale, histogram) in log_histograms {
            family(&mut text, name, "histogram");
            for (id, stats) in self.shards.iter().enumerate() {
                let labels = format!("shard=\"{id}\"");
                write_histogram(
                    &mut text,
                    name,
                    &labels,
                    histogram(&stats.log_metrics),
                    scale,
                );
            }
        }
        family(&mut text, "spate_requests_total", "counter");
        for (id, stats) in self.shards.iter().enumerate() {
            for (key, counter) in stats.requests.iter().enumerate() {
                let count = ShardStats::read(counter);
                if count > 0 {
                    let api = api_name(key);
                    let _ = writeln!(
                        text,
                        "spate_requests_total{{shard=\"{id}\",api=\"{api}\"}} {count}"
                    );
                }
            }
        }
        family(&mut text, "spate_request_errors_total", "counter");
        for (id, stats) in self.shards.iter().enumerate() {
            for (key, code, count) in stats.request_errors() {
                let api = api_name(key);
                let error = crate::request_errors::error_name(code);
                let _ = writeln!(
                    text,
                    "spate_request_errors_total{{shard=\"{id}\",api=\"{api}\",error=\"{error}\"}} {count}"
                );
            }
        }
        for (family_name, pick) in [
            ("spate_bytes_in_total", 0usize),
            ("spate_bytes_out_total", 1usize),
        ] {
            family(&mut text, family_name, "counter");
            for (id, stats) in self.shards.iter().enumerate() {
                for (topic, bytes_in, bytes_out) in stats.topic_bytes() {
                    let value = if pick == 0 { bytes_in } else { bytes_out };
                    let topic_label = if topic.is_empty() {
                        String::new()
                    } else {
                        format!(",topic=\"{}\"", escape_label(&topic))
                    };
                    let _ = writeln!(text, "{family_name}{{shard=\"{id}\"{topic_label}}} {value}");
                }
            }
        }
        let gauges: [Series; 5] = [
            ("spate_request_bytes_total", "counter", |stats| {
                ShardStats::read(&stats.request_bytes)
            }),
            ("spate_throttled_requests_total", "counter", |stats| {
                ShardStats::read(&stats.throttled_requests)
            }),
            ("spate_connections_accepted_total", "counter", |stats| {
                ShardStats::read(&stats.connections_accepted)
            }),
            ("spate_connections_open", "gauge", |stats| {
                ShardStats::read(&stats.connections_accepted)
                    .saturating_sub(ShardStats::read(&stats.connections_closed))
            }),
            ("spate_partitions_open", "gauge", |stats| {
                ShardStats::read(&stats.partitions_open)
            }),
        ];
        for (name, kind, value) in gauges {
            family(&mut text, name, kind);
            for (id, stats) in self.shards.iter().enumerate() {
                let _ = writeln!(text, "{name}{{shard=\"{id}\"}} {}", value(stats));
            }
        }
        for (index, (name, label)) in LABELLED_FAMILIES.iter().enumerate() {
            family(&mut text, &format!("spate_{name}_total"), "counter");
            for (id, stats) in self.shards.iter().enumerate() {
                for (value_name, value) in &stats.labelled()[index] {
                    let _ = writeln!(
                        text,
                        "spate_{name}_total{{shard=\"{id}\",{label}=\"{value_name}\"}} {value}"
                    );
                }
            }
        }
        text
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped. (Topic names
/// allow only [a-zA-Z0-9._-], but a name from an older catalog is not re-checked here.)
pub(crate) fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `{api: {stage: {count, sum_s}}}` for the APIs with requests.
/// What each family of `/metrics` measures (its `# HELP`).
pub(crate) const HELP: &[(&str, &str)] = &[
    ("spate_process_resident_memory_bytes", "Resident memory of the broker process."),
    ("spate_process_cpu_seconds_total", "CPU time (user + system) of the broker process."),
    ("spate_build_info", "The broker's version, as a label; always 1."),
    ("spate_disk_free_bytes", "Bytes available to the broker on the data directory's file system."),
    ("spate_under_replicated_partitions", "Partitions led by the shard whose ISR is smaller than their replica set."),
    ("spate_offline_partitions", "Partitions without a live leader, counted by the active controller's shard (0 on the others)."),
    ("spate_shard_busy_seconds_total", "Time the shard's executor ran tasks or polled its rings rather than sleeping."),
    ("spate_shard_busy_ratio", "The share of the last second the shard was busy, 0 to 1."),
    ("spate_log_size_bytes", "Segment bytes of each replica the shard hosts, by topic and partition (one series per shard without --metrics-topic-labels)."),
    ("spate_consumer_group_lag", "High watermark less committed offset, by group, topic and partition (by group without --metrics-topic-labels), as the group's coordinator last measured it."),
    ("spate_io_uring_in_flight", "Log operations submitted to the shard's io_uring and not yet completed, by operation."),
    ("spate_io_uring_depth", "Log operations in flight on the shard's io_uring when each was submitted, itself included."),
    ("spate_request_latency_seconds", "Time from a request read whole to the end of its in-order part (stage=local) and to its response being ready (stage=total)."),
    ("spate_fsync_latency_seconds", "Time of each group commit's fdatasync."),
    ("spate_group_commit_bytes", "Bytes written by each group commit (from the block-aligned start)."),
    ("spate_requests_total", "Requests received, by Kafka API."),
    ("spate_request_errors_total", "Error codes in responses, by Kafka API and error: each topic's, partition's or group's code counts once, as in Kafka's ErrorsPerSec (NONE is left out)."),
    ("spate_bytes_in_total", "Produced batch bytes appended by partition leaders, by topic (one series per shard without --metrics-topic-labels)."),
    ("spate_bytes_out_total", "Record bytes sent in fetch responses to consumers (not followers), by topic (one series per shard without --metrics-topic-labels)."),
    ("spate_request_bytes_total", "Bytes of the request frames received."),
    ("spate_throttled_requests_total", "Requests whose client was over a client quota: answered with throttle_time_ms, its connection then read nothing until that time passed."),
    ("spate_connections_accepted_total", "Client connections accepted."),
    ("spate_connections_open", "Client connections open now."),
    ("spate_partitions_open", "Partition logs open now."),
    ("spate_cross_shard_total", "Interactions of a shard with state other shards change, by kind."),
    ("spate_fetch_record_bytes_total", "Record bytes sent in fetch responses, by where they came from."),
    ("spate_produce_append_bytes_total", "Produced batch bytes appended: received in place or copied."),
];

/// Writes a family's `# HELP` and `# TYPE` lines.
pub(crate) fn family(text: &mut String, name: &str, kind: &str) {
    let help = HELP
        .iter()
        .find(|(family, _)| *family == name)
        .map_or("", |(_, help)| *help);
    debug_assert!(!help.is_empty(), "no help for {name}");
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} {kind}");
}

/// A per-shard histogram of the logs' metrics: name, the divisor of its values (1e6: µs to
/// seconds), which one.
type LogHistogram = (
    &'static str,
    f64,
    fn(&spate_storage::metrics::LogMetrics) -> &spate_storage::metrics::Histogram,
);

/// A per-shard series of `/metrics`: name, Prometheus type, how to read it.
type Series = (&'static str, &'static str, fn(&ShardStats) -> u64);
