//! Loading a coordinator's groups: reading the `__consumer_offsets` partitions a shard leads
//! into its groups and offsets at start, when it gains a partition's leadership (a failover)
//! and when an earlier load failed; dropping them when it loses one. Part of
//! [`Coordinator`].

use std::rc::Rc;

use kafka_protocol::records::RecordBatchDecoder;

use super::Coordinator;
use crate::groups::consumer_group::ConsumerGroup;
use crate::groups::group::Group;
use crate::groups::offsets_topic::{self, OffsetsRecord};
use crate::shard::Shard;

impl Coordinator {
    /// Whether some `__consumer_offsets` partition failed to load and waits for a retry.
    pub fn has_unloaded(&self) -> bool {
        !self.unloaded.borrow().is_empty()
    }

    /// Whether the groups of this `__consumer_offsets` partition are not loaded yet.
    pub fn is_loading(&self, partition: i32) -> bool {
        self.unloaded.borrow().contains(&partition)
    }

    /// This shard now leads `__consumer_offsets` partition `partition` (a failover, a new
    /// topic): its groups answer COORDINATOR_LOAD_IN_PROGRESS until
    /// [`Coordinator::retry_loads`] has read them from the log, which the new leader holds
    /// in full (it was in the ISR).
    pub fn gained(&self, partition: i32) {
        self.forget_partition(partition);
        self.unloaded.borrow_mut().insert(partition);
    }

    /// This shard no longer leads `__consumer_offsets` partition `partition`: its groups are
    /// dropped here (their new coordinator loads them from its replica). Members waiting in a
    /// join or sync of those groups are answered when their requests time out.
    pub fn lost(&self, partition: i32) {
        self.forget_partition(partition);
        self.unloaded.borrow_mut().remove(&partition);
    }

    pub(super) fn forget_partition(&self, partition: i32) {
        let partitions = self.offsets_partitions;
        self.groups
            .borrow_mut()
            .retain(|group, _| offsets_topic::partition_for(group, partitions) != partition);
    }

    /// Tries again to load the partitions that failed to load; true while some still have not.
    pub async fn retry_loads(&self, shard: &Rc<Shard>) -> bool {
        let Some(topic) = shard.image().topic(offsets_topic::TOPIC).cloned() else {
            return false;
        };
        if self.retrying.replace(true) {
            return true;
        }
        let waiting: Vec<i32> = self.unloaded.borrow().iter().copied().collect();
        for partition in waiting {
            if let Ok(records) = self.load_partition(shard, &topic.name, partition).await {
                self.unloaded.borrow_mut().remove(&partition);
                tracing::info!(partition, records, "loaded __consumer_offsets partition");
            }
        }
        self.retrying.set(false);
        !self.unloaded.borrow().is_empty()
    }

    /// Rebuilds groups and offsets from the `__consumer_offsets` partitions this shard owns.
    pub async fn load(&self, shard: &Rc<Shard>) {
        let Some(topic) = shard.image().topic(offsets_topic::TOPIC).cloned() else {
            return;
        };
        let mut records = 0usize;
        for (partition, assignment) in topic.partitions.iter().enumerate() {
            if assignment.leader != shard.broker_id() {
                continue;
            }
            let partition = partition as i32;
            match self.load_partition(shard, &topic.name, partition).await {
                Ok(loaded) => records += loaded,
                Err(()) => {
                    self.unloaded.borrow_mut().insert(partition);
                }
            }
        }
        if records > 0 {
            tracing::info!(
                groups = self.groups.borrow().len(),
                records,
                "loaded consumer groups"
            );
        }
    }

    /// Applies one `__consumer_offsets` partition's records; how many, or `Err` (logged) if
    /// the partition could not be opened or read.
    pub(super) async fn load_partition(
        &self,
        shard: &Rc<Shard>,
        topic: &str,
        partition: i32,
    ) -> Result<usize, ()> {
        let log = match shard.partitions.leader(topic, partition, -1).await {
            Ok(log) => log,
            Err(crate::partition::PartitionError::NotLeaderOrFollower) => {
                // The leadership moved while the load waited (a restarted node whose replayed
                // image was stale): nothing to coordinate here, and nothing failed; the new
                // leader loads it, and `gained` brings it back if it returns.
                tracing::debug!(
                    partition,
                    "no longer leading this __consumer_offsets partition: not loading it"
                );
                return Ok(0);
            }
            Err(error) => {
                tracing::error!(partition, %error, "cannot load __consumer_offsets partition");
                return Err(());
            }
        };
        let mut records = 0usize;
        {
            let scanned = crate::log_scan::scan_batches(&log, |_, batch| {
                let mut bytes = batch.clone();
                if let Ok(set) = RecordBatchDecoder::decode(&mut bytes) {
                    for record in set.records {
                        let Some(key) = &record.key else {
                            continue;
                        };
                        if record.control {
                            // A transaction's marker: `[i16 version][i16 type]`, type 1 a
                            // commit; it ends the producer's held offsets of this partition.
                            let commit = match key.get(..4) {
                                Some([0, 0, 0, 0]) => Some(false),
                                Some([0, 0, 0, 1]) => Some(true),
                                _ => None,
                            };
                            if let Some(commit) = commit {
                                self.complete_txn(partition, record.producer_id, commit);
                            }
                            continue;
                        }
                        let Some(decoded) = offsets_topic::decode(key, record.value.as_deref())
                        else {
                            continue;
                        };
                        records += 1;
                        match decoded {
                            OffsetsRecord::Offset {
                                group,
                                topic,
                                partition,
                                value,
                            } if record.transactional => self.apply_pending(
                                record.producer_id,
                                group,
                                topic,
                                partition,
                                value,
                            ),
                            decoded => self.apply(decoded),
                        }
                    }
                }
                false
            })
            .await;
            if let Err(error) = scanned {
                tracing::error!(partition, %error, "error reading __consumer_offsets");
                return Err(());
            }
        }
        Ok(records)
    }

    pub(super) fn apply(&self, record: OffsetsRecord) {
        match record {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value: Some(value),
            } => {
                self.with_group(&group, |entry| {
                    entry.offsets.insert((topic, partition), value)
                });
            }
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value: None,
            } => {
                self.with_group(&group, |entry| entry.offsets.remove(&(topic, partition)));
                self.forget_if_unused(&group);
            }
            OffsetsRecord::Group {
                group,
                value: Some((protocol_type, generation)),
            } => {
                let protocol_type = (!protocol_type.is_empty()).then_some(protocol_type);
                let config = self.config.clone();
                self.with_group(&group, |entry| {
                    entry.group = Group::restored(&group, config, generation, protocol_type);
                    entry.consumer = None;
                });
            }
            OffsetsRecord::Group { group, value: None } => {
                self.groups.borrow_mut().remove(&group);
            }
            // The last record wins: a consumer group's epoch after a classic group's
            // metadata makes it a consumer group, and the other way round.
            OffsetsRecord::ConsumerGroup {
                group,
                epoch: Some(epoch),
            } => {
                // Epoch records only raise the epoch (writes may land out of order).
                let config = self.consumer_config.clone();
                self.with_group(&group, |entry| {
                    if entry
                        .consumer
                        .as_ref()
                        .is_none_or(|consumer| consumer.group_epoch() < epoch)
                    {
                        entry.consumer = Some(ConsumerGroup::new(&group, config, epoch));
                    }
                });
            }
            OffsetsRecord::ConsumerGroup { group, epoch: None } => {
                if let Some(entry) = self.groups.borrow_mut().get_mut(&group) {
                    entry.consumer = None;
                }
                self.forget_if_unused(&group);
            }
        }
    }
}
