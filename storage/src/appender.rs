//! The pending write buffer of a partition: where `append` copies batches, and what the flusher
//! writes.
//!
//! Batches are copied once, straight into 4 KiB-aligned DMA chunks of `CHUNK_BYTES` taken from
//! a shard-wide pool, so that the flusher can hand them to O_DIRECT writes as they are. The
//! bytes of one segment that are pending form a [`PendingWrite`]: it starts at a block-aligned
//! file position, with the partial last block of what is already on disk (the "tail", at most
//! 4 KiB, kept in memory) copied in front of the new batches, so that every write starts on a
//! block boundary and rewrites that partial block, padded with zeros, until it is full.
//!
//! Owned by the partition's `LogState`; `append` and `take` are synchronous. The pending
//! buffer grows without bound while a flush is in progress; back-pressure (refusing or delaying
//! appends past a few MiB pending) is left to a later change.

use crate::batch::HEADER_BYTES;
use crate::index::{IndexCadence, IndexEntry};
use crate::received::ReceivedBatch;
use crate::seam::SegmentIo;
use crate::segment::{align_down, align_up, BLOCK_BYTES};
use crate::time_index::{TimeIndexEntry, TimeTracker};
use crate::{LogConfig, Offset};
use glommio::io::DmaBuffer;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

/// Size of one DMA chunk of the pending buffer. A flush submits its chunks together, so a
/// large group commit becomes one burst of sequential writes at a deep queue depth.
pub(crate) const CHUNK_BYTES: usize = 128 * 1024;
/// Chunks kept for reuse per shard (8 MiB); more are freed.
const POOLED_CHUNKS_MAX: usize = 64;
/// Smaller buffers kept for reuse per shard, per size (a whole number of blocks below
/// `CHUNK_BYTES`): the last chunks of batches received in place, which are fitted to them.
/// At most 4 x (4 + 8 + ... + 124 KiB) = 7.75 MiB.
const POOLED_SMALL_PER_SIZE: usize = 4;
const SMALL_SIZES: usize = CHUNK_BYTES / BLOCK_BYTES as usize;

const _: () = assert!(CHUNK_BYTES as u64 & (BLOCK_BYTES - 1) == 0);
const _: () = assert!(CHUNK_BYTES >= HEADER_BYTES);

thread_local! {
    /// Free chunks of this shard, shared by all its partitions. The chunks are plain aligned
    /// heap memory (not the executor's registered buffers), so they may outlive an executor.
    static CHUNK_POOL: RefCell<Vec<DmaBuffer>> = const { RefCell::new(Vec::new()) };
    /// Free smaller buffers of this shard, by size in blocks.
    static SMALL_POOL: RefCell<[Vec<DmaBuffer>; SMALL_SIZES]> =
        RefCell::new(std::array::from_fn(|_| Vec::new()));
}

pub(crate) fn acquire_chunk() -> DmaBuffer {
    let pooled = CHUNK_POOL.with(|pool| pool.borrow_mut().pop());
    pooled.unwrap_or_else(|| glommio::allocate_dma_buffer_global(CHUNK_BYTES))
}

/// A buffer of `bytes` (a whole number of blocks, at most `CHUNK_BYTES`) from the shard's
/// pools, or a new one.
pub(crate) fn acquire_buffer(bytes: usize) -> DmaBuffer {
    assert!(bytes > 0 && bytes <= CHUNK_BYTES && bytes.is_multiple_of(BLOCK_BYTES as usize));
    if bytes == CHUNK_BYTES {
        return acquire_chunk();
    }
    let blocks = bytes / BLOCK_BYTES as usize;
    let pooled = SMALL_POOL.with(|pool| pool.borrow_mut()[blocks].pop());
    pooled.unwrap_or_else(|| glommio::allocate_dma_buffer_global(bytes))
}

/// Returns an untrimmed buffer (its length is its allocation) to the shard's pools, or frees
/// it.
pub(crate) fn release_chunk(chunk: DmaBuffer) {
    let allocated = chunk.len();
    release_buffer(chunk, allocated);
}

