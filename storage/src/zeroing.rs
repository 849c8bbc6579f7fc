//! Zeroes ahead of the write position, so that a group commit's `fdatasync` syncs data only.
//!
//! Segments are preallocated with `fallocate` (see `flusher::preallocate`), which gives
//! *unwritten* extents. An O_DIRECT write into an unwritten extent converts it when it
//! completes, and the next `fdatasync` must then write the extent tree and the inode before it
//! flushes the device: on this project's reference host that doubles the cost of every sync
//! (0.78 against 0.38 ms, BENCHMARKS.md, "Produce with ordinary client settings"), and on a
//! journaled ext4 each of those syncs is a journal commit. Blocks that were written once
//! (zeroes will do) need none of that.
//!
//! So, once a segment's data passes half of `LogConfig::zero_ahead_bytes`, a background task
//! of the log writes zeroes over the blocks ahead of the data, in pieces of a sixteenth of
//! that (at most [`PIECE_MAX_BYTES`]), one piece in flight per shard, keeping the zeroed
//! region about `zero_ahead_bytes` ahead. Each piece's conversion is then synced once, by
//! whichever group commit comes next, instead of every group commit syncing the conversion of
//! its own write.
//!
//! **Off by default** (BENCHMARKS.md, "Zeroes ahead"): on the reference host a 16 MiB lead
//! (1 MiB pieces) gave the closed loop of spate-bench's defaults 8% more throughput, 22% less
//! broker CPU per GiB and a 30% lower median, but a 12-58% higher p99, and at half the rate
//! two to five times the p99: the device queues a group commit's flush behind the zeroes in
//! flight, and the host's flush also writes them. Smaller pieces (a 4 MiB lead, 256 KiB) kept
//! the tail but lost the gain: their conversions are synced almost as often as before, and
//! one at a time per shard they fall behind the data.
//!
//! The cost: each busy segment's blocks are written twice (the disk's bandwidth, not its
//! syncs, is then what is spent), which is why quiet partitions (less than half the lead
//! written to the active segment) never zero and `zero_ahead_bytes = 0` turns it off.
//!
//! **The one rule: a zero write never lands on data.** Zeroes go only above the *fence*, the
//! block-aligned end of every data write the flusher has issued to the segment
//! ([`before_write`] raises it before the data write is submitted, synchronously), and a
//! piece is checked against the fence and registered as in flight in the same borrow of the
//! log's state, so no piece can start below a data write once that write is on its way. A
//! data write whose blocks reach into the piece in flight waits for that piece to complete
//! first (the data then overwrites zeroes, never the other way round). A segment roll, a
//! truncation and the close stop the job and wait for its piece before they cut files
//! ([`stop`]), so no zero write can extend a file after it was trimmed.
//!
//! Recovery needs nothing new: zeroes past the logical end read exactly as the unwritten
//! extents they replace. A failed zero write costs only speed: it is logged once and the log
//! stops zeroing.

use crate::log::LogShared;
use crate::segment::{align_up, BLOCK_BYTES};
use crate::Offset;
use futures_lite::future::poll_fn;
use glommio::io::{DmaBuffer, DmaFile};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

/// The largest zero write, whatever the lead. Each piece's extent conversion is synced once
/// by the next group commit, and a group commit's flush may wait behind the piece in flight.
pub(crate) const PIECE_MAX_BYTES: u64 = 1024 * 1024;

/// The zeroing of a log: at most one job, on the segment being written.
#[derive(Default)]
pub(crate) struct ZeroAhead {
    job: Option<Job>,
    /// Woken when a piece completes or the job ends.
    waiters: Vec<Waker>,
    /// A zero write failed: this log zeroes no more (until it is opened again).
    disabled: bool,
}

struct Job {
    segment_base: Offset,
    /// Where the next piece starts, unless the fence is past it.
    next: u64,
    /// Where the job ends.
    end: u64,
    /// Block-aligned end of the data writes issued to the segment: no zeroes below.
    fence: u64,
    /// The piece being written, as `(start, end)`.
    in_flight: Option<(u64, u64)>,
    /// Set by [`stop`]: no further piece.
    stopping: bool,
}

impl ZeroAhead {
    /// The piece being written, as `(start, end)`.
    #[cfg(test)]
    pub fn in_flight(&self) -> Option<(u64, u64)> {
        self.job.as_ref().and_then(|job| job.in_flight)
    }

    /// Whether a job runs (it may be finishing its last piece).
    #[cfg(test)]
    pub fn running(&self) -> bool {
        self.job.is_some()
    }

    fn wake(&mut self) {
        for waker in self.waiters.drain(..) {
            waker.wake();
        }
    }
}

