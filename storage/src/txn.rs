//! Transactions in one partition's log, as Kafka keeps them (issue 17): transaction markers
//! (control batches), the aborted-transaction index, and what the last stable offset needs.
//!
//! - A transactional producer's batches carry attribute bit 4; the first one of a transaction
//!   opens it in this partition (`producer_state` keeps its first offset per producer, and the
//!   open transactions by first offset). The coordinator ends it by appending a **marker**: a
//!   control batch (bits 4 and 5) of one record whose key is `version: i16 = 0, type: i16`
//!   (0 abort, 1 commit) and whose value is `version: i16 = 0, coordinator_epoch: i32`
//!   ([`marker_batch`], appended by [`crate::PartitionLog::append_marker`]).
//! - The **last stable offset** is the first offset of the oldest transaction not yet decided
//!   and replicated: min(first offset of every open transaction, first offset of every
//!   completed one whose marker is not below the high watermark yet, high watermark)
//!   ([`crate::PartitionLog::last_stable_offset`]). read_committed consumers read below it.
//! - An abort leaves an [`AbortedTxn`] (producer id, first offset, the marker's offset, and the
//!   last stable offset at that moment), kept in memory for the whole log ([`AbortedTxns`];
//!   32 bytes each, dropped with their segments) so that a read_committed fetch learns which
//!   producers' batches in its range to drop ([`crate::PartitionLog::aborted_transactions`]).
//! - On disk, each sealed segment has a `<base>.txnindex` in Kafka's format: 34-byte entries
//!   `version: i16 = 0, producer_id: i64, first_offset: i64, last_offset: i64,
//!   last_stable_offset: i64`, one per abort whose marker is in that segment. It is written
//!   (temporary file, `fdatasync`, rename) at the roll that seals the segment, just before the
//!   producer snapshot of that roll, so a snapshot at offset S vouches for the index files of
//!   every segment below S. Recovery reads those files and replays the batches from the
//!   snapshot on; a sealed segment below the snapshot without its file (a log written before
//!   transactions existed, a failed write, a segment the cleaner merged) makes recovery replay
//!   the whole log once, writing the missing files as it goes.

use crate::appender::{BatchBytes, BatchToAppend};
use crate::batch::{BASE_OFFSET_BYTES, HEADER_BYTES, LEADER_EPOCH_BYTES};
use crate::records::{read_nullable, read_varint};
use crate::{Appended, Offset, StorageError};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The transaction marker in a control batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    /// Commit (type 1) or abort (type 0).
    pub commit: bool,
    /// The epoch of the coordinator that wrote it (from the record's value).
    pub coordinator_epoch: i32,
}

const CONTROL_KEY_VERSION: i16 = 0;
const MARKER_VALUE_VERSION: i16 = 0;
const CONTROL_TYPE_ABORT: i16 = 0;
const CONTROL_TYPE_COMMIT: i16 = 1;
/// Attributes of a marker batch: transactional and control, no codec.
const MARKER_ATTRIBUTES: i16 = 0x10 | 0x20;

