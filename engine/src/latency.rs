//! Request latency per Kafka API, as Prometheus histograms (`spate_request_latency_seconds`).
//!
//! Each shard records its own requests into fixed buckets of relaxed atomics (one writer, the
//! shard; one reader, the stats thread): no lock, no allocation per request. Two stages are
//! kept apart, so that an operator sees where time goes:
//! - `local`: from the whole request read to the end of its in-order part (decode, lookup,
//!   validation, the append into the write buffer);
//! - `total`: from the whole request read to its response being ready, which adds the wait
//!   for durability (the group commit's fdatasync) and, for a Fetch, its long poll.
//!
//! The buckets are Kafka-ish latency bounds from 100 µs to 10 s; a request slower than 10 s
//! lands in `+Inf` only.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds in microseconds (Prometheus `le`), `+Inf` after the last.
pub const BUCKET_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
const BUCKETS: usize = BUCKET_BOUNDS_US.len() + 1;

/// Kafka API keys with their own histograms (higher keys share the last slot).
pub const API_SLOTS: usize = 96;

/// The stages of a request that are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Until the in-order part is done.
    Local,
    /// Until the response is ready.
    Total,
}

impl Stage {
    /// Every stage, in report order.
    pub const ALL: [Stage; 2] = [Stage::Local, Stage::Total];

    /// The `stage` label.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Local => "local",
            Stage::Total => "total",
        }
    }
}

/// One histogram: a count per bucket (not cumulative) and the sum.
struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn record(&self, micros: u64) {
        let bucket = BUCKET_BOUNDS_US.partition_point(|&bound| bound < micros);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .sum()
    }
}

/// A shard's request latencies, per API slot and stage.
pub struct RequestLatencies {
    histograms: Box<[[Histogram; 2]]>,
}

impl Default for RequestLatencies {
    fn default() -> Self {
        RequestLatencies {
            histograms: (0..API_SLOTS).map(|_| Default::default()).collect(),
        }
    }
}

impl RequestLatencies {
    /// A request of `api_key` took `elapsed` to reach `stage`.
    pub fn record(&self, api_key: i16, stage: Stage, elapsed: Duration) {
        let slot = (api_key.max(0) as usize).min(API_SLOTS - 1);
        let micros = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        self.histograms[slot][stage as usize].record(micros);
    }

    /// How many requests of the API slot reached `stage`.
    pub fn count(&self, slot: usize, stage: Stage) -> u64 {
        self.histograms[slot][stage as usize].count()
    }

    /// The count and the summed seconds of the API slot's requests at `stage`.
    pub fn count_and_sum(&self, slot: usize, stage: Stage) -> (u64, f64) {
        let histogram = &self.histograms[slot][stage as usize];
        let sum_s = histogram.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (histogram.count(), sum_s)
    }

    /// Appends the Prometheus series of this shard (`_bucket`, `_sum`, `_count` for each API
    /// and stage that has requests), labelled with `shard` and the API's name.
    pub fn write_prometheus(&self, text: &mut String, shard: usize, api_name: fn(usize) -> String) {
        for (slot, stages) in self.histograms.iter().enumerate() {
            for stage in Stage::ALL {
                let histogram = &stages[stage as usize];
                let count = histogram.count();
                if count == 0 {
                    continue;
                }
                let labels = format!(
                    "shard=\"{shard}\",api=\"{}\",stage=\"{}\"",
                    api_name(slot),
                    stage.name()
                );
                let mut cumulative = 0;
                for (bucket, bound_us) in BUCKET_BOUNDS_US.iter().enumerate() {
                    cumulative += histogram.buckets[bucket].load(Ordering::Relaxed);
                    let le = *bound_us as f64 / 1e6;
                    let _ = writeln!(
                        text,
                        "spate_request_latency_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                    );
                }
                // Read once more for +Inf: a request recorded meanwhile must not make the
                // buckets exceed the count.
                let count = count.max(cumulative);
                let _ = writeln!(
                    text,
                    "spate_request_latency_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
                );
                let sum = histogram.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
                let _ = writeln!(text, "spate_request_latency_seconds_sum{{{labels}}} {sum}");
                let _ = writeln!(
                    text,
                    "spate_request_latency_seconds_count{{{labels}}} {count}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_the_first_bucket_that_holds_them() {
        let latencies = RequestLatencies::default();
        latencies.record(0, Stage::Total, Duration::from_micros(100));
        latencies.record(0, Stage::Total, Duration::from_micros(101));
        latencies.record(0, Stage::Total, Duration::from_secs(60));
        latencies.record(0, Stage::Local, Duration::from_micros(3));
        assert_eq!(latencies.count(0, Stage::Total), 3);
        assert_eq!(latencies.count(1, Stage::Total), 0);
        let mut text = String::new();
        latencies.write_prometheus(&mut text, 2, |slot| format!("api{slot}"));
        let line = |suffix: &str| {
            text.lines()
                .find(|line| line.contains(suffix))
                .unwrap_or_else(|| panic!("{suffix} in\n{text}"))
                .to_string()
        };
        assert!(line("stage=\"total\",le=\"0.0001\"}").ends_with(" 1"));
        assert!(line("stage=\"total\",le=\"0.00025\"}").ends_with(" 2"));
        assert!(line("stage=\"total\",le=\"10\"}").ends_with(" 2"));
        assert!(line("stage=\"total\",le=\"+Inf\"}").ends_with(" 3"));
        assert!(line(
            "spate_request_latency_seconds_count{shard=\"2\",api=\"api0\",stage=\"local\"}"
        )
        .ends_with(" 1"));
        assert!(line(
            "spate_request_latency_seconds_sum{shard=\"2\",api=\"api0\",stage=\"total\"}"
        )
        .starts_with("spate_request_latency_seconds_sum"));
        assert!(!text.contains("api=\"api1\""));
    }
}
