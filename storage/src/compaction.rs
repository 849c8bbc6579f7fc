//! Compaction (`cleanup.policy=compact`): rewriting closed segments so that only the latest
//! record of each key remains, as Kafka's log cleaner does.
//!
//! One pass of [`PartitionLog::compact`]:
//! 1. **Plan** (no await): the cleanable segments are the closed, durable, unflushed ones from
//!    the oldest on, stopping at the first younger than `min.compaction.lag.ms` (judged by its
//!    largest timestamp). The log is due when the dirty part (from the cleaner checkpoint, the
//!    first offset not yet cleaned, to the end of the cleanable segments) is at least
//!    `min.cleanable.dirty.ratio` of the cleanable bytes, when a dirty segment is older than
//!    `max.compaction.lag.ms`, or when a tombstone kept by an earlier pass has outlived
//!    `delete.retention.ms`.
//! 2. **Map**: the dirty segments are read record by record, keeping for each key (a 128-bit
//!    hash of it, as Kafka keeps an MD5) the offset of its latest record. The map is bounded
//!    (`map_bytes_max`): once a segment takes it past the bound, mapping stops after that
//!    segment and the rest waits for the next pass.
//! 3. **Rewrite**: the segments from the oldest to the last mapped one are grouped (a group's
//!    input at most `segment.bytes`) and each group is written as one new segment with the
//!    first one's base offset, keeping a record when no later record of its key was mapped.
//!    Records without a key are dropped (Kafka refuses them on compacted topics, and they can
//!    only come from a time before the topic was compacted); a tombstone (null value) is
//!    dropped once its timestamp is older than `delete.retention.ms`, so consumers that read
//!    the log meanwhile see the deletion. Batches keep their base offset, `lastOffsetDelta`,
//!    producer fields and codec: a batch whose records all stay is copied as it is, one that
//!    loses some is rebuilt (compressed batches are decompressed, filtered and recompressed
//!    with the same codec; CRC recomputed), one that loses all is dropped. Offsets therefore
//!    stay as they were, with gaps.
//!    Transactions are cleaned as Kafka's cleaner cleans them (KIP-98): only below the
//!    first unstable offset (every transaction there is decided), the records of committed
//!    transactions are mapped and compacted like any others, the batches of aborted ones are
//!    removed whole (they are never mapped, so they supersede nothing), and a marker stays
//!    while any batch of its transaction was still there when the pass began. A marker whose
//!    transaction's batches are all gone goes once its timestamp is older than
//!    `delete.retention.ms` (as a tombstone: consumers reading meanwhile see it), and an
//!    abort marker takes its aborted-transaction index entry with it (a read_committed
//!    consumer must never learn of an abort whose marker it cannot meet, or it would drop
//!    that producer's later, committed batches).
//! 4. **Swap**, crash-safe: the new segment is written to `<base>.<end>.cleaned` and synced,
//!    then renamed to `<base>.<end>.swap` (the commit point) and the directory synced; the old
//!    segments' files are renamed to `*.deleted`, the swap file to `<base>.log`, the directory
//!    synced, and the new segment replaces the old ones in memory in one step (reads in
//!    progress finish on the old files, which are unlinked later as retention does). On open,
//!    `*.cleaned` files are removed and a `*.swap` file completes its swap
//!    ([`finish_interrupted_swaps`]).
//!
//! The work runs on the shard at whatever priority the caller's task queue has (the engine
//! gives the cleaner a small share), yields to other tasks between batches, and can be held
//! to a byte rate (`io_bytes_per_second`). Retention waits while a pass runs on the log.

use crate::batch::{
    BatchInfo, CRC_COVERAGE_START, HEADER_BYTES, LOG_OVERHEAD_BYTES, TIMESTAMP_TYPE_LOG_APPEND_TIME,
};
use crate::error::{BatchError, StorageError};
use crate::log::{LogState, PartitionLog, Status};
use crate::reader::{SegmentWindow, READ_WINDOW_BYTES};
use crate::records;
use crate::segment::{self, Segment};
use crate::{recovery, retention, LogConfig, Offset};
use futures_lite::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriterBuilder, OpenOptions};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Name of the per-partition file holding the cleaner checkpoint (first offset not cleaned).
pub(crate) const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
const CLEANED_SUFFIX: &str = ".cleaned";
const SWAP_SUFFIX: &str = ".swap";
/// Rough memory per key in the offset map (hash, offset, table overhead).
const MAP_ENTRY_BYTES: usize = 40;

