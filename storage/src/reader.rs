//! The read side: walking the stored batches of a segment, for fetches and for recovery.
//!
//! Reads only cover bytes below a segment's durable size (`Segment::size_bytes`), which the
//! flusher has written and synced, so they never race the pending buffer. The block that
//! holds the durable end may be rewritten by a flush at the same time, but the rewrite carries
//! the same bytes below the durable end, so either version reads the same.
//!
//! A fetch is served batch by batch from the tail cache (`tail_cache`) where it holds the
//! batch, and from the segment file otherwise, so one read may span both: older batches read
//! from disk, then the cached tail. The result is [`Records`]: pieces that are slices of cached
//! chunks (no copy), bytes copied out of O_DIRECT reads of the active segment, or, for sealed
//! segments read with [`ReadMode::FileRanges`], file ranges that the engine splices to the
//! socket from the page cache (see `read_files` for why only sealed segments).
//!
//! Measured (BENCHMARKS.md, "Fetch path" and "Zero-copy fetch, wired"): sending a cold file
//! in 1 MiB fetches, O_DIRECT read + copy + write made ~510 MB/s against ~790 for a buffered fd
//! with io_uring splice; the catch-up read of a cold 4 GiB backlog went from 710–741 MB/s to
//! 1,323–1,406 MB/s with file ranges and the kernel asked to read them ahead.

use crate::batch::{self, BatchInfo, StoredBatch, HEADER_BYTES};
use crate::error::StorageError;
use crate::log::{LogShared, Status};
use crate::tail_cache::{CachedBytes, PartitionTail};
use crate::{Offset, PartitionLog};
use bytes::{BufMut, Bytes, BytesMut};
use glommio::io::{BufferedFile, DmaFile, ReadResult};
use std::io;
use std::rc::Rc;

/// Bytes read from a segment at a time when walking batches.
pub(crate) const READ_WINDOW_BYTES: usize = 1024 * 1024;
/// Upper bound for the first read of a fetch (larger fetches read in several windows).
const FETCH_READ_BYTES_MAX: usize = 8 * 1024 * 1024;

/// A sliding window over a segment file, for walking batch after batch.
pub(crate) struct SegmentWindow<'file> {
    file: &'file DmaFile,
    /// Bytes of the file that may be read (the logical or physical end).
    end_position: u64,
    data: Option<ReadResult>,
    data_position: u64,
    read_bytes: usize,
}

impl<'file> SegmentWindow<'file> {
    pub fn new(file: &'file DmaFile, end_position: u64, read_bytes: usize) -> Self {
        SegmentWindow {
            file,
            end_position,
            data: None,
            data_position: 0,
            read_bytes: read_bytes.max(HEADER_BYTES),
        }
    }

    /// The bytes from `position` to the end of the window, reading so that at least
    /// `needed` bytes (fewer at the end of the file) are available.
    async fn bytes_at(&mut self, position: u64, needed: usize) -> io::Result<&[u8]> {
        let available = self.end_position.saturating_sub(position);
        let needed = (needed as u64).min(available) as usize;
        let covered = match &self.data {
            Some(data) => {
                position >= self.data_position
                    && position + needed as u64 <= self.data_position + data.len() as u64
            }
            None => false,
        };
        if !covered {
            let size = (needed.max(self.read_bytes) as u64).min(available) as usize;
            let _in_flight = crate::metrics::in_flight(crate::metrics::IoOp::Read);
            self.data = Some(self.file.read_at(position, size).await?);
            self.data_position = position;
        }
        let Some(data) = &self.data else {
            unreachable!()
        };
        let start = (position - self.data_position) as usize;
        Ok(&data[start..])
    }

    /// The batch at `position`: intact (CRC checked if `verify_crc`), or why not.
    pub async fn batch_at(&mut self, position: u64, verify_crc: bool) -> io::Result<StoredBatch> {
        let mut needed = HEADER_BYTES;
        loop {
            let bytes = self.bytes_at(position, needed).await?;
            let peeked = if verify_crc {
                batch::peek_stored_batch(bytes)
            } else {
                batch::peek_stored_header(bytes)
            };
            match peeked {
                StoredBatch::Incomplete { batch_bytes }
                    if batch_bytes > needed
                        && position + batch_bytes as u64 <= self.end_position =>
                {
                    needed = batch_bytes;
                }
                other => return Ok(other),
            }
        }
    }

