//! The sparse offset index of one segment, in Kafka's `.index` format: 8-byte entries of
//! (offset relative to the segment's base: u32 BE, file position of a batch: u32 BE).
//!
//! As in Kafka, an entry names the *last* offset of the batch that starts at its position, and
//! an entry is added before a batch once more than `index.interval.bytes` have been appended
//! since the previous entry (so the first batch of a segment never has one). A floor lookup
//! gives a position from which to walk batch headers forward to the wanted offset.
//!
//! The entries live in memory (the segment owns them); the file is written behind them, only
//! for data already synced, when the segment is sealed and when the log closes, and is not
//! held open in between (one descriptor per idle partition, see `segment`). Recovery checks
//! the file of a sealed segment and rebuilds the active segment's from its batches.

use glommio::io::{BufferedFile, OpenOptions};
use std::io;
use std::path::Path;

/// Size of one entry on disk.
pub(crate) const INDEX_ENTRY_BYTES: usize = 8;

/// One index entry: the batch at `position` ends at offset `segment base + relative_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// Kafka's rule for when a batch gets an index entry, shared by the appender and recovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IndexCadence {
    bytes_since_last_entry: u64,
}

impl IndexCadence {
    /// Called once per batch, in order; says whether the batch gets an entry.
    pub fn next_batch(&mut self, batch_bytes: u64, index_interval_bytes: u64) -> bool {
        let indexed = self.bytes_since_last_entry > index_interval_bytes;
        if indexed {
            self.bytes_since_last_entry = 0;
        }
        self.bytes_since_last_entry += batch_bytes;
        indexed
    }
}

/// The entries of one segment's index, sorted by offset and by position.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<IndexEntry>,
}

impl OffsetIndex {
    /// Decodes an index file's bytes, keeping the longest prefix of strictly increasing
    /// entries (a crash can leave zeros or a torn entry at the end) with positions below
    /// `segment_bytes`.
    pub fn decode(bytes: &[u8], segment_bytes: u64) -> OffsetIndex {
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(INDEX_ENTRY_BYTES) {
            let entry = IndexEntry {
                relative_offset: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                position: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            };
            if !index.accepts(entry) || entry.position as u64 >= segment_bytes {
                break;
            }
            index.entries.push(entry);
        }
        index
    }

    /// Whether `entry` may follow the current last entry.
    fn accepts(&self, entry: IndexEntry) -> bool {
        match self.entries.last() {
            None => true,
            Some(last) => {
                entry.relative_offset > last.relative_offset && entry.position > last.position
            }
        }
    }

    pub fn push(&mut self, entry: IndexEntry) {
        assert!(
            self.accepts(entry),
            "index entries must increase: {entry:?} after {:?}",
            self.entries.last()
        );
        self.entries.push(entry);
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn last(&self) -> Option<IndexEntry> {
        self.entries.last().copied()
    }

    /// The position to start walking from to find `relative_offset`: the position of the
    /// last entry whose offset is at most `relative_offset`, or 0.
    pub fn floor_position(&self, relative_offset: u32) -> u64 {
        let after = self
            .entries
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        match after {
            0 => 0,
            _ => self.entries[after - 1].position as u64,
        }
    }
}

/// Encodes entries in the on-disk format.
pub(crate) fn encode_entries(entries: &[IndexEntry]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * INDEX_ENTRY_BYTES);
    for entry in entries {
        bytes.extend_from_slice(&entry.relative_offset.to_be_bytes());
        bytes.extend_from_slice(&entry.position.to_be_bytes());
    }
    bytes
}

/// Opens (creating if missing) an index file for reading and writing, without truncating it.
async fn open_index_file(path: &Path) -> io::Result<BufferedFile> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .buffered_open(path)
        .await?)
}

/// Reads a whole index file (creating it empty if missing) and closes it.
pub(crate) async fn read_index_file(path: &Path) -> io::Result<Vec<u8>> {
    let file = open_index_file(path).await?;
    let read = read_whole(&file).await;
    file.close().await?;
    read
}

async fn read_whole(file: &BufferedFile) -> io::Result<Vec<u8>> {
    let size = file.file_size().await?;
    let size = usize::try_from(size).map_err(|_| io::Error::other("index file too large"))?;
    if size == 0 {
        return Ok(Vec::new());
    }
    let read = file.read_at(0, size).await?;
    Ok(read.to_vec())
}

