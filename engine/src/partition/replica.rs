//! [`Partition`]: this shard's replica of one partition, the only way handlers reach a log.
//!
//! A partition owns its [`PartitionLog`], knows its role (leader with its in-sync replicas,
//! or follower of a given leader) and its leader epoch, and keeps its named offsets apart:
//!
//! - **log start**: the first offset still in the log (retention and DeleteRecords move it);
//! - **high watermark**: what every in-sync replica has made durable, the most consumers may
//!   read. A leader computes it from its own durable end and the positions its followers
//!   report in their fetches ([`Partition::follower_fetched`]); it advances only while the
//!   ISR has at least `min.insync.replicas` members (KIP-966) and never goes back. A follower
//!   takes the leader's, capped at its own durable end. With the ISR this replica alone (a
//!   one-node cluster), it is the log's durable end. A replicated partition's is
//!   checkpointed (by the table, every few seconds and at close) and restored when its log
//!   opens again;
//! - **last stable offset**: the most `read_committed` consumers may read; the high watermark
//!   until transactions exist;
//! - **log end**: the next offset to assign (appended, maybe not durable yet).
//!
//! A partition decides when an append may be acknowledged for each acks level
//! ([`Partition::wait_acknowledged`]) and wakes long-polling fetches when its high watermark
//! advances ([`Partition::high_watermark_events`]).
//!
//! Concurrency contract: owned by the shard that hosts the replica, behind an `Rc` in its
//! `PartitionTable`; `!Send`. Its `RefCell`s are borrowed only between awaits.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use spate_storage::{Offset, PartitionLog, ReadMode, ReceivedBatch, Records};
use uuid::Uuid;

use super::error::PartitionError;
use super::ids::{BrokerId, LeaderEpoch, TopicPartition};
use crate::notify::Notify;

/// A replica's role, decided by the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// This replica leads: it takes produces and serves fetches.
    Leader {
        /// Every replica, this one included.
        replicas: Vec<BrokerId>,
        /// The in-sync replicas, this one included.
        isr: Vec<BrokerId>,
        /// The partition epoch of this view (the precondition of an ISR change).
        partition_epoch: i32,
    },
    /// This replica copies the leader's log.
    Follower {
        /// The leader it copies from.
        leader: BrokerId,
    },
}

/// A Produce's `acks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: no answer at all.
    None,
    /// acks=1: answered once the leader has the batch.
    Leader,
    /// acks=-1 (all): answered once every in-sync replica has it.
    All,
}

impl Acks {
    /// Kafka's encoding, or INVALID_REQUIRED_ACKS.
    pub fn from_kafka(acks: i16) -> Result<Acks, PartitionError> {
        match acks {
            0 => Ok(Acks::None),
            1 => Ok(Acks::Leader),
            -1 => Ok(Acks::All),
            other => Err(PartitionError::InvalidRequiredAcks(other)),
        }
    }
}

/// A producer's batch for [`Partition::append`].
pub enum ProducedBatch<'request> {
    /// In the request buffer.
    InRequest(&'request [u8]),
    /// Received from the socket into DMA chunks (see `spate_storage::ReceivedBatch`).
    Received(ReceivedBatch),
}

/// What an append did; pass it to [`Partition::wait_acknowledged`].
#[derive(Clone, Copy, Debug)]
pub struct Appended {
    /// Offset of the batch's first record (for a retried duplicate, the original's).
    pub base_offset: Offset,
    /// Offset of its last record.
    pub last_offset: Offset,
    /// The time stamped on the batch for LogAppendTime topics.
    pub log_append_time_ms: Option<i64>,
    /// A retry of a batch already in the log: nothing was appended.
    pub duplicate: bool,
    /// Bytes appended (0 for a duplicate).
    pub appended_bytes: usize,
    /// Received in place, without a copy.
    pub in_place: bool,
    /// The leader epoch the batch was appended in (a follower's: the epoch it follows):
    /// only that term may acknowledge it.
    pub leader_epoch: LeaderEpoch,
}

