//! Client quotas: produce and fetch byte rates and request time per user and client id,
//! enforced by each shard as Kafka enforces them per broker (each shard is a broker to
//! clients), with `throttle_time_ms` in the response and the connection muted meanwhile.
//!
//! A tour:
//! - [`store`] holds the quotas an operator set (DescribeClientQuotas / AlterClientQuotas,
//!   `spate quota`), kept in the metadata image (`MetadataRecord::ClientQuota`) so that every
//!   shard and node applies the same ones, and Kafka's precedence among them.
//! - [`rate`] measures a client's use against its quota and turns the excess into a
//!   throttle time (a token bucket, as KIP-599's; why not Kafka's sampled windows is there).
//! - [`ShardQuotas`] is one shard's sensors: one per quota entity in use, so that a client's
//!   connections to this shard share their quota.
//!
//! How a request is throttled (KIP-219): its bytes or time are recorded; if the entity's
//! rate is over its bound, the response goes out at once with `throttle_time_ms` and the
//! connection reads nothing more until that time has passed (`connection::serve_stream`),
//! so the client is held back whether or not it honours the field. A throttled fetch is
//! answered empty and its bytes are taken back, as Kafka does, and a consumer's fetch is
//! capped to what its quota allows in one window. Replication (follower fetches) is exempt.
//! A shard with no quota of a kind pays one check per request for it.

pub mod rate;
pub mod store;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use rate::{QuotaWindow, Rate};
pub use store::{QuotaKey, QuotaStore};

/// Who a request's quota is looked up for.
#[derive(Clone, Copy, Debug)]
pub struct Who<'a> {
    /// The principal's name (`alice` for `User:alice`).
    pub user: &'a str,
    /// The client id, empty when the client sent none.
    pub client_id: &'a str,
}

impl<'a> Who<'a> {
    /// From a principal (`User:alice`) and a client id.
    pub fn new(principal: &'a str, client_id: Option<&'a str>) -> Who<'a> {
        Who {
            user: principal.strip_prefix("User:").unwrap_or(principal),
            client_id: client_id.unwrap_or(""),
        }
    }
}

/// A sensor's identity: the quota key, and the names the quota that binds it is shared by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SensorKey {
    key: QuotaKey,
    user: Option<String>,
    client_id: Option<String>,
}

/// Sensors are dropped once their bucket is full again, when there are more than this.
const SENSORS_BEFORE_PURGE: usize = 1024;

/// One shard's quota sensors.
pub struct ShardQuotas {
    window: QuotaWindow,
    sensors: RefCell<HashMap<SensorKey, Rate>>,
    /// The sensor count above which idle sensors are purged: client ids are the client's
    /// to choose, so the map must not grow with every one ever seen.
    purge_above: Cell<usize>,
}

impl ShardQuotas {
    /// No sensors yet.
    pub fn new(window: QuotaWindow) -> ShardQuotas {
        ShardQuotas {
            window,
            sensors: RefCell::new(HashMap::new()),
            purge_above: Cell::new(SENSORS_BEFORE_PURGE),
        }
    }

    /// How rates are sampled.
    pub fn window(&self) -> &QuotaWindow {
        &self.window
    }

    /// Records `value` against the `key` quota that binds `who`, and returns how long its
    /// connection must now wait (zero when within quota, or when no quota binds it).
    pub fn record(
        &self,
        store: &QuotaStore,
        key: QuotaKey,
        who: Who<'_>,
        value: f64,
        now: Instant,
    ) -> Duration {
        let Some(resolved) = store.resolve(key, who.user, who.client_id) else {
            return Duration::ZERO;
        };
        // Kafka bounds a request-time throttle by one window. A byte-rate throttle is
        // bounded by the whole span: the bucket keeps what the client still owes, so its
        // next request is throttled again, while a muted connection whose client has gone
        // notices within the span instead of holding its descriptor for days.
        let cap = match key {
            QuotaKey::RequestPercentage => self.window.window,
            _ => self.window.span(),
        };
        self.with_sensor(key, resolved.sensor, who, now, |rate, window| {
            rate.record_and_throttle(value, resolved.bound, now, window, cap)
        })
    }

    /// Takes back `value` recorded by [`Self::record`] (a throttled fetch sends nothing).
    pub fn unrecord(&self, store: &QuotaStore, key: QuotaKey, who: Who<'_>, value: f64) {
        let now = Instant::now();
        if let Some(resolved) = store.resolve(key, who.user, who.client_id) {
            self.with_sensor(key, resolved.sensor, who, now, |rate, window| {
                rate.record(-value, resolved.bound, now, window)
            });
        }
    }

    /// The most a consumer bound by a fetch quota may be sent in one response (Kafka caps
    /// the fetch's max_bytes so): `None` when no quota binds it.
    pub fn fetch_cap(&self, store: &QuotaStore, who: Who<'_>) -> Option<usize> {
        let resolved = store.resolve(QuotaKey::ConsumerByteRate, who.user, who.client_id)?;
        Some(
            self.window
                .max_in_window(resolved.bound)
                .min(i32::MAX as f64) as usize,
        )
    }

