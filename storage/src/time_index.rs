//! The sparse time index of one segment, in Kafka's `.timeindex` format: 12-byte entries of
//! (timestamp: i64 BE, offset relative to the segment's base: i32 BE).
//!
//! An entry `(T, O)` says: the largest timestamp among the batches up to and including the
//! one ending at offset `O` is `T`, and `O`'s batch is the first to reach it. So every batch
//! before `O`'s has a max timestamp below `T`, which is what makes a floor lookup safe: to find
//! the first record with timestamp >= `target`, start at the batch of the last entry whose
//! timestamp is <= `target` (Kafka's `TimeIndex.lookup`), or at the segment's start.
//!
//! As in Kafka's `LogSegment.append`, an entry is considered at the same cadence as the
//! offset index (`index.interval.bytes`) and appended only when the segment's max timestamp
//! has grown since the last entry; one more entry is appended when the segment is rolled, so
//! that a sealed segment's last entry holds its largest timestamp. Any subset of correct
//! entries still gives correct lookups (only slower ones), so entries lost in a crash are
//! harmless; recovery drops entries that are out of order or point past the segment's end.
//!
//! Like the offset index, the entries live in memory (the segment owns them) and the file is
//! written behind them, for synced data only, and never synced itself.

use crate::Offset;

/// Size of one entry on disk.
pub(crate) const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// Kafka's `RecordBatch.NO_TIMESTAMP`: batches without timestamps carry it.
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// One time index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeIndexEntry {
    /// Largest timestamp of the segment's batches up to the one ending at `relative_offset`.
    pub timestamp: i64,
    /// Last offset of the first batch that reached `timestamp`, relative to the segment base.
    pub relative_offset: u32,
}

/// The entries of one segment's time index, strictly increasing in timestamp and offset.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<TimeIndexEntry>,
}

impl TimeIndex {
    /// Decodes a time index file's bytes, keeping the longest prefix of strictly increasing
    /// entries with a timestamp (a crash can leave zeros or a torn entry at the end) whose
    /// offsets lie below `relative_end` (the segment's end offset minus its base).
    pub fn decode(bytes: &[u8], relative_end: u64) -> TimeIndex {
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
            let mut timestamp = [0u8; 8];
            timestamp.copy_from_slice(&chunk[..8]);
            let relative_offset = i32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            let Ok(relative_offset) = u32::try_from(relative_offset) else {
                break;
            };
            let entry = TimeIndexEntry {
                timestamp: i64::from_be_bytes(timestamp),
                relative_offset,
            };
            if !index.accepts(entry) || relative_offset as u64 >= relative_end {
                break;
            }
            index.entries.push(entry);
        }
        index
    }

    /// Whether `entry` may follow the current last entry.
    pub fn accepts(&self, entry: TimeIndexEntry) -> bool {
        if entry.timestamp <= NO_TIMESTAMP || entry.relative_offset > i32::MAX as u32 {
            return false;
        }
        match self.entries.last() {
            None => true,
            Some(last) => {
                entry.timestamp > last.timestamp && entry.relative_offset > last.relative_offset
            }
        }
    }

    pub fn push(&mut self, entry: TimeIndexEntry) {
        assert!(
            self.accepts(entry),
            "time index entries must increase: {entry:?} after {:?}",
            self.entries.last()
        );
        self.entries.push(entry);
    }

    pub fn entries(&self) -> &[TimeIndexEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn last(&self) -> Option<TimeIndexEntry> {
        self.entries.last().copied()
    }

    /// The relative offset to start searching from for the first record with a timestamp
    /// of at least `target`: the offset of the last entry whose timestamp is at most
    /// `target`, or `None` (search from the segment's start).
    pub fn floor_offset(&self, target: i64) -> Option<u32> {
        let after = self
            .entries
            .partition_point(|entry| entry.timestamp <= target);
        after
            .checked_sub(1)
            .map(|number| self.entries[number].relative_offset)
    }
}

/// Encodes entries in the on-disk format.
pub(crate) fn encode_entries(entries: &[TimeIndexEntry]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * TIME_INDEX_ENTRY_BYTES);
    for entry in entries {
        bytes.extend_from_slice(&entry.timestamp.to_be_bytes());
        bytes.extend_from_slice(&(entry.relative_offset as i32).to_be_bytes());
    }
    bytes
}

