//! The group coordinator of one shard: the groups whose `__consumer_offsets` partition this
//! shard owns, their committed offsets, and the plumbing between the handlers and each
//! group's state machine: [`Group`] for classic groups, [`ConsumerGroup`] for KIP-848 ones
//! (`coordinator_consumer.rs`). A group id is one or the other: a KIP-848 heartbeat turns
//! an empty classic group into a consumer group, a JoinGroup an empty consumer group into a
//! classic one; a non-empty group of the other kind refuses the request.
//!
//! Concurrency contract: owned by its [`Shard`] (`!Send`); its maps are borrowed only
//! between awaits. Held JoinGroup/SyncGroup requests wait on one-shot channels keyed by
//! [`Waiter`] tokens; the state machine's [`Completions`] fill them. Offset commits are
//! appended to the group's `__consumer_offsets` partition and acknowledged once durable,
//! like any produce.

use spate_net::error_code::{
    GROUP_ID_NOT_FOUND, GROUP_SUBSCRIBED_TO_TOPIC, NON_EMPTY_GROUP, OFFSET_METADATA_TOO_LARGE,
};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;
use spate_net::records::plain_record;

use super::consumer_group::ConsumerGroup;
use super::group::{
    code, Completions, Group, GroupConfig, GroupState, JoinRequest, JoinResult, Member, Reply,
    SyncRequest, SyncResult, Waiter,
};
use super::offsets_topic::{self, OffsetValue};
use crate::oneshot;
use crate::shard::Shard;

/// Kafka's `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// How long a write to `__consumer_offsets` may wait for its ISR (Kafka's
/// offsets.commit.timeout.ms).
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A group and its committed offsets.
pub struct GroupEntry {
    /// Membership state (Empty while the group is a consumer group).
    pub group: Group,
    /// Set while the group is a KIP-848 consumer group.
    pub consumer: Option<ConsumerGroup>,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Offsets of TxnOffsetCommits by producer id, written but not yet committed: their
    /// transaction's marker makes them committed offsets (commit) or drops them (abort).
    pub pending_txn: BTreeMap<i64, BTreeMap<(String, i32), OffsetValue>>,
}

enum Slot {
    Join(oneshot::Sender<JoinResult>),
    Sync(oneshot::Sender<SyncResult>),
}

/// A snapshot of a group for DescribeGroups and ListGroups.
pub struct GroupSummary {
    /// Group id.
    pub group_id: String,
    /// Kafka's state name ("Dead" for an unknown group).
    pub state: &'static str,
    /// "consumer" or empty.
    pub protocol_type: String,
    /// The chosen protocol or empty.
    pub protocol_name: String,
    /// "classic" or "consumer" (KIP-848), as ListGroups v5 names group types.
    pub group_type: &'static str,
    /// The members.
    pub members: Vec<Member>,
}

/// Committed offsets by topic: (topic, [(partition, offset if committed)]).
pub type CommittedByTopic = Vec<(String, Vec<(i32, Option<OffsetValue>)>)>;

/// One shard's coordinator; see the module docs.
pub struct Coordinator {
    config: GroupConfig,
    offsets_partitions: i32,
    offsets_retention_ms: i64,
    groups: RefCell<HashMap<String, GroupEntry>>,
    slots: RefCell<HashMap<Waiter, Slot>>,
    next_waiter: Cell<Waiter>,
    epoch: Instant,
    /// `__consumer_offsets` partitions this shard leads whose records could not be read at
    /// start (a full disk, no descriptors): their groups answer COORDINATOR_LOAD_IN_PROGRESS,
    /// which clients retry, until a later attempt loads them ([`Coordinator::retry_loads`]),
    /// rather than serving those groups without their committed offsets.
    unloaded: RefCell<std::collections::BTreeSet<i32>>,
    /// A [`Coordinator::retry_loads`] is running.
    retrying: Cell<bool>,
    /// Settings of KIP-848 consumer groups.
    consumer_config: super::consumer_group::ConsumerGroupConfig,
    /// The topics of the last image a KIP-848 heartbeat saw (see `topics_view`).
    #[allow(clippy::type_complexity)]
    topics_view: RefCell<
        Option<(
            std::sync::Arc<crate::metadata::image::MetadataImage>,
            Rc<super::consumer_group::TopicsView>,
        )>,
    >,
}