    /// The intact batch at `position`, which must lie below the durable end: anything else is
    /// an `InvalidData` error naming the segment (`segment_base`).
    pub async fn complete_batch_at(
        &mut self,
        position: u64,
        verify_crc: bool,
        segment_base: Offset,
    ) -> io::Result<BatchInfo> {
        match self.batch_at(position, verify_crc).await? {
            StoredBatch::Complete(info) => Ok(info),
            StoredBatch::Incomplete { .. } | StoredBatch::Invalid => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "no valid batch at position {position} of segment {segment_base} below its durable end {}",
                    self.end_position
                ),
            )),
        }
    }

    /// The bytes of a batch just returned by `batch_at`.
    pub async fn batch_bytes(&mut self, position: u64, info: &BatchInfo) -> io::Result<&[u8]> {
        let bytes = self.bytes_at(position, info.batch_bytes).await?;
        Ok(&bytes[..info.batch_bytes])
    }
}

/// Whole stored batches read for a fetch, as pieces in log order.
#[derive(Default, Clone)]
pub struct Records {
    pieces: Vec<RecordsPiece>,
    length: usize,
}

/// Part of a [`Records`].
#[derive(Clone)]
pub enum RecordsPiece {
    /// Bytes copied out of an O_DIRECT read of the segment file.
    Copied(Bytes),
    /// A slice of a tail cache chunk, shared without copying.
    Cached(CachedBytes),
    /// A range of a sealed segment's file, to be sent from the page cache without passing
    /// through user space (only from [`PartitionLog::read_records`] with
    /// [`ReadMode::FileRanges`]).
    File(FileRange),
}

/// Bytes of a sealed segment file, described rather than read.
#[derive(Clone)]
pub struct FileRange {
    /// A buffered (not O_DIRECT) read-only descriptor of the segment's file.
    pub file: Rc<BufferedFile>,
    /// Where the range starts in the file.
    pub position: u64,
    /// How many bytes.
    pub length: usize,
    /// The segment's file, held so that retention and compaction wait for the send before
    /// they close and unlink the segment (see `retention::schedule_unlink`).
    _segment: Rc<DmaFile>,
}

impl RecordsPiece {
    /// The piece's bytes if it holds them in memory (every piece but a file range).
    pub fn in_memory(&self) -> Option<&[u8]> {
        match self {
            RecordsPiece::Copied(bytes) => Some(bytes),
            RecordsPiece::Cached(cached) => Some(cached.as_slice()),
            RecordsPiece::File(_) => None,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            RecordsPiece::Copied(bytes) => bytes.len(),
            RecordsPiece::Cached(cached) => cached.len(),
            RecordsPiece::File(range) => range.length,
        }
    }

    /// Whether the piece is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a read returns the bytes of sealed segments that the tail cache does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Read them (O_DIRECT) and copy them into memory.
    Copy,
    /// Describe them as [`FileRange`]s, to be sent to a socket with splice. Batches of the
    /// active segment are still read into memory (see `read_files` for why).
    FileRanges,
}