/// How a compaction pass may use the shard.
#[derive(Clone, Copy, Debug)]
pub struct CompactionOptions {
    /// Most memory the key → latest offset map may take (Kafka's
    /// `log.cleaner.dedupe.buffer.size`).
    pub map_bytes_max: usize,
    /// Most bytes read plus written per second (Kafka's `log.cleaner.io.max.bytes.per.second`);
    /// `None` for no limit.
    pub io_bytes_per_second: Option<u64>,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            map_bytes_max: 32 * 1024 * 1024,
            io_bytes_per_second: None,
        }
    }
}

/// What one compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Old segments replaced.
    pub segments_cleaned: usize,
    /// New segments written.
    pub segments_written: usize,
    /// Bytes of the old segments.
    pub bytes_before: u64,
    /// Bytes of the new segments.
    pub bytes_after: u64,
    /// Records dropped (superseded, tombstones past `delete.retention.ms`, keyless).
    pub records_removed: u64,
    /// The cleaner checkpoint afterwards: every offset below has been cleaned.
    pub cleaned_up_to: Offset,
}

/// A closed segment a pass may clean.
struct Candidate {
    base_offset: Offset,
    end_offset: Offset,
    size_bytes: u64,
    file: Rc<DmaFile>,
    largest_ms: i64,
    last_modified_ms: i64,
}

struct Plan {
    candidates: Vec<Candidate>,
    first_dirty: Offset,
    /// Index of the first candidate that holds dirty offsets.
    first_dirty_candidate: usize,
}

/// `first_unstable`: Kafka's first uncleanable offset, that of the first transaction not yet
/// decided (or decided by a marker not yet durable); nothing from there on is cleaned.
fn plan(
    state: &LogState,
    config: &LogConfig,
    now_ms: i64,
    first_unstable: Option<Offset>,
) -> Option<Plan> {
    if !config.compact
        || state.status != Status::Open
        || state.failure.is_some()
        || state.cleaning
        || state.truncating
    {
        return None;
    }
    let closed = state.segments.len().saturating_sub(1);
    let first_unstable = first_unstable.unwrap_or(Offset::MAX);
    let candidates: Vec<Candidate> = state.segments[..closed]
        .iter()
        .take_while(|segment| {
            segment.end_offset <= state.durable_end
                && segment.end_offset <= first_unstable
                && !state.in_flight_segments.contains(&segment.base_offset)
                && !state.txn_indexes_unwritten.contains(&segment.base_offset)
                && now_ms.saturating_sub(segment.largest_timestamp_ms())
                    >= config.min_compaction_lag_ms
        })
        .map(|segment| Candidate {
            base_offset: segment.base_offset,
            end_offset: segment.end_offset,
            size_bytes: segment.size_bytes,
            file: segment.log_file.clone(),
            largest_ms: segment.largest_timestamp_ms(),
            last_modified_ms: segment.last_modified_ms,
        })
        .collect();
    let end = candidates.last()?.end_offset;
    let first_dirty = state.cleaner_checkpoint.max(state.log_start);
    let first_dirty_candidate = candidates
        .iter()
        .position(|candidate| candidate.end_offset > first_dirty)
        .unwrap_or(candidates.len());
    let total: u64 = candidates
        .iter()
        .map(|candidate| candidate.size_bytes)
        .sum();
    let dirty: u64 = candidates[first_dirty_candidate..]
        .iter()
        .map(|candidate| candidate.size_bytes)
        .sum();
    let ratio_due = first_dirty < end
        && dirty > 0
        && dirty as f64 >= config.min_cleanable_dirty_ratio * total as f64;
    let lag_due = config.max_compaction_lag_ms >= 0
        && candidates[first_dirty_candidate..].iter().any(|candidate| {
            now_ms.saturating_sub(candidate.largest_ms) > config.max_compaction_lag_ms
        });
    let tombstones_due = state
        .tombstone_deadline_ms
        .is_some_and(|deadline| now_ms >= deadline);
    (ratio_due || lag_due || tombstones_due).then_some(Plan {
        candidates,
        first_dirty,
        first_dirty_candidate,
    })
}

