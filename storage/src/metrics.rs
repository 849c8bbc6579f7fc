//! Histograms a shard's logs record into, for the engine's `/metrics`: how long each group
//! commit's `fdatasync` took and how many bytes it made durable; and the log I/O in flight
//! on the shard's io_uring (segment writes, `fdatasync`s, segment reads), with the depth
//! each submission found ([`in_flight`]).
//!
//! The engine gives each shard's thread one [`LogMetrics`] ([`install`]); every log's flusher
//! on that thread records into it. The counters are relaxed atomics with one writer (the
//! shard) and one reader (the engine's stats thread). Threads without one (tests, tools)
//! record nothing.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A histogram over fixed bucket bounds: a count per bucket (not cumulative), the sum.
pub struct Histogram {
    /// Upper bounds, increasing; one more bucket (`+Inf`) follows the last.
    bounds: &'static [u64],
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds` (increasing).
    pub fn new(bounds: &'static [u64]) -> Histogram {
        assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts `value` in the first bucket whose bound holds it.
    pub fn record(&self, value: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The bucket bounds.
    pub fn bounds(&self) -> &'static [u64] {
        self.bounds
    }

    /// The counts per bucket (`bounds().len() + 1` of them, `+Inf` last), not cumulative.
    pub fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect()
    }

    /// The sum of the recorded values.
    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.counts().iter().sum()
    }
}

/// `fdatasync` latency bounds, microseconds: 50 µs to 5 s.
pub const FSYNC_BOUNDS_US: [u64; 15] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// Group commit size bounds, bytes: 4 KiB to 64 MiB.
pub const GROUP_COMMIT_BOUNDS_BYTES: [u64; 9] = [
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    32 << 20,
    64 << 20,
];

/// io_uring depth bounds, operations in flight (the new one included).
pub const IO_DEPTH_BOUNDS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// A kind of log I/O submitted to the shard's io_uring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// An O_DIRECT write of a segment's bytes.
    Write,
    /// A group commit's `fdatasync`.
    Fdatasync,
    /// A read of a segment's bytes (a fetch past the tail cache, a scan).
    Read,
}

impl IoOp {
    /// Every kind, in the order of [`LogMetrics::in_flight`].
    pub const ALL: [IoOp; 3] = [IoOp::Write, IoOp::Fdatasync, IoOp::Read];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            IoOp::Write => "write",
            IoOp::Fdatasync => "fdatasync",
            IoOp::Read => "read",
        }
    }
}

/// What one shard's logs record.
pub struct LogMetrics {
    /// Log operations submitted and not yet completed, by [`IoOp`].
    pub in_flight: [AtomicU64; 3],
    /// How many log operations were in flight when each was submitted (itself included):
    /// the queue depth the shard gives the device.
    pub io_depth: Histogram,
    /// Each group commit's `fdatasync`, microseconds.
    pub fsync_latency_us: Histogram,
    /// Each group commit's bytes written (from the block-aligned start, so a partial last
    /// block rewritten counts again).
    pub group_commit_bytes: Histogram,
}

impl Default for LogMetrics {
    fn default() -> Self {
        LogMetrics {
            in_flight: std::array::from_fn(|_| AtomicU64::new(0)),
            io_depth: Histogram::new(&IO_DEPTH_BOUNDS),
            fsync_latency_us: Histogram::new(&FSYNC_BOUNDS_US),
            group_commit_bytes: Histogram::new(&GROUP_COMMIT_BOUNDS_BYTES),
        }
    }
}

thread_local! {
    static SHARD_METRICS: RefCell<Option<Arc<LogMetrics>>> = const { RefCell::new(None) };
}

/// Makes `metrics` the current thread's: every log flushed on this thread records into it.
pub fn install(metrics: Arc<LogMetrics>) {
    SHARD_METRICS.with(|current| *current.borrow_mut() = Some(metrics));
}

/// Runs `record` on the current thread's metrics, if any.
pub(crate) fn record(record: impl FnOnce(&LogMetrics)) {
    SHARD_METRICS.with(|current| {
        if let Some(metrics) = current.borrow().as_ref() {
            record(metrics);
        }
    });
}

/// Counts one `op` in flight on the current thread's metrics until the guard drops (the
/// operation completed, failed or was cancelled), and records the depth it found.
pub(crate) fn in_flight(op: IoOp) -> InFlight {
    let metrics = SHARD_METRICS.with(|current| current.borrow().clone());
    if let Some(metrics) = &metrics {
        let depth: u64 = metrics
            .in_flight
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum();
        metrics.io_depth.record(depth + 1);
        metrics.in_flight[op as usize].fetch_add(1, Ordering::Relaxed);
    }
    InFlight { metrics, op }
}

/// One log operation in flight; see [`in_flight`].
pub(crate) struct InFlight {
    metrics: Option<Arc<LogMetrics>>,
    op: IoOp,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(metrics) = &self.metrics {
            metrics.in_flight[self.op as usize].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::new(&[10, 20]);
        for value in [0, 10, 11, 20, 21, 1000] {
            histogram.record(value);
        }
        assert_eq!(histogram.counts(), vec![2, 2, 2]);
        assert_eq!((histogram.count(), histogram.sum()), (6, 1062));
    }

    #[test]
    fn operations_count_in_flight_until_dropped_and_record_the_depth_they_found() {
        let metrics = Arc::new(LogMetrics::default());
        install(metrics.clone());
        let write = in_flight(IoOp::Write);
        let sync = in_flight(IoOp::Fdatasync);
        let counts = || {
            metrics
                .in_flight
                .each_ref()
                .map(|c| c.load(Ordering::Relaxed))
        };
        assert_eq!(counts(), [1, 1, 0]);
        drop(write);
        let read = in_flight(IoOp::Read);
        assert_eq!(counts(), [0, 1, 1]);
        drop((sync, read));
        assert_eq!(counts(), [0, 0, 0]);
        // Depths 1, 2 and 2.
        assert_eq!(metrics.io_depth.counts()[..3], [1, 2, 0]);
        SHARD_METRICS.with(|current| *current.borrow_mut() = None);
    }
}