/// The marker in the records section of a control batch (uncompressed, as Kafka writes
/// them), or `None` for any other control record (Kafka's leader-change records and the like)
/// or one that does not parse.
pub(crate) fn marker_of(records: &[u8]) -> Option<TxnMarker> {
    let mut cursor = records;
    let length = usize::try_from(read_varint(&mut cursor, 5)?).ok()?;
    let mut record = cursor.get(..length)?;
    let (_attributes, rest) = record.split_first()?;
    record = rest;
    read_varint(&mut record, 10)?; // timestampDelta
    read_varint(&mut record, 5)?; // offsetDelta
    let key = read_nullable(&mut record)??;
    let value = read_nullable(&mut record)?;
    let (version, kind) = (
        i16::from_be_bytes(key.get(..2)?.try_into().ok()?),
        i16::from_be_bytes(key.get(2..4)?.try_into().ok()?),
    );
    if version < CONTROL_KEY_VERSION {
        return None;
    }
    let commit = match kind {
        CONTROL_TYPE_ABORT => false,
        CONTROL_TYPE_COMMIT => true,
        _ => return None,
    };
    // Kafka reads the coordinator epoch from bytes 2..6 of the value.
    let coordinator_epoch = value.and_then(|value| value.get(2..6)).map_or(0, |bytes| {
        i32::from_be_bytes(bytes.try_into().unwrap_or_default())
    });
    Some(TxnMarker {
        commit,
        coordinator_epoch,
    })
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The control batch of a transaction marker for `producer_id` at `producer_epoch`, as Kafka's
/// `MemoryRecords.withEndTransactionMarker` builds it (base offset 0 and leader epoch -1: the
/// append assigns both).
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: TxnMarker,
    timestamp_ms: i64,
) -> Vec<u8> {
    let mut record = vec![0u8]; // attributes
    put_varint(&mut record, 0); // timestampDelta
    put_varint(&mut record, 0); // offsetDelta
    put_varint(&mut record, 4);
    record.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    let kind = if marker.commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    record.extend_from_slice(&kind.to_be_bytes());
    put_varint(&mut record, 6);
    record.extend_from_slice(&MARKER_VALUE_VERSION.to_be_bytes());
    record.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    put_varint(&mut record, 0); // headers
    let mut records = Vec::with_capacity(record.len() + 1);
    put_varint(&mut records, record.len() as i64);
    records.extend_from_slice(&record);

    let total = crate::batch::HEADER_BYTES + records.len();
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(&0i64.to_be_bytes()); // baseOffset
    bytes.extend_from_slice(&((total - crate::batch::LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
    bytes.extend_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
    bytes.push(crate::batch::MAGIC_V2 as u8);
    bytes.extend_from_slice(&[0; 4]); // crc, below
    bytes.extend_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    bytes.extend_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta
    bytes.extend_from_slice(&timestamp_ms.to_be_bytes()); // baseTimestamp
    bytes.extend_from_slice(&timestamp_ms.to_be_bytes()); // maxTimestamp
    bytes.extend_from_slice(&producer_id.to_be_bytes());
    bytes.extend_from_slice(&producer_epoch.to_be_bytes());
    bytes.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    bytes.extend_from_slice(&1i32.to_be_bytes()); // recordsCount
    bytes.extend_from_slice(&records);
    let crc = crc32c::crc32c(&bytes[crate::batch::CRC_COVERAGE_START..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// What a partition remembers of one producer (see [`crate::PartitionLog::active_producers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveProducer {
    /// The producer id.
    pub producer_id: i64,
    /// Its epoch as this partition last saw it.
    pub epoch: i16,
    /// The last sequence of its last batch here; -1 when only markers were written for it.
    pub last_sequence: i32,
    /// When its last batch was appended (ms since the epoch; Kafka reports the batch's
    /// largest timestamp, which for clients' CreateTime is about the same).
    pub last_append_ms: i64,
    /// The epoch of the transaction coordinator that wrote its last marker (-1: none).
    pub coordinator_epoch: i32,
    /// The first offset of its open transaction here: a transaction that stays open long
    /// is a hanging one, which `spate txn abort` ends.
    pub current_txn_first_offset: Option<Offset>,
}

/// One aborted transaction of this partition (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The transactional producer.
    pub producer_id: i64,
    /// Its transaction's first offset in this partition.
    pub first_offset: Offset,
    /// The abort marker's offset.
    pub last_offset: Offset,
    /// The last stable offset once the marker was appended: no transaction that completes
    /// later began below it (what lets a search stop early).
    pub last_stable_offset: Offset,
}

const ENTRY_VERSION: i16 = 0;
const ENTRY_BYTES: usize = 2 + 8 + 8 + 8 + 8;
const TXN_INDEX_SUFFIX: &str = ".txnindex";

/// `<dir>/<base, 20 digits>.txnindex`.
pub(crate) fn txn_index_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{:020}{TXN_INDEX_SUFFIX}", base.0))
}

pub(crate) fn encode_entries(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for entry in entries {
        bytes.extend_from_slice(&ENTRY_VERSION.to_be_bytes());
        bytes.extend_from_slice(&entry.producer_id.to_be_bytes());
        bytes.extend_from_slice(&entry.first_offset.0.to_be_bytes());
        bytes.extend_from_slice(&entry.last_offset.0.to_be_bytes());
        bytes.extend_from_slice(&entry.last_stable_offset.0.to_be_bytes());
    }
    bytes
}

/// The entries of a `.txnindex`, or `None` if it is not a whole number of version-0 entries
/// (Kafka refuses other versions too).
pub(crate) fn decode_entries(bytes: &[u8]) -> Option<Vec<AbortedTxn>> {
    if !bytes.len().is_multiple_of(ENTRY_BYTES) {
        return None;
    }
    let i64_at = |entry: &[u8], at: usize| {
        i64::from_be_bytes(entry[at..at + 8].try_into().expect("8 bytes"))
    };
    bytes
        .chunks_exact(ENTRY_BYTES)
        .map(|entry| {
            (i16::from_be_bytes([entry[0], entry[1]]) == ENTRY_VERSION).then(|| AbortedTxn {
                producer_id: i64_at(entry, 2),
                first_offset: Offset(i64_at(entry, 10)),
                last_offset: Offset(i64_at(entry, 18)),
                last_stable_offset: Offset(i64_at(entry, 26)),
            })
        })
        .collect()
}

/// Writes a segment's `.txnindex` durably (blocking: run it off the shard, or at open).
pub(crate) fn write_txn_index(dir: &Path, base: Offset, bytes: &[u8]) -> io::Result<()> {
    // A name of its own: the flusher, the cleaner and a reopening of the log (in tests, while
    // a "crashed" log's flusher still runs) may write the same index at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = txn_index_path(dir, base);
    let temporary = path.with_extension(format!("txnindex.{write}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A sealed segment's aborted transactions from its `.txnindex`; `None` if the file is
/// missing or damaged (the caller replays the log instead).
pub(crate) fn read_txn_index(dir: &Path, base: Offset) -> io::Result<Option<Vec<AbortedTxn>>> {
    match std::fs::read(txn_index_path(dir, base)) {
        Ok(bytes) => {
            let entries = decode_entries(&bytes);
            if entries.is_none() {
                tracing::warn!(dir = %dir.display(), segment = %base, "ignoring a damaged transaction index");
            }
            Ok(entries)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// The aborted transactions of the whole log, in the order of their markers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AbortedTxns {
    entries: VecDeque<AbortedTxn>,
}

impl AbortedTxns {
    pub fn push(&mut self, entry: AbortedTxn) {
        debug_assert!(self
            .entries
            .back()
            .is_none_or(|last| last.last_offset < entry.last_offset));
        self.entries.push_back(entry);
    }

    pub fn extend(&mut self, entries: impl IntoIterator<Item = AbortedTxn>) {
        for entry in entries {
            self.push(entry);
        }
    }

    /// The aborted transactions a read of `[start, upper)` must know about: those whose
    /// marker is at or after `start` and that began before `upper` (Kafka's
    /// `collectAbortedTxns`). The scan stops at the first abort that completed once every
    /// transaction begun below `upper` had.
    pub fn overlapping(&self, start: Offset, upper: Offset) -> Vec<AbortedTxn> {
        let from = self
            .entries
            .partition_point(|entry| entry.last_offset < start);
        let mut found = Vec::new();
        for entry in self.entries.range(from..) {
            if entry.first_offset < upper {
                found.push(*entry);
            }
            if entry.last_stable_offset >= upper {
                break;
            }
        }
        found
    }

    /// The entries whose marker lies in `[base, end)`: one segment's `.txnindex`.
    pub fn in_segment(&self, base: Offset, end: Offset) -> Vec<AbortedTxn> {
        let from = self
            .entries
            .partition_point(|entry| entry.last_offset < base);
        self.entries
            .range(from..)
            .take_while(|entry| entry.last_offset < end)
            .copied()
            .collect()
    }

    /// Forgets the aborts whose markers (by offset) compaction removed.
    pub fn remove_markers(&mut self, markers: &[Offset]) {
        if !markers.is_empty() {
            self.entries
                .retain(|entry| !markers.contains(&entry.last_offset));
        }
    }

    /// Forgets the aborts whose marker is below the new log start.
    pub fn retain_from(&mut self, log_start: Offset) {
        while self
            .entries
            .front()
            .is_some_and(|entry| entry.last_offset < log_start)
        {
            self.entries.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

// The log's transaction API, beside the rest of `txn` (log.rs keeps appends, reads and
// the lifecycle).
impl crate::PartitionLog {
    /// Appends a transaction marker for `producer_id` (the coordinator's WriteTxnMarkers, see
    /// `txn`): a control batch that ends the producer's open transaction in this partition,
    /// if it has one (the marker is written even if it wrote nothing here). Refused with
    /// `InvalidProducerEpoch` if the producer has a newer epoch here, `CoordinatorFenced` if a
    /// newer coordinator wrote its last marker. Durable like any append: wait for it with
    /// [`Self::wait_durable`].
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: TxnMarker,
        leader_epoch: i32,
    ) -> Result<Appended, StorageError> {
        let config = self.shared.config.get();
        let mut state = self.shared.state.borrow_mut();
        crate::replica::check_open(&state)?;
        state
            .producers
            .check_marker(producer_id, producer_epoch, marker)?;
        let now_ms = crate::now_ms();
        let mut bytes = crate::txn::marker_batch(producer_id, producer_epoch, marker, now_ms);
        let base_offset = state.log_end;
        bytes[BASE_OFFSET_BYTES].copy_from_slice(&base_offset.0.to_be_bytes());
        bytes[LEADER_EPOCH_BYTES].copy_from_slice(&leader_epoch.to_be_bytes());
        let to_append = BatchToAppend {
            bytes: BatchBytes::Slices {
                header: bytes[..HEADER_BYTES].try_into().expect("a whole header"),
                body: &bytes[HEADER_BYTES..],
            },
            base_offset,
            last_offset: base_offset,
            max_timestamp: now_ms,
            now_ms,
        };
        state.append_to_segment(to_append, &config);
        let completed =
            state
                .producers
                .record_marker(producer_id, producer_epoch, marker, base_offset, now_ms);
        if let Some(aborted) = state.producers.aborted(completed) {
            state.aborted.push(aborted);
        }
        state.epochs.assign(leader_epoch, base_offset);
        state.log_end = base_offset.next();
        state.wake_flusher();
        Ok(Appended {
            base_offset,
            last_offset: base_offset,
            duplicate: false,
            log_append_time_ms: None,
            in_place: false,
        })
    }

    /// The last stable offset given the partition's high watermark: below it, every
    /// transaction is decided and its marker below the high watermark (see `txn`). What a
    /// read_committed consumer may read up to.
    pub fn last_stable_offset(&self, high_watermark: Offset) -> Offset {
        let mut state = self.shared.state.borrow_mut();
        let log_start = state.log_start;
        state
            .producers
            .first_unstable_offset(high_watermark)
            // A transaction whose start retention deleted holds nothing below the log start.
            .map_or(high_watermark, |first| {
                first.max(log_start).min(high_watermark)
            })
    }

    /// The aborted transactions a read_committed fetch of `[start, upper)` answers with
    /// (Kafka's `abortedTransactions`): its consumer drops those producers' batches from each
    /// transaction's first offset to its abort marker.
    ///
    /// A read stays within the segment holding `start`, so the search stops at the next
    /// segment's base too (Kafka's `fetchUpperBoundOffset` does the same per segment): a
    /// consumer far behind gets the aborts of what it reads, not of the whole log.
    pub fn aborted_transactions(&self, start: Offset, upper: Offset) -> Vec<AbortedTxn> {
        let state = self.shared.state.borrow();
        let next_segment = state
            .segments
            .iter()
            .find(|segment| segment.base_offset > start)
            .map_or(upper, |segment| segment.base_offset);
        state.aborted.overlapping(start, upper.min(next_segment))
    }

    /// The base sequence `producer_id`'s next batch must carry at `epoch` (see
    /// `ProducerStateTable::next_sequence`): for the broker's own transactional writes, which
    /// it makes as the client's producer.
    pub fn next_sequence(&self, producer_id: i64, epoch: i16) -> i32 {
        self.shared
            .state
            .borrow()
            .producers
            .next_sequence(producer_id, epoch)
    }

    /// Whether `producer_id` holds a transaction open here at `epoch` (Kafka's
    /// `hasOngoingTransaction`): a protocol v2 leader adds the partition to the transaction at
    /// the coordinator only when not.
    pub fn has_ongoing_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.shared
            .state
            .borrow()
            .producers
            .producers
            .get(&producer_id)
            .is_some_and(|entry| entry.epoch == epoch && entry.current_txn_first_offset.is_some())
    }

    /// Every producer the partition remembers (DescribeProducers, KIP-664), by producer id.
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        let state = self.shared.state.borrow();
        let mut producers: Vec<ActiveProducer> = state
            .producers
            .producers
            .iter()
            .map(|(&producer_id, entry)| ActiveProducer {
                producer_id,
                epoch: entry.epoch,
                last_sequence: entry.batches.back().map_or(-1, |batch| batch.last_sequence),
                last_append_ms: entry.last_append_ms,
                coordinator_epoch: entry.coordinator_epoch,
                current_txn_first_offset: entry.current_txn_first_offset,
            })
            .collect();
        producers.sort_by_key(|producer| producer.producer_id);
        producers
    }

    /// Number of aborted transactions the log remembers (metrics, tests).
    pub fn aborted_transaction_count(&self) -> usize {
        self.shared.state.borrow().aborted.len()
    }
}

#[cfg(test)]
#[path = "txn_tests.rs"]
mod tests;
