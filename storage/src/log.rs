//! [`PartitionLog`]: the handle the engine holds for one partition's log.
//!
//! Concurrency contract: a log belongs to the shard (glommio `LocalExecutor`) that opened it
//! and is `!Send`. Its state is one `RefCell<LogState>`, borrowed only between `.await`s, never
//! across one. `append` is synchronous, so appends from different connections are serialised
//! by the executor itself; the background flusher (see `flusher`) is the only writer of files.

use crate::appender::Appender;
use crate::batch::{self, BASE_OFFSET_BYTES, HEADER_BYTES, LEADER_EPOCH_BYTES};
use crate::error::StorageError;
use crate::producer_state::{ProducerStateTable, SequenceCheck};
use crate::recovery::{self, RecoveredLog};
use crate::segment::{self, Segment};
use crate::{flusher, reader, LogConfig, Offset};
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
    pub log_start: Offset,
    /// Next offset to assign (counts pending batches).
    pub log_end: Offset,
    /// Every offset below is written and synced.
    pub high_watermark: Offset,
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
}

impl LogState {
    /// The segment with this base offset (searching from the active one backwards).
    pub fn segment_mut(&mut self, base_offset: Offset) -> &mut Segment {
        let found = self
            .segments
            .iter_mut()
            .rev()
            .find(|segment| segment.base_offset == base_offset);
        let Some(segment) = found else {
            panic!("no segment with base offset {base_offset}");
        };
        segment
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

    /// Marks the log failed after a write or sync error.
    pub fn fail(&mut self, error: &io::Error) {
        if self.failure.is_none() {
            self.failure = Some(Failure {
                kind: error.kind(),
                message: error.to_string(),
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
}

impl Drop for LogShared {
    fn drop(&mut self) {
        // The flusher holds only a weak reference while idle: wake it so that it sees the log
        // is gone and ends.
        self.state.get_mut().wake_flusher();
    }
}

/// One partition's log on disk, owned by the shard that leads the partition.
///
/// Cheap to clone (an `Rc` inside): request handlers keep a clone across their `.await`s.
#[derive(Clone)]
pub struct PartitionLog {
    shared: Rc<LogShared>,
}

impl PartitionLog {
    /// Opens the log in `dir` (creating the directory if needed) and recovers it: loads the
    /// indexes, scans the last segment, truncates a torn tail at the last intact batch, rebuilds
    /// index entries that are missing and the producer state. Spawns the background flusher on
    /// the current glommio executor. A `config` out of range (see [`LogConfig`]) is
    /// `Err(Io)` of kind `InvalidInput`.
    pub async fn open(dir: PathBuf, config: LogConfig) -> Result<PartitionLog, StorageError> {
        config.check()?;
        let RecoveredLog {
            segments,
            producers,
            appender,
        } = recovery::recover(&dir, &config).await?;
        let (Some(first), Some(active)) = (segments.first(), segments.last()) else {
            unreachable!("recovery always leaves at least one segment")
        };
        let (log_start, log_end) = (first.base_offset, active.end_offset);
        let state = LogState {
            segments,
            appender,
            producers,
            log_start,
            log_end,
            high_watermark: log_end,
            status: Status::Open,
            failure: None,
            close_done: false,
            flusher_waker: None,
            durable_waiters: Vec::new(),
            close_waiters: Vec::new(),
            flusher: None,
            flush_count: 0,
        };
        let shared = Rc::new(LogShared {
            dir,
            config: Cell::new(config),
            state: RefCell::new(state),
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
        let info = batch::validate_client_batch(batch, self.shared.config.get().max_message_bytes)?;
        let mut state = self.shared.state.borrow_mut();
        if let Some(failure) = &state.failure {
            return Err(StorageError::Io(failure.to_error()));
        }
        if state.status != Status::Open {
            return Err(StorageError::Closed);
        }
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
            });
        }
        let base_offset = state.log_end;
        let last_offset = Offset(base_offset.0 + info.last_offset_delta as i64);
        let mut header = [0u8; HEADER_BYTES];
        header.copy_from_slice(&batch[..HEADER_BYTES]);
        header[BASE_OFFSET_BYTES].copy_from_slice(&base_offset.0.to_be_bytes());
        header[LEADER_EPOCH_BYTES].copy_from_slice(&leader_epoch.to_be_bytes());
        let config = &self.shared.config.get();
        let log_append_time_ms = config
            .log_append_time
            .then(|| batch::stamp_log_append_time(&mut header, &batch[HEADER_BYTES..], now_ms()));
        state.appender.append(
            &header,
            &batch[HEADER_BYTES..],
            base_offset,
            last_offset,
            config,
        );
        state.producers.record(&info, base_offset, last_offset);
        state.log_end = last_offset.next();
        state.wake_flusher();
        Ok(Appended {
            base_offset,
            last_offset,
            duplicate: false,
            log_append_time_ms,
        })
    }

    /// Resolves once every offset up to `last_offset` is written and synced (the high
    /// watermark is above it). `Err(Io)` if the log failed to write or sync; `Err(Closed)` if
    /// the log closed before `last_offset` was ever appended.
    pub async fn wait_durable(&self, last_offset: Offset) -> Result<(), StorageError> {
        poll_fn(|context| {
            let mut state = self.shared.state.borrow_mut();
            if state.high_watermark > last_offset {
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

    /// The durable end of the log: consumers see offsets below it.
    pub fn high_watermark(&self) -> Offset {
        self.shared.state.borrow().high_watermark
    }

    /// How many group commits (write + `fdatasync`) the flusher has done since open: a
    /// metric, and how tests see that appends share a sync.
    pub fn flush_count(&self) -> u64 {
        self.shared.state.borrow().flush_count
    }

    /// The directory holding this log's segments.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Whole stored batches from the one containing `fetch_offset` on, below the high
    /// watermark, at most `max_bytes` in all but always at least one whole batch if there is
    /// one (KIP-74). `fetch_offset == high watermark` gives empty bytes; below the log start or
    /// above the high watermark is `OffsetOutOfRange`.
    pub async fn read(
        &self,
        fetch_offset: Offset,
        max_bytes: usize,
    ) -> Result<bytes::Bytes, StorageError> {
        reader::read(&self.shared, fetch_offset, max_bytes).await
    }

    /// Stops accepting appends, writes and syncs what is pending, trims the active segment to
    /// its logical size (dropping padding and preallocation), and closes the files. Calling it
    /// again (or concurrently) waits for the first close. Returns the log's failure, if any.
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
        let (segments, failure) = {
            let mut state = self.shared.state.borrow_mut();
            state.status = Status::Closed;
            state.wake_durable_waiters();
            (std::mem::take(&mut state.segments), state.failure.clone())
        };
        let mut outcome: io::Result<()> = Ok(());
        if let (Some(active), None) = (segments.last(), &failure) {
            outcome = Segment::trim_file(&active.log_file, active.size_bytes).await;
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

/// Wall-clock milliseconds since the Unix epoch, for LogAppendTime.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchError;
    use crate::testing::{
        encode_batch, read_all, run, same_batch, split_batches, temp_dir, BatchSpec,
    };

    fn small_segments() -> LogConfig {
        LogConfig {
            segment_bytes: 2_000,
            index_interval_bytes: 300,
            ..LogConfig::default()
        }
    }

    fn segment_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".log"))
            .collect();
        names.sort();
        names
    }

    /// Batches of 1..=4 records of 20..=200 bytes, told apart by their fill byte.
    fn varied_batches(count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|number| {
                let spec = BatchSpec::records(1 + (number % 4) as i32, 20 + (number * 37) % 181);
                encode_batch(&spec.fill(number as u8))
            })
            .collect()
    }

    #[test]
    fn log_append_time_logs_stamp_batches_and_keep_them_valid() {
        run(async {
            let dir = temp_dir();
            let config = LogConfig {
                log_append_time: true,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.path().join("stamped-0"), config)
                .await
                .unwrap();
            let before = now_ms();
            let appended = log
                .append(&encode_batch(&BatchSpec::records(3, 10)), 0)
                .unwrap();
            let stamp = appended.log_append_time_ms.expect("stamped");
            assert!(stamp >= before);
            log.wait_durable(appended.last_offset).await.unwrap();
            let stored = log.read(Offset(0), 1 << 20).await.unwrap();
            let info = batch::parse_stored_batch(&stored).expect("valid CRC after stamping");
            assert_eq!(info.max_timestamp, stamp);
            assert_ne!(info.attributes & batch::TIMESTAMP_TYPE_LOG_APPEND_TIME, 0);
            log.close().await.unwrap();
        });
    }

    #[test]
    fn round_trip_across_segment_rolls_and_reopen() {
        run(async {
            let dir = temp_dir();
            let path = dir.path().join("topic-0");
            let sent = varied_batches(40);
            let log = PartitionLog::open(path.clone(), small_segments())
                .await
                .unwrap();
            let mut expected_base = 0;
            for (number, batch) in sent.iter().enumerate() {
                let appended = log.append(batch, 7).unwrap();
                assert_eq!(appended.base_offset, Offset(expected_base));
                assert!(!appended.duplicate);
                expected_base = appended.last_offset.0 + 1;
                if number % 3 == 0 {
                    log.wait_durable(appended.last_offset).await.unwrap();
                }
            }
            assert_eq!(log.log_end_offset(), Offset(expected_base));
            log.wait_durable(Offset(expected_base - 1)).await.unwrap();
            assert_eq!(log.high_watermark(), Offset(expected_base));
            let check = |batches: &[(batch::BatchInfo, Vec<u8>)]| {
                assert_eq!(batches.len(), sent.len());
                for ((info, stored), original) in batches.iter().zip(&sent) {
                    assert!(same_batch(stored, original));
                    assert_eq!(info.partition_leader_epoch, 7);
                }
            };
            check(&read_all(&log, 1 << 20).await);
            check(&read_all(&log, 1).await);
            assert!(segment_files(&path).len() > 3, "small segments roll");
            log.close().await.unwrap();

            let reopened = PartitionLog::open(path.clone(), small_segments())
                .await
                .unwrap();
            assert_eq!(reopened.log_end_offset(), Offset(expected_base));
            assert_eq!(reopened.high_watermark(), Offset(expected_base));
            check(&read_all(&reopened, 700).await);
            let more = encode_batch(&BatchSpec::records(2, 50));
            let appended = reopened.append(&more, 8).unwrap();
            assert_eq!(appended.base_offset, Offset(expected_base));
            reopened.wait_durable(appended.last_offset).await.unwrap();
            let all = read_all(&reopened, 1 << 20).await;
            assert!(same_batch(&all[sent.len()].1, &more));
            // Sealed segments were trimmed to their logical size on roll.
            for name in segment_files(&path).iter().rev().skip(1) {
                let bytes = std::fs::read(path.join(name)).unwrap();
                assert!(bytes.len() <= 2_000, "{name} is {} bytes", bytes.len());
                assert!(
                    !split_batches(&bytes).is_empty(),
                    "{name} holds whole batches only"
                );
            }
            reopened.close().await.unwrap();
        });
    }

    #[test]
    fn reads_return_whole_batches_from_the_one_holding_the_offset() {
        run(async {
            let dir = temp_dir();
            let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
                .await
                .unwrap();
            let sent: Vec<Vec<u8>> = (0..5)
                .map(|fill| encode_batch(&BatchSpec::records(3, 100).fill(fill)))
                .collect();
            for batch in &sent {
                log.append(batch, 0).unwrap();
            }
            log.wait_durable(Offset(14)).await.unwrap();
            // Tiny max_bytes still gives one whole batch (KIP-74).
            let one = split_batches(&log.read(Offset(4), 1).await.unwrap());
            assert_eq!(one.len(), 1);
            assert_eq!(one[0].0.base_offset, 3);
            assert!(same_batch(&one[0].1, &sent[1]));
            // max_bytes bounds the total otherwise.
            let two = split_batches(&log.read(Offset(5), 2 * sent[0].len()).await.unwrap());
            assert_eq!(
                two.iter()
                    .map(|(info, _)| info.base_offset)
                    .collect::<Vec<_>>(),
                [3, 6]
            );
            let rest = split_batches(&log.read(Offset(9), 1 << 20).await.unwrap());
            assert_eq!(rest.len(), 2);
            log.close().await.unwrap();
        });
    }

    #[test]
    fn out_of_range_reads_and_unflushed_data() {
        run(async {
            let dir = temp_dir();
            let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
                .await
                .unwrap();
            assert!(
                log.read(Offset(0), 100).await.unwrap().is_empty(),
                "empty log, fetch at HW"
            );
            let appended = log
                .append(&encode_batch(&BatchSpec::records(2, 10)), 0)
                .unwrap();
            // Not yet durable: invisible, and offset 1 is above the high watermark.
            assert_eq!(log.high_watermark(), Offset(0));
            assert_eq!(log.log_end_offset(), Offset(2));
            assert!(log.read(Offset(0), 100).await.unwrap().is_empty());
            log.wait_durable(appended.last_offset).await.unwrap();
            assert!(!log.read(Offset(0), 100).await.unwrap().is_empty());
            assert!(log.read(Offset(2), 100).await.unwrap().is_empty());
            for requested in [Offset(3), Offset(-1), Offset(i64::MAX)] {
                match log.read(requested, 100).await {
                    Err(StorageError::OffsetOutOfRange {
                        requested: got,
                        log_start,
                        high_watermark,
                    }) => {
                        assert_eq!(
                            (got, log_start, high_watermark),
                            (requested, Offset(0), Offset(2))
                        );
                    }
                    other => panic!("expected OffsetOutOfRange, got {other:?}"),
                }
            }
            log.close().await.unwrap();
        });
    }

    #[test]
    fn idempotent_producers_duplicates_gaps_and_epochs() {
        run(async {
            let dir = temp_dir();
            let path = dir.path().join("p");
            let log = PartitionLog::open(path.clone(), LogConfig::default())
                .await
                .unwrap();
            let first = encode_batch(&BatchSpec::records(3, 10).producer(11, 0, 0));
            let second = encode_batch(&BatchSpec::records(2, 10).producer(11, 0, 3));
            assert_eq!(log.append(&first, 0).unwrap().base_offset, Offset(0));
            let retry = log.append(&first, 0).unwrap();
            assert_eq!(
                retry,
                Appended {
                    base_offset: Offset(0),
                    last_offset: Offset(2),
                    duplicate: true,
                    log_append_time_ms: None,
                }
            );
            assert_eq!(log.append(&second, 0).unwrap().base_offset, Offset(3));
            let gap = encode_batch(&BatchSpec::records(1, 10).producer(11, 0, 9));
            assert!(matches!(
                log.append(&gap, 0),
                Err(StorageError::OutOfOrderSequence)
            ));
            let new_epoch_bad = encode_batch(&BatchSpec::records(1, 10).producer(11, 1, 5));
            assert!(matches!(
                log.append(&new_epoch_bad, 0),
                Err(StorageError::OutOfOrderSequence)
            ));
            let new_epoch = encode_batch(&BatchSpec::records(1, 10).producer(11, 1, 0));
            assert_eq!(log.append(&new_epoch, 0).unwrap().base_offset, Offset(5));
            let stale = encode_batch(&BatchSpec::records(1, 10).producer(11, 0, 5));
            assert!(matches!(
                log.append(&stale, 0),
                Err(StorageError::InvalidProducerEpoch)
            ));
            assert_eq!(log.log_end_offset(), Offset(6));
            log.close().await.unwrap();

            // The producer state is rebuilt from the segment on reopen.
            let reopened = PartitionLog::open(path, LogConfig::default())
                .await
                .unwrap();
            let retry = reopened.append(&new_epoch, 0).unwrap();
            assert_eq!(
                retry,
                Appended {
                    base_offset: Offset(5),
                    last_offset: Offset(5),
                    duplicate: true,
                    log_append_time_ms: None,
                }
            );
            assert!(matches!(
                reopened.append(&stale, 0),
                Err(StorageError::InvalidProducerEpoch)
            ));
            reopened.close().await.unwrap();
        });
    }

    #[test]
    fn invalid_batches_are_refused_before_anything_is_appended() {
        run(async {
            let dir = temp_dir();
            let config = LogConfig {
                max_message_bytes: 200,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.path().join("p"), config)
                .await
                .unwrap();
            let mut corrupt = encode_batch(&BatchSpec::records(1, 10));
            let last = corrupt.len() - 1;
            corrupt[last] ^= 0xFF;
            assert!(matches!(
                log.append(&corrupt, 0),
                Err(StorageError::Batch(BatchError::Corrupt(_)))
            ));
            let large = encode_batch(&BatchSpec::records(1, 300));
            assert!(matches!(
                log.append(&large, 0),
                Err(StorageError::Batch(BatchError::TooLarge { .. }))
            ));
            assert_eq!(log.log_end_offset(), Offset(0));
            log.close().await.unwrap();
        });
    }

    #[test]
    fn large_batches_span_chunks_and_group_commits_share_a_sync() {
        run(async {
            let dir = temp_dir();
            let config = LogConfig {
                max_message_bytes: 4 << 20,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.path().join("p"), config)
                .await
                .unwrap();
            let big = encode_batch(&BatchSpec::records(3, 300_000).fill(0xEE));
            let mut last = Offset(0);
            for _ in 0..4 {
                last = log.append(&big, 1).unwrap().last_offset;
            }
            let small = encode_batch(&BatchSpec::records(1, 5));
            last = log
                .append(&small, 1)
                .map(|appended| appended.last_offset)
                .unwrap_or(last);
            log.wait_durable(last).await.unwrap();
            let batches = read_all(&log, 1 << 20).await;
            assert_eq!(batches.len(), 5);
            assert!(batches[..4]
                .iter()
                .all(|(_, stored)| same_batch(stored, &big)));
            assert!(same_batch(&batches[4].1, &small));
            log.close().await.unwrap();
        });
    }

    #[test]
    fn close_refuses_further_work_and_delete_removes_the_directory() {
        run(async {
            let dir = temp_dir();
            let path = dir.path().join("p");
            let log = PartitionLog::open(path.clone(), LogConfig::default())
                .await
                .unwrap();
            let appended = log
                .append(&encode_batch(&BatchSpec::records(1, 10)), 0)
                .unwrap();
            let waiter = log.clone();
            let waiting =
                glommio::spawn_local(
                    async move { waiter.wait_durable(appended.last_offset).await },
                );
            log.close().await.unwrap();
            waiting.await.unwrap(); // close flushed what was pending
            log.close().await.unwrap(); // idempotent
            let batch = encode_batch(&BatchSpec::records(1, 10));
            assert!(matches!(log.append(&batch, 0), Err(StorageError::Closed)));
            assert!(matches!(
                log.read(Offset(0), 10).await,
                Err(StorageError::Closed)
            ));
            assert!(matches!(
                log.wait_durable(Offset(5)).await,
                Err(StorageError::Closed)
            ));
            // The active segment was trimmed to its logical size, preallocation given back.
            let metadata = std::fs::metadata(path.join("00000000000000000000.log")).unwrap();
            assert_eq!(metadata.len(), batch.len() as u64);
            assert!(std::os::unix::fs::MetadataExt::blocks(&metadata) * 512 <= 64 * 1024);
            log.delete().await.unwrap();
            assert!(!path.exists());
        });
    }

    #[test]
    fn appends_made_during_a_flush_share_the_next_sync() {
        run(async {
            let dir = temp_dir();
            let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
                .await
                .unwrap();
            let batch = encode_batch(&BatchSpec::records(1, 100));
            let mut last = Offset(0);
            for _ in 0..200 {
                last = log.append(&batch, 0).unwrap().last_offset;
            }
            log.wait_durable(last).await.unwrap();
            assert_eq!(
                log.flush_count(),
                1,
                "everything appended before the flusher ran"
            );
            // Appends racing with flushes: each flush takes what arrived during the previous.
            let mut waits = Vec::new();
            for round in 0..50 {
                let appended = log.append(&batch, 0).unwrap();
                let waiter = log.clone();
                waits.push(glommio::spawn_local(async move {
                    waiter.wait_durable(appended.last_offset).await
                }));
                if round % 10 == 0 {
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            for wait in waits {
                wait.await.unwrap();
            }
            // At least one flush started during the appends and one took the rest; far
            // fewer than one per batch.
            let flushes = log.flush_count();
            assert!((3..1 + 50).contains(&flushes), "{flushes} flushes");
            assert_eq!(read_all(&log, 1 << 20).await.len(), 250);
            log.close().await.unwrap();
        });
    }

    #[test]
    fn a_failed_log_reports_its_failure_everywhere() {
        run(async {
            let dir = temp_dir();
            let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
                .await
                .unwrap();
            let batch = encode_batch(&BatchSpec::records(1, 10));
            let appended = log.append(&batch, 0).unwrap();
            log.wait_durable(appended.last_offset).await.unwrap();
            // What the flusher does when a write or fdatasync fails.
            let injected = io::Error::other("injected fdatasync failure");
            log.shared.state.borrow_mut().fail(&injected);
            assert!(matches!(log.append(&batch, 0), Err(StorageError::Io(_))));
            assert!(matches!(
                log.wait_durable(appended.last_offset.next()).await,
                Err(StorageError::Io(_))
            ));
            log.wait_durable(appended.last_offset).await.unwrap(); // what was synced stays durable
            match log.close().await {
                Err(StorageError::Io(error)) => assert!(error.to_string().contains("injected")),
                other => panic!("expected the failure, got {other:?}"),
            }
        });
    }
}
