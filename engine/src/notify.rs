//! A shard-local broadcast notification: each partition fires one when its high watermark
//! advances, and long-polling fetches wait on those of the partitions they read ([`any`]).
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

    /// The current point in this notification's history, to wait for the next one later
    /// ([`any`]) without borrowing the notification meanwhile.
    pub fn generation(&self) -> Generation {
        Generation(self.generation.get())
    }

    /// Ready if notified since `generation`; otherwise registers the waker.
    fn poll_since(&self, generation: Generation, context: &mut Context<'_>) -> Poll<()> {
        if self.generation.get() != generation.0 {
            return Poll::Ready(());
        }
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.iter().any(|waker| waker.will_wake(context.waker())) {
            waiters.push(context.waker().clone());
        }
        Poll::Pending
    }
}

/// A point in a [`Notify`]'s history (see [`Notify::generation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation(u64);

/// Resolves once any of the notifications has fired since its generation.
pub async fn any<'a>(watched: impl Iterator<Item = (&'a Notify, Generation)> + Clone) {
    std::future::poll_fn(|context| {
        let mut ready = false;
        for (notify, generation) in watched.clone() {
            ready |= notify.poll_since(generation, context).is_ready();
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// The future returned by [`Notify::notified`].
pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        self.notify.poll_since(Generation(self.generation), context)
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

    #[test]
    fn any_wakes_on_the_first_of_several() {
        let (first, second) = (Notify::default(), Notify::default());
        let watched = [(&first, first.generation()), (&second, second.generation())];
        let mut waiting = Box::pin(any(watched.iter().copied()));
        assert!(future::block_on(future::poll_once(&mut waiting)).is_none());
        second.notify_all();
        assert!(future::block_on(future::poll_once(&mut waiting)).is_some());
        // A notification before the wait starts counts too.
        first.notify_all();
        let stale = [(&first, Generation(0))];
        assert!(
            future::block_on(future::poll_once(Box::pin(any(stale.iter().copied())))).is_some()
        );
    }
}
