//! `openraft::AsyncRuntime` on glommio's thread-local executor.
//!
//! Modeled on `openraft-rt-compio`: tasks go to `glommio::spawn_local` (detached, so that dropping a
//! join handle does not cancel the task, which is what openraft expects from tokio), timers are
//! `glommio::timer::Timer`, the clock is `std::time::Instant`. Channels and the mutex are
//! runtime-agnostic crates (flume, futures, see::unsync) because openraft only needs them to be
//! wakeable from the same thread. Requires openraft's `single-threaded` feature: nothing here is
//! `Send`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use openraft::rt::{
    mpsc::{Mpsc, MpscReceiver, MpscSender, MpscWeakSender, SendError, TryRecvError},
    mutex, oneshot, watch, AsyncRuntime, OptionalSend, OptionalSync,
};

/// Zero-sized marker type naming the glommio runtime in `RaftTypeConfig`.
#[derive(Debug, Default)]
pub struct GlommioRuntime;

/// A glommio task that ended without a value: it was cancelled or it panicked.
#[derive(Debug)]
pub struct TaskLost;

impl fmt::Display for TaskLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "glommio task was cancelled or panicked")
    }
}

/// Join handle over a detached glommio task; `None` from glommio means the task was lost.
pub struct GlommioJoinHandle<T>(glommio::task::JoinHandle<T>);

impl<T> Future for GlommioJoinHandle<T> {
    type Output = Result<T, TaskLost>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|value| value.ok_or(TaskLost))
    }
}

/// The deadline passed before the future finished.
#[derive(Debug)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline elapsed")
    }
}

pin_project_lite::pin_project! {
    /// A future raced against a glommio timer; the future is polled first so that a result that
    /// is ready at the deadline still wins.
    pub struct GlommioTimeout<F> {
        #[pin]
        future: F,
        timer: Timer,
    }
}

impl<F: Future> Future for GlommioTimeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(value) = this.future.poll(cx) {
            return Poll::Ready(Ok(value));
        }
        match Pin::new(this.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = TaskLost;
    type JoinHandle<T: OptionalSend + 'static> = GlommioJoinHandle<T>;
    type Sleep = SleepTimer;
    type Instant = Instant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = GlommioTimeout<T>;
    type ThreadLocalRng = rand::rngs::ThreadRng;
    type Mpsc = FlumeMpsc;
    type Watch = SeeWatch;
    type Oneshot = FuturesOneshot;
    type Mutex<T: OptionalSend + 'static> = FuturesMutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        GlommioJoinHandle(glommio::spawn_local(future).detach())
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        SleepTimer(Timer::new(duration))
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        SleepTimer(Timer::new(until(deadline)))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        GlommioTimeout {
            future,
            timer: Timer::new(duration),
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        GlommioTimeout {
            future,
            timer: Timer::new(until(deadline)),
        }
    }

    fn is_panic(_: &Self::JoinError) -> bool {
        // glommio does not distinguish panic from cancellation in JoinHandle.
        true
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rand::rng()
    }

    fn new(_threads: usize) -> Self {
        GlommioRuntime
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        // Only used by openraft's own test helpers; Spate always runs inside its executor.
        let executor = glommio::LocalExecutor::default();
        executor.run(future)
    }
}

/// `glommio::timer::Timer` resolves to an `Instant`; openraft wants `()`.
pub struct SleepTimer(Timer);

impl Future for SleepTimer {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

// ---- mpsc: flume (works on one thread; bounded as openraft asks) ----

/// Bounded MPSC channel family backed by flume.
pub struct FlumeMpsc;
/// Sending half.
pub struct FlumeSender<T>(flume::Sender<T>);
/// Weak sending half.
pub struct FlumeWeakSender<T>(flume::WeakSender<T>);
/// Receiving half.
pub struct FlumeReceiver<T>(flume::Receiver<T>);

impl<T> Clone for FlumeSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}
impl<T> Clone for FlumeWeakSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl Mpsc for FlumeMpsc {
    type Sender<T: OptionalSend> = FlumeSender<T>;
    type Receiver<T: OptionalSend> = FlumeReceiver<T>;
    type WeakSender<T: OptionalSend> = FlumeWeakSender<T>;

    fn channel<T: OptionalSend>(buffer: usize) -> (Self::Sender<T>, Self::Receiver<T>) {
        let (sender, receiver) = flume::bounded(buffer);
        (FlumeSender(sender), FlumeReceiver(receiver))
    }
}