/// Returns a buffer whose allocation is `allocated` bytes to the shard's pools if it is whole
/// (a trimmed one cannot grow back: it is freed), or frees it.
pub(crate) fn release_buffer(buffer: DmaBuffer, allocated: usize) {
    if buffer.len() != allocated || !allocated.is_multiple_of(BLOCK_BYTES as usize) {
        return;
    }
    if allocated == CHUNK_BYTES {
        CHUNK_POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOLED_CHUNKS_MAX {
                pool.push(buffer);
            }
        });
        return;
    }
    let blocks = allocated / BLOCK_BYTES as usize;
    if blocks == 0 || blocks >= SMALL_SIZES {
        return;
    }
    SMALL_POOL.with(|pool| {
        let sized = &mut pool.borrow_mut()[blocks];
        if sized.len() < POOLED_SMALL_PER_SIZE {
            sized.push(buffer);
        }
    });
}

/// The final logical size of a segment that stopped being active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RolledSegment {
    pub base_offset: Offset,
    pub size_bytes: u64,
    /// The time index entry that records the segment's largest timestamp, if the last
    /// cadence entry does not already (Kafka appends it when a segment becomes inactive).
    pub final_time_entry: Option<TimeIndexEntry>,
}

/// Pending bytes of one segment, from a block-aligned position on.
pub(crate) struct PendingWrite {
    pub segment_base: Offset,
    /// Set when these bytes start a new segment: the flusher creates its files first and trims
    /// the segment that was active before.
    pub rolled_from: Option<RolledSegment>,
    /// File position of the first byte of the first chunk (block-aligned).
    pub start_position: u64,
    /// Logical end of the segment once these bytes are written.
    pub end_position: u64,
    /// The offset after the last batch in these bytes.
    pub end_offset: Offset,
    /// Index entries for the batches in these bytes, to add once they are synced.
    pub index_entries: Vec<IndexEntry>,
    /// Time index entries for the batches in these bytes, likewise.
    pub time_entries: Vec<TimeIndexEntry>,
    /// The segment's largest timestamp (and the batch that reached it) once these bytes are
    /// written.
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: Offset,
    /// The bytes, in order. Every chunk but the last holds a whole number of blocks, so each
    /// starts at a block-aligned file position; most are full (`CHUNK_BYTES`), but one that
    /// ended before an adopted received batch holds fewer.
    chunks: Vec<Chunk>,
}

/// A DMA chunk of a pending write and the bytes of it in use.
struct Chunk {
    buffer: DmaBuffer,
    used: usize,
}

/// A chunk the flusher wrote: its file position, its bytes (trimmed to those written), and the
/// size of its allocation, which is what the tail cache charges for keeping it.
pub(crate) struct WrittenChunk {
    pub position: u64,
    pub buffer: DmaBuffer,
    pub allocated: usize,
}

impl PendingWrite {
    fn new(segment_base: Offset, rolled_from: Option<RolledSegment>, start_position: u64) -> Self {
        assert_eq!(start_position % BLOCK_BYTES, 0);
        PendingWrite {
            segment_base,
            rolled_from,
            start_position,
            end_position: start_position,
            end_offset: segment_base,
            index_entries: Vec::new(),
            time_entries: Vec::new(),
            max_timestamp: crate::time_index::NO_TIMESTAMP,
            offset_of_max_timestamp: segment_base,
            chunks: Vec::new(),
        }
    }

    fn push_bytes(&mut self, mut bytes: &[u8]) {
        self.end_position += bytes.len() as u64;
        while !bytes.is_empty() {
            if self
                .chunks
                .last()
                .is_none_or(|chunk| chunk.used == chunk.buffer.len())
            {
                self.chunks.push(Chunk {
                    buffer: acquire_chunk(),
                    used: 0,
                });
            }
            let Some(chunk) = self.chunks.last_mut() else {
                unreachable!()
            };
            let copied = bytes.len().min(chunk.buffer.len() - chunk.used);
            let start = chunk.used;
            chunk.buffer.as_bytes_mut()[start..start + copied].copy_from_slice(&bytes[..copied]);
            chunk.used += copied;
            bytes = &bytes[copied..];
        }
        assert_eq!(
            self.buffered_bytes(),
            self.end_position - self.start_position
        );
    }