/// Keeps a pass under its byte rate and lets other tasks of the shard run.
struct Throttle {
    bytes_per_second: Option<u64>,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    async fn account(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        if let Some(rate) = self.bytes_per_second.filter(|&rate| rate > 0) {
            let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                glommio::timer::sleep(due - elapsed).await;
            }
        }
        glommio::yield_if_needed().await;
    }
}

/// Key → offset of its latest record in the mapped part of the log.
struct OffsetMap {
    hashers: (RandomState, RandomState),
    latest: HashMap<u128, i64>,
}

impl OffsetMap {
    fn new() -> Self {
        OffsetMap {
            hashers: (RandomState::new(), RandomState::new()),
            latest: HashMap::new(),
        }
    }

    fn key_hash(&self, key: &[u8]) -> u128 {
        ((self.hashers.0.hash_one(key) as u128) << 64) | self.hashers.1.hash_one(key) as u128
    }

    fn record(&mut self, key: &[u8], offset: i64) {
        let hash = self.key_hash(key);
        let latest = self.latest.entry(hash).or_insert(offset);
        *latest = (*latest).max(offset);
    }

    fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(&self.key_hash(key)).copied()
    }

    fn bytes(&self) -> usize {
        self.latest.len() * MAP_ENTRY_BYTES
    }
}

/// Walks the stored batches of a candidate, in order.
struct BatchCursor<'file> {
    window: SegmentWindow<'file>,
    base_offset: Offset,
    position: u64,
    end_position: u64,
}

impl<'file> BatchCursor<'file> {
    fn new(candidate: &'file Candidate) -> Self {
        BatchCursor {
            window: SegmentWindow::new(&candidate.file, candidate.size_bytes, READ_WINDOW_BYTES),
            base_offset: candidate.base_offset,
            position: 0,
            end_position: candidate.size_bytes,
        }
    }

    /// The next batch and its bytes (CRC checked), or `None` at the end of the segment.
    async fn next(&mut self) -> Result<Option<(BatchInfo, &[u8])>, StorageError> {
        if self.position >= self.end_position {
            return Ok(None);
        }
        let position = self.position;
        let info = self
            .window
            .complete_batch_at(position, true, self.base_offset)
            .await?;
        self.position += info.batch_bytes as u64;
        Ok(Some((
            info,
            self.window.batch_bytes(position, &info).await?,
        )))
    }
}

/// What to do with one stored batch.
enum Filtered {
    /// Every record stays: copy the batch as it is.
    Unchanged,
    /// No record stays.
    Dropped,
    /// Some records stay: the rebuilt batch.
    Rebuilt(Vec<u8>),
}

/// The per-record rule of a pass.
struct Retain<'map> {
    map: &'map OffsetMap,
    now_ms: i64,
    delete_retention_ms: i64,
    /// Earliest time at which a tombstone or marker kept by this pass may go.
    tombstone_deadline_ms: Option<i64>,
    records_removed: u64,
    /// The aborted transactions of the cleaned range.
    aborted: &'map AbortedRanges,
    /// Producers with a batch of their current aborted (or committed) transaction read in
    /// this pass: that transaction's marker stays (Kafka's `CleanedTransactionMetadata`).
    aborted_seen: HashSet<i64>,
    committed_seen: HashSet<i64>,
    /// Abort markers this pass removes (by offset): their index entries go with them.
    removed_abort_markers: Vec<Offset>,
}

/// Each producer's aborted transactions in the cleaned range: (first offset, marker offset).
#[derive(Default)]
struct AbortedRanges(HashMap<i64, Vec<(i64, i64)>>);

impl AbortedRanges {
    fn of(entries: &[crate::txn::AbortedTxn]) -> AbortedRanges {
        let mut ranges: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for entry in entries {
            ranges
                .entry(entry.producer_id)
                .or_default()
                .push((entry.first_offset.0, entry.last_offset.0));
        }
        AbortedRanges(ranges)
    }

    /// Whether a transactional batch of `producer_id` at `offset` belongs to an aborted
    /// transaction (every transaction of the cleaned range is decided: otherwise committed).
    fn contains(&self, producer_id: i64, offset: i64) -> bool {
        self.0.get(&producer_id).is_some_and(|ranges| {
            ranges
                .iter()
                .any(|&(first, marker)| first <= offset && offset < marker)
        })
    }
}

