//! Membership of a classic consumer group, as `spate consume --group` runs it.
//!
//! Joining is FindCoordinator, then JoinGroup (repeated once with the member id the
//! coordinator hands out when it answers MEMBER_ID_REQUIRED), then SyncGroup. The member
//! the coordinator names leader runs the range assignor for everyone. A heartbeat thread,
//! on its own connection, sends a Heartbeat every 3 s and raises a flag when the
//! coordinator asks for a rejoin; the consume loop sees the flag, commits and rejoins.
//!
//! Concurrency: [`GroupMember`] belongs to the consume loop's thread; the heartbeat thread
//! shares only [`Shared`] (a mutex-guarded copy of the member id, generation and
//! coordinator address, plus two flags).

use spate_net::error_code::{
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, ILLEGAL_GENERATION,
    MEMBER_ID_REQUIRED, NOT_COORDINATOR, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::bail;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};

use super::broker::{str_bytes, BrokerConnection, Cluster};
use super::consumer_protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, range_assign,
};
use super::error_name;
use super::group_offsets::{self, Committer};

/// The group's protocol type for consumers.
pub const PROTOCOL_TYPE: &str = "consumer";
/// The one assignor we offer.
const ASSIGNOR: &str = "range";
/// How long the coordinator waits for a heartbeat before dropping us. Kafka's minimum
/// (`group.min.session.timeout.ms`) is 6 s.
const SESSION_TIMEOUT_MS: i32 = 10_000;
/// How long the coordinator waits for every member to rejoin during a rebalance.
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
/// Time between heartbeats.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// Attempts at one join before giving up.
const JOIN_ATTEMPTS: u32 = 20;

/// Errors after which the coordinator must be looked up again.
const COORDINATOR_MOVED: &[i16] = &[
    COORDINATOR_LOAD_IN_PROGRESS,
    COORDINATOR_NOT_AVAILABLE,
    NOT_COORDINATOR,
];
/// Errors that mean "your generation is over; rejoin".
const REJOIN: &[i16] = &[ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS];

/// What the heartbeat thread needs to know about the membership.
#[derive(Clone, Default)]
struct Membership {
    member_id: String,
    generation: i32,
    coordinator_address: String,
    /// False while joining: heartbeats wait for the new generation.
    active: bool,
}

/// State shared with the heartbeat thread.
#[derive(Default)]
struct Shared {
    membership: Mutex<Membership>,
    rejoin_needed: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    fn membership(&self) -> Membership {
        self.membership
            .lock()
            .map(|guard| guard.clone())
            .unwrap_or_default()
    }

    fn set_membership(&self, membership: Membership) {
        if let Ok(mut guard) = self.membership.lock() {
            *guard = membership;
        }
    }
}

/// A member of a consumer group subscribed to one topic.
pub struct GroupMember {
    group: String,
    topic: String,
    coordinator: BrokerConnection,
    member_id: String,
    generation: i32,
    protocol_name: String,
    shared: Arc<Shared>,
    heartbeat: Option<JoinHandle<()>>,
}

impl GroupMember {
    /// Joins `group` subscribed to `topic`; returns the member and its partitions of `topic`.
    pub fn join(
        cluster: &mut Cluster,
        group: &str,
        topic: &str,
    ) -> anyhow::Result<(GroupMember, Vec<i32>)> {
        let (_, address) = cluster.find_coordinator(group)?;
        let coordinator = BrokerConnection::open(&address)?;
        if !coordinator.supports(ApiKey::JoinGroup) {
            bail!("the broker at {address} does not serve consumer groups (no JoinGroup)");
        }
        let mut member = GroupMember {
            group: group.to_string(),
            topic: topic.to_string(),
            coordinator,
            member_id: String::new(),
            generation: -1,
            protocol_name: ASSIGNOR.to_string(),
            shared: Arc::new(Shared::default()),
            heartbeat: None,
        };
        let partitions = member.join_and_sync(cluster)?;
        let shared = Arc::clone(&member.shared);
        let group = member.group.clone();
        member.heartbeat = Some(std::thread::spawn(move || heartbeat_loop(&group, &shared)));
        Ok((member, partitions))
    }

    /// Whether the coordinator asked for a rejoin (a rebalance is under way).
    pub fn rejoin_needed(&self) -> bool {
        self.shared.rejoin_needed.load(Ordering::SeqCst)
    }

    /// Rejoins after a rebalance; returns the new partitions of our topic.
    pub fn rejoin(&mut self, cluster: &mut Cluster) -> anyhow::Result<Vec<i32>> {
        self.join_and_sync(cluster)
    }

