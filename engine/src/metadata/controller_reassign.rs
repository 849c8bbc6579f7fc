//! Replicas named by clients: partition reassignment, and CreateTopics' explicit
//! assignments ([`ControllerState::manual_topic`]).
//!
//! Partition reassignment (KIP-455, Kafka's `ReplicationControlManager` and
//! `PartitionReassignmentReplicas`): an operator names the replicas a partition should end
//! with; the controller adds the new ones to its replicas at once (they start fetching as
//! followers), and once every one of them is in the ISR it drops the old ones, electing a new
//! leader if the old one goes. Part of [`ControllerState`]; no I/O.
//!
//! While a reassignment runs, `replicas` is the target followed by the replicas being
//! removed, `adding` the target's new replicas and `removing` the old ones that go (Kafka's
//! layout, which Metadata and ListPartitionReassignments show as is). acks=all and the high
//! watermark follow the ISR as always, so a reassignment never makes an acknowledged record
//! depend on a replica that is not yet in sync.
//!
//! One limit of Spate's own: a replica's directory depends on its rank among its node's
//! replicas (`partition::table::replica_dir`), so a reassignment may not change which of a
//! node's shards hold replicas unless the node gains its first ones or loses all of them
//! (moving a replica between shards of one node takes two reassignments, through another
//! node). Kafka, with one broker per node, has no such case.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{validate_topic_name, ControllerError, ControllerState, NewTopic, ReassignmentTarget};
use crate::metadata::image::{PartitionAssignment, TopicImage};
use crate::metadata::records::MetadataRecord;
use crate::partition::{BrokerId, NodeId};

/// What an AlterReassignments makes: its records, and a result per partition asked.
pub(super) type ReassignmentOutcome = (
    Vec<MetadataRecord>,
    Vec<((String, i32), Result<(), ControllerError>)>,
);

impl ControllerState {
    /// AlterReassignments (see [`super::ControllerRequest::AlterReassignments`]): the
    /// changes, applied to the working image, and a result per partition.
    pub(super) fn alter_reassignments(
        &mut self,
        partitions: Vec<ReassignmentTarget>,
        allow_factor_change: bool,
    ) -> ReassignmentOutcome {
        let mut records = Vec::new();
        let mut results = Vec::new();
        for ((topic, partition), target) in partitions {
            let result =
                self.reassign_one(&topic, partition, target.as_deref(), allow_factor_change);
            let result = result.map(|record| {
                if let Some(record) = record {
                    self.apply(std::slice::from_ref(&record));
                    records.push(record);
                }
            });
            results.push(((topic, partition), result));
        }
        (records, results)
    }

    /// One partition's reassignment (or its cancellation, for no target): the record to
    /// write, if anything changes.
    fn reassign_one(
        &self,
        topic: &str,
        partition: i32,
        target: Option<&[BrokerId]>,
        allow_factor_change: bool,
    ) -> Result<Option<MetadataRecord>, ControllerError> {
        let topic_image = self
            .image
            .topic(topic)
            .ok_or(ControllerError::UnknownTopic)?;
        let current = topic_image
            .partition(partition)
            .ok_or(ControllerError::UnknownTopic)?;
        let changed = match target {
            None => self.cancelled(current)?,
            Some(target) => {
                self.check_target(current, target, allow_factor_change)?;
                self.reassigned(current, target)
            }
        };
        if changed.replicas == current.replicas
            && changed.isr == current.isr
            && changed.leader == current.leader
            && changed.adding == current.adding
            && changed.removing == current.removing
        {
            return Ok(None); // already so
        }
        Ok(Some(MetadataRecord::PartitionChange {
            topic_id: topic_image.id,
            partition,
            assignment: changed,
        }))
    }

