//! Opening a log: finding its segments, the logical end of each, and the state to resume from.
//!
//! A segment file may be longer than its logical content: the flusher pads the last block
//! with zeros and preallocates (growing the file), and a crash can tear the last write. So the logical end is
//! found by walking batches until the first one that is incomplete, fails its CRC, or does not
//! carry the next expected offset; the file is then cut there.
//!
//! - Sealed (older) segments: their indexes are loaded; the walk starts at the last offset
//!   index entry, once the batch there is checked to end at the entry's offset (otherwise both
//!   indexes are rebuilt from position 0). Entries missing after it are added. The time index
//!   is trusted up to that point, because the flusher writes and syncs it before the offset
//!   index when the segment is sealed; its last entry gives the segment's largest timestamp so
//!   far, and the walk the rest. A segment without any time index entry (written before time
//!   indexes existed, whose index was lost, or sealed just before a crash that came before its
//!   index files were written) is walked from position 0.
//! - The active (last) segment is walked from position 0: every batch is CRC-checked, both
//!   indexes are rebuilt (their files are written only when a segment is sealed or the log
//!   closes, so after a crash they are missing or stale), and its batches are recorded in
//!   the producer state, which starts from the newest producer snapshot and the sealed
//!   segments after it (see `producer_snapshot`; without one, from the first segment).
//! - Files left by retention (`*.deleted`, indexes without a `.log`) are unlinked in the
//!   background, off the shard.

use crate::appender::{ActiveSegment, Appender};
use crate::batch::{BatchInfo, StoredBatch};
use crate::epochs::{self, LeaderEpochCache};
use crate::index::{self, IndexCadence, IndexEntry, OffsetIndex};
use crate::producer_state::ProducerStateTable;
use crate::reader::{SegmentWindow, READ_WINDOW_BYTES};
use crate::segment::{self, align_down, Segment, SegmentFiles};
use crate::time_index::{self, TimeIndex, TimeIndexEntry, TimeTracker};
use crate::txn::AbortedTxns;
use crate::{LogConfig, Offset};
use glommio::io::DmaFile;
use std::io;
use std::path::Path;
use std::rc::Rc;

/// What `PartitionLog::open` resumes from.
pub(crate) struct RecoveredLog {
    /// At least one; the last is the active segment.
    pub segments: Vec<Segment>,
    pub producers: ProducerStateTable,
    /// The aborted transactions (see `txn`).
    pub aborted: AbortedTxns,
    pub appender: Appender,
    /// From the checkpoint file, cut to the recovered end, plus the epochs of the active
    /// segment's batches.
    pub epochs: LeaderEpochCache,
}

pub(crate) async fn recover(dir: &Path, config: &LogConfig) -> io::Result<RecoveredLog> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            segment::sync_directory(parent).await?;
        }
    }
    segment::probe_device_once(dir).await?;
    crate::compaction::finish_interrupted_swaps(dir).await?;
    let bases = list_segments(dir)?;
    crate::retention::unlink_leftovers(dir, &bases)?;
    let Some((&active_base, sealed_bases)) = bases.split_last() else {
        let segment = Segment::create(dir, Offset(0)).await?;
        let appender = Appender::new(ActiveSegment::empty(Offset(0), crate::now_ms()));
        // A log whose segments are all gone has no epochs left either.
        let mut epochs =
            LeaderEpochCache::from_entries(epochs::read_checkpoint(dir)?.unwrap_or_default());
        epochs.truncate_from_end(Offset(0));
        return Ok(RecoveredLog {
            segments: vec![segment],
            producers: ProducerStateTable::default(),
            aborted: AbortedTxns::default(),
            appender,
            epochs,
        });
    };
    let mut segments = Vec::with_capacity(bases.len());
    for (number, &base) in sealed_bases.iter().enumerate() {
        segments.push(recover_sealed_segment(dir, base, bases[number + 1], config).await?);
    }
    let checkpoint = epochs::read_checkpoint(dir)?;
    // From a snapshot and the sealed segments after it; the active segment's batches next.
    let (producers, mut aborted) =
        crate::producer_snapshot::load(dir, &segments, active_base).await?;
    let (active, producers, appender, active_epochs) =
        recover_active_segment(dir, active_base, config, producers, &mut aborted).await?;
    if let Some(previous) = segments.last() {
        if previous.end_offset != active.base_offset {
            tracing::warn!(dir = %dir.display(), end = %previous.end_offset, next = %active.base_offset,
                "offsets missing between segments");
        }
    }
    segments.push(active);
    let seeded = checkpoint.is_none();
    let mut epochs = LeaderEpochCache::from_entries(checkpoint.unwrap_or_default());
    if seeded {
        // Written before the checkpoint existed: the first batch's epoch from the start.
        if let Some((epoch, offset)) = first_batch_epoch(&segments[0]).await? {
            epochs.assign(epoch, offset);
        }
    }
    let log_end = segments[segments.len() - 1].end_offset;
    epochs.truncate_from_end(log_end);
    // The active segment may begin with batches of an older epoch, which the checkpoint
    // already has (Kafka's `LogSegment.recover`).
    for (epoch, offset) in active_epochs {
        epochs.assign_if_newer(epoch, offset);
    }
    Ok(RecoveredLog {
        segments,
        producers,
        aborted,
        appender,
        epochs,
    })
}

