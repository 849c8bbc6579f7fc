//! Leader epochs: which leader epoch started at which offset, in Kafka's
//! `leader-epoch-checkpoint` file.
//!
//! Every batch carries the epoch of the leader that appended it (`partitionLeaderEpoch`). The
//! cache keeps, for each epoch in the log, the offset of its first batch, so that
//! OffsetForLeaderEpoch can answer where an epoch ended: the start of the next one, or the
//! log end for the latest. Consumers use it to detect truncation; followers (the cluster
//! issue) to find where their log diverges from the leader's.
//!
//! The rules are Kafka's `LeaderEpochFileCache`:
//! - [`LeaderEpochCache::assign`] adds an entry when an epoch is seen for the first time (the
//!   first batch appended in it, or the moment this replica becomes leader); an entry that
//!   conflicts (an epoch or start offset at or above the new one's) is removed first;
//! - truncating the log's end removes entries that start at or above the new end; moving the
//!   log start moves the first surviving entry's start up to it.
//!
//! File format (Kafka's): a line with the version `0`, a line with the number of entries, then
//! one `epoch start_offset` line per entry, oldest first. It is replaced atomically (a
//! temporary file, `fdatasync`, rename, directory sync) by the flusher before the group commit
//! that makes the first batch of a new epoch durable, so a durable batch's epoch is always in
//! the file or in the segment recovery scans (the active one). A log written before the file
//! existed gets one entry from the epoch of its first batch (one node used epoch 0 throughout).

use crate::Offset;
use std::io::{self, Write};
use std::path::Path;

/// Kafka's file name, in the partition's directory.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// One epoch and the offset of its first batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// The offset of the first batch appended in it.
    pub start_offset: Offset,
}

/// See the module docs. Entries are ascending in both epoch and start offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
    /// Changed since it was last written.
    dirty: bool,
}

impl LeaderEpochCache {
    /// A cache of these entries (as read from the file), not dirty.
    pub fn from_entries(entries: Vec<EpochEntry>) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for entry in entries {
            cache.assign(entry.epoch, entry.start_offset);
        }
        cache.dirty = false;
        cache
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The latest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|entry| entry.epoch)
    }

    /// [`Self::assign`] only for an epoch newer than the latest known, as Kafka's
    /// `LogSegment.recover` and follower appends do: stored batches may carry an older epoch
    /// (a segment that begins before the latest epoch started, a leader's log holding every
    /// epoch it kept), whose entry exists already, and assigning it again would remove every
    /// entry above it. Returns whether anything changed.
    pub fn assign_if_newer(&mut self, epoch: i32, start_offset: Offset) -> bool {
        if self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        self.assign(epoch, start_offset)
    }

    /// Records that `epoch` starts at `start_offset` (Kafka's `assign`). Negative epochs
    /// (batches written by a client that never had a leader epoch) are ignored. Returns
    /// whether anything changed.
    pub fn assign(&mut self, epoch: i32, start_offset: Offset) -> bool {
        if epoch < 0 || start_offset.0 < 0 {
            return false;
        }
        if let Some(latest) = self.entries.last() {
            // The same epoch again, at or after its start: nothing new.
            if latest.epoch == epoch && start_offset >= latest.start_offset {
                return false;
            }
        }
        while self.entries.last().is_some_and(|existing| {
            existing.epoch >= epoch || existing.start_offset >= start_offset
        }) {
            self.entries.pop();
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.dirty = true;
        true
    }

    /// Where `requested` ended, as Kafka answers OffsetForLeaderEpoch: `(epoch, end offset)`
    /// where the epoch is the largest known one at or below `requested`. The latest epoch ends
    /// at `log_end`; an older one at the next epoch's start; an epoch below every known one at
    /// the first epoch's start; one above every known epoch, or an empty cache, is `None`
    /// (UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET).
    pub fn end_offset_for(&self, requested: i32, log_end: Offset) -> Option<(i32, Offset)> {
        let latest = self.entries.last()?;
        if requested < 0 {
            return None;
        }
        if requested == latest.epoch {
            return Some((requested, log_end));
        }
        let higher = self
            .entries
            .partition_point(|entry| entry.epoch <= requested);
        let next = self.entries.get(higher)?;
        let epoch = match higher.checked_sub(1) {
            Some(floor) => self.entries[floor].epoch,
            None => requested,
        };
        Some((epoch, next.start_offset))
    }

    /// The epoch of the batch holding `offset`: the latest entry starting at or below it
    /// (`None` below the first entry).
    pub fn epoch_at(&self, offset: Offset) -> Option<i32> {
        let after = self
            .entries
            .partition_point(|entry| entry.start_offset <= offset);
        Some(self.entries.get(after.checked_sub(1)?)?.epoch)
    }

    /// The log now ends at `end_offset` (Kafka's `truncateFromEnd`): entries starting at or
    /// above it go.
    pub fn truncate_from_end(&mut self, end_offset: Offset) {
        let keep = self
            .entries
            .partition_point(|entry| entry.start_offset < end_offset);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.dirty = true;
        }
    }

    /// The log now starts at `start_offset` (Kafka's `truncateFromStart`): entries wholly
    /// below it go, and the one in force there starts at it.
    pub fn truncate_from_start(&mut self, start_offset: Offset) {
        let at_or_below = self
            .entries
            .partition_point(|entry| entry.start_offset <= start_offset);
        let Some(in_force) = at_or_below.checked_sub(1) else {
            return;
        };
        if in_force == 0 && self.entries[0].start_offset == start_offset {
            return;
        }
        self.entries.drain(..in_force);
        self.entries[0].start_offset = start_offset;
        self.dirty = true;
    }

    /// The entries to write, if they changed since the last call; clears the flag.
    pub(crate) fn take_dirty(&mut self) -> Option<Vec<EpochEntry>> {
        std::mem::take(&mut self.dirty).then(|| self.entries.clone())
    }

    /// Marks the entries as needing a write (after a failed one).
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether the entries changed since they were last written.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }
}

