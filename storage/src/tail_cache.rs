//! The tail cache: the DMA chunks the flusher has just written stay in memory, so that
//! consumers at the tail of a log are served without touching the disk.
//!
//! No copy is made to fill it. `append` copies a batch once, into a 4 KiB-aligned chunk of
//! the pending buffer (see `appender`); the flusher writes those chunks with O_DIRECT and,
//! once they are synced and the durable end covers them, hands them here instead of back to
//! the chunk pool. Everything in the cache is therefore durable and visible, and a chunk is
//! never written to again.
//!
//! Memory: the chunks are plain aligned heap memory (`glommio::allocate_dma_buffer_global`,
//! not the executor's registered I/O arena), so the cache does not count against the locked
//! memory limit (8 MiB on the reference host). Each shard has one byte budget
//! ([`set_shard_budget_bytes`]) shared by all its partitions; a chunk is charged its whole
//! allocation (`CHUNK_BYTES` for a pool chunk, less for the last chunk of a batch received in
//! place, which is allocated to fit), however little of it holds data. When a new chunk takes the
//! shard over its budget, the oldest chunks of the shard go first, whichever partition they
//! belong to.
//!
//! A chunk is found by its segment (the base offset, and the segment's file as identity, so
//! that a segment replaced under the same base offset never matches stale bytes) and its file
//! position. Successive writes overlap by at most the partial block they rewrite; the newest
//! chunk that starts at or before a position is the one to read it from.
//!
//! Concurrency contract: shard-local. The budget lives in a thread local of the shard's
//! thread; a partition's `PartitionTail` belongs to its `LogShared` and is only touched by
//! that shard's tasks, never across an `.await`.

use crate::appender::{release_buffer, WrittenChunk};
use crate::Offset;
use glommio::io::{DmaBuffer, DmaFile};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

/// Default per-shard budget when the broker does not set one.
pub const DEFAULT_SHARD_BUDGET_BYTES: usize = 64 * 1024 * 1024;

thread_local! {
    static SHARD: RefCell<ShardBudget> = const { RefCell::new(ShardBudget {
        budget_bytes: DEFAULT_SHARD_BUDGET_BYTES,
        used_bytes: 0,
        chunk_count: 0,
        next_sequence: 0,
        order: VecDeque::new(),
    }) };
}

/// Sets this shard's tail cache budget (call it on the shard's thread, before serving). Zero
/// turns the cache off. Shrinking evicts at once.
pub fn set_shard_budget_bytes(budget_bytes: usize) {
    SHARD.with(|shard| shard.borrow_mut().budget_bytes = budget_bytes);
    evict_over_budget();
}

/// This shard's tail cache occupancy: (bytes charged, budget).
pub fn shard_usage_bytes() -> (usize, usize) {
    SHARD.with(|shard| {
        let shard = shard.borrow();
        (shard.used_bytes, shard.budget_bytes)
    })
}

/// The shard-wide accounting and eviction order.
struct ShardBudget {
    budget_bytes: usize,
    used_bytes: usize,
    /// Chunks cached on the shard (their sizes vary, so `used_bytes` does not tell).
    chunk_count: usize,
    next_sequence: u64,
    /// Every cached chunk of the shard, oldest first: its partition and sequence number.
    order: VecDeque<(Weak<TailChunks>, u64)>,
}

/// One cached chunk.
pub(crate) struct CachedChunk {
    segment_base: Offset,
    /// Identity of the segment's file (never upgraded: only compared).
    segment_file: Weak<DmaFile>,
    /// File position of the chunk's first byte.
    position: u64,
    /// Bytes from the start of the chunk that are durable log data.
    valid_bytes: usize,
    buffer: Rc<DmaBuffer>,
    sequence: u64,
    /// What the chunk is charged against the budget: its allocation's size.
    charged: usize,
}

impl CachedChunk {
    fn end_position(&self) -> u64 {
        self.position + self.valid_bytes as u64
    }
}

/// A slice of a cached chunk: the bytes of a log that the cache holds.
#[derive(Clone)]
pub struct CachedBytes {
    buffer: Rc<DmaBuffer>,
    start: usize,
    length: usize,
}

impl CachedBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buffer.as_bytes()[self.start..self.start + self.length]
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    pub(crate) fn shorten(&mut self, length: usize) {
        assert!(length <= self.length);
        self.length = length;
    }
}

struct TailChunks {
    chunks: RefCell<VecDeque<CachedChunk>>,
    charged_bytes: Cell<usize>,
}

/// The cached chunks of one partition, oldest first. Owned by the partition's `LogShared`.
pub(crate) struct PartitionTail {
    inner: Rc<TailChunks>,
}

impl PartitionTail {
    pub fn new() -> Self {
        PartitionTail {
            inner: Rc::new(TailChunks {
                chunks: RefCell::new(VecDeque::new()),
                charged_bytes: Cell::new(0),
            }),
        }
    }

