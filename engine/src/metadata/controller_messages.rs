//! What goes in and out of the controller: its requests ([`ControllerRequest`] and the
//! values they carry), answers ([`ControllerReply`]) and errors ([`ControllerError`], each
//! one of Kafka's). Serializable, so that a node that does not lead the quorum forwards them
//! to the one that does (`cluster::forwarding`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::super::image::{PartitionAssignment, TopicImage};
use super::super::records::MetadataRecord;
use crate::partition::{BrokerId, NodeId};
use crate::quota::store::{QuotaEntity, QuotaKey, QuotaValue};
use crate::security::acl::{AclBinding, AclFilter};
use crate::security::scram::{Mechanism, ScramCredential};
use crate::security::ListenerEndpoint;

/// A topic to create.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// Its partition count; `None` for the broker's default.
    pub partitions: Option<i32>,
    /// Its replication factor; `None` for the default.
    pub replication_factor: Option<i16>,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// Explicit replicas of each partition, by index (CreateTopics' `assignments`), instead
    /// of a partition count and factor; empty for Spate's placement.
    #[serde(default)]
    pub assignments: Vec<Vec<BrokerId>>,
}

/// A change of a topic's config overrides.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ConfigChange {
    /// Replace the whole set (AlterConfigs).
    Replace(BTreeMap<String, String>),
    /// Kafka's incremental operations (IncrementalAlterConfigs): (name, operation, value).
    Incremental(Vec<(String, i8, Option<String>)>),
}

/// What a shard asks of the controller.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// CreateTopics, or an automatic creation.
    CreateTopics {
        /// The topics.
        topics: Vec<NewTopic>,
        /// Check only.
        validate_only: bool,
    },
    /// DeleteTopics.
    DeleteTopics {
        /// Names of the topics.
        names: Vec<String>,
    },
    /// CreatePartitions: grow each topic to a total.
    CreatePartitions {
        /// (topic, total partitions).
        topics: Vec<(String, i32)>,
        /// Per topic (same order; missing or `None`: Spate places them), the replicas of
        /// each new partition, as the request's `assignments` name them.
        #[serde(default)]
        assignments: Vec<Option<Vec<Vec<BrokerId>>>>,
        /// Check only.
        validate_only: bool,
    },
    /// AlterConfigs / IncrementalAlterConfigs on topics.
    AlterTopicConfigs {
        /// (topic, change).
        topics: Vec<(String, ConfigChange)>,
        /// Check only.
        validate_only: bool,
    },
    /// AlterUserScramCredentials, checked by the handler for what needs no image (names,
    /// mechanisms, iterations, duplicates).
    AlterScramCredentials {
        /// Credentials to set.
        upsertions: Vec<(String, Mechanism, ScramCredential)>,
        /// Credentials to remove.
        deletions: Vec<(String, Mechanism)>,
    },
    /// CreateAcls, checked by the handler (each binding valid): adds the ACLs not there yet.
    CreateAcls {
        /// The ACLs.
        bindings: Vec<AclBinding>,
    },
    /// DeleteAcls: removes every ACL each filter matches.
    DeleteAcls {
        /// The filters.
        filters: Vec<AclFilter>,
    },
    /// AlterClientQuotas, checked by the handler (entities, keys and values valid): sets
    /// (`Some`) or removes (`None`) each quota.
    AlterClientQuotas {
        /// The changes, in order.
        changes: Vec<(QuotaEntity, QuotaKey, Option<QuotaValue>)>,
    },
    /// A block of producer ids for a shard to hand out.
    AllocateProducerIds,
    /// This node has started: register its brokers with `broker_epoch`, and make what a
    /// first start makes (the cluster id, `__consumer_offsets`). A node whose metadata lives
    /// in the controller quorum sends it once the quorum runs (a one-node cluster's journal
    /// does the same at start, in `bootstrap`).
    StartNode(NodeStart),
    /// A node's periodic sign of life (Kafka's BrokerHeartbeat): unfences it if it was
    /// fenced and is still the incarnation registered.
    Heartbeat {
        /// The node.
        node_id: NodeId,
        /// The epoch its brokers registered with.
        broker_epoch: i64,
    },
    /// The controller's own decision that a node stopped heartbeating: fence its brokers.
    FenceNode {
        /// The node.
        node_id: NodeId,
    },
    /// A node stopping on SIGTERM (Kafka's controlled shutdown): fence it now, which moves
    /// its leaderships to other ISR members and takes it out of every ISR, so that clients
    /// move before it goes. Only for the incarnation registered.
    ControlledShutdown {
        /// The node.
        node_id: NodeId,
        /// The epoch its brokers registered with.
        broker_epoch: i64,
    },
    /// A partition leader's change of its ISR (Kafka's AlterPartition): a follower caught up
    /// and joins, or fell behind and leaves. Taken only if `leader`, `leader_epoch` and
    /// `partition_epoch` are still the partition's (the leader's view is current).
    AlterPartition(IsrChange),
    /// Kafka's ElectLeaders (KIP-460): for each partition (every one for `None`), the
    /// preferred replica (the first) as leader if it is live and in sync (`preferred`), or
    /// else, for a partition with no live leader, any live replica even out of sync (an
    /// unclean election: what it lacks of the old log is lost). Also what the automatic
    /// leader rebalance asks (`leader_balance`).
    ElectLeaders {
        /// A preferred election, else an unclean one.
        preferred: bool,
        /// (topic, partition) pairs; `None` for every partition.
        partitions: Option<Vec<(String, i32)>>,
    },
    /// A node that is not a voter asks to receive the metadata log (as a learner of the
    /// controller quorum, at its controller port `address`). Carried out by the controller
    /// task on the quorum's leader; it makes no metadata record.
    JoinQuorum {
        /// The node.
        node_id: NodeId,
        /// Its controller port, `host:port`.
        address: String,
    },
    /// Kafka's AlterPartitionReassignments (KIP-455): for each partition, the replicas it
    /// should end with (the new ones are added, and the old ones dropped once the new are in
    /// sync), or `None` to cancel its reassignment.
    AlterReassignments {
        /// Each partition's target replicas, or `None`.
        partitions: Vec<ReassignmentTarget>,
        /// Whether a target may have another replica count than the partition (v1's
        /// `allow_replication_factor_change`; v0 allows it).
        allow_factor_change: bool,
    },
}