/// The leader epoch and base offset of a segment's first batch, if it has an intact one.
async fn first_batch_epoch(segment: &Segment) -> io::Result<Option<(i32, Offset)>> {
    let mut window = SegmentWindow::new(
        &segment.log_file,
        segment.size_bytes,
        READ_WINDOW_BYTES / 16,
    );
    Ok(match window.batch_at(0, false).await? {
        StoredBatch::Complete(info) => {
            Some((info.partition_leader_epoch, Offset(info.base_offset)))
        }
        _ => None,
    })
}

/// Base offsets of the `.log` files in `dir`, ascending.
fn list_segments(dir: &Path) -> io::Result<Vec<Offset>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(base) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_log_file_name)
        {
            bases.push(base);
        }
    }
    bases.sort();
    Ok(bases)
}

/// Where a walk over a segment ended.
pub(crate) struct ScanOutcome {
    pub end_position: u64,
    pub end_offset: Offset,
    /// Index entries for the batches walked (Kafka's cadence, from the start of the walk).
    pub entries: Vec<IndexEntry>,
    pub cadence: IndexCadence,
    /// Time index entries for the batches walked, and the max timestamp after them.
    pub time_entries: Vec<TimeIndexEntry>,
    pub time: TimeTracker,
    /// maxTimestamp of the first batch walked.
    pub first_batch_timestamp: Option<i64>,
}

/// Which offsets a walk accepts after a batch.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sequence {
    /// Exactly the next offset: the active segment, which compaction never touches.
    Contiguous,
    /// Any higher offset: sealed segments, where compaction leaves gaps.
    Gaps,
}

/// Walks intact batches from `start_position`, whose batch must carry `start_offset` (or, with
/// gaps, a higher one), until the first that is incomplete, corrupt, or out of sequence.
/// `time` is where the segment's max timestamp stood before the start.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn scan(
    file: &DmaFile,
    file_bytes: u64,
    segment_base: Offset,
    start: (u64, Offset),
    sequence: Sequence,
    time: TimeTracker,
    config: &LogConfig,
    mut on_batch: impl FnMut(&BatchInfo),
) -> io::Result<ScanOutcome> {
    let (mut position, mut expected_offset) = start;
    let mut window = SegmentWindow::new(file, file_bytes, READ_WINDOW_BYTES);
    let mut outcome = ScanOutcome {
        end_position: position,
        end_offset: expected_offset,
        entries: Vec::new(),
        cadence: IndexCadence::default(),
        time_entries: Vec::new(),
        time,
        first_batch_timestamp: None,
    };
    while position < file_bytes {
        let StoredBatch::Complete(info) = window.batch_at(position, true).await? else {
            break;
        };
        let relative_offset = u32::try_from(info.last_offset() - segment_base.0);
        let in_sequence = match sequence {
            Sequence::Contiguous => info.base_offset == expected_offset.0,
            Sequence::Gaps => info.base_offset >= expected_offset.0,
        };
        let (true, Ok(relative_offset), Ok(index_position)) =
            (in_sequence, relative_offset, u32::try_from(position))
        else {
            break;
        };
        let indexed = outcome
            .cadence
            .next_batch(info.batch_bytes as u64, config.index_interval_bytes);
        if indexed {
            outcome.entries.push(IndexEntry {
                relative_offset,
                position: index_position,
            });
        }
        let last_offset = Offset(info.last_offset());
        outcome.time_entries.extend(outcome.time.next_batch(
            segment_base,
            info.max_timestamp,
            last_offset,
            indexed,
        ));
        outcome
            .first_batch_timestamp
            .get_or_insert(info.max_timestamp);
        on_batch(&info);
        position += info.batch_bytes as u64;
        expected_offset = last_offset.next();
    }
    outcome.end_position = position;
    outcome.end_offset = expected_offset;
    Ok(outcome)
}

