//! The controller's decisions: requests in, metadata records and answers out.
//!
//! [`ControllerState`] holds the controller's working image and turns each
//! [`ControllerRequest`] into the records that carry it out (applying them to the working
//! image at once, so that the next request of the same batch sees them) and the answer for the
//! requester. It does no I/O and reads no clock: the task that drives it
//! (`metadata::controller_task`) persists the records, publishes the image and answers only
//! once they are durable. A replicated controller will drive the same state machine with
//! records committed by a Raft quorum instead of a local journal.
//!
//! Every limit a client could use to exhaust the node is checked here, with Kafka's errors:
//! partitions per request (Kafka's `MAX_PARTITIONS_PER_BATCH`, POLICY_VIOLATION), partitions
//! per node (KIP-578's `max.broker.partitions`), and internal topics (`__consumer_offsets`,
//! later `__transaction_state`) that clients may neither delete nor repartition.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::image::{
    BrokerEndpoint, BrokerRegistration, MetadataImage, PartitionAssignment, TopicImage,
};
use super::records::MetadataRecord;
use super::store::LegacyCatalog;
use crate::partition::{BrokerId, NodeId, ShardId};
use crate::quota::store::{QuotaEntity, QuotaKey, QuotaValue};
use crate::security::acl::{AclBinding, AclFilter};
use crate::security::scram::{Mechanism, ScramCredential};
use crate::security::ListenerEndpoint;

/// Kafka's limit on topic name length.
const TOPIC_NAME_MAX_CHARS: usize = 249;
/// Producer ids a shard takes from the controller at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// Topics clients may not delete or repartition.
pub const INTERNAL_TOPICS: &[&str] = &[crate::groups::offsets_topic::TOPIC, "__transaction_state"];

/// Limits on what requests may create (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerLimits {
    /// Most partitions one CreateTopics or CreatePartitions request may create.
    pub partitions_per_request_max: u32,
    /// Most partitions this node may hold (KIP-578's `max.broker.partitions`).
    pub partitions_per_node_max: u64,
}

/// What the controller needs to know about the node it runs on.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// This node.
    pub node_id: NodeId,
    /// Its shards, each a broker.
    pub shard_count: u32,
    /// Host advertised for its brokers.
    pub advertised_host: String,
    /// Port of shard 0; shard s listens on `base_port + s`.
    pub base_port: u16,
    /// Every listener's endpoint (empty: `advertised_host` and `base_port` for all).
    pub listeners: Vec<ListenerEndpoint>,
    /// Rack of its brokers (broker.rack), if set.
    pub rack: Option<String>,
    /// Partitions of a topic created without a count.
    pub default_partitions: i32,
    /// Partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_partitions: i32,
    /// Replicas of each of its partitions: it is created once that many nodes are live.
    pub offsets_topic_replication_factor: usize,
    /// See [`ControllerLimits`].
    pub limits: ControllerLimits,
}

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

/// See the module docs.
pub struct ControllerState {
    image: MetadataImage,
    config: ControllerConfig,
}

impl ControllerState {
    /// A controller continuing from `image`.
    pub fn new(image: MetadataImage, config: ControllerConfig) -> ControllerState {
        ControllerState { image, config }
    }

    /// The working image: every record decided so far, durable or not yet.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Replaces the working image (after a batch could not be made durable: back to the
    /// last published one).
    pub fn reset(&mut self, image: MetadataImage) {
        self.image = image;
    }

    /// The records a node writes when it starts: a cluster id on first start, an old
    /// `topics.json` migrated, this node's brokers registered, partitions placed anew on a
    /// changed shard count, and `__consumer_offsets` created.
    pub fn startup(
        &mut self,
        legacy: Option<&LegacyCatalog>,
        broker_epoch: i64,
    ) -> Vec<MetadataRecord> {
        let start = NodeStart {
            node_id: self.config.node_id,
            shard_count: self.config.shard_count,
            host: self.config.advertised_host.clone(),
            base_port: self.config.base_port,
            rack: self.config.rack.clone(),
            broker_epoch,
            // A one-node cluster does not persist registrations; its start says it in its
            // own log.
            clean_shutdown: None,
            listeners: self.config.listeners.clone(),
            credentials: Vec::new(),
        };
        self.start_node(legacy, &start)
    }

