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
pub(crate) mod tests {
    use crate::segment::{align_up, index_file_path, log_file_path};
    use crate::testing::{encode_batch, read_all, run, same_batch, temp_dir, BatchSpec};
    use crate::{LogConfig, Offset, PartitionLog};
    use proptest::prelude::*;
    use std::path::Path;

    fn config() -> LogConfig {
        LogConfig {
            index_interval_bytes: 150,
            ..LogConfig::default()
        }
    }

    /// Writes `batches` to a fresh log in `path` and closes it; returns the end offset after
    /// each batch.
    async fn write_log(path: &Path, batches: &[Vec<u8>], config: LogConfig) -> Vec<Offset> {
        let log = PartitionLog::open(path.to_path_buf(), config)
            .await
            .unwrap();
        let mut ends = Vec::new();
        for batch in batches {
            ends.push(log.append(batch, 3).unwrap().last_offset.next());
        }
        log.wait_durable(Offset(ends.last().unwrap().0 - 1))
            .await
            .unwrap();
        log.close().await.unwrap();
        ends
    }

    /// Opens the damaged log and checks it holds exactly `batches[..kept]`, then that appends
    /// continue right after them and survive another reopen.
    pub(crate) async fn check_recovered(
        path: &Path,
        batches: &[Vec<u8>],
        kept: usize,
        config: LogConfig,
    ) {
        let log = PartitionLog::open(path.to_path_buf(), config)
            .await
            .unwrap();
        let expected_end: i64 = batches[..kept]
            .iter()
            .map(|batch| record_count(batch) as i64)
            .sum();
        assert_eq!(
            log.log_end_offset(),
            Offset(expected_end),
            "kept {kept} batches"
        );
        assert_eq!(log.durable_end_offset(), Offset(expected_end));
        for max_bytes in [1, 1 << 20] {
            let stored = read_all(&log, max_bytes).await;
            assert_eq!(stored.len(), kept);
            for ((_, stored), sent) in stored.iter().zip(batches) {
                assert!(same_batch(stored, sent));
            }
        }
        let next = encode_batch(&BatchSpec::records(2, 33).fill(0xC3));
        let appended = log.append(&next, 4).unwrap();
        assert_eq!(appended.base_offset, Offset(expected_end));
        log.wait_durable(appended.last_offset).await.unwrap();
        log.close().await.unwrap();
        let reopened = PartitionLog::open(path.to_path_buf(), config)
            .await
            .unwrap();
        assert_eq!(reopened.log_end_offset(), appended.last_offset.next());
        let stored = read_all(&reopened, 1 << 20).await;
        assert!(same_batch(&stored[kept].1, &next));
        reopened.close().await.unwrap();
    }

    fn record_count(batch: &[u8]) -> i32 {
        i32::from_be_bytes(batch[57..61].try_into().unwrap())
    }

    fn small_batches() -> Vec<Vec<u8>> {
        (0..5u8)
            .map(|number| {
                encode_batch(
                    &BatchSpec::records(1 + number as i32 % 3, 40 + number as usize * 9)
                        .fill(number),
                )
            })
            .collect()
    }

    #[derive(Clone, Copy, Debug)]
    pub(crate) enum Damage {
        /// The file ends at the cut.
        Truncate,
        /// Zeros from the cut to the end of the block (an O_DIRECT write that did not land).
        ZeroTail,
        /// One byte flipped at the cut, the length kept.
        Garble,
    }

    pub(crate) fn damage(pristine: &[u8], cut: usize, damage: Damage) -> Vec<u8> {
        match damage {
            Damage::Truncate => pristine[..cut].to_vec(),
            Damage::ZeroTail => {
                let mut bytes = pristine[..cut].to_vec();
                bytes.resize(align_up(pristine.len() as u64) as usize, 0);
                bytes
            }
            Damage::Garble => {
                let mut bytes = pristine.to_vec();
                bytes[cut] ^= 0xFF;
                bytes
            }
        }
    }