impl Coordinator {
    /// A coordinator with no groups yet (see [`Coordinator::load`]).
    pub fn new(
        config: GroupConfig,
        offsets_partitions: i32,
        offsets_retention_ms: i64,
    ) -> Coordinator {
        let consumer_config = config.consumer.clone();
        Coordinator {
            config,
            offsets_partitions,
            offsets_retention_ms,
            groups: RefCell::new(HashMap::new()),
            slots: RefCell::new(HashMap::new()),
            next_waiter: Cell::new(1),
            epoch: Instant::now(),
            unloaded: RefCell::new(std::collections::BTreeSet::new()),
            retrying: Cell::new(false),
            consumer_config,
            topics_view: RefCell::new(None),
        }
    }

    /// The `__consumer_offsets` partition that holds a group.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        offsets_topic::partition_for(group_id, self.offsets_partitions)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn new_waiter(&self) -> Waiter {
        let waiter = self.next_waiter.get();
        self.next_waiter.set(waiter + 1);
        waiter
    }

    fn with_group<T>(&self, group_id: &str, action: impl FnOnce(&mut GroupEntry) -> T) -> T {
        let mut groups = self.groups.borrow_mut();
        let entry = groups
            .entry(group_id.to_string())
            .or_insert_with(|| GroupEntry {
                group: Group::new(group_id, self.config.clone()),
                consumer: None,
                offsets: BTreeMap::new(),
                pending_txn: BTreeMap::new(),
            });
        action(entry)
    }

    /// JoinGroup: answered at once, or when the rebalance completes.
    pub async fn join(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        request: JoinRequest,
    ) -> JoinResult {
        if let Some(refusal) = self.classic_join_refused(shard, group_id) {
            return JoinResult {
                error_code: refusal,
                generation_id: -1,
                ..JoinResult::default()
            };
        }
        let waiter = self.new_waiter();
        let (sender, receiver) = oneshot::channel();
        self.slots.borrow_mut().insert(waiter, Slot::Join(sender));
        let now = self.now_ms();
        let (reply, done) =
            self.with_group(group_id, |entry| entry.group.join(now, request, waiter));
        self.deliver(shard, group_id, done);
        match reply {
            Reply::Now(result) => {
                self.slots.borrow_mut().remove(&waiter);
                result
            }
            Reply::Later => receiver.await.unwrap_or_else(|| JoinResult {
                error_code: code::COORDINATOR_NOT_AVAILABLE,
                generation_id: -1,
                ..JoinResult::default()
            }),
        }
    }

    /// SyncGroup: answered at once, or when the leader's assignments arrive.
    pub async fn sync(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        request: SyncRequest,
    ) -> SyncResult {
        if !self.groups.borrow().contains_key(group_id) {
            return SyncResult {
                error_code: code::UNKNOWN_MEMBER_ID,
                ..SyncResult::default()
            };
        }
        let waiter = self.new_waiter();
        let (sender, receiver) = oneshot::channel();
        self.slots.borrow_mut().insert(waiter, Slot::Sync(sender));
        let now = self.now_ms();
        let (reply, done) =
            self.with_group(group_id, |entry| entry.group.sync(now, request, waiter));
        self.deliver(shard, group_id, done);
        match reply {
            Reply::Now(result) => {
                self.slots.borrow_mut().remove(&waiter);
                result
            }
            Reply::Later => receiver.await.unwrap_or_else(|| SyncResult {
                error_code: code::COORDINATOR_NOT_AVAILABLE,
                ..SyncResult::default()
            }),
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        let now = self.now_ms();
        match self.groups.borrow_mut().get_mut(group_id) {
            Some(entry) => entry
                .group
                .heartbeat(now, member_id, group_instance_id, generation_id),
            None => code::UNKNOWN_MEMBER_ID,
        }
    }

    /// LeaveGroup for each (member id, instance id); returns each member's error code.
    pub fn leave(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<i16> {
        let now = self.now_ms();
        let mut done = Completions::default();
        let codes = match self.groups.borrow_mut().get_mut(group_id) {
            Some(entry) => members
                .iter()
                .map(|(member_id, instance)| {
                    entry
                        .group
                        .leave(now, member_id, instance.as_deref(), &mut done)
                })
                .collect(),
            None => vec![code::UNKNOWN_MEMBER_ID; members.len()],
        };
        self.deliver(shard, group_id, done);
        codes
    }

    /// Answers waiting requests and persists group metadata when the state machine asks.
    fn deliver(&self, shard: &Rc<Shard>, group_id: &str, done: Completions) {
        let mut slots = self.slots.borrow_mut();
        for (waiter, result) in done.joins {
            if let Some(Slot::Join(sender)) = slots.remove(&waiter) {
                sender.send(result);
            }
        }
        for (waiter, result) in done.syncs {
            if let Some(Slot::Sync(sender)) = slots.remove(&waiter) {
                sender.send(result);
            }
        }
        drop(slots);
        if done.persist {
            let record = self.groups.borrow().get(group_id).map(|entry| {
                let group = &entry.group;
                offsets_topic::group_record(
                    group_id,
                    Some((
                        group.protocol_type().unwrap_or(""),
                        group.generation_id(),
                        group.protocol_name(),
                        wall_clock_ms(),
                    )),
                )
            });
            if let Some(record) = record {
                self.append_in_background(shard, group_id, vec![record], "group metadata");
            }
        }
    }

    /// OffsetCommit: checks membership, then makes the offsets durable in
    /// `__consumer_offsets`. Returns one error code for the whole request, or per-partition
    /// codes in request order.
    pub async fn commit(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        member: (&str, Option<&str>, i32),
        version: i16,
        offsets: Vec<(String, i32, OffsetValue)>,
    ) -> Result<Vec<i16>, i16> {
        self.check_committer(group_id, member, version)?;
        let codes = metadata_codes(&offsets);
        let accepted: Vec<&(String, i32, OffsetValue)> = offsets
            .iter()
            .zip(&codes)
            .filter(|(_, code)| **code == code::NONE)
            .map(|(offset, _)| offset)
            .collect();
        let records = accepted
            .iter()
            .map(|(topic, partition, value)| {
                offsets_topic::offset_record(group_id, topic, *partition, Some(value))
            })
            .collect();
        self.append(shard, group_id, records).await?;
        self.with_group(group_id, |entry| {
            for (topic, partition, value) in accepted {
                entry
                    .offsets
                    .insert((topic.clone(), *partition), value.clone());
            }
        });
        Ok(codes)
    }

    /// The membership check of a commit (OffsetCommit, TxnOffsetCommit): the member's
    /// generation (classic) or epoch (KIP-848) must be current; a refused new group is not
    /// kept.
    pub(super) fn check_committer(
        &self,
        group_id: &str,
        member: (&str, Option<&str>, i32),
        version: i16,
    ) -> Result<(), i16> {
        let (member_id, group_instance_id, generation_id) = member;
        let now = self.now_ms();
        let check = self.with_group(group_id, |entry| match &entry.consumer {
            Some(consumer) => consumer.check_commit(member_id, generation_id, version),
            None => entry
                .group
                .check_commit(now, member_id, group_instance_id, generation_id),
        });
        if check != code::NONE {
            self.forget_if_unused(group_id);
            return Err(check);
        }
        Ok(())
    }

    /// Committed offsets of a group: the named partitions, or all of them.
    pub fn committed(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> CommittedByTopic {
        let groups = self.groups.borrow();
        let offsets = groups.get(group_id).map(|entry| &entry.offsets);
        match topics {
            Some(topics) => topics
                .iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .iter()
                        .map(|partition| {
                            (
                                *partition,
                                offsets.and_then(|offsets| {
                                    offsets.get(&(topic.clone(), *partition)).cloned()
                                }),
                            )
                        })
                        .collect();
                    (topic.clone(), found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> =
                    BTreeMap::new();
                for ((topic, partition), value) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*partition, Some(value.clone())));
                }
                by_topic.into_iter().collect()
            }
        }
    }

    /// Every committed offset of the groups this shard coordinates: (group, topic,
    /// partition, offset), for the lag gauge (`groups::lag`).
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        self.groups
            .borrow()
            .iter()
            .flat_map(|(group_id, entry)| {
                entry
                    .offsets
                    .iter()
                    .map(move |((topic, partition), value)| {
                        (group_id.clone(), topic.clone(), *partition, value.offset)
                    })
            })
            .collect()
    }

    /// Every group this shard coordinates (ListGroups).
    pub fn list(&self) -> Vec<GroupSummary> {
        self.groups
            .borrow()
            .keys()
            .filter_map(|group_id| self.describe(group_id))
            .collect()
    }

    /// One group, or `None` if this shard has never heard of it.
    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        let groups = self.groups.borrow();
        let entry = groups.get(group_id)?;
        if let Some(consumer) = &entry.consumer {
            return Some(GroupSummary {
                group_id: group_id.to_string(),
                state: consumer.state(),
                protocol_type: "consumer".to_string(),
                protocol_name: String::new(),
                group_type: "consumer",
                members: Vec::new(),
            });
        }
        let group = &entry.group;
        Some(GroupSummary {
            group_id: group_id.to_string(),
            state: group.state().name(),
            protocol_type: group.protocol_type().unwrap_or("").to_string(),
            protocol_name: if group.state() == GroupState::Stable
                || group.state() == GroupState::CompletingRebalance
            {
                group.protocol_name().unwrap_or("").to_string()
            } else {
                String::new()
            },
            group_type: "classic",
            members: group.members().cloned().collect(),
        })
    }

    /// DeleteGroups: only an empty group can go; its offsets go with it (tombstones).
    pub async fn delete(&self, shard: &Rc<Shard>, group_id: &str) -> i16 {
        let offsets: Vec<(String, i32)> = {
            let groups = self.groups.borrow();
            let Some(entry) = groups.get(group_id) else {
                return GROUP_ID_NOT_FOUND;
            };
            if !entry.group.is_empty() || entry.consumer.as_ref().is_some_and(|c| !c.is_empty()) {
                return NON_EMPTY_GROUP;
            }
            entry.offsets.keys().cloned().collect()
        };
        let was_consumer = self
            .groups
            .borrow()
            .get(group_id)
            .is_some_and(|entry| entry.consumer.is_some());
        let mut records: Vec<(Bytes, Option<Bytes>)> = offsets
            .iter()
            .map(|(topic, partition)| {
                offsets_topic::offset_record(group_id, topic, *partition, None)
            })
            .collect();
        records.push(offsets_topic::group_record(group_id, None));
        if was_consumer {
            records.push(offsets_topic::consumer_group_record(group_id, None));
        }
        if let Err(error_code) = self.append(shard, group_id, records).await {
            return error_code;
        }
        self.groups.borrow_mut().remove(group_id);
        code::NONE
    }

    /// OffsetDelete: removes committed offsets of partitions the group does not consume.
    pub async fn delete_offsets(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        let subscribed = {
            let groups = self.groups.borrow();
            let Some(entry) = groups.get(group_id) else {
                return Err(GROUP_ID_NOT_FOUND);
            };
            let mut topics = subscribed_topics(&entry.group);
            if let Some(consumer) = &entry.consumer {
                topics.extend(
                    partitions
                        .iter()
                        .filter(|(topic, _)| consumer.subscribes_to(topic))
                        .map(|(topic, _)| topic.clone()),
                );
            }
            topics
        };
        let codes: Vec<i16> = partitions
            .iter()
            .map(|(topic, _)| {
                if subscribed.contains(topic) {
                    GROUP_SUBSCRIBED_TO_TOPIC
                } else {
                    code::NONE
                }
            })
            .collect();
        let doomed: Vec<&(String, i32)> = partitions
            .iter()
            .zip(&codes)
            .filter(|(_, code)| **code == code::NONE)
            .map(|(partition, _)| partition)
            .collect();
        let records = doomed
            .iter()
            .map(|(topic, partition)| {
                offsets_topic::offset_record(group_id, topic, *partition, None)
            })
            .collect();
        self.append(shard, group_id, records).await?;
        if let Some(entry) = self.groups.borrow_mut().get_mut(group_id) {
            for (topic, partition) in doomed {
                entry.offsets.remove(&(topic.clone(), *partition));
            }
        }
        Ok(codes)
    }

    /// Expires members and rebalances (every group), forgets groups with nothing left, and
    /// expires offsets of empty groups after `offsets.retention.minutes`.
    pub fn tick(&self, shard: &Rc<Shard>) {
        let now = self.now_ms();
        let group_ids: Vec<String> = self.groups.borrow().keys().cloned().collect();
        for group_id in group_ids {
            let done = match self.groups.borrow_mut().get_mut(&group_id) {
                Some(entry) => entry.group.tick(now),
                None => continue,
            };
            self.deliver(shard, &group_id, done);
            self.tick_consumer_group(shard, &group_id, now);
            self.expire_offsets(shard, &group_id);
        }
    }

    fn expire_offsets(&self, shard: &Rc<Shard>, group_id: &str) {
        let cutoff = wall_clock_ms() - self.offsets_retention_ms;
        let expired: Vec<(String, i32)> = {
            let mut groups = self.groups.borrow_mut();
            let Some(entry) = groups.get_mut(group_id) else {
                return;
            };
            if !entry.group.is_empty() || entry.consumer.as_ref().is_some_and(|c| !c.is_empty()) {
                return;
            }
            let expired: Vec<(String, i32)> = entry
                .offsets
                .iter()
                .filter(|(_, value)| value.commit_timestamp_ms < cutoff)
                .map(|(key, _)| key.clone())
                .collect();
            for key in &expired {
                entry.offsets.remove(key);
            }
            expired
        };
        self.forget_if_unused(group_id);
        if expired.is_empty() {
            return;
        }
        let records = expired
            .iter()
            .map(|(topic, partition)| {
                offsets_topic::offset_record(group_id, topic, *partition, None)
            })
            .collect();
        self.append_in_background(shard, group_id, records, "expired-offset tombstones");
    }

    /// Appends records in their own task (a timer's or a state machine's writes, which no
    /// request waits for); a failure is logged.
    fn append_in_background(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
        what: &'static str,
    ) {
        let shard = shard.clone();
        let group_id = group_id.to_string();
        glommio::spawn_local(async move {
            if let Err(error_code) = shard.groups.append(&shard, &group_id, records).await {
                tracing::warn!(group = %group_id, error_code, "cannot write the {what}");
            }
        })
        .detach();
    }

    /// Drops a group with no members and no offsets (a new group whose first request failed,
    /// or one whose offsets expired).
    fn forget_if_unused(&self, group_id: &str) {
        let mut groups = self.groups.borrow_mut();
        // A consumer group that ever had an epoch stays while empty (see
        // `coordinator_consumer`); one whose first join was refused goes.
        if groups.get(group_id).is_some_and(|entry| {
            entry.group.is_empty()
                && entry.offsets.is_empty()
                && entry.pending_txn.is_empty()
                && entry.group.state() == GroupState::Empty
                && entry
                    .consumer
                    .as_ref()
                    .is_none_or(|consumer| consumer.is_empty() && consumer.group_epoch() == 0)
        }) {
            groups.remove(group_id);
        }
    }

    /// Appends records to the group's `__consumer_offsets` partition and waits until they
    /// are durable.
    async fn append(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<(), i16> {
        if records.is_empty() {
            return Ok(());
        }
        let partition = self.partition_for(group_id);
        append_internal(shard, offsets_topic::TOPIC, partition, |_| {
            encode_batch(&records, None)
        })
        .await
    }
}

