//! A watchdog against lost wake-ups: an executor that sleeps past its work is nudged awake.
//!
//! glommio puts an idle executor to sleep in `io_uring_enter` on its main ring, linked to its
//! latency ring by a poll on that ring's descriptor, and its blocking-thread pool wakes it
//! through an eventfd. On the 6.18 kernel of our CI machines a storage test was seen asleep
//! there for ten minutes with its work done: the completion that should have woken it had been
//! posted, and interrupting the system call (attaching a debugger was enough) let the test
//! finish at once. A broker shard in that state stops acknowledging produces until some other
//! event happens to wake it; a quiet shard may wait forever.
//!
//! [`guarded`] wraps an executor's main future. While it runs, a task of the executor bumps a
//! beat every [`BEAT`], and one process-wide thread checks the beats: an executor whose beat
//! has not moved for [`STALE`] gets a signal (a no-op handler, `SA_RESTART`), which returns
//! its `io_uring_enter` with `EINTR`; glommio then goes round its loop and finds what was
//! waiting. A healthy executor is never signalled; a busy one (a task running for longer than
//! [`STALE`]) may be, harmlessly: other system calls restart. [`nudges`] counts the signals.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

/// How often a guarded executor's beat task runs.
pub const BEAT: Duration = Duration::from_millis(50);
/// How long a beat may stand still before the executor is signalled.
pub const STALE: Duration = Duration::from_millis(500);

static NUDGES: AtomicU64 = AtomicU64::new(0);
static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());
static START: Once = Once::new();

struct Watched {
    thread: libc::pthread_t,
    beat: Arc<AtomicU64>,
    /// The beat when last checked, and how many checks in a row saw it unchanged.
    seen: u64,
    still: u32,
    /// How many times this executor was signalled.
    nudged: u64,
}

/// The watched executors; a panic while holding the lock leaves the list usable.
fn watched() -> std::sync::MutexGuard<'static, Vec<Watched>> {
    WATCHED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many times the watchdog has signalled an executor since the process started.
pub fn nudges() -> u64 {
    NUDGES.load(Ordering::Relaxed)
}

/// Runs `future` on the current glommio executor under the watchdog. Call it as the
/// executor's main future (`LocalExecutorBuilder::spawn(|| guarded(...))`, or `run`).
pub async fn guarded<T>(future: impl Future<Output = T>) -> T {
    let _registration = Registration::new();
    future.await
}

/// The executor's entry in [`WATCHED`] and its beat task; dropping it (on the executor's
/// thread, before the thread ends) removes the entry under the lock the watchdog signals under,
/// so no signal can reach a thread that has gone.
struct Registration {
    thread: libc::pthread_t,
    beat_task: Option<glommio::task::JoinHandle<()>>,
}

impl Registration {
    fn new() -> Self {
        START.call_once(start_watchdog);
        let beat = Arc::new(AtomicU64::new(0));
        let beat_task = glommio::spawn_local({
            let beat = beat.clone();
            async move {
                loop {
                    beat.fetch_add(1, Ordering::Relaxed);
                    glommio::timer::sleep(BEAT).await;
                }
            }
        })
        .detach();
        // SAFETY: pthread_self has no preconditions.
        let thread = unsafe { libc::pthread_self() };
        watched().push(Watched {
            thread,
            beat,
            seen: 0,
            still: 0,
            nudged: 0,
        });
        Self {
            thread,
            beat_task: Some(beat_task),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(task) = self.beat_task.take() {
            task.cancel();
        }
        let mut watched = watched();
        // SAFETY: pthread_equal only compares the two identifiers.
        watched.retain(|entry| unsafe { libc::pthread_equal(entry.thread, self.thread) } == 0);
    }
}

fn nudge_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

extern "C" fn on_nudge(_signal: libc::c_int) {}

fn start_watchdog() {
    // SAFETY: the handler does nothing (async-signal-safe); the struct is fully initialised.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_nudge as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(nudge_signal(), &action, std::ptr::null_mut());
    }
    let checks_until_stale = (STALE.as_millis() / BEAT.as_millis()).max(1) as u32;
    let spawned = std::thread::Builder::new()
        .name("spate-wakeup".into())
        .spawn(move || loop {
            std::thread::sleep(BEAT);
            let mut watched = watched();
            for entry in watched.iter_mut() {
                let beat = entry.beat.load(Ordering::Relaxed);
                if beat != entry.seen {
                    entry.seen = beat;
                    entry.still = 0;
                    continue;
                }
                entry.still += 1;
                if entry.still >= checks_until_stale {
                    entry.still = 0;
                    entry.nudged += 1;
                    NUDGES.fetch_add(1, Ordering::Relaxed);
                    // SAFETY: the thread is alive: its Registration removes the entry under
                    // this lock before it ends.
                    unsafe { libc::pthread_kill(entry.thread, nudge_signal()) };
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no wake-up watchdog: executors run unguarded");
    }
}

/// How many times the executor of the calling thread has been signalled.
#[cfg(test)]
fn nudged_here() -> u64 {
    // SAFETY: pthread_self and pthread_equal have no preconditions.
    let me = unsafe { libc::pthread_self() };
    let watched = watched();
    watched
        .iter()
        .find(|entry| unsafe { libc::pthread_equal(entry.thread, me) } != 0)
        .map_or(0, |entry| entry.nudged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A thread asleep in a system call that only a signal can end, as an executor whose
    /// wake-up was lost: the watchdog's signal ends it.
    // crate::testing::run guards the executors of every storage test.
    #[test]
    fn an_executor_stuck_in_a_system_call_is_signalled_out_of_it() {
        crate::testing::run(async {
            let started = Instant::now();
            // nanosleep(2) is never restarted after a handler, whatever SA_RESTART says: it
            // returns early only if the watchdog signalled this thread (the beat task cannot
            // run while the thread is blocked here).
            let long = libc::timespec {
                tv_sec: 30,
                tv_nsec: 0,
            };
            // SAFETY: both pointers are valid for the call (the remainder may be null).
            let returned = unsafe { libc::nanosleep(&long, std::ptr::null_mut()) };
            assert_eq!(returned, -1, "slept the full 30 s: no nudge");
            assert_eq!(nudged_here(), 1);
            assert!(nudges() >= 1);
            assert!(started.elapsed() >= STALE);
        });
    }

    #[test]
    fn an_executor_that_keeps_beating_is_left_alone() {
        crate::testing::run(async {
            let started = Instant::now();
            while started.elapsed() < STALE * 4 {
                glommio::timer::sleep(BEAT).await;
            }
            assert_eq!(nudged_here(), 0);
        });
    }
}
