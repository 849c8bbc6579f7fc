//! Retention: deleting whole closed segments from the oldest, moving the log start offset
//! (by retention or by DeleteRecords), persisting it, and unlinking deleted files off the
//! shard.
//!
//! Rules, as in Kafka's `UnifiedLog.deleteOldSegments`, each applied from the oldest segment
//! and stopping at the first segment it spares; the active segment is never deleted:
//! - log start: a segment wholly below the log start offset goes (DeleteRecords moved it);
//! - `retention.ms` (when `cleanup.policy` has `delete`): a segment whose largest timestamp
//!   (its file's last write when its batches carry none) is older than the limit goes;
//! - `retention.bytes` (likewise): the oldest segments go while the log would still be at
//!   least that large without them.
//!
//! Only segments that are wholly durable and not being written by the flusher qualify.
//!
//! Deleting a segment never blocks the shard on the disk: the segment leaves the log's
//! in-memory list at once (reads that already hold its files finish on them), its files are
//! renamed to `*.deleted` (a metadata operation), and a background task unlinks them after
//! `file.delete.delay.ms` on glommio's blocking thread pool, because unlinking a large file
//! costs ~0.17 s/GiB. Files left `*.deleted` by a crash are unlinked the same way on open.
//!
//! The log start offset is persisted in `<dir>/log-start-offset` (two lines: the format
//! version `0`, then the offset), written atomically (temporary file, fsync, rename, fsync of
//! the directory) when DeleteRecords moves it. On open the log starts at the larger of that
//! and the first segment's base offset. Retention alone need not write it: its new start is
//! the base offset of the first segment it keeps.

use crate::error::StorageError;
use crate::log::{LogState, PartitionLog, Status};
use crate::segment::{self, Segment, DELETED_SUFFIX};
use crate::{LogConfig, Offset};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Name of the per-partition file holding the log start offset.
pub(crate) const LOG_START_FILE: &str = "log-start-offset";
const OFFSET_FILE_FORMAT_VERSION: &str = "0";
/// How often a deletion task checks whether reads still hold a deleted segment's files.
const FILE_RELEASE_POLL: Duration = Duration::from_millis(100);
/// A deletion task gives up waiting for readers after this long and unlinks anyway (the
/// blocks are then freed when the last reader closes the file).
const FILE_RELEASE_WAIT_MAX: Duration = Duration::from_secs(600);

/// What one [`PartitionLog::enforce_retention`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments removed from the log.
    pub segments_deleted: usize,
    /// Their logical size in bytes.
    pub bytes_deleted: u64,
    /// The log start offset afterwards.
    pub log_start: Offset,
}

impl PartitionLog {
    /// Deletes the closed segments that retention or the log start offset no longer keeps
    /// (see the module docs for the rules) and moves the log start offset past them. Call it
    /// periodically from the shard; it does not await: files are renamed at once and unlinked
    /// later by a background task. `now_ms` is the wall clock in ms since the epoch.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        let config = self.shared.config.get();
        let removed = {
            let mut state = self.shared.state.borrow_mut();
            if state.status != Status::Open {
                return Err(StorageError::Closed);
            }
            let count = deletable_segments(&state, &config, now_ms);
            let removed: Vec<Segment> = state.segments.drain(..count).collect();
            if let Some(first) = state.segments.first() {
                state.log_start = state.log_start.max(first.base_offset);
            }
            let log_start = state.log_start;
            state.epochs.truncate_from_start(log_start);
            state.aborted.retain_from(log_start);
            removed
        };
        let mut outcome = RetentionOutcome {
            segments_deleted: removed.len(),
            bytes_deleted: removed.iter().map(|segment| segment.size_bytes).sum(),
            log_start: self.log_start_offset(),
        };
        for segment in removed {
            tracing::debug!(dir = %self.shared.dir.display(), segment = %segment.base_offset,
                bytes = segment.size_bytes, log_start = %outcome.log_start, "deleting segment");
            schedule_deletion(&self.shared.dir, segment, config.file_delete_delay_ms);
        }
        outcome.log_start = self.log_start_offset();
        Ok(outcome)
    }

    /// DeleteRecords: moves the log start offset up to `offset` (records below it become
    /// unreadable at once), persists it, and deletes the segments wholly below it; the segment
    /// that holds `offset` stays, and reads start at `offset` within it. Returns the log start
    /// offset afterwards (the low watermark), which is never lowered. `offset` above the high
    /// watermark (or negative) is `OffsetOutOfRange`.
    pub async fn delete_records_before(&self, offset: Offset) -> Result<Offset, StorageError> {
        {
            let mut state = self.shared.state.borrow_mut();
            if let Some(failure) = &state.failure {
                return Err(StorageError::Io(failure.to_error()));
            }
            if state.status != Status::Open {
                return Err(StorageError::Closed);
            }
            if offset < Offset(0) || offset > state.durable_end {
                return Err(StorageError::OffsetOutOfRange {
                    requested: offset,
                    log_start: state.log_start,
                    durable_end: state.durable_end,
                });
            }
            if offset <= state.log_start {
                return Ok(state.log_start);
            }
            state.log_start = offset;
            state.epochs.truncate_from_start(offset);
            state.aborted.retain_from(offset);
        }
        // DeleteRecords calls may finish out of order: write the value current at our turn.
        self.persist_offset_file(LOG_START_FILE, || self.log_start_offset())
            .await?;
        self.enforce_retention(crate::now_ms())?;
        Ok(self.log_start_offset())
    }

    /// Writes an offset checkpoint file (the log start, the cleaner checkpoint) durably.
    /// Concurrent calls queue, so files are replaced one at a time; `offset` is read when this
    /// call's turn comes, so a file never goes backwards.
    pub(crate) async fn persist_offset_file(
        &self,
        name: &'static str,
        offset: impl FnOnce() -> Offset,
    ) -> Result<(), StorageError> {
        let _permit = self
            .shared
            .checkpoint_lock
            .acquire_permit(1)
            .await
            .map_err(|_| StorageError::Closed)?;
        let offset = offset();
        let dir = self.shared.dir.clone();
        glommio::executor()
            .spawn_blocking(move || write_offset_file(&dir, name, offset))
            .await?;
        Ok(())
    }
}

