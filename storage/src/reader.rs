//! The read side: walking the stored batches of a segment file, for fetches and for recovery.
//!
//! Reads only cover bytes below a segment's durable size (`Segment::size_bytes`), which the
//! flusher has written and synced, so they never race the pending buffer. The block that
//! holds the durable end may be rewritten by a flush at the same time, but the rewrite carries
//! the same bytes below the durable end, so either version reads the same.

use crate::batch::{self, BatchInfo, StoredBatch, HEADER_BYTES};
use crate::error::StorageError;
use crate::log::{LogShared, Status};
use crate::Offset;
use bytes::{Bytes, BytesMut};
use glommio::io::{DmaFile, ReadResult};
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

    /// The bytes of a batch just returned by `batch_at`.
    pub async fn batch_bytes(&mut self, position: u64, info: &BatchInfo) -> io::Result<&[u8]> {
        let bytes = self.bytes_at(position, info.batch_bytes).await?;
        Ok(&bytes[..info.batch_bytes])
    }
}

/// Which segment to read next and from where.
struct ReadPlan {
    file: Rc<DmaFile>,
    segment_base: Offset,
    start_position: u64,
    end_position: u64,
}

/// See [`crate::PartitionLog::read`].
pub(crate) async fn read(
    shared: &LogShared,
    fetch_offset: Offset,
    max_bytes: usize,
) -> Result<Bytes, StorageError> {
    let mut after_segment: Option<Offset> = None;
    loop {
        let plan = {
            let state = shared.state.borrow();
            if state.status == Status::Closed {
                return Err(StorageError::Closed);
            }
            let (log_start, high_watermark) = (state.log_start, state.high_watermark);
            if fetch_offset < log_start || fetch_offset > high_watermark {
                return Err(StorageError::OffsetOutOfRange {
                    requested: fetch_offset,
                    log_start,
                    high_watermark,
                });
            }
            if fetch_offset == high_watermark {
                return Ok(Bytes::new());
            }
            let segments = &state.segments;
            let found = match after_segment {
                None => segments
                    .partition_point(|segment| segment.base_offset <= fetch_offset)
                    .checked_sub(1),
                // The offset was not in that segment (a gap left by recovery): try the next.
                Some(base) => Some(segments.partition_point(|segment| segment.base_offset <= base)),
            };
            let Some(segment) = found.and_then(|number| segments.get(number)) else {
                return Ok(Bytes::new());
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
            }
        };
        let read_bytes =
            max_bytes.saturating_add(shared.config.get().index_interval_bytes as usize);
        let read_bytes = read_bytes.clamp(READ_WINDOW_BYTES / 16, FETCH_READ_BYTES_MAX);
        if let Some(bytes) = read_segment(&plan, fetch_offset, max_bytes, read_bytes).await? {
            return Ok(bytes);
        }
        after_segment = Some(plan.segment_base);
    }
}

/// Copies whole batches from the one containing `fetch_offset` on; `None` if the segment has
/// no batch at or after `fetch_offset` below its durable end.
async fn read_segment(
    plan: &ReadPlan,
    fetch_offset: Offset,
    max_bytes: usize,
    read_bytes: usize,
) -> io::Result<Option<Bytes>> {
    let mut window = SegmentWindow::new(&plan.file, plan.end_position, read_bytes);
    let mut position = plan.start_position;
    let mut output: Option<BytesMut> = None;
    while position < plan.end_position {
        let info = match window.batch_at(position, false).await? {
            StoredBatch::Complete(info) => info,
            StoredBatch::Incomplete { .. } | StoredBatch::Invalid => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "no valid batch at position {position} of segment {} below its durable end {}",
                        plan.segment_base, plan.end_position
                    ),
                ));
            }
        };
        if output.is_none() && info.last_offset() < fetch_offset.0 {
            position += info.batch_bytes as u64;
            continue;
        }
        let out = output.get_or_insert_with(|| {
            BytesMut::with_capacity(max_bytes.min(read_bytes).max(info.batch_bytes))
        });
        if !out.is_empty() && out.len() + info.batch_bytes > max_bytes {
            break;
        }
        out.extend_from_slice(window.batch_bytes(position, &info).await?);
        position += info.batch_bytes as u64;
        if out.len() >= max_bytes {
            break;
        }
    }
    Ok(output.map(BytesMut::freeze))
}