    #[test]
    fn every_torn_tail_of_the_last_batch_is_cut_off() {
        run(async {
            let dir = temp_dir();
            let path = dir.path().join("p");
            let batches = small_batches();
            write_log(&path, &batches, config()).await;
            let log_path = log_file_path(&path, Offset(0));
            let index_path = index_file_path(&path, Offset(0));
            let pristine = std::fs::read(&log_path).unwrap();
            let pristine_index = std::fs::read(&index_path).unwrap();
            assert!(
                !pristine_index.is_empty(),
                "the test wants index entries to go stale"
            );
            let last_start = pristine.len() - batches[4].len();
            for cut in last_start..pristine.len() {
                for kind in [Damage::Truncate, Damage::ZeroTail, Damage::Garble] {
                    std::fs::write(&log_path, damage(&pristine, cut, kind)).unwrap();
                    std::fs::write(&index_path, &pristine_index).unwrap();
                    // partitionLeaderEpoch (bytes 12..16) is not covered by the CRC: a
                    // garbled epoch leaves an intact batch.
                    let relative = cut - last_start;
                    let survives = match kind {
                        Damage::Truncate => false,
                        // The batch may end with zeros already (an empty header count).
                        Damage::ZeroTail => pristine[cut..].iter().all(|byte| *byte == 0),
                        Damage::Garble => (12..16).contains(&relative),
                    };
                    check_recovered(&path, &batches, if survives { 5 } else { 4 }, config()).await;
                }
            }
        });
    }

    #[test]
    fn missing_stale_and_padded_files_of_sealed_segments_are_repaired() {
        run(async {
            let dir = temp_dir();
            let path = dir.path().join("p");
            let config = LogConfig {
                segment_bytes: 600,
                index_interval_bytes: 100,
                ..LogConfig::default()
            };
            let batches: Vec<Vec<u8>> = (0..24u8)
                .map(|number| encode_batch(&BatchSpec::records(2, 30).fill(number)))
                .collect();
            write_log(&path, &batches, config).await;
            let mut bases: Vec<Offset> = std::fs::read_dir(&path)
                .unwrap()
                .filter_map(|entry| {
                    crate::segment::parse_log_file_name(
                        entry.unwrap().file_name().to_str().unwrap(),
                    )
                })
                .collect();
            bases.sort();
            assert!(bases.len() >= 4);
            let indexes: Vec<Vec<u8>> = bases
                .iter()
                .map(|base| std::fs::read(index_file_path(&path, *base)).unwrap())
                .collect();
            assert!(indexes[0].len() >= 8);

            // Missing indexes are rebuilt as they were.
            for base in &bases {
                std::fs::remove_file(index_file_path(&path, *base)).unwrap();
            }
            check_recovered(&path, &batches, batches.len(), config).await;
            for (base, index) in bases.iter().zip(&indexes).take(bases.len() - 1) {
                assert_eq!(
                    &std::fs::read(index_file_path(&path, *base)).unwrap(),
                    index
                );
            }

            // Stale indexes pointing into the middle of batches are rebuilt too.
            for base in &bases {
                let garbage = crate::index::encode_entries(&[
                    crate::index::IndexEntry {
                        relative_offset: 1,
                        position: 7,
                    },
                    crate::index::IndexEntry {
                        relative_offset: 3,
                        position: 90,
                    },
                ]);
                std::fs::write(index_file_path(&path, *base), garbage).unwrap();
            }
            let batches_now = {
                let mut all = batches.clone();
                all.push(encode_batch(&BatchSpec::records(2, 33).fill(0xC3)));
                all
            };
            check_recovered(&path, &batches_now, batches_now.len(), config).await;
            assert_eq!(
                &std::fs::read(index_file_path(&path, bases[0])).unwrap(),
                &indexes[0]
            );

            // A sealed segment left padded by a crash right after a roll is trimmed.
            let sealed = log_file_path(&path, bases[1]);
            let size = std::fs::metadata(&sealed).unwrap().len();
            let mut padded = std::fs::read(&sealed).unwrap();
            padded.resize(align_up(size) as usize, 0);
            std::fs::write(&sealed, padded).unwrap();
            let log = PartitionLog::open(path.clone(), config).await.unwrap();
            assert_eq!(std::fs::metadata(&sealed).unwrap().len(), size);
            assert_eq!(read_all(&log, 1 << 20).await.len(), batches_now.len() + 1);
            log.close().await.unwrap();
        });
    }

