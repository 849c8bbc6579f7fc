//! When each request is meant to leave: an open-loop schedule fixed in advance at a rate, or
//! "now" when there is no rate. Latency runs from the intended time, so a broker that falls
//! behind is charged for the queueing it causes (no coordinated omission).

use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

/// Where every actor of a run waits, once connected and with its requests encoded, so the
/// run's clock starts only when all are ready: setting up a thousand connections must not
/// eat into the warm-up or be charged to the first requests' latency.
pub struct StartGate {
    ready: Barrier,
    go: Barrier,
    start: OnceLock<Instant>,
}

impl StartGate {
    /// A gate for `actors` actors and the run's own thread.
    pub fn new(actors: usize) -> StartGate {
        StartGate {
            ready: Barrier::new(actors + 1),
            go: Barrier::new(actors + 1),
            start: OnceLock::new(),
        }
    }

    /// An actor is ready; returns the run's start once every actor is.
    pub fn actor_ready(&self) -> Instant {
        self.ready.wait();
        self.go.wait();
        *self
            .start
            .get()
            .expect("the run sets its start before opening the gate")
    }

    /// The run's thread: waits for every actor, then starts the clock with `begin` and
    /// lets the actors go.
    pub fn open<T>(&self, begin: impl FnOnce() -> (Instant, T)) -> T {
        self.ready.wait();
        let (start, value) = begin();
        let _ = self.start.set(start);
        self.go.wait();
        value
    }
}

/// The send times of one connection.
#[derive(Clone, Debug)]
pub struct Schedule {
    interval: Option<Duration>,
    next: Instant,
}

impl Schedule {
    /// `requests_per_s` evenly spaced from `first`, or as fast as possible with `None`.
    pub fn new(first: Instant, requests_per_s: Option<f64>) -> Schedule {
        Schedule {
            interval: requests_per_s.map(|rate| Duration::from_secs_f64(1.0 / rate)),
            next: first,
        }
    }

    /// Whether sends are fixed in advance (open loop).
    pub fn is_open_loop(&self) -> bool {
        self.interval.is_some()
    }

    /// The intended time of the next send: the next slot of the schedule, or now.
    pub fn next_send(&mut self) -> Instant {
        match self.interval {
            Some(interval) => {
                let intended = self.next;
                self.next += interval;
                intended
            }
            None => Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_issues_the_rate_times_the_window() {
        let start = Instant::now();
        let window = Duration::from_secs(2);
        let mut schedule = Schedule::new(start, Some(1000.0));
        assert!(schedule.is_open_loop());
        let mut sends = 0;
        while schedule.next_send() < start + window {
            sends += 1;
        }
        assert_eq!(sends, 2000);
    }

    #[test]
    fn open_loop_does_not_depend_on_how_late_the_caller_is() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, Some(10.0));
        std::thread::sleep(Duration::from_millis(30));
        // Late callers still get the planned slots, so the delay is charged to latency.
        assert_eq!(schedule.next_send(), start);
        assert_eq!(schedule.next_send(), start + Duration::from_millis(100));
    }

    #[test]
    fn gate_gives_every_actor_the_same_start() {
        let gate = std::sync::Arc::new(StartGate::new(3));
        let actors: Vec<_> = (0..3)
            .map(|_| {
                let gate = gate.clone();
                std::thread::spawn(move || gate.actor_ready())
            })
            .collect();
        let start = gate.open(|| {
            let now = Instant::now();
            (now, now)
        });
        for actor in actors {
            assert_eq!(actor.join().unwrap(), start);
        }
    }

    #[test]
    fn closed_loop_sends_now() {
        let before = Instant::now();
        let mut schedule = Schedule::new(before, None);
        assert!(!schedule.is_open_loop());
        assert!(schedule.next_send() >= before);
    }
}
