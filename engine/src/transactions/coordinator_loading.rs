//! Loading a transaction coordinator's ids: reading the `__transaction_state` partitions a
//! shard leads when it gains them (at start, on a failover, when the topic is made), and
//! dropping them when it loses one. Part of [`TxnCoordinator`].
//!
//! The last record of an id wins (the topic is compacted; a tombstone removes the id). A
//! transaction found prepared (its coordinator died between EndTxn and the completion) has
//! its markers written again, as Kafka's coordinator does after loading; an ongoing one is
//! left to its producer or its timeout.

use std::collections::BTreeSet;
use std::rc::Rc;

use kafka_protocol::records::RecordBatchDecoder;

use super::TxnCoordinator;
use crate::shard::Shard;
use crate::transactions::state::{TxnEntry, TxnMetadata, TxnState};
use crate::transactions::state_log;

impl TxnCoordinator {
    /// This shard now leads `partition` (of `partition_count`) with `leader_epoch`, the
    /// coordinator epoch of its markers: its ids answer COORDINATOR_LOAD_IN_PROGRESS until
    /// [`Self::load`] has read them.
    pub fn gained(&self, partition: i32, leader_epoch: i32, partition_count: i32) {
        self.partition_count.set(partition_count);
        self.forget_partition(partition);
        self.epochs.borrow_mut().insert(partition, leader_epoch);
        self.unloaded.borrow_mut().insert(partition);
    }

    /// This shard no longer leads `partition`: its ids are dropped (tasks writing their
    /// markers stop at their next step; the next coordinator writes them again).
    pub fn lost(&self, partition: i32) {
        self.forget_partition(partition);
        self.epochs.borrow_mut().remove(&partition);
        self.unloaded.borrow_mut().remove(&partition);
    }

    fn forget_partition(&self, partition: i32) {
        let count = self.partition_count.get();
        if count <= 0 {
            return;
        }
        self.entries
            .borrow_mut()
            .retain(|id, _| state_log::partition_for(id, count) != partition);
    }

    /// Loads every partition gained and not loaded yet (one load at a time; a partition that
    /// cannot be read stays unloaded for the next try).
    pub async fn load(&self, shard: &Rc<Shard>) {
        if self.loading.replace(true) {
            return;
        }
        // Partitions gained while this load runs are loaded by it too (one that fails is
        // tried once here, then again by the maintenance tick).
        let mut tried = BTreeSet::new();
        loop {
            let Some(partition) = self
                .unloaded
                .borrow()
                .iter()
                .copied()
                .find(|partition| !tried.contains(partition))
            else {
                break;
            };
            tried.insert(partition);
            // An `Err` stays unloaded: the maintenance tick tries again.
            if let Ok(loaded) = self.load_partition(shard, partition).await {
                // Applied only if the partition is still this shard's and still waiting (it
                // may have been lost, or lost and gained again, during the read).
                if self.unloaded.borrow_mut().remove(&partition) {
                    if !loaded.is_empty() {
                        tracing::info!(
                            partition,
                            records = loaded.len(),
                            "loaded __transaction_state partition"
                        );
                    }
                    let mut entries = self.entries.borrow_mut();
                    for (id, metadata) in loaded {
                        match metadata {
                            Some(metadata) => {
                                entries.insert(id, TxnEntry::new(metadata));
                            }
                            None => {
                                entries.remove(&id);
                            }
                        }
                    }
                    drop(entries);
                    self.resume_prepared(shard, partition);
                }
            }
        }
        self.loading.set(false);
    }

    /// Reads one partition's records, in log order, or `Err` (logged).
    async fn load_partition(
        &self,
        shard: &Rc<Shard>,
        partition: i32,
    ) -> Result<Vec<(String, Option<TxnMetadata>)>, ()> {
        let log = match shard
            .partitions
            .leader(state_log::TOPIC, partition, -1)
            .await
        {
            Ok(log) => log,
            Err(crate::partition::PartitionError::NotLeaderOrFollower) => return Ok(Vec::new()),
            Err(error) => {
                tracing::error!(partition, %error, "cannot load __transaction_state partition");
                return Err(());
            }
        };
        let mut loaded = Vec::new();
        let scanned = crate::log_scan::scan_batches(&log, |_, batch| {
            let mut bytes = batch.clone();
            if let Ok(set) = RecordBatchDecoder::decode(&mut bytes) {
                for record in set.records {
                    if record.control {
                        continue;
                    }
                    if let Some(key) = &record.key {
                        if let Some(decoded) = state_log::decode(key, record.value.as_deref()) {
                            loaded.push(decoded);
                        }
                    }
                }
            }
            false
        })
        .await;
        if let Err(error) = scanned {
            tracing::error!(partition, %error, "error reading __transaction_state");
            return Err(());
        }
        Ok(loaded)
    }

    /// Writes again the markers of the transactions of `partition` found prepared.
    fn resume_prepared(&self, shard: &Rc<Shard>, partition: i32) {
        let count = self.partition_count.get();
        let prepared: Vec<String> = self
            .entries
            .borrow()
            .iter()
            .filter(|(id, entry)| {
                state_log::partition_for(id, count) == partition
                    && matches!(
                        entry.current.state,
                        TxnState::PrepareCommit | TxnState::PrepareAbort
                    )
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in prepared {
            tracing::info!(transactional_id = %id, "completing a transaction prepared before this coordinator took over");
            self.spawn_completion(shard, &id);
        }
    }
}