/// Which records a read may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Everything below the high watermark.
    ReadUncommitted,
    /// Everything below the last stable offset.
    ReadCommitted,
    /// Everything durable on this replica, above the high watermark too: a leader reading
    /// its own log (a new group coordinator loading its groups: its log is the partition's
    /// from now on, and what it holds beyond the high watermark commits as followers catch
    /// up). Never a client's.
    LocalDurable,
}

impl Isolation {
    /// Kafka's `isolation_level` (1 = read_committed).
    pub fn from_kafka(level: i8) -> Isolation {
        if level == 1 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }
}

/// A follower's progress as its leader sees it.
#[derive(Clone, Copy, Debug)]
struct FollowerProgress {
    /// The offset of its last fetch: everything below it is durable on the follower (a
    /// follower fetches on only once its appends are fdatasync'ed).
    durable_end: Offset,
    /// When it last fetched from the leader's log end (Kafka's lastCaughtUpTime).
    caught_up_at: std::time::Instant,
}

/// An ISR change the leader wants: see [`Partition::follower_fetched`] and
/// [`Partition::lagging_followers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedIsr {
    /// The ISR wanted.
    pub isr: Vec<BrokerId>,
    /// The leader epoch of the leader that wants it.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch its view was made from.
    pub partition_epoch: i32,
    /// The broker epoch each joining follower's fetch carried (KIP-903; -1: not given), so
    /// that the controller refuses one from an earlier incarnation of its broker.
    pub joining_broker_epochs: Vec<(BrokerId, i64)>,
}

/// The replication state shared with the log's durable-end listener.
struct Replication {
    /// This replica's broker.
    broker: BrokerId,
    role: RefCell<Role>,
    high_watermark: Cell<Offset>,
    /// `min.insync.replicas`.
    min_insync: Cell<usize>,
    /// While leading: what each follower reported.
    followers: RefCell<std::collections::BTreeMap<BrokerId, FollowerProgress>>,
    /// An ISR change is on its way to the controller: do not ask again meanwhile.
    isr_change_pending: Cell<bool>,
    /// When this replica's current term as leader began: an ISR member not heard from since
    /// counts as caught up then (Kafka starts every member's lastCaughtUpTime there).
    term_started: Cell<std::time::Instant>,
    /// Fired when the high watermark advances (consumers' long polls, acks=all) and when
    /// the role changes (acks=all waiters recheck that they still lead).
    high_watermark_advanced: Notify,
    /// Fired when the local durable end advances (followers' long polls).
    durable_end_advanced: Notify,
}

impl Replication {
    /// After the local durable end or a follower's position moved: the new high watermark,
    /// if it advanced (a leader's only).
    fn advance_high_watermark(&self, durable_end: Offset) {
        let high_watermark = {
            let role = self.role.borrow();
            let Role::Leader { isr, .. } = &*role else {
                return;
            };
            if isr.len() < self.min_insync.get() {
                return;
            }
            let followers = self.followers.borrow();
            let mut high_watermark = durable_end;
            for broker in isr.iter().filter(|broker| **broker != self.broker) {
                match followers.get(broker) {
                    Some(progress) => high_watermark = high_watermark.min(progress.durable_end),
                    None => return,
                }
            }
            high_watermark
        };
        if high_watermark > self.high_watermark.get() {
            self.high_watermark.set(high_watermark);
            self.high_watermark_advanced.notify_all();
        }
    }
}

/// See the module docs.
pub struct Partition {
    key: TopicPartition,
    topic_id: Uuid,
    log: PartitionLog,
    leader_epoch: Cell<LeaderEpoch>,
    /// Shared with the log's durable-end listener.
    replication: Rc<Replication>,
    /// When the table last tried to reopen this replica's failed log.
    reopen_attempted: Cell<Option<std::time::Instant>>,
    /// When a request last went through the table to this replica.
    last_used: Cell<std::time::Instant>,
    /// The high watermark last checkpointed (or restored from the checkpoint at open).
    checkpointed: Cell<Option<Offset>>,
}