impl Retain<'_> {
    fn keeps(&mut self, record: &records::RawRecord<'_>, offset: i64, timestamp: i64) -> bool {
        let Some(key) = record.key else {
            return false;
        };
        if self.map.latest(key).is_some_and(|latest| latest > offset) {
            return false;
        }
        if record.tombstone {
            let deadline = timestamp.saturating_add(self.delete_retention_ms);
            if self.now_ms >= deadline {
                return false;
            }
            self.tombstone_deadline_ms = Some(
                self.tombstone_deadline_ms
                    .map_or(deadline, |earliest| earliest.min(deadline)),
            );
        }
        true
    }

    /// A marker: kept while its transaction had a batch in this pass, else removed once
    /// older than `delete.retention.ms` (see the module docs).
    fn filter_marker(&mut self, info: &BatchInfo) -> Filtered {
        let Some(marker) = info.marker else {
            return Filtered::Unchanged;
        };
        let seen = if marker.commit {
            self.committed_seen.remove(&info.producer_id)
        } else {
            self.aborted_seen.remove(&info.producer_id)
        };
        let deadline = info.max_timestamp.saturating_add(self.delete_retention_ms);
        if seen || self.now_ms < deadline {
            // Kept: a pass is due again once it may go (for one seen now, its transaction's
            // aborted batches are gone by then, or its committed ones may be).
            self.tombstone_deadline_ms = Some(
                self.tombstone_deadline_ms
                    .map_or(deadline, |earliest| earliest.min(deadline)),
            );
            return Filtered::Unchanged;
        }
        if !marker.commit {
            self.removed_abort_markers.push(Offset(info.base_offset));
        }
        self.records_removed += info.record_count.max(0) as u64;
        Filtered::Dropped
    }

    fn filter(&mut self, batch: &[u8], info: &BatchInfo) -> Result<Filtered, BatchError> {
        if info.is_control() {
            return Ok(self.filter_marker(info));
        }
        if info.is_transactional() {
            if self.aborted.contains(info.producer_id, info.base_offset) {
                // An aborted transaction's batch goes whole; its marker stays this pass.
                self.aborted_seen.insert(info.producer_id);
                self.records_removed += info.record_count.max(0) as u64;
                return Ok(Filtered::Dropped);
            }
            // Committed: compacted like any batch; its marker stays this pass.
            self.committed_seen.insert(info.producer_id);
        }
        let section = records::records_section(batch, info)?;
        let log_append_time = info.attributes & TIMESTAMP_TYPE_LOG_APPEND_TIME != 0;
        let mut kept: Vec<&[u8]> = Vec::new();
        let mut kept_max_timestamp = i64::MIN;
        let mut count = 0usize;
        for record in records::iterate(&section, info.record_count) {
            let record = record?;
            count += 1;
            let timestamp = if log_append_time {
                info.max_timestamp
            } else {
                info.first_timestamp.saturating_add(record.timestamp_delta)
            };
            if self.keeps(
                &record,
                info.base_offset + record.offset_delta as i64,
                timestamp,
            ) {
                kept.push(record.bytes);
                kept_max_timestamp = kept_max_timestamp.max(timestamp);
            }
        }
        self.records_removed += (count - kept.len()) as u64;
        if kept.len() == count {
            return Ok(Filtered::Unchanged);
        }
        if kept.is_empty() {
            return Ok(Filtered::Dropped);
        }
        let raw: Vec<u8> = kept.concat();
        let body = match info.compression() {
            0 => raw,
            codec => records::compress(codec, &raw)?.to_vec(),
        };
        let mut rebuilt = Vec::with_capacity(HEADER_BYTES + body.len());
        rebuilt.extend_from_slice(&batch[..HEADER_BYTES]);
        rebuilt.extend_from_slice(&body);
        let length = (rebuilt.len() - LOG_OVERHEAD_BYTES) as i32;
        rebuilt[8..12].copy_from_slice(&length.to_be_bytes());
        if !log_append_time {
            rebuilt[35..43].copy_from_slice(&kept_max_timestamp.to_be_bytes());
        }
        rebuilt[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
        let crc = crc32c::crc32c(&rebuilt[CRC_COVERAGE_START..]);
        rebuilt[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(Filtered::Rebuilt(rebuilt))
    }
}

/// `<dir>/<base>.<end>.cleaned` or `.swap`.
fn temporary_path(dir: &Path, base: Offset, end: Offset, suffix: &str) -> PathBuf {
    dir.join(format!("{:020}.{:020}{suffix}", base.0, end.0))
}

/// Renames a segment's three files to `*.deleted`; returns the new names.
pub(crate) fn rename_for_deletion(dir: &Path, base: Offset) -> io::Result<Vec<PathBuf>> {
    let mut renamed = Vec::with_capacity(3);
    for path in segment::segment_file_paths(dir, base) {
        renamed.extend(retention::mark_deleted(&path)?);
    }
    Ok(renamed)
}

/// On open: removes `*.cleaned` files (a pass that had not committed) and completes every
/// `*.swap` (a pass that had): the segments it replaces, and their indexes, are renamed to
/// `*.deleted`, and it becomes `<base>.log`. Runs before the segments are listed.
pub(crate) async fn finish_interrupted_swaps(dir: &Path) -> io::Result<()> {
    let mut swaps = Vec::new();
    let mut log_bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(base) = segment::parse_log_file_name(name) {
            log_bases.push(base);
        } else if name.ends_with(CLEANED_SUFFIX) {
            tracing::info!(path = %entry.path().display(), "removing an unfinished compaction output");
            std::fs::remove_file(entry.path())?;
        } else if let Some(range) = name.strip_suffix(SWAP_SUFFIX) {
            let parsed = range
                .split_once('.')
                .and_then(|(base, end)| Some((base.parse().ok()?, end.parse().ok()?)));
            match parsed {
                Some((base, end)) => swaps.push((Offset(base), Offset(end), entry.path())),
                None => {
                    tracing::warn!(path = %entry.path().display(), "ignoring a file named like a compaction swap")
                }
            }
        }
    }
    if swaps.is_empty() {
        return Ok(());
    }
    for (base, end, swap) in swaps {
        tracing::info!(dir = %dir.display(), segment = %base, end = %end, "completing an interrupted compaction swap");
        for &old in log_bases.iter().filter(|&&old| old >= base && old < end) {
            rename_for_deletion(dir, old)?;
        }
        // Indexes of the first segment may remain if the crash came between its renames.
        for path in segment::segment_file_paths(dir, base).into_iter().skip(1) {
            retention::mark_deleted(&path)?;
        }
        std::fs::rename(&swap, segment::log_file_path(dir, base))?;
    }
    segment::sync_directory(dir).await
}

