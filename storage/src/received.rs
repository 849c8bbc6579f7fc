//! A producer's batch received from the socket straight into the DMA chunks it will be written
//! from: the one copy of the payload on the produce path.
//!
//! The connection learns a partition's batch size from the produce request before the batch
//! arrives. It asks the log where in its first 4 KiB block the batch would start if it were
//! appended now ([`crate::PartitionLog::receive_front`]) and reads the batch from the socket
//! into pool chunks at that same place in memory. Appending it ([`crate::PartitionLog::append_received`])
//! then adopts the chunks into the pending write as they are: only the partial block already
//! pending in front of the batch (under 4 KiB) is copied in front of it. If the log moved in
//! the meantime (another connection appended to the partition, or the segment rolled), the
//! batch is copied into the pending write instead, as a batch from a request buffer is.
//!
//! Concurrency contract: shard-local, like the chunk pool it draws from. Dropping a
//! [`ReceivedBatch`] (an invalid batch, a client gone mid-batch) returns its chunks to the pool.

use glommio::io::DmaBuffer;
use smallvec::SmallVec;

use crate::appender::{acquire_buffer, acquire_chunk, release_chunk, CHUNK_BYTES};
use crate::batch::{Parts, HEADER_BYTES};
use crate::segment::{align_up, BLOCK_BYTES};

/// A received batch's chunks: three hold a 256 KiB batch, so most batches allocate no list.
pub(crate) type Chunks = SmallVec<[DmaBuffer; 4]>;

/// One batch's bytes in pool chunks: they start `front` bytes into the first chunk (where the
/// partial block pending before it goes) and fill the chunks after it.
pub struct ReceivedBatch {
    pub(crate) chunks: Chunks,
    pub(crate) front: usize,
    len: usize,
}

impl ReceivedBatch {
    /// Room for a batch of `len` bytes starting `front` bytes into a block (`front` is taken
    /// modulo the block size): whole chunks from this shard's pool, and a last chunk fitted
    /// to what is left (whole blocks, from the pool of that size). Adopted, a batch ends the pending write's chunks
    /// with that last one, which the next adopted batch cuts at its last whole block: a pool
    /// chunk there would keep 128 KiB for a few KiB of data in the tail cache.
    pub fn new(front: usize, len: usize) -> ReceivedBatch {
        let mut batch = ReceivedBatch::empty(front, len);
        while batch.next_part_mut().is_some() {}
        batch
    }

    /// [`Self::new`] without its chunks: [`Self::next_part_mut`] takes them one at a time, as
    /// the batch arrives, so that a client claiming a large batch and sending little of it
    /// makes the shard hold only what it sent.
    pub fn empty(front: usize, len: usize) -> ReceivedBatch {
        ReceivedBatch {
            chunks: Chunks::new(),
            front: front % BLOCK_BYTES as usize,
            len,
        }
    }

    /// The next chunk's share of the batch to receive into, its chunk taken now; `None` once
    /// every chunk is taken. Whole pool chunks first, then the last fitted to what is left.
    pub fn next_part_mut(&mut self) -> Option<&mut [u8]> {
        let total = self.front + self.len;
        let whole = total / CHUNK_BYTES;
        let rest = align_up((total % CHUNK_BYTES) as u64) as usize;
        let planned = whole + usize::from(rest > 0 || whole == 0);
        let number = self.chunks.len();
        if number == planned {
            return None;
        }
        self.chunks.push(if number < whole {
            acquire_chunk()
        } else {
            acquire_buffer(rest.max(BLOCK_BYTES as usize))
        });
        let (_, start, end) = self.spans().last()?;
        Some(&mut self.chunks[number].as_bytes_mut()[start..end])
    }

    /// The batch's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where each chunk's share of the batch lies in it: (chunk, start, end).
    /// Every chunk but the last is a whole pool chunk.
    fn spans(&self) -> impl Iterator<Item = (usize, usize, usize)> + use<> {
        let (front, end) = (self.front, self.front + self.len);
        (0..self.chunks.len()).map(move |number| {
            let chunk_start = number * CHUNK_BYTES;
            let start = if number == 0 { front } else { 0 };
            (
                number,
                start,
                end.min(chunk_start + CHUNK_BYTES) - chunk_start,
            )
        })
    }

