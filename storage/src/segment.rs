//! One segment: a `.log` file of stored batches, opened as a glommio `DmaFile` (O_DIRECT),
//! its `.index` and its `.timeindex`, all named after the segment's base offset.
//!
//! Owned by the partition's `LogState` on its shard. The `.log` sits behind `Rc` so that a read
//! or the flusher can hold it across an `.await` without holding a `RefCell` borrow. Only the
//! `.log` stays open: both indexes live in memory, and their files are opened just long enough
//! to be read (recovery) or written (when the segment is sealed, and when the log closes; see
//! `flusher::unwritten_index_entries`), so that an idle partition holds one descriptor and a
//! node can hold 10,000 partitions under a 20,000 open-files limit.

use crate::index::{self, OffsetIndex};
use crate::time_index::{TimeIndex, NO_TIMESTAMP};
use crate::Offset;
use glommio::io::{Directory, DmaFile, OpenOptions};
use std::cell::RefCell;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The unit of O_DIRECT writes: buffers, file positions and lengths are multiples of it.
pub(crate) const BLOCK_BYTES: u64 = 4096;
/// How much disk the flusher reserves ahead of the writes. The reservation grows the file
/// (fallocate without keep-size), so that O_DIRECT writes overwrite allocated blocks instead of
/// extending the file: on ext4 that made group commits of 8 x 256 KiB about 1.5x faster
/// (1.0 -> 1.5-1.8 GB/s on the reference host). The file is therefore longer than its content,
/// with zeros after it, until the segment is trimmed on roll or close, or by recovery.
pub(crate) const PREALLOCATE_STEP_BYTES: u64 = 64 * 1024 * 1024;
/// The first reservation of a segment; later ones double up to [`PREALLOCATE_STEP_BYTES`], so
/// that thousands of quiet partitions do not reserve 64 MiB each.
pub(crate) const PREALLOCATE_FIRST_STEP_BYTES: u64 = 1024 * 1024;

const _: () = assert!(BLOCK_BYTES.is_power_of_two());
const _: () = assert!(PREALLOCATE_STEP_BYTES & (BLOCK_BYTES - 1) == 0);
const _: () = assert!(PREALLOCATE_FIRST_STEP_BYTES & (BLOCK_BYTES - 1) == 0);

const LOG_SUFFIX: &str = ".log";
const INDEX_SUFFIX: &str = ".index";
const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Appended to the names of a segment's files when retention removes it from the log; the
/// files are unlinked later, off the shard (see `retention`).
pub(crate) const DELETED_SUFFIX: &str = ".deleted";
const FILE_NAME_DIGITS: usize = 20;

pub(crate) fn align_down(position: u64) -> u64 {
    position & !(BLOCK_BYTES - 1)
}

pub(crate) fn align_up(position: u64) -> u64 {
    align_down(position + BLOCK_BYTES - 1)
}

/// `00000000000000000042.log` for base offset 42.
pub(crate) fn log_file_path(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(format!("{:020}{LOG_SUFFIX}", base_offset.0))
}

/// `00000000000000000042.index` for base offset 42.
pub(crate) fn index_file_path(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(format!("{:020}{INDEX_SUFFIX}", base_offset.0))
}

/// `00000000000000000042.timeindex` for base offset 42.
pub(crate) fn time_index_file_path(dir: &Path, base_offset: Offset) -> PathBuf {
    dir.join(format!("{:020}{TIME_INDEX_SUFFIX}", base_offset.0))
}

/// The files of a segment, `.log` first: its `.index`, `.timeindex` and `.txnindex` follow
/// (the last exists from the roll that sealed it, see `txn`).
pub(crate) fn segment_file_paths(dir: &Path, base_offset: Offset) -> [PathBuf; 4] {
    [
        log_file_path(dir, base_offset),
        index_file_path(dir, base_offset),
        time_index_file_path(dir, base_offset),
        crate::txn::txn_index_path(dir, base_offset),
    ]
}

/// Whether a file in a log directory is left over and may be unlinked: a segment file renamed
/// for deletion, or an index whose `.log` is gone (`has_log` says whether a base offset still
/// has one).
pub(crate) fn is_leftover_file(name: &str, has_log: impl Fn(Offset) -> bool) -> bool {
    if name.ends_with(DELETED_SUFFIX) {
        return true;
    }
    // A `<base>.txnindex.<n>.tmp` is a write a crash interrupted.
    if name.ends_with(".tmp") && name.contains(".txnindex.") {
        return true;
    }
    let digits = name
        .strip_suffix(INDEX_SUFFIX)
        .or_else(|| name.strip_suffix(TIME_INDEX_SUFFIX))
        .or_else(|| name.strip_suffix(".txnindex"));
    match digits {
        Some(digits) if digits.len() == FILE_NAME_DIGITS => match digits.parse::<i64>() {
            Ok(base) => !has_log(Offset(base)),
            Err(_) => false,
        },
        _ => false,
    }
}