    /// The committed offsets of `partitions` (-1 where none is committed).
    pub fn committed(&mut self, partitions: &[i32]) -> anyhow::Result<BTreeMap<i32, i64>> {
        let wanted = BTreeMap::from([(self.topic.clone(), partitions.to_vec())]);
        let committed =
            group_offsets::fetch_committed(&mut self.coordinator, &self.group, Some(&wanted))?;
        Ok(partitions
            .iter()
            .map(|&partition| {
                let offset = committed
                    .get(&(self.topic.clone(), partition))
                    .copied()
                    .unwrap_or(-1);
                (partition, offset)
            })
            .collect())
    }

    /// Commits the positions (next offsets to read). A refusal because a rebalance began
    /// is not an error: the caller rejoins and the new owner resumes from the last commit.
    pub fn commit(&mut self, positions: &BTreeMap<i32, i64>) -> anyhow::Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        let committer = Committer {
            group: &self.group,
            generation: self.generation,
            member_id: &self.member_id,
        };
        let refused =
            group_offsets::commit(&mut self.coordinator, &committer, &self.topic, positions)?;
        for (partition, code) in refused {
            if REJOIN.contains(&code) || COORDINATOR_MOVED.contains(&code) {
                self.shared.rejoin_needed.store(true, Ordering::SeqCst);
                eprintln!(
                    "spate: commit of {}-{partition} refused ({}); rejoining",
                    self.topic,
                    error_name(code)
                );
            } else {
                bail!(
                    "cannot commit the offset of {}-{partition}: {}",
                    self.topic,
                    error_name(code)
                );
            }
        }
        Ok(())
    }

    /// Leaves the group (LeaveGroup) and stops heartbeating.
    pub fn leave(mut self) -> anyhow::Result<()> {
        self.stop_heartbeats();
        let version = self.coordinator.version(ApiKey::LeaveGroup, 0..=5)?;
        let mut request =
            LeaveGroupRequest::default().with_group_id(GroupId(str_bytes(&self.group)));
        request = if version >= 3 {
            let mut identity = MemberIdentity::default().with_member_id(str_bytes(&self.member_id));
            if version >= 5 {
                identity = identity.with_reason(Some(str_bytes("the consumer is closing")));
            }
            request.with_members(vec![identity])
        } else {
            request.with_member_id(str_bytes(&self.member_id))
        };
        let response = self.coordinator.send(version, &request)?;
        let code = std::iter::once(response.error_code)
            .chain(response.members.iter().map(|member| member.error_code))
            .find(|&code| code != 0)
            .unwrap_or(0);
        // Already gone (a rebalance dropped us) is as good as leaving.
        if code != 0 && code != UNKNOWN_MEMBER_ID {
            bail!("cannot leave group {}: {}", self.group, error_name(code));
        }
        Ok(())
    }

    fn stop_heartbeats(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.heartbeat.take() {
            let _ = thread.join();
        }
    }

    /// JoinGroup and SyncGroup until the coordinator hands us an assignment.
    fn join_and_sync(&mut self, cluster: &mut Cluster) -> anyhow::Result<Vec<i32>> {
        let mut membership = self.shared.membership();
        membership.active = false;
        self.shared.set_membership(membership);
        self.shared.rejoin_needed.store(false, Ordering::SeqCst);
        for _ in 0..JOIN_ATTEMPTS {
            let Some(leader_members) = self.join_once(cluster)? else {
                continue;
            };
            let assignments = match leader_members {
                Some(members) => self.assign(cluster, &members)?,
                None => Vec::new(),
            };
            let Some(assignment) = self.sync_once(cluster, assignments)? else {
                continue;
            };
            self.shared.set_membership(Membership {
                member_id: self.member_id.clone(),
                generation: self.generation,
                coordinator_address: self.coordinator.address().to_string(),
                active: true,
            });
            return Ok(assignment.get(&self.topic).cloned().unwrap_or_default());
        }
        bail!(
            "could not join group {} after {JOIN_ATTEMPTS} attempts",
            self.group
        )
    }

    /// One JoinGroup. `None`: try again; `Some(Some(members))`: we lead and must assign;
    /// `Some(None)`: we follow.
    #[allow(clippy::type_complexity)]
    fn join_once(
        &mut self,
        cluster: &mut Cluster,
    ) -> anyhow::Result<Option<Option<Vec<JoinGroupResponseMember>>>> {
        let version = self.coordinator.version(ApiKey::JoinGroup, 0..=9)?;
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_member_id(str_bytes(&self.member_id))
            .with_protocol_type(str_bytes(PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(str_bytes(ASSIGNOR))
                .with_metadata(encode_subscription(std::slice::from_ref(&self.topic))?)]);
        let response = self.coordinator.send(version, &request)?;
        match response.error_code {
            0 => {}
            MEMBER_ID_REQUIRED => {
                self.member_id = response.member_id.to_string();
                return Ok(None);
            }
            UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                return Ok(None);
            }
            REBALANCE_IN_PROGRESS => return Ok(None),
            code if COORDINATOR_MOVED.contains(&code) => {
                self.reconnect(cluster)?;
                return Ok(None);
            }
            code => bail!("cannot join group {}: {}", self.group, error_name(code)),
        }
        self.member_id = response.member_id.to_string();
        self.generation = response.generation_id;
        if let Some(name) = &response.protocol_name {
            self.protocol_name = name.to_string();
        }
        let leads = response.leader == response.member_id && !response.skip_assignment;
        Ok(Some(leads.then_some(response.members)))
    }

    /// One SyncGroup. `None`: the generation ended meanwhile, join again.
    fn sync_once(
        &mut self,
        cluster: &mut Cluster,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) -> anyhow::Result<Option<BTreeMap<String, Vec<i32>>>> {
        let version = self.coordinator.version(ApiKey::SyncGroup, 0..=5)?;
        let mut request = SyncGroupRequest::default()
            .with_group_id(GroupId(str_bytes(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(str_bytes(&self.member_id))
            .with_assignments(assignments);
        if version >= 5 {
            request = request
                .with_protocol_type(Some(str_bytes(PROTOCOL_TYPE)))
                .with_protocol_name(Some(str_bytes(&self.protocol_name)));
        }
        let response = self.coordinator.send(version, &request)?;
        match response.error_code {
            0 => Ok(Some(decode_assignment(&response.assignment)?)),
            UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                Ok(None)
            }
            code if REJOIN.contains(&code) => Ok(None),
            code if COORDINATOR_MOVED.contains(&code) => {
                self.reconnect(cluster)?;
                Ok(None)
            }
            code => bail!(
                "cannot sync with group {}: {}",
                self.group,
                error_name(code)
            ),
        }
    }

    /// As the leader: the range assignment for every member, from their subscriptions.
    fn assign(
        &self,
        cluster: &mut Cluster,
        members: &[JoinGroupResponseMember],
    ) -> anyhow::Result<Vec<SyncGroupRequestAssignment>> {
        let mut subscriptions = BTreeMap::new();
        for member in members {
            let topics = decode_subscription(&member.metadata).unwrap_or_else(|error| {
                eprintln!(
                    "spate: cannot read the subscription of member {}: {error:#}",
                    member.member_id
                );
                Vec::new()
            });
            subscriptions.insert(member.member_id.to_string(), topics);
        }
        let mut topics: Vec<&str> = subscriptions
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        topics.sort_unstable();
        topics.dedup();
        let metadata = cluster.metadata(Some(&topics))?;
        let partition_counts: BTreeMap<String, i32> = metadata
            .topics
            .iter()
            .filter(|topic| topic.error_code == 0)
            .filter_map(|topic| {
                Some((
                    topic.name.as_ref()?.0.to_string(),
                    topic.partitions.len() as i32,
                ))
            })
            .collect();
        range_assign(&subscriptions, &partition_counts)
            .into_iter()
            .map(|(member_id, assignment)| {
                Ok(SyncGroupRequestAssignment::default()
                    .with_member_id(str_bytes(&member_id))
                    .with_assignment(encode_assignment(&assignment)?))
            })
            .collect()
    }

    /// Looks the coordinator up again and reconnects to it.
    fn reconnect(&mut self, cluster: &mut Cluster) -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(250));
        let (_, address) = cluster.find_coordinator(&self.group)?;
        self.coordinator = BrokerConnection::open(&address)?;
        Ok(())
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.stop_heartbeats();
    }
}

