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
use std::time::Duration;

use spate_storage::metrics::Histogram;

/// Bucket upper bounds in microseconds (Prometheus `le`), `+Inf` after the last.
pub const BUCKET_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

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

/// A shard's request latencies, per API slot and stage.
pub struct RequestLatencies {
    histograms: Box<[[Histogram; 2]]>,
}

impl Default for RequestLatencies {
    fn default() -> Self {
        RequestLatencies {
            histograms: (0..API_SLOTS)
                .map(|_| std::array::from_fn(|_| Histogram::new(&BUCKET_BOUNDS_US)))
                .collect(),
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
        (histogram.count(), histogram.sum() as f64 / 1e6)
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
                write_histogram(
                    text,
                    "spate_request_latency_seconds",
                    &labels,
                    histogram,
                    1e6,
                );
            }
        }
    }
}

/// Appends one Prometheus histogram's `_bucket` (cumulative, `+Inf` last), `_sum` and
/// `_count` lines; bounds and sum are divided by `scale` (1e6 turns microseconds into the
/// seconds Prometheus wants, 1.0 leaves bytes as they are).
pub fn write_histogram(
    text: &mut String,
    name: &str,
    labels: &str,
    histogram: &Histogram,
    scale: f64,
) {
    let counts = histogram.counts();
    let separator = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (count, bound) in counts.iter().zip(histogram.bounds()) {
        cumulative += count;
        let le = *bound as f64 / scale;
        let _ = writeln!(
            text,
            "{name}_bucket{{{labels}{separator}le=\"{le}\"}} {cumulative}"
        );
    }
    // The counts were read once: +Inf and _count agree with the buckets.
    cumulative += counts.last().copied().unwrap_or(0);
    let _ = writeln!(
        text,
        "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {cumulative}"
    );
    let sum = histogram.sum() as f64 / scale;
    let braced = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(text, "{name}_sum{braced} {sum}");
    let _ = writeln!(text, "{name}_count{braced} {cumulative}");
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