    /// Takes a received batch's chunks as they are, if the batch was received at this write's
    /// position within a block: the partial block at the end of this write is copied in front
    /// of the batch (the only bytes copied), and the chunk it came from ends at the block
    /// before. Hands the batch back if it was received for another position.
    fn adopt(&mut self, mut batch: ReceivedBatch) -> Result<(), Box<ReceivedBatch>> {
        let front = batch.front;
        if (self.end_position % BLOCK_BYTES) as usize != front {
            // Rare (the log moved since the batch was placed): a box costs less there than a
            // large error type on every call.
            return Err(Box::new(batch));
        }
        if let Some(last) = self.chunks.last_mut() {
            // The last chunk starts block-aligned, so its partial block is `front` long.
            let block_start = align_down(last.used as u64) as usize;
            assert_eq!(last.used - block_start, front);
            batch.chunks[0].as_bytes_mut()[..front]
                .copy_from_slice(&last.buffer.as_bytes()[block_start..last.used]);
            last.used = block_start;
            if last.used == 0 {
                if let Some(emptied) = self.chunks.pop() {
                    release_chunk(emptied.buffer);
                }
            }
        } else {
            assert_eq!(front, 0, "a write with no bytes ends on a block boundary");
        }
        self.end_position += batch.len() as u64;
        self.chunks.extend(
            batch
                .into_chunks()
                .into_iter()
                .map(|(buffer, used)| Chunk { buffer, used }),
        );
        assert_eq!(
            self.buffered_bytes(),
            self.end_position - self.start_position
        );
        Ok(())
    }

    fn buffered_bytes(&self) -> u64 {
        self.chunks.iter().map(|chunk| chunk.used as u64).sum()
    }

    /// The partial block at the end of these bytes: its file position and its bytes.
    fn partial_last_block(&self) -> (u64, &[u8]) {
        let tail_position = align_down(self.end_position);
        let Some(chunk) = self.chunks.last() else {
            return (tail_position, &[]);
        };
        let in_chunk = align_down(chunk.used as u64) as usize;
        (
            tail_position,
            &chunk.buffer.as_bytes()[in_chunk..chunk.used],
        )
    }

    /// The chunks to write and where: each trimmed to the bytes it holds, the last one
    /// zero-padded to a whole block.
    fn into_aligned_chunks(mut self) -> Vec<WrittenChunk> {
        if let Some(last) = self.chunks.last_mut() {
            let padded = align_up(last.used as u64) as usize;
            last.buffer.as_bytes_mut()[last.used..padded].fill(0);
            last.used = padded;
        }
        let mut position = self.start_position;
        std::mem::take(&mut self.chunks)
            .into_iter()
            .map(|Chunk { mut buffer, used }| {
                let allocated = buffer.len();
                if used < allocated {
                    buffer.trim_to_size(used);
                }
                let at = position;
                position += used as u64;
                WrittenChunk {
                    position: at,
                    buffer,
                    allocated,
                }
            })
            .collect()
    }