/// The base offset named by a segment's `.log` file name, or `None` for any other file.
pub(crate) fn parse_log_file_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(LOG_SUFFIX)?;
    if digits.len() != FILE_NAME_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().map(Offset)
}

/// Makes the creation or removal of files in `dir` durable.
pub(crate) async fn sync_directory(dir: &Path) -> io::Result<()> {
    let directory = Directory::open(dir).await?;
    let synced = directory.sync().await;
    directory.close().await?;
    Ok(synced?)
}

thread_local! {
    /// Devices (`st_dev`) on which this shard already opened a `DmaFile` through
    /// [`probe_device_once`].
    static PROBED_DEVICES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Works around a glommio 0.9 bug before the first `DmaFile` of a shard is opened on a device.
///
/// glommio decides once per thread and device whether the device supports polled I/O
/// (io_uring IOPOLL) by reading the first block of the first `DmaFile` opened there. If that
/// file is empty, the read succeeds at end of file without reaching the device, glommio wrongly
/// concludes "pollable", and every later read of a non-empty file on that device fails with
/// EOPNOTSUPP on devices without poll queues (virtio-blk). Opening a one-block file first makes
/// the probe reach the device. Any other code that opens `DmaFile`s on the shard must call this
/// first too.
pub(crate) async fn probe_device_once(dir: &Path) -> io::Result<()> {
    let device = std::fs::metadata(dir)?.dev();
    if PROBED_DEVICES.with(|probed| probed.borrow().contains(&device)) {
        return Ok(());
    }
    let path = dir.join(".spate-dma-probe");
    match std::fs::write(&path, [0u8; BLOCK_BYTES as usize]) {
        Ok(()) => {
            let opened = DmaFile::open(&path).await;
            let removed = std::fs::remove_file(&path);
            opened?.close().await?;
            removed?;
        }
        Err(error) if error.kind() == io::ErrorKind::StorageFull => {
            // A full disk: probe with a segment already there, so that a log on a full disk
            // still opens and serves reads. A partition with no data waits for space.
            let _ = std::fs::remove_file(&path);
            let existing = non_empty_segment_file(dir).ok_or(error)?;
            DmaFile::open(&existing).await?.close().await?;
        }
        Err(error) => return Err(error),
    }
    PROBED_DEVICES.with(|probed| probed.borrow_mut().push(device));
    Ok(())
}

/// A `.log` file in `dir` of at least one block, if any.
fn non_empty_segment_file(dir: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.extension().is_some_and(|extension| extension == "log")
                && std::fs::metadata(path).is_ok_and(|metadata| metadata.len() >= BLOCK_BYTES)
        })
}

/// The files of an existing segment as recovery opens them.
pub(crate) struct SegmentFiles {
    pub log_file: DmaFile,
    /// Size of the `.log` file on disk (its logical content may be shorter).
    pub log_bytes: u64,
    pub index_bytes: Vec<u8>,
    pub time_index_bytes: Vec<u8>,
    /// The `.log` file's modification time, ms since the epoch.
    pub modified_ms: i64,
}

/// One segment of a partition's log.
pub(crate) struct Segment {
    pub base_offset: Offset,
    pub log_file: Rc<DmaFile>,
    /// Entries for the batches below `size_bytes` (in memory; the file lags behind while the
    /// segment is active, and recovery rebuilds it then).
    pub index: OffsetIndex,
    /// How many entries of `index` the index file holds.
    pub index_entries_on_disk: usize,
    /// Time index entries for the batches below `size_bytes` (the file may lag behind).
    pub time_index: TimeIndex,
    /// How many entries of `time_index` the time index file holds.
    pub time_index_entries_on_disk: usize,
    /// Largest batch max timestamp below `size_bytes`, `NO_TIMESTAMP` if none.
    pub max_timestamp: i64,
    /// Last offset of the first batch that reached `max_timestamp`.
    pub offset_of_max_timestamp: Offset,
    /// When the segment last got data (wall clock, ms): its age for retention when its
    /// batches carry no timestamps, as Kafka uses the file's modification time.
    pub last_modified_ms: i64,
    /// Logical size: every byte below is part of an intact, synced batch. The file itself may
    /// be longer (zero padding up to the next block, preallocation) while the segment is active.
    pub size_bytes: u64,
    /// The offset after the last batch below `size_bytes`.
    pub end_offset: Offset,
    /// How far the file is preallocated, 0 if never (or since its last trim).
    pub allocated_bytes: u64,
    /// How far the file's blocks are known written (data or zeroes ahead of it, see
    /// `zeroing`); 0 if unknown (a recovered segment) or since its last trim.
    pub zeroed_to: u64,
}

