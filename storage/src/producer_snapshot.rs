//! Producer-state snapshots (Kafka's `<offset>.snapshot` files): the idempotent producers'
//! table as of an offset, so that opening a log rebuilds it without reading every segment.
//!
//! When a segment rolls, the table as of the new segment's base offset (every batch below it
//! recorded, none at or above) is encoded at once, in `append`, and the flusher writes it
//! after the group commit that makes the roll durable: temporary file, `fdatasync`, rename,
//! directory sync. Written after the data it describes, a snapshot never describes batches
//! the log could lose in a crash; should a truncation or a lost tail leave it above the log
//! anyway, recovery ignores it (below). A snapshot that fails to be written is only logged:
//! recovery then scans further back.
//!
//! Recovery takes the newest snapshot at or below the active segment's base offset whose
//! checksum and shape are right (those above it, or corrupt, are deleted with a log line),
//! then records the batches of the sealed segments from its offset on, then those of the
//! active segment, as before. Snapshots are written at rolls, so one above the active base
//! names a segment that is gone. Without a usable snapshot the walk starts at the first
//! segment, as Kafka's does after an unclean shutdown without snapshots.
//!
//! Kept: the two newest snapshots; older ones, and any below the log start, are deleted each
//! time one is written (so a log whose start moved keeps stale ones until its next roll, at
//! most two). A truncation deletes those above the new end (all of them when the log starts
//! afresh).
//!
//! Format, big-endian: `version: u16 = 2`, `crc: u32` (CRC-32C of everything after it), then
//! the body: `offset: i64` (as in the file name), `producer_count: u32`, and per producer
//! `producer_id: i64`, `epoch: i16`, `last_append_ms: i64`, `current_txn_first_offset: i64`
//! (-1: no open transaction), `coordinator_epoch: i32`, `batch_count: u8` (0 to 5: a producer
//! known only from a transaction marker has none), and per batch, oldest first,
//! `first_sequence: i32`, `last_sequence: i32`, `base_offset: i64`, `last_offset: i64`.
//! Version 1 (before transactions) lacks the two transaction fields and has at least one
//! batch per producer; it is still read.

use crate::batch::StoredBatch;
use crate::producer_state::{
    ProducerEntry, ProducerStateTable, RetainedBatch, RETAINED_BATCHES_PER_PRODUCER,
};
use crate::reader::{SegmentWindow, READ_WINDOW_BYTES};
use crate::segment::Segment;
use crate::txn::{AbortedTxn, AbortedTxns};
use crate::Offset;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const SNAPSHOT_SUFFIX: &str = ".snapshot";
const FORMAT_VERSION: u16 = 2;
/// Before transactions: no `current_txn_first_offset` nor `coordinator_epoch`.
const FORMAT_VERSION_1: u16 = 1;
/// `version` and `crc`.
const PREFIX_BYTES: usize = 6;
/// Snapshots kept after each write.
const SNAPSHOTS_KEPT: usize = 2;
const BATCH_BYTES: usize = 4 + 4 + 8 + 8;
/// The smallest producer entry (version 1's).
const PRODUCER_BYTES: usize = 8 + 2 + 8 + 1;

/// `<dir>/<offset, 20 digits>.snapshot`.
pub(crate) fn snapshot_path(dir: &Path, offset: Offset) -> PathBuf {
    dir.join(format!("{:020}{SNAPSHOT_SUFFIX}", offset.0))
}

/// The offset a snapshot file name gives, or `None` for any other file.
fn parse_snapshot_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().map(Offset)
}

