//! A quota's rate as a token bucket, and the throttle time of a client over it.
//!
//! Kafka measures client quotas with sampled windows (`Rate` over a `SampledStat`): what
//! was recorded in the last `quota.window.num` windows over the time they span. When the
//! oldest window expires its bytes vanish from the sum at once, so a throttled client's rate
//! swings around its bound; over ten seconds at Kafka's settings it is 10–30% off (Spate's
//! simulation of Kafka's algorithm: a 16 KiB producer against 256 KiB/s averages 1.13× its
//! bound between its 2nd and 10th second). Kafka itself moved the controller mutation quota
//! to a token bucket for this reason (KIP-599), and Spate uses that bucket for every quota:
//!
//! - the bucket holds up to `bound × (samples − 1) × window`, the burst Kafka allows a new
//!   client, and starts full;
//! - it refills at `bound` per second; a request takes what it measured (bytes, or
//!   percent-seconds of shard time) and may take it below zero;
//! - a client whose bucket is below zero waits until it is back at zero: `−tokens / bound`,
//!   which is also Kafka's throttle formula once its rate is expressed this way.
//!
//! So a throttled client averages its bound exactly after its first burst, and
//! `--quota-window-num` / `--quota-window-size-seconds` keep Kafka's meaning for the burst.

use std::time::{Duration, Instant};

/// How quotas allow bursts (Kafka's `quota.window.num` and `quota.window.size.seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaWindow {
    /// Samples Kafka would keep (at least 2): a burst is `samples - 1` windows of the bound.
    pub samples: u32,
    /// One sample's span.
    pub window: Duration,
}

impl Default for QuotaWindow {
    /// Kafka's defaults: 11 samples of one second.
    fn default() -> QuotaWindow {
        QuotaWindow {
            samples: 11,
            window: Duration::from_secs(1),
        }
    }
}

impl QuotaWindow {
    /// Every sample's span together.
    pub fn span(&self) -> Duration {
        self.window * self.samples
    }

    /// The most a client may take at once under `bound` per second (Kafka's
    /// `getMaxValueInQuotaWindow`): the bucket's size, and what caps a throttled consumer's
    /// fetch size.
    pub fn max_in_window(&self, bound: f64) -> f64 {
        bound * (self.samples.max(2) - 1) as f64 * self.window.as_secs_f64()
    }
}

/// One sensor's bucket.
#[derive(Clone, Debug)]
pub struct Rate {
    /// What the client may still take now; negative when it owes.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
    /// From when the bucket is full again if nothing more is taken: the sensor can then
    /// be dropped and made anew without changing any throttle.
    full_at: Instant,
}

impl Rate {
    /// A full bucket (set at the first record, once the bound is known).
    pub fn new(now: Instant) -> Rate {
        Rate {
            tokens: f64::NAN,
            updated: now,
            full_at: now,
        }
    }

    fn refill(&mut self, bound: f64, now: Instant, config: &QuotaWindow) {
        let size = config.max_in_window(bound);
        if self.tokens.is_nan() {
            self.tokens = size;
        }
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        // A bound lowered since may leave more than the new size: cut down to it.
        self.tokens = (self.tokens + elapsed * bound).min(size);
        self.updated = self.updated.max(now);
    }

    /// Takes `value` (bytes, or percent-seconds) at `now` under `bound`; negative gives back.
    pub fn record(&mut self, value: f64, bound: f64, now: Instant, config: &QuotaWindow) {
        self.refill(bound, now, config);
        self.tokens -= value;
        let missing = (config.max_in_window(bound) - self.tokens).max(0.0);
        self.full_at = self.updated + seconds(missing / bound);
    }

    /// Whether the bucket is full again at `now`: the sensor can be dropped.
    pub fn is_idle(&self, now: Instant) -> bool {
        now >= self.full_at
    }

    /// Records `value` and returns how long the client must wait for its bucket to come
    /// back to zero (zero when it is not below), capped at `cap`.
    pub fn record_and_throttle(
        &mut self,
        value: f64,
        bound: f64,
        now: Instant,
        config: &QuotaWindow,
        cap: Duration,
    ) -> Duration {
        self.record(value, bound, now, config);
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        seconds(-self.tokens / bound).min(cap)
    }
}