    /// Caches chunks just made durable and visible: `chunks` are a write's chunks with their
    /// file positions, in order, holding log data up to `end_position`. With the cache off,
    /// they go straight back to the chunk pool.
    pub fn insert(
        &self,
        segment: (Offset, &Rc<DmaFile>),
        end_position: u64,
        chunks: Vec<WrittenChunk>,
    ) {
        let (budget_bytes, first_sequence) = SHARD.with(|shard| {
            let mut shard = shard.borrow_mut();
            let first = shard.next_sequence;
            shard.next_sequence += chunks.len() as u64;
            (shard.budget_bytes, first)
        });
        if budget_bytes == 0 {
            chunks
                .into_iter()
                .for_each(|chunk| release_buffer(chunk.buffer, chunk.allocated));
            return;
        }
        let (segment_base, segment_file) = segment;
        let mut cached = self.inner.chunks.borrow_mut();
        for (number, written) in chunks.into_iter().enumerate() {
            let WrittenChunk {
                position,
                buffer,
                allocated,
            } = written;
            let valid_bytes = end_position
                .saturating_sub(position)
                .min(buffer.len() as u64);
            let chunk = CachedChunk {
                segment_base,
                segment_file: Rc::downgrade(segment_file),
                position,
                valid_bytes: valid_bytes as usize,
                buffer: Rc::new(buffer),
                sequence: first_sequence + number as u64,
                charged: allocated,
            };
            if let Some(last) = cached.back() {
                assert!(
                    (last.segment_base, last.position) <= (chunk.segment_base, chunk.position),
                    "tail cache chunks out of order"
                );
            }
            cached.push_back(chunk);
            self.inner
                .charged_bytes
                .set(self.inner.charged_bytes.get() + allocated);
            SHARD.with(|shard| {
                let mut shard = shard.borrow_mut();
                shard.used_bytes += allocated;
                shard.chunk_count += 1;
                shard
                    .order
                    .push_back((Rc::downgrade(&self.inner), first_sequence + number as u64));
            });
        }
        drop(cached);
        evict_over_budget();
    }

    /// The cached bytes of a segment from `position` on (to the end of the one chunk that
    /// holds it), or `None` if the cache does not hold `position`.
    pub fn bytes_at(&self, segment: (Offset, &Rc<DmaFile>), position: u64) -> Option<CachedBytes> {
        let (segment_base, segment_file) = segment;
        let chunks = self.inner.chunks.borrow();
        let found = chunks
            .partition_point(|chunk| {
                (chunk.segment_base, chunk.position) <= (segment_base, position)
            })
            .checked_sub(1)?;
        let chunk = &chunks[found];
        if chunk.segment_base != segment_base
            || chunk.segment_file.as_ptr() != Rc::as_ptr(segment_file)
            || position >= chunk.end_position()
        {
            return None;
        }
        let start = (position - chunk.position) as usize;
        Some(CachedBytes {
            buffer: chunk.buffer.clone(),
            start,
            length: chunk.valid_bytes - start,
        })
    }

    /// Drops every cached chunk (the log is closing).
    pub fn clear(&self) {
        let dropped: Vec<CachedChunk> = self.inner.chunks.borrow_mut().drain(..).collect();
        let charged = self.inner.charged_bytes.replace(0);
        SHARD.with(|shard| {
            let mut shard = shard.borrow_mut();
            shard.used_bytes -= charged;
            shard.chunk_count -= dropped.len();
            // Entries of cleared chunks stay in the order until eviction reaches them; drop
            // them once they outnumber the live ones, so the order stays bounded.
            if shard.order.len() > 2 * shard.chunk_count + 1024 {
                shard.order.retain(|(partition, sequence)| {
                    partition.upgrade().is_some_and(|partition| {
                        partition
                            .chunks
                            .borrow()
                            .front()
                            .is_some_and(|front| front.sequence <= *sequence)
                    })
                });
            }
        });
        for chunk in dropped {
            recycle(chunk);
        }
    }
}

impl Drop for PartitionTail {
    fn drop(&mut self) {
        self.clear();
    }
}

fn recycle(chunk: CachedChunk) {
    // A response that still holds the chunk keeps it alive; it is freed after that.
    if let Ok(buffer) = Rc::try_unwrap(chunk.buffer) {
        release_buffer(buffer, chunk.charged);
    }
}

/// Evicts the shard's oldest chunks until it is within its budget.
fn evict_over_budget() {
    loop {
        let victim = SHARD.with(|shard| {
            let mut shard = shard.borrow_mut();
            if shard.used_bytes <= shard.budget_bytes {
                return None;
            }
            // An entry whose chunk is already gone (cleared) was uncharged then: skip it.
            shard.order.pop_front()
        });
        let Some((partition, sequence)) = victim else {
            return;
        };
        let Some(partition) = partition.upgrade() else {
            continue;
        };
        let evicted = {
            let mut chunks = partition.chunks.borrow_mut();
            match chunks.front() {
                Some(front) if front.sequence == sequence => chunks.pop_front(),
                _ => None,
            }
        };
        if let Some(chunk) = evicted {
            partition
                .charged_bytes
                .set(partition.charged_bytes.get() - chunk.charged);
            SHARD.with(|shard| {
                let mut shard = shard.borrow_mut();
                shard.used_bytes -= chunk.charged;
                shard.chunk_count -= 1;
            });
            recycle(chunk);
        }
    }
}

#[cfg(test)]
#[path = "tail_cache_tests.rs"]
mod tests;
