//! [`PartitionLog`]: the handle the engine holds for one partition's log.
//!
//! Concurrency contract: a log belongs to the shard (glommio `LocalExecutor`) that opened it
//! and is `!Send`. Its state is one `RefCell<LogState>`, borrowed only between `.await`s, never
//! across one. `append` is synchronous, so appends from different connections are serialised
//! by the executor itself; the background flusher (see `flusher`) is the only writer of files.

use crate::appender::{Appender, BatchBytes, BatchToAppend};
use crate::batch::{self, BASE_OFFSET_BYTES, HEADER_BYTES, LEADER_EPOCH_BYTES};
use crate::epochs::LeaderEpochCache;
use crate::error::StorageError;
use crate::producer_state::{ProducerStateTable, SequenceCheck};
use crate::received::ReceivedBatch;
use crate::recovery::{self, RecoveredLog};
use crate::segment::{self, Segment};
use crate::txn::AbortedTxns;
use crate::{flusher, reader, retention, LogConfig, Offset};
use futures_lite::future::poll_fn;
use glommio::task::JoinHandle;
use std::cell::{Cell, RefCell};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};

/// The outcome of a successful [`PartitionLog::append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset assigned to the first record (for a duplicate: the one assigned originally).
    pub base_offset: Offset,
    /// Offset of the last record; pass it to [`PartitionLog::wait_durable`].
    pub last_offset: Offset,
    /// True when the batch was a retry of one already in the log: nothing was appended.
    pub duplicate: bool,
    /// The time stamped on the batch when the log uses LogAppendTime (milliseconds since
    /// the epoch); `None` for CreateTime logs and for duplicates.
    pub log_append_time_ms: Option<i64>,
    /// True when the batch's bytes became part of the pending write where they were received
    /// ([`PartitionLog::append_received`]), without a copy.
    pub in_place: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    /// `close` was called: appends are refused, the flusher drains what is pending.
    Closing,
    /// The segments were handed to `close`; reads are refused too.
    Closed,
}

/// The first write or sync error; every later operation reports it again.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    kind: io::ErrorKind,
    message: String,
    /// The error left nothing unknown behind: it came before any `fdatasync` failed, and it
    /// is one that goes away (no space, no quota, no descriptors). Nothing it touched was
    /// acknowledged, and recovery finds exactly what is on disk, so the log may be closed and
    /// opened again once the cause is gone ([`PartitionLog::recoverable_failure`]). A failed
    /// `fdatasync` is never recoverable: the kernel may have dropped the dirty data and
    /// cleared the error, so nothing written since the last good sync can be trusted.
    recoverable: bool,
}

impl Failure {
    pub fn to_error(&self) -> io::Error {
        io::Error::new(
            self.kind,
            format!("partition log failed earlier: {}", self.message),
        )
    }
}

/// Everything about one log that changes, behind the `RefCell` of [`LogShared`].
pub(crate) struct LogState {
    /// Sorted by base offset; the last one is the active segment. Holds only segments whose
    /// files exist (the flusher adds a new one when it writes its first bytes).
    pub segments: Vec<Segment>,
    pub appender: Appender,
    pub producers: ProducerStateTable,
    /// Which leader epoch started where (see `epochs`); the flusher writes it when dirty.
    pub epochs: LeaderEpochCache,
    pub log_start: Offset,
    /// Next offset to assign (counts pending batches).
    pub log_end: Offset,
    /// Every offset below is written and synced: the log's durable end. A partition's high
    /// watermark is at most this (on one node, exactly this); reads never go past it.
    pub durable_end: Offset,
    pub status: Status,
    pub failure: Option<Failure>,
    /// Set when `close` has closed the files.
    pub close_done: bool,
    pub flusher_waker: Option<Waker>,
    pub durable_waiters: Vec<Waker>,
    pub close_waiters: Vec<Waker>,
    pub flusher: Option<JoinHandle<()>>,
    /// Group commits done since open (one `fdatasync` per segment touched each).
    pub flush_count: u64,
    /// Segments the flusher is writing and has not published yet: retention spares them.
    pub in_flight_segments: Vec<Offset>,
    /// First offset the cleaner has not compacted (see `compaction`).
    pub cleaner_checkpoint: Offset,
    /// A compaction pass is rewriting segments: retention waits.
    pub cleaning: bool,
    /// When the earliest tombstone kept by the last compaction pass may be dropped.
    pub tombstone_deadline_ms: Option<i64>,
    /// `truncate_to` or `truncate_fully_and_start_at` runs: appends are refused
    /// (`StorageError::Truncating`), compaction and retention wait (see `truncate`).
    pub truncating: bool,
    /// The flusher is between taking work and finishing it (writes, syncs, index and
    /// checkpoint files): a truncation waits until it is not, with nothing pending.
    pub flusher_busy: bool,
    /// Woken each time the flusher finishes a round of work.
    pub flusher_idle_waiters: Vec<Waker>,
    /// Producer snapshots taken at rolls, encoded, for the flusher to write once the roll
    /// is durable (see `producer_snapshot`), each with the `.txnindex` of the segment it
    /// sealed (see `txn`).
    pub pending_snapshots: Vec<PendingSnapshot>,
    /// The aborted transactions of the log (see `txn`).
    pub aborted: AbortedTxns,
    /// Sealed segments whose `.txnindex` the flusher has yet to write: the cleaner leaves
    /// them alone until it has (its own index of a merged segment must not be overwritten).
    pub txn_indexes_unwritten: Vec<Offset>,
    /// Zeroes written ahead of the data of the active segment (see `zeroing`).
    pub zeroing: crate::zeroing::ZeroAhead,
}

