//! ISR changes a partition leader asks of the controller (Kafka's AlterPartition): a
//! follower that caught up joins the ISR ([`request_change`], from its fetch), and one that
//! has not caught up with the leader's log end for `replica.lag.time.max.ms` leaves it
//! ([`shrink_lagging`], from the shard's maintenance tick). The controller takes a change
//! only if the leader, its epoch and the partition epoch are still current, so a stale
//! leader can never change an ISR; either way the new assignment reaches this shard through
//! the metadata image, as every other change does.

use std::rc::Rc;
use std::time::Duration;

use crate::metadata::controller::{ControllerReply, ControllerRequest, IsrChange};
use crate::partition::{Partition, WantedIsr};
use crate::shard::Shard;

/// Asks the controller for `wanted`, in the background; the partition may ask again once the
/// answer is in.
pub fn request_change(shard: &Rc<Shard>, partition: Rc<Partition>, wanted: WantedIsr) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let change = IsrChange {
            topic_id: partition.topic_id(),
            partition: partition.key().partition,
            leader: shard.broker_id(),
            leader_epoch: wanted.leader_epoch,
            partition_epoch: wanted.partition_epoch,
            isr: wanted.isr.clone(),
            broker_epochs: wanted.joining_broker_epochs.clone(),
        };
        let result = shard
            .controller_call(ControllerRequest::AlterPartition(change))
            .await;
        match result {
            Ok(ControllerReply::AlterPartition(Ok(assignment))) => {
                tracing::info!(partition = %partition.key(), isr = ?assignment.isr, partition_epoch = assignment.partition_epoch, "ISR changed");
            }
            Ok(ControllerReply::AlterPartition(Err(error))) => {
                tracing::info!(partition = %partition.key(), wanted = ?wanted.isr, %error, "ISR change refused");
            }
            Ok(other) => {
                tracing::warn!(partition = %partition.key(), ?other, "the controller answered an ISR change with something else");
            }
            Err(error) => {
                tracing::info!(partition = %partition.key(), wanted = ?wanted.isr, %error, "ISR change not made");
            }
        }
        partition.isr_change_done();
    })
    .detach();
}

/// Takes out of the ISR, for every partition this shard leads, the followers that lag by
/// more than `lag_max`.
pub fn shrink_lagging(shard: &Rc<Shard>, lag_max: Duration) {
    for partition in shard.partitions.open_replicas() {
        if let Some(wanted) = partition.lagging_followers(lag_max) {
            tracing::warn!(partition = %partition.key(), isr = ?wanted.isr, lag_max_ms = lag_max.as_millis() as u64, "followers lag: shrinking the ISR");
            request_change(shard, partition, wanted);
        }
    }
}