impl PartitionLog {
    /// Runs one compaction pass if the log is due (see the module docs); `Ok(None)` when it
    /// is not (or its topic is not compacted). `now_ms` is the wall clock in ms since the
    /// epoch. Failures leave the log as it was: a pass that fails before its commit point
    /// leaves only a `*.cleaned` file, removed at the next open.
    pub async fn compact(
        &self,
        now_ms: i64,
        options: &CompactionOptions,
    ) -> Result<Option<CompactionOutcome>, StorageError> {
        let config = self.shared.config.get();
        // A roll's `.txnindex` is written after the group commit that makes it durable: wait
        // for those in progress, so that the index this pass writes for a merged segment is
        // the last word on it (see `txn`). A failed or closing log plans nothing below.
        futures_lite::future::poll_fn(|context| {
            let mut state = self.shared.state.borrow_mut();
            if state.txn_indexes_unwritten.is_empty()
                || state.failure.is_some()
                || state.status != Status::Open
            {
                return std::task::Poll::Ready(());
            }
            state.flusher_idle_waiters.push(context.waker().clone());
            state.wake_flusher();
            std::task::Poll::Pending
        })
        .await;
        let plan = {
            let mut state = self.shared.state.borrow_mut();
            let first_unstable = state.producers.first_undecided_offset(state.durable_end);
            let Some(plan) = plan(&state, &config, now_ms, first_unstable) else {
                return Ok(None);
            };
            state.cleaning = true;
            plan
        };
        let outcome = self.run_pass(plan, &config, now_ms, options).await;
        let mut state = self.shared.state.borrow_mut();
        state.cleaning = false;
        if let Ok(outcome) = &outcome {
            state.cleaner_checkpoint = state.cleaner_checkpoint.max(outcome.cleaned_up_to);
        }
        outcome.map(Some)
    }