/// What a roll leaves for the flusher to write once it is durable.
pub(crate) struct PendingSnapshot {
    /// The new active segment's base: the snapshot's offset.
    pub offset: Offset,
    pub snapshot: Vec<u8>,
    /// The segment the roll sealed, and its `.txnindex` bytes.
    pub sealed_base: Offset,
    pub txn_index: Vec<u8>,
}

impl LogState {
    /// The segment with this base offset (searching from the active one backwards).
    pub fn segment_mut(&mut self, base_offset: Offset) -> &mut Segment {
        let Some(segment) = self.find_segment_mut(base_offset) else {
            panic!("no segment with base offset {base_offset}");
        };
        segment
    }

    /// The segment with this base offset, if retention has not removed it.
    pub fn find_segment_mut(&mut self, base_offset: Offset) -> Option<&mut Segment> {
        let number = self.segment_number(base_offset)?;
        Some(&mut self.segments[number])
    }

    /// Like [`LogState::find_segment_mut`], to read.
    pub fn find_segment(&self, base_offset: Offset) -> Option<&Segment> {
        Some(&self.segments[self.segment_number(base_offset)?])
    }

    /// Where the segment with this base offset is in `segments` (searching from the active
    /// one backwards: the flusher asks for it most).
    fn segment_number(&self, base_offset: Offset) -> Option<usize> {
        self.segments
            .iter()
            .rposition(|segment| segment.base_offset == base_offset)
    }

    /// Puts a batch into the pending write (see `Appender::append`); when it starts a new
    /// segment, takes the producer snapshot as of that segment's base first. Call it before
    /// recording the batch in `producers`. Returns whether the batch was adopted in place.
    pub fn append_to_segment(&mut self, batch: BatchToAppend<'_>, config: &LogConfig) -> bool {
        let active_base = self.appender.active_base();
        let adopted = self.appender.append(batch, config);
        let new_base = self.appender.active_base();
        if new_base != active_base {
            let snapshot = crate::producer_snapshot::encode(&self.producers, new_base);
            let aborted = self.aborted.in_segment(active_base, new_base);
            self.pending_snapshots.push(PendingSnapshot {
                offset: new_base,
                snapshot,
                sealed_base: active_base,
                txn_index: crate::txn::encode_entries(&aborted),
            });
            self.txn_indexes_unwritten.push(active_base);
        }
        adopted
    }

    pub fn wake_flusher(&mut self) {
        if let Some(waker) = self.flusher_waker.take() {
            waker.wake();
        }
    }

    pub fn wake_durable_waiters(&mut self) {
        for waker in self.durable_waiters.drain(..) {
            waker.wake();
        }
    }

    /// Marks the log failed after a write error (not a sync error: see [`Self::fail_sync`]).
    pub fn fail(&mut self, error: &io::Error) {
        let transient = matches!(
            error.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ) || matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
        self.record_failure(error, transient);
    }