impl Segment {
    /// Creates the files of a new, empty segment and makes their names durable.
    pub async fn create(dir: &Path, base_offset: Offset) -> io::Result<Segment> {
        let log_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(log_file_path(dir, base_offset))
            .await?;
        // Empty index files, so that the sealed segment's entries can be written without
        // creating files (see `index::write_bytes_at`). Plain system calls (create, close):
        // through glommio each would cost an io_uring round trip, for files not used until
        // the segment is sealed.
        std::fs::File::create(index_file_path(dir, base_offset))?;
        std::fs::File::create(time_index_file_path(dir, base_offset))?;
        sync_directory(dir).await?;
        Ok(Segment {
            base_offset,
            log_file: Rc::new(log_file),
            index: OffsetIndex::default(),
            index_entries_on_disk: 0,
            time_index: TimeIndex::default(),
            time_index_entries_on_disk: 0,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            last_modified_ms: crate::now_ms(),
            size_bytes: 0,
            end_offset: base_offset,
            allocated_bytes: 0,
            zeroed_to: 0,
        })
    }

    /// Opens the `.log` of an existing segment for reading and writing (recovery may truncate
    /// it) and reads both indexes whole, closing their files (an index that was missing is
    /// created empty).
    pub async fn open_files(dir: &Path, base_offset: Offset) -> io::Result<SegmentFiles> {
        let log_path = log_file_path(dir, base_offset);
        let modified_ms = std::fs::metadata(&log_path)?
            .modified()
            .ok()
            .and_then(|modified| modified.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(crate::now_ms, |since| since.as_millis() as i64);
        let log_file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(log_path)
            .await?;
        let log_bytes = log_file.file_size().await?;
        let index_bytes = index::read_index_file(&index_file_path(dir, base_offset)).await?;
        let time_index_bytes =
            index::read_index_file(&time_index_file_path(dir, base_offset)).await?;
        Ok(SegmentFiles {
            log_file,
            log_bytes,
            index_bytes,
            time_index_bytes,
            modified_ms,
        })
    }

    /// Cuts the file down to its logical size, dropping the zero padding and the preallocated
    /// blocks past it. Called when the segment stops being active (roll, close) and by
    /// recovery.
    pub async fn trim_file(log_file: &DmaFile, size_bytes: u64) -> io::Result<()> {
        if log_file.file_size().await? != size_bytes {
            log_file.truncate(size_bytes).await?;
        }
        Ok(())
    }

    /// The segment's largest timestamp, or its last write (wall clock) when its batches carry
    /// none, as Kafka uses the file's modification time: its age for retention and compaction.
    pub fn largest_timestamp_ms(&self) -> i64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp
        } else {
            self.last_modified_ms
        }
    }

    /// Closes the `.log` file (the index files are not held open). A reader still holding a
    /// clone keeps its descriptor open until it drops it.
    pub async fn close(self) -> io::Result<()> {
        let log_closed = match Rc::try_unwrap(self.log_file) {
            Ok(file) => file.close().await,
            Err(_shared) => Ok(()),
        };
        Ok(log_closed?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_twenty_digit_base_offsets() {
        let dir = Path::new("/data/topic-0");
        assert_eq!(
            log_file_path(dir, Offset(42)),
            PathBuf::from("/data/topic-0/00000000000000000042.log")
        );
        assert_eq!(
            index_file_path(dir, Offset(0)),
            PathBuf::from("/data/topic-0/00000000000000000000.index")
        );
        assert_eq!(
            parse_log_file_name("00000000000000000042.log"),
            Some(Offset(42))
        );
        assert_eq!(parse_log_file_name("00000000000000000042.index"), None);
        assert_eq!(parse_log_file_name("0000000000000000042.log"), None);
        assert_eq!(parse_log_file_name("0000000000000000004x.log"), None);
        assert_eq!(parse_log_file_name("leader-epoch-checkpoint"), None);
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(4095), 0);
        assert_eq!(align_down(4096), 4096);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(4096), 4096);
        assert_eq!(align_up(0), 0);
    }
}