    /// The first offset the cleaner has not cleaned yet.
    pub fn cleaner_checkpoint(&self) -> Offset {
        self.shared.state.borrow().cleaner_checkpoint
    }

    async fn run_pass(
        &self,
        plan: Plan,
        config: &LogConfig,
        now_ms: i64,
        options: &CompactionOptions,
    ) -> Result<CompactionOutcome, StorageError> {
        let mut throttle = Throttle {
            bytes_per_second: options.io_bytes_per_second,
            started: Instant::now(),
            bytes: 0,
        };
        // The aborted transactions of every candidate (all decided: see `plan`).
        let aborted = {
            let state = self.shared.state.borrow();
            let (first, end) = (
                plan.candidates.first().map_or(Offset(0), |c| c.base_offset),
                plan.candidates.last().map_or(Offset(0), |c| c.end_offset),
            );
            AbortedRanges::of(&state.aborted.overlapping(first, end))
        };
        // Map the dirty segments, as many as the map holds.
        let mut map = OffsetMap::new();
        let mut mapped = plan.first_dirty_candidate;
        for candidate in &plan.candidates[plan.first_dirty_candidate..] {
            if map.bytes() >= options.map_bytes_max {
                break;
            }
            let mut cursor = BatchCursor::new(candidate);
            while let Some((info, batch)) = cursor.next().await? {
                // Committed transactions' records are mapped; aborted ones never supersede.
                let aborted_batch =
                    info.is_transactional() && aborted.contains(info.producer_id, info.base_offset);
                if !info.is_control() && !aborted_batch {
                    let section = records::records_section(batch, &info)?;
                    for record in records::iterate(&section, info.record_count) {
                        let record = record?;
                        let offset = info.base_offset + record.offset_delta as i64;
                        if let (Some(key), true) = (record.key, offset >= plan.first_dirty.0) {
                            map.record(key, offset);
                        }
                    }
                }
                throttle.account(info.batch_bytes).await;
            }
            mapped += 1;
        }
        // With nothing dirty (a pass for expired tombstones), the clean segments are rewritten.
        let cleaned = &plan.candidates[..mapped.max(1).min(plan.candidates.len())];
        let cleaned_up_to = cleaned
            .last()
            .map_or(plan.first_dirty, |last| last.end_offset)
            .max(plan.first_dirty);
        let mut retain = Retain {
            map: &map,
            now_ms,
            delete_retention_ms: config.delete_retention_ms,
            tombstone_deadline_ms: None,
            records_removed: 0,
            aborted: &aborted,
            aborted_seen: HashSet::new(),
            committed_seen: HashSet::new(),
            removed_abort_markers: Vec::new(),
        };
        let mut outcome = CompactionOutcome {
            cleaned_up_to,
            ..CompactionOutcome::default()
        };
        for group in groups(cleaned, config.segment_bytes) {
            let written = self
                .rewrite_group(group, &mut retain, config, &mut throttle)
                .await?;
            outcome.segments_cleaned += group.len();
            outcome.segments_written += 1;
            outcome.bytes_before += group
                .iter()
                .map(|candidate| candidate.size_bytes)
                .sum::<u64>();
            outcome.bytes_after += written;
        }
        outcome.records_removed = retain.records_removed;
        self.shared.state.borrow_mut().tombstone_deadline_ms = retain.tombstone_deadline_ms;
        self.persist_offset_file(CHECKPOINT_FILE, || cleaned_up_to)
            .await?;
        Ok(outcome)
    }