/// How many segments, from the oldest, retention deletes now.
fn deletable_segments(state: &LogState, config: &LogConfig, now_ms: i64) -> usize {
    if state.cleaning || state.truncating {
        // The cleaner is replacing segments, or a truncation is cutting them: the next tick
        // applies retention.
        return 0;
    }
    let segments = &state.segments;
    // Never the active segment; only segments wholly durable and not being flushed.
    let closed = segments.len().saturating_sub(1);
    let candidates = (0..closed)
        .take_while(|&number| {
            let segment = &segments[number];
            segment.end_offset <= state.durable_end
                && !state.in_flight_segments.contains(&segment.base_offset)
        })
        .count();
    let below_log_start = (0..candidates)
        .take_while(|&number| segments[number + 1].base_offset <= state.log_start)
        .count();
    if !config.retention_delete {
        return below_log_start;
    }
    let too_old = if config.retention_ms < 0 {
        0
    } else {
        (0..candidates)
            .take_while(|&number| {
                now_ms.saturating_sub(segments[number].largest_timestamp_ms()) > config.retention_ms
            })
            .count()
    };
    let mut count = below_log_start.max(too_old);
    if config.retention_bytes >= 0 {
        let mut remaining: u64 = segments[count..]
            .iter()
            .map(|segment| segment.size_bytes)
            .sum();
        while count < candidates {
            let size = segments[count].size_bytes;
            if remaining.saturating_sub(size) < config.retention_bytes as u64 {
                break;
            }
            remaining -= size;
            count += 1;
        }
    }
    count
}

/// `<path>.deleted`.
pub(crate) fn deleted_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(DELETED_SUFFIX);
    PathBuf::from(name)
}

