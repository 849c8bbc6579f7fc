//! The controller quorum's log and vote on fdatasync'ed files.
//!
//! Layout, in the member's directory:
//! - `raft-log`: an 8-byte header (magic and format), then frames
//!   `[u32 LE body length][u32 LE CRC-32C of body][body]`, each body the JSON of one
//!   [`Record`]: an entry, a truncation, a purge or the committed id. The file is only ever
//!   appended to (truncations and purges are records), except by compaction, which writes the
//!   live state to `raft-log.tmp`, syncs it and renames it over.
//! - `raft-vote`: the vote, written atomically (tmp, fdatasync, rename, directory sync), with
//!   a CRC-32C.
//!
//! Durability, as Raft requires: `append` reports its entries flushed (`IOFlushed`) and
//! makes them readable only after `fdatasync` returned; `save_vote` returns only after the
//! vote is on disk. A failed sync is returned as an error, which stops the Raft member for
//! good (retrying an fsync after a failure can lie).
//!
//! Recovery replays the frames in order and stops at the first one that is torn or fails its
//! CRC: a crash can only tear the tail, since every earlier frame was synced before the next
//! was written. The file is cut back to the last good frame (with one warning line), so new
//! frames never follow garbage.
//!
//! The metadata log is small, so every live entry is also kept in memory; reads never touch
//! the disk. File I/O runs on glommio's blocking pool, so the shard keeps serving meanwhile.
//!
//! Concurrency contract: owned by the Raft tasks of one executor (`!Send`); openraft awaits
//! each storage call before the next, and the reader shares the in-memory state.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use serde::{Deserialize, Serialize};

use super::QuorumTypes as C;

/// The log file.
pub const LOG_FILE: &str = "raft-log";
/// The vote file.
pub const VOTE_FILE: &str = "raft-vote";
/// First bytes of the log file: magic and format version.
const LOG_HEADER: &[u8; 8] = b"SPRLOG01";
/// First bytes of the vote file.
const VOTE_MAGIC: &[u8; 8] = b"SPRVOT01";
/// Bytes before a frame's body.
const FRAME_HEADER_BYTES: usize = 8;
/// Largest frame body accepted when reading: a length above it is corruption, not an
/// allocation to attempt.
const FRAME_BODY_MAX_BYTES: usize = 64 << 20;
/// The file is compacted when it is at least this large...
const COMPACT_MIN_BYTES: u64 = 8 << 20;
/// ...and at least this many times the size of its live frames.
const COMPACT_RATIO: u64 = 2;

/// One frame's content.
#[derive(Serialize, Deserialize)]
enum Record {
    Entry(EntryOf<C>),
    TruncateAfter(Option<LogIdOf<C>>),
    Purge(LogIdOf<C>),
    Committed(Option<LogIdOf<C>>),
}

/// What the log holds, in memory.
#[derive(Default)]
struct LogContents {
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
    last_purged: Option<LogIdOf<C>>,
    /// Live entries by index, each with its frame's size in the file.
    entries: BTreeMap<u64, (EntryOf<C>, u64)>,
    /// Bytes of the log file, header included.
    file_bytes: u64,
}

impl LogContents {
    fn live_bytes(&self) -> u64 {
        LOG_HEADER.len() as u64 + self.entries.values().map(|(_, bytes)| bytes).sum::<u64>()
    }

    fn replay(&mut self, record: Record, frame_bytes: u64) {
        match record {
            Record::Entry(entry) => {
                self.entries.insert(entry.index(), (entry, frame_bytes));
            }
            Record::TruncateAfter(last) => {
                let keep_below = last.map_or(0, |log_id| log_id.index + 1);
                self.entries.split_off(&keep_below);
            }
            Record::Purge(log_id) => {
                self.entries = self.entries.split_off(&(log_id.index + 1));
                if self
                    .last_purged
                    .is_none_or(|purged| purged.index < log_id.index)
                {
                    self.last_purged = Some(log_id);
                }
            }
            Record::Committed(committed) => self.committed = committed,
        }
    }
}

/// The open log file, used from the blocking pool.
struct LogFile {
    file: File,
    path: PathBuf,
}

/// See the module docs. Clones share the same log (the reader is a clone).
#[derive(Clone)]
pub struct FileLogStore {
    state: Rc<RefCell<LogContents>>,
    file: Arc<Mutex<LogFile>>,
    dir: PathBuf,
    /// [`COMPACT_MIN_BYTES`], lowered by tests.
    compact_min_bytes: u64,
}