/// Sends a Heartbeat every [`HEARTBEAT_INTERVAL`] while the member is active, and raises
/// `rejoin_needed` when the coordinator answers anything but success for the generation
/// it was sent for.
fn heartbeat_loop(group: &str, shared: &Shared) {
    let mut connection: Option<BrokerConnection> = None;
    loop {
        let deadline = Instant::now() + HEARTBEAT_INTERVAL;
        while Instant::now() < deadline {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let membership = shared.membership();
        if !membership.active {
            continue;
        }
        if connection
            .as_ref()
            .is_none_or(|open| open.address() != membership.coordinator_address)
        {
            connection = BrokerConnection::open(&membership.coordinator_address).ok();
        }
        let Some(open) = connection.as_mut() else {
            continue;
        };
        let answer = open.version(ApiKey::Heartbeat, 0..=4).and_then(|version| {
            let request = HeartbeatRequest::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_generation_id(membership.generation)
                .with_member_id(str_bytes(&membership.member_id));
            open.send(version, &request)
        });
        match answer {
            Ok(response) if response.error_code == 0 => {}
            Ok(_) => {
                // Only a verdict on the generation still in force counts: a heartbeat
                // that raced with a rejoin says nothing about the new generation.
                let now = shared.membership();
                if now.active && now.generation == membership.generation {
                    shared.rejoin_needed.store(true, Ordering::SeqCst);
                }
            }
            Err(_) => connection = None,
        }
    }
}
