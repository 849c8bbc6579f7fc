//! Truncation: cutting a log's tail (a follower whose log diverged from its leader's, Kafka's
//! `UnifiedLog.truncateTo`) or replacing the whole log by an empty one that starts at a given
//! offset (a follower that fell behind the leader's log start, `truncateFullyAndStartAt`).
//!
//! A truncation runs on the log's shard, inside the same `LogShared`, so every handle (clones
//! of the `PartitionLog`, the durable-end listener, the flusher) stays valid. Its steps:
//! 1. Appends are refused from here on with `StorageError::Truncating`, a retriable error.
//!    They cannot wait: `append` is synchronous. Only a follower truncates, and its only
//!    writer is its own fetcher, which awaits the truncation before appending again.
//!    Compaction and retention skip their turn; a compaction pass already running is waited
//!    for.
//! 2. The flusher drains: everything pending is written and synced, and the flusher is idle
//!    (no write, sync, index or checkpoint file in flight), so the files hold exactly what
//!    the in-memory state says and nothing else writes them until the truncation ends.
//! 3. The durable end drops to the cut, so reads that start from now on stop there, and the
//!    tail cache is emptied (it would otherwise serve old bytes at positions new batches
//!    take). A read already in progress past the cut may fail or return old batches, as a
//!    fetch racing a truncation may in Kafka.
//! 4. The files are cut, each step durable before the next (see "Crash safety").
//! 5. Recovery runs again on the directory, and its result (segments, appender, producer
//!    state, epochs, log start, log end, cleaner checkpoint) replaces the state in place; the
//!    durable end is the new end. The old segments' descriptors close once no read holds
//!    them. Producer state is what a reopen gives: the newest producer snapshot at or below
//!    the cut (those above it are deleted first) and the batches after it.
//!
//! Crash safety. `truncate_to` renames the segments wholly above the cut (from the highest,
//! each `.log` first, so recovery never loads a segment above a missing one) and syncs the
//! directory, then truncates the segment holding the cut at its batch and syncs it, then
//! writes the leader epoch checkpoint cut at the new end (after the log: recovery cuts a
//! stale checkpoint at the recovered end, but cannot restore entries a cut checkpoint lost).
//! A crash in between leaves a prefix of the old log at least as long as the cut, never
//! bytes above it once the call returned; the follower then truncates again, as Kafka's does
//! after a restart. `truncate_fully_and_start_at` renames the segments at or above the new
//! start, creates the empty segment there (its name synced), persists the new log start, and
//! only then renames the segments below it: recovery of any intermediate state gives either
//! a prefix of the old log or a log that starts and ends at the offset.
//!
//! A truncation that fails or is cancelled after it started changing files marks the log
//! failed recoverably: the engine reopens it, and recovery reads what is on disk.

use crate::log::{LogShared, PartitionLog, Resumed, Status};
use crate::reader::{SegmentWindow, READ_WINDOW_BYTES};
use crate::segment::{self, Segment};
use crate::{compaction, epochs, recovery, retention, Offset, StorageError};
use futures_lite::future::poll_fn;
use glommio::io::DmaFile;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

/// How often a truncation checks whether a compaction pass has finished.
const CLEANING_POLL: Duration = Duration::from_millis(10);

impl PartitionLog {
    /// Removes every batch holding an offset at or above `offset` (a batch straddling it goes
    /// whole, as in Kafka's `LogSegment.truncateTo`), so that the log ends at `offset` or
    /// below; the leader epochs starting at or above the new end go too. At or above the log
    /// end only such epochs go (see `drop_epochs_at_end`); below the log start it is
    /// [`Self::truncate_fully_and_start_at`]. Returns once the cut is durable, with the log
    /// end and durable end at the new end. Appends meanwhile get `Truncating`, and so does
    /// a second truncation (see the module docs of `truncate`). `Closed` or `Io` if the log
    /// closes or fails meanwhile.
    ///
    /// The durable-end listener is not called (the durable end went down: the partition that
    /// truncates sets its own watermarks), and `wait_durable` callers for offsets at or above
    /// the new end keep waiting until new batches reach them: a replica fails its producers'
    /// waits when it stops leading, before it truncates, as Kafka does.
    pub async fn truncate_to(&self, offset: Offset) -> Result<(), StorageError> {
        let at_or_past_end = {
            let state = self.shared.state.borrow();
            crate::replica::check_open(&state)?;
            (offset >= state.log_end).then(|| {
                (state.epochs.entries().last())
                    .is_some_and(|entry| entry.start_offset >= state.log_end)
            })
        };
        match at_or_past_end {
            Some(true) => return self.drop_epochs_at_end().await,
            Some(false) => return Ok(()),
            None => {}
        }
        let mut truncation = Truncation::begin(&self.shared).await?;
        let (log_start, log_end) = {
            let state = self.shared.state.borrow();
            (state.log_start, state.log_end)
        };
        // DeleteRecords may have moved the start meanwhile.
        if offset < log_start {
            drop(truncation);
            return self.truncate_fully_and_start_at(offset).await;
        }
        assert!(offset < log_end);
        truncation.files_touched = true;
        self.cut_tail(offset).await?;
        truncation.finish().await
    }