    /// Writes these bytes to `file` (the flusher calls this; the caller syncs), keeping at
    /// most `in_flight_bytes_max` of writes submitted at once (at least one chunk). The disk's
    /// bandwidth appears at a few MiB in flight (`spate-tune iotune` measures the knee);
    /// submitting more only queues in the kernel and pins more buffers. The chunks are dealt
    /// round-robin to lanes that each write their share in order, so the window stays full
    /// without spawning a task per write. Returns the written chunks with their file positions,
    /// in order, for the tail cache (which recycles them when it evicts them).
    pub async fn write_to(
        self,
        file: SegmentIo<'_>,
        in_flight_bytes_max: usize,
    ) -> io::Result<Vec<WrittenChunk>> {
        let chunks = self.into_aligned_chunks();
        let chunk_count = chunks.len();
        // Chunks vary in size (a batch received in place ends in a chunk fitted to it): size
        // the window by their average, so that small chunks still fill it.
        let total_bytes: usize = chunks.iter().map(|chunk| chunk.buffer.len()).sum();
        let average_bytes = (total_bytes / chunk_count.max(1)).max(BLOCK_BYTES as usize);
        let lanes = (in_flight_bytes_max / average_bytes).clamp(1, chunk_count.max(1));
        let mut lane_chunks: Vec<Vec<WrittenChunk>> = (0..lanes).map(|_| Vec::new()).collect();
        for (number, chunk) in chunks.into_iter().enumerate() {
            lane_chunks[number % lanes].push(chunk);
        }
        let lanes = lane_chunks.into_iter().map(|chunks| async move {
            let mut written = Vec::with_capacity(chunks.len());
            for chunk in chunks {
                let WrittenChunk {
                    position,
                    buffer,
                    allocated,
                } = chunk;
                let buffer = write_chunk(file, buffer, position).await?;
                // glommio drops its reference when the write completes; should it not have,
                // the chunk is simply not cached.
                if let Ok(buffer) = Rc::try_unwrap(buffer) {
                    written.push(WrittenChunk {
                        position,
                        buffer,
                        allocated,
                    });
                }
            }
            Ok::<_, io::Error>(written)
        });
        let mut written = Vec::with_capacity(chunk_count);
        for outcome in join_all(lanes.collect()).await {
            written.extend(outcome?);
        }
        written.sort_unstable_by_key(|chunk| chunk.position);
        Ok(written)
    }
}

/// One O_DIRECT write of a whole chunk; a short write is an error.
async fn write_chunk(
    file: SegmentIo<'_>,
    chunk: DmaBuffer,
    position: u64,
) -> io::Result<Rc<DmaBuffer>> {
    let chunk = Rc::new(chunk);
    let expected = chunk.len();
    let written = file.write_at(chunk.clone(), position).await?;
    if written != expected {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short O_DIRECT write: {written} of {expected} bytes at {position}"),
        ));
    }
    Ok(chunk)
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        for chunk in self.chunks.drain(..) {
            release_chunk(chunk.buffer);
        }
    }
}

/// Polls all `futures` concurrently and returns their outputs in order. Hand-written because
/// futures-lite 1.x has no `join_all` and glommio submits an I/O on first poll: polling every
/// write before awaiting any puts them in the same io_uring submission.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    futures_lite::future::poll_fn(move |context| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(outputs.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}

/// One batch for [`Appender::append`]: its bytes, with the header patched, and what the roll
/// and index rules need to know about it.
pub(crate) struct BatchToAppend<'batch> {
    pub bytes: BatchBytes<'batch>,
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The batch's maxTimestamp (after LogAppendTime stamping).
    pub max_timestamp: i64,
    /// Wall clock, for `segment.ms` when batches carry no timestamps.
    pub now_ms: i64,
}

/// Where a batch's bytes are.
pub(crate) enum BatchBytes<'batch> {
    /// In a request buffer: the patched header, and the rest of the batch. Copied.
    Slices {
        header: &'batch [u8; HEADER_BYTES],
        body: &'batch [u8],
    },
    /// Received into DMA chunks, header patched there. Adopted if it lines up, else copied.
    Received(ReceivedBatch),
}

impl BatchBytes<'_> {
    fn len(&self) -> usize {
        match self {
            BatchBytes::Slices { body, .. } => HEADER_BYTES + body.len(),
            BatchBytes::Received(batch) => batch.len(),
        }
    }
}

/// Where the active segment stands when the appender takes over (after recovery or for a
/// fresh log).
pub(crate) struct ActiveSegment {
    pub base_offset: Offset,
    /// Logical size.
    pub size_bytes: u64,
    /// Its partial last block: the bytes from `align_down(size_bytes)`.
    pub tail: Vec<u8>,
    pub cadence: IndexCadence,
    pub time: TimeTracker,
    /// maxTimestamp of the segment's first batch, `None` while it is empty: `segment.ms`
    /// counts from it, as Kafka's `rollingBasedTimestamp` does.
    pub first_batch_timestamp: Option<i64>,
    /// Wall clock when the segment was created or loaded, for `segment.ms` when its first
    /// batch carries no timestamp.
    pub created_ms: i64,
}