/// Whether [`write_bytes_at`] makes its bytes durable before returning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IndexSync {
    /// `fdatasync` after the write: a sealed segment's time index, which recovery trusts up to
    /// the last offset index entry, so it must be on disk before that entry is.
    Sync,
    /// Left to the page cache: recovery checks or rebuilds what a crash loses.
    NoSync,
}

/// Writes `bytes` at `position` of an existing index file (offset or time index), then closes
/// it; a short write is an error. A missing file is left missing, `Ok`: retention or compaction
/// renamed the segment's files meanwhile (creating one would leave a stray index under the
/// name of a segment compaction is about to put there), or the file was lost, which recovery
/// repairs.
pub(crate) async fn write_bytes_at(
    path: &Path,
    position: u64,
    bytes: Vec<u8>,
    sync: IndexSync,
) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let opened = OpenOptions::new().write(true).buffered_open(path).await;
    let file = match opened.map_err(io::Error::from) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let written = write_all_at(&file, position, bytes, sync).await;
    file.close().await?;
    written
}

async fn write_all_at(
    file: &BufferedFile,
    position: u64,
    bytes: Vec<u8>,
    sync: IndexSync,
) -> io::Result<()> {
    let expected = bytes.len();
    let written = file.write_at(bytes, position).await?;
    if written != expected {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to index file",
        ));
    }
    if sync == IndexSync::Sync {
        file.fdatasync().await?;
    }
    Ok(())
}

/// Replaces a whole index file's content (creating it if missing).
pub(crate) async fn rewrite_index_file(path: &Path, index: &OffsetIndex) -> io::Result<()> {
    rewrite_file(path, encode_entries(index.entries())).await
}

/// Replaces a whole index file's content with `bytes` (creating it if missing), then closes it.
pub(crate) async fn rewrite_file(path: &Path, bytes: Vec<u8>) -> io::Result<()> {
    let file = open_index_file(path).await?;
    let mut rewritten = file.truncate(0).await.map_err(io::Error::from);
    if rewritten.is_ok() && !bytes.is_empty() {
        rewritten = write_all_at(&file, 0, bytes, IndexSync::NoSync).await;
    }
    file.close().await?;
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(relative_offset: u32, position: u32) -> IndexEntry {
        IndexEntry {
            relative_offset,
            position,
        }
    }

    #[test]
    fn floor_lookup_finds_the_last_entry_at_or_below() {
        let mut index = OffsetIndex::default();
        index.push(entry(9, 4200));
        index.push(entry(19, 8500));
        assert_eq!(index.floor_position(0), 0);
        assert_eq!(index.floor_position(8), 0);
        assert_eq!(index.floor_position(9), 4200);
        assert_eq!(index.floor_position(18), 4200);
        assert_eq!(index.floor_position(19), 8500);
        assert_eq!(index.floor_position(u32::MAX), 8500);
    }

    #[test]
    fn decode_keeps_the_increasing_prefix() {
        let good = [entry(3, 100), entry(7, 300), entry(9, 900)];
        let mut bytes = encode_entries(&good);
        bytes.extend_from_slice(&[0; 16]); // preallocated zeros
        bytes.extend_from_slice(&[1, 2, 3]); // torn entry
        assert_eq!(OffsetIndex::decode(&bytes, 10_000).entries(), &good);
        assert_eq!(OffsetIndex::decode(&bytes, 900).entries(), &good[..2]);
        let backwards = encode_entries(&[entry(3, 100), entry(2, 200)]);
        assert_eq!(OffsetIndex::decode(&backwards, 10_000).len(), 1);
    }

    #[test]
    fn cadence_matches_kafka() {
        let mut cadence = IndexCadence::default();
        let decisions: Vec<bool> = (0..6).map(|_| cadence.next_batch(1500, 4096)).collect();
        // Bytes since the last entry before each batch: 0, 1500, 3000, 4500 (> 4096: entry,
        // reset), 1500, 3000.
        assert_eq!(decisions, [false, false, false, true, false, false]);
    }

    #[test]
    #[should_panic(expected = "index entries must increase")]
    fn push_refuses_a_non_increasing_entry() {
        let mut index = OffsetIndex::default();
        index.push(entry(5, 500));
        index.push(entry(5, 600));
    }
}