impl FileLogStore {
    /// Opens the log in `dir` (created empty on first start) and recovers it.
    pub async fn open(dir: &Path) -> io::Result<FileLogStore> {
        let dir = dir.to_path_buf();
        let opened_dir = dir.clone();
        let (state, file) = glommio::executor()
            .spawn_blocking(move || open_files(&opened_dir))
            .await?;
        Ok(FileLogStore {
            state: Rc::new(RefCell::new(state)),
            file: Arc::new(Mutex::new(file)),
            dir,
            compact_min_bytes: COMPACT_MIN_BYTES,
        })
    }

    /// Appends `records` and syncs; the in-memory state follows only after the sync.
    async fn write(&self, records: Vec<Record>) -> io::Result<Vec<u64>> {
        let mut bytes = Vec::new();
        let mut sizes = Vec::with_capacity(records.len());
        for record in &records {
            let before = bytes.len();
            encode_frame(record, &mut bytes)?;
            sizes.push((bytes.len() - before) as u64);
        }
        let file = self.file.clone();
        glommio::executor()
            .spawn_blocking(move || {
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                file.file.write_all(&bytes)?;
                file.file.sync_data()
            })
            .await?;
        let mut state = self.state.borrow_mut();
        for (record, size) in records.into_iter().zip(&sizes) {
            state.file_bytes += size;
            state.replay(record, *size);
        }
        Ok(sizes)
    }

    /// Rewrites the file with only its live state when dead frames dominate it.
    async fn compact_if_worth_it(&self) -> io::Result<()> {
        let (file_bytes, live_bytes) = {
            let state = self.state.borrow();
            (state.file_bytes, state.live_bytes())
        };
        if file_bytes < self.compact_min_bytes || file_bytes < live_bytes * COMPACT_RATIO {
            return Ok(());
        }
        let (bytes, sizes) = {
            let state = self.state.borrow();
            let mut bytes = LOG_HEADER.to_vec();
            if let Some(purged) = state.last_purged {
                encode_frame(&Record::Purge(purged), &mut bytes)?;
            }
            encode_frame(&Record::Committed(state.committed), &mut bytes)?;
            let mut sizes = BTreeMap::new();
            for (index, (entry, _)) in &state.entries {
                let before = bytes.len();
                encode_frame(&Record::Entry(entry.clone()), &mut bytes)?;
                sizes.insert(*index, (bytes.len() - before) as u64);
            }
            (bytes, sizes)
        };
        let total = bytes.len() as u64;
        let file = self.file.clone();
        let dir = self.dir.clone();
        glommio::executor()
            .spawn_blocking(move || {
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let temporary = dir.join(format!("{LOG_FILE}.tmp"));
                let mut written = File::create(&temporary)?;
                written.write_all(&bytes)?;
                written.sync_all()?;
                std::fs::rename(&temporary, &file.path)?;
                File::open(&dir)?.sync_all()?;
                file.file = OpenOptions::new().append(true).open(&file.path)?;
                Ok::<(), io::Error>(())
            })
            .await?;
        let mut state = self.state.borrow_mut();
        state.file_bytes = total;
        for (index, size) in sizes {
            if let Some((_, bytes)) = state.entries.get_mut(&index) {
                *bytes = size;
            }
        }
        tracing::info!(bytes = total, "compacted the controller quorum's log");
        Ok(())
    }
}

/// Opens or creates the log file, replays it, cuts a torn tail, and reads the vote.
fn open_files(dir: &Path) -> io::Result<(LogContents, LogFile)> {
    let path = dir.join(LOG_FILE);
    // A compaction that crashed before its rename left the old file whole.
    let _ = std::fs::remove_file(dir.join(format!("{LOG_FILE}.tmp")));
    let mut state = LogContents {
        vote: read_vote_file(&dir.join(VOTE_FILE))?,
        ..LogContents::default()
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    let good_end = if bytes.len() < LOG_HEADER.len() {
        // A new log, or one whose header was torn at creation: nothing was ever in it.
        let mut file = File::create(&path)?;
        file.write_all(LOG_HEADER)?;
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        LOG_HEADER.len()
    } else {
        if &bytes[..LOG_HEADER.len()] != LOG_HEADER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a Spate quorum log", path.display()),
            ));
        }
        replay_frames(&bytes, &mut state)
    };
    if good_end < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            cut_bytes = bytes.len() - good_end,
            "the controller quorum's log ends in a torn or damaged frame; cutting it off"
        );
        let file = OpenOptions::new().write(true).open(&path)?;
        file.set_len(good_end as u64)?;
        file.sync_all()?;
    }
    state.file_bytes = good_end as u64;
    let file = OpenOptions::new().append(true).open(&path)?;
    Ok((state, LogFile { file, path }))
}

