//! The progress line printed on stderr each second while a run lasts: elapsed time, the
//! current MB/s, and the p99 measured so far.
//!
//! Actors add bytes to an atomic counter and record latency into their own histogram; every
//! [`MERGE_EVERY`] they fold what they recorded since into the shared histogram, so the
//! reporter never contends with the hot path for more than a merge.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::intervals::IntervalHistograms;
use crate::report::new_latency_histogram;

/// How often an actor folds its recent latencies into the shared histogram.
pub const MERGE_EVERY: Duration = Duration::from_millis(250);

/// Counters shared by all actors of one run and the reporter.
pub struct Progress {
    bytes: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
    done: AtomicBool,
}

impl Progress {
    /// A fresh set of counters.
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress {
            bytes: AtomicU64::new(0),
            latency_us: Mutex::new(new_latency_histogram()),
            done: AtomicBool::new(false),
        })
    }

    /// Counts payload bytes moved (warm-up included: the line shows the current rate).
    pub fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Tells the reporter to stop.
    pub fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
    }

    /// Prints a line every second until [`Progress::finish`]; `label` names the latency.
    pub fn spawn_reporter(
        self: &Arc<Progress>,
        start: Instant,
        measure_from: Instant,
        label: &'static str,
    ) -> std::thread::JoinHandle<()> {
        let progress = self.clone();
        std::thread::spawn(move || {
            let mut last_bytes = 0;
            let mut last_at = Instant::now();
            while !progress.done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if last_at.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                let bytes = progress.bytes.load(Ordering::Relaxed);
                let seconds = last_at.elapsed().as_secs_f64();
                last_at = Instant::now();
                let mb_s = (bytes - last_bytes) as f64 / seconds / 1e6;
                last_bytes = bytes;
                let p99 = progress
                    .latency_us
                    .lock()
                    .map(|histogram| histogram.value_at_quantile(0.99))
                    .unwrap_or(0);
                let phase = if Instant::now() < measure_from {
                    " (warm-up)"
                } else {
                    ""
                };
                eprintln!(
                    "[{:5.1}s] {mb_s:8.1} MB/s  {label} p99 so far {p99} us{phase}",
                    start.elapsed().as_secs_f64()
                );
            }
        })
    }
}

/// An actor's latency recorder: the run's histogram, the part not yet shown, and with
/// `--interval-percentiles` one histogram per interval.
pub struct LatencyRecorder {
    /// Everything recorded in the measurement window.
    pub total: Histogram<u64>,
    /// The same samples, per interval, when the run asked for it.
    pub intervals: Option<IntervalHistograms>,
    recent: Histogram<u64>,
    last_merge: Instant,
    progress: Option<Arc<Progress>>,
}

impl LatencyRecorder {
    /// A recorder that reports to `progress`, or only keeps its total with `None`.
    pub fn new(progress: Option<Arc<Progress>>) -> LatencyRecorder {
        LatencyRecorder {
            total: new_latency_histogram(),
            intervals: None,
            recent: new_latency_histogram(),
            last_merge: Instant::now(),
            progress,
        }
    }

    /// Also keeps a histogram per interval (`None`: no intervals).
    pub fn with_intervals(mut self, intervals: Option<IntervalHistograms>) -> LatencyRecorder {
        self.intervals = intervals;
        self
    }

    /// Records `count` samples of `latency_us` that completed at `at`.
    pub fn record(&mut self, latency_us: u64, count: u64, at: Instant) {
        let latency_us = latency_us.max(1);
        self.total.saturating_record_n(latency_us, count);
        self.recent.saturating_record_n(latency_us, count);
        if let Some(intervals) = &mut self.intervals {
            intervals.record(at, latency_us, count);
        }
        if at.saturating_duration_since(self.last_merge) >= MERGE_EVERY {
            self.flush();
        }
    }

    /// Folds the recent samples into the shared histogram.
    pub fn flush(&mut self) {
        if let Some(Ok(mut shared)) = self.progress.as_ref().map(|p| p.latency_us.lock()) {
            // Both histograms share bounds, so adding cannot fail.
            let _ = shared.add(&self.recent);
        }
        self.recent.reset();
        self.last_merge = Instant::now();
    }
}
