//! Metadata records: every change to the cluster's metadata, as the controller writes it.
//!
//! These mirror KRaft's record types (`TopicRecord`, `PartitionRecord`,
//! `PartitionChangeRecord`, `ConfigRecord`, `RemoveTopicRecord`, `ProducerIdsRecord`,
//! `RegisterBrokerRecord`), so that the replicated controller quorum can carry the same
//! records in its log. They are serialized as JSON (serde): metadata is small and rarely
//! written, and a readable journal helps an operator more than a compact one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::image::{BrokerRegistration, PartitionAssignment};
use crate::partition::{BrokerId, NodeId};
use crate::quota::store::{QuotaEntity, QuotaKey, QuotaValue};
use crate::security::acl::AclBinding;
use crate::security::scram::{Mechanism, ScramCredential};

/// One metadata change; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The cluster's id, written once when the cluster is first formed.
    ClusterId {
        /// The id.
        cluster_id: String,
    },
    /// Which broker answers as the controller.
    Controller {
        /// Its broker id.
        broker: BrokerId,
    },
    /// A broker registered (at start).
    RegisterBroker(BrokerRegistration),
    /// A broker left the cluster.
    UnregisterBroker {
        /// Its broker id.
        broker: BrokerId,
    },
    /// Every broker of a node was fenced (it stopped heartbeating) or unfenced (it is back).
    NodeFencing {
        /// The node.
        node: NodeId,
        /// Fenced or not.
        fenced: bool,
    },
    /// A topic was created (its partitions follow in [`MetadataRecord::Partitions`]).
    Topic {
        /// Its name.
        name: String,
        /// Its id.
        id: Uuid,
        /// Config overrides.
        configs: BTreeMap<String, String>,
    },
    /// Partitions `first..first + assignments.len()` of a topic were created.
    Partitions {
        /// The topic.
        topic_id: Uuid,
        /// The first new partition's index: the topic's partition count before.
        first: i32,
        /// Each new partition's assignment.
        assignments: Vec<PartitionAssignment>,
    },
    /// A partition's assignment changed (leader, epoch, replicas or ISR).
    PartitionChange {
        /// The topic.
        topic_id: Uuid,
        /// The partition.
        partition: i32,
        /// The whole new assignment.
        assignment: PartitionAssignment,
    },
    /// A topic's config overrides were replaced.
    TopicConfigs {
        /// The topic.
        topic_id: Uuid,
        /// The whole new set of overrides.
        configs: BTreeMap<String, String>,
    },
    /// A topic was deleted.
    RemoveTopic {
        /// The topic.
        topic_id: Uuid,
    },
    /// Producer ids below `next` have been given out (in blocks, to shards).
    ProducerIds {
        /// The first id not given out.
        next: i64,
    },
    /// A user's SCRAM credential for a mechanism was set (Kafka's `UserScramCredentialRecord`).
    ScramCredential {
        /// The user.
        user: String,
        /// The mechanism.
        mechanism: Mechanism,
        /// Salt, iterations and the derived keys (never the password).
        credential: ScramCredential,
    },
    /// A user's SCRAM credential for a mechanism was removed.
    RemoveScramCredential {
        /// The user.
        user: String,
        /// The mechanism.
        mechanism: Mechanism,
    },
    /// An ACL was added (Kafka's `AccessControlEntryRecord`).
    Acl(AclBinding),
    /// An ACL was removed.
    RemoveAcl(AclBinding),
    /// A client quota was set or removed (Kafka's `ClientQuotaRecord`).
    ClientQuota {
        /// Whom it binds.
        entity: QuotaEntity,
        /// What it bounds.
        key: QuotaKey,
        /// The bound; `None` removes the quota.
        value: Option<QuotaValue>,
    },
}

impl MetadataRecord {
    /// Whether the record must survive a restart. Broker registrations and the controller's
    /// identity are made again at every start, so a single node never writes them: a node can
    /// then start on a full disk.
    pub fn is_durable(&self) -> bool {
        !matches!(
            self,
            MetadataRecord::RegisterBroker(_)
                | MetadataRecord::UnregisterBroker { .. }
                | MetadataRecord::NodeFencing { .. }
                | MetadataRecord::Controller { .. }
        )
    }

    /// A short description for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            MetadataRecord::ClusterId { cluster_id } => format!("cluster id {cluster_id}"),
            MetadataRecord::Controller { broker } => format!("controller {broker}"),
            MetadataRecord::RegisterBroker(registration) => {
                format!("register broker {}", registration.id)
            }
            MetadataRecord::UnregisterBroker { broker } => format!("unregister broker {broker}"),
            MetadataRecord::NodeFencing { node, fenced } => {
                format!(
                    "{} node {}",
                    if *fenced { "fence" } else { "unfence" },
                    node.0
                )
            }
            MetadataRecord::Topic { name, id, .. } => format!("topic {name} ({id})"),
            MetadataRecord::Partitions {
                topic_id,
                first,
                assignments,
            } => format!(
                "partitions {first}..{} of {topic_id}",
                *first as usize + assignments.len()
            ),
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                ..
            } => format!("change of partition {partition} of {topic_id}"),
            MetadataRecord::TopicConfigs { topic_id, .. } => format!("configs of {topic_id}"),
            MetadataRecord::RemoveTopic { topic_id } => format!("removal of {topic_id}"),
            MetadataRecord::ProducerIds { next } => format!("producer ids up to {next}"),
            MetadataRecord::ScramCredential {
                user, mechanism, ..
            } => format!("{} credential of {user}", mechanism.name()),
            MetadataRecord::RemoveScramCredential { user, mechanism } => {
                format!("removal of the {} credential of {user}", mechanism.name())
            }
            MetadataRecord::Acl(binding) => format!("ACL {}", binding.describe()),
            MetadataRecord::RemoveAcl(binding) => format!("removal of ACL {}", binding.describe()),
            MetadataRecord::ClientQuota { entity, key, value } => match value {
                Some(value) => format!("quota {}={} of {}", key.name(), value.0, entity.describe()),
                None => format!("removal of quota {} of {}", key.name(), entity.describe()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_json() {
        let record = MetadataRecord::Partitions {
            topic_id: Uuid::new_v4(),
            first: 2,
            assignments: vec![PartitionAssignment::single(BrokerId(1025))],
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.starts_with(r#"{"type":"partitions""#), "{json}");
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&json).unwrap(),
            record
        );
    }
}