/// If the batch at `entry.position` is intact and ends at the entry's offset, its base offset.
async fn check_index_entry(
    file: &DmaFile,
    file_bytes: u64,
    segment_base: Offset,
    entry: IndexEntry,
) -> io::Result<Option<Offset>> {
    let mut window = SegmentWindow::new(file, file_bytes, READ_WINDOW_BYTES / 16);
    Ok(match window.batch_at(entry.position as u64, true).await? {
        StoredBatch::Complete(info)
            if info.last_offset() == segment_base.0 + entry.relative_offset as i64 =>
        {
            Some(Offset(info.base_offset))
        }
        _ => None,
    })
}

/// Opens a sealed segment, checks its end, and repairs its indexes (compaction uses it to
/// open the segments it writes, whose indexes start empty).
pub(crate) async fn recover_sealed_segment(
    dir: &Path,
    base: Offset,
    next_base: Offset,
    config: &LogConfig,
) -> io::Result<Segment> {
    let files = Segment::open_files(dir, base).await?;
    let (file, file_bytes) = (&files.log_file, files.log_bytes);
    let loaded = OffsetIndex::decode(&files.index_bytes, file_bytes);
    let loaded_time = TimeIndex::decode(&files.time_index_bytes, u64::MAX);
    let mut index = loaded.clone();
    let mut time_index = loaded_time.clone();
    let checked_start = match (index.last(), time_index.last()) {
        (Some(entry), Some(_)) => check_index_entry(file, file_bytes, base, entry)
            .await?
            .map(|offset| (entry.position as u64, offset)),
        _ => None,
    };
    let start = checked_start.unwrap_or_else(|| {
        index = OffsetIndex::default();
        time_index = TimeIndex::default();
        (0, base)
    });
    let tracker = TimeTracker::resume(base, &time_index);
    let gaps = Sequence::Gaps;
    let mut outcome = scan(file, file_bytes, base, start, gaps, tracker, config, |_| {}).await?;
    let relative_end = (outcome.end_offset.0 - base.0).max(0) as u64;
    if time_index
        .last()
        .is_some_and(|last| last.relative_offset as u64 >= relative_end)
    {
        // The time index points past the segment's end: trust neither index, walk it all.
        index = OffsetIndex::default();
        time_index = TimeIndex::default();
        let tracker = TimeTracker::new(base);
        outcome = scan(
            file,
            file_bytes,
            base,
            (0, base),
            gaps,
            tracker,
            config,
            |_| {},
        )
        .await?;
    }
    for entry in &outcome.entries {
        index.push(*entry);
    }
    // A sealed segment's last entry holds its largest timestamp (appended at the roll).
    let mut tracker = outcome.time;
    let final_entry = tracker.entry_if_grown(base);
    for entry in outcome.time_entries.iter().chain(&final_entry) {
        if time_index.accepts(*entry) {
            time_index.push(*entry);
        }
    }
    if outcome.end_offset > next_base {
        tracing::warn!(segment = %base, end = %outcome.end_offset, next = %next_base,
            "sealed segment does not end where the next one starts");
    }
    if outcome.end_position != file_bytes {
        tracing::info!(segment = %base, logical = outcome.end_position, file = file_bytes, "trimming sealed segment");
        Segment::trim_file(file, outcome.end_position).await?;
    }
    if index != loaded {
        index::rewrite_index_file(&segment::index_file_path(dir, base), &index).await?;
    }
    if time_index != loaded_time {
        let bytes = time_index::encode_entries(time_index.entries());
        index::rewrite_file(&segment::time_index_file_path(dir, base), bytes).await?;
    }
    Ok(segment_from(base, files, (index, time_index), &outcome, 0))
}

/// The in-memory segment for recovered files.
fn segment_from(
    base_offset: Offset,
    files: SegmentFiles,
    (index, time_index): (OffsetIndex, TimeIndex),
    outcome: &ScanOutcome,
    allocated_bytes: u64,
) -> Segment {
    Segment {
        base_offset,
        log_file: Rc::new(files.log_file),
        index_entries_on_disk: index.len(),
        index,
        time_index_entries_on_disk: time_index.len(),
        time_index,
        max_timestamp: outcome.time.max_timestamp,
        offset_of_max_timestamp: outcome.time.offset_of_max_timestamp,
        last_modified_ms: files.modified_ms,
        size_bytes: outcome.end_position,
        end_offset: outcome.end_offset,
        allocated_bytes,
        zeroed_to: 0,
    }
}