    /// The credentials of a node's first start that no user has yet for their mechanism
    /// (a password changed or a user removed online is never undone by them; records of
    /// other kinds are ignored).
    fn first_credentials(&self, credentials: &[MetadataRecord]) -> Vec<MetadataRecord> {
        credentials
            .iter()
            .filter(|record| {
                matches!(record, MetadataRecord::ScramCredential { user, mechanism, .. }
                    if self.image.scram_credential(user, *mechanism).is_none())
            })
            .cloned()
            .collect()
    }

    /// [`Self::startup`] for any node of the cluster, as its `StartNode` call describes it.
    pub fn start_node(
        &mut self,
        legacy: Option<&LegacyCatalog>,
        start: &NodeStart,
    ) -> Vec<MetadataRecord> {
        if start.clean_shutdown == Some(false) && start.node_id != self.config.node_id {
            tracing::warn!(
                node = start.node_id.0,
                "node registered after an unclean stop (a crash, kill -9 or power loss): its replicas rejoin the ISR once caught up"
            );
        }
        let mut records = Vec::new();
        if self.image.cluster_id.is_empty() {
            let cluster_id = legacy.map_or_else(
                || Uuid::new_v4().simple().to_string(),
                |legacy| legacy.cluster_id.clone(),
            );
            records.push(MetadataRecord::ClusterId { cluster_id });
        }
        if let Some(legacy) = legacy {
            records.push(MetadataRecord::ProducerIds {
                next: legacy.producer_id_limit.max(self.image.next_producer_id),
            });
        }
        for shard in 0..start.shard_count {
            let id = BrokerId::of_shard(start.node_id, ShardId(shard));
            records.push(MetadataRecord::RegisterBroker(BrokerRegistration {
                id,
                host: start.host.clone(),
                port: start.base_port + shard as u16,
                rack: start.rack.clone(),
                epoch: start.broker_epoch,
                fenced: false,
                clean_shutdown: start.clean_shutdown,
                listeners: start
                    .listeners
                    .iter()
                    .map(|listener| BrokerEndpoint {
                        name: listener.name.clone(),
                        host: listener.host.clone(),
                        port: listener.base_port + shard as u16,
                    })
                    .collect(),
            }));
        }
        records.push(MetadataRecord::Controller {
            broker: BrokerId::of_shard(self.config.node_id, ShardId(0)),
        });
        self.apply(&records);
        let mut more = Vec::new();
        for topic in legacy.map_or(&[][..], |legacy| &legacy.topics) {
            more.extend(TopicImage::creation_records(&self.new_topic(
                &topic.name,
                topic.id,
                topic.partitions,
                1,
                &topic.configs,
            )));
        }
        self.apply(&more);
        records.append(&mut more);
        let mut more = self.replace_partitions(start.node_id, start.shard_count);
        more.extend(self.remap_replicas(start.node_id, start.shard_count));
        // Kafka creates it on first use, with offsets.topic.replication.factor replicas, and
        // refuses to while fewer brokers are alive; a group's coordinator is not available
        // until then.
        let factor = self.config.offsets_topic_replication_factor.max(1);
        if self
            .image
            .topic(crate::groups::offsets_topic::TOPIC)
            .is_none()
            && self.placement_nodes().len().max(1) >= factor
        {
            let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
            more.extend(TopicImage::creation_records(&self.new_topic(
                crate::groups::offsets_topic::TOPIC,
                Uuid::new_v4(),
                self.config.offsets_topic_partitions,
                factor,
                &configs,
            )));
        }
        self.apply(&more);
        records.append(&mut more);
        // Last, once partitions of a changed shard count have moved: partitions without a
        // leader whose ISR holds one of this node's brokers lead again.
        records.append(&mut self.elect_leaderless());
        records
    }

    /// The epoch and fencing of a node's registration (that of its shard 0's broker).
    fn node_registration(&self, node: NodeId) -> Option<(i64, bool)> {
        self.image
            .broker(BrokerId::of_shard(node, ShardId(0)))
            .map(|broker| (broker.epoch, broker.fenced))
    }