    /// Deletes every segment and starts an empty log whose start and end are `offset`
    /// (Kafka's `truncateFullyAndStartAt`): the leader epochs are cleared, the log start and
    /// cleaner checkpoint persisted at `offset`. Returns once that is durable. A negative
    /// `offset` is `OffsetOutOfRange`; other errors as for [`Self::truncate_to`].
    pub async fn truncate_fully_and_start_at(&self, offset: Offset) -> Result<(), StorageError> {
        {
            let state = self.shared.state.borrow();
            crate::replica::check_open(&state)?;
            if offset < Offset(0) {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    log_start: state.log_start,
                    durable_end: state.durable_end,
                });
            }
        }
        let mut truncation = Truncation::begin(&self.shared).await?;
        truncation.files_touched = true;
        self.start_empty_at(offset).await?;
        truncation.finish().await
    }

    /// Cuts the files at `offset`, which lies in the log (see "Crash safety"). The segments
    /// stay in the state, unreadable past the new durable end, until `finish` replaces them.
    async fn cut_tail(&self, offset: Offset) -> Result<(), StorageError> {
        let dir = &self.shared.dir;
        let (above, cut_segment) = {
            let mut state = self.shared.state.borrow_mut();
            hide_above(&self.shared, &mut state, offset);
            // Segments starting at or below the cut stay; the last of them holds it.
            let kept = state
                .segments
                .partition_point(|segment| segment.base_offset <= offset);
            assert!(kept >= 1, "the cut {offset} is at or above the log start");
            let above = bases(&state.segments[kept..]);
            let cut = &state.segments[kept - 1];
            let relative = u32::try_from(offset.0 - cut.base_offset.0).unwrap_or(u32::MAX);
            let cut_segment = SegmentToCut {
                base_offset: cut.base_offset,
                log_file: cut.log_file.clone(),
                size_bytes: cut.size_bytes,
                end_offset: cut.end_offset,
                walk_from: cut.index.floor_position(relative),
            };
            (above, cut_segment)
        };
        let (cut_position, new_end) = cut_segment.position_of(offset).await?;
        // Gone before the directory sync that makes the segments' removal durable.
        crate::producer_snapshot::delete_above(dir, Some(new_end))?;
        delete_segments(dir, &above).await?;
        let file = &cut_segment.log_file;
        file.truncate(cut_position).await.map_err(io::Error::from)?;
        file.fdatasync().await.map_err(io::Error::from)?;
        // At the new end, not at `offset`: an epoch that began in a batch straddling the cut
        // has no batch left.
        self.write_epochs_cut_at(new_end).await?;
        self.clamp_offset_files(new_end).await
    }

    /// The log is not cut, but its latest leader epoch starts at its end: a replica made
    /// leader and deposed before any batch of that epoch. Kafka's `truncateTo` drops such an
    /// entry too ("we may have a conflicting epoch entry at the end of the log"): a follower
    /// that kept it would send it as its last fetched epoch, be told again that the epoch
    /// before it ended at this end, and truncate here again, for ever.
    async fn drop_epochs_at_end(&self) -> Result<(), StorageError> {
        let _truncation = Truncation::begin(&self.shared).await?;
        let log_end = self.shared.state.borrow().log_end;
        // A failed write leaves the old checkpoint, whose entry recovery drops at the log
        // end; the flusher tries again meanwhile.
        let written = self.write_epochs_cut_at(log_end).await;
        if written.is_err() {
            self.shared.state.borrow_mut().epochs.mark_dirty();
        }
        Ok(written?)
    }

    /// Drops the leader epochs starting at or above `end` and writes the checkpoint here,
    /// not by the flusher: during a truncation it must land after the cut.
    async fn write_epochs_cut_at(&self, end: Offset) -> io::Result<()> {
        let entries = {
            let mut state = self.shared.state.borrow_mut();
            state.epochs.truncate_from_end(end);
            state.epochs.take_dirty();
            state.epochs.entries().to_vec()
        };
        crate::flusher::write_epochs(&self.shared, entries).await
    }

    /// Replaces the files by one empty segment at `offset` (see "Crash safety").
    async fn start_empty_at(&self, offset: Offset) -> Result<(), StorageError> {
        let dir = &self.shared.dir;
        let (above, below) = {
            let mut state = self.shared.state.borrow_mut();
            let log_start = state.log_start;
            hide_above(&self.shared, &mut state, log_start.min(offset));
            let kept = state
                .segments
                .partition_point(|segment| segment.base_offset < offset);
            state.epochs = epochs::LeaderEpochCache::default();
            (
                bases(&state.segments[kept..]),
                bases(&state.segments[..kept]),
            )
        };
        // The new log has no producers: recovery would otherwise start from a snapshot.
        crate::producer_snapshot::delete_above(dir, None)?;
        delete_segments(dir, &above).await?;
        // Syncs its name; a file left at that name is emptied.
        Segment::create(dir, offset).await?.close().await?;
        self.persist_offset_file(retention::LOG_START_FILE, || offset)
            .await?;
        self.persist_offset_file(compaction::CHECKPOINT_FILE, || offset)
            .await?;
        delete_segments(dir, &below).await?;
        crate::flusher::write_epochs(&self.shared, Vec::new()).await?;
        Ok(())
    }

    /// The log start and cleaner checkpoint files must not point past the new end: recovery
    /// clamps them at open, but a later append would carry the end past them again.
    async fn clamp_offset_files(&self, end: Offset) -> Result<(), StorageError> {
        for name in [retention::LOG_START_FILE, compaction::CHECKPOINT_FILE] {
            if retention::read_offset_file(&self.shared.dir, name)?.is_some_and(|kept| kept > end) {
                self.persist_offset_file(name, || end).await?;
            }
        }
        Ok(())
    }
}

