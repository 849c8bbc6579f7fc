//! A shard-local broadcast notification: long-polling fetches wait on it, and producers
//! fire it when new data becomes durable (and therefore visible).
//!
//! Concurrency contract: owned by one shard (`!Send`); waiters and notifiers are tasks of
//! that shard's executor.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every task that is waiting at the moment [`Notify::notify_all`] is called.
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    /// Wakes all current waiters.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Completes at the next [`Notify::notify_all`] after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
        }
    }
}

/// The future returned by [`Notify::notified`].
pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut waiters = self.notify.waiters.borrow_mut();
        if !waiters.iter().any(|waker| waker.will_wake(context.waker())) {
            waiters.push(context.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn wakes_waiters_registered_before_the_notification() {
        let notify = Notify::default();
        let mut waiting = Box::pin(notify.notified());
        assert!(future::block_on(future::poll_once(&mut waiting)).is_none());
        notify.notify_all();
        assert!(future::block_on(future::poll_once(&mut waiting)).is_some());
    }
}
