//! The controller's replication decisions (Kafka's `ReplicationControlManager`): where a new
//! partition's replicas go (and where they move when a node's shard count changes), and how
//! fencing, unfencing, AlterPartition and leader elections change a partition's ISR and
//! leader. Part of [`ControllerState`]; no I/O.

use std::collections::BTreeMap;

use super::{ControllerError, ControllerState, IsrChange};

/// What an ElectLeaders makes: its records, and a result per partition asked.
pub(super) type ElectionOutcome = (
    Vec<MetadataRecord>,
    Vec<((String, i32), Result<(), ControllerError>)>,
);
use crate::metadata::image::PartitionAssignment;
use crate::metadata::placement;
use crate::metadata::records::MetadataRecord;
use crate::partition::{BrokerId, NodeId, ShardId};

impl ControllerState {
    /// Fences `node` (applied to the working image) and takes its brokers out of every
    /// ISR, electing a new leader from what remains of the ISR wherever one of them led
    /// (Kafka's KRaft controller does the same on fencing). The last member of an ISR stays
    /// in it, so that a partition whose replicas all stopped comes back on the replica that
    /// has everything (`unclean.leader.election.enable` is false): such a partition has no
    /// leader until then.
    pub(super) fn fence(&mut self, node: NodeId) -> Vec<MetadataRecord> {
        let mut records = vec![MetadataRecord::NodeFencing { node, fenced: true }];
        self.apply(&records);
        let mut changes = Vec::new();
        for topic in self.image.topics() {
            for (index, assignment) in topic.partitions.iter().enumerate() {
                if !assignment
                    .replicas
                    .iter()
                    .any(|broker| broker.node() == node)
                {
                    continue;
                }
                let mut isr: Vec<BrokerId> = assignment
                    .isr
                    .iter()
                    .copied()
                    .filter(|broker| broker.node() != node)
                    .collect();
                if isr.is_empty() {
                    isr = assignment.isr.clone();
                }
                let leader = if self.image.is_live(assignment.leader) {
                    assignment.leader
                } else {
                    self.elect(assignment, &isr)
                };
                if leader != assignment.leader || isr != assignment.isr {
                    changes.push(MetadataRecord::PartitionChange {
                        topic_id: topic.id,
                        partition: index as i32,
                        assignment: assignment.changed(leader, isr),
                    });
                }
            }
        }
        self.apply(&changes);
        records.append(&mut changes);
        records
    }

    /// Unfences `node` and gives a leader to each partition that has none and whose ISR
    /// holds one of its brokers.
    pub(super) fn unfence(&mut self, node: NodeId) -> Vec<MetadataRecord> {
        let mut records = vec![MetadataRecord::NodeFencing {
            node,
            fenced: false,
        }];
        self.apply(&records);
        records.append(&mut self.elect_leaderless());
        records
    }

    /// A leader for each partition that has none and whose ISR holds a live broker.
    pub(super) fn elect_leaderless(&mut self) -> Vec<MetadataRecord> {
        let mut changes = Vec::new();
        for topic in self.image.topics() {
            for (index, assignment) in topic.partitions.iter().enumerate() {
                if self.image.is_live(assignment.leader) {
                    continue;
                }
                let leader = self.elect(assignment, &assignment.isr);
                if leader != assignment.leader {
                    changes.push(MetadataRecord::PartitionChange {
                        topic_id: topic.id,
                        partition: index as i32,
                        assignment: assignment.changed(leader, assignment.isr.clone()),
                    });
                }
            }
        }
        self.apply(&changes);
        changes
    }

    /// The new leader of a partition: the first replica (preferred order) in `isr` that is
    /// live, or none.
    pub(super) fn elect(&self, assignment: &PartitionAssignment, isr: &[BrokerId]) -> BrokerId {
        assignment
            .replicas
            .iter()
            .copied()
            .find(|broker| isr.contains(broker) && self.image.is_live(*broker))
            .unwrap_or(PartitionAssignment::NO_LEADER)
    }

