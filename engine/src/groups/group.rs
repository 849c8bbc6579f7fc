//! One consumer group's classic-protocol state machine (Kafka's `GroupMetadata` plus the
//! join/sync/heartbeat rules of its `GroupCoordinator`), free of I/O and clocks.
//!
//! Every method takes the current time in milliseconds, so tests drive timers with a fake
//! clock. A request that must wait (a JoinGroup held until the rebalance completes, a
//! follower's SyncGroup held until the leader sends assignments) leaves a [`Waiter`] token
//! in the group; the answers for waiters come back from later calls as [`Completions`],
//! which the shard's coordinator delivers.
//!
//! States: Empty → PreparingRebalance → CompletingRebalance → Stable, and back to
//! PreparingRebalance on any membership change. A deleted group is simply removed.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

pub use super::types::{
    code, Completions, GroupConfig, GroupState, JoinRequest, JoinResult, Member, Reply,
    SyncRequest, SyncResult, Waiter,
};

/// A consumer group on its coordinator shard. See the module docs.
#[derive(Debug)]
pub struct Group {
    /// The group id.
    pub group_id: String,
    config: GroupConfig,
    state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    pending_members: HashMap<String, u64>,
    static_members: HashMap<String, String>,
    rebalance_deadline_ms: u64,
    /// A new group waits `initial_rebalance_delay_ms`, extended while members keep coming,
    /// but never past the rebalance deadline.
    initial_delay_until_ms: u64,
    /// When the leader's SyncGroup is overdue in CompletingRebalance.
    sync_deadline_ms: u64,
    next_join_order: u64,
}

impl Group {
    /// An empty group.
    pub fn new(group_id: &str, config: GroupConfig) -> Group {
        Group {
            group_id: group_id.to_string(),
            config,
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: 0,
            sync_deadline_ms: 0,
            next_join_order: 0,
        }
    }

    /// An empty group restored from `__consumer_offsets` at this generation.
    pub fn restored(
        group_id: &str,
        config: GroupConfig,
        generation_id: i32,
        protocol_type: Option<String>,
    ) -> Group {
        Group {
            generation_id,
            protocol_type,
            ..Group::new(group_id, config)
        }
    }

    /// Current state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// Current generation.
    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    /// Protocol type ("consumer"), if any member ever joined.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The chosen protocol, once a rebalance completed.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    /// The leader's member id.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Members, ordered by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Handles a JoinGroup. `waiter` is kept if the answer must wait.
    pub fn join(
        &mut self,
        now_ms: u64,
        request: JoinRequest,
        waiter: Waiter,
    ) -> (Reply<JoinResult>, Completions) {
        let mut done = Completions::default();
        let timeouts = self.config.min_session_timeout_ms..=self.config.max_session_timeout_ms;
        if !timeouts.contains(&request.session_timeout_ms) {
            return (
                Reply::Now(error_join(
                    code::INVALID_SESSION_TIMEOUT,
                    &request.member_id,
                )),
                done,
            );
        }
        if !self.supports(&request) {
            return (
                Reply::Now(error_join(
                    code::INCONSISTENT_GROUP_PROTOCOL,
                    &request.member_id,
                )),
                done,
            );
        }
        let mut replaced_static = None;
        let member_id = if request.member_id.is_empty() {
            match self.new_member_id(now_ms, &request, &mut done) {
                Ok((member_id, replaced)) => {
                    replaced_static = replaced;
                    member_id
                }
                Err(reply) => return (Reply::Now(*reply), done),
            }
        } else if self.pending_members.remove(&request.member_id).is_some() {
            request.member_id.clone()
        } else {
            match self.members.get(&request.member_id) {
                None => {
                    return (
                        Reply::Now(error_join(code::UNKNOWN_MEMBER_ID, &request.member_id)),
                        done,
                    )
                }
                Some(member)
                    if request.group_instance_id.is_some()
                        && member.group_instance_id != request.group_instance_id =>
                {
                    return (
                        Reply::Now(error_join(code::FENCED_INSTANCE_ID, &request.member_id)),
                        done,
                    )
                }
                Some(_) => request.member_id.clone(),
            }
        };
        if let Some(old_id) = replaced_static {
            if let Some(result) =
                self.rejoin_static_without_rebalance(&member_id, &old_id, &request)
            {
                return (Reply::Now(result), done);
            }
        }
        let reply = self.join_known(now_ms, member_id, request, waiter, &mut done);
        (reply, done)
    }

