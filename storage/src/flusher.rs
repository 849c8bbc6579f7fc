//! The group commit: one background task per log that makes appended batches durable.
//!
//! Loop: wait until something is pending (or the log is closing); take everything pending;
//! write it with O_DIRECT (all chunks submitted together, from the block-aligned position
//! where the partial last block starts); one `fdatasync` per segment touched; then advance the
//! high watermark, wake `wait_durable` callers, and write the index entries of what was just
//! synced. Appends that arrive while a flush is in flight accumulate and go in the next one:
//! under load, each `fdatasync` is shared by every batch appended during the previous flush.
//!
//! Runs on the log's shard, spawned by `PartitionLog::open`. It holds only a `Weak` reference
//! while idle, so a log whose handles are all dropped lets it end. It exits when the log is
//! closing and nothing is pending, or after the first write or sync error, which marks the log
//! failed (the engine then exits the process).

use crate::appender::{PendingWrite, RolledSegment};
use crate::index;
use crate::log::{LogShared, Status};
use crate::segment::{align_up, Segment, PREALLOCATE_STEP_BYTES};
use crate::Offset;
use futures_lite::future::poll_fn;
use glommio::io::{BufferedFile, DmaFile};
use std::io;
use std::rc::{Rc, Weak};
use std::task::Poll;

pub(crate) async fn run(log: Weak<LogShared>) {
    loop {
        let Some(shared) = next_work(&log).await else {
            return;
        };
        let writes = shared.state.borrow_mut().appender.take();
        if writes.is_empty() {
            return; // closing, and everything appended is durable
        }
        if let Err(error) = flush(&shared, writes).await {
            tracing::error!(dir = %shared.dir.display(), %error, "partition log write failed");
            shared.state.borrow_mut().fail(&error);
            return;
        }
    }
}

/// Resolves when there is something to flush or the log is closing; `None` if the log is gone.
async fn next_work(log: &Weak<LogShared>) -> Option<Rc<LogShared>> {
    poll_fn(|context| {
        let Some(shared) = log.upgrade() else {
            return Poll::Ready(None);
        };
        let ready = {
            let mut state = shared.state.borrow_mut();
            let ready = state.appender.has_pending() || state.status != Status::Open;
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
}

async fn flush(shared: &LogShared, writes: Vec<PendingWrite>) -> io::Result<()> {
    let mut synced = Vec::with_capacity(writes.len());
    for mut write in writes {
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
        synced.push(Synced {
            segment_base: write.segment_base,
            end_position: write.end_position,
            end_offset: write.end_offset,
            index_entries: std::mem::take(&mut write.index_entries),
        });
        write
            .write_to(&file, shared.config.get().write_in_flight_bytes_max)
            .await?;
        file.fdatasync().await?;
    }
    let index_writes = publish(shared, synced);
    for (file, first_entry, entries) in index_writes {
        index::write_entries(&file, first_entry, &entries).await?;
    }
    Ok(())
}

/// Makes synced writes visible: segment sizes, index entries in memory, the high watermark.
/// Returns the index file writes to do.
fn publish(
    shared: &LogShared,
    synced: Vec<Synced>,
) -> Vec<(Rc<BufferedFile>, usize, Vec<index::IndexEntry>)> {
    let mut state = shared.state.borrow_mut();
    let mut index_writes = Vec::new();
    let mut high_watermark = state.high_watermark;
    for done in synced {
        let segment = state.segment_mut(done.segment_base);
        assert!(done.end_position >= segment.size_bytes && done.end_offset >= segment.end_offset);
        segment.size_bytes = done.end_position;
        segment.end_offset = done.end_offset;
        for entry in done.index_entries {
            segment.index.push(entry);
        }
        let first_entry = segment.index_entries_on_disk;
        if segment.index.len() > first_entry {
            let entries = segment.index.entries()[first_entry..].to_vec();
            index_writes.push((segment.index_file.clone(), first_entry, entries));
            segment.index_entries_on_disk = segment.index.len();
        }
        high_watermark = done.end_offset;
    }
    assert!(high_watermark >= state.high_watermark && high_watermark <= state.log_end);
    state.high_watermark = high_watermark;
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
        let file = previous.log_file.clone();
        assert!(state.segments.last().map(|last| last.base_offset) == Some(rolled.base_offset));
        state.segments.push(segment);
        file
    };
    // The previous segment's last bytes were written and synced before this point (writes are
    // flushed in order), so trimming cuts only padding and preallocation.
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
    let stepped = (allocated_bytes + PREALLOCATE_STEP_BYTES).min(align_up(segment_bytes));
    Some(stepped.max(needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preallocation_grows_in_steps_up_to_the_segment_size() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(preallocation_target(0, 100, 1024 * MIB), Some(64 * MIB));
        assert_eq!(preallocation_target(64 * MIB, 64 * MIB, 1024 * MIB), None);
        assert_eq!(
            preallocation_target(64 * MIB, 64 * MIB + 1, 1024 * MIB),
            Some(128 * MIB)
        );
        assert_eq!(preallocation_target(0, 100, 10_000), Some(12_288));
        // A batch bigger than the segment size still gets its blocks.
        assert_eq!(preallocation_target(12_288, 50_000, 10_000), Some(53_248));
    }
}