/// Makes everything at or above `end` unreadable before the files change: the durable end
/// drops to it and the tail cache is emptied.
fn hide_above(shared: &LogShared, state: &mut crate::log::LogState, end: Offset) {
    state.log_end = state.log_end.min(end);
    state.durable_end = state.durable_end.min(end);
    shared.tail_cache.clear();
}

/// The segment that holds the cut, as the cut needs it (copied out of the state, which is
/// not borrowed across the walk's reads).
struct SegmentToCut {
    base_offset: Offset,
    log_file: Rc<DmaFile>,
    size_bytes: u64,
    end_offset: Offset,
    /// A batch start at or below the cut: the index entry below it.
    walk_from: u64,
}

impl SegmentToCut {
    /// Where the first batch holding an offset at or above `offset` starts, and its base
    /// offset: the new log end (the segment's size and end if no batch does).
    async fn position_of(&self, offset: Offset) -> io::Result<(u64, Offset)> {
        let mut position = self.walk_from;
        let mut window = SegmentWindow::new(&self.log_file, self.size_bytes, READ_WINDOW_BYTES);
        while position < self.size_bytes {
            let info = window
                .complete_batch_at(position, false, self.base_offset)
                .await?;
            if info.last_offset() >= offset.0 {
                return Ok((position, Offset(info.base_offset)));
            }
            position += info.batch_bytes as u64;
        }
        Ok((self.size_bytes, self.end_offset))
    }
}

fn bases(segments: &[Segment]) -> Vec<Offset> {
    segments.iter().map(|segment| segment.base_offset).collect()
}