/// A partition of an AlterReassignments: ((topic, partition), the replicas it should end
/// with, or `None` to cancel its reassignment).
pub type ReassignmentTarget = ((String, i32), Option<Vec<BrokerId>>);

/// What [`ControllerRequest::AlterPartition`] asks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IsrChange {
    /// The partition's topic.
    pub topic_id: Uuid,
    /// The partition.
    pub partition: i32,
    /// The leader that asks.
    pub leader: BrokerId,
    /// Its leader epoch.
    pub leader_epoch: crate::partition::LeaderEpoch,
    /// The partition epoch its view was made from.
    pub partition_epoch: i32,
    /// The ISR it wants.
    pub isr: Vec<BrokerId>,
    /// The broker epochs of joining replicas as their fetches gave them (Kafka's
    /// `NewIsrWithEpochs`, KIP-903; -1: not given): one that is not the broker's registered
    /// epoch is from an earlier incarnation and may not join.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_epochs: Vec<(BrokerId, i64)>,
}

/// A node as it starts: what its brokers are registered with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStart {
    /// The node.
    pub node_id: NodeId,
    /// Its shards, one broker each.
    pub shard_count: u32,
    /// Host advertised for its brokers.
    pub host: String,
    /// Port of its shard 0; shard s listens on `base_port + s`.
    pub base_port: u16,
    /// Rack of its brokers.
    pub rack: Option<String>,
    /// The epoch of this incarnation's broker registrations.
    pub broker_epoch: i64,
    /// Whether the node's last run stopped cleanly (`None`: its first start, or a node that
    /// does not say).
    #[serde(default)]
    pub clean_shutdown: Option<bool>,
    /// Its listeners (`host` and `base_port` are the inter-broker one's); empty from nodes
    /// that predate listeners.
    #[serde(default)]
    pub listeners: Vec<ListenerEndpoint>,
    /// SCRAM credentials written into the node's data directory before its first start
    /// (`spate user add --data-dir`, Kafka's `kafka-storage format --add-scram`): the
    /// controller adds each one no user has yet for its mechanism, so that a cluster whose
    /// listeners all need SASL has its first users (see `metadata::bootstrap`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<MetadataRecord>,
}