/// `Ok` for a write that failed only because the disk is full (said once, as a warning).
fn tolerate_full_disk(written: io::Result<()>, dir: &Path, what: &str) -> io::Result<()> {
    match written {
        Err(error) if error.kind() == io::ErrorKind::StorageFull => {
            tracing::warn!(dir = %dir.display(), %error, "disk full: the active segment's {what} is rebuilt in memory only");
            Ok(())
        }
        other => other,
    }
}

/// What the active segment gives back: the segment, the producer state with its batches
/// recorded, the appender positioned at its end, and each (epoch, offset) where its batches'
/// leader epoch changes.
type RecoveredActive = (Segment, ProducerStateTable, Appender, Vec<(i32, Offset)>);

async fn recover_active_segment(
    dir: &Path,
    base: Offset,
    config: &LogConfig,
    mut producers: ProducerStateTable,
    aborted: &mut AbortedTxns,
) -> io::Result<RecoveredActive> {
    let files = Segment::open_files(dir, base).await?;
    let (file, file_bytes) = (&files.log_file, files.log_bytes);
    let loaded = OffsetIndex::decode(&files.index_bytes, file_bytes);
    let loaded_time = TimeIndex::decode(&files.time_index_bytes, u64::MAX);
    let mut epoch_starts: Vec<(i32, Offset)> = Vec::new();
    let opened_ms = crate::now_ms();
    let tracker = TimeTracker::new(base);
    let contiguous = Sequence::Contiguous;
    let outcome = scan(
        file,
        file_bytes,
        base,
        (0, base),
        contiguous,
        tracker,
        config,
        |info| {
            aborted.extend(producers.replay(
                info,
                Offset(info.base_offset),
                Offset(info.last_offset()),
                opened_ms,
            ));
            if epoch_starts.last().map(|&(epoch, _)| epoch) != Some(info.partition_leader_epoch) {
                epoch_starts.push((info.partition_leader_epoch, Offset(info.base_offset)));
            }
        },
    )
    .await?;
    let end_position = outcome.end_position;
    if end_position != file_bytes {
        // Usually zero padding and preallocation; after a crash, also a torn last write.
        tracing::info!(segment = %base, logical = end_position, file = file_bytes, "trimming the active segment");
        Segment::trim_file(file, end_position).await?;
    }
    // What recovery found becomes the durable end, so it must be durable: the batches may
    // have been written (O_DIRECT, into the device's cache) but never synced, by a process that
    // crashed or by a log that failed mid-flush and is being reopened.
    file.fdatasync().await?;
    let mut index = OffsetIndex::default();
    for entry in &outcome.entries {
        index.push(*entry);
    }
    let mut time_index = TimeIndex::default();
    for entry in &outcome.time_entries {
        time_index.push(*entry);
    }
    // The active segment's index files are never trusted (they are rebuilt from its batches
    // above at every open), so failing to rewrite them for lack of space costs nothing: a log
    // on a full disk still opens and serves reads.
    if index != loaded {
        let written = index::rewrite_index_file(&segment::index_file_path(dir, base), &index).await;
        tolerate_full_disk(written, dir, "offset index")?;
    }
    if time_index != loaded_time {
        let bytes = time_index::encode_entries(time_index.entries());
        let written = index::rewrite_file(&segment::time_index_file_path(dir, base), bytes).await;
        tolerate_full_disk(written, dir, "time index")?;
    }
    let tail_position = align_down(end_position);
    let tail = if tail_position == end_position {
        Vec::new()
    } else {
        file.read_at(tail_position, (end_position - tail_position) as usize)
            .await?
            .to_vec()
    };
    if tail.len() as u64 != end_position - tail_position {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "short read of the active segment's last block",
        ));
    }
    let appender = Appender::new(ActiveSegment {
        base_offset: base,
        size_bytes: end_position,
        tail,
        cadence: outcome.cadence,
        time: outcome.time,
        first_batch_timestamp: outcome.first_batch_timestamp,
        created_ms: crate::now_ms(),
    });
    let allocated_bytes = file.stat().await?.allocated_file_size;
    let segment = segment_from(base, files, (index, time_index), &outcome, allocated_bytes);
    Ok((segment, producers, appender, epoch_starts))
}

#[cfg(test)]
#[path = "recovery_tests.rs"]
pub(crate) mod tests;
