//! Kafka's `max.connections` and `max.connections.per.ip`: a client that opens more
//! connections than the node allows gets each extra one closed at once, with a log line,
//! instead of running the broker out of descriptors.
//!
//! Concurrency contract: one [`ConnectionLimits`] per node, shared by every shard's accept
//! loop. It is touched once when a connection opens and once when it closes, never on the
//! request path: an atomic count, and a mutex-guarded map of counts per address only when a
//! per-address limit is set (Kafka's default is none).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds `max.connections` already.
    NodeFull(usize),
    /// This address holds `max.connections.per.ip` already.
    AddressFull(usize),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NodeFull(limit) => write!(
                formatter,
                "the node holds max.connections ({limit}) connections"
            ),
            Refusal::AddressFull(limit) => write!(
                formatter,
                "this address holds max.connections.per.ip ({limit}) connections"
            ),
        }
    }
}

/// See the module docs.
pub struct ConnectionLimits {
    node_max: usize,
    per_address_max: Option<usize>,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// When a refusal was last logged (refusals come in floods: one line a second).
    last_logged: Mutex<Option<Instant>>,
}

/// One admitted connection; dropping it gives its place back.
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    address: Option<IpAddr>,
}

impl ConnectionLimits {
    /// Limits of `node_max` connections, and `per_address_max` per client address.
    pub fn new(node_max: usize, per_address_max: Option<usize>) -> ConnectionLimits {
        ConnectionLimits {
            node_max,
            per_address_max,
            open: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            last_logged: Mutex::new(None),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// A place for a new connection from `address`, or why there is none.
    pub fn admit(self: &Arc<Self>, address: Option<IpAddr>) -> Result<ConnectionPermit, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.node_max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::NodeFull(self.node_max));
        }
        let counted = match (self.per_address_max, address) {
            (Some(limit), Some(address)) => {
                let mut counts = self
                    .per_address
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let count = counts.entry(address).or_insert(0);
                if *count >= limit {
                    drop(counts);
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    return Err(Refusal::AddressFull(limit));
                }
                *count += 1;
                Some(address)
            }
            _ => None,
        };
        Ok(ConnectionPermit {
            limits: self.clone(),
            address: counted,
        })
    }

    /// Whether a refusal should be logged now (at most once a second).
    pub fn should_log_refusal(&self) -> bool {
        let mut last = self
            .last_logged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(now);
        true
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some(address) = self.address {
            let mut counts = self
                .limits
                .per_address
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(count) = counts.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&address);
                }
            }
        }
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_per_node_and_per_address_and_places_come_back() {
        let limits = Arc::new(ConnectionLimits::new(3, Some(2)));
        let (one, two) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
        );
        let first = limits.admit(one).unwrap();
        let _second = limits.admit(one).unwrap();
        assert_eq!(limits.admit(one).err(), Some(Refusal::AddressFull(2)));
        let _third = limits.admit(two).unwrap();
        assert_eq!(limits.admit(two).err(), Some(Refusal::NodeFull(3)));
        assert_eq!(limits.open(), 3);
        drop(first);
        let _again = limits.admit(one).unwrap();
        assert_eq!(
            limits.open(),
            3,
            "the refused and the dropped ones are not counted"
        );
    }
}
