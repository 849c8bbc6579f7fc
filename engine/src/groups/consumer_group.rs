//! One KIP-848 consumer group (`group.protocol=consumer`): Kafka 4's `ConsumerGroup` and the
//! heartbeat rules of its `GroupMetadataManager`, free of I/O and clocks like the classic
//! [`super::group::Group`].
//!
//! The coordinator, not a member, assigns. Each ConsumerGroupHeartbeat carries the member's
//! subscription (only what changed) and the partitions it owns; the answer carries its
//! member epoch and, when it changed, its assignment. Three epochs drive it:
//! - the **group epoch** rises whenever what the assignment depends on changes (a member
//!   joins, leaves or changes its subscription; a subscribed topic gains partitions, appears
//!   or goes);
//! - the **assignment epoch** is the group epoch the target assignment was computed for (the
//!   assignor runs in the heartbeat that finds it behind);
//! - each **member epoch** reaches the assignment epoch once the member has reconciled:
//!   [`reconcile`] revokes first (a member keeps its epoch and gets nothing new while it must
//!   give partitions up), and hands out a partition only once its previous owner released it.
//!
//! Members time out after `session_timeout_ms` without a heartbeat, and after their rebalance
//! timeout when they keep partitions they were asked to revoke; either fences them (removes
//! them and bumps the group epoch). What is not here yet: regular-expression subscriptions
//! resolved asynchronously (they are resolved at each heartbeat against the image), classic
//! members inside a consumer group and the online upgrade of a non-empty classic group, and
//! persistence of members (only the group epoch is written, so a moved coordinator starts
//! the group empty at its epoch and members rejoin, as classic groups do here).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::assignor::{self, Assignment, MemberSpec};
use super::types::code;

/// Coordinator settings for consumer groups (Kafka's `group.consumer.*`).
#[derive(Clone, Debug)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub max_size: usize,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: usize::MAX,
        }
    }
}

/// A member's reconciliation state (Kafka's `MemberState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// At its target, or on its way with nothing to give up.
    Stable,
    /// Must give up partitions before it gets anything new.
    UnrevokedPartitions,
    /// At the new epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

/// One member of a consumer group.
#[derive(Clone, Debug)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: BTreeSet<String>,
    pub subscribed_topic_regex: Option<String>,
    /// `subscribed_topic_regex` compiled, once, when it is set.
    matcher: Option<regex::Regex>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// -2 after a static member's temporary leave.
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    /// What the member may consume now.
    pub assigned: Assignment,
    /// What it must give up (still counted as its own until it does).
    pub pending_revocation: Assignment,
    session_deadline_ms: u64,
    rebalance_deadline_ms: Option<u64>,
}

impl ConsumerMember {
    fn new(member_id: String) -> ConsumerMember {
        ConsumerMember {
            member_id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            matcher: None,
            server_assignor: None,
            rebalance_timeout_ms: -1,
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline_ms: 0,
            rebalance_deadline_ms: None,
        }
    }

    fn is_reconciled_to(&self, epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == epoch
    }
}

/// A topic as the group sees it: (id, partition count), by name.
pub type TopicsView = BTreeMap<String, (Uuid, i32)>;

/// A ConsumerGroupHeartbeat as the state machine sees it; `None` fields are unchanged.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat {
    /// The request's version (v1+: the member id is the client's).
    pub version: i16,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

/// A successful heartbeat's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct HeartbeatAnswer {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's whole assignment, when the member needs it.
    pub assignment: Option<Assignment>,
}

/// A refused heartbeat: Kafka's error code and message.
pub type Refusal = (i16, String);

fn refuse(code: i16, message: impl Into<String>) -> Refusal {
    (code, message.into())
}

/// A consumer group; see the module docs.
#[derive(Clone, Debug)]
pub struct ConsumerGroup {
    pub group_id: String,
    config: ConsumerGroupConfig,
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    /// The target assignment, by member.
    target: BTreeMap<String, Assignment>,
    /// The subscribed topics as of the last epoch bump: a change bumps again.
    subscribed_topics: TopicsView,
    /// The highest group epoch known durable in `__consumer_offsets`: an answer carrying a
    /// higher one waits until it is (see `coordinator_consumer`).
    persisted_epoch: i32,
}