/// Before the data write of `[start, end)` (block-aligned `start`) to `segment_base` is
/// submitted: raises the fence, so that no later piece goes below `end`, then waits until the
/// piece in flight, if it overlaps, has completed.
pub(crate) async fn before_write(shared: &LogShared, segment_base: Offset, start: u64, end: u64) {
    let end = align_up(end);
    poll_fn(|context| {
        let mut state = shared.state.borrow_mut();
        let zeroing = &mut state.zeroing;
        let Some(job) = zeroing
            .job
            .as_mut()
            .filter(|job| job.segment_base == segment_base)
        else {
            return Poll::Ready(());
        };
        job.fence = job.fence.max(end);
        match job.in_flight {
            Some((piece_start, piece_end)) if piece_start < end && start < piece_end => {
                zeroing.waiters.push(context.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    })
    .await;
}

/// After a data write to `segment_base` that ends at `end_position`: starts a job if the
/// segment is busy enough (half the lead written) and the zeroed region is less than half the
/// lead ahead.
pub(crate) fn after_write(
    shared: &Rc<LogShared>,
    file: &Rc<DmaFile>,
    segment_base: Offset,
    end_position: u64,
) {
    let config = shared.config.get();
    let lead = align_up(config.zero_ahead_bytes);
    let fence = align_up(end_position);
    let limit = align_up(config.segment_bytes);
    let mut state = shared.state.borrow_mut();
    if lead == 0 || state.zeroing.disabled || state.zeroing.job.is_some() || fence < lead / 2 {
        return;
    }
    let Some(segment) = state.find_segment_mut(segment_base) else {
        return;
    };
    // Topped up by half the lead at a time. (Topping up a piece at a time, as the data
    // advances, lost 13% of throughput on the reference host: each piece then shares the
    // flush of a few group commits instead of a burst sharing one.)
    if segment.zeroed_to >= fence + lead / 2 {
        return;
    }
    let start = segment.zeroed_to.max(fence);
    let end = (fence + lead).min(limit);
    if start >= end {
        return;
    }
    state.zeroing.job = Some(Job {
        segment_base,
        next: start,
        end,
        fence,
        in_flight: None,
        stopping: false,
    });
    drop(state);
    glommio::spawn_local(run(Rc::downgrade(shared), file.clone(), piece_bytes(lead))).detach();
}

/// A sixteenth of the lead, at most [`PIECE_MAX_BYTES`].
fn piece_bytes(lead: u64) -> u64 {
    align_up((lead / 16).clamp(BLOCK_BYTES, PIECE_MAX_BYTES))
}

/// Stops the job if it zeroes `segment_base` (any segment when `None`) and waits until it has
/// ended: its last piece completed, nothing more will be written.
pub(crate) async fn stop(shared: &LogShared, segment_base: Option<Offset>) {
    poll_fn(|context| {
        let mut state = shared.state.borrow_mut();
        let zeroing = &mut state.zeroing;
        match zeroing.job.as_mut() {
            Some(job) if segment_base.is_none_or(|base| base == job.segment_base) => {
                job.stopping = true;
                zeroing.waiters.push(context.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    })
    .await;
}

/// The job: one piece after another, each above the fence, until the end or a stop.
async fn run(log: Weak<LogShared>, file: Rc<DmaFile>, piece_bytes: u64) {
    loop {
        // One piece at a time per shard, whatever the number of busy logs: the device queues
        // a group commit's flush behind the zeroes in flight, so these are kept to one piece.
        let turn = SHARD_TURN.with(Rc::clone);
        let _permit = turn.acquire_permit(1).await;
        let Some(shared) = log.upgrade() else {
            return;
        };
        let piece = {
            let mut state = shared.state.borrow_mut();
            let job = state.zeroing.job.as_mut().expect("a running job's state");
            let start = job.next.max(job.fence);
            if job.stopping || start >= job.end {
                let segment_base = job.segment_base;
                let zeroed_to = job.next;
                state.zeroing.job = None;
                state.zeroing.wake();
                if let Some(segment) = state.find_segment_mut(segment_base) {
                    segment.zeroed_to = segment.zeroed_to.max(zeroed_to);
                }
                return;
            }
            let end = (start + piece_bytes).min(job.end);
            job.in_flight = Some((start, end));
            (start, end)
        };
        let faults = shared.faults.borrow().clone();
        // Held by tests to catch a data write up with a piece in flight.
        while faults.as_ref().is_some_and(|plan| plan.zeroes_held()) {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        let written = file.write_rc_at(zeroes(piece.1 - piece.0), piece.0).await;
        let mut state = shared.state.borrow_mut();
        let failed = match written {
            Ok(bytes) if bytes as u64 == piece.1 - piece.0 => None,
            Ok(bytes) => Some(format!("short zero write ({bytes} bytes)")),
            Err(error) => Some(error.to_string()),
        };
        let job = state.zeroing.job.as_mut().expect("a running job's state");
        job.in_flight = None;
        job.next = piece.1;
        if let Some(error) = failed {
            tracing::warn!(dir = %shared.dir.display(), %error, "writing zeroes ahead failed; this log stops zeroing ahead (only speed is lost)");
            job.stopping = true;
            state.zeroing.disabled = true;
        }
        if let Some(faults) = faults {
            faults.count_zero_write();
        }
        state.zeroing.wake();
    }
}

thread_local! {
    /// The shard's one permit to have a zero piece in flight.
    static SHARD_TURN: Rc<glommio::sync::Semaphore> = Rc::new(glommio::sync::Semaphore::new(1));
    /// Zeroed DMA buffers, one per size used (usually one: the piece size), shared by the
    /// logs of the shard: zero writes only read them.
    static ZEROES: RefCell<Vec<Rc<DmaBuffer>>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed buffer of `bytes` (block-aligned). Power-of-two sizes (the piece size) are kept
/// for the next write; others (the last piece before a segment's end) are made for one.
fn zeroes(bytes: u64) -> Rc<DmaBuffer> {
    let bytes = bytes as usize;
    let kept = ZEROES.with_borrow(|kept| kept.iter().find(|buffer| buffer.len() == bytes).cloned());
    if let Some(buffer) = kept {
        return buffer;
    }
    let mut buffer = glommio::allocate_dma_buffer_global(bytes);
    buffer.as_bytes_mut().fill(0);
    let buffer = Rc::new(buffer);
    if bytes.is_power_of_two() {
        ZEROES.with_borrow_mut(|kept| {
            if kept.len() < 4 {
                kept.push(buffer.clone());
            }
        });
    }
    buffer
}

#[cfg(test)]
#[path = "zeroing_tests.rs"]
mod tests;
