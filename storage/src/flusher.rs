//! The group commit: one background task per log that makes appended batches durable.
//!
//! Loop: wait until something is pending (or the log is closing); take everything pending;
//! write it with O_DIRECT (all chunks submitted together, from the block-aligned position
//! where the partial last block starts); one `fdatasync` per segment touched; then advance the
//! durable end, wake `wait_durable` callers, and write the index files of the segments that
//! were just sealed (the active segment's index entries stay in memory until it is sealed or
//! the log closes: recovery rebuilds them after a crash). Appends that arrive while a flush is
//! in flight accumulate and go in the next one: under load, each `fdatasync` is shared by
//! every batch appended during the previous flush. The rounds are pipelined: while one
//! round's `fdatasync` is in flight, the batches appended meanwhile are already written (not
//! across a segment roll or a new leader epoch), the first round is acknowledged as soon as
//! its sync completes, and the second's `fdatasync` follows once its write is done; a
//! durable end is still published only after the `fdatasync` that covers it, and in order.
//! On this project's reference disk it neither gained nor lost (BENCHMARKS.md, "Pipelined
//! group commits"): the device serialises flushes, so what bounds one connection is the
//! number of `fdatasync`s, not the gap between them.
//!
//! Runs on the log's shard, spawned by `PartitionLog::open`. It holds only a `Weak` reference
//! while idle, so a log whose handles are all dropped lets it end. It exits when the log is
//! closing and nothing is pending, or after the first write or sync error, which marks the log
//! failed: a failed sync for good, a write that found no space recoverably (the engine closes
//! and reopens such a log once space is back; see `LogState::fail`).

use crate::appender::{PendingWrite, RolledSegment};
use crate::index;
use crate::log::{LogShared, PendingSnapshot, Status};
use crate::seam::SegmentIo;
use crate::segment::{align_up, Segment, PREALLOCATE_FIRST_STEP_BYTES, PREALLOCATE_STEP_BYTES};
use crate::time_index::{self, TimeIndexEntry, TIME_INDEX_ENTRY_BYTES};
use crate::Offset;
use futures_lite::future::poll_fn;
use glommio::io::DmaFile;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};
use std::task::Poll;

pub(crate) async fn run(log: Weak<LogShared>) {
    loop {
        let Some(shared) = next_work(&log).await else {
            return;
        };
        // A truncation waits for the flusher to be idle with nothing pending (see
        // `truncate`): between here and the end of the round, files are being written.
        shared.state.borrow_mut().flusher_busy = true;
        let go_on = flush_round(&shared).await;
        if !go_on {
            // No zero write may outlive the flusher: close and truncation cut files after.
            crate::zeroing::stop(&shared, None).await;
        }
        let mut state = shared.state.borrow_mut();
        state.flusher_busy = false;
        for waker in state.flusher_idle_waiters.drain(..) {
            waker.wake();
        }
        if !go_on {
            return;
        }
    }
}

/// One round of work: the leader epoch checkpoint if it changed, then everything pending.
/// Returns whether the flusher goes on (not after a failure, nor when closing with nothing
/// left).
async fn flush_round(shared: &Rc<LogShared>) -> bool {
    let (writes, epochs, snapshots) = {
        let mut state = shared.state.borrow_mut();
        let writes = state.appender.take();
        state.in_flight_segments = writes.iter().map(|write| write.segment_base).collect();
        let snapshots = std::mem::take(&mut state.pending_snapshots);
        (writes, state.epochs.take_dirty(), snapshots)
    };
    // A new leader epoch reaches its checkpoint file before the group commit that makes
    // its first batch durable (see `epochs`).
    if let Some(entries) = epochs {
        if let Err(error) = write_epochs(shared, entries).await {
            tracing::error!(dir = %shared.dir.display(), %error, "leader epoch checkpoint write failed");
            let mut state = shared.state.borrow_mut();
            state.epochs.mark_dirty();
            state.fail(&error);
            return false;
        }
    }
    if writes.is_empty() {
        // Only the checkpoint was due; or closing, and everything appended is durable.
        return shared.state.borrow().status == Status::Open;
    }
    if let Err(error) = flush(shared, writes).await {
        tracing::error!(dir = %shared.dir.display(), %error, "partition log write failed");
        shared.state.borrow_mut().fail(&error);
        return false;
    }
    // After the group commit that made their rolls durable (see `producer_snapshot`).
    write_snapshots(shared, snapshots).await;
    true
}

