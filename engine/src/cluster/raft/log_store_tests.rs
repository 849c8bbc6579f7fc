//! The quorum's file log: openraft's own storage suite, restarts, every torn tail, damage,
//! and compaction.

use std::path::Path;
use std::rc::Rc;

use futures::FutureExt;
use openraft::rt::Oneshot;

use crate::cluster::raft::runtime::FuturesOneshot;
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::testing::log_id;
use openraft::StorageError;

use super::{FileLogStore, LOG_FILE, VOTE_FILE};
use crate::cluster::raft::metadata_machine::{ImageSink, MetadataStateMachine, QuorumCommand};
use crate::cluster::raft::run_in_executor;
use crate::cluster::raft::QuorumTypes as C;
use crate::metadata::records::MetadataRecord;
use crate::metadata::MetadataUpdate;

struct NoSink;

impl ImageSink for NoSink {
    fn applied(&self, _update: MetadataUpdate) {}
}

struct Builder;

impl StoreBuilder<C, FileLogStore, MetadataStateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, FileLogStore, MetadataStateMachine), StorageError<C>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = FileLogStore::open(dir.path()).await.expect("log opens");
        let machine =
            MetadataStateMachine::open(dir.path(), Rc::new(NoSink)).expect("machine opens");
        Ok((dir, log, machine))
    }
}

#[test]
fn openraft_storage_suite() {
    run_in_executor(|| async {
        Suite::test_all(Builder).await.expect("the suite passes");
    });
}

fn entry(term: u64, index: u64) -> EntryOf<C> {
    let records = vec![MetadataRecord::ProducerIds {
        next: index as i64 * 1000,
    }];
    EntryOf::<C>::new_normal(log_id::<C>(term, 1, index), QuorumCommand { records })
}

async fn append(log: &mut FileLogStore, entries: Vec<EntryOf<C>>) {
    let (sender, flushed) = <FuturesOneshot as Oneshot>::channel();
    log.append(entries, IOFlushed::<C>::signal(sender))
        .await
        .expect("append");
    let flushed = flushed.now_or_never().expect("flushed when append returns");
    flushed.expect("sent").expect("flushed without error");
}

/// What a store holds, for comparison.
#[derive(Debug, PartialEq)]
struct Seen {
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
    purged: Option<LogIdOf<C>>,
    indexes: Vec<(u64, u64)>,
}

async fn seen(log: &mut FileLogStore) -> Seen {
    let state = log.get_log_state().await.expect("state");
    let entries = log.try_get_log_entries(..).await.expect("entries");
    Seen {
        vote: log.read_vote().await.expect("vote"),
        committed: log.read_committed().await.expect("committed"),
        purged: state.last_purged_log_id,
        indexes: entries
            .iter()
            .map(|entry| (entry.log_id().leader_id.term, entry.index()))
            .collect(),
    }
}

fn file_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(LOG_FILE))
        .expect("log file")
        .len()
}

#[test]
fn everything_survives_a_reopen() {
    run_in_executor(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = FileLogStore::open(dir.path()).await.expect("opens");
        let vote = VoteOf::<C>::new(3, 2);
        log.save_vote(&vote).await.expect("vote");
        append(&mut log, (1..=6).map(|index| entry(1, index)).collect()).await;
        log.truncate_after(Some(log_id::<C>(1, 1, 4)))
            .await
            .expect("truncate");
        append(&mut log, vec![entry(2, 5)]).await;
        log.purge(log_id::<C>(1, 1, 2)).await.expect("purge");
        log.save_committed(Some(log_id::<C>(2, 1, 5)))
            .await
            .expect("committed");
        let before = seen(&mut log).await;
        assert_eq!(before.indexes, vec![(1, 3), (1, 4), (2, 5)]);
        drop(log);
        let mut reopened = FileLogStore::open(dir.path()).await.expect("reopens");
        assert_eq!(seen(&mut reopened).await, before);
        assert_eq!(before.vote, Some(vote));
    });
}

