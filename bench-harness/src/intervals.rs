//! Latency percentiles per interval (`--interval-percentiles SECS`, the soak): a separate
//! HdrHistogram for each interval of the measurement window, so a slow drift or one bad
//! minute in an hour-long run shows instead of vanishing into the run's totals.
//!
//! A sample belongs to the interval in which it completed (the acknowledgement, or the
//! consume), the same clock as the throughput series.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::report::{new_latency_histogram, Percentiles};

/// Most intervals a run may have: each holds a histogram of ~170 KiB per actor thread.
pub const INTERVALS_MAX: usize = 1440;

/// One actor's histograms, one per interval.
pub struct IntervalHistograms {
    measure_from: Instant,
    interval: Duration,
    histograms: Vec<Histogram<u64>>,
}

impl IntervalHistograms {
    /// Intervals of `interval` from `measure_from`, created as samples arrive.
    pub fn new(measure_from: Instant, interval: Duration) -> IntervalHistograms {
        assert!(!interval.is_zero(), "an interval must have a length");
        IntervalHistograms {
            measure_from,
            interval,
            histograms: Vec::new(),
        }
    }

    /// Records `count` samples of `latency_us` that completed at `at` (never before
    /// the window's start: callers keep warm-up samples out).
    pub fn record(&mut self, at: Instant, latency_us: u64, count: u64) {
        let elapsed = at.saturating_duration_since(self.measure_from);
        let index = (elapsed.as_nanos() / self.interval.as_nanos()) as usize;
        if index >= INTERVALS_MAX {
            return; // past any window a run is allowed (checked when the run starts)
        }
        while self.histograms.len() <= index {
            self.histograms.push(new_latency_histogram());
        }
        self.histograms[index].saturating_record_n(latency_us.max(1), count);
    }

    /// Adds another actor's histograms of the same intervals.
    pub fn add(&mut self, other: &IntervalHistograms) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.interval == other.interval,
            "intervals of different lengths"
        );
        while self.histograms.len() < other.histograms.len() {
            self.histograms.push(new_latency_histogram());
        }
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            mine.add(theirs)?;
        }
        Ok(())
    }

    /// The percentiles of each interval up to `measured_s`, with the throughput of the
    /// interval from the per-second series (MB/s). Intervals without samples are listed,
    /// with zero counts: a minute in which nothing completed is a finding.
    pub fn summarize(&self, measured_s: f64, series_mb_s: &[f64]) -> LatencyIntervals {
        let interval_s = self.interval.as_secs_f64();
        let count = ((measured_s / interval_s).ceil() as usize).clamp(1, INTERVALS_MAX);
        let intervals = (0..count)
            .map(|index| {
                let start_s = index as f64 * interval_s;
                let end_s = (start_s + interval_s).min(measured_s.max(start_s));
                // Samples completing after the window (an end-to-end drain) count in the
                // last interval.
                let last = index + 1 == count;
                let mut histogram = new_latency_histogram();
                for (at, recorded) in self.histograms.iter().enumerate() {
                    if at == index || (last && at > index) {
                        // Same bounds: adding cannot fail.
                        let _ = histogram.add(recorded);
                    }
                }
                IntervalPercentiles {
                    start_s,
                    end_s,
                    throughput_mb_s: mean_over(series_mb_s, start_s, end_s),
                    latency_us: Percentiles::from_histogram(&histogram),
                }
            })
            .collect();
        LatencyIntervals {
            interval_s,
            intervals,
        }
    }
}

/// The mean of the one-second buckets in [start_s, end_s).
fn mean_over(series_mb_s: &[f64], start_s: f64, end_s: f64) -> f64 {
    let first = start_s.floor() as usize;
    let last = (end_s.ceil() as usize).min(series_mb_s.len());
    let buckets = series_mb_s.get(first..last).unwrap_or(&[]);
    if buckets.is_empty() {
        return 0.0;
    }
    buckets.iter().sum::<f64>() / buckets.len() as f64
}

/// The JSON of `latency_intervals_us`: a time series of percentiles.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyIntervals {
    /// Length of each interval, seconds.
    pub interval_s: f64,
    /// The intervals in order.
    pub intervals: Vec<IntervalPercentiles>,
}

/// One interval's latency percentiles and throughput.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntervalPercentiles {
    /// Seconds from the measurement window's start.
    pub start_s: f64,
    /// End, seconds (the last interval may be shorter).
    pub end_s: f64,
    /// Mean throughput over the interval, MB/s.
    pub throughput_mb_s: f64,
    /// Percentiles of the samples that completed in it (`p50`, `p99`, `p999`, `p9999`,
    /// `max`, `mean`, `count`).
    #[serde(flatten)]
    pub latency_us: Percentiles,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_interval_they_completed_in() {
        let start = Instant::now();
        let mut intervals = IntervalHistograms::new(start, Duration::from_secs(60));
        // Minute 0: fast; minute 1: nothing; minute 2: slow, with one outlier.
        for millisecond in 0..1000 {
            intervals.record(start + Duration::from_millis(millisecond), 100, 1);
        }
        for second in 0..60 {
            intervals.record(start + Duration::from_secs(120 + second), 5_000, 10);
        }
        intervals.record(start + Duration::from_secs(150), 900_000, 1);
        let series = vec![10.0; 150];
        let summary = intervals.summarize(150.0, &series);
        assert_eq!(summary.interval_s, 60.0);
        assert_eq!(summary.intervals.len(), 3);
        let [first, empty, slow] = &summary.intervals[..] else {
            panic!("three intervals")
        };
        assert_eq!(first.latency_us.count, 1000);
        assert_eq!(first.latency_us.p99, 100);
        assert_eq!(empty.latency_us.count, 0);
        assert_eq!(slow.latency_us.count, 601);
        assert!((4995..=5005).contains(&slow.latency_us.p99));
        assert!(slow.latency_us.max >= 899_000);
        // The last interval is cut at the window's end, and its throughput is its own.
        assert_eq!((slow.start_s, slow.end_s), (120.0, 150.0));
        assert_eq!(slow.throughput_mb_s, 10.0);
    }

    #[test]
    fn actors_histograms_add_up() {
        let start = Instant::now();
        let mut one = IntervalHistograms::new(start, Duration::from_secs(1));
        let mut two = IntervalHistograms::new(start, Duration::from_secs(1));
        one.record(start, 10, 5);
        two.record(start + Duration::from_millis(2500), 20, 7);
        one.add(&two).unwrap();
        let summary = one.summarize(3.0, &[]);
        let counts: Vec<u64> = summary
            .intervals
            .iter()
            .map(|interval| interval.latency_us.count)
            .collect();
        assert_eq!(counts, vec![5, 0, 7]);
        let other_length = IntervalHistograms::new(start, Duration::from_secs(2));
        assert!(one.add(&other_length).is_err());
    }

    #[test]
    fn json_is_a_flat_series_of_percentiles() {
        let start = Instant::now();
        let mut intervals = IntervalHistograms::new(start, Duration::from_secs(60));
        intervals.record(start, 42, 1);
        let json = serde_json::to_value(intervals.summarize(60.0, &[1.0; 60])).unwrap();
        assert_eq!(json["interval_s"], 60.0);
        let first = &json["intervals"][0];
        for field in [
            "start_s",
            "end_s",
            "throughput_mb_s",
            "p50",
            "p99",
            "p999",
            "p9999",
            "max",
            "count",
        ] {
            assert!(first.get(field).is_some(), "missing {field} in {first}");
        }
        let back: LatencyIntervals = serde_json::from_value(json).unwrap();
        assert_eq!(back.intervals[0].latency_us.p50, 42);
    }
}