/// Writes producer snapshots off the shard, each after the `.txnindex` of the segment its roll
/// sealed (a snapshot vouches for the index files below it, see `txn`). A failure costs only
/// a longer scan at the next open, so it is logged, not a failure of the log.
async fn write_snapshots(shared: &LogShared, snapshots: Vec<PendingSnapshot>) {
    for pending in snapshots {
        let dir = shared.dir.clone();
        let log_start = shared.state.borrow().log_start;
        let (offset, sealed_base) = (pending.offset, pending.sealed_base);
        let written = glommio::executor()
            .spawn_blocking(move || {
                crate::txn::write_txn_index(&dir, sealed_base, &pending.txn_index)?;
                crate::producer_snapshot::write(&dir, offset, &pending.snapshot, log_start)
            })
            .await;
        shared
            .state
            .borrow_mut()
            .txn_indexes_unwritten
            .retain(|&base| base != sealed_base);
        if let Err(error) = written {
            tracing::warn!(dir = %shared.dir.display(), %offset, %error, "producer snapshot write failed");
        }
    }
}

/// Replaces the leader epoch checkpoint, off the shard.
pub(crate) async fn write_epochs(
    shared: &LogShared,
    entries: Vec<crate::epochs::EpochEntry>,
) -> io::Result<()> {
    let dir = shared.dir.clone();
    glommio::executor()
        .spawn_blocking(move || crate::epochs::write_checkpoint(&dir, &entries))
        .await
}

