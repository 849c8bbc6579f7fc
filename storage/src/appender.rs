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
use crate::segment::{align_down, align_up, BLOCK_BYTES};
use crate::{LogConfig, Offset};
use glommio::io::{DmaBuffer, DmaFile};
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

const _: () = assert!(CHUNK_BYTES as u64 & (BLOCK_BYTES - 1) == 0);
const _: () = assert!(CHUNK_BYTES >= HEADER_BYTES);

thread_local! {
    /// Free chunks of this shard, shared by all its partitions. The chunks are plain aligned
    /// heap memory (not the executor's registered buffers), so they may outlive an executor.
    static CHUNK_POOL: RefCell<Vec<DmaBuffer>> = const { RefCell::new(Vec::new()) };
}

fn acquire_chunk() -> DmaBuffer {
    let pooled = CHUNK_POOL.with(|pool| pool.borrow_mut().pop());
    pooled.unwrap_or_else(|| glommio::allocate_dma_buffer_global(CHUNK_BYTES))
}

fn release_chunk(chunk: DmaBuffer) {
    if chunk.len() != CHUNK_BYTES {
        return; // trimmed last chunk of a write: cannot grow back, free it
    }
    CHUNK_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED_CHUNKS_MAX {
            pool.push(chunk);
        }
    });
}

/// The final logical size of a segment that stopped being active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RolledSegment {
    pub base_offset: Offset,
    pub size_bytes: u64,
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
    chunks: Vec<DmaBuffer>,
    /// Bytes used in the last chunk.
    last_chunk_bytes: usize,
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
            chunks: Vec::new(),
            last_chunk_bytes: 0,
        }
    }

    fn push_bytes(&mut self, mut bytes: &[u8]) {
        self.end_position += bytes.len() as u64;
        while !bytes.is_empty() {
            if self.chunks.is_empty() || self.last_chunk_bytes == CHUNK_BYTES {
                self.chunks.push(acquire_chunk());
                self.last_chunk_bytes = 0;
            }
            let Some(chunk) = self.chunks.last_mut() else {
                unreachable!()
            };
            let copied = bytes.len().min(CHUNK_BYTES - self.last_chunk_bytes);
            let start = self.last_chunk_bytes;
            chunk.as_bytes_mut()[start..start + copied].copy_from_slice(&bytes[..copied]);
            self.last_chunk_bytes += copied;
            bytes = &bytes[copied..];
        }
        assert_eq!(
            self.buffered_bytes(),
            self.end_position - self.start_position
        );
    }

    fn buffered_bytes(&self) -> u64 {
        match self.chunks.len() {
            0 => 0,
            count => ((count - 1) * CHUNK_BYTES + self.last_chunk_bytes) as u64,
        }
    }

    /// The partial block at the end of these bytes: its file position and its bytes.
    fn partial_last_block(&self) -> (u64, &[u8]) {
        let tail_position = align_down(self.end_position);
        let Some(chunk) = self.chunks.last() else {
            return (tail_position, &[]);
        };
        let in_chunk = align_down(self.last_chunk_bytes as u64) as usize;
        (
            tail_position,
            &chunk.as_bytes()[in_chunk..self.last_chunk_bytes],
        )
    }

    /// The chunks to write and where, the last one zero-padded to a whole block.
    fn into_aligned_chunks(mut self) -> Vec<(u64, DmaBuffer)> {
        let padded = align_up(self.last_chunk_bytes as u64) as usize;
        if let Some(last) = self.chunks.last_mut() {
            last.as_bytes_mut()[self.last_chunk_bytes..padded].fill(0);
            last.trim_to_size(padded);
        }
        let start = self.start_position;
        let chunks = std::mem::take(&mut self.chunks);
        chunks
            .into_iter()
            .enumerate()
            .map(|(number, chunk)| (start + (number * CHUNK_BYTES) as u64, chunk))
            .collect()
    }

    /// Writes these bytes to `file` (the flusher calls this; the caller syncs), keeping at
    /// most `in_flight_bytes_max` of writes submitted at once (at least one chunk). The disk's
    /// bandwidth appears at a few MiB in flight (`spate-tune iotune` measures the knee);
    /// submitting more only queues in the kernel and pins more buffers. The chunks are dealt
    /// round-robin to lanes that each write their share in order, so the window stays full
    /// without spawning a task per write. Full chunks return to the pool afterwards.
    pub async fn write_to(self, file: &DmaFile, in_flight_bytes_max: usize) -> io::Result<()> {
        let chunks = self.into_aligned_chunks();
        let lanes = (in_flight_bytes_max / CHUNK_BYTES).clamp(1, chunks.len().max(1));
        let mut lane_chunks: Vec<Vec<(u64, DmaBuffer)>> = (0..lanes).map(|_| Vec::new()).collect();
        for (number, chunk) in chunks.into_iter().enumerate() {
            lane_chunks[number % lanes].push(chunk);
        }
        let lanes = lane_chunks.into_iter().map(|chunks| async move {
            for (position, chunk) in chunks {
                let chunk = write_chunk(file, chunk, position).await?;
                if let Ok(chunk) = Rc::try_unwrap(chunk) {
                    release_chunk(chunk);
                }
            }
            Ok::<(), io::Error>(())
        });
        for outcome in join_all(lanes.collect()).await {
            outcome?;
        }
        Ok(())
    }
}