#[test]
fn every_torn_tail_recovers_to_a_prefix_and_takes_new_appends() {
    run_in_executor(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = FileLogStore::open(dir.path()).await.expect("opens");
        log.save_vote(&VoteOf::<C>::new(1, 1)).await.expect("vote");
        // After each operation: the file's length and what the store holds.
        let mut states = vec![(file_len(dir.path()), seen(&mut log).await)];
        for index in 1..=4 {
            append(&mut log, vec![entry(1, index)]).await;
            states.push((file_len(dir.path()), seen(&mut log).await));
        }
        log.truncate_after(Some(log_id::<C>(1, 1, 2)))
            .await
            .expect("truncate");
        states.push((file_len(dir.path()), seen(&mut log).await));
        log.purge(log_id::<C>(1, 1, 1)).await.expect("purge");
        states.push((file_len(dir.path()), seen(&mut log).await));
        log.save_committed(Some(log_id::<C>(1, 1, 2)))
            .await
            .expect("committed");
        states.push((file_len(dir.path()), seen(&mut log).await));
        drop(log);
        let full = std::fs::read(dir.path().join(LOG_FILE)).expect("reads");
        let vote = std::fs::read(dir.path().join(VOTE_FILE)).expect("reads");
        for cut in 0..=full.len() {
            let copy = tempfile::tempdir().expect("tempdir");
            std::fs::write(copy.path().join(LOG_FILE), &full[..cut]).expect("writes");
            std::fs::write(copy.path().join(VOTE_FILE), &vote).expect("writes");
            let mut reopened = FileLogStore::open(copy.path()).await.expect("reopens");
            let (length, expected) = states
                .iter()
                .rev()
                .find(|(length, _)| *length as usize <= cut)
                .unwrap_or(&states[0]);
            assert_eq!(&seen(&mut reopened).await, expected, "cut at {cut}");
            assert_eq!(file_len(copy.path()), *length, "cut at {cut}");
            append(&mut reopened, vec![entry(5, 10)]).await;
            drop(reopened);
            let mut again = FileLogStore::open(copy.path()).await.expect("reopens");
            let last = seen(&mut again).await.indexes.last().copied();
            assert_eq!(last, Some((5, 10)), "cut at {cut}");
        }
    });
}

#[test]
fn a_damaged_frame_ends_the_log_there() {
    run_in_executor(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = FileLogStore::open(dir.path()).await.expect("opens");
        append(&mut log, vec![entry(1, 1)]).await;
        let first_end = file_len(dir.path());
        append(&mut log, vec![entry(1, 2), entry(1, 3)]).await;
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).expect("reads");
        bytes[first_end as usize + 12] ^= 0x01;
        std::fs::write(&path, &bytes).expect("writes");
        let mut reopened = FileLogStore::open(dir.path()).await.expect("reopens");
        assert_eq!(seen(&mut reopened).await.indexes, vec![(1, 1)]);
        assert_eq!(file_len(dir.path()), first_end);
    });
}

#[test]
fn a_damaged_vote_or_header_stops_the_start() {
    run_in_executor(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = FileLogStore::open(dir.path()).await.expect("opens");
        log.save_vote(&VoteOf::<C>::new(1, 1)).await.expect("vote");
        drop(log);
        let vote_path = dir.path().join(VOTE_FILE);
        let mut bytes = std::fs::read(&vote_path).expect("reads");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&vote_path, &bytes).expect("writes");
        assert!(FileLogStore::open(dir.path()).await.is_err());
        std::fs::remove_file(&vote_path).expect("removes");
        std::fs::write(dir.path().join(LOG_FILE), b"NOTALOG!and more").expect("writes");
        assert!(FileLogStore::open(dir.path()).await.is_err());
    });
}

#[test]
fn compaction_keeps_the_live_state() {
    run_in_executor(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = FileLogStore::open(dir.path()).await.expect("opens");
        log.compact_min_bytes = 4096;
        for index in 1..=200 {
            append(&mut log, vec![entry(1, index)]).await;
            if index % 20 == 0 {
                log.purge(log_id::<C>(1, 1, index - 5))
                    .await
                    .expect("purge");
            }
        }
        log.save_committed(Some(log_id::<C>(1, 1, 198)))
            .await
            .expect("committed");
        let before = seen(&mut log).await;
        assert!(
            file_len(dir.path()) < 4 * 4096,
            "the file was compacted: {} bytes",
            file_len(dir.path())
        );
        // A crash during a compaction leaves a temporary file: it is ignored.
        std::fs::write(dir.path().join(format!("{LOG_FILE}.tmp")), b"half").expect("writes");
        drop(log);
        let mut reopened = FileLogStore::open(dir.path()).await.expect("reopens");
        assert_eq!(seen(&mut reopened).await, before);
        assert!(!dir.path().join(format!("{LOG_FILE}.tmp")).exists());
    });
}