impl Records {
    /// Records held in one buffer.
    pub fn from_bytes(bytes: Bytes) -> Records {
        let mut records = Records::default();
        records.push(RecordsPiece::Copied(bytes));
        records
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Whether no batch was read.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The pieces, in log order.
    pub fn pieces(&self) -> &[RecordsPiece] {
        &self.pieces
    }

    /// Bytes served from the tail cache.
    pub fn cached_bytes(&self) -> usize {
        self.pieces
            .iter()
            .map(|piece| match piece {
                RecordsPiece::Cached(cached) => cached.len(),
                RecordsPiece::Copied(_) | RecordsPiece::File(_) => 0,
            })
            .sum()
    }

    /// Bytes described as file ranges, not read.
    pub fn file_bytes(&self) -> usize {
        self.pieces
            .iter()
            .map(|piece| match piece {
                RecordsPiece::File(range) => range.length,
                RecordsPiece::Copied(_) | RecordsPiece::Cached(_) => 0,
            })
            .sum()
    }

    /// The records as one buffer: free when they are a single copied piece, one copy
    /// otherwise. Only for records read with [`ReadMode::Copy`], which holds every piece in
    /// memory.
    pub fn into_bytes(mut self) -> Bytes {
        if let [RecordsPiece::Copied(_)] = self.pieces.as_slice() {
            let Some(RecordsPiece::Copied(bytes)) = self.pieces.pop() else {
                unreachable!()
            };
            return bytes;
        }
        let mut bytes = BytesMut::with_capacity(self.length);
        for piece in &self.pieces {
            let slice = piece
                .in_memory()
                .expect("ReadMode::Copy reads hold every piece in memory");
            bytes.put_slice(slice);
        }
        bytes.freeze()
    }

    fn push(&mut self, piece: RecordsPiece) {
        let length = piece.len();
        if length > 0 {
            self.length += length;
            self.pieces.push(piece);
        }
    }
}

impl PartitionLog {
    /// Like [`PartitionLog::read`], but leaves cached batches in the tail cache's chunks
    /// instead of copying them into one buffer, and with [`ReadMode::FileRanges`] describes
    /// the bytes of sealed segments instead of reading them.
    ///
    /// A file range ends where the segment's index says a batch starts, or at the segment's
    /// end, so it holds whole batches unless the index is stale (then the last batch may be
    /// cut short, which every Kafka consumer accepts, as Kafka itself sends such fetches).
    pub async fn read_records(
        &self,
        fetch_offset: Offset,
        max_bytes: usize,
        upper_bound: Offset,
        mode: ReadMode,
    ) -> Result<Records, StorageError> {
        read(&self.shared, fetch_offset, max_bytes, upper_bound, mode).await
    }
}

/// Which segment to read next and from where.
struct ReadPlan {
    file: Rc<DmaFile>,
    segment_base: Offset,
    start_position: u64,
    end_position: u64,
    /// Whether the segment is sealed (not the active one): its bytes never change again.
    sealed: bool,
    /// Only batches that end below this offset are read.
    upper_bound: Offset,
    /// The bound falls inside this segment: its batches are walked to find where to stop.
    bounded: bool,
}

/// See [`crate::PartitionLog::read`].
pub(crate) async fn read(
    shared: &LogShared,
    fetch_offset: Offset,
    max_bytes: usize,
    upper_bound: Offset,
    mode: ReadMode,
) -> Result<Records, StorageError> {
    let mut after_segment: Option<Offset> = None;
    loop {
        let plan = {
            let state = shared.state.borrow();
            if state.status == Status::Closed {
                return Err(StorageError::Closed);
            }
            let (log_start, durable_end) = (state.log_start, state.durable_end);
            if fetch_offset < log_start || fetch_offset > durable_end {
                return Err(StorageError::OffsetOutOfRange {
                    requested: fetch_offset,
                    log_start,
                    durable_end,
                });
            }
            // The caller's bound (a high watermark, a last stable offset), never past what is
            // durable.
            let upper_bound = upper_bound.min(durable_end);
            if fetch_offset >= upper_bound {
                return Ok(Records::default());
            }
            let segments = &state.segments;
            let found = match after_segment {
                None => segments
                    .partition_point(|segment| segment.base_offset <= fetch_offset)
                    .checked_sub(1),
                // The offset was not in that segment (a gap left by recovery): try the next.
                Some(base) => Some(segments.partition_point(|segment| segment.base_offset <= base)),
            };
            let Some((number, segment)) =
                found.and_then(|number| Some((number, segments.get(number)?)))
            else {
                return Ok(Records::default());
            };
            let start_position = match u32::try_from(fetch_offset.0 - segment.base_offset.0) {
                Ok(relative) => segment.index.floor_position(relative),
                Err(_) => 0, // fetch_offset is below this segment (we skipped a gap)
            };
            ReadPlan {
                file: segment.log_file.clone(),
                segment_base: segment.base_offset,
                start_position,
                end_position: segment.size_bytes,
                sealed: number + 1 < segments.len(),
                bounded: segment.end_offset > upper_bound,
                upper_bound,
            }
        };
        let read_bytes =
            max_bytes.saturating_add(shared.config.get().index_interval_bytes as usize);
        let read_bytes = read_bytes.clamp(READ_WINDOW_BYTES / 16, FETCH_READ_BYTES_MAX);
        let request = SegmentRead {
            plan: &plan,
            tail: &shared.tail_cache,
            fetch_offset,
            max_bytes,
            read_bytes,
        };
        let records = if mode == ReadMode::FileRanges
            && plan.sealed
            && !plan.bounded
            && request.cached_batch(plan.start_position).is_none()
        {
            request.run_file_range(shared).await?
        } else {
            request.run().await?
        };
        if let Some(records) = records {
            return Ok(records);
        }
        after_segment = Some(plan.segment_base);
    }
}

/// One segment's part of a read.
struct SegmentRead<'read> {
    plan: &'read ReadPlan,
    tail: &'read PartitionTail,
    fetch_offset: Offset,
    max_bytes: usize,
    read_bytes: usize,
}