    /// A restarted static member whose protocols did not change takes its place in a Stable
    /// group without a rebalance (Kafka's `updateStaticMemberAndRebalance`). A restarted
    /// leader is told the old leader id below v9, so it acts as a follower and SyncGroup
    /// hands it the stored assignment; from v9 it leads with `skip_assignment`.
    fn rejoin_static_without_rebalance(
        &mut self,
        member_id: &str,
        old_id: &str,
        request: &JoinRequest,
    ) -> Option<JoinResult> {
        let member = self.members.get_mut(member_id)?;
        if self.state != GroupState::Stable || member.protocols != request.protocols {
            return None;
        }
        member.client_id.clone_from(&request.client_id);
        member.client_host.clone_from(&request.client_host);
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        let mut result = self.join_result(member_id);
        if self.leader.as_deref() == Some(member_id) {
            if request.supports_skip_assignment {
                result.skip_assignment = true;
            } else {
                result.leader = old_id.to_string();
                result.members.clear();
            }
        }
        Some(result)
    }

    /// Whether the request's protocols can live with the other members'.
    fn supports(&self, request: &JoinRequest) -> bool {
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|member| member.member_id != request.member_id)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(request.protocol_type.as_str()) {
            return false;
        }
        request.protocols.iter().any(|(name, _)| {
            others
                .iter()
                .all(|member| member.protocols.iter().any(|(other, _)| other == name))
        })
    }

    /// Gives a joiner with no member id its id: a v4+ dynamic member is told to rejoin with
    /// it (MEMBER_ID_REQUIRED, KIP-394); a static member takes over its instance's place
    /// (KIP-345), fencing the old id.
    fn new_member_id(
        &mut self,
        now_ms: u64,
        request: &JoinRequest,
        done: &mut Completions,
    ) -> Result<(String, Option<String>), Box<JoinResult>> {
        let prefix = request
            .group_instance_id
            .as_deref()
            .unwrap_or(&request.client_id);
        let member_id = format!("{prefix}-{}", uuid::Uuid::new_v4().hyphenated());
        if let Some(instance) = &request.group_instance_id {
            let replaced = self.static_members.get(instance).cloned();
            if let Some(old_id) = &replaced {
                self.replace_static_member(old_id, &member_id, done);
            }
            self.static_members
                .insert(instance.clone(), member_id.clone());
            return Ok((member_id, replaced));
        }
        if request.requires_known_member_id {
            let deadline = now_ms + request.session_timeout_ms.max(0) as u64;
            self.pending_members.insert(member_id.clone(), deadline);
            return Err(Box::new(JoinResult {
                error_code: code::MEMBER_ID_REQUIRED,
                generation_id: -1,
                member_id,
                ..JoinResult::default()
            }));
        }
        Ok((member_id, None))
    }

    /// A static member restarted: the new id takes the old member's place and assignment;
    /// requests still waiting under the old id are fenced.
    fn replace_static_member(&mut self, old_id: &str, new_id: &str, done: &mut Completions) {
        let Some(mut member) = self.members.remove(old_id) else {
            return;
        };
        if let Some(waiter) = member.join_waiter.take() {
            done.joins
                .push((waiter, error_join(code::FENCED_INSTANCE_ID, old_id)));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            done.syncs
                .push((waiter, error_sync(code::FENCED_INSTANCE_ID)));
        }
        member.member_id = new_id.to_string();
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.to_string());
        }
        self.members.insert(new_id.to_string(), member);
    }

    fn join_known(
        &mut self,
        now_ms: u64,
        member_id: String,
        request: JoinRequest,
        waiter: Waiter,
        done: &mut Completions,
    ) -> Reply<JoinResult> {
        let existing = self.members.remove(&member_id);
        let is_new = existing.is_none();
        let protocols_changed = existing
            .as_ref()
            .is_none_or(|member| member.protocols != request.protocols);
        let mut member = existing.unwrap_or_else(|| {
            self.next_join_order += 1;
            Member {
                member_id: member_id.clone(),
                group_instance_id: None,
                client_id: String::new(),
                client_host: String::new(),
                session_timeout_ms: 0,
                rebalance_timeout_ms: 0,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_heard_ms: now_ms,
                join_order: self.next_join_order,
                join_waiter: None,
                sync_waiter: None,
            }
        });
        if let Some(previous) = member.join_waiter.take() {
            // Joined again before the last join was answered (a client retry).
            done.joins.push((
                previous,
                error_join(code::REBALANCE_IN_PROGRESS, &member_id),
            ));
        }
        member.group_instance_id = request.group_instance_id;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.protocols = request.protocols;
        member.last_heard_ms = now_ms;
        self.members.insert(member_id.clone(), member);
        if self.members.len() == 1 {
            self.protocol_type = Some(request.protocol_type);
        }
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance
                if !is_new && !protocols_changed && !is_leader =>
            {
                // Nothing changed for this follower: hand it the current generation again.
                return Reply::Now(self.join_result(&member_id));
            }
            GroupState::PreparingRebalance => {
                if is_new && self.initial_delay_until_ms > now_ms {
                    let extended = now_ms + self.config.initial_rebalance_delay_ms;
                    self.initial_delay_until_ms = extended.min(self.rebalance_deadline_ms);
                }
            }
            _ => self.prepare_rebalance(now_ms, done),
        }
        if let Some(member) = self.members.get_mut(&member_id) {
            member.join_waiter = Some(waiter);
        }
        self.try_complete_join(now_ms, done);
        Reply::Later
    }

    /// Starts a rebalance: members must rejoin within the longest rebalance timeout; held
    /// SyncGroups are told to rejoin.
    fn prepare_rebalance(&mut self, now_ms: u64, done: &mut Completions) {
        let was_empty = self.state == GroupState::Empty;
        for member in self.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                done.syncs
                    .push((waiter, error_sync(code::REBALANCE_IN_PROGRESS)));
            }
        }
        let rebalance_timeout_ms = self
            .members
            .values()
            .map(|member| member.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0);
        self.rebalance_deadline_ms = now_ms + rebalance_timeout_ms;
        self.initial_delay_until_ms = if was_empty {
            (now_ms + self.config.initial_rebalance_delay_ms).min(self.rebalance_deadline_ms)
        } else {
            now_ms
        };
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the join phase once every member has rejoined (after the initial delay of a
    /// new group), or when the rebalance timeout passes (dropping those that did not).
    fn try_complete_join(&mut self, now_ms: u64, done: &mut Completions) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self
            .members
            .values()
            .all(|member| member.join_waiter.is_some());
        let timed_out = now_ms >= self.rebalance_deadline_ms;
        if !(timed_out || all_joined && now_ms >= self.initial_delay_until_ms) {
            return;
        }
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|member| member.join_waiter.is_none())
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in missing {
            self.remove_member(&member_id, done);
        }
        self.generation_id += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            done.persist = true;
            return;
        }
        self.protocol_name = self.select_protocol();
        let leader_still_here = self
            .leader
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader));
        if !leader_still_here {
            self.leader = self
                .members
                .values()
                .min_by_key(|member| member.join_order)
                .map(|member| member.member_id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        let rebalance_timeout_ms = self
            .members
            .values()
            .map(|member| member.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0);
        self.sync_deadline_ms = now_ms + rebalance_timeout_ms;
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let result = self.join_result(&member_id);
            if let Some(member) = self.members.get_mut(&member_id) {
                member.last_heard_ms = now_ms;
                if let Some(waiter) = member.join_waiter.take() {
                    done.joins.push((waiter, result));
                }
            }
        }
    }

    /// The protocol every member supports that most members rank highest (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                self.members
                    .values()
                    .all(|member| member.protocols.iter().any(|(other, _)| other == *name))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|name| (0, *name)).collect();
        for member in self.members.values() {
            let choice = member
                .protocols
                .iter()
                .map(|(name, _)| name)
                .find(|name| candidates.contains(name));
            if let Some(slot) = votes.iter_mut().find(|(_, name)| Some(*name) == choice) {
                slot.0 += 1;
            }
        }
        // Ties go to the first member's preference order, which `votes` keeps.
        votes
            .iter()
            .rev()
            .max_by_key(|(count, _)| *count)
            .map(|(_, name)| (*name).clone())
    }

    /// The join answer for a member of the current generation.
    fn join_result(&self, member_id: &str) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        JoinResult {
            error_code: code::NONE,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|member| {
                        (
                            member.member_id.clone(),
                            member.group_instance_id.clone(),
                            member.metadata_for(&protocol),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    /// Handles a SyncGroup. The leader's assignments complete the rebalance.
    pub fn sync(
        &mut self,
        now_ms: u64,
        request: SyncRequest,
        waiter: Waiter,
    ) -> (Reply<SyncResult>, Completions) {
        let mut done = Completions::default();
        let member_id = request.member_id.as_str();
        let group_instance_id = request.group_instance_id.as_deref();
        if let Err(error_code) =
            self.check_member(member_id, group_instance_id, request.generation_id)
        {
            return (Reply::Now(error_sync(error_code)), done);
        }
        let (protocol_type, protocol_name) = (
            request.protocol_type.as_deref(),
            request.protocol_name.as_deref(),
        );
        let mismatch = protocol_type
            .is_some_and(|kind| Some(kind) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|name| Some(name) != self.protocol_name.as_deref());
        if mismatch {
            return (
                Reply::Now(error_sync(code::INCONSISTENT_GROUP_PROTOCOL)),
                done,
            );
        }
        let reply = match self.state {
            GroupState::Empty => Reply::Now(error_sync(code::UNKNOWN_MEMBER_ID)),
            GroupState::PreparingRebalance => Reply::Now(error_sync(code::REBALANCE_IN_PROGRESS)),
            GroupState::Stable => Reply::Now(self.sync_result(member_id)),
            GroupState::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.sync_waiter = Some(waiter);
                    member.last_heard_ms = now_ms;
                }
                if self.leader.as_deref() == Some(member_id) {
                    self.complete_sync(request.assignments, &mut done);
                }
                Reply::Later
            }
        };
        (reply, done)
    }

    fn complete_sync(&mut self, assignments: Vec<(String, Bytes)>, done: &mut Completions) {
        let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
        for member in self.members.values_mut() {
            member.assignment = assignments.remove(&member.member_id).unwrap_or_default();
        }
        self.state = GroupState::Stable;
        done.persist = true;
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let result = self.sync_result(&member_id);
            if let Some(waiter) = self
                .members
                .get_mut(&member_id)
                .and_then(|member| member.sync_waiter.take())
            {
                done.syncs.push((waiter, result));
            }
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error_code: code::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|member| member.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Checks that a request comes from a current member of this generation.
    fn check_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), i16> {
        let Some(member) = self.members.get(member_id) else {
            let fenced = group_instance_id
                .is_some_and(|instance| self.static_members.contains_key(instance));
            return Err(if fenced {
                code::FENCED_INSTANCE_ID
            } else {
                code::UNKNOWN_MEMBER_ID
            });
        };
        if group_instance_id.is_some() && member.group_instance_id.as_deref() != group_instance_id {
            return Err(code::FENCED_INSTANCE_ID);
        }
        if generation_id != self.generation_id {
            return Err(code::ILLEGAL_GENERATION);
        }
        Ok(())
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        if self.state == GroupState::Empty {
            return code::UNKNOWN_MEMBER_ID;
        }
        if let Err(error_code) = self.check_member(member_id, group_instance_id, generation_id) {
            return error_code;
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_heard_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            _ => code::NONE,
        }
    }

    /// Handles one member of a LeaveGroup (by member id, or by instance id for static
    /// members). Returns the member's error code.
    pub fn leave(
        &mut self,
        now_ms: u64,
        member_id: &str,
        group_instance_id: Option<&str>,
        done: &mut Completions,
    ) -> i16 {
        let target = match group_instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(current) if member_id.is_empty() || current == member_id => current.clone(),
                Some(_) => return code::FENCED_INSTANCE_ID,
                None => return code::UNKNOWN_MEMBER_ID,
            },
            None if self.members.contains_key(member_id) => member_id.to_string(),
            None if self.pending_members.remove(member_id).is_some() => return code::NONE,
            None => return code::UNKNOWN_MEMBER_ID,
        };
        self.remove_member(&target, done);
        self.membership_changed(now_ms, done);
        code::NONE
    }

    fn remove_member(&mut self, member_id: &str, done: &mut Completions) {
        let Some(mut member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if let Some(waiter) = member.join_waiter.take() {
            done.joins
                .push((waiter, error_join(code::UNKNOWN_MEMBER_ID, member_id)));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            done.syncs
                .push((waiter, error_sync(code::UNKNOWN_MEMBER_ID)));
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    /// After a member left or expired: rebalance the rest, or finish a rebalance that was
    /// only waiting for it.
    fn membership_changed(&mut self, now_ms: u64, done: &mut Completions) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, done)
            }
            _ => {}
        }
        self.try_complete_join(now_ms, done);
    }

    /// Expires silent members, lapsed pending ids, overdue rebalances and syncs.
    pub fn tick(&mut self, now_ms: u64) -> Completions {
        let mut done = Completions::default();
        self.pending_members
            .retain(|_, deadline| *deadline > now_ms);
        let waiting_for_join = self.state == GroupState::PreparingRebalance;
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| !(waiting_for_join && member.join_waiter.is_some()))
            .filter(|member| {
                now_ms >= member.last_heard_ms + member.session_timeout_ms.max(0) as u64
            })
            .map(|member| member.member_id.clone())
            .collect();
        if self.state == GroupState::CompletingRebalance && now_ms >= self.sync_deadline_ms {
            // The leader never sent assignments: drop whoever has not synced and start over.
            let unsynced: Vec<String> = self
                .members
                .values()
                .filter(|member| member.sync_waiter.is_none())
                .map(|member| member.member_id.clone())
                .collect();
            for member_id in unsynced {
                self.remove_member(&member_id, &mut done);
            }
            self.membership_changed(now_ms, &mut done);
        }
        if !expired.is_empty() {
            for member_id in &expired {
                self.remove_member(member_id, &mut done);
            }
            self.membership_changed(now_ms, &mut done);
        }
        self.try_complete_join(now_ms, &mut done);
        done
    }

    /// Checks an OffsetCommit's member and generation. Generation -1 with no member id is a
    /// "simple" commit, allowed only while the group has no members.
    pub fn check_commit(
        &mut self,
        now_ms: u64,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        if generation_id < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                code::NONE
            } else {
                code::UNKNOWN_MEMBER_ID
            };
        }
        if let Err(error_code) = self.check_member(member_id, group_instance_id, generation_id) {
            return error_code;
        }
        if self.state == GroupState::CompletingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_heard_ms = now_ms;
        }
        code::NONE
    }
}

fn error_join(error_code: i16, member_id: &str) -> JoinResult {
    JoinResult {
        error_code,
        generation_id: -1,
        member_id: member_id.to_string(),
        ..JoinResult::default()
    }
}

fn error_sync(error_code: i16) -> SyncResult {
    SyncResult {
        error_code,
        ..SyncResult::default()
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