/// Appends a batch the coordinator makes (`encode`, given the leader, so that a
/// transactional batch can take the producer's next sequence there) to partition `partition`
/// of an internal topic (`__consumer_offsets`, `__transaction_state`) on the leader here,
/// and waits until it is on every in-sync replica, as Kafka's coordinators write with
/// acks=all. Errors are the codes the coordinator answers (see [`offsets_write_error`]).
pub(crate) async fn append_internal(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    encode: impl FnOnce(&crate::partition::Partition) -> anyhow::Result<BytesMut>,
) -> Result<(), i16> {
    let leader = shard
        .partitions
        .leader(topic, partition, -1)
        .await
        .map_err(|error| {
            tracing::error!(%topic, %error, "cannot open an internal topic's partition");
            offsets_write_error(&error)
        })?;
    // Written with acks=all: refused up front, as Kafka does, while the ISR is smaller
    // than min.insync.replicas.
    leader
        .check_enough_replicas()
        .map_err(|error| offsets_write_error(&error))?;
    // Encoded and appended with no await between: a transactional batch's sequence is the
    // one the log expects next.
    let batch = encode(&leader).map_err(|_| code::COORDINATOR_NOT_AVAILABLE)?;
    let appended = leader
        .append(crate::partition::ProducedBatch::InRequest(&batch))
        .map_err(|error| {
            tracing::error!(%topic, %error, "cannot append to an internal topic");
            offsets_write_error(&error)
        })?;
    leader
        .wait_acknowledged(
            &appended,
            crate::partition::Acks::All,
            std::time::Instant::now() + COMMIT_TIMEOUT,
        )
        .await
        .map_err(|error| {
            tracing::error!(%topic, %error, "cannot make an internal topic's write durable");
            offsets_write_error(&error)
        })
}