    /// ElectLeaders (see [`super::ControllerRequest::ElectLeaders`]): the changes, applied to
    /// the working image, and a result per partition.
    pub(super) fn elect_leaders(
        &mut self,
        preferred: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> ElectionOutcome {
        let every_partition = partitions.is_none();
        let wanted = partitions.unwrap_or_else(|| {
            self.image
                .topics()
                .flat_map(|topic| {
                    (0..topic.partition_count()).map(|index| (topic.name.clone(), index))
                })
                .collect()
        });
        let mut records = Vec::new();
        let mut results = Vec::new();
        for (name, index) in wanted {
            let result = self.elect_one(preferred, &name, index);
            let result = match result {
                Ok((topic_id, assignment)) => {
                    let change = [MetadataRecord::PartitionChange {
                        topic_id,
                        partition: index,
                        assignment,
                    }];
                    self.apply(&change);
                    records.extend(change);
                    Ok(())
                }
                Err(error) => Err(error),
            };
            // Kafka leaves out, for an election of every partition, those that needed none.
            if every_partition && result == Err(ControllerError::ElectionNotNeeded) {
                continue;
            }
            results.push(((name, index), result));
        }
        (records, results)
    }

    /// The changed assignment that one partition's election makes, or why it makes none.
    fn elect_one(
        &self,
        preferred: bool,
        name: &str,
        index: i32,
    ) -> Result<(uuid::Uuid, PartitionAssignment), ControllerError> {
        let topic = self
            .image
            .topic(name)
            .ok_or(ControllerError::UnknownTopic)?;
        let assignment = topic
            .partition(index)
            .ok_or(ControllerError::UnknownTopic)?;
        if preferred {
            let wanted = assignment.replicas[0];
            if assignment.leader == wanted {
                return Err(ControllerError::ElectionNotNeeded);
            }
            if !assignment.isr.contains(&wanted) || !self.image.is_live(wanted) {
                return Err(ControllerError::PreferredLeaderNotAvailable);
            }
            return Ok((topic.id, assignment.changed(wanted, assignment.isr.clone())));
        }
        if self.image.is_live(assignment.leader) {
            return Err(ControllerError::ElectionNotNeeded);
        }
        // In sync first (no loss); else any live replica, which becomes the whole ISR.
        let clean = self.elect(assignment, &assignment.isr);
        if clean != PartitionAssignment::NO_LEADER {
            return Ok((topic.id, assignment.changed(clean, assignment.isr.clone())));
        }
        let unclean = self.elect(assignment, &assignment.replicas);
        if unclean == PartitionAssignment::NO_LEADER {
            return Err(ControllerError::EligibleLeadersNotAvailable);
        }
        tracing::warn!(topic = name, partition = index, leader = %unclean, isr = ?assignment.isr, "unclean leader election: what the out-of-sync replica lacks is lost");
        Ok((topic.id, assignment.changed(unclean, vec![unclean])))
    }

    /// The partitions whose preferred replica is live and in sync but does not lead, at
    /// most `max` of them: for a preferred election that moves leadership back after a
    /// failover. Every such partition counts, as in Kafka's KRaft controller
    /// (`maybeBalancePartitionLeaders`); ZooKeeper-era Kafka waited until more than
    /// `leader.imbalance.per.broker.percentage` of a broker's preferred partitions were led
    /// elsewhere, which strands a partition whose replica caught up after the others had
    /// been balanced.
    pub fn imbalanced_partitions(&self, max: usize) -> Vec<(String, i32)> {
        let mut partitions = Vec::new();
        for topic in self.image.topics() {
            for (index, assignment) in topic.partitions.iter().enumerate() {
                if partitions.len() >= max {
                    return partitions;
                }
                let wanted = assignment.replicas[0];
                if assignment.leader != wanted
                    && assignment.isr.contains(&wanted)
                    && self.image.is_live(wanted)
                {
                    partitions.push((topic.name.clone(), index as i32));
                }
            }
        }
        partitions
    }

    /// This node's partitions whose leader the default policy would put on another shard (the
    /// shard count changed): moved there, with the next leader epoch.
    pub(super) fn replace_partitions(&self, node: NodeId, shard_count: u32) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for topic in self.image.topics() {
            for (index, assignment) in topic.partitions.iter().enumerate() {
                // Replicated partitions stay where they are: their replicas are on other
                // nodes too, and moving one is a reassignment.
                if assignment.leader.node() != node || assignment.replicas.len() != 1 {
                    continue;
                }
                let wanted =
                    placement::default_leader(node, &topic.name, index as i32, shard_count);
                if assignment.leader != wanted {
                    records.push(MetadataRecord::PartitionChange {
                        topic_id: topic.id,
                        partition: index as i32,
                        assignment: assignment.moved_to(wanted),
                    });
                }
            }
        }
        records
    }