/// The controller's answer, one result per item of the request, in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControllerReply {
    /// Per topic: the topic as created (or as it would be, when validating).
    CreateTopics(Vec<Result<Arc<TopicImage>, ControllerError>>),
    /// Per name: the deleted topic's id.
    DeleteTopics(Vec<Result<Uuid, ControllerError>>),
    /// Per topic.
    CreatePartitions(Vec<Result<(), ControllerError>>),
    /// Per topic.
    AlterTopicConfigs(Vec<Result<(), ControllerError>>),
    /// The block of ids.
    ProducerIds(Range<i64>),
    /// The node's start-up records are in the image.
    NodeStarted,
    /// A heartbeat or fencing was taken.
    Acknowledged,
    /// The partition as changed by an AlterPartition.
    AlterPartition(Result<PartitionAssignment, ControllerError>),
    /// Per partition asked (for every partition: those elected or refused, without the
    /// ones that needed no election, as Kafka answers).
    ElectLeaders(Vec<((String, i32), Result<(), ControllerError>)>),
    /// Per partition asked, in order.
    AlterReassignments(Vec<((String, i32), Result<(), ControllerError>)>),
    /// Per user named, in order of first mention.
    AlterScramCredentials(Vec<(String, Result<(), ControllerError>)>),
    /// The ACLs are stored (those that were already there included).
    CreateAcls,
    /// Per filter, in order: the ACLs it removed (an ACL that two filters match is
    /// reported by the first).
    DeleteAcls(Vec<Vec<AclBinding>>),
    /// The quotas are as asked.
    ClientQuotasAltered,
}

/// Why the controller refused (part of) a request. Each maps to one Kafka error code
/// (`handlers::errors::controller_error_code`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ControllerError {
    /// TOPIC_ALREADY_EXISTS.
    #[error("Topic '{0}' already exists.")]
    TopicExists(String),
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("This server does not host this topic-partition.")]
    UnknownTopic,
    /// INVALID_TOPIC_EXCEPTION.
    #[error("{0}")]
    InvalidTopic(String),
    /// INVALID_PARTITIONS.
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_REPLICATION_FACTOR.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// INVALID_CONFIG.
    #[error("{0}")]
    InvalidConfig(String),
    /// POLICY_VIOLATION: a limit of this node (see [`ControllerLimits`]).
    #[error("{0}")]
    PolicyViolation(String),
    /// The request would delete or repartition an internal topic.
    #[error("{0}")]
    InternalTopic(String),
    /// KAFKA_STORAGE_ERROR: the change could not be made durable (a full disk, say); nothing
    /// changed, and the request can be retried.
    #[error("the metadata change could not be made durable: {0}")]
    NotDurable(String),
    /// RESOURCE_NOT_FOUND: a credential to delete does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// The controller is not running (the node is shutting down).
    #[error("the controller is not available")]
    Unavailable,
    /// This node's controller does not lead the controller quorum (NOT_CONTROLLER; the
    /// client refreshes its metadata and tries again).
    #[error("this node is not the active controller (the quorum's leader is {leader:?})")]
    NotController {
        /// The node that leads, if known.
        leader: Option<i32>,
    },
    /// FENCED_LEADER_EPOCH: an AlterPartition from a leader that is no longer the
    /// partition's (or of an older epoch).
    #[error("the partition's leader or leader epoch changed")]
    FencedLeaderEpoch,
    /// INVALID_UPDATE_VERSION: an AlterPartition made from an older partition epoch.
    #[error("the partition changed since (partition epoch {current})")]
    InvalidUpdateVersion {
        /// The partition epoch now.
        current: i32,
    },
    /// INELIGIBLE_REPLICA: an ISR with a replica that is not one, or that is fenced, or
    /// without its leader.
    #[error("{0}")]
    IneligibleReplica(String),
    /// ELECTION_NOT_NEEDED: the leader is already the one the election would pick.
    #[error("Leader election not needed for topic partition.")]
    ElectionNotNeeded,
    /// PREFERRED_LEADER_NOT_AVAILABLE: the preferred replica is fenced or out of sync.
    #[error("The preferred leader is not available: it is fenced or not in the ISR.")]
    PreferredLeaderNotAvailable,
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE: no replica of the partition is live.
    #[error("No replica of the partition is live.")]
    EligibleLeadersNotAvailable,
    /// INVALID_REPLICA_ASSIGNMENT: a reassignment's target that cannot be (empty,
    /// duplicated or unknown brokers, ...).
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// NO_REASSIGNMENT_IN_PROGRESS: a cancellation of a partition that is not reassigning.
    #[error("No reassignment is in progress for this partition.")]
    NoReassignmentInProgress,
}
