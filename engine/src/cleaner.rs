//! The log cleaner: one task per shard that compacts the shard's logs whose topic has
//! `cleanup.policy=compact` (see `spate_storage::PartitionLog::compact` for what a pass does).
//!
//! It runs in its own glommio task queue with a small share of the CPU, so that when produce
//! and fetch traffic keeps the shard busy the cleaner gets only what is left (it yields
//! between batches); an idle shard gives it everything. An optional byte rate
//! (`--log-cleaner-io-max-bytes-per-second`) bounds its disk traffic as well. Nothing crosses
//! shards: each shard cleans the partitions it owns.

use std::rc::Rc;
use std::time::Duration;

use glommio::{Latency, Shares};
use spate_net::records::now_ms;
use spate_storage::StorageError;

use crate::shard::Shard;

/// Scheduling share of the cleaner's task queue (the default queue has 1000).
const CLEANER_SHARES: usize = 25;

/// Starts the shard's cleaner, if enabled; it stops by itself at shutdown. A pass that is cut
/// short by the shutdown leaves the log whole (see the swap protocol in storage).
pub fn spawn(shard: &Rc<Shard>) {
    let config = shard.node.config.cleaner;
    if !config.enable {
        return;
    }
    let queue = glommio::executor().create_task_queue(
        Shares::Static(CLEANER_SHARES),
        Latency::NotImportant,
        "log-cleaner",
    );
    let shard = shard.clone();
    match glommio::spawn_local_into(run(shard.clone()), queue) {
        Ok(task) => {
            task.detach();
        }
        Err(error) => {
            tracing::warn!(shard = shard.id.0, %error, "cannot start the log cleaner; compacted topics will not be compacted")
        }
    }
}

async fn run(shard: Rc<Shard>) {
    let config = shard.node.config.cleaner;
    let backoff = Duration::from_millis(config.backoff_ms);
    while !shard.node.is_shutting_down() {
        glommio::timer::sleep(backoff).await;
        for replica in shard.compacted_replicas() {
            if shard.node.is_shutting_down() {
                return;
            }
            let (topic, partition) = (&replica.key().topic, replica.key().partition);
            match replica.log().compact(now_ms(), &config.options).await {
                Ok(Some(outcome)) => tracing::info!(
                    %topic, partition,
                    segments = outcome.segments_cleaned,
                    written = outcome.segments_written,
                    bytes_before = outcome.bytes_before,
                    bytes_after = outcome.bytes_after,
                    records_removed = outcome.records_removed,
                    cleaned_up_to = %outcome.cleaned_up_to,
                    "compacted"
                ),
                Ok(None) | Err(StorageError::Closed) => {}
                Err(error) => tracing::warn!(%topic, partition, %error, "compaction failed"),
            }
        }
    }
}