/// Renames a file to `<path>.deleted`; `Ok(None)` if it was already gone.
pub(crate) fn mark_deleted(path: &Path) -> io::Result<Option<PathBuf>> {
    let target = deleted_path(path);
    match std::fs::rename(path, &target) {
        Ok(()) => Ok(Some(target)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Renames a removed segment's files to `*.deleted` now (the `.log` first, so that a crash
/// in between leaves no segment that recovery would load), and unlinks them later, off the
/// shard.
fn schedule_deletion(dir: &Path, segment: Segment, delay_ms: u64) {
    let mut renamed = Vec::with_capacity(3);
    for path in segment::segment_file_paths(dir, segment.base_offset) {
        match mark_deleted(&path) {
            Ok(target) => renamed.extend(target),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot rename a deleted segment file")
            }
        }
    }
    schedule_unlink(segment, renamed, delay_ms);
}

/// Closes a segment removed from the log and unlinks its files, already renamed to `renamed`,
/// after `delay_ms` and once no read holds them, off the shard.
pub(crate) fn schedule_unlink(segment: Segment, renamed: Vec<PathBuf>, delay_ms: u64) {
    glommio::spawn_local(async move {
        glommio::timer::sleep(Duration::from_millis(delay_ms)).await;
        // Reads that cloned the files before the segment left the log may still use them;
        // closing the last descriptor of an unlinked file on the shard would free its blocks
        // here, so wait for them.
        let mut waited = Duration::ZERO;
        while Rc::strong_count(&segment.log_file) > 1 && waited < FILE_RELEASE_WAIT_MAX {
            glommio::timer::sleep(FILE_RELEASE_POLL).await;
            waited += FILE_RELEASE_POLL;
        }
        if let Err(error) = segment.close().await {
            tracing::warn!(%error, "closing a deleted segment failed");
        }
        unlink_in_background(renamed).await;
    })
    .detach();
}

/// Unlinks files on glommio's blocking thread pool; missing files are fine. Large files are
/// first cut down in [`TRUNCATE_STEP_BYTES`] steps with a pause between them: unlinking a
/// large file frees all its blocks in one journal transaction, which the group commits'
/// `fdatasync`s then wait behind; small steps keep each transaction short, as RocksDB's delete
/// scheduler does. Measured (200 MB/s of 1 KiB records, acks=all, 4 partitions, 512 MiB segments
/// deleted by retention.bytes, 16 deletions in 70 s, alternating binaries): produce p99
/// 207 / 232 ms with a plain unlink, 8.0 / 7.9 ms with the steps; max 314 / 380 vs 33 / 36 ms.
async fn unlink_in_background(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    glommio::executor()
        .spawn_blocking(move || {
            for path in paths {
                let removed = truncate_gradually(&path).and_then(|()| std::fs::remove_file(&path));
                match removed {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "cannot unlink a deleted segment file")
                    }
                }
            }
        })
        .await;
}

/// Bytes freed per truncation step when deleting a large file.
const TRUNCATE_STEP_BYTES: u64 = 32 * 1024 * 1024;
/// Pause between truncation steps, so that group commits' syncs get the journal in between.
const TRUNCATE_PAUSE: Duration = Duration::from_millis(5);

/// Cuts a file down to nothing in steps (blocking; run it off the shard).
fn truncate_gradually(path: &Path) -> io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut length = file.metadata()?.len();
    while length > TRUNCATE_STEP_BYTES {
        length -= TRUNCATE_STEP_BYTES;
        file.set_len(length)?;
        std::thread::sleep(TRUNCATE_PAUSE);
    }
    Ok(())
}

/// Removes what an earlier run left in `dir`: indexes whose segment is gone are removed at
/// once (they are small, and a new segment may soon take their name), files renamed for
/// deletion are unlinked in the background. `bases` are the segments found.
pub(crate) fn unlink_leftovers(dir: &Path, bases: &[Offset]) -> io::Result<()> {
    let mut renamed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if !segment::is_leftover_file(name, |base| bases.binary_search(&base).is_ok()) {
            continue;
        }
        if name.ends_with(DELETED_SUFFIX) {
            renamed.push(entry.path());
        } else {
            tracing::info!(path = %entry.path().display(), "removing an index without a segment");
            match std::fs::remove_file(entry.path()) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
    }
    if !renamed.is_empty() {
        tracing::info!(dir = %dir.display(), files = renamed.len(), "unlinking files left by deleted segments");
        glommio::spawn_local(unlink_in_background(renamed)).detach();
    }
    Ok(())
}

/// A persisted offset file (`log-start-offset`, `cleaner-offset-checkpoint`), if any. A file
/// that cannot be parsed is ignored with a warning (for the log start: the log then starts at
/// its first segment, as if no records had been deleted; for the cleaner: it cleans again).
pub(crate) fn read_offset_file(dir: &Path, name: &str) -> io::Result<Option<Offset>> {
    let text = match std::fs::read_to_string(dir.join(name)) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut lines = text.lines();
    let parsed = match (lines.next(), lines.next().map(str::parse::<i64>)) {
        (Some(OFFSET_FILE_FORMAT_VERSION), Some(Ok(offset))) if offset >= 0 => Some(Offset(offset)),
        _ => None,
    };
    if parsed.is_none() {
        tracing::warn!(dir = %dir.display(), "ignoring an unreadable {name} file");
    }
    Ok(parsed)
}

/// Replaces an offset file atomically and durably (blocking: run it off the shard).
fn write_offset_file(dir: &Path, name: &str, offset: Offset) -> io::Result<()> {
    let temporary = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(format!("{OFFSET_FILE_FORMAT_VERSION}\n{}\n", offset.0).as_bytes())?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&temporary, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