    /// Writes one group as a new segment and swaps it in; returns its size in bytes.
    async fn rewrite_group(
        &self,
        group: &[Candidate],
        retain: &mut Retain<'_>,
        config: &LogConfig,
        throttle: &mut Throttle,
    ) -> Result<u64, StorageError> {
        let dir = self.shared.dir.clone();
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return Ok(0);
        };
        let (base, end) = (first.base_offset, last.end_offset);
        let cleaned_path = temporary_path(&dir, base, end, CLEANED_SUFFIX);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&cleaned_path)
            .await
            .map_err(io::Error::from)?;
        let mut writer = DmaStreamWriterBuilder::new(file)
            .with_buffer_size(512 * 1024)
            .with_write_behind(4)
            .build();
        let mut written = 0u64;
        for candidate in group {
            let mut cursor = BatchCursor::new(candidate);
            while let Some((info, batch)) = cursor.next().await? {
                let output = match retain.filter(batch, &info)? {
                    Filtered::Unchanged => writer.write_all(batch).await.map(|()| batch.len()),
                    Filtered::Dropped => Ok(0),
                    Filtered::Rebuilt(rebuilt) => {
                        writer.write_all(&rebuilt).await.map(|()| rebuilt.len())
                    }
                }?;
                written += output as u64;
                throttle.account(info.batch_bytes + output).await;
            }
        }
        // close() flushes, syncs and cuts the file to what was written.
        writer.close().await?;
        let swap_path = temporary_path(&dir, base, end, SWAP_SUFFIX);
        std::fs::rename(&cleaned_path, &swap_path)?;
        segment::sync_directory(&dir).await?;
        // Committed: from here a crash completes the swap on open.
        let mut renamed = Vec::new();
        for candidate in group {
            renamed.push(rename_for_deletion(&dir, candidate.base_offset)?);
        }
        std::fs::rename(&swap_path, segment::log_file_path(&dir, base))?;
        // The merged segment's `.txnindex`: its sources' entries, whose offsets it kept (a
        // crash before this costs the next open a replay of the log, see `txn`).
        // Abort markers this pass removed take their entries with them; their transactions'
        // batches were gone before the pass began, so no reader can meet them.
        let aborted = {
            let mut state = self.shared.state.borrow_mut();
            state
                .aborted
                .remove_markers(&std::mem::take(&mut retain.removed_abort_markers));
            state.aborted.in_segment(base, end)
        };
        crate::txn::write_txn_index(&dir, base, &crate::txn::encode_entries(&aborted))?;
        // The new segment keeps the age of the data it holds (retention and the lag rules).
        let last_modified_ms = group
            .iter()
            .map(|candidate| candidate.last_modified_ms)
            .max();
        if let Some(modified) = last_modified_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms))
        {
            std::fs::File::options()
                .write(true)
                .open(segment::log_file_path(&dir, base))?
                .set_modified(modified)?;
        }
        segment::sync_directory(&dir).await?;
        let next_base = {
            let state = self.shared.state.borrow();
            let after = state
                .segments
                .iter()
                .find(|segment| segment.base_offset >= end);
            after.map_or(end, |segment| segment.base_offset)
        };
        let new_segment = recovery::recover_sealed_segment(&dir, base, next_base, config).await?;
        let removed: Option<Vec<Segment>> = {
            let mut state = self.shared.state.borrow_mut();
            let start = state
                .segments
                .iter()
                .position(|segment| segment.base_offset == base);
            // Retention waits while a pass runs, so the group is still there unless the log
            // was closed meanwhile (its files are then consistent on disk already).
            match start {
                Some(start) if start + group.len() <= state.segments.len() => Some(
                    state
                        .segments
                        .splice(start..start + group.len(), [new_segment])
                        .collect(),
                ),
                _ => None,
            }
        };
        let Some(removed) = removed else {
            return Err(StorageError::Closed);
        };
        let delay_ms = self.shared.config.get().file_delete_delay_ms;
        for (segment, renamed) in removed.into_iter().zip(renamed) {
            retention::schedule_unlink(segment, renamed, delay_ms);
        }
        Ok(written)
    }
}

/// Consecutive candidates whose sizes add up to at most `segment_bytes` (at least one each),
/// with offsets that fit a segment's 32-bit relative offsets.
fn groups(candidates: &[Candidate], segment_bytes: u64) -> Vec<&[Candidate]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < candidates.len() {
        let mut end = start + 1;
        let mut bytes = candidates[start].size_bytes;
        while end < candidates.len()
            && bytes + candidates[end].size_bytes <= segment_bytes
            && candidates[end].end_offset.0 - candidates[start].base_offset.0 < i32::MAX as i64
        {
            bytes += candidates[end].size_bytes;
            end += 1;
        }
        groups.push(&candidates[start..end]);
        start = end;
    }
    groups
}

#[cfg(test)]
#[path = "compaction_tests.rs"]
mod tests;
