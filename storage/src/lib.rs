//! `spate-storage`: one partition's log on disk.
//!
//! # A tour
//!
//! - [`PartitionLog`] is the handle the engine holds for one partition. It is owned by the shard
//!   (glommio `LocalExecutor`) that leads the partition, is `!Send`, and is cheap to clone
//!   (an `Rc` inside). It offers `append` (synchronous: validate, assign offsets, copy into the
//!   pending buffer), `wait_durable` (resolves after the group commit that covers an offset),
//!   `read` (whole batches below an upper bound the caller gives: its high watermark or last
//!   stable offset, never past the durable end), timestamp look-ups, retention, `close` and
//!   `delete`. The log knows nothing of watermarks: its durable end is what it has written
//!   and synced, and it calls the listener of [`PartitionLog::on_durable_end_advanced`] when
//!   that moves.
//! - [`batch`] validates Kafka record batches (magic v2) through a zero-copy view of the 61-byte
//!   header ([`batch::BatchHeader`]) and describes them as [`batch::BatchInfo`].
//! - `producer_state` keeps, per idempotent producer, its epoch and last five batches, so that
//!   retries are answered with the original offsets and gaps are refused;
//!   `producer_snapshot` writes that table at each roll (`<offset>.snapshot`) and loads it
//!   on open, so recovery reads only the segments after the newest snapshot.
//! - `replica` appends the batches a follower fetched, with the offsets and epochs their
//!   leader assigned ([`PartitionLog::append_replicated`]); `truncate` cuts a log's tail
//!   ([`PartitionLog::truncate_to`]) or restarts it empty at an offset
//!   ([`PartitionLog::truncate_fully_and_start_at`]), crash-safely and in place, so every
//!   handle stays valid.
//! - [`high_watermark`] keeps a replicated partition's high watermark across restarts
//!   (`high-watermark-checkpoint`, written by the engine), trusted at open only while the
//!   batch below it is still in the log with the same leader epoch
//!   ([`PartitionLog::restored_high_watermark`]).
//! - `appender` owns the pending write buffer: 4 KiB-aligned DMA chunks that `append` copies
//!   batches into, including the rule for rolling segments. A batch the engine received
//!   straight into DMA chunks ([`ReceivedBatch`], placed by [`PartitionLog::receive_front`]) is
//!   adopted by [`PartitionLog::append_received`] without a copy: the socket read is then the
//!   payload's only copy.
//! - `flusher` is the background task of each log: it takes everything pending, writes it with
//!   O_DIRECT, issues one `fdatasync` (the group commit), advances the durable end and wakes
//!   `wait_durable` callers. It records each group commit's `fdatasync` time and bytes into
//!   the shard's [`metrics::LogMetrics`], when the engine installed one.
//! - `segment` is one `.log` file plus its `.index` and `.timeindex`; `index` is the sparse
//!   offset index in Kafka's 8-byte format, `time_index` the sparse time index in Kafka's
//!   12-byte format; `reader` walks stored batches to serve fetches, from the
//!   [`tail_cache`] (the chunks the flusher just wrote, kept within a per-shard budget) where
//!   it holds them.
//! - `timestamps` answers ListOffsets by timestamp and max timestamp through the time index
//!   ([`PartitionLog::offset_for_timestamp`], [`PartitionLog::max_timestamp`]).
//! - `retention` deletes old segments ([`PartitionLog::enforce_retention`]), moves and persists
//!   the log start offset (also for DeleteRecords, [`PartitionLog::delete_records_before`]) and
//!   unlinks deleted files off the shard.
//! - `compaction` is the log cleaner for `cleanup.policy=compact` ([`PartitionLog::compact`]):
//!   it rewrites closed segments keeping the latest record per key, with a crash-safe swap;
//!   `records` reads the records inside a batch in place (keys, tombstones, codecs).
//! - `seam` is where the flusher's writes and syncs meet the disk, and where tests inject
//!   faults (ENOSPC, EIO, short and torn writes, failed `fdatasync`); `fuzzing` has the entry
//!   points of the fuzz targets in `storage/fuzz/`.
//! - [`txn`] holds what transactions leave in a log: markers (control batches, appended by
//!   [`PartitionLog::append_marker`]), the open transactions behind
//!   [`PartitionLog::last_stable_offset`], and the aborted-transaction index (`.txnindex`)
//!   behind [`PartitionLog::aborted_transactions`].
//! - `recovery` rebuilds the in-memory state on open (and after a truncation): it scans the
//!   last segment, truncates a torn tail, rebuilds indexes and the producer state.
//! - `segment` also holds a workaround for a glommio 0.9 bug (its polled-I/O probe is fooled by
//!   an empty first file, after which every O_DIRECT read fails with EOPNOTSUPP on disks
//!   without poll queues): `PartitionLog::open` runs it before opening any `DmaFile`.
//! - [`wakeup`] guards an executor against a lost io_uring wake-up: a watchdog thread signals
//!   an executor whose beat has stood still, so it never sleeps past its work.
//! - [`StorageError`] and [`BatchError`] are the operating errors; each variant says what the
//!   caller does about it.
//!
//! On-disk layout, as Kafka operators know it: `<dir>/00000000000000000000.log`, `.index` and
//! `.timeindex`, file names being the segment's base offset padded to 20 digits, plus
//! `<dir>/log-start-offset` once DeleteRecords has moved the log start,
//! `<dir>/cleaner-offset-checkpoint` once the cleaner has compacted the log,
//! `<dir>/leader-epoch-checkpoint`, `<dir>/high-watermark-checkpoint` (replicated partitions), and `<dir>/<offset>.snapshot` (producer state) and
//! `<base>.txnindex` (aborted transactions of a sealed segment) from the first roll on.

#![deny(missing_docs)]