/// Renames the segments' files to `*.deleted`, from the highest segment down (each `.log`
/// first), and syncs the directory. Recovery, which `finish` runs next, unlinks them in the
/// background; reads that hold their descriptors keep reading the unlinked files.
async fn delete_segments(dir: &Path, bases: &[Offset]) -> io::Result<()> {
    for &base in bases.iter().rev() {
        compaction::rename_for_deletion(dir, base)?;
    }
    segment::sync_directory(dir).await
}

/// A truncation in progress: appends are refused while it lives (see the module docs).
struct Truncation<'log> {
    shared: &'log LogShared,
    /// Files may have changed: if the truncation does not finish, the in-memory state no
    /// longer describes them.
    files_touched: bool,
    finished: bool,
}

impl<'log> Truncation<'log> {
    /// Refuses appends from now on, then waits for a compaction pass to end and for the
    /// flusher to drain.
    async fn begin(shared: &'log LogShared) -> Result<Truncation<'log>, StorageError> {
        {
            let mut state = shared.state.borrow_mut();
            crate::replica::check_open(&state)?;
            state.truncating = true;
        }
        let truncation = Truncation {
            shared,
            files_touched: false,
            finished: false,
        };
        // The cleaner yields often; its pass ends on its own (compaction plans none now).
        while shared.state.borrow().cleaning {
            glommio::timer::sleep(CLEANING_POLL).await;
        }
        poll_fn(|context| {
            let mut state = shared.state.borrow_mut();
            if let Some(failure) = &state.failure {
                return Poll::Ready(Err(StorageError::Io(failure.to_error())));
            }
            if state.status != Status::Open {
                return Poll::Ready(Err(StorageError::Closed));
            }
            let drained =
                !state.appender.has_pending() && !state.epochs.is_dirty() && !state.flusher_busy;
            if drained {
                return Poll::Ready(Ok(()));
            }
            state.flusher_idle_waiters.push(context.waker().clone());
            state.wake_flusher();
            Poll::Pending
        })
        .await?;
        // Appends are refused, so no new zeroing starts; the one under way must end before
        // files are cut (see `zeroing`).
        crate::zeroing::stop(shared, None).await;
        Ok(truncation)
    }

    /// Runs recovery on the cut files and puts its result in place of the log's state.
    async fn finish(mut self) -> Result<(), StorageError> {
        let shared = self.shared;
        let recovered = recovery::recover(&shared.dir, &shared.config.get()).await?;
        let resumed = Resumed::new(&shared.dir, recovered)?;
        let old_segments = {
            let mut state = shared.state.borrow_mut();
            if state.status != Status::Open {
                // Closed meanwhile: close's own pass took the old segments. The files are
                // cut: the next open finds them so.
                drop(state);
                self.finished = true;
                close_when_released(resumed.recovered.segments);
                return Err(StorageError::Closed);
            }
            state.appender = resumed.recovered.appender;
            state.producers = resumed.recovered.producers;
            state.aborted = resumed.recovered.aborted;
            state.epochs = resumed.recovered.epochs;
            state.log_start = resumed.log_start;
            state.log_end = resumed.log_end;
            state.durable_end = resumed.log_end;
            // Never past the end (the file was clamped too, but may be behind memory), nor
            // below a log start that jumped ahead.
            state.cleaner_checkpoint = (state.cleaner_checkpoint)
                .min(resumed.log_end)
                .max(resumed.log_start);
            state.truncating = false;
            // Waiters for offsets at or above the new end wait for new batches to reach them.
            state.wake_durable_waiters();
            state.wake_flusher();
            std::mem::replace(&mut state.segments, resumed.recovered.segments)
        };
        self.finished = true;
        close_when_released(old_segments);
        Ok(())
    }
}

/// Closes segments (their files stay) once no read holds them.
fn close_when_released(segments: Vec<Segment>) {
    for segment in segments {
        retention::schedule_unlink(segment, Vec::new(), 0);
    }
}

impl Drop for Truncation<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.state.borrow_mut();
        state.truncating = false;
        if self.files_touched && !self.finished {
            let error = io::Error::other("a truncation stopped before it finished");
            tracing::error!(dir = %self.shared.dir.display(), %error, "reopen the log to recover it");
            state.fail_recoverably(&error);
        }
    }
}

#[cfg(test)]
#[path = "truncate_tests.rs"]
mod tests;