/// Where a segment's max timestamp stands and when its next time index entry is due; shared
/// by the appender and recovery so that both follow Kafka's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeTracker {
    /// Largest batch max timestamp seen in the segment, `NO_TIMESTAMP` if none.
    pub max_timestamp: i64,
    /// Last offset of the first batch that reached `max_timestamp`.
    pub offset_of_max_timestamp: Offset,
    /// Timestamp of the last entry in the time index, `NO_TIMESTAMP` if none.
    pub last_entry_timestamp: i64,
}

impl TimeTracker {
    /// A tracker for an empty segment.
    pub fn new(segment_base: Offset) -> TimeTracker {
        TimeTracker {
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: segment_base,
            last_entry_timestamp: NO_TIMESTAMP,
        }
    }

    /// Resumes from a loaded index, whose last entry gives the max so far.
    pub fn resume(segment_base: Offset, index: &TimeIndex) -> TimeTracker {
        match index.last() {
            None => TimeTracker::new(segment_base),
            Some(last) => TimeTracker {
                max_timestamp: last.timestamp,
                offset_of_max_timestamp: Offset(segment_base.0 + last.relative_offset as i64),
                last_entry_timestamp: last.timestamp,
            },
        }
    }

    /// Called once per batch, in order, with whether the batch gets an offset index entry;
    /// returns the time index entry to append with it, if any.
    pub fn next_batch(
        &mut self,
        segment_base: Offset,
        batch_max_timestamp: i64,
        batch_last_offset: Offset,
        indexed: bool,
    ) -> Option<TimeIndexEntry> {
        if batch_max_timestamp > self.max_timestamp {
            self.max_timestamp = batch_max_timestamp;
            self.offset_of_max_timestamp = batch_last_offset;
        }
        if indexed {
            self.entry_if_grown(segment_base)
        } else {
            None
        }
    }

    /// The entry to append now (at a cadence point or at a roll) if the max timestamp grew
    /// since the last entry.
    pub fn entry_if_grown(&mut self, segment_base: Offset) -> Option<TimeIndexEntry> {
        if self.max_timestamp <= self.last_entry_timestamp {
            return None;
        }
        let relative_offset = u32::try_from(self.offset_of_max_timestamp.0 - segment_base.0)
            .ok()
            .filter(|relative| *relative <= i32::MAX as u32)?;
        self.last_entry_timestamp = self.max_timestamp;
        Some(TimeIndexEntry {
            timestamp: self.max_timestamp,
            relative_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(timestamp: i64, relative_offset: u32) -> TimeIndexEntry {
        TimeIndexEntry {
            timestamp,
            relative_offset,
        }
    }

    #[test]
    fn floor_lookup_finds_the_last_entry_at_or_below() {
        let mut index = TimeIndex::default();
        index.push(entry(1000, 4));
        index.push(entry(2000, 9));
        assert_eq!(index.floor_offset(999), None);
        assert_eq!(index.floor_offset(1000), Some(4));
        assert_eq!(index.floor_offset(1999), Some(4));
        assert_eq!(index.floor_offset(i64::MAX), Some(9));
    }

    #[test]
    fn decode_keeps_the_increasing_prefix_below_the_end() {
        let good = [entry(10, 3), entry(20, 7), entry(30, 9)];
        let mut bytes = encode_entries(&good);
        bytes.extend_from_slice(&[0; 24]); // preallocated zeros
        bytes.extend_from_slice(&[1, 2, 3]); // torn entry
        assert_eq!(TimeIndex::decode(&bytes, 10).entries(), &good);
        assert_eq!(TimeIndex::decode(&bytes, 9).entries(), &good[..2]);
        let backwards = encode_entries(&[entry(10, 3), entry(5, 4)]);
        assert_eq!(TimeIndex::decode(&backwards, 100).len(), 1);
        let negative = encode_entries(&[entry(-1, 3)]);
        assert_eq!(TimeIndex::decode(&negative, 100).len(), 0);
    }

    #[test]
    fn tracker_appends_only_when_the_max_grows_at_a_cadence_point() {
        let base = Offset(100);
        let mut tracker = TimeTracker::new(base);
        assert_eq!(tracker.next_batch(base, 50, Offset(101), false), None);
        assert_eq!(
            tracker.next_batch(base, 40, Offset(103), true),
            Some(entry(50, 1)),
            "the max so far and the first batch that reached it"
        );
        assert_eq!(tracker.next_batch(base, 50, Offset(105), true), None);
        assert_eq!(tracker.next_batch(base, 70, Offset(107), false), None);
        assert_eq!(tracker.entry_if_grown(base), Some(entry(70, 7)));
        assert_eq!(tracker.entry_if_grown(base), None);
    }
}