    /// The batch's bytes, in order, as pieces of memory.
    pub fn parts(&self) -> Parts<'_> {
        self.spans()
            .map(|(number, start, end)| &self.chunks[number].as_bytes()[start..end])
            .collect()
    }

    /// The batch's bytes, in order, as pieces of memory to receive into.
    pub fn parts_mut(&mut self) -> SmallVec<[&mut [u8]; 4]> {
        let spans: SmallVec<[_; 4]> = self.spans().collect();
        self.chunks
            .iter_mut()
            .zip(spans)
            .map(|(chunk, (_, start, end))| &mut chunk.as_bytes_mut()[start..end])
            .collect()
    }

    /// The batch's first [`HEADER_BYTES`], if it has that many. The first chunk holds all of
    /// the batch or at least `CHUNK_BYTES - BLOCK_BYTES` of it, so the header never spans
    /// chunks.
    pub fn header(&self) -> Option<&[u8]> {
        let first = self.chunks.first()?.as_bytes();
        (self.len >= HEADER_BYTES).then(|| &first[self.front..self.front + HEADER_BYTES])
    }

    /// Overwrites the batch's header (the broker patches its base offset and leader epoch).
    pub(crate) fn set_header(&mut self, header: &[u8; HEADER_BYTES]) {
        let front = self.front;
        self.chunks[0].as_bytes_mut()[front..front + HEADER_BYTES].copy_from_slice(header);
    }

    /// The batch as one contiguous buffer (a copy), for the rare checks that need one.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }

    /// Hands the chunks over (to the pending write), with the bytes used in each, counting the
    /// front: all are full but the last.
    pub(crate) fn into_chunks(mut self) -> SmallVec<[(DmaBuffer, usize); 4]> {
        let spans: SmallVec<[_; 4]> = self.spans().collect();
        std::mem::take(&mut self.chunks)
            .into_iter()
            .zip(spans)
            .map(|(chunk, (_, _, end))| (chunk, end))
            .collect()
    }
}

const _: () = assert!(CHUNK_BYTES >= BLOCK_BYTES as usize + HEADER_BYTES);

impl Drop for ReceivedBatch {
    fn drop(&mut self) {
        for chunk in self.chunks.drain(..) {
            release_chunk(chunk);
        }
    }
}

impl std::fmt::Debug for ReceivedBatch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReceivedBatch")
            .field("front", &self.front)
            .field("len", &self.len)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_batch_in_order_from_the_front() {
        let mut batch = ReceivedBatch::new(4096 + 100, 2 * CHUNK_BYTES);
        assert_eq!(batch.front, 100);
        assert_eq!(batch.chunks.len(), 3);
        let mut value = 0u8;
        for part in batch.parts_mut() {
            for byte in part.iter_mut() {
                *byte = value;
                value = value.wrapping_add(1);
            }
        }
        let bytes = batch.to_vec();
        assert_eq!(bytes.len(), 2 * CHUNK_BYTES);
        assert!(bytes.iter().enumerate().all(|(at, byte)| *byte == at as u8));
        let sizes: Vec<usize> = batch.parts().iter().map(|part| part.len()).collect();
        assert_eq!(sizes, [CHUNK_BYTES - 100, CHUNK_BYTES, 100]);
        let allocated: Vec<usize> = batch.chunks.iter().map(DmaBuffer::len).collect();
        assert_eq!(
            allocated,
            [CHUNK_BYTES, CHUNK_BYTES, 4096],
            "the last chunk fits"
        );
        let used: Vec<usize> = batch.into_chunks().iter().map(|(_, used)| *used).collect();
        assert_eq!(used, [CHUNK_BYTES, CHUNK_BYTES, 100]);
    }

    #[test]
    fn a_batch_that_fits_the_first_chunk_uses_one() {
        let batch = ReceivedBatch::new(0, 61);
        assert_eq!(batch.chunks.len(), 1);
        assert_eq!(ReceivedBatch::new(4000, 20_000).chunks[0].len(), 24 * 1024);
        assert_eq!(ReceivedBatch::new(0, CHUNK_BYTES).chunks.len(), 1);
        assert_eq!(batch.header().map(<[u8]>::len), Some(HEADER_BYTES));
        assert!(ReceivedBatch::new(10, 60).header().is_none());
    }
}

#[cfg(test)]
#[path = "received_tests.rs"]
mod append_tests;