/// Replays every whole, intact frame; returns where the good frames end.
fn replay_frames(bytes: &[u8], state: &mut LogContents) -> usize {
    let mut position = LOG_HEADER.len();
    while let Some((record, frame_bytes)) = decode_frame(&bytes[position..]) {
        state.replay(record, frame_bytes as u64);
        position += frame_bytes;
    }
    position
}

fn encode_frame(record: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    let body = serde_json::to_vec(record).map_err(io::Error::other)?;
    assert!(
        body.len() <= FRAME_BODY_MAX_BYTES,
        "a quorum log record above the frame limit"
    );
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// The record at the start of `bytes` and its frame's size, if the frame is whole and intact.
fn decode_frame(bytes: &[u8]) -> Option<(Record, usize)> {
    let header = bytes.get(..FRAME_HEADER_BYTES)?;
    let length = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if length > FRAME_BODY_MAX_BYTES {
        return None;
    }
    let body = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + length)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let record = serde_json::from_slice(body).ok()?;
    Some((record, FRAME_HEADER_BYTES + length))
}

fn read_vote_file(path: &Path) -> io::Result<Option<VoteOf<C>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    // The vote is replaced atomically, so a damaged one is not a torn write: refuse to
    // start rather than forget a vote and maybe vote twice in one term.
    let damaged = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is damaged", path.display()),
        )
    };
    if bytes.len() < VOTE_MAGIC.len() || &bytes[..VOTE_MAGIC.len()] != VOTE_MAGIC {
        return Err(damaged());
    }
    decode_vote(&bytes[VOTE_MAGIC.len()..])
        .map(Some)
        .ok_or_else(damaged)
}

/// `[u32 LE length][u32 LE CRC-32C][JSON of the vote]`.
fn encode_vote(vote: &VoteOf<C>) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(vote).map_err(io::Error::other)?;
    let mut bytes = VOTE_MAGIC.to_vec();
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

fn decode_vote(bytes: &[u8]) -> Option<VoteOf<C>> {
    let header = bytes.get(..FRAME_HEADER_BYTES)?;
    let length = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    let body = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES.checked_add(length)?)?;
    (crc32c::crc32c(body) == crc)
        .then(|| serde_json::from_slice(body).ok())
        .flatten()
}

impl RaftLogReader<C> for FileLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        let state = self.state.borrow();
        let range = (
            clone_bound(range.start_bound()),
            clone_bound(range.end_bound()),
        );
        Ok(state
            .entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.state.borrow().vote)
    }
}

fn clone_bound(bound: Bound<&u64>) -> Bound<u64> {
    match bound {
        Bound::Included(value) => Bound::Included(*value),
        Bound::Excluded(value) => Bound::Excluded(*value),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogStorage<C> for FileLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let state = self.state.borrow();
        let last = state
            .entries
            .values()
            .next_back()
            .map(|(entry, _)| entry.log_id())
            .or(state.last_purged);
        Ok(LogState {
            last_purged_log_id: state.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let bytes = encode_vote(vote)?;
        let path = self.dir.join(VOTE_FILE);
        glommio::executor()
            .spawn_blocking(move || {
                crate::metadata::store::write_atomically(&path, &bytes)
                    .map_err(|error| io::Error::other(format!("{error:#}")))
            })
            .await?;
        self.state.borrow_mut().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.write(vec![Record::Committed(committed)]).await?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.state.borrow().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<Record> = entries.into_iter().map(Record::Entry).collect();
        match self.write(records).await {
            Ok(_) => {
                callback.io_completed(Ok(()));
                self.compact_if_worth_it().await
            }
            Err(error) => {
                callback.io_completed(Err(io::Error::new(error.kind(), error.to_string())));
                Err(error)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.write(vec![Record::TruncateAfter(last_log_id)]).await?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        self.write(vec![Record::Purge(log_id)]).await?;
        self.compact_if_worth_it().await
    }
}

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;