    /// Replicas of replicated partitions on shards of `node` that it no longer has (its
    /// shard count went down), moved to shards of the same node that hold no other replica
    /// of the partition: the replica's directory depends on its rank among its node's
    /// replicas, not on its shard, so its data stays where it is. A replica with no free
    /// shard left stays where it was, not live, and its partition under-replicated (warned).
    pub(super) fn remap_replicas(&self, node: NodeId, shard_count: u32) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for topic in self.image.topics() {
            for (index, assignment) in topic.partitions.iter().enumerate() {
                let gone =
                    |broker: &BrokerId| broker.node() == node && broker.shard().0 >= shard_count;
                if assignment.replicas.len() < 2 || !assignment.replicas.iter().any(gone) {
                    continue;
                }
                let mut moves = BTreeMap::new();
                for replica in assignment.replicas.iter().filter(|broker| gone(broker)) {
                    let taken = |shard: u32| {
                        let broker = BrokerId::of_shard(node, ShardId(shard));
                        assignment.replicas.contains(&broker)
                            || moves.values().any(|moved| *moved == broker)
                    };
                    match (0..shard_count).find(|shard| !taken(*shard)) {
                        Some(shard) => {
                            moves.insert(*replica, BrokerId::of_shard(node, ShardId(shard)));
                        }
                        None => tracing::warn!(
                            topic = %topic.name,
                            partition = index,
                            replica = %replica,
                            shard_count,
                            "a replica's shard is gone and no free shard is left for it: the partition stays under-replicated until the node has that many shards again"
                        ),
                    }
                }
                if moves.is_empty() {
                    continue;
                }
                let map = |broker: &BrokerId| *moves.get(broker).unwrap_or(broker);
                let leader = map(&assignment.leader);
                let mut changed =
                    assignment.changed(leader, assignment.isr.iter().map(map).collect());
                changed.replicas = assignment.replicas.iter().map(map).collect();
                changed.adding = assignment.adding.iter().map(map).collect();
                changed.removing = assignment.removing.iter().map(map).collect();
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition: index as i32,
                    assignment: changed,
                });
            }
        }
        records
    }

    /// Checks an AlterPartition against the partition as it is, and makes the change.
    pub(super) fn alter_partition(
        &self,
        change: &IsrChange,
    ) -> Result<PartitionAssignment, ControllerError> {
        let assignment = self
            .image
            .topic_by_id(change.topic_id)
            .and_then(|topic| topic.partition(change.partition))
            .ok_or(ControllerError::UnknownTopic)?;
        if assignment.leader != change.leader || assignment.leader_epoch != change.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch);
        }
        if assignment.partition_epoch != change.partition_epoch {
            return Err(ControllerError::InvalidUpdateVersion {
                current: assignment.partition_epoch,
            });
        }
        if !change.isr.contains(&change.leader) {
            return Err(ControllerError::IneligibleReplica(
                "the ISR must hold its leader".into(),
            ));
        }
        for broker in &change.isr {
            if !assignment.replicas.contains(broker) {
                return Err(ControllerError::IneligibleReplica(format!(
                    "broker {broker} is not a replica"
                )));
            }
            if assignment.isr.contains(broker) {
                continue;
            }
            if !self.image.is_live(*broker) {
                return Err(ControllerError::IneligibleReplica(format!(
                    "broker {broker} is fenced"
                )));
            }
            let stale = change.broker_epochs.iter().find(|(joining, epoch)| {
                joining == broker
                    && *epoch != -1
                    && self
                        .image
                        .broker(*broker)
                        .is_some_and(|registered| registered.epoch != *epoch)
            });
            if let Some((_, epoch)) = stale {
                return Err(ControllerError::IneligibleReplica(format!(
                    "broker {broker}'s epoch {epoch} is not its registered one"
                )));
            }
        }
        let mut isr = change.isr.clone();
        isr.sort();
        isr.dedup();
        Ok(assignment.changed(assignment.leader, isr))
    }

    /// The replicas of a new partition (`factor` was checked): a factor of one on this
    /// node, as always, while it is the only node registered; otherwise spread over the
    /// registered nodes and, past one per node, over their shards
    /// (`placement::spread_replicas`).
    pub(super) fn placement(
        &self,
        topic: &str,
        partition: i32,
        factor: usize,
    ) -> PartitionAssignment {
        let nodes = self.placement_nodes();
        let only_this_node = nodes.iter().all(|node| node.id == self.config.node_id);
        if only_this_node && factor == 1 {
            return PartitionAssignment::single(placement::default_leader(
                self.config.node_id,
                topic,
                partition,
                self.config.shard_count,
            ));
        }
        let nodes = if nodes.is_empty() {
            // A single node before its registration is applied: itself.
            vec![placement::PlacementNode {
                id: self.config.node_id,
                shard_count: self.config.shard_count,
                rack: self.config.rack.clone(),
            }]
        } else {
            nodes
        };
        PartitionAssignment::replicated(placement::spread_replicas(
            &nodes, topic, partition, factor,
        ))
    }

    /// The registered, unfenced nodes, by id, with their shard counts and racks.
    pub(super) fn placement_nodes(&self) -> Vec<placement::PlacementNode> {
        let mut nodes: BTreeMap<NodeId, placement::PlacementNode> = BTreeMap::new();
        for broker in self.image.brokers().filter(|broker| !broker.fenced) {
            nodes
                .entry(broker.id.node())
                .or_insert_with(|| placement::PlacementNode {
                    id: broker.id.node(),
                    shard_count: 0,
                    rack: broker.rack.clone(),
                })
                .shard_count += 1;
        }
        nodes.into_values().collect()
    }
}
