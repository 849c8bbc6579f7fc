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
//! later `__transaction_state`) that clients may neither delete nor repartition. The requests,
//! answers and errors themselves are in `controller_messages.rs`.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::image::{BrokerEndpoint, BrokerRegistration, MetadataImage, TopicImage};
use super::records::MetadataRecord;
use super::store::LegacyCatalog;
use crate::partition::{BrokerId, NodeId, ShardId};
use crate::quota::store::QuotaValue;
use crate::security::acl::AclFilter;
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

#[path = "controller_messages.rs"]
mod messages;
pub use messages::{
    ConfigChange, ControllerError, ControllerReply, ControllerRequest, IsrChange, NewTopic,
    NodeStart, ReassignmentTarget,
};

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