/// Per offset of a commit, OFFSET_METADATA_TOO_LARGE for metadata over
/// `offset.metadata.max.bytes`, else NONE (to write).
pub(super) fn metadata_codes(offsets: &[(String, i32, OffsetValue)]) -> Vec<i16> {
    offsets
        .iter()
        .map(|(_, _, value)| {
            if value.metadata.len() > OFFSET_METADATA_MAX_BYTES {
                OFFSET_METADATA_TOO_LARGE
            } else {
                code::NONE
            }
        })
        .collect()
}

/// The code a group request gets when its `__consumer_offsets` write failed, as Kafka's group
/// coordinator maps them: a storage error or a moved partition sends the client to find the
/// coordinator again (NOT_COORDINATOR), anything else is COORDINATOR_NOT_AVAILABLE. Both are
/// retriable; the commit changed nothing.
fn offsets_write_error(error: &crate::partition::PartitionError) -> i16 {
    use crate::partition::PartitionError;
    use kafka_protocol::ResponseError;
    match error {
        PartitionError::NotLeaderOrFollower | PartitionError::Storage(_) => {
            ResponseError::NotCoordinator.code()
        }
        _ => code::COORDINATOR_NOT_AVAILABLE,
    }
}

/// Topics a consumer group's members subscribe to, from their ConsumerProtocolSubscription
/// metadata (`version: i16, topics: [string], ...`, never flexible).
fn subscribed_topics(group: &Group) -> Vec<String> {
    if group.protocol_type() != Some("consumer") {
        return Vec::new();
    }
    let protocol = group.protocol_name().unwrap_or_default().to_string();
    let mut topics = Vec::new();
    for member in group.members() {
        let metadata = member.metadata_for(&protocol);
        let mut bytes: &[u8] = &metadata;
        if bytes.len() < 6 {
            continue;
        }
        bytes = &bytes[2..];
        let count = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        bytes = &bytes[4..];
        for _ in 0..count.max(0) {
            if bytes.len() < 2 {
                break;
            }
            let length = i16::from_be_bytes([bytes[0], bytes[1]]).max(0) as usize;
            if bytes.len() < 2 + length {
                break;
            }
            topics.push(String::from_utf8_lossy(&bytes[2..2 + length]).into_owned());
            bytes = &bytes[2 + length..];
        }
    }
    topics
}

/// One v2 batch holding the records (no compression); without a producer id, or transactional
/// for `(producer id, epoch, base sequence)`.
pub(crate) fn encode_batch(
    records: &[(Bytes, Option<Bytes>)],
    producer: Option<(i64, i16, i32)>,
) -> anyhow::Result<BytesMut> {
    let timestamp = wall_clock_ms();
    let records: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(index, (key, value))| {
            let mut record = plain_record(index, Some(key.clone()), value.clone(), timestamp);
            if let Some((producer_id, epoch, base_sequence)) = producer {
                record.producer_id = producer_id;
                record.producer_epoch = epoch;
                // Sequences wrap past i32::MAX to 0, as Kafka's do.
                record.sequence =
                    ((i64::from(base_sequence) + index as i64) % (i64::from(i32::MAX) + 1)) as i32;
                record.transactional = true;
            }
            record
        })
        .collect();
    spate_net::records::encode_batch(&records, Compression::None)
}

fn wall_clock_ms() -> i64 {
    spate_net::records::now_ms()
}

#[path = "coordinator_loading.rs"]
mod loading;

#[path = "coordinator_consumer.rs"]
mod consumer;

#[path = "coordinator_txn.rs"]
mod txn;