    /// Marks the log failed after an `fdatasync` error: for good.
    pub fn fail_sync(&mut self, error: &io::Error) {
        self.record_failure(error, false);
    }

    /// Marks the log failed in a way that closing and reopening it repairs: its in-memory
    /// state no longer matches the files, which recovery reads afresh (an interrupted
    /// truncation).
    pub fn fail_recoverably(&mut self, error: &io::Error) {
        self.record_failure(error, true);
    }

    fn record_failure(&mut self, error: &io::Error, recoverable: bool) {
        if self.failure.is_none() {
            self.failure = Some(Failure {
                kind: error.kind(),
                message: error.to_string(),
                recoverable,
            });
        }
        self.wake_durable_waiters();
    }
}

/// The part of a log shared by its handles and its flusher.
pub(crate) struct LogShared {
    pub dir: PathBuf,
    /// Changed in place by [`PartitionLog::set_config`] when a topic's configs change; every
    /// use reads it afresh.
    pub config: Cell<LogConfig>,
    pub state: RefCell<LogState>,
    /// Serialises writes of the log start offset file (see `retention`).
    pub checkpoint_lock: glommio::sync::Semaphore,
    /// Faults the flusher's writes and syncs inject (tests only; see `seam`).
    pub faults: RefCell<Option<Rc<crate::seam::FaultPlan>>>,
    /// Chunks the flusher wrote, kept for reads of the tail (see `tail_cache`).
    pub tail_cache: crate::tail_cache::PartitionTail,
    /// Called with the new durable end each time a group commit advances it (see
    /// [`PartitionLog::on_durable_end_advanced`]).
    pub durable_end_listener: RefCell<Option<DurableEndListener>>,
    /// The high watermark checkpointed before the open, if the log still holds it (see
    /// `high_watermark`).
    pub restored_high_watermark: Option<Offset>,
}

/// See [`PartitionLog::on_durable_end_advanced`].
pub type DurableEndListener = Box<dyn Fn(Offset)>;

impl Drop for LogShared {
    fn drop(&mut self) {
        // The flusher holds only a weak reference while idle: wake it so that it sees the log
        // is gone and ends.
        self.state.get_mut().wake_flusher();
    }
}

/// The state a log resumes from after recovery: at open, and after a truncation (which runs
/// recovery again on the cut files).
pub(crate) struct Resumed {
    /// Segments, appender, producers and epochs (cut at the log start).
    pub recovered: RecoveredLog,
    pub log_start: Offset,
    pub log_end: Offset,
    pub cleaner_checkpoint: Offset,
}

impl Resumed {
    /// Whether a high watermark checkpoint still describes this log: the batch below it is
    /// here with the epoch it had then (see `high_watermark`). One at or below the log start
    /// says nothing the log start does not.
    fn still_holds(&self, checkpoint: crate::high_watermark::HighWatermarkCheckpoint) -> bool {
        let offset = checkpoint.offset;
        offset > self.log_start
            && offset <= self.log_end
            && self.recovered.epochs.epoch_at(Offset(offset.0 - 1)) == Some(checkpoint.epoch)
    }

    /// Adds to what recovery found the log start and cleaner checkpoint from their files.
    pub fn new(dir: &Path, mut recovered: RecoveredLog) -> io::Result<Resumed> {
        let segments = &recovered.segments;
        let (Some(first), Some(active)) = (segments.first(), segments.last()) else {
            unreachable!("recovery always leaves at least one segment")
        };
        let log_end = active.end_offset;
        // DeleteRecords may have moved the start into the first segment (or past segments
        // not yet deleted); never past the end, should the tail have been lost.
        let log_start = first
            .base_offset
            .max(retention::read_offset_file(dir, retention::LOG_START_FILE)?.unwrap_or(Offset(0)))
            .min(log_end);
        let cleaner_checkpoint =
            retention::read_offset_file(dir, crate::compaction::CHECKPOINT_FILE)?
                .unwrap_or(Offset(0))
                .min(log_end);
        recovered.epochs.truncate_from_start(log_start);
        Ok(Resumed {
            recovered,
            log_start,
            log_end,
            cleaner_checkpoint,
        })
    }
}