mod appender;
pub mod batch;
mod compaction;
pub mod epochs;
mod error;
mod flusher;
#[doc(hidden)]
pub mod fuzzing;
pub mod high_watermark;
mod index;
mod log;
pub mod metrics;
mod producer_snapshot;
mod producer_state;
mod read_files;
mod reader;
mod received;
mod records;
mod recovery;
mod replica;
mod retention;
mod seam;
mod segment;
pub mod tail_cache;
#[cfg(test)]
mod testing;
mod time_index;
mod timestamps;
mod truncate;
pub mod txn;
pub mod wakeup;
mod zeroing;

pub use compaction::{CompactionOptions, CompactionOutcome};
pub use error::{BatchError, StorageError};
pub use log::{Appended, PartitionLog};
pub use reader::{FileRange, ReadMode, Records, RecordsPiece};
pub use received::ReceivedBatch;
pub use retention::RetentionOutcome;

/// Wall-clock milliseconds since the Unix epoch (LogAppendTime, `segment.ms`, retention).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

use std::fmt;

/// A Kafka offset: the position of a record in a partition's sequence of records.
///
/// A byte position in a file is not an offset; positions are plain `u64`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Offset(pub i64);

impl Offset {
    /// Above every offset: as a read's upper bound, "everything durable".
    pub const MAX: Offset = Offset(i64::MAX);

    /// The offset right after this one.
    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// [`LogConfig::zero_ahead_bytes`] unless set: off. 16 MiB trades tail latency for CPU and
/// throughput (see `zeroing` and BENCHMARKS.md, "Zeroes ahead").
pub const DEFAULT_ZERO_AHEAD_BYTES: u64 = 0;

/// Per-partition log settings, named after Kafka's topic configs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: a new segment starts when appending a batch would take the active
    /// (non-empty) segment over this size. At most `i32::MAX`, as in Kafka.
    pub segment_bytes: u64,
    /// `index.interval.bytes`: roughly how many bytes of batches lie between two index entries.
    pub index_interval_bytes: u64,
    /// `max.message.bytes`: the largest batch a producer may send, header included.
    pub max_message_bytes: u32,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps each batch with its
    /// append time (attributes bit 3 and maxTimestamp, CRC recomputed), as Kafka does.
    pub log_append_time: bool,
    /// Most bytes of O_DIRECT writes a flush keeps submitted at once. The disk reaches its
    /// bandwidth at a few MiB in flight (the knee `spate-tune iotune` reports as
    /// `write_in_flight_bytes`); the broker sets this from its io-properties file.
    pub write_in_flight_bytes_max: usize,
    /// How far ahead of the data a busy segment's blocks are overwritten with zeroes, so that
    /// group commits sync data without extent conversions (see `zeroing`); 0 turns it off.
    /// Spate's own setting (the broker's `--log-zero-ahead-bytes`), not a Kafka topic config.
    pub zero_ahead_bytes: u64,
    /// `segment.ms`: a new segment starts when an appended batch's maxTimestamp is more than
    /// this much later than the first batch of the active segment (wall clock since the
    /// segment was created when batches carry no timestamps), as in Kafka.
    pub segment_ms: i64,
    /// `cleanup.policy` contains `delete`: [`PartitionLog::enforce_retention`] applies
    /// `retention.ms` and `retention.bytes`.
    pub retention_delete: bool,
    /// `retention.ms`: closed segments whose largest timestamp is older than this are
    /// deleted; negative means no limit.
    pub retention_ms: i64,
    /// `retention.bytes`: the oldest closed segments are deleted while the log is larger than
    /// this; negative means no limit.
    pub retention_bytes: i64,
    /// `file.delete.delay.ms`: how long the files of a deleted segment stay (renamed to
    /// `*.deleted`) before they are unlinked, so that reads in progress can finish.
    pub file_delete_delay_ms: u64,
    /// `cleanup.policy` contains `compact`: the cleaner keeps the latest record per key (see
    /// [`PartitionLog::compact`]) and appends refuse records without a key.
    pub compact: bool,
    /// `delete.retention.ms`: how long a tombstone stays after its timestamp, so that
    /// consumers reading the log meanwhile see the deletion.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: the share of not-yet-cleaned bytes among the cleanable
    /// ones at which a compaction pass starts.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: a segment is cleaned only once its largest timestamp is at
    /// least this old.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment older than this is cleaned whatever the dirty
    /// ratio; negative means never forced.
    pub max_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            log_append_time: false,
            write_in_flight_bytes_max: 8 * 1024 * 1024,
            zero_ahead_bytes: DEFAULT_ZERO_AHEAD_BYTES,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            retention_delete: true,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            file_delete_delay_ms: 60_000,
            compact: false,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

impl LogConfig {
    /// Checks the relations the on-disk format relies on: index positions are `u32`, so a
    /// segment (at most `segment_bytes` plus one batch) must stay well below 4 GiB.
    pub(crate) fn check(&self) -> std::io::Result<()> {
        let invalid = |message: &str| {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid log config: {message}"),
            ))
        };
        if self.segment_bytes < batch::HEADER_BYTES as u64 || self.segment_bytes > i32::MAX as u64 {
            return invalid("segment.bytes must be in 61..=2147483647");
        }
        if self.max_message_bytes as u64 > i32::MAX as u64 {
            return invalid("max.message.bytes must be at most 2147483647");
        }
        if self.index_interval_bytes > i32::MAX as u64 {
            return invalid("index.interval.bytes must be at most 2147483647");
        }
        if self.segment_ms < 1 {
            return invalid("segment.ms must be at least 1");
        }
        if self.zero_ahead_bytes > 1 << 30 {
            return invalid("the zero-ahead lead must be at most 1 GiB");
        }
        Ok(())
    }
}