/// The snapshot file's bytes for `table` as of `offset`.
pub(crate) fn encode(table: &ProducerStateTable, offset: Offset) -> Vec<u8> {
    let mut body = Vec::with_capacity(12 + table.producers.len() * (PRODUCER_BYTES + BATCH_BYTES));
    body.extend_from_slice(&offset.0.to_be_bytes());
    body.extend_from_slice(&(table.producers.len() as u32).to_be_bytes());
    for (producer_id, entry) in &table.producers {
        assert!(entry.batches.len() <= RETAINED_BATCHES_PER_PRODUCER);
        body.extend_from_slice(&producer_id.to_be_bytes());
        body.extend_from_slice(&entry.epoch.to_be_bytes());
        body.extend_from_slice(&entry.last_append_ms.to_be_bytes());
        let first_offset = entry.current_txn_first_offset.map_or(-1, |offset| offset.0);
        body.extend_from_slice(&first_offset.to_be_bytes());
        body.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
        body.push(entry.batches.len() as u8);
        for batch in &entry.batches {
            body.extend_from_slice(&batch.first_sequence.to_be_bytes());
            body.extend_from_slice(&batch.last_sequence.to_be_bytes());
            body.extend_from_slice(&batch.base_offset.0.to_be_bytes());
            body.extend_from_slice(&batch.last_offset.0.to_be_bytes());
        }
    }
    let mut bytes = Vec::with_capacity(PREFIX_BYTES + body.len());
    bytes.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// Reads big-endian fields off the front of a byte slice; `None` once it runs out.
struct Fields<'bytes>(&'bytes [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (field, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*field)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
}

/// The table a snapshot file holds, if its version, checksum, offset (`offset`, from its
/// name) and shape are right.
pub(crate) fn decode(bytes: &[u8], offset: Offset) -> Option<ProducerStateTable> {
    let mut fields = Fields(bytes);
    let version = u16::from_be_bytes(fields.take()?);
    if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
        return None;
    }
    let crc = u32::from_be_bytes(fields.take()?);
    if crc32c::crc32c(fields.0) != crc || fields.i64()? != offset.0 {
        return None;
    }
    let producer_count = u32::from_be_bytes(fields.take()?) as usize;
    // Bounded by the bytes there are, not by what the count claims.
    if producer_count > fields.0.len() / PRODUCER_BYTES {
        return None;
    }
    let mut table = ProducerStateTable::default();
    for _ in 0..producer_count {
        let producer_id = fields.i64()?;
        let epoch = i16::from_be_bytes(fields.take()?);
        let last_append_ms = fields.i64()?;
        let (current_txn_first_offset, coordinator_epoch) = if version == FORMAT_VERSION_1 {
            (None, -1)
        } else {
            let first_offset = fields.i64()?;
            (
                (first_offset >= 0).then_some(Offset(first_offset)),
                fields.i32()?,
            )
        };
        let batch_count = fields.take::<1>()?[0] as usize;
        if batch_count > RETAINED_BATCHES_PER_PRODUCER
            || (batch_count == 0 && version == FORMAT_VERSION_1)
        {
            return None;
        }
        let mut batches = VecDeque::with_capacity(RETAINED_BATCHES_PER_PRODUCER);
        for _ in 0..batch_count {
            batches.push_back(RetainedBatch {
                first_sequence: fields.i32()?,
                last_sequence: fields.i32()?,
                base_offset: Offset(fields.i64()?),
                last_offset: Offset(fields.i64()?),
            });
        }
        let entry = ProducerEntry {
            epoch,
            batches,
            last_append_ms,
            current_txn_first_offset,
            coordinator_epoch,
        };
        if table.producers.insert(producer_id, entry).is_some() {
            return None;
        }
    }
    table.index_ongoing();
    fields.0.is_empty().then_some(table)
}

/// Snapshot offsets in `dir`, ascending.
fn list(dir: &Path) -> io::Result<Vec<Offset>> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(offset) = entry?.file_name().to_str().and_then(parse_snapshot_name) {
            offsets.push(offset);
        }
    }
    offsets.sort();
    Ok(offsets)
}

