//! The metadata image: an immutable, versioned picture of the cluster that every shard reads.
//!
//! An image is built by applying [`MetadataRecord`]s in order ([`MetadataImage::apply`]);
//! its `version` is the number of records applied. Images are shared as
//! `Arc<MetadataImage>` and never changed in place: the controller applies a batch of records
//! to a copy and publishes the copy. Copies are cheap: topics and brokers sit behind `Arc`s,
//! so a copy clones the maps' pointers, not their contents.
//!
//! Concurrency contract: `Send + Sync`, immutable once published; each shard keeps the newest
//! image it has applied (`PartitionTable::image`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::records::MetadataRecord;
use crate::partition::{BrokerId, LeaderEpoch};
use crate::quota::store::{QuotaStore, QuotaValue};
use crate::security::acl::AclStore;
use crate::security::scram::{Mechanism, ScramCredential};

/// A broker (a shard of some node) that clients can connect to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// Its broker id.
    pub id: BrokerId,
    /// Host clients are told to connect to.
    pub host: String,
    /// Port clients are told to connect to.
    pub port: u16,
    /// Rack, for rack-aware clients and placement; `None` when unset.
    pub rack: Option<String>,
    /// Bumped each time the broker registers again (a restart), so that state left by an
    /// earlier incarnation can be told apart.
    pub epoch: i64,
    /// Set by the controller when the broker's node stopped heartbeating: clients are not
    /// told about it and nothing new is placed on it until it heartbeats again.
    #[serde(default)]
    pub fenced: bool,
    /// Whether the node's run before this registration stopped cleanly (`None`: its first
    /// start, or not known). Information for operators: replicas report only what they
    /// fdatasync'ed, so an unclean stop loses nothing they were counted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_shutdown: Option<bool>,
    /// What the broker advertises on each of its node's listeners (`--listeners`). Empty in
    /// registrations written before listeners existed: `host` and `port` then serve every
    /// listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<BrokerEndpoint>,
}

/// A broker's host and port on one listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// The listener's name (its security protocol).
    pub name: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

impl BrokerRegistration {
    /// Where clients of `listener` reach this broker; `None` when the broker's node has no
    /// such listener (Kafka leaves such brokers out of what that listener's clients see).
    pub fn endpoint(&self, listener: &str) -> Option<(&str, u16)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners
            .iter()
            .find(|endpoint| endpoint.name == listener)
            .map(|endpoint| (endpoint.host.as_str(), endpoint.port))
    }
}

/// Where a partition's replicas live and which one leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    /// Every replica, preferred leader first.
    pub replicas: Vec<BrokerId>,
    /// The in-sync replicas.
    pub isr: Vec<BrokerId>,
    /// The leader.
    pub leader: BrokerId,
    /// Bumped each time the leader changes.
    pub leader_epoch: LeaderEpoch,
    /// Bumped on every change of this assignment: the precondition of the next change.
    pub partition_epoch: i32,
    /// During a reassignment (KIP-455): the replicas being added, which `replicas` already
    /// holds; the reassignment completes once all of them are in the ISR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<BrokerId>,
    /// During a reassignment: the replicas to drop from `replicas` when it completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<BrokerId>,
}