/// One O_DIRECT write of a whole chunk; a short write is an error.
async fn write_chunk(file: &DmaFile, chunk: DmaBuffer, position: u64) -> io::Result<Rc<DmaBuffer>> {
    let chunk = Rc::new(chunk);
    let expected = chunk.len();
    let written = file.write_rc_at(chunk.clone(), position).await?;
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
            release_chunk(chunk);
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

/// Where the active segment stands, counting pending bytes, and what is waiting for the flusher.
pub(crate) struct Appender {
    /// Pending writes, oldest first: one per segment (two or more only around a roll).
    queue: Vec<PendingWrite>,
    active_base: Offset,
    /// Logical size of the active segment including pending bytes.
    active_bytes: u64,
    cadence: IndexCadence,
    /// The partial last block of the active segment that is not in any pending write.
    tail: Vec<u8>,
    tail_position: u64,
}

impl Appender {
    /// Resumes after recovery: the active segment, its logical size, its partial last block
    /// (the bytes from `align_down(active_bytes)`), and the index cadence.
    pub fn new(
        active_base: Offset,
        active_bytes: u64,
        tail: Vec<u8>,
        cadence: IndexCadence,
    ) -> Self {
        let tail_position = align_down(active_bytes);
        assert_eq!(tail_position + tail.len() as u64, active_bytes);
        Appender {
            queue: Vec::new(),
            active_base,
            active_bytes,
            cadence,
            tail,
            tail_position,
        }
    }

    /// Copies one batch (its patched header, then the rest) into the pending buffer, rolling to
    /// a new segment first if the batch would take the active one over `segment_bytes`.
    pub fn append(
        &mut self,
        header: &[u8; HEADER_BYTES],
        body: &[u8],
        base: Offset,
        last: Offset,
        config: &LogConfig,
    ) {
        assert!(last >= base);
        let batch_bytes = (HEADER_BYTES + body.len()) as u64;
        let too_big = self.active_bytes + batch_bytes > config.segment_bytes;
        // Relative offsets in the index are u32; Kafka keeps them within i32 too.
        let too_many_offsets = last.0 - self.active_base.0 > i32::MAX as i64;
        if self.active_bytes > 0 && (too_big || too_many_offsets) {
            self.roll(base);
        }
        let position = self.active_bytes;
        let relative_offset = u32::try_from(last.0 - self.active_base.0);
        let indexed = self
            .cadence
            .next_batch(batch_bytes, config.index_interval_bytes);
        let write = self.active_write();
        if indexed {
            let (Ok(relative_offset), Ok(position)) = (relative_offset, u32::try_from(position))
            else {
                panic!("index entry out of range: offset {last} position {position}");
            };
            write.index_entries.push(IndexEntry {
                relative_offset,
                position,
            });
        }
        write.push_bytes(header);
        write.push_bytes(body);
        write.end_offset = last.next();
        let end_position = write.end_position;
        self.active_bytes += batch_bytes;
        assert_eq!(end_position, self.active_bytes);
    }

    fn roll(&mut self, base: Offset) {
        let rolled = RolledSegment {
            base_offset: self.active_base,
            size_bytes: self.active_bytes,
        };
        self.queue.push(PendingWrite::new(base, Some(rolled), 0));
        self.active_base = base;
        self.active_bytes = 0;
        self.cadence = IndexCadence::default();
        self.tail.clear();
        self.tail_position = 0;
    }

    fn active_write(&mut self) -> &mut PendingWrite {
        let continues =
            matches!(self.queue.last(), Some(write) if write.segment_base == self.active_base);
        if !continues {
            let mut write = PendingWrite::new(self.active_base, None, self.tail_position);
            write.push_bytes(&self.tail);
            self.queue.push(write);
        }
        let Some(write) = self.queue.last_mut() else {
            unreachable!()
        };
        write
    }

    pub fn has_pending(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Hands every pending write to the flusher and keeps the partial last block, so that the
    /// next write starts where this one's last whole block ends.
    pub fn take(&mut self) -> Vec<PendingWrite> {
        let writes = std::mem::take(&mut self.queue);
        if let Some(last) = writes.last() {
            assert_eq!(last.segment_base, self.active_base);
            assert_eq!(last.end_position, self.active_bytes);
            let (position, bytes) = last.partial_last_block();
            self.tail.clear();
            self.tail.extend_from_slice(bytes);
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

    fn config(segment_bytes: u64) -> LogConfig {
        LogConfig {
            segment_bytes,
            index_interval_bytes: 100,
            ..LogConfig::default()
        }
    }

    #[test]
    fn batches_are_copied_contiguously_across_chunks() {
        let mut appender = Appender::new(Offset(0), 0, Vec::new(), IndexCadence::default());
        let body = vec![7u8; CHUNK_BYTES]; // forces a chunk boundary inside the batch
        appender.append(&header(1), &body, Offset(0), Offset(0), &config(1 << 30));
        appender.append(
            &header(2),
            &body[..10],
            Offset(1),
            Offset(1),
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
        for (position, chunk) in &chunks {
            assert_eq!(*position as usize, bytes.len());
            bytes.extend_from_slice(chunk.as_bytes());
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
        let mut appender = Appender::new(Offset(0), 0, Vec::new(), IndexCadence::default());
        appender.append(
            &header(1),
            &[3; 5000],
            Offset(0),
            Offset(4),
            &config(1 << 30),
        );
        let first = appender.take();
        assert_eq!(first[0].end_position, 5061);
        appender.append(&header(2), &[4; 10], Offset(5), Offset(5), &config(1 << 30));
        let second = appender.take();
        assert_eq!(second[0].start_position, 4096);
        let chunks = second.into_iter().next().unwrap().into_aligned_chunks();
        let bytes = chunks[0].1.as_bytes();
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
        let mut appender = Appender::new(Offset(10), 300, vec![9; 300], IndexCadence::default());
        appender.append(&header(1), &[0; 100], Offset(10), Offset(10), &config(500));
        appender.append(&header(1), &[0; 100], Offset(11), Offset(11), &config(500));
        let writes = appender.take();
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].segment_base, Offset(10));
        assert_eq!(writes[0].end_position, 461);
        assert_eq!(writes[1].segment_base, Offset(11));
        assert_eq!(
            writes[1].rolled_from,
            Some(RolledSegment {
                base_offset: Offset(10),
                size_bytes: 461
            })
        );
        assert_eq!(writes[1].start_position, 0);
        assert_eq!(writes[1].end_position, 161);
        // A batch larger than the segment size goes into an empty segment anyway.
        let mut empty = Appender::new(Offset(0), 0, Vec::new(), IndexCadence::default());
        empty.append(&header(1), &[0; 1000], Offset(0), Offset(0), &config(500));
        assert_eq!(empty.take().len(), 1);
    }
}
