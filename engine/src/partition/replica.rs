//! [`Partition`]: this shard's replica of one partition, the only way handlers reach a log.
//!
//! A partition owns its [`PartitionLog`], knows its role (leader with its in-sync replicas,
//! or follower of a given leader) and its leader epoch, and keeps its named offsets apart:
//!
//! - **log start**: the first offset still in the log (retention and DeleteRecords move it);
//! - **high watermark**: what every in-sync replica has made durable, the most consumers may
//!   read. On one node the ISR is this replica alone, so it is the log's durable end;
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
        /// The in-sync replicas, this one included.
        isr: Vec<BrokerId>,
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
}

/// Which records a read may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Everything below the high watermark.
    ReadUncommitted,
    /// Everything below the last stable offset.
    ReadCommitted,
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

/// See the module docs.
pub struct Partition {
    key: TopicPartition,
    topic_id: Uuid,
    log: PartitionLog,
    role: RefCell<Role>,
    leader_epoch: Cell<LeaderEpoch>,
    /// Shared with the log's durable-end listener, which fires it.
    high_watermark_advanced: Rc<Notify>,
    /// When the table last tried to reopen this replica's failed log.
    reopen_attempted: Cell<Option<std::time::Instant>>,
    /// When a request last went through the table to this replica.
    last_used: Cell<std::time::Instant>,
}

/// How often a log that failed for lack of space (or descriptors) is tried again.
pub const REOPEN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Partition {
    /// A replica over an open log.
    pub fn new(
        key: TopicPartition,
        topic_id: Uuid,
        log: PartitionLog,
        role: Role,
        leader_epoch: LeaderEpoch,
    ) -> Partition {
        let high_watermark_advanced = Rc::new(Notify::default());
        // On one node the high watermark is the log's durable end: whatever makes it advance
        // (a group commit of produced batches today, of replicated ones later) wakes the
        // fetches waiting for new data. With followers, the ISR's fetch positions will move
        // it instead.
        let listener = Rc::downgrade(&high_watermark_advanced);
        log.on_durable_end_advanced(Box::new(move |_durable_end| {
            if let Some(notify) = listener.upgrade() {
                notify.notify_all();
            }
        }));
        if matches!(role, Role::Leader { .. }) {
            log.assign_leader_epoch(leader_epoch.0);
        }
        Partition {
            key,
            topic_id,
            log,
            role: RefCell::new(role),
            leader_epoch: Cell::new(leader_epoch),
            high_watermark_advanced,
            reopen_attempted: Cell::new(None),
            last_used: Cell::new(std::time::Instant::now()),
        }
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
        matches!(*self.role.borrow(), Role::Leader { .. })
    }

    /// Takes the role and epoch the controller decided.
    pub fn set_role(&self, role: Role, leader_epoch: LeaderEpoch) {
        if matches!(role, Role::Leader { .. }) {
            // Kafka starts a leader's epoch at its log end when it takes over.
            self.log.assign_leader_epoch(leader_epoch.0);
        }
        *self.role.borrow_mut() = role;
        self.leader_epoch.set(leader_epoch);
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

    /// The most consumers may read: durable on every in-sync replica. On one node, the ISR is
    /// this replica, so it is the log's durable end.
    pub fn high_watermark(&self) -> Offset {
        self.log.durable_end_offset()
    }

    /// The most `read_committed` consumers may read: the high watermark until transactions
    /// exist.
    pub fn last_stable_offset(&self) -> Offset {
        self.high_watermark()
    }

    /// Fired each time the high watermark advances: long-polling fetches take its
    /// [`Notify::generation`] before reading, and wait for the next one with
    /// [`crate::notify::any`], so that nothing that becomes visible meanwhile is missed.
    pub fn high_watermark_events(&self) -> &Notify {
        &self.high_watermark_advanced
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
        let epoch = self.leader_epoch.get().0;
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
        })
    }

    /// Resolves when the producer of `appended` may be answered for its acks level. Every
    /// level waits until the batch is durable: acks=1 shares the group commit with acks=all,
    /// which on one node is the same point (the ISR is this replica). A retried duplicate is
    /// answered once its original is durable (it may be in the same group commit).
    pub async fn wait_acknowledged(
        &self,
        appended: &Appended,
        _acks: Acks,
    ) -> Result<(), PartitionError> {
        // Fetches are woken by the log's durable-end listener (see `new`), not here.
        self.log.wait_durable(appended.last_offset).await?;
        Ok(())
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
        };
        let records = self
            .log
            .read_records(fetch_offset, max_bytes, upper_bound, mode)
            .await?;
        Ok(records)
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