impl ConsumerGroup {
    /// An empty group at `group_epoch` (0 for a new one, the persisted epoch after a load).
    pub fn new(group_id: &str, config: ConsumerGroupConfig, group_epoch: i32) -> ConsumerGroup {
        ConsumerGroup {
            group_id: group_id.to_string(),
            config,
            group_epoch,
            assignment_epoch: group_epoch,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed_topics: TopicsView::new(),
            persisted_epoch: group_epoch,
        }
    }

    /// The highest group epoch known durable.
    pub fn persisted_epoch(&self) -> i32 {
        self.persisted_epoch
    }

    /// Records that `epoch` is durable.
    pub fn mark_persisted(&mut self, epoch: i32) {
        self.persisted_epoch = self.persisted_epoch.max(epoch);
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn members(&self) -> impl Iterator<Item = &ConsumerMember> {
        self.members.values()
    }

    /// A member's target assignment.
    pub fn target_of(&self, member_id: &str) -> Option<&Assignment> {
        self.target.get(member_id)
    }

    /// Kafka's state name: Empty, Assigning, Reconciling or Stable.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|member| !member.is_reconciled_to(self.assignment_epoch))
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor the most members name (the first of [`assignor::ASSIGNORS`] if none).
    pub fn assignor_name(&self) -> &'static str {
        let mut votes: BTreeMap<&'static str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = &member.server_assignor {
                if let Some(known) = assignor::ASSIGNORS.iter().find(|known| *known == name) {
                    *votes.entry(known).or_default() += 1;
                }
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, count)| (*count, std::cmp::Reverse(*name)))
            .map_or(assignor::ASSIGNORS[0], |(name, _)| name)
    }

    /// Handles a heartbeat (joins and leaves included). `Ok((answer, epoch_changed))`: when
    /// the group epoch changed, the coordinator persists it.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        request: Heartbeat,
        topics: &TopicsView,
    ) -> Result<(HeartbeatAnswer, bool), Refusal> {
        let matcher = validate(&request)?;
        let epoch_before = self.group_epoch;
        if request.member_epoch == -1 || request.member_epoch == -2 {
            let answer = self.leave(&request)?;
            return Ok((answer, self.group_epoch != epoch_before));
        }
        let known_before = self.members.len();
        let member_id = self.member_for(&request)?;
        // A member that was not there before (a static member taking over its instance's
        // place is not new: it keeps its subscription and target, and nobody rebalances).
        let new_member = self.members.len() > known_before;
        let member = self.members.get_mut(&member_id).expect("looked up");
        // The subscription: only what the request sets.
        let mut subscription_changed = false;
        if let Some(names) = &request.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != member.subscribed_topic_names {
                member.subscribed_topic_names = names;
                subscription_changed = true;
            }
        }
        if let Some(regex) = &request.subscribed_topic_regex {
            let regex = (!regex.is_empty()).then(|| regex.clone());
            if regex != member.subscribed_topic_regex {
                member.matcher = matcher;
                member.subscribed_topic_regex = regex;
                subscription_changed = true;
            }
        }
        if request.instance_id.is_some() {
            member.instance_id = request.instance_id.clone();
        }
        if request.rack_id.is_some() {
            member.rack_id = request.rack_id.clone();
        }
        if request.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if request.server_assignor.is_some() {
            member.server_assignor = request.server_assignor.clone();
        }
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_deadline_ms = now_ms + self.config.session_timeout_ms;
        let joining = request.member_epoch == 0;

        // The epoch: a new group, a changed subscription, or changed topics.
        let subscribed_topics = self.subscribed_topics(topics);
        if self.group_epoch == 0
            || new_member
            || subscription_changed
            || subscribed_topics != self.subscribed_topics
        {
            self.group_epoch += 1;
            self.subscribed_topics = subscribed_topics;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(topics);
        }

        let member = &self.members[&member_id];
        let assigned_before = member.assigned.clone();
        if subscription_changed || !member.is_reconciled_to(self.assignment_epoch) {
            let owners = self.owners();
            let target = self.target.get(&member_id).cloned().unwrap_or_default();
            let subscribed = member_topic_ids(member, topics);
            let member = self.members.get_mut(&member_id).expect("looked up");
            let revoking_before = member.pending_revocation.clone();
            reconcile(
                member,
                self.assignment_epoch,
                &target,
                request.owned.as_ref(),
                &owners,
                &subscribed,
            );
            // The rebalance timeout runs from the heartbeat that asked for the revocation.
            if member.state != MemberState::UnrevokedPartitions {
                member.rebalance_deadline_ms = None;
            } else if member.rebalance_deadline_ms.is_none()
                || member.pending_revocation != revoking_before
            {
                member.rebalance_deadline_ms =
                    Some(now_ms + member.rebalance_timeout_ms.max(0) as u64);
            }
        }
        let member = &self.members[&member_id];
        let full_request = request.rebalance_timeout_ms != -1
            && (request.subscribed_topic_names.is_some()
                || request.subscribed_topic_regex.is_some())
            && request.owned.is_some();
        let assignment = (joining || full_request || member.assigned != assigned_before)
            .then(|| member.assigned.clone());
        Ok((
            HeartbeatAnswer {
                member_id,
                member_epoch: member.member_epoch,
                heartbeat_interval_ms: self.config.heartbeat_interval_ms,
                assignment,
            },
            self.group_epoch != epoch_before,
        ))
    }

    /// Fences members whose session or rebalance timed out; true if any was.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| {
                member.session_deadline_ms <= now_ms
                    || member
                        .rebalance_deadline_ms
                        .is_some_and(|deadline| deadline <= now_ms)
            })
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in &expired {
            tracing::info!(group = %self.group_id, member = %member_id, "consumer group member timed out: fenced");
            self.fence(member_id);
        }
        !expired.is_empty()
    }

    /// OffsetCommit's check (v9+: the member epoch in the generation field): a code.
    pub fn check_commit(&self, member_id: &str, member_epoch: i32, version: i16) -> i16 {
        if member_epoch < 0 && self.members.is_empty() {
            return code::NONE;
        }
        let Some(member) = self.members.get(member_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        if version < 9 {
            return code::UNSUPPORTED_VERSION;
        }
        if member_epoch != member.member_epoch {
            return code::STALE_MEMBER_EPOCH;
        }
        code::NONE
    }

    /// OffsetFetch v9's check: no member named is an admin's fetch.
    pub fn check_fetch(&self, member_id: Option<&str>, member_epoch: i32) -> i16 {
        if member_id.is_none() && member_epoch < 0 {
            return code::NONE;
        }
        let member_id = member_id.unwrap_or_default();
        match self.members.get(member_id) {
            None => code::UNKNOWN_MEMBER_ID,
            Some(member) if member.member_epoch != member_epoch => code::STALE_MEMBER_EPOCH,
            Some(_) => code::NONE,
        }
    }

    /// Whether any member subscribes to `topic` (OffsetDelete refuses those).
    pub fn subscribes_to(&self, topic: &str) -> bool {
        self.subscribed_topics.contains_key(topic)
    }

    /// The member a heartbeat at epoch ≥ 0 is for, created on a join.
    fn member_for(&mut self, request: &Heartbeat) -> Result<String, Refusal> {
        let known = self.members.contains_key(&request.member_id);
        if let Some(instance) = &request.instance_id {
            let holder = self
                .members
                .values()
                .find(|member| member.instance_id.as_deref() == Some(instance))
                .map(|member| (member.member_id.clone(), member.member_epoch));
            if request.member_epoch == 0 {
                match holder {
                    Some((holder, _)) if holder == request.member_id => {
                        self.rejoin(&holder);
                        return Ok(holder);
                    }
                    Some((_, epoch)) if epoch != -2 => {
                        return Err(refuse(
                            code::UNRELEASED_INSTANCE_ID,
                            format!(
                                "Static member with instance id {instance} is not released yet."
                            ),
                        ))
                    }
                    Some((holder, _)) => {
                        // The instance comes back under a new member id: it takes over the
                        // old member, its target and its partitions; an id another member
                        // has is refused rather than overwriting that member.
                        if known {
                            return Err(refuse(
                                code::INVALID_REQUEST,
                                format!("MemberId {} is already in use.", request.member_id),
                            ));
                        }
                        let mut member = self.members.remove(&holder).expect("found");
                        let target = self.target.remove(&holder);
                        member.member_id = self.new_member_id(request);
                        member.member_epoch = 0;
                        member.previous_member_epoch = 0;
                        let id = member.member_id.clone();
                        if let Some(target) = target {
                            self.target.insert(id.clone(), target);
                        }
                        self.members.insert(id.clone(), member);
                        return Ok(id);
                    }
                    None => {}
                }
            } else {
                match holder {
                    None => {
                        return Err(refuse(
                            code::UNKNOWN_MEMBER_ID,
                            format!("Instance id {instance} is unknown."),
                        ))
                    }
                    Some((holder, _)) if holder != request.member_id => {
                        return Err(refuse(
                            code::FENCED_INSTANCE_ID,
                            format!("Instance id {instance} belongs to another member."),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        if request.member_epoch == 0 {
            if known {
                self.rejoin(&request.member_id);
                return Ok(request.member_id.clone());
            }
            if self.members.len() >= self.config.max_size {
                return Err(refuse(
                    code::GROUP_MAX_SIZE_REACHED,
                    format!(
                        "The consumer group has reached its maximum capacity of {} members.",
                        self.config.max_size
                    ),
                ));
            }
            let id = self.new_member_id(request);
            self.members
                .insert(id.clone(), ConsumerMember::new(id.clone()));
            return Ok(id);
        }
        let Some(member) = self.members.get(&request.member_id) else {
            return Err(refuse(
                code::UNKNOWN_MEMBER_ID,
                format!(
                    "Member {} is not a member of group {}.",
                    request.member_id, self.group_id
                ),
            ));
        };
        let received = request.member_epoch;
        let fenced = || {
            refuse(
                code::FENCED_MEMBER_EPOCH,
                format!(
                    "The member epoch {received} is not the current {}.",
                    member.member_epoch
                ),
            )
        };
        if received > member.member_epoch {
            return Err(fenced());
        }
        if received < member.member_epoch {
            // The answer that moved the member on may have been lost: its previous epoch is
            // fine as long as it owns nothing it was not given.
            let owned_within = request.owned.as_ref().is_some_and(|owned| {
                owned.iter().all(|(topic, partitions)| {
                    partitions.is_empty()
                        || member
                            .assigned
                            .get(topic)
                            .is_some_and(|assigned| partitions.is_subset(assigned))
                })
            });
            if received != member.previous_member_epoch || !owned_within {
                return Err(fenced());
            }
        }
        Ok(request.member_id.clone())
    }

    /// A known member rejoining with epoch 0: it owns nothing any more (Kafka trunk's
    /// KAFKA-19233: a client keeps its member id when it rejoins after being fenced).
    fn rejoin(&mut self, member_id: &str) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.member_epoch = 0;
            member.previous_member_epoch = 0;
            member.state = MemberState::Stable;
            member.assigned.clear();
            member.pending_revocation.clear();
            member.rebalance_deadline_ms = None;
        }
    }

    fn new_member_id(&self, request: &Heartbeat) -> String {
        if request.member_id.is_empty() {
            Uuid::new_v4().simple().to_string()
        } else {
            request.member_id.clone()
        }
    }

    /// A leave (epoch -1) or a static member's temporary leave (-2).
    fn leave(&mut self, request: &Heartbeat) -> Result<HeartbeatAnswer, Refusal> {
        let member_id = match &request.instance_id {
            Some(instance) => {
                let holder = self
                    .members
                    .values()
                    .find(|member| member.instance_id.as_deref() == Some(instance))
                    .map(|member| member.member_id.clone());
                match holder {
                    None => {
                        return Err(refuse(
                            code::UNKNOWN_MEMBER_ID,
                            format!("Instance id {instance} is unknown."),
                        ))
                    }
                    Some(holder) if holder != request.member_id => {
                        return Err(refuse(
                            code::FENCED_INSTANCE_ID,
                            format!("Instance id {instance} belongs to another member."),
                        ))
                    }
                    Some(holder) => holder,
                }
            }
            None if self.members.contains_key(&request.member_id) => request.member_id.clone(),
            None => {
                return Err(refuse(
                    code::UNKNOWN_MEMBER_ID,
                    format!(
                        "Member {} is not a member of group {}.",
                        request.member_id, self.group_id
                    ),
                ))
            }
        };
        if request.member_epoch == -2 {
            // It keeps its partitions, so that nobody else takes them, until it rejoins under
            // its instance id or its session runs out.
            let member = self.members.get_mut(&member_id).expect("found");
            member.member_epoch = -2;
            member.pending_revocation.clear();
            member.rebalance_deadline_ms = None;
        } else {
            self.fence(&member_id);
        }
        Ok(HeartbeatAnswer {
            member_id,
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Removes a member; the group epoch rises (the target is recomputed at the next
    /// heartbeat, the group Assigning until then).
    fn fence(&mut self, member_id: &str) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.group_epoch += 1;
            // The topics only the member subscribed to go now, so that the next heartbeat
            // does not bump the epoch a second time for the same departure.
            let members = &self.members;
            self.subscribed_topics.retain(|name, _| {
                members.values().any(|member| {
                    member.subscribed_topic_names.contains(name)
                        || member
                            .matcher
                            .as_ref()
                            .is_some_and(|regex| regex.is_match(name))
                })
            });
        }
    }

    /// The topics the members subscribe to that exist, with their ids and partition counts.
    fn subscribed_topics(&self, topics: &TopicsView) -> TopicsView {
        let mut subscribed = TopicsView::new();
        for member in self.members.values() {
            for name in &member.subscribed_topic_names {
                if let Some(topic) = topics.get(name) {
                    subscribed.insert(name.clone(), *topic);
                }
            }
            if let Some(regex) = &member.matcher {
                for (name, topic) in topics {
                    if regex.is_match(name) {
                        subscribed.insert(name.clone(), *topic);
                    }
                }
            }
        }
        subscribed
    }

    /// Runs the assignor over every member: the new target, at the group epoch.
    fn compute_target(&mut self, topics: &TopicsView) {
        let partition_counts: BTreeMap<Uuid, i32> = self
            .subscribed_topics
            .values()
            .map(|(id, partitions)| (*id, *partitions))
            .collect();
        let empty = Assignment::new();
        let specs: Vec<MemberSpec<'_>> = self
            .members
            .values()
            .map(|member| MemberSpec {
                member_id: &member.member_id,
                instance_id: member.instance_id.as_deref(),
                subscribed: member_topic_ids(member, topics),
                target: self.target.get(&member.member_id).unwrap_or(&empty),
            })
            .collect();
        let target = assignor::assign(self.assignor_name(), &specs, &partition_counts);
        self.target = target;
        self.assignment_epoch = self.group_epoch;
    }

    /// Who holds each partition now (assigned or still to revoke).
    fn owners(&self) -> BTreeMap<(Uuid, i32), String> {
        let mut owners = BTreeMap::new();
        for member in self.members.values() {
            for assignment in [&member.assigned, &member.pending_revocation] {
                for (topic, partitions) in assignment {
                    for partition in partitions {
                        owners.insert((*topic, *partition), member.member_id.clone());
                    }
                }
            }
        }
        owners
    }
}

// Kafka's request checks and the subscription regexes.
#[path = "consumer_group_checks.rs"]
mod checks;
use checks::{member_topic_ids, validate};

// Kafka's CurrentAssignmentBuilder: one member's step toward its target.
#[path = "consumer_group_reconcile.rs"]
mod reconcile;
use reconcile::reconcile;

#[cfg(test)]
#[path = "consumer_group_tests.rs"]
mod tests;
