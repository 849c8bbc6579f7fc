//! The vocabulary of the group state machine ([`super::group::Group`]): what requests carry,
//! what answers say, the members, the states and Kafka's error codes used by groups.

use bytes::Bytes;

/// Token for a request waiting on the group.
pub type Waiter = u64;

/// Kafka's error codes used here.
pub use spate_net::error_code as code;

/// Coordinator settings (Kafka's broker configs of the same names).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    /// KIP-848 consumer groups' settings (`group.consumer.*`).
    pub consumer: super::consumer_group::ConsumerGroupConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            consumer: Default::default(),
        }
    }
}

/// The classic group states, named as Kafka reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may remain).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignments.
    CompletingRebalance,
    /// Assignments handed out.
    Stable,
}

impl GroupState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A JoinGroup as the state machine sees it.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    /// Empty for a new dynamic member.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// For DescribeGroups.
    pub client_id: String,
    /// For DescribeGroups.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (v1+; v0 uses the session timeout).
    pub rebalance_timeout_ms: i32,
    /// "consumer" for consumers.
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+ clients rejoin with a broker-made id (KIP-394).
    pub requires_known_member_id: bool,
    /// v9+: a restarted static leader can be told to keep the current assignment.
    pub supports_skip_assignment: bool,
}

/// A SyncGroup as the state machine sees it.
#[derive(Clone, Debug, Default)]
pub struct SyncRequest {
    /// The member.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// The generation the member joined.
    pub generation_id: i32,
    /// v5+: must match the group's.
    pub protocol_type: Option<String>,
    /// v5+: must match the group's.
    pub protocol_name: Option<String>,
    /// The leader's assignments (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// A JoinGroup answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JoinResult {
    /// Error code.
    pub error_code: i16,
    /// The new generation.
    pub generation_id: i32,
    /// The chosen protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// For the leader only: (member id, instance id, metadata for the chosen protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// v9+: the leader must not compute a new assignment (a static leader's restart).
    pub skip_assignment: bool,
}

/// A SyncGroup answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncResult {
    /// Error code.
    pub error_code: i16,
    /// The chosen protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

/// Answers for waiting requests, produced by a state change.
#[derive(Debug, Default)]
pub struct Completions {
    /// Held JoinGroups.
    pub joins: Vec<(Waiter, JoinResult)>,
    /// Held SyncGroups.
    pub syncs: Vec<(Waiter, SyncResult)>,
    /// Set when the group reached Stable or Empty: its metadata should be persisted.
    pub persist: bool,
}

/// An answer now, or later through the waiter.
#[derive(Debug, PartialEq)]
pub enum Reply<T> {
    /// Answer at once.
    Now(T),
    /// The request waits; its answer comes in some later [`Completions`].
    Later,
}

/// One member.
#[derive(Clone, Debug)]
pub struct Member {
    /// Broker-made id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// From the join.
    pub client_id: String,
    /// From the join.
    pub client_host: String,
    /// From the join.
    pub session_timeout_ms: i32,
    /// From the join.
    pub rebalance_timeout_ms: i32,
    /// (name, metadata) in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Set by the leader's SyncGroup.
    pub assignment: Bytes,
    pub(super) last_heard_ms: u64,
    pub(super) join_order: u64,
    pub(super) join_waiter: Option<Waiter>,
    pub(super) sync_waiter: Option<Waiter>,
}

impl Member {
    /// The metadata this member gave for `protocol`.
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }
}