fn remove(dir: &Path, offset: Offset) -> io::Result<()> {
    match std::fs::remove_file(snapshot_path(dir, offset)) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Writes a snapshot durably, then deletes all but the newest [`SNAPSHOTS_KEPT`] and those
/// below `log_start` (blocking: run it off the shard).
pub(crate) fn write(dir: &Path, offset: Offset, bytes: &[u8], log_start: Offset) -> io::Result<()> {
    let path = snapshot_path(dir, offset);
    let temporary = path.with_extension("snapshot.tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    let offsets = list(dir)?;
    let newest_kept = offsets.len().saturating_sub(SNAPSHOTS_KEPT);
    for (number, &old) in offsets.iter().enumerate() {
        if number < newest_kept || old < log_start {
            remove(dir, old)?;
        }
    }
    Ok(())
}

/// Deletes the snapshots above `end` (all of them with `None`): a truncation made them wrong.
pub(crate) fn delete_above(dir: &Path, end: Option<Offset>) -> io::Result<()> {
    for offset in list(dir)? {
        if end.is_none_or(|end| offset > end) {
            remove(dir, offset)?;
        }
    }
    Ok(())
}

/// The producer table as of the start of the active segment (`active_base`): the newest
/// usable snapshot at or below it, and the batches of `sealed` segments from there on (see
/// the module docs); with the aborted transactions of the sealed segments (see `txn`). The
/// caller records the active segment's batches on top.
pub(crate) async fn load(
    dir: &Path,
    sealed: &[Segment],
    active_base: Offset,
) -> io::Result<(ProducerStateTable, AbortedTxns)> {
    let mut start = (Offset(0), ProducerStateTable::default());
    for offset in list(dir)?.into_iter().rev() {
        if offset > active_base {
            tracing::info!(dir = %dir.display(), %offset, %active_base, "deleting a producer snapshot above the log");
            remove(dir, offset)?;
            continue;
        }
        let bytes = std::fs::read(snapshot_path(dir, offset))?;
        match decode(&bytes, offset) {
            Some(table) => {
                start = (offset, table);
                break;
            }
            None => {
                tracing::warn!(dir = %dir.display(), %offset, "deleting a corrupt producer snapshot");
                remove(dir, offset)?;
            }
        }
    }
    let (mut from, mut table) = start;
    // The aborts whose markers lie below the snapshot come from the `.txnindex` files its
    // roll wrote first; without one, the whole log is replayed (see `txn`).
    let mut aborted = AbortedTxns::default();
    for segment in sealed.iter().filter(|segment| segment.base_offset < from) {
        match crate::txn::read_txn_index(dir, segment.base_offset)? {
            Some(entries) => {
                aborted.extend(entries.into_iter().filter(|entry| entry.last_offset < from))
            }
            None => {
                tracing::info!(dir = %dir.display(), segment = %segment.base_offset, %from,
                    "a segment below the producer snapshot has no transaction index: replaying the whole log");
                (from, table, aborted) = (
                    Offset(0),
                    ProducerStateTable::default(),
                    AbortedTxns::default(),
                );
                break;
            }
        }
    }
    let opened_ms = crate::now_ms();
    for segment in sealed.iter().filter(|segment| segment.end_offset > from) {
        let found = record_segment(segment, from, &mut table, opened_ms).await?;
        if segment.base_offset >= from
            && crate::txn::read_txn_index(dir, segment.base_offset)?.as_ref() != Some(&found)
        {
            // Replayed whole: its index, for the next open to trust (missing, or left from
            // before a truncation cut this segment and a crash came before its new roll
            // finished).
            crate::txn::write_txn_index(
                dir,
                segment.base_offset,
                &crate::txn::encode_entries(&found),
            )?;
        }
        aborted.extend(found);
    }
    Ok((table, aborted))
}

/// Records the batches of a recovered sealed segment that start at or above `from`; returns
/// the aborts among them.
async fn record_segment(
    segment: &Segment,
    from: Offset,
    table: &mut ProducerStateTable,
    now_ms: i64,
) -> io::Result<Vec<AbortedTxn>> {
    let relative = u32::try_from(from.0 - segment.base_offset.0).unwrap_or(0);
    let mut position = segment.index.floor_position(relative);
    let mut window = SegmentWindow::new(&segment.log_file, segment.size_bytes, READ_WINDOW_BYTES);
    let mut aborted = Vec::new();
    while position < segment.size_bytes {
        // Recovery checked this segment's end; a bad header before it is reported, and the
        // rest of the segment's producers are missed (a retry is then appended again).
        let StoredBatch::Complete(info) = window.batch_at(position, false).await? else {
            tracing::warn!(segment = %segment.base_offset, position, "unreadable batch while rebuilding producer state");
            break;
        };
        if info.base_offset >= from.0 {
            aborted.extend(table.replay(
                &info,
                Offset(info.base_offset),
                Offset(info.last_offset()),
                now_ms,
            ));
        }
        position += info.batch_bytes as u64;
    }
    Ok(aborted)
}

#[cfg(test)]
#[path = "producer_snapshot_tests.rs"]
mod tests;