/// Resolves when there is something to flush (batches, or a changed leader epoch checkpoint)
/// or the log is closing; `None` if the log is gone.
async fn next_work(log: &Weak<LogShared>) -> Option<Rc<LogShared>> {
    poll_fn(|context| {
        let Some(shared) = log.upgrade() else {
            return Poll::Ready(None);
        };
        let ready = {
            let mut state = shared.state.borrow_mut();
            let ready = state.appender.has_pending()
                || state.epochs.is_dirty()
                || state.status != Status::Open;
            if !ready {
                state.flusher_waker = Some(context.waker().clone());
            }
            ready
        };
        if ready {
            Poll::Ready(Some(shared))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// What a flushed write changes in its segment once it is durable.
struct Synced {
    segment_base: Offset,
    end_position: u64,
    end_offset: Offset,
    index_entries: Vec<index::IndexEntry>,
    time_entries: Vec<TimeIndexEntry>,
    max_timestamp: i64,
    offset_of_max_timestamp: Offset,
    /// The segment this write's segment took over from, with its final time index entry.
    rolled_from: Option<RolledSegment>,
}

/// Chunks of one write, synced, waiting to enter the tail cache once the durable end
/// covers them.
struct WrittenChunks {
    segment_base: Offset,
    file: Rc<DmaFile>,
    end_position: u64,
    chunks: Vec<crate::appender::WrittenChunk>,
}

/// A write that reached its file and waits for the `fdatasync` that makes it durable.
struct Written {
    synced: Synced,
    chunks: WrittenChunks,
    /// Its bytes (for the group commit histogram).
    bytes: u64,
}

/// Writes `writes` (in order; several when a segment rolled, each synced before the next
/// segment starts) and then, pipelined, whatever is appended meanwhile: while one group
/// commit's `fdatasync` is in flight, the next group's write goes out, so a connection's
/// requests wait for one sync after another rather than for a write and a sync each. Every
/// durable end is published only after the `fdatasync` that covers it completed, in order.
async fn flush(shared: &Rc<LogShared>, writes: Vec<PendingWrite>) -> io::Result<()> {
    let mut writes = writes.into_iter();
    let Some(mut last) = writes.next() else {
        return Ok(());
    };
    let mut done = Vec::new();
    for write in writes {
        // A roll: the earlier segment is synced before its successor's files are made.
        let written = write_out(shared, last).await?;
        sync(shared, &written).await?;
        done.push(written);
        last = write;
    }
    let mut current = write_out(shared, last).await?;
    loop {
        let (synced, next) = sync_while_writing_next(shared, &current).await;
        let index_writes = match synced {
            Ok(()) => {
                done.push(current);
                publish_durable(shared, std::mem::take(&mut done))
            }
            Err(error) => {
                // Nothing more is published; the write already started ends before the
                // flusher does (a close trims the file after it).
                if let Some(next) = next {
                    let _ = next.await;
                }
                return Err(error);
            }
        };
        // The index files of segments just sealed, while the next write goes on.
        let Some(next) = next else {
            return write_index_files(index_writes).await;
        };
        let (indexed, written) =
            futures_lite::future::zip(write_index_files(index_writes), next).await;
        current = written?;
        indexed?;
        shared.state.borrow_mut().in_flight_segments = vec![current.synced.segment_base];
    }
}

/// A write under way while the previous round's `fdatasync` was in flight.
type NextWrite<'log> = Pin<Box<dyn Future<Output = io::Result<Written>> + 'log>>;

/// `current`'s `fdatasync`; meanwhile, as soon as something is appended, its write starts
/// ([`take_pipelined`]). Returns once the sync is done (so that its round is acknowledged
/// without waiting for the next write), with the next write, still going, if one started.
async fn sync_while_writing_next<'log>(
    shared: &'log Rc<LogShared>,
    current: &Written,
) -> (io::Result<()>, Option<NextWrite<'log>>) {
    let mut syncing = pin!(sync(shared, current));
    let mut writing: Option<NextWrite<'log>> = None;
    let synced = poll_fn(|context| {
        if let Poll::Ready(outcome) = syncing.as_mut().poll(context) {
            return Poll::Ready(outcome);
        }
        match writing.as_mut() {
            // Polled here while the sync lasts, then by the caller.
            Some(write) => {
                if let Poll::Ready(outcome) = write.as_mut().poll(context) {
                    writing = Some(Box::pin(std::future::ready(outcome)));
                }
            }
            None => match take_pipelined(shared) {
                Some(next) => {
                    let mut write: NextWrite<'log> = Box::pin(write_out(shared, next));
                    if let Poll::Ready(outcome) = write.as_mut().poll(context) {
                        write = Box::pin(std::future::ready(outcome));
                    }
                    writing = Some(write);
                }
                // An append wakes this task (the flusher) again.
                None => shared.state.borrow_mut().flusher_waker = Some(context.waker().clone()),
            },
        }
        Poll::Pending
    })
    .await;
    // The waker left for appends belongs to this wait: the flusher's own wait sets its own.
    shared.state.borrow_mut().flusher_waker = None;
    (synced, writing)
}

/// What may go out while the previous group commit's `fdatasync` is in flight: everything
/// pending, unless it rolls a segment (whose predecessor must be synced and trimmed first),
/// a new leader epoch must reach its checkpoint file first, or producer snapshots wait for
/// their round (see `flush_round`).
fn take_pipelined(shared: &LogShared) -> Option<PendingWrite> {
    let mut state = shared.state.borrow_mut();
    if !state.appender.has_pending()
        || state.appender.rolls_pending()
        || state.epochs.is_dirty()
        || !state.pending_snapshots.is_empty()
    {
        return None;
    }
    let mut writes = state.appender.take();
    assert_eq!(
        writes.len(),
        1,
        "pending writes without a roll are one write"
    );
    writes.pop()
}

/// Starts `write`'s segment if it rolled, reserves its disk and writes its chunks.
async fn write_out(shared: &Rc<LogShared>, mut write: PendingWrite) -> io::Result<Written> {
    if let Some(rolled) = write.rolled_from {
        start_segment(shared, write.segment_base, rolled).await?;
    }
    let (file, allocated_bytes) = {
        let mut state = shared.state.borrow_mut();
        let segment = state.segment_mut(write.segment_base);
        (segment.log_file.clone(), segment.allocated_bytes)
    };
    preallocate(
        shared,
        &file,
        write.segment_base,
        allocated_bytes,
        write.end_position,
    )
    .await;
    let synced = Synced {
        segment_base: write.segment_base,
        end_position: write.end_position,
        end_offset: write.end_offset,
        index_entries: std::mem::take(&mut write.index_entries),
        time_entries: std::mem::take(&mut write.time_entries),
        max_timestamp: write.max_timestamp,
        offset_of_max_timestamp: write.offset_of_max_timestamp,
        rolled_from: write.rolled_from,
    };
    let faults = shared.faults.borrow().clone();
    let io = SegmentIo {
        file: &file,
        faults: faults.as_deref(),
    };
    let (segment_base, end_position) = (write.segment_base, write.end_position);
    let bytes = write.end_position - write.start_position;
    crate::zeroing::before_write(shared, segment_base, write.start_position, end_position).await;
    let chunks = write
        .write_to(io, shared.config.get().write_in_flight_bytes_max)
        .await?;
    crate::zeroing::after_write(shared, &file, segment_base, end_position);
    Ok(Written {
        synced,
        chunks: WrittenChunks {
            segment_base,
            file,
            end_position,
            chunks,
        },
        bytes,
    })
}

/// The group commit of a write: one `fdatasync` of its file.
async fn sync(shared: &LogShared, written: &Written) -> io::Result<()> {
    let faults = shared.faults.borrow().clone();
    let io = SegmentIo {
        file: &written.chunks.file,
        faults: faults.as_deref(),
    };
    let sync_started = std::time::Instant::now();
    if let Err(error) = io.fdatasync().await {
        shared.state.borrow_mut().fail_sync(&error);
        return Err(error);
    }
    let sync_us = sync_started.elapsed().as_micros() as u64;
    crate::metrics::record(|metrics| {
        metrics.fsync_latency_us.record(sync_us);
        metrics.group_commit_bytes.record(written.bytes);
    });
    Ok(())
}

/// Makes synced writes visible (see [`publish`]), hands their chunks to the tail cache and
/// tells the durable-end listener; returns the index file writes of segments they sealed.
fn publish_durable(shared: &LogShared, done: Vec<Written>) -> Vec<IndexWrite> {
    let (synced, written): (Vec<Synced>, Vec<WrittenChunks>) = done
        .into_iter()
        .map(|written| (written.synced, written.chunks))
        .unzip();
    let index_writes = publish(shared, synced);
    // Visible now: reads of these bytes may come from memory.
    for write in written {
        shared.tail_cache.insert(
            (write.segment_base, &write.file),
            write.end_position,
            write.chunks,
        );
    }
    // Readers of the new bytes may run now (from the tail cache, which has them).
    let durable_end = shared.state.borrow().durable_end;
    if let Some(listener) = shared.durable_end_listener.borrow().as_ref() {
        listener(durable_end);
    }
    index_writes
}

/// Bytes to write to an index file once the data they describe is durable.
pub(crate) struct IndexWrite {
    path: PathBuf,
    position: u64,
    bytes: Vec<u8>,
    sync: index::IndexSync,
}

/// The index entries of `segment` that its files do not hold yet, as writes (time index
/// first), counted as written from now on. A sealed segment's time index is synced before its
/// offset index is written (`sealed`): recovery trusts a sealed segment's time index up to
/// the last offset index entry, so the time index must never be behind the offset index on
/// disk. The active segment's (at close) need no sync: recovery rebuilds both from its batches.
pub(crate) fn unwritten_index_entries(
    dir: &Path,
    segment: &mut Segment,
    sealed: bool,
) -> Vec<IndexWrite> {
    let mut writes = Vec::new();
    let first_time_entry = segment.time_index_entries_on_disk;
    if segment.time_index.len() > first_time_entry {
        writes.push(IndexWrite {
            path: crate::segment::time_index_file_path(dir, segment.base_offset),
            position: (first_time_entry * TIME_INDEX_ENTRY_BYTES) as u64,
            bytes: time_index::encode_entries(&segment.time_index.entries()[first_time_entry..]),
            sync: if sealed {
                index::IndexSync::Sync
            } else {
                index::IndexSync::NoSync
            },
        });
        segment.time_index_entries_on_disk = segment.time_index.len();
    }
    let first_entry = segment.index_entries_on_disk;
    if segment.index.len() > first_entry {
        writes.push(IndexWrite {
            path: crate::segment::index_file_path(dir, segment.base_offset),
            position: (first_entry * index::INDEX_ENTRY_BYTES) as u64,
            bytes: index::encode_entries(&segment.index.entries()[first_entry..]),
            sync: index::IndexSync::NoSync,
        });
        segment.index_entries_on_disk = segment.index.len();
    }
    writes
}

/// Does the writes, in order, each opening and closing its file.
pub(crate) async fn write_index_files(writes: Vec<IndexWrite>) -> io::Result<()> {
    for write in writes {
        index::write_bytes_at(&write.path, write.position, write.bytes, write.sync).await?;
    }
    Ok(())
}

/// Makes synced writes visible: segment sizes, index entries in memory, the durable end.
/// Returns the index file writes of the segments sealed by these writes.
fn publish(shared: &LogShared, synced: Vec<Synced>) -> Vec<IndexWrite> {
    let mut state = shared.state.borrow_mut();
    let mut sealed: Vec<Offset> = Vec::new();
    let mut durable_end = state.durable_end;
    let now_ms = crate::now_ms();
    for done in synced {
        if let Some(rolled) = done.rolled_from {
            // The rolled segment's own writes (if any in this flush) were published above.
            // Retention may have removed it meanwhile: it was sealed and wholly durable.
            if let Some(previous) = state.find_segment_mut(rolled.base_offset) {
                if let Some(entry) = rolled
                    .final_time_entry
                    .filter(|entry| previous.time_index.accepts(*entry))
                {
                    previous.time_index.push(entry);
                }
                sealed.push(rolled.base_offset);
            }
        }
        let segment = state.segment_mut(done.segment_base);
        assert!(done.end_position >= segment.size_bytes && done.end_offset >= segment.end_offset);
        segment.size_bytes = done.end_position;
        segment.end_offset = done.end_offset;
        segment.last_modified_ms = now_ms;
        if done.max_timestamp > segment.max_timestamp {
            segment.max_timestamp = done.max_timestamp;
            segment.offset_of_max_timestamp = done.offset_of_max_timestamp;
        }
        for entry in done.index_entries {
            segment.index.push(entry);
        }
        for entry in done.time_entries {
            segment.time_index.push(entry);
        }
        durable_end = done.end_offset;
    }
    // A segment is sealed once the write that starts its successor is durable: every write to
    // it came before (writes are flushed in order), so its indexes are complete.
    let mut index_writes = Vec::new();
    for base in sealed {
        if let Some(segment) = state.find_segment_mut(base) {
            index_writes.extend(unwritten_index_entries(&shared.dir, segment, true));
        }
    }
    state.in_flight_segments.clear();
    assert!(durable_end >= state.durable_end && durable_end <= state.log_end);
    state.durable_end = durable_end;
    state.flush_count += 1;
    state.wake_durable_waiters();
    index_writes
}

/// Creates the files of a new active segment and trims the one that was active before.
async fn start_segment(
    shared: &LogShared,
    base_offset: Offset,
    rolled: RolledSegment,
) -> io::Result<()> {
    let segment = Segment::create(&shared.dir, base_offset).await?;
    let previous_file = {
        let mut state = shared.state.borrow_mut();
        let previous = state.segment_mut(rolled.base_offset);
        previous.allocated_bytes = 0;
        previous.zeroed_to = 0;
        let file = previous.log_file.clone();
        assert!(state.segments.last().map(|last| last.base_offset) == Some(rolled.base_offset));
        state.segments.push(segment);
        file
    };
    // The previous segment's last bytes were written and synced before this point (writes are
    // flushed in order), so trimming cuts only padding, preallocation and zeroes written
    // ahead, once no more of those can land.
    crate::zeroing::stop(shared, Some(rolled.base_offset)).await;
    Segment::trim_file(&previous_file, rolled.size_bytes).await
}

/// Reserves disk ahead of the writes, in steps, so that appends do not allocate blocks one
/// write at a time. A failure (a file system without fallocate) only costs speed.
async fn preallocate(
    shared: &LogShared,
    file: &DmaFile,
    segment_base: Offset,
    allocated_bytes: u64,
    end_position: u64,
) {
    let Some(target) = preallocation_target(
        allocated_bytes,
        end_position,
        shared.config.get().segment_bytes,
    ) else {
        return;
    };
    if let Err(error) = file.pre_allocate(target, false).await {
        tracing::warn!(dir = %shared.dir.display(), %error, "preallocating a segment failed");
    }
    // Recorded even on failure, so that a file system without fallocate is not asked again
    // at every flush.
    shared
        .state
        .borrow_mut()
        .segment_mut(segment_base)
        .allocated_bytes = target;
}

fn preallocation_target(
    allocated_bytes: u64,
    end_position: u64,
    segment_bytes: u64,
) -> Option<u64> {
    let needed = align_up(end_position);
    if needed <= allocated_bytes {
        return None;
    }
    // Geometric steps (1 MiB, then as much again as is reserved, at most the full step): a
    // busy partition reaches 64 MiB steps after a few flushes, a quiet one of thousands keeps
    // its reservation near its size.
    let step = allocated_bytes.clamp(PREALLOCATE_FIRST_STEP_BYTES, PREALLOCATE_STEP_BYTES);
    let stepped = (allocated_bytes + step).min(align_up(segment_bytes));
    Some(stepped.max(needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preallocation_grows_in_steps_up_to_the_segment_size() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(preallocation_target(0, 100, 1024 * MIB), Some(MIB));
        assert_eq!(preallocation_target(64 * MIB, 64 * MIB, 1024 * MIB), None);
        assert_eq!(
            preallocation_target(64 * MIB, 64 * MIB + 1, 1024 * MIB),
            Some(128 * MIB)
        );
        assert_eq!(preallocation_target(0, 100, 10_000), Some(12_288));
        // A batch bigger than the segment size still gets its blocks.
        assert_eq!(preallocation_target(12_288, 50_000, 10_000), Some(53_248));
    }

    #[test]
    fn a_quiet_partition_reserves_little() {
        // 10,000 partitions with a few bytes each must not reserve 64 MiB apiece (640 GB).
        const MIB: u64 = 1024 * 1024;
        assert_eq!(preallocation_target(0, 100, 1024 * MIB), Some(MIB));
        // Busy partitions double their reservation up to the full step.
        assert_eq!(
            preallocation_target(MIB, MIB + 1, 1024 * MIB),
            Some(2 * MIB)
        );
        assert_eq!(
            preallocation_target(32 * MIB, 32 * MIB + 1, 1024 * MIB),
            Some(64 * MIB)
        );
        assert_eq!(
            preallocation_target(64 * MIB, 64 * MIB + 1, 1024 * MIB),
            Some(128 * MIB)
        );
    }
}