    fn with_sensor<T>(
        &self,
        key: QuotaKey,
        scope: store::SensorScope,
        who: Who<'_>,
        now: Instant,
        act: impl FnOnce(&mut Rate, &QuotaWindow) -> T,
    ) -> T {
        let sensor = SensorKey {
            key,
            user: scope.by_user.then(|| who.user.to_string()),
            client_id: scope.by_client_id.then(|| who.client_id.to_string()),
        };
        let mut sensors = self.sensors.borrow_mut();
        if sensors.len() > self.purge_above.get() {
            // A full bucket is what a new sensor starts with: dropping it changes nothing.
            sensors.retain(|_, rate| !rate.is_idle(now));
            sensors.shrink_to_fit();
            self.purge_above
                .set((sensors.len() * 2).max(SENSORS_BEFORE_PURGE));
        }
        let rate = sensors.entry(sensor).or_insert_with(|| Rate::new(now));
        act(rate, &self.window)
    }

    /// Sensors held (for tests and stats).
    pub fn sensor_count(&self) -> usize {
        self.sensors.borrow().len()
    }
}

/// A future that adds up the time spent polling it: a request's own time on the shard,
/// without the time it waited (for a controller, a disk or a long poll). What a
/// request_percentage quota measures.
pub struct Timed<F> {
    inner: Pin<Box<F>>,
    busy: Duration,
}

impl<F: Future> Timed<F> {
    /// Times `inner`.
    pub fn new(inner: F) -> Timed<F> {
        Timed {
            inner: Box::pin(inner),
            busy: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = Instant::now();
        let poll = self.inner.as_mut().poll(cx);
        self.busy += start.elapsed();
        poll.map(|output| (output, self.busy))
    }
}

#[cfg(test)]
mod tests {
    use super::store::{EntityName, QuotaEntity};
    use super::*;

    fn store_with(entity: QuotaEntity, key: QuotaKey, value: f64) -> QuotaStore {
        let mut store = QuotaStore::default();
        store.set(&entity, key, Some(value));
        store
    }

    #[test]
    fn a_users_connections_share_one_sensor_and_others_are_free() {
        let store = store_with(
            QuotaEntity {
                user: Some(EntityName::Name("alice".into())),
                client_id: None,
            },
            QuotaKey::ProducerByteRate,
            1_000.0,
        );
        let quotas = ShardQuotas::new(QuotaWindow::default());
        let now = Instant::now();
        let alice_a = Who::new("User:alice", Some("a"));
        let alice_b = Who::new("User:alice", Some("b"));
        let bob = Who::new("User:bob", Some("a"));
        let produce = QuotaKey::ProducerByteRate;
        assert_eq!(
            quotas.record(&store, produce, alice_a, 6_000.0, now),
            Duration::ZERO
        );
        assert!(quotas.record(&store, produce, alice_b, 6_000.0, now) > Duration::ZERO);
        assert_eq!(
            quotas.record(&store, produce, bob, 1e9, now),
            Duration::ZERO
        );
        assert_eq!(quotas.sensor_count(), 1);
        assert_eq!(quotas.fetch_cap(&store, alice_a), None);
    }

    #[test]
    fn a_default_client_quota_gives_each_client_id_its_own_sensor() {
        let store = store_with(
            QuotaEntity {
                user: None,
                client_id: Some(EntityName::Default),
            },
            QuotaKey::ConsumerByteRate,
            1_000.0,
        );
        let quotas = ShardQuotas::new(QuotaWindow::default());
        let now = Instant::now();
        let fetch = QuotaKey::ConsumerByteRate;
        for client in ["a", "b", "c"] {
            let who = Who::new("User:ANONYMOUS", Some(client));
            assert_eq!(
                quotas.record(&store, fetch, who, 10_000.0, now),
                Duration::ZERO
            );
            assert_eq!(quotas.fetch_cap(&store, who), Some(10_000));
        }
        assert_eq!(quotas.sensor_count(), 3);
    }

    #[test]
    fn idle_sensors_are_purged_when_there_are_many() {
        let store = store_with(
            QuotaEntity {
                user: None,
                client_id: Some(EntityName::Default),
            },
            QuotaKey::ProducerByteRate,
            1_000.0,
        );
        let quotas = ShardQuotas::new(QuotaWindow::default());
        let start = Instant::now();
        for client in 0..=SENSORS_BEFORE_PURGE {
            let client = client.to_string();
            let who = Who::new("User:ANONYMOUS", Some(&client));
            quotas.record(&store, QuotaKey::ProducerByteRate, who, 1.0, start);
        }
        let later = start + QuotaWindow::default().span();
        let who = Who::new("User:ANONYMOUS", Some("new"));
        quotas.record(&store, QuotaKey::ProducerByteRate, who, 1.0, later);
        assert_eq!(quotas.sensor_count(), 1);
    }

    #[test]
    fn timed_counts_polls_not_waits() {
        let (value, busy) = futures_lite::future::block_on(Timed::new(async {
            std::thread::sleep(Duration::from_millis(20));
            futures_lite::future::yield_now().await;
            7
        }));
        assert_eq!(value, 7);
        assert!(busy >= Duration::from_millis(20), "{busy:?}");
    }
}
