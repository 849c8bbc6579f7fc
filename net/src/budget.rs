//! A memory budget for requests being received and answered, shared by the connections of one
//! thread (Kafka's `queued.max.request.bytes`).
//!
//! A [`crate::FrameReader`] given a budget reserves a large frame's announced size from it
//! before it reads or allocates the frame's body. When the budget is spent the reservation
//! waits, and so the connection stops reading its socket: back-pressure reaches the client
//! through TCP instead of the broker allocating what clients claim. The caller keeps the
//! [`Reservation`] until the request is answered; dropping it gives the bytes back and wakes
//! the waiting readers.
//!
//! A frame larger than the whole budget reserves the whole budget, so it waits for every
//! other large request to finish, but never forever.
//!
//! Concurrency contract: thread-local (`Rc`, `Cell`); one budget per shard.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Bytes that the large requests of one thread may hold at once.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    in_use: Cell<usize>,
    /// Readers waiting for bytes, in the order they asked. All are woken when bytes come
    /// back; each takes its turn in [`MemoryBudget::reserve`].
    waiting: RefCell<Vec<Waker>>,
    /// Reservations that had to wait (for the statistics).
    waited: Cell<u64>,
}

/// Bytes taken from a [`MemoryBudget`], given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Rc<MemoryBudget>,
    bytes: usize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes (at least 1).
    pub fn new(limit: usize) -> Rc<MemoryBudget> {
        Rc::new(MemoryBudget {
            limit: limit.max(1),
            in_use: Cell::new(0),
            waiting: RefCell::new(Vec::new()),
            waited: Cell::new(0),
        })
    }

    /// The budget's size in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> usize {
        self.in_use.get()
    }

    /// How many reservations have had to wait for bytes so far.
    pub fn waited(&self) -> u64 {
        self.waited.get()
    }

    /// Takes `bytes` (at most the whole budget), waiting until they are free.
    pub async fn reserve(self: &Rc<Self>, bytes: usize) -> Reservation {
        let bytes = bytes.min(self.limit);
        let mut counted = false;
        poll_fn(|context| {
            if self.in_use.get() + bytes <= self.limit {
                self.in_use.set(self.in_use.get() + bytes);
                return Poll::Ready(());
            }
            if !counted {
                counted = true;
                self.waited.set(self.waited.get() + 1);
            }
            self.waiting.borrow_mut().push(context.waker().clone());
            Poll::Pending
        })
        .await;
        Reservation {
            budget: self.clone(),
            bytes,
        }
    }
}

impl Reservation {
    /// The bytes this reservation holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let budget = &self.budget;
        budget.in_use.set(budget.in_use.get() - self.bytes);
        // Wake every waiter: each checks whether its size fits now. Waiters are few (one per
        // connection blocked on a large frame), and wakers of readers that went away are
        // harmless.
        let waiting = std::mem::take(&mut *budget.waiting.borrow_mut());
        for waker in waiting {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn a_reservation_waits_until_enough_bytes_come_back() {
        block_on(async {
            let budget = MemoryBudget::new(100);
            let first = budget.reserve(60).await;
            let second = budget.reserve(40).await;
            assert_eq!(budget.in_use(), 100);
            let mut third = Box::pin(budget.reserve(50));
            assert!(poll_once(&mut third).await.is_none());
            drop(second); // 40 free: not enough
            assert!(poll_once(&mut third).await.is_none());
            drop(first);
            let third = poll_once(&mut third).await.expect("100 bytes are free");
            assert_eq!(
                (third.bytes(), budget.in_use(), budget.waited()),
                (50, 50, 1)
            );
        });
    }

    #[test]
    fn a_frame_larger_than_the_budget_takes_all_of_it() {
        block_on(async {
            let budget = MemoryBudget::new(100);
            let all = budget.reserve(1_000).await;
            assert_eq!((all.bytes(), budget.in_use()), (100, 100));
            drop(all);
            assert_eq!(budget.in_use(), 0);
        });
    }
}
