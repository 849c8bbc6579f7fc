//! The controller's topic requests: CreateTopics (placed by Spate or on the replicas named,
//! `controller_reassign.rs`), DeleteTopics, CreatePartitions and config changes, with
//! Kafka's checks and the node's limits (see `controller.rs`'s module docs). Part of
//! [`ControllerState`]; no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::{
    ConfigChange, ControllerError, ControllerReply, ControllerState, NewTopic, INTERNAL_TOPICS,
    TOPIC_NAME_MAX_CHARS,
};
use crate::metadata::image::TopicImage;
use crate::metadata::records::MetadataRecord;
use crate::partition::BrokerId;

impl ControllerState {
    pub(super) fn create_topics(
        &mut self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> (Vec<MetadataRecord>, ControllerReply) {
        let counts: Vec<i32> = topics
            .iter()
            .map(|topic| topic.partitions.unwrap_or(self.config.default_partitions))
            .collect();
        let requested: u64 = counts.iter().map(|count| (*count).max(0) as u64).sum();
        if requested > u64::from(self.config.limits.partitions_per_request_max) {
            // Kafka fails the whole request (ReplicationControlManager's
            // validateTotalNumberOfPartitions), before placing anything.
            let error = ControllerError::PolicyViolation(format!(
                "Excessively large number of partitions per request: {requested} (at most {}).",
                self.config.limits.partitions_per_request_max
            ));
            let results = topics.iter().map(|_| Err(error.clone())).collect();
            return (Vec::new(), ControllerReply::CreateTopics(results));
        }
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(topics.len());
        for (topic, partitions) in topics.into_iter().zip(counts) {
            let created = if topic.assignments.is_empty() {
                self.check_new_topic(&topic, partitions).map(|factor| {
                    self.new_topic(
                        &topic.name,
                        Uuid::new_v4(),
                        partitions,
                        factor,
                        &topic.configs,
                    )
                })
            } else {
                self.manual_topic(&topic)
            };
            let result = created.map(|created| {
                if !validate_only {
                    let created_records = created.creation_records();
                    self.apply(&created_records);
                    records.extend(created_records);
                }
                Arc::new(created)
            });
            results.push(result);
        }
        (records, ControllerReply::CreateTopics(results))
    }

    /// Checks a topic to create; returns its replication factor.
    pub(super) fn check_new_topic(
        &self,
        topic: &NewTopic,
        partitions: i32,
    ) -> Result<usize, ControllerError> {
        validate_topic_name(&topic.name)?;
        if self.image.topic(&topic.name).is_some() {
            return Err(ControllerError::TopicExists(topic.name.clone()));
        }
        if partitions < 1 {
            return Err(ControllerError::InvalidPartitions(format!(
                "Number of partitions must be larger than 0, got {partitions}."
            )));
        }
        let factor = topic
            .replication_factor
            .filter(|factor| *factor != -1)
            .unwrap_or(1);
        self.check_factor(factor)?;
        crate::topic_config::validate(&topic.configs).map_err(ControllerError::InvalidConfig)?;
        self.check_node_room(partitions)?;
        Ok(factor as usize)
    }

    /// INVALID_REPLICATION_FACTOR unless `factor` replicas fit on distinct live brokers
    /// (shards). Replicas go to distinct nodes first; a factor above the node count puts
    /// some on other shards of the same nodes, with a warning, because Kafka's tools size
    /// internal topics as min(3, brokers) and every shard is a broker to them.
    pub(super) fn check_factor(&self, factor: i16) -> Result<(), ControllerError> {
        let nodes = self.placement_nodes();
        let brokers: usize = nodes.iter().map(|node| node.shard_count as usize).sum();
        let brokers = brokers.max(1);
        if factor < 1 || factor as usize > brokers {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "Unable to replicate the partition {factor} time(s): The target replication factor of {factor} cannot be reached because only {brokers} broker(s) are registered."
            )));
        }
        if factor as usize > nodes.len().max(1) {
            tracing::warn!(
                factor,
                nodes = nodes.len().max(1),
                "more replicas than nodes: some replicas share a node (on distinct shards), and losing that node loses them together"
            );
        }
        Ok(())
    }

    /// POLICY_VIOLATION if `more` partitions would take the node past its limit.
    pub(super) fn check_node_room(&self, more: i32) -> Result<(), ControllerError> {
        let limit = self.config.limits.partitions_per_node_max;
        let total = self.image.partition_count() + more.max(0) as u64;
        if total > limit {
            return Err(ControllerError::PolicyViolation(format!(
                "This node would hold {total} partitions, more than its limit of {limit} (max.broker.partitions): delete topics or raise the limit."
            )));
        }
        Ok(())
    }

    pub(super) fn delete_topics(
        &mut self,
        names: Vec<String>,
    ) -> (Vec<MetadataRecord>, ControllerReply) {
        let mut records = Vec::new();
        let results = names
            .into_iter()
            .map(|name| {
                if INTERNAL_TOPICS.contains(&name.as_str()) {
                    return Err(ControllerError::InternalTopic(format!(
                        "Topic {name} is internal and cannot be deleted."
                    )));
                }
                let id = self
                    .image
                    .topic(&name)
                    .ok_or(ControllerError::UnknownTopic)?
                    .id;
                let removal = [MetadataRecord::RemoveTopic { topic_id: id }];
                self.apply(&removal);
                records.extend(removal);
                Ok(id)
            })
            .collect();
        (records, ControllerReply::DeleteTopics(results))
    }

    pub(super) fn create_partitions(
        &mut self,
        topics: Vec<(String, i32)>,
        assignments: Vec<Option<Vec<Vec<BrokerId>>>>,
        validate_only: bool,
    ) -> (Vec<MetadataRecord>, ControllerReply) {
        let mut records = Vec::new();
        let mut assignments = assignments.into_iter();
        let results = topics
            .into_iter()
            .map(|(name, total)| {
                let assigned = assignments.next().flatten();
                let added = self.check_new_partitions(&name, total, assigned.as_deref())?;
                if !validate_only {
                    self.apply(&added);
                    records.extend(added);
                }
                Ok(())
            })
            .collect();
        (records, ControllerReply::CreatePartitions(results))
    }

    /// The records that grow a topic to `total` partitions, after checking that it may; the
    /// new partitions on the replicas `assigned` names, if it does.
    pub(super) fn check_new_partitions(
        &self,
        name: &str,
        total: i32,
        assigned: Option<&[Vec<BrokerId>]>,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        if INTERNAL_TOPICS.contains(&name) {
            return Err(ControllerError::InternalTopic(format!(
                "Cannot change the partition count of the internal topic {name}."
            )));
        }
        let topic = self
            .image
            .topic(name)
            .ok_or(ControllerError::UnknownTopic)?;
        let current = topic.partition_count();
        if total <= current {
            return Err(ControllerError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than or equal to the requested {total}."
            )));
        }
        let added = total - current;
        if added as u64 > u64::from(self.config.limits.partitions_per_request_max) {
            return Err(ControllerError::PolicyViolation(format!(
                "Excessively large number of partitions per request: {added} (at most {}).",
                self.config.limits.partitions_per_request_max
            )));
        }
        self.check_node_room(added)?;
        // New partitions take the topic's replication factor (that of its first partition).
        let factor = topic
            .partitions
            .first()
            .map_or(1, |first| first.replicas.len());
        let assignments = match assigned {
            Some(assigned) => self.manual_partitions(current, added, factor, assigned)?,
            None => {
                self.check_factor(factor as i16)?;
                (current..total)
                    .map(|partition| self.placement(name, partition, factor))
                    .collect()
            }
        };
        Ok(vec![MetadataRecord::Partitions {
            topic_id: topic.id,
            first: current,
            assignments,
        }])
    }

    pub(super) fn alter_configs(
        &mut self,
        topics: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> (Vec<MetadataRecord>, ControllerReply) {
        let mut records = Vec::new();
        let results = topics
            .into_iter()
            .map(|(name, change)| {
                let topic = self
                    .image
                    .topic(&name)
                    .ok_or(ControllerError::UnknownTopic)?;
                let configs = match change {
                    ConfigChange::Replace(configs) => configs,
                    ConfigChange::Incremental(operations) => {
                        crate::topic_config::apply_incremental(&topic.configs, &operations)
                            .map_err(ControllerError::InvalidConfig)?
                    }
                };
                crate::topic_config::validate(&configs).map_err(ControllerError::InvalidConfig)?;
                if validate_only || configs == topic.configs {
                    return Ok(());
                }
                let change = [MetadataRecord::TopicConfigs {
                    topic_id: topic.id,
                    configs,
                }];
                self.apply(&change);
                records.extend(change);
                Ok(())
            })
            .collect();
        (records, ControllerReply::AlterTopicConfigs(results))
    }

    /// A new topic, its partitions placed by the default policy.
    pub(super) fn new_topic(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        factor: usize,
        configs: &BTreeMap<String, String>,
    ) -> TopicImage {
        TopicImage {
            name: name.to_string(),
            id,
            configs: configs.clone(),
            partitions: (0..partitions.max(0))
                .map(|partition| self.placement(name, partition, factor))
                .collect(),
        }
    }
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |why: String| Err(ControllerError::InvalidTopic(why));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.chars().count() > TOPIC_NAME_MAX_CHARS {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_MAX_CHARS} characters, topic name: {name}"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return invalid(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}
