//! The leader's side of Kafka's ISR protocol for a [`Partition`]: what its followers report in
//! their fetches (which moves the high watermark), when one may join the ISR, when lagging
//! ones leave it, and the `min.insync.replicas` check before an acks=all append. Changes are
//! asked of the controller by `cluster::isr`; one at a time per partition.

use spate_storage::Offset;

use super::{FollowerProgress, Partition, Role, WantedIsr};
use crate::partition::error::PartitionError;
use crate::partition::BrokerId;

impl Partition {
    /// NOT_ENOUGH_REPLICAS for an acks=all produce while the ISR is smaller than
    /// `min.insync.replicas` (checked before appending, as Kafka does).
    pub fn check_enough_replicas(&self) -> Result<(), PartitionError> {
        let replication = &self.replication;
        if let Role::Leader { isr, .. } = &*replication.role.borrow() {
            if isr.len() < replication.min_insync.get() {
                return Err(PartitionError::NotEnoughReplicas {
                    isr: isr.len(),
                    min_insync: replication.min_insync.get(),
                });
            }
        }
        Ok(())
    }

    /// A follower's fetch from `fetch_offset` (everything below it is durable there): its
    /// progress moves the high watermark. Returns the ISR this leader wants if the follower
    /// is out of the ISR and has caught up with the high watermark and this leader's term
    /// (Kafka's rule for joining), `eligible` says its broker may join (Kafka's
    /// `isReplicaIsrEligible`: registered, unfenced, and the fetch is not from an earlier
    /// incarnation: `broker_epoch`, -1 when the fetch did not say), and no change is pending
    /// already.
    pub fn follower_fetched(
        &self,
        follower: BrokerId,
        fetch_offset: Offset,
        eligible: bool,
        broker_epoch: i64,
    ) -> Option<WantedIsr> {
        let replication = &self.replication;
        let mut wanted = self.isr_view()?;
        let in_isr = wanted.isr.contains(&follower);
        wanted.isr.push(follower);
        let now = std::time::Instant::now();
        let log_end = self.log.log_end_offset();
        {
            let mut followers = replication.followers.borrow_mut();
            // Kafka's grace: a follower is first seen as caught up when its leader starts
            // hearing from it, so a new term does not shrink the ISR before it could fetch.
            let progress = followers.entry(follower).or_insert(FollowerProgress {
                durable_end: fetch_offset,
                caught_up_at: now,
            });
            progress.durable_end = fetch_offset;
            if fetch_offset >= log_end {
                progress.caught_up_at = now;
            }
        }
        replication.advance_high_watermark(self.log.durable_end_offset());
        tracing::trace!(partition = %self.key, follower = follower.0, %fetch_offset, high_watermark = %self.high_watermark(), in_isr, "follower fetched");
        let term_start = self
            .log
            .latest_epoch()
            .map_or(Offset(0), |entry| entry.start_offset);
        let joins = !in_isr
            && eligible
            && fetch_offset >= self.high_watermark()
            && fetch_offset >= term_start
            && !replication.isr_change_pending.replace(true);
        wanted.joining_broker_epochs = vec![(follower, broker_epoch)];
        joins.then_some(wanted)
    }

    /// The ISR this leader wants without the followers that have not caught up with its log
    /// end within `lag_max` (Kafka's replica.lag.time.max.ms), if any is in the ISR and no
    /// change is pending already.
    pub fn lagging_followers(&self, lag_max: std::time::Duration) -> Option<WantedIsr> {
        let replication = &self.replication;
        let mut wanted = self.isr_view()?;
        let now = std::time::Instant::now();
        let followers = replication.followers.borrow();
        let keep: Vec<BrokerId> = wanted
            .isr
            .iter()
            .copied()
            .filter(|broker| {
                *broker == replication.broker
                    || now.duration_since(
                        followers
                            .get(broker)
                            .map_or(replication.term_started.get(), |progress| {
                                progress.caught_up_at
                            }),
                    ) <= lag_max
            })
            .collect();
        if keep.len() == wanted.isr.len() || replication.isr_change_pending.replace(true) {
            return None;
        }
        wanted.isr = keep;
        Some(wanted)
    }

    /// This leader's ISR, leader epoch and partition epoch: the base of an ISR change.
    fn isr_view(&self) -> Option<WantedIsr> {
        match &*self.replication.role.borrow() {
            Role::Leader {
                isr,
                partition_epoch,
                ..
            } => Some(WantedIsr {
                isr: isr.clone(),
                leader_epoch: self.leader_epoch.get(),
                partition_epoch: *partition_epoch,
                joining_broker_epochs: Vec::new(),
            }),
            Role::Follower { .. } => None,
        }
    }

    /// A changed `min.insync.replicas`.
    pub fn set_min_insync(&self, min_insync: usize) {
        self.replication.min_insync.set(min_insync.max(1));
        self.replication
            .advance_high_watermark(self.log.durable_end_offset());
    }

    /// The ISR change asked for has been answered (taken or refused): another may be asked.
    pub fn isr_change_done(&self) {
        self.replication.isr_change_pending.set(false);
    }

    /// Whether `broker` is one of this leader's replicas.
    pub fn has_replica(&self, broker: BrokerId) -> bool {
        matches!(&*self.replication.role.borrow(), Role::Leader { replicas, .. } if replicas.contains(&broker))
    }
}