    /// AlterUserScramCredentials: every change of a user is made, or none (a deletion of a
    /// credential that does not exist refuses the user's whole part, as Kafka's
    /// ScramControlManager does).
    fn alter_scram_credentials(
        &mut self,
        upsertions: Vec<(String, Mechanism, ScramCredential)>,
        deletions: Vec<(String, Mechanism)>,
    ) -> (Vec<MetadataRecord>, ControllerReply) {
        // Each user's changes in order of first mention, grouped in one pass (a request may
        // name very many users).
        let mut order: Vec<&str> = Vec::new();
        type Part<'a> = (Vec<Mechanism>, Vec<(Mechanism, &'a ScramCredential)>);
        let mut parts: HashMap<&str, Part> = HashMap::new();
        for (user, mechanism) in &deletions {
            let part = parts.entry(user).or_insert_with(|| {
                order.push(user);
                Default::default()
            });
            part.0.push(*mechanism);
        }
        for (user, mechanism, credential) in &upsertions {
            let part = parts.entry(user).or_insert_with(|| {
                order.push(user);
                Default::default()
            });
            part.1.push((*mechanism, credential));
        }
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(order.len());
        for user in order {
            let (removed, set) = &parts[user];
            if removed
                .iter()
                .any(|mechanism| self.image.scram_credential(user, *mechanism).is_none())
            {
                results.push((
                    user.to_string(),
                    Err(ControllerError::ResourceNotFound(
                        "Attempt to delete a user credential that does not exist".into(),
                    )),
                ));
                continue;
            }
            let changes: Vec<MetadataRecord> = removed
                .iter()
                .map(|mechanism| MetadataRecord::RemoveScramCredential {
                    user: user.to_string(),
                    mechanism: *mechanism,
                })
                .chain(
                    set.iter()
                        .map(|(mechanism, credential)| MetadataRecord::ScramCredential {
                            user: user.to_string(),
                            mechanism: *mechanism,
                            credential: (*credential).clone(),
                        }),
                )
                .collect();
            self.apply(&changes);
            records.extend(changes);
            results.push((user.to_string(), Ok(())));
        }
        (records, ControllerReply::AlterScramCredentials(results))
    }

    /// DeleteAcls: every ACL a filter matches goes, all in one batch of records.
    fn delete_acls(&mut self, filters: Vec<AclFilter>) -> (Vec<MetadataRecord>, ControllerReply) {
        let mut removed = std::collections::BTreeSet::new();
        let per_filter = filters
            .iter()
            .map(|filter| {
                self.image
                    .acls()
                    .matching(filter)
                    .filter(|binding| removed.insert((*binding).clone()))
                    .cloned()
                    .collect()
            })
            .collect();
        let records: Vec<MetadataRecord> =
            removed.into_iter().map(MetadataRecord::RemoveAcl).collect();
        self.apply(&records);
        (records, ControllerReply::DeleteAcls(per_filter))
    }

    /// Makes `broker` the controller in the working image (a newly elected quorum leader;
    /// the caller writes the same record).
    pub fn claim_controller(&mut self, broker: BrokerId) {
        self.apply(&[MetadataRecord::Controller { broker }]);
    }

    /// Carries out one request: returns its records (already applied to the working image)
    /// and its answer.
    pub fn handle(&mut self, request: ControllerRequest) -> (Vec<MetadataRecord>, ControllerReply) {
        match request {
            ControllerRequest::CreateTopics {
                topics,
                validate_only,
            } => self.create_topics(topics, validate_only),
            ControllerRequest::DeleteTopics { names } => self.delete_topics(names),
            ControllerRequest::CreatePartitions {
                topics,
                assignments,
                validate_only,
            } => self.create_partitions(topics, assignments, validate_only),
            ControllerRequest::AlterTopicConfigs {
                topics,
                validate_only,
            } => self.alter_configs(topics, validate_only),
            ControllerRequest::AlterScramCredentials {
                upsertions,
                deletions,
            } => self.alter_scram_credentials(upsertions, deletions),
            ControllerRequest::CreateAcls { bindings } => {
                // Each new ACL once, however often the request names it.
                let records: Vec<MetadataRecord> = bindings
                    .into_iter()
                    .filter(|binding| !self.image.acls().contains(binding))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .map(MetadataRecord::Acl)
                    .collect();
                self.apply(&records);
                (records, ControllerReply::CreateAcls)
            }
            ControllerRequest::DeleteAcls { filters } => self.delete_acls(filters),
            ControllerRequest::AlterClientQuotas { changes } => {
                // A record per change that changes something: setting a quota to its
                // value, or removing one that is not there, writes nothing.
                let mut records = Vec::new();
                // Checked again here, as Kafka's ClientQuotaControlManager does (a call may
                // come from any node's handler): what is not valid is left out.
                for (entity, key, value) in changes {
                    let key_valid = |value: f64| key.validate(value).is_ok();
                    if !(entity.user.is_some() || entity.client_id.is_some())
                        || value.is_some_and(|value| !key_valid(value.0))
                    {
                        continue;
                    }
                    let current = self
                        .image
                        .quotas()
                        .get(&entity)
                        .and_then(|values| values.get(key));
                    if current.map(QuotaValue) != value {
                        let record = MetadataRecord::ClientQuota { entity, key, value };
                        self.apply(std::slice::from_ref(&record));
                        records.push(record);
                    }
                }
                (records, ControllerReply::ClientQuotasAltered)
            }
            ControllerRequest::AllocateProducerIds => {
                let start = self.image.next_producer_id;
                let records = vec![MetadataRecord::ProducerIds {
                    next: start + PRODUCER_ID_BLOCK,
                }];
                self.apply(&records);
                (
                    records,
                    ControllerReply::ProducerIds(start..start + PRODUCER_ID_BLOCK),
                )
            }
            ControllerRequest::StartNode(start) => {
                let mut records = self.start_node(None, &start);
                let users = self.first_credentials(&start.credentials);
                self.apply(&users);
                records.extend(users);
                (records, ControllerReply::NodeStarted)
            }
            ControllerRequest::Heartbeat {
                node_id,
                broker_epoch,
            } => {
                let registered = self.node_registration(node_id);
                let records = match registered {
                    Some((epoch, true)) if epoch == broker_epoch => self.unfence(node_id),
                    _ => Vec::new(),
                };
                (records, ControllerReply::Acknowledged)
            }
            ControllerRequest::FenceNode { node_id } => {
                let records = match self.node_registration(node_id) {
                    Some((_, false)) => self.fence(node_id),
                    _ => Vec::new(),
                };
                (records, ControllerReply::Acknowledged)
            }
            ControllerRequest::ControlledShutdown {
                node_id,
                broker_epoch,
            } => {
                let records = match self.node_registration(node_id) {
                    Some((epoch, false)) if epoch == broker_epoch => self.fence(node_id),
                    _ => Vec::new(),
                };
                (records, ControllerReply::Acknowledged)
            }
            ControllerRequest::AlterPartition(change) => {
                // A follower joining the ISR may complete its partition's reassignment.
                let result = self
                    .alter_partition(&change)
                    .map(|assignment| self.complete_reassignment(assignment));
                let records = match &result {
                    Ok(assignment) => {
                        let records = vec![MetadataRecord::PartitionChange {
                            topic_id: change.topic_id,
                            partition: change.partition,
                            assignment: assignment.clone(),
                        }];
                        self.apply(&records);
                        records
                    }
                    Err(_) => Vec::new(),
                };
                (records, ControllerReply::AlterPartition(result))
            }
            ControllerRequest::ElectLeaders {
                preferred,
                partitions,
            } => {
                let (records, results) = self.elect_leaders(preferred, partitions);
                (records, ControllerReply::ElectLeaders(results))
            }
            // The controller task adds the node to the quorum; nothing to record here.
            ControllerRequest::JoinQuorum { .. } => (Vec::new(), ControllerReply::Acknowledged),
            ControllerRequest::AlterReassignments {
                partitions,
                allow_factor_change,
            } => {
                let (records, results) = self.alter_reassignments(partitions, allow_factor_change);
                (records, ControllerReply::AlterReassignments(results))
            }
        }
    }

    fn apply(&mut self, records: &[MetadataRecord]) {
        for record in records {
            if let Err(error) = self.image.apply(record) {
                // The records were made from this very image: refusing one is a bug.
                panic!("the controller made a record its own image refuses: {error}");
            }
        }
    }
}

#[path = "controller_reassign.rs"]
mod reassign;
#[path = "controller_topics.rs"]
mod topics;
pub use topics::validate_topic_name;
#[path = "controller_replication.rs"]
mod replication;
#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