impl PartitionAssignment {
    /// A new partition led by `leader` alone.
    pub fn single(leader: BrokerId) -> PartitionAssignment {
        PartitionAssignment {
            replicas: vec![leader],
            isr: vec![leader],
            leader,
            leader_epoch: LeaderEpoch::INITIAL,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// A new partition on `replicas`, all in sync, led by the first.
    pub fn replicated(replicas: Vec<BrokerId>) -> PartitionAssignment {
        PartitionAssignment {
            isr: replicas.clone(),
            leader: replicas[0],
            replicas,
            leader_epoch: LeaderEpoch::INITIAL,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// The leader of a partition that has none (every in-sync replica is fenced).
    pub const NO_LEADER: BrokerId = BrokerId(-1);

    /// The same replicas with a changed leader and ISR: the leader epoch moves on when the
    /// leader changes, the partition epoch on every change.
    pub fn changed(&self, leader: BrokerId, isr: Vec<BrokerId>) -> PartitionAssignment {
        PartitionAssignment {
            replicas: self.replicas.clone(),
            isr,
            leader,
            leader_epoch: if leader == self.leader {
                self.leader_epoch
            } else {
                self.leader_epoch.next()
            },
            partition_epoch: self.partition_epoch + 1,
            adding: self.adding.clone(),
            removing: self.removing.clone(),
        }
    }

    /// The same partition led by `leader` from the next leader epoch on.
    pub fn moved_to(&self, leader: BrokerId) -> PartitionAssignment {
        PartitionAssignment {
            replicas: vec![leader],
            isr: vec![leader],
            leader,
            leader_epoch: self.leader_epoch.next(),
            partition_epoch: self.partition_epoch + 1,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// Whether a reassignment of this partition is under way.
    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }
}

/// One topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// Its name.
    pub name: String,
    /// Kafka's topic id; tells a re-created topic from an old one of the same name.
    pub id: Uuid,
    /// Config overrides by Kafka name.
    pub configs: BTreeMap<String, String>,
    /// Partitions by index.
    pub partitions: Vec<PartitionAssignment>,
}

impl TopicImage {
    /// Number of partitions.
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }

    /// The records that create this topic: the topic, then its partitions.
    pub fn creation_records(&self) -> [MetadataRecord; 2] {
        [
            MetadataRecord::Topic {
                name: self.name.clone(),
                id: self.id,
                configs: self.configs.clone(),
            },
            MetadataRecord::Partitions {
                topic_id: self.id,
                first: 0,
                assignments: self.partitions.clone(),
            },
        ]
    }

    /// A partition's assignment, if the index is in range.
    pub fn partition(&self, index: i32) -> Option<&PartitionAssignment> {
        usize::try_from(index)
            .ok()
            .and_then(|index| self.partitions.get(index))
    }
}

/// Why a record cannot be applied to an image. Records come from our own controller or our
/// own files, so this is corruption or a bug; it stops the start with this message.
#[derive(Debug, thiserror::Error)]
#[error("metadata record #{version} ({record}) cannot be applied: {reason}")]
pub struct ApplyError {
    /// The version the record would have had.
    pub version: u64,
    /// The record, described.
    pub record: String,
    /// What is wrong.
    pub reason: String,
}

/// See the module docs.
#[derive(Clone, Debug, Default)]
pub struct MetadataImage {
    /// Records applied so far.
    pub version: u64,
    /// The cluster id clients see in Metadata and DescribeCluster.
    pub cluster_id: String,
    /// The broker that answers as controller in Metadata and DescribeCluster.
    pub controller: Option<BrokerId>,
    brokers: BTreeMap<BrokerId, Arc<BrokerRegistration>>,
    topics: BTreeMap<String, Arc<TopicImage>>,
    names_by_id: HashMap<Uuid, String>,
    partition_count: u64,
    /// The first producer id not yet given out in a block.
    pub next_producer_id: i64,
    /// SCRAM credentials by user and mechanism (`crate::security`); behind an `Arc` like the
    /// rest, since they change far less often than the image.
    scram: Arc<BTreeMap<(String, Mechanism), ScramCredential>>,
    /// ACLs (`crate::security::acl`), indexed for the authorizer.
    acls: Arc<AclStore>,
    /// Client quotas (`crate::quota`), indexed for each request's lookup.
    quotas: Arc<QuotaStore>,
}

impl MetadataImage {
    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicImage>> {
        self.names_by_id
            .get(&id)
            .and_then(|name| self.topics.get(name))
    }

    /// Every topic, by name.
    pub fn topics(&self) -> impl ExactSizeIterator<Item = &Arc<TopicImage>> {
        self.topics.values()
    }

    /// A partition's assignment.
    pub fn partition(&self, topic: &str, index: i32) -> Option<&PartitionAssignment> {
        self.topic(topic)?.partition(index)
    }

    /// The ACLs.
    pub fn acls(&self) -> &AclStore {
        &self.acls
    }

    /// The client quotas.
    pub fn quotas(&self) -> &QuotaStore {
        &self.quotas
    }

    /// A user's SCRAM credential for a mechanism.
    pub fn scram_credential(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.scram.get(&(user.to_string(), mechanism)).cloned()
    }

    /// Every stored SCRAM credential, by user, then mechanism.
    pub fn scram_credentials(
        &self,
    ) -> impl Iterator<Item = (&str, Mechanism, &ScramCredential)> + '_ {
        self.scram
            .iter()
            .map(|((user, mechanism), credential)| (user.as_str(), *mechanism, credential))
    }

    /// SASL/PLAIN: whether `password` is `user`'s, by any of the user's SCRAM credentials
    /// (the strongest first).
    pub fn verifies_password(&self, user: &str, password: &str) -> bool {
        [Mechanism::ScramSha512, Mechanism::ScramSha256]
            .into_iter()
            .find_map(|mechanism| {
                self.scram
                    .get(&(user.to_string(), mechanism))
                    .map(|credential| credential.verifies_password(mechanism, password))
            })
            .unwrap_or(false)
    }

    /// Partitions of every topic together.
    pub fn partition_count(&self) -> u64 {
        self.partition_count
    }

    /// Every registered broker, by id.
    pub fn brokers(&self) -> impl ExactSizeIterator<Item = &Arc<BrokerRegistration>> {
        self.brokers.values()
    }

    /// A broker by id.
    pub fn broker(&self, id: BrokerId) -> Option<&Arc<BrokerRegistration>> {
        self.brokers.get(&id)
    }

    /// Whether `id` is registered and not fenced: a broker clients may be sent to.
    pub fn is_live(&self, id: BrokerId) -> bool {
        self.brokers.get(&id).is_some_and(|broker| !broker.fenced)
    }

    /// Applies records in order; on error the image is left as it was.
    pub fn apply_all<'a>(
        &self,
        records: impl IntoIterator<Item = &'a MetadataRecord>,
    ) -> Result<MetadataImage, ApplyError> {
        let mut next = self.clone();
        for record in records {
            next.apply(record)?;
        }
        Ok(next)
    }

    /// Applies one record, in place: for the controller's working copy and for loading.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        let version = self.version + 1;
        let refuse = |reason: String| ApplyError {
            version,
            record: record.describe(),
            reason,
        };
        match record {
            MetadataRecord::ClusterId { cluster_id } => self.cluster_id = cluster_id.clone(),
            MetadataRecord::Controller { broker } => self.controller = Some(*broker),
            MetadataRecord::RegisterBroker(registration) => {
                self.brokers
                    .insert(registration.id, Arc::new(registration.clone()));
            }
            MetadataRecord::UnregisterBroker { broker } => {
                self.brokers.remove(broker);
            }
            MetadataRecord::NodeFencing { node, fenced } => {
                for registration in self.brokers.values_mut() {
                    if registration.id.node() == *node {
                        Arc::make_mut(registration).fenced = *fenced;
                    }
                }
            }
            MetadataRecord::Topic { name, id, configs } => {
                if self.topics.contains_key(name) || self.names_by_id.contains_key(id) {
                    return Err(refuse("the topic exists".into()));
                }
                self.names_by_id.insert(*id, name.clone());
                let topic = TopicImage {
                    name: name.clone(),
                    id: *id,
                    configs: configs.clone(),
                    partitions: Vec::new(),
                };
                self.topics.insert(name.clone(), Arc::new(topic));
            }
            MetadataRecord::Partitions {
                topic_id,
                first,
                assignments,
            } => {
                let topic = self
                    .topic_mut(*topic_id)
                    .ok_or_else(|| refuse("no such topic".into()))?;
                if *first != topic.partition_count() {
                    return Err(refuse(format!(
                        "the topic has {} partitions",
                        topic.partition_count()
                    )));
                }
                topic.partitions.extend(assignments.iter().cloned());
                self.partition_count += assignments.len() as u64;
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                assignment,
            } => {
                let topic = self
                    .topic_mut(*topic_id)
                    .ok_or_else(|| refuse("no such topic".into()))?;
                let slot = usize::try_from(*partition)
                    .ok()
                    .and_then(|index| topic.partitions.get_mut(index))
                    .ok_or_else(|| refuse("no such partition".into()))?;
                *slot = assignment.clone();
            }
            MetadataRecord::TopicConfigs { topic_id, configs } => {
                let topic = self
                    .topic_mut(*topic_id)
                    .ok_or_else(|| refuse("no such topic".into()))?;
                topic.configs = configs.clone();
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let name = self
                    .names_by_id
                    .remove(topic_id)
                    .ok_or_else(|| refuse("no such topic".into()))?;
                if let Some(topic) = self.topics.remove(&name) {
                    self.partition_count -= topic.partitions.len() as u64;
                }
            }
            MetadataRecord::ProducerIds { next } => {
                if *next < self.next_producer_id {
                    return Err(refuse(format!(
                        "producer ids would go back from {}",
                        self.next_producer_id
                    )));
                }
                self.next_producer_id = *next;
            }
            MetadataRecord::ScramCredential {
                user,
                mechanism,
                credential,
            } => {
                Arc::make_mut(&mut self.scram)
                    .insert((user.clone(), *mechanism), credential.clone());
            }
            MetadataRecord::RemoveScramCredential { user, mechanism } => {
                Arc::make_mut(&mut self.scram).remove(&(user.clone(), *mechanism));
            }
            MetadataRecord::Acl(binding) => {
                Arc::make_mut(&mut self.acls).insert(binding.clone());
            }
            MetadataRecord::RemoveAcl(binding) => {
                Arc::make_mut(&mut self.acls).remove(binding);
            }
            MetadataRecord::ClientQuota { entity, key, value } => {
                Arc::make_mut(&mut self.quotas).set(entity, *key, value.map(|value| value.0));
            }
        }
        self.version = version;
        Ok(())
    }