/// A producer's batch as `append` gets it.
enum Incoming<'batch> {
    /// In a request buffer.
    Slice(&'batch [u8]),
    /// Received into DMA chunks.
    Received(ReceivedBatch),
}

impl Incoming<'_> {
    fn parts(&self) -> batch::Parts<'_> {
        match self {
            Incoming::Slice(bytes) => smallvec::smallvec![*bytes],
            Incoming::Received(received) => received.parts(),
        }
    }
}

/// One partition's log on disk, owned by the shard that leads the partition.
///
/// Cheap to clone (an `Rc` inside): request handlers keep a clone across their `.await`s.
#[derive(Clone)]
pub struct PartitionLog {
    pub(crate) shared: Rc<LogShared>,
}

impl PartitionLog {
    /// Opens the log in `dir` (creating the directory if needed) and recovers it: loads the
    /// indexes, scans the last segment, truncates a torn tail at the last intact batch, rebuilds
    /// index entries that are missing and the producer state. Spawns the background flusher on
    /// the current glommio executor. A `config` out of range (see [`LogConfig`]) is
    /// `Err(Io)` of kind `InvalidInput`.
    pub async fn open(dir: PathBuf, config: LogConfig) -> Result<PartitionLog, StorageError> {
        config.check()?;
        let recovered = recovery::recover(&dir, &config).await?;
        let resumed = Resumed::new(&dir, recovered)?;
        let restored_high_watermark = crate::high_watermark::read(&dir)
            .and_then(|checkpoint| resumed.still_holds(checkpoint).then_some(checkpoint.offset));
        let state = LogState {
            segments: resumed.recovered.segments,
            appender: resumed.recovered.appender,
            producers: resumed.recovered.producers,
            epochs: resumed.recovered.epochs,
            log_start: resumed.log_start,
            log_end: resumed.log_end,
            durable_end: resumed.log_end,
            status: Status::Open,
            failure: None,
            close_done: false,
            flusher_waker: None,
            durable_waiters: Vec::new(),
            close_waiters: Vec::new(),
            flusher: None,
            flush_count: 0,
            in_flight_segments: Vec::new(),
            cleaner_checkpoint: resumed.cleaner_checkpoint,
            cleaning: false,
            // A tombstone may have been kept before a restart: let the first pass look.
            tombstone_deadline_ms: Some(0),
            truncating: false,
            flusher_busy: false,
            flusher_idle_waiters: Vec::new(),
            pending_snapshots: Vec::new(),
            aborted: resumed.recovered.aborted,
            txn_indexes_unwritten: Vec::new(),
            zeroing: Default::default(),
        };
        let shared = Rc::new(LogShared {
            dir,
            config: Cell::new(config),
            state: RefCell::new(state),
            checkpoint_lock: glommio::sync::Semaphore::new(1),
            faults: RefCell::new(None),
            tail_cache: crate::tail_cache::PartitionTail::new(),
            durable_end_listener: RefCell::new(None),
            restored_high_watermark,
        });
        let flusher = glommio::spawn_local(flusher::run(Rc::downgrade(&shared))).detach();
        shared.state.borrow_mut().flusher = Some(flusher);
        Ok(PartitionLog { shared })
    }

    /// Validates a producer's batch, applies the idempotence checks, assigns it
    /// `baseOffset = log end offset`, and copies it (with `baseOffset` and
    /// `partitionLeaderEpoch` rewritten; the CRC does not cover them) into the pending write
    /// buffer. Returns at once: the flusher makes it durable, see [`Self::wait_durable`].
    ///
    /// A retry of one of the producer's last five batches appends nothing and returns the
    /// original offsets with `duplicate: true`.
    pub fn append(&self, batch: &[u8], leader_epoch: i32) -> Result<Appended, StorageError> {
        self.append_batch(Incoming::Slice(batch), leader_epoch)
    }

    /// [`Self::append`] for a batch received into DMA chunks: checked and patched where it
    /// lies, and adopted into the pending write without a copy if it was received at the place
    /// [`Self::receive_front`] gives now (else copied). A rejected batch's chunks go back to
    /// the pool.
    pub fn append_received(
        &self,
        batch: ReceivedBatch,
        leader_epoch: i32,
    ) -> Result<Appended, StorageError> {
        self.append_batch(Incoming::Received(batch), leader_epoch)
    }