/// A wait in seconds as a duration; what no bound could mean (negative, NaN, past a
/// billion seconds) is clamped rather than a panic. Bounds are validated positive before
/// they are stored, so this is the last line, not the first.
fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.clamp(0.0, 1e9)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_new_client_may_burst_samples_minus_one_windows() {
        let config = QuotaWindow::default();
        let start = Instant::now();
        let mut rate = Rate::new(start);
        // 10 windows' worth at 1 000/s is within the bound...
        let throttle = rate.record_and_throttle(10_000.0, 1_000.0, start, &config, 60 * SECOND);
        assert_eq!(throttle, Duration::ZERO);
        // ... a second more is not, and the wait is what the bound takes to pay it back.
        let throttle = rate.record_and_throttle(1_000.0, 1_000.0, start, &config, 60 * SECOND);
        assert_eq!(throttle, SECOND);
    }

    /// A client sending as fast as its throttles let it, in requests of `request` bytes
    /// against `bound` per second: the rate it achieves after its burst (from its first
    /// request after the burst to its last, as a test of a real client measures).
    fn achieved(request: f64, bound: f64, config: QuotaWindow, seconds: u32) -> f64 {
        let start = Instant::now();
        let mut rate = Rate::new(start);
        let mut now = start;
        let mut after_burst = Vec::new();
        while now < start + seconds * SECOND {
            if now >= start + config.span() {
                after_burst.push(now);
            }
            let throttle = rate.record_and_throttle(request, bound, now, &config, Duration::MAX);
            now += throttle.max(Duration::from_micros(500));
        }
        let span = after_burst[after_burst.len() - 1].duration_since(after_burst[0]);
        (after_burst.len() - 1) as f64 * request / span.as_secs_f64()
    }

    #[test]
    fn a_client_that_waits_its_throttle_holds_its_bound() {
        for (request, bound) in [(16.0 * 1024.0, 256.0 * 1024.0), (100e3, 50e3), (1e3, 1e6)] {
            for samples in [2, 3, 11] {
                let config = QuotaWindow {
                    samples,
                    window: SECOND,
                };
                let achieved = achieved(request, bound, config, 30);
                assert!(
                    (achieved - bound).abs() / bound < 0.02,
                    "{achieved} against {bound} with {request}-byte requests, {samples} samples"
                );
            }
        }
    }

    #[test]
    fn an_idle_bucket_refills_to_its_burst_and_no_further() {
        let config = QuotaWindow::default();
        let start = Instant::now();
        let mut rate = Rate::new(start);
        rate.record(30_000.0, 1_000.0, start, &config);
        assert!(!rate.is_idle(start + 10 * SECOND));
        let later = start + 40 * SECOND;
        assert!(rate.is_idle(later));
        // A full bucket again: a burst, then throttled.
        let cap = 60 * SECOND;
        assert_eq!(
            rate.record_and_throttle(10_000.0, 1_000.0, later, &config, cap),
            Duration::ZERO
        );
        assert!(rate.record_and_throttle(1.0, 1_000.0, later, &config, cap) > Duration::ZERO);
    }

    #[test]
    fn a_record_given_back_frees_its_share() {
        let config = QuotaWindow::default();
        let start = Instant::now();
        let mut rate = Rate::new(start);
        let cap = 60 * SECOND;
        assert!(rate.record_and_throttle(20_000.0, 1_000.0, start, &config, cap) > Duration::ZERO);
        rate.record(-20_000.0, 1_000.0, start, &config);
        assert_eq!(
            rate.record_and_throttle(5_000.0, 1_000.0, start, &config, cap),
            Duration::ZERO
        );
    }

    #[test]
    fn the_throttle_is_capped() {
        let config = QuotaWindow::default();
        let start = Instant::now();
        let mut rate = Rate::new(start);
        let throttle = rate.record_and_throttle(1e12, 1.0, start, &config, SECOND);
        assert_eq!(throttle, SECOND);
    }
}
