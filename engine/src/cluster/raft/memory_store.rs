//! In-memory Raft log and state machine for the spike. Shard-local (`Rc<RefCell<_>>`), never
//! borrowed across an `.await`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::ops::RangeBounds;
use std::rc::Rc;

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{
    IOFlushed, LogState, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine,
};
use openraft::{EntryPayload, OptionalSend};

use super::ControllerConfig as C;

type Entry = <C as openraft::RaftTypeConfig>::Entry;

#[derive(Default)]
struct LogInner {
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
    last_purged: Option<LogIdOf<C>>,
    entries: BTreeMap<u64, Entry>,
}

/// The Raft log of one node; clones share the same log (the reader is a clone).
#[derive(Clone, Default)]
pub struct LogStore {
    inner: Rc<RefCell<LogInner>>,
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let inner = self.inner.borrow();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.inner.borrow().vote)
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let inner = self.inner.borrow();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|entry| entry.log_id());
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.inner.borrow_mut().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        self.inner.borrow_mut().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.inner.borrow().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut inner = self.inner.borrow_mut();
            for entry in entries {
                inner.entries.insert(entry.log_id().index, entry);
            }
        }
        // In memory the write is "durable" at once; the file store calls this after fdatasync.
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let first_removed = last_log_id.map_or(0, |log_id| log_id.index + 1);
        self.inner.borrow_mut().entries.split_off(&first_removed);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let mut inner = self.inner.borrow_mut();
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        inner.last_purged = Some(log_id);
        Ok(())
    }
}

#[derive(Default)]
struct MachineInner {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    /// The replicated "metadata": every applied command in order.
    commands: Vec<String>,
    snapshot: Option<SnapshotOf<C, Vec<String>>>,
}

/// The replicated state machine of one node: a list of applied commands.
#[derive(Clone, Default)]
pub struct StateMachine {
    inner: Rc<RefCell<MachineInner>>,
}

impl StateMachine {
    /// The commands applied so far, in log order.
    pub fn commands(&self) -> Vec<String> {
        self.inner.borrow().commands.clone()
    }
}

impl RaftSnapshotBuilder<C> for StateMachine {
    type SnapshotData = Vec<String>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<String>>, io::Error> {
        let mut inner = self.inner.borrow_mut();
        let meta = SnapshotMetaOf::<C> {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
        };
        let snapshot = openraft::storage::Snapshot {
            meta,
            snapshot: inner.commands.clone(),
        };
        inner.snapshot = Some(snapshot.clone());
        Ok(snapshot)
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = Vec<String>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let inner = self.inner.borrow();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<openraft::storage::EntryResponder<C>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let applied_count = {
                let mut inner = self.inner.borrow_mut();
                inner.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(command) => inner.commands.push(command),
                    EntryPayload::Membership(membership) => {
                        inner.membership =
                            StoredMembershipOf::<C>::new(Some(entry.log_id), membership)
                    }
                }
                inner.commands.len() as u64
            };
            if let Some(responder) = responder {
                responder.send(applied_count);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Vec<String>,
    ) -> Result<(), io::Error> {
        let mut inner = self.inner.borrow_mut();
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.commands = snapshot.clone();
        inner.snapshot = Some(openraft::storage::Snapshot {
            meta: meta.clone(),
            snapshot,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<C, Vec<String>>>, io::Error> {
        Ok(self.inner.borrow().snapshot.clone())
    }
}