    /// Kafka's checks of a manual assignment, and Spate's directory rule (module docs).
    fn check_target(
        &self,
        current: &PartitionAssignment,
        target: &[BrokerId],
        allow_factor_change: bool,
    ) -> Result<(), ControllerError> {
        self.check_manual_replicas(target)?;
        let invalid = |why: String| Err(ControllerError::InvalidReplicaAssignment(why));
        let original = original_replicas(current);
        if !allow_factor_change && target.len() != original.len() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "The replication factor is changed from {} to {} but allow_replication_factor_change is false.",
                original.len(),
                target.len()
            )));
        }
        let by_node = |replicas: &[BrokerId]| {
            let mut nodes: BTreeMap<NodeId, Vec<BrokerId>> = BTreeMap::new();
            for broker in replicas {
                nodes.entry(broker.node()).or_default().push(*broker);
            }
            nodes
        };
        let (now, wanted) = (by_node(&current.replicas), by_node(target));
        for (node, replicas) in &now {
            match wanted.get(node) {
                Some(wanted) if wanted != replicas => {
                    return invalid(format!(
                        "The reassignment changes which shards of node {} hold replicas ({} to {}): a node may only keep its replicas as they are, gain its first ones or lose all of them in one reassignment (move a replica between shards of a node through another node, or cancel the reassignment under way first).",
                        node.0,
                        list(replicas),
                        list(wanted)
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Kafka's checks of one partition's replicas named by a client (a reassignment's
    /// target, CreateTopics' assignments): some, distinct, registered.
    fn check_manual_replicas(&self, replicas: &[BrokerId]) -> Result<(), ControllerError> {
        let invalid = |why: String| Err(ControllerError::InvalidReplicaAssignment(why));
        if replicas.is_empty() {
            return invalid(
                "The manual partition assignment includes an empty replica list.".into(),
            );
        }
        let mut seen = replicas.to_vec();
        seen.sort();
        seen.dedup();
        if seen.len() != replicas.len() {
            return invalid("The manual partition assignment includes duplicate replicas.".into());
        }
        for broker in replicas {
            if self.image.broker(*broker).is_none() {
                return invalid(format!(
                    "The manual partition assignment includes broker {broker}, but no such broker is registered."
                ));
            }
        }
        Ok(())
    }

    /// A topic created with explicit replicas for each partition (CreateTopics'
    /// `assignments`, `kafka-topics.sh --replica-assignment`), checked as Kafka's KRaft
    /// controller checks them: each partition's replicas as for a reassignment, the same
    /// count for every partition, at least one of them unfenced. The unfenced replicas form
    /// the ISR, the first of them leads.
    pub(super) fn manual_topic(&self, topic: &NewTopic) -> Result<TopicImage, ControllerError> {
        validate_topic_name(&topic.name)?;
        if self.image.topic(&topic.name).is_some() {
            return Err(ControllerError::TopicExists(topic.name.clone()));
        }
        let factor = topic.assignments.first().map_or(0, Vec::len);
        let mut partitions = Vec::with_capacity(topic.assignments.len());
        for (index, replicas) in topic.assignments.iter().enumerate() {
            if replicas.len() != factor {
                return Err(ControllerError::InvalidReplicaAssignment(
                    "All partitions in the manual partition assignment must have the same number of replicas.".into(),
                ));
            }
            partitions.push(self.manual_partition(index as i32, replicas)?);
        }
        crate::topic_config::validate(&topic.configs).map_err(ControllerError::InvalidConfig)?;
        self.check_node_room(partitions.len() as i32)?;
        Ok(TopicImage {
            name: topic.name.clone(),
            id: Uuid::new_v4(),
            configs: topic.configs.clone(),
            partitions,
        })
    }

    /// New partitions `first..first + added` of a topic of `factor` replicas on the replicas
    /// a CreatePartitions names (Kafka's checks: one list per new partition, each of the
    /// topic's factor).
    pub(super) fn manual_partitions(
        &self,
        first: i32,
        added: i32,
        factor: usize,
        assigned: &[Vec<BrokerId>],
    ) -> Result<Vec<PartitionAssignment>, ControllerError> {
        if assigned.len() != added as usize {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "Increasing the number of partitions by {added} but {} assignments provided.",
                assigned.len()
            )));
        }
        assigned
            .iter()
            .enumerate()
            .map(|(offset, replicas)| {
                let index = first + offset as i32;
                if replicas.len() != factor {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "Inconsistent replication factor between partitions, partition 0 has {factor} while partitions [{index}] have replication factors [{}], respectively.",
                        replicas.len()
                    )));
                }
                self.manual_partition(index, replicas)
            })
            .collect()
    }

    /// One partition on the replicas a client named (checked): the unfenced ones in sync,
    /// the first of them leading.
    fn manual_partition(
        &self,
        index: i32,
        replicas: &[BrokerId],
    ) -> Result<PartitionAssignment, ControllerError> {
        self.check_manual_replicas(replicas)?;
        let isr: Vec<BrokerId> = replicas
            .iter()
            .copied()
            .filter(|broker| self.image.is_live(*broker))
            .collect();
        let Some(leader) = isr.first().copied() else {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "All brokers specified in the manual partition assignment for partition {index} are fenced or in controlled shutdown."
            )));
        };
        let mut assignment = PartitionAssignment::replicated(replicas.to_vec());
        assignment.leader = leader;
        assignment.isr = isr;
        Ok(assignment)
    }

    /// The partition reassigned to `target` (checked): the new replicas added, the old ones
    /// marked for removal, completed at once if nothing needs to catch up. A reassignment
    /// under way is replaced: its new replicas that the new target drops go at once.
    fn reassigned(
        &self,
        current: &PartitionAssignment,
        target: &[BrokerId],
    ) -> PartitionAssignment {
        let original = original_replicas(current);
        let adding: Vec<BrokerId> = target
            .iter()
            .copied()
            .filter(|broker| !original.contains(broker))
            .collect();
        let removing: Vec<BrokerId> = original
            .iter()
            .copied()
            .filter(|broker| !target.contains(broker))
            .collect();
        let replicas: Vec<BrokerId> = target.iter().chain(&removing).copied().collect();
        let isr: Vec<BrokerId> = current
            .isr
            .iter()
            .copied()
            .filter(|broker| replicas.contains(broker))
            .collect();
        let mut changed = self.with_replicas(current, replicas, isr);
        changed.adding = adding;
        changed.removing = removing;
        self.complete_reassignment(changed)
    }

    /// The reassignment under way cancelled: back to the replicas it started from, its new
    /// replicas dropped (Kafka's `PartitionReassignmentRevert`).
    fn cancelled(
        &self,
        current: &PartitionAssignment,
    ) -> Result<PartitionAssignment, ControllerError> {
        if !current.is_reassigning() {
            return Err(ControllerError::NoReassignmentInProgress);
        }
        let original = original_replicas(current);
        let isr: Vec<BrokerId> = current
            .isr
            .iter()
            .copied()
            .filter(|broker| original.contains(broker))
            .collect();
        if isr.is_empty() {
            return Err(ControllerError::InvalidReplicaAssignment(
                "None of the partition's original replicas is in sync: cancelling would leave it without one; let the reassignment complete instead.".into(),
            ));
        }
        let mut changed = self.with_replicas(current, original, isr);
        changed.adding.clear();
        changed.removing.clear();
        Ok(changed)
    }

    /// Completes the reassignment of `assignment` if every replica it adds is in sync and a
    /// replica it keeps is too (Kafka's `completeReassignmentIfNeeded`): the replicas become
    /// the target, the ISR loses the removed ones, and a removed leader hands over to the
    /// first live in-sync replica of the target. Left as it is otherwise.
    pub(super) fn complete_reassignment(
        &self,
        assignment: PartitionAssignment,
    ) -> PartitionAssignment {
        if !assignment.is_reassigning() {
            return assignment;
        }
        let isr: Vec<BrokerId> = assignment
            .isr
            .iter()
            .copied()
            .filter(|broker| !assignment.removing.contains(broker))
            .collect();
        if isr.is_empty() || !assignment.adding.iter().all(|broker| isr.contains(broker)) {
            return assignment;
        }
        let target: Vec<BrokerId> = assignment
            .replicas
            .iter()
            .copied()
            .filter(|broker| !assignment.removing.contains(broker))
            .collect();
        let mut completed = self.with_replicas(&assignment, target, isr);
        if completed.leader == PartitionAssignment::NO_LEADER {
            return assignment; // no live in-sync replica of the target to lead yet
        }
        // One change, not two: the partition epoch moves once from the assignment asked.
        completed.partition_epoch = assignment.partition_epoch;
        completed.adding.clear();
        completed.removing.clear();
        tracing::info!(replicas = %list(&completed.replicas), leader = %completed.leader, "partition reassignment completed");
        completed
    }

    /// `current` with new replicas and ISR, led by its leader if that one is still a replica
    /// in sync, else by the first live in-sync replica (a new leader epoch).
    fn with_replicas(
        &self,
        current: &PartitionAssignment,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
    ) -> PartitionAssignment {
        let mut candidate = current.clone();
        candidate.replicas.clone_from(&replicas);
        let leader = if isr.contains(&current.leader) && replicas.contains(&current.leader) {
            current.leader
        } else {
            self.elect(&candidate, &isr)
        };
        let mut changed = current.changed(leader, isr);
        changed.replicas = replicas;
        changed
    }
}

/// The replicas a partition had before its reassignment: all but those being added.
fn original_replicas(assignment: &PartitionAssignment) -> Vec<BrokerId> {
    assignment
        .replicas
        .iter()
        .copied()
        .filter(|broker| !assignment.adding.contains(broker))
        .collect()
}

fn list(brokers: &[BrokerId]) -> String {
    let ids: Vec<String> = brokers.iter().map(|broker| broker.0.to_string()).collect();
    format!("[{}]", ids.join(","))
}