/// The file's text for `entries`.
pub fn encode(entries: &[EpochEntry]) -> String {
    let mut text = format!("0\n{}\n", entries.len());
    for entry in entries {
        text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset.0));
    }
    text
}

/// Parses the file's text; `None` if it is not a version-0 checkpoint with as many well-formed
/// entries as it says.
pub fn decode(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let mut fields = lines.next()?.split_whitespace();
        let epoch = fields.next()?.parse().ok()?;
        let start_offset = Offset(fields.next()?.parse().ok()?);
        if fields.next().is_some() {
            return None;
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    Some(entries)
}

/// Reads the checkpoint in `dir`: empty if there is none. A file that does not parse (a torn
/// write cannot happen: it is replaced by rename) is reported and treated as missing, since
/// recovery rebuilds what it can from the batches.
pub fn read_checkpoint(dir: &Path) -> io::Result<Option<Vec<EpochEntry>>> {
    let path = dir.join(CHECKPOINT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let entries = decode(&text);
            if entries.is_none() {
                tracing::warn!(path = %path.display(), "unreadable leader epoch checkpoint: rebuilt from the log");
            }
            Ok(entries)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Replaces the checkpoint in `dir` durably (blocking: run it off the shard).
pub fn write_checkpoint(dir: &Path, entries: &[EpochEntry]) -> io::Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    let temporary = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(encode(entries).as_bytes())?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(epoch: i32, start: i64) -> EpochEntry {
        EpochEntry {
            epoch,
            start_offset: Offset(start),
        }
    }

    #[test]
    fn end_offsets_follow_kafkas_answers() {
        let cache = LeaderEpochCache::from_entries(vec![entry(1, 0), entry(3, 10), entry(6, 25)]);
        let end = Offset(40);
        assert_eq!(cache.end_offset_for(6, end), Some((6, end)));
        assert_eq!(cache.end_offset_for(3, end), Some((3, Offset(25))));
        // An epoch this log never had: the largest one below it, ending where the next began.
        assert_eq!(cache.end_offset_for(4, end), Some((3, Offset(25))));
        // Below every epoch: the requested one, ending at the first epoch's start.
        assert_eq!(cache.end_offset_for(0, end), Some((0, Offset(0))));
        // Above every epoch, or none at all: undefined.
        assert_eq!(cache.end_offset_for(7, end), None);
        assert_eq!(cache.end_offset_for(-1, end), None);
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, end), None);
    }

    #[test]
    fn assign_replaces_conflicting_entries_and_ignores_repeats() {
        let mut cache = LeaderEpochCache::default();
        assert!(cache.assign(0, Offset(0)));
        assert!(!cache.assign(0, Offset(5)));
        assert!(!cache.assign(-1, Offset(7)));
        assert!(cache.assign(2, Offset(10)));
        // A lower epoch at a later offset (a follower's log being rewritten): entries at or
        // above it go.
        assert!(cache.assign(1, Offset(12)));
        assert_eq!(cache.entries(), &[entry(0, 0), entry(1, 12)]);
        // A newer epoch starting below an existing start replaces it.
        assert!(cache.assign(4, Offset(8)));
        assert_eq!(cache.entries(), &[entry(0, 0), entry(4, 8)]);
    }

    #[test]
    fn truncation_from_either_end() {
        let mut cache =
            LeaderEpochCache::from_entries(vec![entry(1, 0), entry(3, 10), entry(6, 25)]);
        cache.truncate_from_start(Offset(12));
        assert_eq!(cache.entries(), &[entry(3, 12), entry(6, 25)]);
        cache.truncate_from_start(Offset(5)); // below the start: nothing
        assert_eq!(cache.entries(), &[entry(3, 12), entry(6, 25)]);
        cache.truncate_from_end(Offset(25));
        assert_eq!(cache.entries(), &[entry(3, 12)]);
        cache.truncate_from_end(Offset(30));
        assert_eq!(cache.entries(), &[entry(3, 12)]);
    }

    #[test]
    fn the_file_is_kafkas_text_and_garbage_is_refused() {
        let entries = vec![entry(0, 0), entry(7, 1234)];
        let text = encode(&entries);
        assert_eq!(text, "0\n2\n0 0\n7 1234\n");
        assert_eq!(decode(&text), Some(entries));
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\nx\n",
            "0\n1\n0 0 0\n",
            "0\n1\n0 z\n",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_checkpoint(dir.path()).unwrap(), None);
        write_checkpoint(dir.path(), &[entry(2, 9)]).unwrap();
        assert_eq!(
            read_checkpoint(dir.path()).unwrap(),
            Some(vec![entry(2, 9)])
        );
    }

    proptest! {
        /// Entries stay ascending in epoch and start offset whatever is assigned or cut.
        #[test]
        fn entries_stay_ordered(operations in proptest::collection::vec((0u8..3, 0i32..20, 0i64..200), 0..60)) {
            let mut cache = LeaderEpochCache::default();
            for (kind, epoch, offset) in operations {
                match kind {
                    0 => { cache.assign(epoch, Offset(offset)); }
                    1 => cache.truncate_from_end(Offset(offset)),
                    _ => cache.truncate_from_start(Offset(offset)),
                }
                for pair in cache.entries().windows(2) {
                    prop_assert!(pair[0].epoch < pair[1].epoch);
                    prop_assert!(pair[0].start_offset < pair[1].start_offset);
                }
            }
        }
    }
}