impl<T: OptionalSend> MpscSender<FlumeMpsc, T> for FlumeSender<T> {
    async fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.0
            .send_async(msg)
            .await
            .map_err(|error| SendError(error.into_inner()))
    }
    fn downgrade(&self) -> FlumeWeakSender<T> {
        FlumeWeakSender(self.0.downgrade())
    }
}

impl<T: OptionalSend> MpscWeakSender<FlumeMpsc, T> for FlumeWeakSender<T> {
    fn upgrade(&self) -> Option<FlumeSender<T>> {
        self.0.upgrade().map(FlumeSender)
    }
}

impl<T: OptionalSend> MpscReceiver<T> for FlumeReceiver<T> {
    async fn recv(&mut self) -> Option<T> {
        self.0.recv_async().await.ok()
    }
    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.0.try_recv().map_err(|error| match error {
            flume::TryRecvError::Empty => TryRecvError::Empty,
            flume::TryRecvError::Disconnected => TryRecvError::Disconnected,
        })
    }
}

// ---- oneshot: futures::channel::oneshot ----

/// Oneshot channel family backed by `futures::channel::oneshot`.
pub struct FuturesOneshot;
/// Sending half.
pub struct FuturesOneshotSender<T>(futures::channel::oneshot::Sender<T>);

impl oneshot::Oneshot for FuturesOneshot {
    type Sender<T: OptionalSend> = FuturesOneshotSender<T>;
    type Receiver<T: OptionalSend> = futures::channel::oneshot::Receiver<T>;
    type ReceiverError = futures::channel::oneshot::Canceled;

    fn channel<T: OptionalSend>() -> (Self::Sender<T>, Self::Receiver<T>) {
        let (sender, receiver) = futures::channel::oneshot::channel();
        (FuturesOneshotSender(sender), receiver)
    }
}

impl<T: OptionalSend> oneshot::OneshotSender<T> for FuturesOneshotSender<T> {
    fn send(self, value: T) -> Result<(), T> {
        self.0.send(value)
    }
}

// ---- mutex: futures::lock::Mutex ----

/// Async mutex backed by `futures::lock::Mutex`.
pub struct FuturesMutex<T>(futures::lock::Mutex<T>);

impl<T: OptionalSend + 'static> mutex::Mutex<T> for FuturesMutex<T> {
    type Guard<'a> = futures::lock::MutexGuard<'a, T>;

    fn new(value: T) -> Self {
        FuturesMutex(futures::lock::Mutex::new(value))
    }
    fn lock(&self) -> impl Future<Output = Self::Guard<'_>> + OptionalSend {
        self.0.lock()
    }
}

// ---- watch: see::unsync (a !Send watch channel) ----

/// Watch channel family backed by `see::unsync`.
pub struct SeeWatch;
/// Sending half.
pub struct SeeSender<T>(see::unsync::Sender<T>);
/// Receiving half.
pub struct SeeReceiver<T>(see::unsync::Receiver<T>);
/// Borrowed current value.
pub struct SeeRef<'a, T>(see::unsync::Guard<'a, T>);

impl watch::Watch for SeeWatch {
    type Sender<T: OptionalSend + OptionalSync> = SeeSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = SeeReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = SeeRef<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        let (sender, receiver) = see::unsync::channel(init);
        (SeeSender(sender), SeeReceiver(receiver))
    }
}

impl<T> Clone for SeeSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}
impl<T> Clone for SeeReceiver<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: OptionalSend + OptionalSync> watch::WatchSender<SeeWatch, T> for SeeSender<T> {
    fn send(&self, value: T) -> Result<(), watch::SendError<T>> {
        self.0
            .send(value)
            .map_err(|see::error::SendError::ChannelClosed(value)| watch::SendError(value))
    }
    fn send_if_modified<F: FnOnce(&mut T) -> bool>(&self, modify: F) -> bool {
        self.0.send_if_modified(modify)
    }
    fn borrow_watched(&self) -> SeeRef<'_, T> {
        SeeRef(self.0.borrow())
    }
    fn subscribe(&self) -> SeeReceiver<T> {
        SeeReceiver(self.0.subscribe())
    }
}

impl<T: OptionalSend + OptionalSync> watch::WatchReceiver<SeeWatch, T> for SeeReceiver<T> {
    async fn changed(&mut self) -> Result<(), watch::RecvError> {
        self.0.changed().await.map_err(|_| watch::RecvError(()))?;
        self.0.mark_unchanged();
        Ok(())
    }
    fn borrow_watched(&self) -> SeeRef<'_, T> {
        SeeRef(self.0.borrow())
    }
    fn borrow_and_update(&mut self) -> SeeRef<'_, T> {
        SeeRef(self.0.borrow_and_update())
    }
}

impl<T> std::ops::Deref for SeeRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