    #[test]
    fn missing_and_garbled_time_indexes_are_rebuilt_as_written() {
        use crate::segment::time_index_file_path;
        run(async {
            let dir = temp_dir();
            let path = dir.path().join("p");
            let config = LogConfig {
                segment_bytes: 600,
                index_interval_bytes: 100,
                ..LogConfig::default()
            };
            let batches: Vec<Vec<u8>> = (0..24i64)
                .map(|number| {
                    let spec =
                        BatchSpec::timestamped(&[1_000 + number * 10, 995 + number * 10], 30);
                    encode_batch(&spec.fill(number as u8))
                })
                .collect();
            write_log(&path, &batches, config).await;
            let mut bases: Vec<Offset> = std::fs::read_dir(&path)
                .unwrap()
                .filter_map(|entry| {
                    crate::segment::parse_log_file_name(
                        entry.unwrap().file_name().to_str().unwrap(),
                    )
                })
                .collect();
            bases.sort();
            assert!(bases.len() >= 4);
            let written: Vec<Vec<u8>> = bases
                .iter()
                .map(|base| std::fs::read(time_index_file_path(&path, *base)).unwrap())
                .collect();
            assert!(written[0].len() >= 24, "cadence entries and the roll entry");
            // As if written before time indexes existed: no files at all.
            for base in &bases {
                std::fs::remove_file(time_index_file_path(&path, *base)).unwrap();
            }
            let log = PartitionLog::open(path.clone(), config).await.unwrap();
            log.close().await.unwrap();
            for (base, original) in bases.iter().zip(&written).take(bases.len() - 1) {
                let rebuilt = std::fs::read(time_index_file_path(&path, *base)).unwrap();
                assert_eq!(&rebuilt, original, "segment {base}");
            }
            // Entries that point past the segment's end: the index is rebuilt, not trusted.
            let garbage = crate::time_index::encode_entries(&[crate::time_index::TimeIndexEntry {
                timestamp: i64::MAX - 1,
                relative_offset: 10_000,
            }]);
            std::fs::write(time_index_file_path(&path, bases[0]), garbage).unwrap();
            let log = PartitionLog::open(path.clone(), config).await.unwrap();
            let (offset, timestamp) = log.max_timestamp().await.unwrap().unwrap();
            assert_eq!(timestamp, 1_000 + 23 * 10);
            assert_eq!(offset, Offset(46));
            log.close().await.unwrap();
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Cut or garble the active segment anywhere: the log keeps exactly the batches
        /// before the damage.
        #[test]
        fn damage_anywhere_keeps_the_batches_before_it(
            sizes in proptest::collection::vec((1i32..4, 0usize..300), 1..7),
            cut_fraction in 0.0f64..1.0,
            garble in any::<bool>(),
        ) {
            let batches: Vec<Vec<u8>> = sizes.iter().enumerate()
                .map(|(number, (records, value_bytes))| encode_batch(&BatchSpec::records(*records, *value_bytes).fill(number as u8)))
                .collect();
            run(async move {
                let dir = temp_dir();
                let path = dir.path().join("p");
                write_log(&path, &batches, config()).await;
                let log_path = log_file_path(&path, Offset(0));
                let pristine = std::fs::read(&log_path).unwrap();
                let cut = ((pristine.len() as f64) * cut_fraction) as usize;
                let kind = if garble { Damage::Garble } else { Damage::Truncate };
                std::fs::write(&log_path, damage(&pristine, cut, kind)).unwrap();
                let mut start = 0;
                let mut kept = 0;
                for batch in &batches {
                    let end = start + batch.len();
                    let intact = match kind {
                        Damage::Garble => !(start..end).contains(&cut) || (12..16).contains(&(cut - start)),
                        _ => end <= cut,
                    };
                    if !intact {
                        break;
                    }
                    kept += 1;
                    start = end;
                }
                check_recovered(&path, &batches, kept, config()).await;
            });
        }
    }
}