/// How often a log that failed for lack of space (or descriptors) is tried again.
pub const REOPEN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Partition {
    /// Broker `broker`'s replica over an open log.
    ///
    /// The high watermark starts at the durable end for a partition with one replica (as a
    /// one-node broker always did). A replicated one's true high watermark only the leader's
    /// followers can tell: it starts at the high watermark checkpointed before the log was
    /// last closed or the node stopped, if the log still holds it
    /// (`spate_storage::high_watermark`), else at the log start, and catches up with the
    /// followers' fetches.
    pub fn new(
        key: TopicPartition,
        topic_id: Uuid,
        log: PartitionLog,
        broker: BrokerId,
        role: Role,
        leader_epoch: LeaderEpoch,
        min_insync: usize,
    ) -> Partition {
        let alone = matches!(&role, Role::Leader { replicas, .. } if replicas.len() == 1);
        let restored = log.restored_high_watermark();
        let start = if alone {
            log.durable_end_offset()
        } else {
            restored
                .unwrap_or(Offset(0))
                .max(log.log_start_offset())
                .min(log.durable_end_offset())
        };
        let replication = Rc::new(Replication {
            broker,
            role: RefCell::new(role.clone()),
            high_watermark: Cell::new(start),
            min_insync: Cell::new(min_insync),
            followers: RefCell::new(Default::default()),
            isr_change_pending: Cell::new(false),
            term_started: Cell::new(std::time::Instant::now()),
            high_watermark_advanced: Notify::default(),
            durable_end_advanced: Notify::default(),
        });
        // Whatever makes the durable end advance (a group commit of produced or replicated
        // batches) wakes the followers waiting for new data, and moves a leader's high
        // watermark, which wakes the consumers.
        let listener = Rc::downgrade(&replication);
        log.on_durable_end_advanced(Box::new(move |durable_end| {
            if let Some(replication) = listener.upgrade() {
                replication.durable_end_advanced.notify_all();
                replication.advance_high_watermark(durable_end);
            }
        }));
        if matches!(role, Role::Leader { .. }) {
            log.assign_leader_epoch(leader_epoch.0);
        }
        Partition {
            key,
            topic_id,
            log,
            leader_epoch: Cell::new(leader_epoch),
            replication,
            reopen_attempted: Cell::new(None),
            last_used: Cell::new(std::time::Instant::now()),
            checkpointed: Cell::new(restored),
        }
    }

    /// Whether other replicas exist, so that only the ISR can tell the high watermark (a
    /// follower, or a leader with other replicas).
    pub fn replicated(&self) -> bool {
        !matches!(&*self.replication.role.borrow(), Role::Leader { replicas, .. } if replicas.len() == 1)
    }

    /// The high watermark checkpoint to write for this replica, if it is replicated and its
    /// high watermark moved since the last one ([`Self::note_checkpointed`] once written).
    pub fn high_watermark_checkpoint_due(
        &self,
    ) -> Option<(
        std::path::PathBuf,
        spate_storage::high_watermark::HighWatermarkCheckpoint,
    )> {
        let high_watermark = self.high_watermark();
        if !self.replicated() || self.checkpointed.get() == Some(high_watermark) {
            return None;
        }
        let checkpoint = self.log.high_watermark_checkpoint(high_watermark);
        Some((self.log.dir().to_path_buf(), checkpoint))
    }

    /// The checkpoint of `high_watermark` was written.
    pub fn note_checkpointed(&self, high_watermark: Offset) {
        self.checkpointed.set(Some(high_watermark));
    }

    /// Notes a request's use of this replica (the table closes the least recently used
    /// ones when their segments hold too many descriptors).
    pub fn touch(&self) {
        self.last_used.set(std::time::Instant::now());
    }

    /// When a request last used this replica.
    pub fn last_used(&self) -> std::time::Instant {
        self.last_used.get()
    }

    /// Counts a reopen attempt now: a replica that replaces a failed one starts its wait for
    /// the next attempt where the failed one left off.
    pub fn note_reopen_attempt(&self) {
        self.reopen_attempted.set(Some(std::time::Instant::now()));
    }

    /// Whether the log failed for a reason that goes away (a full disk, no descriptors) and
    /// a reopen is due: at most one attempt per [`REOPEN_INTERVAL`]. Counts as an attempt.
    pub fn reopen_due(&self) -> bool {
        if !self.log.recoverable_failure() {
            return false;
        }
        let now = std::time::Instant::now();
        if self
            .reopen_attempted
            .get()
            .is_some_and(|attempted| now.duration_since(attempted) < REOPEN_INTERVAL)
        {
            return false;
        }
        self.reopen_attempted.set(Some(now));
        true
    }

    /// Which partition this is.
    pub fn key(&self) -> &TopicPartition {
        &self.key
    }

    /// Its topic's id.
    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch.get()
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        matches!(*self.replication.role.borrow(), Role::Leader { .. })
    }

    /// Whether this replica leads a partition that has other replicas (one that gets a new
    /// leader elsewhere when this node is fenced).
    pub fn leads_replicated(&self) -> bool {
        matches!(&*self.replication.role.borrow(), Role::Leader { replicas, .. } if replicas.len() > 1)
    }

    /// The role the controller gave this replica.
    pub fn role(&self) -> Role {
        self.replication.role.borrow().clone()
    }

    /// Takes the role and epoch the controller decided, and `min.insync.replicas`.
    pub fn set_role(&self, role: Role, leader_epoch: LeaderEpoch, min_insync: usize) {
        let replication = &self.replication;
        let was_leading_epoch = self.is_leader().then(|| self.leader_epoch.get());
        if matches!(role, Role::Leader { .. }) {
            // Kafka starts a leader's epoch at its log end when it takes over.
            self.log.assign_leader_epoch(leader_epoch.0);
            if was_leading_epoch != Some(leader_epoch) {
                // A new term: what followers reported to an earlier one counts no more.
                replication.followers.borrow_mut().clear();
                replication.term_started.set(std::time::Instant::now());
            }
        }
        *replication.role.borrow_mut() = role;
        self.leader_epoch.set(leader_epoch);
        replication.min_insync.set(min_insync.max(1));
        replication.isr_change_pending.set(false);
        replication.advance_high_watermark(self.log.durable_end_offset());
        // acks=all waiters recheck their leadership.
        replication.high_watermark_advanced.notify_all();
    }

    /// Checks a client's `current_leader_epoch` (-1: the client does not know it).
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), PartitionError> {
        let ours = self.leader_epoch.get().0;
        match current_leader_epoch {
            client if client < 0 || client == ours => Ok(()),
            client if client > ours => Err(PartitionError::UnknownLeaderEpoch { client, ours }),
            client => Err(PartitionError::FencedLeaderEpoch { client, ours }),
        }
    }

    /// The first offset in the log.
    pub fn log_start_offset(&self) -> Offset {
        self.log.log_start_offset()
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }

    /// The most consumers may read: durable on every in-sync replica (see the module docs).
    pub fn high_watermark(&self) -> Offset {
        self.replication.high_watermark.get()
    }

    /// The log's durable end: the most a follower may copy from this leader.
    pub fn durable_end_offset(&self) -> Offset {
        self.log.durable_end_offset()
    }

    /// The most `read_committed` consumers may read: the high watermark, or below it the
    /// first offset of the oldest transaction not yet decided with its marker below the high
    /// watermark (see `spate_storage::txn`).
    pub fn last_stable_offset(&self) -> Offset {
        self.log.last_stable_offset(self.high_watermark())
    }

    /// The aborted transactions a `read_committed` fetch from `fetch_offset` answers with
    /// (up to the last stable offset): the consumer drops those producers' batches.
    pub fn aborted_transactions(
        &self,
        fetch_offset: Offset,
    ) -> Vec<spate_storage::txn::AbortedTxn> {
        self.log
            .aborted_transactions(fetch_offset, self.last_stable_offset())
    }

    /// Fired each time the high watermark advances: long-polling fetches take its
    /// [`Notify::generation`] before reading, and wait for the next one with
    /// [`crate::notify::any`], so that nothing that becomes visible meanwhile is missed.
    pub fn high_watermark_events(&self) -> &Notify {
        &self.replication.high_watermark_advanced
    }

    /// Fired each time the log's durable end advances: followers' long polls wait on it.
    pub fn durable_end_events(&self) -> &Notify {
        &self.replication.durable_end_advanced
    }

    /// A follower's new high watermark from its leader's answer, capped at what it holds.
    pub fn follow_high_watermark(&self, leader_high_watermark: Offset) {
        // A leader's high watermark is its ISR's to move, never an answer's (a deposed
        // leader's late one, say).
        if self.is_leader() {
            return;
        }
        let replication = &self.replication;
        let capped = leader_high_watermark.min(self.log.durable_end_offset());
        if capped > replication.high_watermark.get() {
            replication.high_watermark.set(capped);
            replication.high_watermark_advanced.notify_all();
        }
    }

    /// Appends batches fetched from the leader, as they are (see
    /// `PartitionLog::append_replicated`); refused while leading.
    pub fn append_replicated(&self, records: &[u8]) -> Result<Appended, PartitionError> {
        if self.is_leader() {
            return Err(PartitionError::NotLeaderOrFollower);
        }
        let appended = self.log.append_replicated(records)?;
        Ok(Appended {
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
            log_append_time_ms: None,
            duplicate: false,
            appended_bytes: records.len(),
            in_place: false,
            leader_epoch: self.leader_epoch.get(),
        })
    }

    /// The epoch of the last batch in the log (-1 for none): a follower's
    /// `last_fetched_epoch`.
    pub fn last_epoch(&self) -> i32 {
        self.log.latest_epoch().map_or(-1, |entry| entry.epoch)
    }

    /// Where a batch of `batch_bytes` would start in its first disk block if appended now:
    /// receive it there so that the log adopts it without a copy.
    pub fn receive_front(&self, batch_bytes: usize) -> usize {
        self.log.receive_front(batch_bytes)
    }

    /// Appends a producer's batch as leader: validates it, applies the idempotence checks,
    /// assigns offsets and stamps the leader epoch. Returns at once; see
    /// [`Self::wait_acknowledged`] for when the producer may be answered.
    pub fn append(&self, batch: ProducedBatch<'_>) -> Result<Appended, PartitionError> {
        if !self.is_leader() {
            return Err(PartitionError::NotLeaderOrFollower);
        }
        let leader_epoch = self.leader_epoch.get();
        let epoch = leader_epoch.0;
        let (bytes, appended) = match batch {
            ProducedBatch::InRequest(bytes) => (bytes.len(), self.log.append(bytes, epoch)?),
            ProducedBatch::Received(received) => {
                (received.len(), self.log.append_received(received, epoch)?)
            }
        };
        Ok(Appended {
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
            log_append_time_ms: appended.log_append_time_ms,
            duplicate: appended.duplicate,
            appended_bytes: if appended.duplicate { 0 } else { bytes },
            in_place: appended.in_place,
            leader_epoch,
        })
    }

    /// Appends a transaction marker for `producer_id` as this partition's leader (the broker
    /// side of WriteTxnMarkers, see `spate_storage::txn`); wait for it like an acks=all
    /// produce.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: spate_storage::txn::TxnMarker,
    ) -> Result<Appended, PartitionError> {
        if !self.is_leader() {
            return Err(PartitionError::NotLeaderOrFollower);
        }
        let leader_epoch = self.leader_epoch.get();
        let appended =
            self.log
                .append_marker(producer_id, producer_epoch, marker, leader_epoch.0)?;
        Ok(Appended {
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
            log_append_time_ms: None,
            duplicate: false,
            appended_bytes: 0,
            in_place: false,
            leader_epoch,
        })
    }

    /// Resolves when the producer of `appended` may be answered for its acks level. Every
    /// level waits until the batch is durable here: acks=1 shares the group commit with
    /// acks=all. On a replicated partition acks=all then waits for the high watermark to
    /// pass the batch (durable on every in-sync replica), until `deadline`
    /// (REQUEST_TIMED_OUT); leadership lost meanwhile (a new epoch) answers
    /// NOT_LEADER_OR_FOLLOWER, since a truncation by the new term may take the batch away.
    /// With one replica the high watermark is the durable end: no timer, no leadership watch
    /// (the cost of the single-node produce path stays what it was). A retried duplicate is
    /// answered once its original is.
    ///
    /// Only the term that appended the batch may acknowledge it: the wait starts after the
    /// append (the produce path's second phase, behind the connection's earlier requests),
    /// and a replica deposed in between answers NOT_LEADER_OR_FOLLOWER. As a follower it
    /// would otherwise have looked unreplicated, and acknowledged on its own durability a
    /// batch that its new leader never had and its truncation then removed.
    pub async fn wait_acknowledged(
        &self,
        appended: &Appended,
        acks: Acks,
        deadline: std::time::Instant,
    ) -> Result<(), PartitionError> {
        let replicated = match &*self.replication.role.borrow() {
            Role::Leader { replicas, .. } if self.leader_epoch.get() == appended.leader_epoch => {
                replicas.len() > 1
            }
            _ => return Err(PartitionError::NotLeaderOrFollower),
        };
        if !replicated {
            // Fetches are woken by the log's durable-end listener (see `new`), not here.
            self.log.wait_durable(appended.last_offset).await?;
            return Ok(());
        }
        let timed_out = async {
            glommio::timer::sleep(deadline.saturating_duration_since(std::time::Instant::now()))
                .await;
            Err(PartitionError::RequestTimedOut)
        };
        futures_lite::future::or(self.wait_replicated(appended, acks), timed_out).await
    }

    /// [`Self::wait_acknowledged`] on a replicated partition, without the deadline.
    async fn wait_replicated(&self, appended: &Appended, acks: Acks) -> Result<(), PartitionError> {
        let epoch = appended.leader_epoch;
        let still_leading = || {
            if self.is_leader() && self.leader_epoch.get() == epoch {
                Ok(())
            } else {
                Err(PartitionError::NotLeaderOrFollower)
            }
        };
        let lost = async {
            loop {
                let events = self.high_watermark_events();
                let generation = events.generation();
                still_leading()?;
                crate::notify::any(std::iter::once((events, generation))).await;
            }
        };
        let durable = async {
            self.log.wait_durable(appended.last_offset).await?;
            Ok::<(), PartitionError>(())
        };
        futures_lite::future::or(durable, lost).await?;
        if acks != Acks::All {
            return Ok(());
        }
        loop {
            let events = self.high_watermark_events();
            let generation = events.generation();
            still_leading()?;
            if self.high_watermark() > appended.last_offset {
                return Ok(());
            }
            if let Err(PartitionError::NotEnoughReplicas { isr, min_insync }) =
                self.check_enough_replicas()
            {
                return Err(PartitionError::NotEnoughReplicasAfterAppend { isr, min_insync });
            }
            crate::notify::any(std::iter::once((events, generation))).await;
        }
    }

    /// Whole batches from the one holding `fetch_offset`, below the high watermark (or the
    /// last stable offset for `read_committed`), at most `max_bytes` but at least one batch.
    pub async fn read(
        &self,
        fetch_offset: Offset,
        max_bytes: usize,
        isolation: Isolation,
        mode: ReadMode,
    ) -> Result<Records, PartitionError> {
        let upper_bound = match isolation {
            Isolation::ReadUncommitted => self.high_watermark(),
            Isolation::ReadCommitted => self.last_stable_offset(),
            Isolation::LocalDurable => self.log.durable_end_offset(),
        };
        let records = self
            .log
            .read_records(fetch_offset, max_bytes, upper_bound, mode)
            .await?;
        Ok(records)
    }

    /// A follower's read: whole batches from `fetch_offset` up to this leader's durable end
    /// (what it may copy), empty when the follower already has everything durable here.
    pub async fn read_for_follower(
        &self,
        fetch_offset: Offset,
        max_bytes: usize,
        mode: ReadMode,
    ) -> Result<Records, PartitionError> {
        let durable_end = self.log.durable_end_offset();
        if fetch_offset >= durable_end && fetch_offset <= self.log.log_end_offset() {
            return Ok(Records::default());
        }
        Ok(self
            .log
            .read_records(fetch_offset, max_bytes, durable_end, mode)
            .await?)
    }

    /// A follower's truncation after its leader answered with a diverging epoch (or the
    /// leader's log starts past this one's end): the log ends at `offset`, and the high
    /// watermark no further.
    pub async fn truncate_to(&self, offset: Offset) -> Result<(), PartitionError> {
        // Only a follower cuts its log to its leader's: a leader's log holds what its ISR
        // acknowledged.
        if self.is_leader() {
            return Err(PartitionError::NotLeaderOrFollower);
        }
        if offset < self.log.log_start_offset() {
            self.log.truncate_fully_and_start_at(offset).await?;
        } else {
            self.log.truncate_to(offset).await?;
        }
        let end = self.log.log_end_offset();
        if self.replication.high_watermark.get() > end {
            self.replication.high_watermark.set(end);
        }
        Ok(())
    }

    /// A follower's log restarted at `offset` (the leader's log start is past this one's
    /// end, as after the leader's retention).
    pub async fn restart_at(&self, offset: Offset) -> Result<(), PartitionError> {
        if self.is_leader() {
            return Err(PartitionError::NotLeaderOrFollower);
        }
        self.log.truncate_fully_and_start_at(offset).await?;
        self.replication.high_watermark.set(offset);
        Ok(())
    }

    /// ListOffsets by timestamp: the first record at or after `timestamp_ms`.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, PartitionError> {
        Ok(self.log.offset_for_timestamp(timestamp_ms).await?)
    }

    /// ListOffsets' max timestamp: the record with the largest timestamp.
    pub async fn max_timestamp(&self) -> Result<Option<(Offset, i64)>, PartitionError> {
        Ok(self.log.max_timestamp().await?)
    }

    /// DeleteRecords: moves the log start up to `offset` (at most the high watermark).
    pub async fn delete_records_before(&self, offset: Offset) -> Result<Offset, PartitionError> {
        if offset > self.high_watermark() {
            return Err(PartitionError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset(),
                high_watermark: self.high_watermark(),
            });
        }
        Ok(self.log.delete_records_before(offset).await?)
    }

    /// OffsetForLeaderEpoch: the end offset of `epoch` as (epoch, end offset), from the log's
    /// leader epoch checkpoint (Kafka's answers: the largest known epoch at or below the one
    /// asked, ending where the next began or at the log end), or `None` when `epoch` is above
    /// every known one.
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let (epoch, end) = self.log.end_offset_for_epoch(epoch.0)?;
        Some((LeaderEpoch(epoch), end))
    }

    /// The log, for the shard's maintenance (retention, compaction, close).
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }
}

// The leader's side of the ISR protocol: follower positions, joins and shrinks.
#[path = "replica_isr.rs"]
mod isr;

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;