    /// Records that rebuild this image from an empty one: a snapshot in KRaft's way (the
    /// controller quorum ships and stores snapshots as records). Applying them to
    /// `MetadataImage::default()` gives an image equal to this one except for `version`, which
    /// [`Self::from_snapshot`] restores.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut records = Vec::with_capacity(3 + self.brokers.len() + 2 * self.topics.len());
        if !self.cluster_id.is_empty() {
            records.push(MetadataRecord::ClusterId {
                cluster_id: self.cluster_id.clone(),
            });
        }
        for broker in self.brokers.values() {
            records.push(MetadataRecord::RegisterBroker((**broker).clone()));
        }
        if let Some(broker) = self.controller {
            records.push(MetadataRecord::Controller { broker });
        }
        if self.next_producer_id != 0 {
            records.push(MetadataRecord::ProducerIds {
                next: self.next_producer_id,
            });
        }
        for topic in self.topics.values() {
            records.extend(topic.creation_records());
        }
        for ((user, mechanism), credential) in self.scram.iter() {
            records.push(MetadataRecord::ScramCredential {
                user: user.clone(),
                mechanism: *mechanism,
                credential: credential.clone(),
            });
        }
        records.extend(self.acls.iter().cloned().map(MetadataRecord::Acl));
        for (entity, values) in self.quotas.iter() {
            records.extend(
                values
                    .iter()
                    .map(|(key, value)| MetadataRecord::ClientQuota {
                        entity: entity.clone(),
                        key,
                        value: Some(QuotaValue(value)),
                    }),
            );
        }
        records
    }

    /// Records that take `previous` to this image as far as shards act on them: topics
    /// removed, partitions changed, configs replaced, topics and partitions added. A member
    /// that installs a snapshot jumps from one image to another without the records between;
    /// these stand in for them, so that each shard's partition table retires and reconfigures
    /// what it should.
    pub fn changes_since(&self, previous: &MetadataImage) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for (id, name) in &previous.names_by_id {
            if !self.names_by_id.contains_key(id) {
                tracing::trace!(topic = %name, "removed in a snapshot");
                records.push(MetadataRecord::RemoveTopic { topic_id: *id });
            }
        }
        for topic in self.topics.values() {
            let Some(before) = previous.topic_by_id(topic.id) else {
                records.extend(topic.creation_records());
                continue;
            };
            if before.configs != topic.configs {
                records.push(MetadataRecord::TopicConfigs {
                    topic_id: topic.id,
                    configs: topic.configs.clone(),
                });
            }
            for (index, assignment) in topic.partitions.iter().enumerate() {
                match before.partitions.get(index) {
                    Some(old) if old == assignment => {}
                    Some(_) => records.push(MetadataRecord::PartitionChange {
                        topic_id: topic.id,
                        partition: index as i32,
                        assignment: assignment.clone(),
                    }),
                    None => {}
                }
            }
            if topic.partitions.len() > before.partitions.len() {
                records.push(MetadataRecord::Partitions {
                    topic_id: topic.id,
                    first: before.partition_count(),
                    assignments: topic.partitions[before.partitions.len()..].to_vec(),
                });
            }
        }
        records
    }

    /// The image that [`Self::to_records`] described, at `version`.
    pub fn from_snapshot(version: u64, records: &[MetadataRecord]) -> Result<Self, ApplyError> {
        let mut image = MetadataImage::default().apply_all(records)?;
        image.version = version;
        Ok(image)
    }

    fn topic_mut(&mut self, id: Uuid) -> Option<&mut TopicImage> {
        let name = self.names_by_id.get(&id)?;
        self.topics.get_mut(name).map(Arc::make_mut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{NodeId, ShardId};

    fn broker(shard: u32) -> BrokerId {
        BrokerId::of_shard(NodeId(0), ShardId(shard))
    }

    #[test]
    fn records_build_topics_and_assignments() {
        let id = Uuid::new_v4();
        let records = vec![
            MetadataRecord::ClusterId {
                cluster_id: "c".into(),
            },
            MetadataRecord::Topic {
                name: "orders".into(),
                id,
                configs: BTreeMap::new(),
            },
            MetadataRecord::Partitions {
                topic_id: id,
                first: 0,
                assignments: vec![PartitionAssignment::single(broker(0)); 3],
            },
            MetadataRecord::PartitionChange {
                topic_id: id,
                partition: 1,
                assignment: PartitionAssignment::single(broker(0)).moved_to(broker(1)),
            },
        ];
        let image = MetadataImage::default().apply_all(&records).unwrap();
        assert_eq!(image.version, 4);
        assert_eq!(image.partition_count(), 3);
        let moved = image.partition("orders", 1).unwrap();
        assert_eq!(
            (moved.leader, moved.leader_epoch),
            (broker(1), LeaderEpoch(1))
        );
        assert_eq!(image.topic_by_id(id).unwrap().name, "orders");
        let removed = image
            .apply_all(&[MetadataRecord::RemoveTopic { topic_id: id }])
            .unwrap();
        assert!(removed.topic("orders").is_none());
        assert_eq!(removed.partition_count(), 0);
        assert!(
            image.topic("orders").is_some(),
            "the old image is unchanged"
        );
    }

    #[test]
    fn an_image_survives_its_snapshot_records() {
        let id = Uuid::new_v4();
        let records = vec![
            MetadataRecord::ClusterId {
                cluster_id: "c".into(),
            },
            MetadataRecord::RegisterBroker(BrokerRegistration {
                id: broker(1),
                host: "127.0.0.1".into(),
                port: 9093,
                rack: Some("r1".into()),
                epoch: 7,
                fenced: true,
                clean_shutdown: Some(false),
                listeners: vec![BrokerEndpoint {
                    name: "SASL_PLAINTEXT".into(),
                    host: "h".into(),
                    port: 9193,
                }],
            }),
            MetadataRecord::Controller { broker: broker(1) },
            MetadataRecord::ScramCredential {
                user: "alice".into(),
                mechanism: Mechanism::ScramSha512,
                credential: ScramCredential::from_password(
                    Mechanism::ScramSha512,
                    "secret",
                    b"salt",
                    4096,
                ),
            },
            MetadataRecord::ProducerIds { next: 3000 },
            MetadataRecord::Acl(crate::security::acl::AclBinding {
                resource_type: crate::security::acl::ResourceType::Topic,
                resource_name: "orders".into(),
                pattern_type: crate::security::acl::PatternType::Prefixed,
                principal: "User:alice".into(),
                host: "*".into(),
                operation: crate::security::acl::AclOperation::Write,
                permission: crate::security::acl::AclPermission::Allow,
            }),
            MetadataRecord::ClientQuota {
                entity: crate::quota::store::QuotaEntity {
                    user: Some(crate::quota::store::EntityName::Name("alice".into())),
                    client_id: Some(crate::quota::store::EntityName::Default),
                },
                key: crate::quota::QuotaKey::ProducerByteRate,
                value: Some(QuotaValue(1024.0)),
            },
            MetadataRecord::Topic {
                name: "orders".into(),
                id,
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            },
            MetadataRecord::Partitions {
                topic_id: id,
                first: 0,
                assignments: vec![PartitionAssignment::single(broker(0)); 2],
            },
            MetadataRecord::PartitionChange {
                topic_id: id,
                partition: 1,
                assignment: PartitionAssignment::single(broker(0)).moved_to(broker(1)),
            },
            MetadataRecord::Topic {
                name: "empty".into(),
                id: Uuid::new_v4(),
                configs: BTreeMap::new(),
            },
        ];
        let image = MetadataImage::default().apply_all(&records).unwrap();
        let copy = MetadataImage::from_snapshot(image.version, &image.to_records()).unwrap();
        assert_eq!(copy.version, image.version);
        assert_eq!(copy.to_records(), image.to_records());
        assert_eq!(copy.cluster_id, "c");
        assert_eq!(copy.controller, Some(broker(1)));
        assert_eq!(copy.next_producer_id, 3000);
        assert_eq!(copy.partition_count(), 2);
        assert_eq!(copy.acls().iter().len(), 1);
        assert_eq!(copy.quotas().iter().len(), 1);
        assert!(copy.verifies_password("alice", "secret"));
        assert!(!copy.verifies_password("alice", "wrong"));
        assert_eq!(
            copy.broker(broker(1)).unwrap().endpoint("SASL_PLAINTEXT"),
            Some(("h", 9193))
        );
        assert_eq!(copy.broker(broker(1)).unwrap().endpoint("PLAINTEXT"), None);
        assert_eq!(copy.broker(broker(1)).unwrap().rack.as_deref(), Some("r1"));
        assert_eq!(copy.partition("orders", 1), image.partition("orders", 1));
        assert_eq!(copy.topic_by_id(id).unwrap().configs.len(), 1);
        assert!(copy.topic("empty").is_some());
    }

    #[test]
    fn changes_since_takes_one_image_to_another() {
        let kept = Uuid::new_v4();
        let gone = Uuid::new_v4();
        let topic = |name: &str, id: Uuid, partitions: usize| {
            vec![
                MetadataRecord::Topic {
                    name: name.into(),
                    id,
                    configs: BTreeMap::new(),
                },
                MetadataRecord::Partitions {
                    topic_id: id,
                    first: 0,
                    assignments: vec![PartitionAssignment::single(broker(0)); partitions],
                },
            ]
        };
        let mut before_records = topic("kept", kept, 2);
        before_records.extend(topic("gone", gone, 1));
        let before = MetadataImage::default().apply_all(&before_records).unwrap();
        let mut later = vec![
            MetadataRecord::RemoveTopic { topic_id: gone },
            MetadataRecord::PartitionChange {
                topic_id: kept,
                partition: 1,
                assignment: PartitionAssignment::single(broker(0)).moved_to(broker(1)),
            },
            MetadataRecord::TopicConfigs {
                topic_id: kept,
                configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
            },
            MetadataRecord::Partitions {
                topic_id: kept,
                first: 2,
                assignments: vec![PartitionAssignment::single(broker(1))],
            },
        ];
        later.extend(topic("new", Uuid::new_v4(), 3));
        let after = before.apply_all(&later).unwrap();
        let changes = after.changes_since(&before);
        let replayed = before.apply_all(&changes).unwrap();
        assert_eq!(replayed.to_records(), after.to_records(), "{changes:#?}");
        assert!(after.changes_since(&after).is_empty());
    }

    #[test]
    fn inconsistent_records_are_refused_and_change_nothing() {
        let id = Uuid::new_v4();
        let image = MetadataImage::default();
        let error = image
            .apply_all(&[MetadataRecord::Partitions {
                topic_id: id,
                first: 0,
                assignments: vec![],
            }])
            .unwrap_err();
        assert!(error.to_string().contains("no such topic"), "{error}");
        assert!(image
            .apply_all(&[MetadataRecord::ProducerIds { next: -5 }])
            .is_err());
    }
}