/// Where the next batch comes from.
enum Source {
    Cache(Vec<CachedBytes>),
    Disk(BatchInfo),
}

impl SegmentRead<'_> {
    /// Whole batches from the one containing `fetch_offset` on that end below the plan's
    /// upper bound, from the cache where it holds them and from the file otherwise; `None` if
    /// the segment has no batch at or after `fetch_offset` below its durable end.
    async fn run(&self) -> io::Result<Option<Records>> {
        let plan = self.plan;
        let mut window = SegmentWindow::new(&plan.file, plan.end_position, self.read_bytes);
        let mut position = plan.start_position;
        let mut records: Option<Records> = None;
        // Batches read from disk since the last cached piece, copied contiguously.
        let mut copied: Option<BytesMut> = None;
        while position < plan.end_position {
            let (last_offset, batch_bytes, source) = match self.cached_batch(position) {
                Some((last_offset, batch_bytes, slices)) => {
                    (last_offset, batch_bytes, Source::Cache(slices))
                }
                None => {
                    let info = window
                        .complete_batch_at(position, false, plan.segment_base)
                        .await?;
                    (info.last_offset(), info.batch_bytes, Source::Disk(info))
                }
            };
            if last_offset >= plan.upper_bound.0 {
                // Batches from here on are not readable yet (above the high watermark or the
                // last stable offset): stop, and do not look in later segments either.
                records.get_or_insert_with(Records::default);
                break;
            }
            if records.is_none() && last_offset < self.fetch_offset.0 {
                position += batch_bytes as u64;
                continue;
            }
            let output = records.get_or_insert_with(Records::default);
            let so_far = output.len() + copied.as_ref().map_or(0, BytesMut::len);
            if so_far > 0 && so_far + batch_bytes > self.max_bytes {
                break;
            }
            match source {
                Source::Cache(slices) => {
                    if let Some(bytes) = copied.take() {
                        output.push(RecordsPiece::Copied(bytes.freeze()));
                    }
                    for slice in slices {
                        output.push(RecordsPiece::Cached(slice));
                    }
                }
                Source::Disk(info) => {
                    let capacity = self.max_bytes.min(self.read_bytes).max(batch_bytes);
                    copied
                        .get_or_insert_with(|| BytesMut::with_capacity(capacity))
                        .extend_from_slice(window.batch_bytes(position, &info).await?);
                }
            }
            position += batch_bytes as u64;
            if so_far + batch_bytes >= self.max_bytes {
                break;
            }
        }
        if let (Some(output), Some(bytes)) = (records.as_mut(), copied) {
            output.push(RecordsPiece::Copied(bytes.freeze()));
        }
        Ok(records)
    }

    /// Like [`SegmentRead::run`] for a sealed segment, but describing the bytes as one file
    /// range instead of reading them. Only the headers on the way to `fetch_offset` are read
    /// (through the page cache, which the send then reads from); the end of the range comes
    /// from the segment's index. `None` if the segment has no batch at or after
    /// `fetch_offset`.
    async fn run_file_range(&self, shared: &LogShared) -> io::Result<Option<Records>> {
        let plan = self.plan;
        let file = match crate::read_files::read_file(&plan.file) {
            Ok(file) => file,
            // No read descriptor (no /proc, or out of descriptors): read the bytes instead.
            Err(_) => return self.run().await,
        };
        let mut position = plan.start_position;
        let first_batch_bytes = loop {
            if position >= plan.end_position {
                return Ok(None);
            }
            let header_bytes = (plan.end_position - position).min(HEADER_BYTES as u64) as usize;
            let header = {
                let _in_flight = crate::metrics::in_flight(crate::metrics::IoOp::Read);
                file.read_at(position, header_bytes).await?
            };
            let (last_offset, batch_bytes) = header_extent(&header)
                .filter(|&(_, batch_bytes)| position + batch_bytes as u64 <= plan.end_position)
                .ok_or_else(|| invalid_batch(plan, position))?;
            if last_offset >= self.fetch_offset.0 {
                break batch_bytes;
            }
            position += batch_bytes as u64;
        };
        let end_position = if plan.end_position - position <= self.max_bytes as u64 {
            plan.end_position
        } else {
            let limit = position + self.max_bytes as u64;
            let state = shared.state.borrow();
            // The same file: compaction may have swapped the segment under this base offset.
            let segment = state
                .find_segment(plan.segment_base)
                .filter(|segment| Rc::ptr_eq(&segment.log_file, &plan.file));
            // The start of the last indexed batch that fits (the index names batch starts);
            // if none fits, the first batch alone, whole (KIP-74).
            let indexed_end = segment.and_then(|segment| {
                let entries = segment.index.entries();
                let after = entries.partition_point(|entry| entry.position as u64 <= limit);
                entries[..after].last().map(|entry| entry.position as u64)
            });
            indexed_end
                .filter(|&end| end > position)
                .unwrap_or(0)
                .max(position + first_batch_bytes as u64)
        };
        crate::read_files::read_ahead(&file, position, end_position, plan.end_position);
        let mut records = Records::default();
        records.push(RecordsPiece::File(FileRange {
            file,
            position,
            length: (end_position - position) as usize,
            _segment: plan.file.clone(),
        }));
        Ok(Some(records))
    }

    /// The batch at `position` if the tail cache holds all of it below the durable end: its
    /// last offset, its size, and its bytes as slices of consecutive chunks.
    fn cached_batch(&self, position: u64) -> Option<(i64, usize, Vec<CachedBytes>)> {
        let plan = self.plan;
        let segment = (plan.segment_base, &plan.file);
        let end_position = plan.end_position;
        let limit = |mut cached: CachedBytes, at: u64| {
            let durable = (end_position - at) as usize;
            if cached.len() > durable {
                cached.shorten(durable);
            }
            cached
        };
        let first = limit(self.tail.bytes_at(segment, position)?, position);
        let mut header = [0u8; HEADER_BYTES];
        let mut slices = vec![first];
        let mut covered = slices[0].len();
        while covered < HEADER_BYTES {
            let at = position + covered as u64;
            if at >= end_position {
                return None;
            }
            let next = limit(self.tail.bytes_at(segment, at)?, at);
            covered += next.len();
            slices.push(next);
        }
        let mut filled = 0;
        for slice in &slices {
            let take = (HEADER_BYTES - filled).min(slice.len());
            header[filled..filled + take].copy_from_slice(&slice.as_slice()[..take]);
            filled += take;
            if filled == HEADER_BYTES {
                break;
            }
        }
        // A header that does not parse: let the disk path report it.
        let (last_offset, batch_bytes) = header_extent(&header)?;
        if position + batch_bytes as u64 > end_position {
            return None;
        }
        while covered < batch_bytes {
            let at = position + covered as u64;
            let next = limit(self.tail.bytes_at(segment, at)?, at);
            covered += next.len();
            slices.push(next);
        }
        // Trim the last slice to the batch's end.
        let excess = covered - batch_bytes;
        if let Some(last) = slices.last_mut() {
            let keep = last.len() - excess;
            last.shorten(keep);
        }
        Some((last_offset, batch_bytes, slices))
    }
}

/// The last offset and size of the batch whose header `header` holds (the header alone, or
/// more), or `None` if it is not a plausible batch header.
fn header_extent(header: &[u8]) -> Option<(i64, usize)> {
    let batch_bytes = match batch::peek_stored_header(header) {
        StoredBatch::Complete(info) => info.batch_bytes,
        StoredBatch::Incomplete { batch_bytes } if batch_bytes > HEADER_BYTES => batch_bytes,
        StoredBatch::Incomplete { .. } | StoredBatch::Invalid => return None,
    };
    let view = batch::BatchHeader::view(header)?;
    let last_offset = view.base_offset.get() + view.last_offset_delta.get() as i64;
    Some((last_offset, batch_bytes))
}

/// The error for a sealed segment whose bytes at `position` are not a batch header.
fn invalid_batch(plan: &ReadPlan, position: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "no valid batch at position {position} of segment {} below its end {}",
            plan.segment_base, plan.end_position
        ),
    )
}