    /// Where in its first 4 KiB block a batch of `batch_bytes` would start if appended now:
    /// receive it there ([`ReceivedBatch::new`]) for [`Self::append_received`] to adopt it.
    pub fn receive_front(&self, batch_bytes: usize) -> usize {
        let config = self.shared.config.get();
        let state = self.shared.state.borrow();
        state.appender.receive_front(batch_bytes as u64, &config)
    }

    fn append_batch(
        &self,
        batch: Incoming<'_>,
        leader_epoch: i32,
    ) -> Result<Appended, StorageError> {
        let config = self.shared.config.get();
        let parts = batch.parts();
        let info = batch::validate_client_parts(&parts, config.max_message_bytes)?;
        if config.compact && !info.is_control() {
            match &batch {
                Incoming::Slice(bytes) => crate::records::check_keys(bytes, &info)?,
                Incoming::Received(received) => {
                    crate::records::check_keys(&received.to_vec(), &info)?
                }
            }
        }
        let mut state = self.shared.state.borrow_mut();
        crate::replica::check_open(&state)?;
        if let SequenceCheck::Duplicate {
            base_offset,
            last_offset,
        } = state.producers.check(&info)?
        {
            return Ok(Appended {
                base_offset,
                last_offset,
                duplicate: true,
                log_append_time_ms: None,
                in_place: false,
            });
        }
        let base_offset = state.log_end;
        let last_offset = Offset(base_offset.0 + info.last_offset_delta as i64);
        let Some(mut header) = batch::copy_header(&parts) else {
            unreachable!("a validated batch has a header")
        };
        header[BASE_OFFSET_BYTES].copy_from_slice(&base_offset.0.to_be_bytes());
        header[LEADER_EPOCH_BYTES].copy_from_slice(&leader_epoch.to_be_bytes());
        let config = &config;
        let now_ms = crate::now_ms();
        let log_append_time_ms = config.log_append_time.then(|| {
            let records = batch::parts_after(&parts, HEADER_BYTES);
            batch::stamp_log_append_time_parts(&mut header, &records, now_ms)
        });
        drop(parts); // it borrows the batch, which moves on now
        let bytes = match batch {
            Incoming::Slice(bytes) => BatchBytes::Slices {
                header: &header,
                body: &bytes[HEADER_BYTES..],
            },
            Incoming::Received(mut received) => {
                received.set_header(&header);
                BatchBytes::Received(received)
            }
        };
        let to_append = BatchToAppend {
            bytes,
            base_offset,
            last_offset,
            max_timestamp: log_append_time_ms.unwrap_or(info.max_timestamp),
            now_ms,
        };
        let in_place = state.append_to_segment(to_append, config);
        state
            .producers
            .record(&info, base_offset, last_offset, crate::now_ms());
        // The first batch of a new epoch: the flusher writes the checkpoint before the group
        // commit that makes this batch durable.
        state.epochs.assign(leader_epoch, base_offset);
        state.log_end = last_offset.next();
        state.wake_flusher();
        Ok(Appended {
            base_offset,
            last_offset,
            duplicate: false,
            log_append_time_ms,
            in_place,
        })
    }