impl ActiveSegment {
    /// A new, empty segment.
    pub fn empty(base_offset: Offset, now_ms: i64) -> ActiveSegment {
        ActiveSegment {
            base_offset,
            size_bytes: 0,
            tail: Vec::new(),
            cadence: IndexCadence::default(),
            time: TimeTracker::new(base_offset),
            first_batch_timestamp: None,
            created_ms: now_ms,
        }
    }
}

/// Where the active segment stands, counting pending bytes, and what is waiting for the flusher.
pub(crate) struct Appender {
    /// Pending writes, oldest first: one per segment (two or more only around a roll).
    queue: Vec<PendingWrite>,
    active: ActiveSegment,
    /// File position of `active.tail`: the partial last block that is not in any pending
    /// write.
    tail_position: u64,
}

impl Appender {
    /// Resumes after recovery (or starts a fresh log) with this active segment.
    pub fn new(active: ActiveSegment) -> Self {
        let tail_position = align_down(active.size_bytes);
        assert_eq!(tail_position + active.tail.len() as u64, active.size_bytes);
        Appender {
            queue: Vec::new(),
            active,
            tail_position,
        }
    }

    /// Whether the batch must start a new segment: the active one is not empty and the batch
    /// would take it over `segment.bytes`, its relative offsets would overflow, or the
    /// segment is older than `segment.ms` (Kafka's `LogSegment.shouldRoll`).
    fn should_roll(&self, batch: &BatchToAppend<'_>, config: &LogConfig) -> bool {
        if self.active.size_bytes == 0 {
            return false;
        }
        let too_big = self.overflows(batch.bytes.len() as u64, config);
        // Relative offsets in the index are u32; Kafka keeps them within i32 too.
        let too_many_offsets = batch.last_offset.0 - self.active.base_offset.0 > i32::MAX as i64;
        let waited_ms = match self.active.first_batch_timestamp {
            Some(first) if first >= 0 => batch.max_timestamp.saturating_sub(first),
            _ => batch.now_ms.saturating_sub(self.active.created_ms),
        };
        too_big || too_many_offsets || waited_ms > config.segment_ms
    }

    /// Where in its first block a batch of `batch_bytes` would start if it were appended now
    /// (0 if it would start a new segment; a roll for `segment.ms` is not foreseen, and costs
    /// a copy when it happens).
    pub fn receive_front(&self, batch_bytes: u64, config: &LogConfig) -> usize {
        let size = self.active.size_bytes;
        if size != 0 && self.overflows(batch_bytes, config) {
            return 0;
        }
        (size % BLOCK_BYTES) as usize
    }

    /// Whether a batch of `batch_bytes` would take the active segment over `segment.bytes`.
    fn overflows(&self, batch_bytes: u64, config: &LogConfig) -> bool {
        self.active.size_bytes + batch_bytes > config.segment_bytes
    }

    /// Puts one batch into the pending buffer, rolling to a new segment first if
    /// [`Self::should_roll`] says so: a received batch's chunks are adopted if they line up,
    /// anything else is copied. Returns whether the batch was adopted.
    pub fn append(&mut self, batch: BatchToAppend<'_>, config: &LogConfig) -> bool {
        assert!(batch.last_offset >= batch.base_offset);
        if self.should_roll(&batch, config) {
            self.roll(batch.base_offset, batch.now_ms);
        }
        let batch_bytes = batch.bytes.len() as u64;
        let base = self.active.base_offset;
        let position = self.active.size_bytes;
        let relative_offset = u32::try_from(batch.last_offset.0 - base.0);
        let indexed = self
            .active
            .cadence
            .next_batch(batch_bytes, config.index_interval_bytes);
        let time_entry =
            self.active
                .time
                .next_batch(base, batch.max_timestamp, batch.last_offset, indexed);
        self.active
            .first_batch_timestamp
            .get_or_insert(batch.max_timestamp);
        let time = self.active.time;
        let write = self.active_write();
        if indexed {
            let (Ok(relative_offset), Ok(position)) = (relative_offset, u32::try_from(position))
            else {
                panic!(
                    "index entry out of range: offset {} position {position}",
                    batch.last_offset
                );
            };
            write.index_entries.push(IndexEntry {
                relative_offset,
                position,
            });
        }
        write.time_entries.extend(time_entry);
        write.max_timestamp = time.max_timestamp;
        write.offset_of_max_timestamp = time.offset_of_max_timestamp;
        let adopted = match batch.bytes {
            BatchBytes::Slices { header, body } => {
                write.push_bytes(header);
                write.push_bytes(body);
                false
            }
            BatchBytes::Received(received) => match write.adopt(received) {
                Ok(()) => true,
                Err(received) => {
                    for part in received.parts() {
                        write.push_bytes(part);
                    }
                    false
                }
            },
        };
        write.end_offset = batch.last_offset.next();
        let end_position = write.end_position;
        self.active.size_bytes += batch_bytes;
        assert_eq!(end_position, self.active.size_bytes);
        adopted
    }

