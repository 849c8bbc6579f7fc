//! A single-value channel between tasks of one shard (`!Send`): a held JoinGroup or SyncGroup
//! waits on the receiving end until the group's state machine answers it, a controller call
//! until the controller does.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Shared<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_dropped: bool,
}

/// Sends the one value.
pub struct Sender<T>(Rc<RefCell<Shared<T>>>);

/// Receives it; resolves to `None` if the sender was dropped without sending.
pub struct Receiver<T>(Rc<RefCell<Shared<T>>>);

/// A connected pair.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Rc::new(RefCell::new(Shared {
        value: None,
        waker: None,
        sender_dropped: false,
    }));
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Delivers the value and wakes the receiver.
    pub fn send(self, value: T) {
        let waker = {
            let mut shared = self.0.borrow_mut();
            shared.value = Some(value);
            shared.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut shared = self.0.borrow_mut();
            shared.sender_dropped = true;
            shared.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<T>> {
        let mut shared = self.0.borrow_mut();
        if let Some(value) = shared.value.take() {
            return Poll::Ready(Some(value));
        }
        if shared.sender_dropped {
            return Poll::Ready(None);
        }
        shared.waker = Some(context.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;

    #[test]
    fn delivers_once_or_reports_a_dropped_sender() {
        let (sender, receiver) = super::channel();
        sender.send(5);
        assert_eq!(block_on(receiver), Some(5));
        let (sender, receiver) = super::channel::<u8>();
        drop(sender);
        assert_eq!(block_on(receiver), None);
    }
}