    /// Resolves once every offset up to `last_offset` is written and synced (the high
    /// watermark is above it). `Err(Io)` if the log failed to write or sync; `Err(Closed)` if
    /// the log closed before `last_offset` was ever appended.
    pub async fn wait_durable(&self, last_offset: Offset) -> Result<(), StorageError> {
        poll_fn(|context| {
            let mut state = self.shared.state.borrow_mut();
            if state.durable_end > last_offset {
                return Poll::Ready(Ok(()));
            }
            if let Some(failure) = &state.failure {
                return Poll::Ready(Err(StorageError::Io(failure.to_error())));
            }
            if state.status == Status::Closed {
                return Poll::Ready(Err(StorageError::Closed));
            }
            state.durable_waiters.push(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Registers the function called, on the log's shard and outside any borrow of its state,
    /// each time the durable end advances: how the partition above wakes the fetches waiting
    /// for new data, whoever appended it. Replaces an earlier one.
    pub fn on_durable_end_advanced(&self, listener: DurableEndListener) {
        *self.shared.durable_end_listener.borrow_mut() = Some(listener);
    }

    /// This replica became leader in `epoch`: the epoch starts at the log end (Kafka assigns
    /// it then, before any batch of it arrives, so that OffsetForLeaderEpoch knows where the
    /// previous epoch ended). The flusher writes the checkpoint soon after.
    pub fn assign_leader_epoch(&self, epoch: i32) {
        let mut state = self.shared.state.borrow_mut();
        let log_end = state.log_end;
        if state.epochs.assign(epoch, log_end) {
            state.wake_flusher();
        }
    }

    /// Where `epoch` ended, as OffsetForLeaderEpoch answers: `(epoch, end offset)` for the
    /// largest known epoch at or below it (the latest ends at the log end), `None` if it is
    /// above every known epoch (see [`LeaderEpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, Offset)> {
        let state = self.shared.state.borrow();
        state.epochs.end_offset_for(epoch, state.log_end)
    }

    /// The latest leader epoch and where it started, without copying the others (a
    /// follower's `last_fetched_epoch`, a leader's term start, on every replica fetch).
    pub fn latest_epoch(&self) -> Option<crate::epochs::EpochEntry> {
        self.shared.state.borrow().epochs.entries().last().copied()
    }

    /// The high watermark checkpointed before this log was opened, if the log still holds
    /// the batches below it as they were (see `high_watermark`).
    pub fn restored_high_watermark(&self) -> Option<Offset> {
        self.shared.restored_high_watermark
    }

    /// What to checkpoint for `high_watermark` (at most the durable end): it and the epoch
    /// of the batch just below it.
    pub fn high_watermark_checkpoint(
        &self,
        high_watermark: Offset,
    ) -> crate::high_watermark::HighWatermarkCheckpoint {
        let state = self.shared.state.borrow();
        let epoch = match high_watermark.0.checked_sub(1) {
            Some(below) if high_watermark > state.log_start => {
                state.epochs.epoch_at(Offset(below)).unwrap_or(-1)
            }
            _ => -1,
        };
        crate::high_watermark::HighWatermarkCheckpoint {
            offset: high_watermark,
            epoch,
        }
    }

    /// The leader epochs and where each started, oldest first.
    pub fn leader_epochs(&self) -> Vec<crate::epochs::EpochEntry> {
        self.shared.state.borrow().epochs.entries().to_vec()
    }

    /// Applies changed topic settings (`segment.bytes`, `max.message.bytes`,
    /// `message.timestamp.type`, ...) to an open log: they take effect from the next append,
    /// roll and read. Nothing already written changes.
    pub fn set_config(&self, config: LogConfig) -> Result<(), StorageError> {
        config.check()?;
        self.shared.config.set(config);
        Ok(())
    }

    /// The settings in force.
    pub fn config(&self) -> LogConfig {
        self.shared.config.get()
    }

    /// The first offset in the log.
    pub fn log_start_offset(&self) -> Offset {
        self.shared.state.borrow().log_start
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> Offset {
        self.shared.state.borrow().log_end
    }

    /// Drops the state of producers that appended nothing for `expiration_ms` (Kafka's
    /// `producer.id.expiration.ms`); returns how many.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        let mut state = self.shared.state.borrow_mut();
        state.producers.expire(now_ms, expiration_ms)
    }

    /// Producer ids with idempotence state in this log.
    pub fn producer_count(&self) -> usize {
        self.shared.state.borrow().producers.producer_count()
    }

    /// The durable end of the log: every offset below it is written and synced. Reads never
    /// go past it; the partition's high watermark is at most this.
    pub fn durable_end_offset(&self) -> Offset {
        self.shared.state.borrow().durable_end
    }

    /// Whether the log failed with an error that goes away (no space, no descriptors) before
    /// any sync failed: closing it and opening it again, once space is back, recovers it with
    /// everything acknowledged. The engine does so (`Partition` reopening).
    pub fn recoverable_failure(&self) -> bool {
        let state = self.shared.state.borrow();
        state
            .failure
            .as_ref()
            .is_some_and(|failure| failure.recoverable)
    }

    /// Whether the log failed (see [`Self::recoverable_failure`]).
    pub fn failed(&self) -> bool {
        self.shared.state.borrow().failure.is_some()
    }

    /// How many group commits (write + `fdatasync`) the flusher has done since open: a
    /// metric, and how tests see that appends share a sync.
    pub fn flush_count(&self) -> u64 {
        self.shared.state.borrow().flush_count
    }

    /// The bytes of the log's segments (Kafka's `Log` `Size` metric): what each holds up to
    /// its end, not the preallocated room after it.
    pub fn size_bytes(&self) -> u64 {
        let state = self.shared.state.borrow();
        state
            .segments
            .iter()
            .map(|segment| segment.size_bytes)
            .sum()
    }

    /// How many segments the log has: each holds one descriptor while the log is open.
    pub fn segment_count(&self) -> usize {
        self.shared.state.borrow().segments.len()
    }

    /// The directory holding this log's segments.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Whole stored batches from the one containing `fetch_offset` on that end below
    /// `upper_bound` (the caller's high watermark or last stable offset; never past the
    /// durable end: pass [`Offset::MAX`] for everything durable), at most `max_bytes` in all
    /// but always at least one whole batch if there is one (KIP-74). A `fetch_offset` at or
    /// above the bound gives empty bytes; below the log start or above the durable end is
    /// `OffsetOutOfRange`.
    pub async fn read(
        &self,
        fetch_offset: Offset,
        max_bytes: usize,
        upper_bound: Offset,
    ) -> Result<bytes::Bytes, StorageError> {
        reader::read(
            &self.shared,
            fetch_offset,
            max_bytes,
            upper_bound,
            reader::ReadMode::Copy,
        )
        .await
        .map(reader::Records::into_bytes)
    }

    /// Stops accepting appends, writes and syncs what is pending, trims the active segment to
    /// its logical size (dropping padding and preallocation), writes its index files, and
    /// closes the files. Calling it again (or concurrently) waits for the first close. Returns
    /// the log's failure, if any.
    pub async fn close(&self) -> Result<(), StorageError> {
        let flusher = {
            let mut state = self.shared.state.borrow_mut();
            if state.status == Status::Open {
                state.status = Status::Closing;
                state.wake_flusher();
                state.flusher.take()
            } else {
                None
            }
        };
        match flusher {
            Some(flusher) => {
                flusher.await;
                self.finish_close().await
            }
            None => self.wait_closed().await,
        }
    }

    async fn finish_close(&self) -> Result<(), StorageError> {
        let (mut segments, failure) = {
            let mut state = self.shared.state.borrow_mut();
            state.status = Status::Closed;
            state.wake_durable_waiters();
            self.shared.tail_cache.clear();
            (std::mem::take(&mut state.segments), state.failure.clone())
        };
        let mut outcome: io::Result<()> = Ok(());
        if let (Some(active), None) = (segments.last_mut(), &failure) {
            outcome = Segment::trim_file(&active.log_file, active.size_bytes).await;
            // The active segment's index entries were kept in memory only (see `segment`).
            let writes = flusher::unwritten_index_entries(&self.shared.dir, active, false);
            let written = flusher::write_index_files(writes).await;
            if outcome.is_ok() {
                outcome = written;
            }
        }
        for segment in segments {
            let closed = segment.close().await;
            if outcome.is_ok() {
                outcome = closed;
            }
        }
        {
            let mut state = self.shared.state.borrow_mut();
            state.close_done = true;
            for waker in state.close_waiters.drain(..) {
                waker.wake();
            }
        }
        match failure {
            Some(failure) => Err(StorageError::Io(failure.to_error())),
            None => Ok(outcome?),
        }
    }

    async fn wait_closed(&self) -> Result<(), StorageError> {
        poll_fn(|context| {
            let mut state = self.shared.state.borrow_mut();
            if state.close_done {
                return Poll::Ready(match &state.failure {
                    Some(failure) => Err(StorageError::Io(failure.to_error())),
                    None => Ok(()),
                });
            }
            state.close_waiters.push(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Closes the log, then removes its directory.
    pub async fn delete(&self) -> Result<(), StorageError> {
        let closed = self.close().await;
        let dir = self.shared.dir.clone();
        // remove_dir_all blocks (unlinking a large file takes ~0.17 s/GiB): off the shard.
        let removed = glommio::executor()
            .spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            })
            .await;
        if removed.is_ok() {
            let parent = match self.shared.dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            segment::sync_directory(parent).await?;
        }
        closed?;
        Ok(removed?)
    }
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