    fn roll(&mut self, base: Offset, now_ms: i64) {
        let previous_base = self.active.base_offset;
        let rolled = RolledSegment {
            base_offset: previous_base,
            size_bytes: self.active.size_bytes,
            final_time_entry: self.active.time.entry_if_grown(previous_base),
        };
        self.queue.push(PendingWrite::new(base, Some(rolled), 0));
        self.active = ActiveSegment::empty(base, now_ms);
        self.tail_position = 0;
    }

    fn active_write(&mut self) -> &mut PendingWrite {
        let continues = matches!(self.queue.last(), Some(write) if write.segment_base == self.active.base_offset);
        if !continues {
            let mut write = PendingWrite::new(self.active.base_offset, None, self.tail_position);
            write.push_bytes(&self.active.tail);
            self.queue.push(write);
        }
        let Some(write) = self.queue.last_mut() else {
            unreachable!()
        };
        write
    }

    /// Base offset of the active segment, counting pending rolls.
    pub fn active_base(&self) -> Offset {
        self.active.base_offset
    }

    pub fn has_pending(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether a pending write starts a new segment.
    pub fn rolls_pending(&self) -> bool {
        self.queue.iter().any(|write| write.rolled_from.is_some())
    }

    /// Hands every pending write to the flusher and keeps the partial last block, so that the
    /// next write starts where this one's last whole block ends.
    pub fn take(&mut self) -> Vec<PendingWrite> {
        let writes = std::mem::take(&mut self.queue);
        if let Some(last) = writes.last() {
            assert_eq!(last.segment_base, self.active.base_offset);
            assert_eq!(last.end_position, self.active.size_bytes);
            let (position, bytes) = last.partial_last_block();
            self.active.tail.clear();
            self.active.tail.extend_from_slice(bytes);
            self.tail_position = position;
        }
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fill: u8) -> [u8; HEADER_BYTES] {
        [fill; HEADER_BYTES]
    }

    fn fresh(base: u64) -> Appender {
        Appender::new(ActiveSegment::empty(Offset(base as i64), 0))
    }

    /// Appends a batch stamped 1000 ms (well within `segment.ms`).
    fn append(
        appender: &mut Appender,
        header: &[u8; HEADER_BYTES],
        body: &[u8],
        offsets: (i64, i64),
        config: &LogConfig,
    ) {
        let batch = BatchToAppend {
            bytes: BatchBytes::Slices { header, body },
            base_offset: Offset(offsets.0),
            last_offset: Offset(offsets.1),
            max_timestamp: 1000,
            now_ms: 0,
        };
        appender.append(batch, config);
    }

    fn config(segment_bytes: u64) -> LogConfig {
        LogConfig {
            segment_bytes,
            index_interval_bytes: 100,
            ..LogConfig::default()
        }
    }

    #[test]
    fn whole_buffers_are_reused_and_trimmed_ones_freed() {
        let small = acquire_buffer(8192);
        let address = small.as_ptr();
        release_chunk(small);
        let again = acquire_buffer(8192);
        assert_eq!(
            again.as_ptr(),
            address,
            "a whole buffer of that size is reused"
        );
        assert_eq!(again.len(), 8192);
        let mut trimmed = again;
        trimmed.trim_to_size(4096);
        release_buffer(trimmed, 8192);
        let pooled = SMALL_POOL.with(|pool| pool.borrow().iter().map(Vec::len).sum::<usize>());
        assert_eq!(
            pooled, 0,
            "a trimmed buffer is freed, not pooled as a smaller one"
        );
        let chunk = acquire_buffer(CHUNK_BYTES);
        assert_eq!(chunk.len(), CHUNK_BYTES);
    }

    #[test]
    fn batches_are_copied_contiguously_across_chunks() {
        let mut appender = fresh(0);
        let body = vec![7u8; CHUNK_BYTES]; // forces a chunk boundary inside the batch
        append(&mut appender, &header(1), &body, (0, 0), &config(1 << 30));
        append(
            &mut appender,
            &header(2),
            &body[..10],
            (1, 1),
            &config(1 << 30),
        );
        let mut writes = appender.take();
        assert_eq!(writes.len(), 1);
        let write = writes.pop().unwrap();
        assert_eq!(write.start_position, 0);
        assert_eq!(
            write.end_position,
            (2 * HEADER_BYTES + CHUNK_BYTES + 10) as u64
        );
        assert_eq!(write.end_offset, Offset(2));
        assert_eq!(
            write.index_entries,
            [IndexEntry {
                relative_offset: 1,
                position: (HEADER_BYTES + CHUNK_BYTES) as u32
            }]
        );
        let end = write.end_position as usize;
        let chunks = write.into_aligned_chunks();
        let mut bytes = Vec::new();
        for chunk in &chunks {
            assert_eq!(chunk.position as usize, bytes.len());
            bytes.extend_from_slice(chunk.buffer.as_bytes());
        }
        assert_eq!(bytes.len(), align_up(end as u64) as usize);
        assert!(bytes[..HEADER_BYTES].iter().all(|byte| *byte == 1));
        assert!(bytes[HEADER_BYTES..HEADER_BYTES + CHUNK_BYTES]
            .iter()
            .all(|byte| *byte == 7));
        assert!(
            bytes[end..].iter().all(|byte| *byte == 0),
            "padding is zeros"
        );
    }

    #[test]
    fn the_partial_block_is_carried_into_the_next_write() {
        let mut appender = fresh(0);
        append(
            &mut appender,
            &header(1),
            &[3; 5000],
            (0, 4),
            &config(1 << 30),
        );
        let first = appender.take();
        assert_eq!(first[0].end_position, 5061);
        append(
            &mut appender,
            &header(2),
            &[4; 10],
            (5, 5),
            &config(1 << 30),
        );
        let second = appender.take();
        assert_eq!(second[0].start_position, 4096);
        let chunks = second.into_iter().next().unwrap().into_aligned_chunks();
        let bytes = chunks[0].buffer.as_bytes();
        assert_eq!(bytes.len(), 4096);
        assert!(
            bytes[..5061 - 4096].iter().all(|byte| *byte == 3),
            "tail of the first batch"
        );
        assert!(bytes[5061 - 4096..5061 - 4096 + HEADER_BYTES]
            .iter()
            .all(|byte| *byte == 2));
    }

    #[test]
    fn rolls_when_the_segment_would_overflow() {
        let mut appender = Appender::new(ActiveSegment {
            size_bytes: 300,
            tail: vec![9; 300],
            first_batch_timestamp: Some(1000),
            ..ActiveSegment::empty(Offset(10), 0)
        });
        append(&mut appender, &header(1), &[0; 100], (10, 10), &config(500));
        append(&mut appender, &header(1), &[0; 100], (11, 11), &config(500));
        let writes = appender.take();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].segment_base, Offset(10));
        assert_eq!(writes[0].end_position, 461);
        assert_eq!(writes[1].segment_base, Offset(11));
        assert_eq!(
            writes[1].rolled_from,
            Some(RolledSegment {
                base_offset: Offset(10),
                size_bytes: 461,
                final_time_entry: Some(crate::time_index::TimeIndexEntry {
                    timestamp: 1000,
                    relative_offset: 0
                }),
            })
        );
        assert_eq!(writes[1].start_position, 0);
        assert_eq!(writes[1].end_position, 161);
        // A batch larger than the segment size goes into an empty segment anyway.
        let mut empty = fresh(0);
        append(&mut empty, &header(1), &[0; 1000], (0, 0), &config(500));
        assert_eq!(empty.take().len(), 1);
    }
}
