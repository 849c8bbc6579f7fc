//! A shard: one pinned executor thread that owns a set of partitions and the sockets of
//! the clients that talk to them.
//!
//! Concurrency contract: a [`Shard`] lives in an `Rc` on its own executor and is never sent
//! to another thread. Its maps sit in `RefCell`s that are borrowed only between awaits,
//! never across one. Partition logs are cheap `Rc` handles cloned out of the map before any
//! await. The only state shared with other shards is the [`NodeContext`] (configuration and
//! the catalog), which the produce and fetch paths only read.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use spate_storage::{LogConfig, PartitionLog, StorageError};
use uuid::Uuid;

use crate::catalog::{Catalog, SharedCatalog, TopicMeta};
use crate::config::BrokerConfig;
use crate::groups::coordinator::Coordinator;
use crate::notify::Notify;
use crate::placement::{broker_id, shard_for, NodeId, ShardId};
use crate::topic_config;

/// What every shard of the node shares (read-mostly; see the module docs).
pub struct NodeContext {
    /// The resolved configuration.
    pub config: BrokerConfig,
    /// The topic catalog.
    pub catalog: SharedCatalog,
    /// Number of shards on this node.
    pub shard_count: u32,
    /// Set when SIGINT/SIGTERM arrives; shards poll it and shut down.
    pub shutdown: AtomicBool,
    /// Every shard's counters (see `stats`).
    pub stats: Arc<crate::stats::NodeStats>,
}

impl NodeContext {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.config.node_id)
    }

    /// The port shard `shard` listens on.
    pub fn shard_port(&self, shard: ShardId) -> u16 {
        self.config.listen.port() + shard.0 as u16
    }

    /// The broker id of the shard that owns a partition.
    pub fn leader_broker_id(&self, topic: &str, partition: i32) -> i32 {
        broker_id(
            self.node_id(),
            shard_for(topic, partition, self.shard_count),
        )
    }
}

/// The open logs of one topic on this shard.
struct TopicLogs {
    topic_id: Uuid,
    logs: HashMap<i32, PartitionLog>,
}

/// One shard's state; see the module docs.
pub struct Shard {
    /// This shard's id.
    pub id: ShardId,
    /// Node-wide shared context.
    pub node: Arc<NodeContext>,
    catalog: RefCell<(u64, Arc<Catalog>)>,
    topics: RefCell<HashMap<String, TopicLogs>>,
    /// Serialises opening and deleting logs, which await; lookups do not take it.
    open_lock: glommio::sync::Semaphore,
    /// Fired when any partition of this shard gets new durable data.
    pub data_arrived: Notify,
    /// The consumer groups whose `__consumer_offsets` partitions this shard owns.
    pub groups: Coordinator,
}

impl Shard {
    /// A shard with no open logs yet; call [`Shard::sync_with_catalog`] to open its partitions.
    pub fn new(id: ShardId, node: Arc<NodeContext>) -> Shard {
        let catalog = (node.catalog.version(), node.catalog.snapshot());
        let groups = Coordinator::new(
            node.config.groups.clone(),
            catalog
                .1
                .topic(crate::groups::offsets_topic::TOPIC)
                .map_or(node.config.offsets_topic_partitions, |topic| {
                    topic.partitions
                }),
            node.config.offsets_retention_minutes.saturating_mul(60_000),
        );
        Shard {
            groups,
            id,
            node,
            catalog: RefCell::new(catalog),
            topics: RefCell::new(HashMap::new()),
            open_lock: glommio::sync::Semaphore::new(1),
            data_arrived: Notify::default(),
        }
    }

    /// The current catalog: one atomic load when nothing changed.
    pub fn catalog(&self) -> Arc<Catalog> {
        let version = self.node.catalog.version();
        let mut cached = self.catalog.borrow_mut();
        if cached.0 != version {
            crate::stats::cross_shard(crate::stats::CrossShard::CatalogRefresh);
            *cached = (version, self.node.catalog.snapshot());
        }
        cached.1.clone()
    }

    /// The shard that coordinates a consumer group (owns its `__consumer_offsets`
    /// partition), and that partition.
    pub fn group_coordinator(&self, group_id: &str) -> (ShardId, i32) {
        let partition = self.groups.partition_for(group_id);
        let shard = shard_for(
            crate::groups::offsets_topic::TOPIC,
            partition,
            self.node.shard_count,
        );
        (shard, partition)
    }

    /// This shard's counters.
    pub fn stats(&self) -> &crate::stats::ShardStats {
        &self.node.stats.shards[self.id.0 as usize]
    }

    /// Whether this shard leads the partition.
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        shard_for(topic, partition, self.node.shard_count) == self.id
    }

    /// This shard's broker id.
    pub fn broker_id(&self) -> i32 {
        broker_id(self.node.node_id(), self.id)
    }

    /// Looks up a topic, creating it when automatic creation is on. Returns `None` for an
    /// unknown topic otherwise (or an invalid name).
    pub fn topic_or_create(&self, name: &str, allow_create: bool) -> Option<Arc<TopicMeta>> {
        if let Some(topic) = self.catalog().topic(name) {
            return Some(topic.clone());
        }
        if !(allow_create && self.node.config.auto_create_topics) {
            return None;
        }
        let partitions = self.node.config.default_partitions;
        match self
            .node
            .catalog
            .create_topic(name, partitions, Default::default(), false)
        {
            Ok(topic) => {
                tracing::info!(topic = name, partitions, "created topic automatically");
                Some(topic)
            }
            // Another shard created it a moment ago.
            Err(crate::catalog::CatalogError::TopicExists(_)) => {
                self.catalog().topic(name).cloned()
            }
            Err(crate::catalog::CatalogError::Persist(error)) => crate::fatal(&error),
            Err(_) => None,
        }
    }

    /// The open log of a partition this shard owns, opening (and recovering) it if needed.
    pub async fn log(
        &self,
        topic: &TopicMeta,
        partition: i32,
    ) -> Result<PartitionLog, StorageError> {
        if let Some(log) = self.open_log(topic, partition) {
            return Ok(log);
        }
        let _permit = self.open_lock.acquire_permit(1).await;
        if let Some(log) = self.open_log(topic, partition) {
            return Ok(log);
        }
        self.retire_topic_if_replaced(topic).await;
        let log = PartitionLog::open(
            self.partition_dir(topic, partition)?,
            self.log_config(topic),
        )
        .await?;
        self.topics
            .borrow_mut()
            .entry(topic.name.clone())
            .or_insert_with(|| TopicLogs {
                topic_id: topic.id,
                logs: HashMap::new(),
            })
            .logs
            .insert(partition, log.clone());
        Ok(log)
    }

    /// The log of a partition if it is open on this shard.
    pub fn open_log(&self, topic: &TopicMeta, partition: i32) -> Option<PartitionLog> {
        let topics = self.topics.borrow();
        let logs = topics.get(&topic.name)?;
        (logs.topic_id == topic.id)
            .then(|| logs.logs.get(&partition).cloned())
            .flatten()
    }

    /// If the open logs under this name belong to an older topic of the same name, delete
    /// them first: their directories are about to be reused.
    async fn retire_topic_if_replaced(&self, topic: &TopicMeta) {
        let stale = {
            let topics = self.topics.borrow();
            topics
                .get(&topic.name)
                .is_some_and(|logs| logs.topic_id != topic.id)
        };
        if stale {
            self.delete_topic_logs(&topic.name).await;
        }
    }

    /// Prepares `<data>/<topic>-<partition>` for this topic: a directory left by a deleted
    /// topic of the same name (its `partition.metadata` names another id) is removed.
    fn partition_dir(&self, topic: &TopicMeta, partition: i32) -> Result<PathBuf, StorageError> {
        let dir = self
            .node
            .config
            .data_dir
            .join(format!("{}-{}", topic.name, partition));
        let metadata_path = dir.join("partition.metadata");
        let expected = format!("version: 0\ntopic_id: {}\n", topic.id);
        match std::fs::read_to_string(&metadata_path) {
            Ok(found) if found == expected => return Ok(dir),
            Ok(_) => {
                tracing::warn!(dir = %dir.display(), "removing partition directory of a deleted topic");
                std::fs::remove_dir_all(&dir)?;
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
        }
        std::fs::create_dir_all(&dir)?;
        crate::catalog::write_atomically(&metadata_path, expected.as_bytes())
            .map_err(|error| StorageError::Io(std::io::Error::other(format!("{error:#}"))))?;
        Ok(dir)
    }

    fn log_config(&self, topic: &TopicMeta) -> LogConfig {
        let broker = &self.node.config;
        let setting = |name: &str| topic_config::effective(&topic.configs, name, broker);
        let defaults = LogConfig::default();
        let cleanup_policy = setting("cleanup.policy");
        let policies: Vec<&str> = cleanup_policy.split(',').map(str::trim).collect();
        LogConfig {
            segment_bytes: setting("segment.bytes")
                .parse()
                .unwrap_or(defaults.segment_bytes),
            index_interval_bytes: setting("index.interval.bytes")
                .parse()
                .unwrap_or(defaults.index_interval_bytes),
            max_message_bytes: setting("max.message.bytes")
                .parse()
                .unwrap_or(defaults.max_message_bytes),
            log_append_time: setting("message.timestamp.type") == "LogAppendTime",
            write_in_flight_bytes_max: broker.write_in_flight_bytes_max,
            segment_ms: setting("segment.ms")
                .parse::<i64>()
                .map_or(defaults.segment_ms, |segment_ms| segment_ms.max(1)),
            retention_delete: policies.contains(&"delete"),
            retention_ms: setting("retention.ms")
                .parse()
                .unwrap_or(defaults.retention_ms),
            retention_bytes: setting("retention.bytes")
                .parse()
                .unwrap_or(defaults.retention_bytes),
            file_delete_delay_ms: setting("file.delete.delay.ms")
                .parse()
                .unwrap_or(defaults.file_delete_delay_ms),
            compact: policies.contains(&"compact"),
            delete_retention_ms: setting("delete.retention.ms")
                .parse()
                .unwrap_or(defaults.delete_retention_ms),
            min_cleanable_dirty_ratio: setting("min.cleanable.dirty.ratio")
                .parse::<f64>()
                .ok()
                .filter(|ratio| ratio.is_finite())
                .map_or(defaults.min_cleanable_dirty_ratio, |ratio| {
                    ratio.clamp(0.0, 1.0)
                }),
            min_compaction_lag_ms: setting("min.compaction.lag.ms")
                .parse()
                .unwrap_or(defaults.min_compaction_lag_ms),
            max_compaction_lag_ms: setting("max.compaction.lag.ms")
                .parse()
                .unwrap_or(defaults.max_compaction_lag_ms),
        }
    }

    /// Applies retention (`retention.ms`, `retention.bytes`, the log start offset) to every
    /// open log of this shard. Called from the maintenance tick; it does not await: deleted
    /// segments are renamed at once and unlinked later, off the shard.
    pub fn enforce_retention(&self) {
        let now_ms = spate_net::records::now_ms();
        let topics = self.topics.borrow();
        for (name, logs) in topics.iter() {
            for (partition, log) in &logs.logs {
                match log.enforce_retention(now_ms) {
                    Ok(outcome) if outcome.segments_deleted > 0 => {
                        tracing::info!(topic = %name, partition, segments = outcome.segments_deleted,
                            bytes = outcome.bytes_deleted, log_start = %outcome.log_start, "retention deleted segments")
                    }
                    Ok(_) | Err(StorageError::Closed) => {}
                    Err(error) => {
                        tracing::warn!(topic = %name, partition, %error, "retention failed")
                    }
                }
            }
        }
    }

    /// Every open log of this shard whose topic is compacted, with its name and partition:
    /// a snapshot, so that the cleaner can await between logs.
    pub fn compacted_logs(&self) -> Vec<(String, i32, PartitionLog)> {
        let topics = self.topics.borrow();
        let mut logs = Vec::new();
        for (name, topic) in topics.iter() {
            for (partition, log) in &topic.logs {
                if log.config().compact {
                    logs.push((name.clone(), *partition, log.clone()));
                }
            }
        }
        logs
    }

    /// Brings the shard's open logs in line with the catalog: deletes logs of topics that
    /// are gone (or were re-created), and opens every partition this shard owns, so that
    /// recovery runs at start-up and new partitions get their directories at once.
    pub async fn sync_with_catalog(&self) {
        let catalog = self.catalog();
        let stale: Vec<String> = self
            .topics
            .borrow()
            .iter()
            .filter(|(name, logs)| {
                catalog
                    .topic(name)
                    .is_none_or(|topic| topic.id != logs.topic_id)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            let _permit = self.open_lock.acquire_permit(1).await;
            self.delete_topic_logs(&name).await;
        }
        self.apply_config_changes(&catalog);
        for topic in catalog.topics.values() {
            for partition in 0..topic.partitions {
                if self.owns(&topic.name, partition) {
                    if let Err(error) = self.log(topic, partition).await {
                        tracing::error!(topic = %topic.name, partition, %error, "cannot open partition log");
                    }
                }
            }
        }
        let open: usize = self
            .topics
            .borrow()
            .values()
            .map(|topic| topic.logs.len())
            .sum();
        self.stats().set_partitions_open(open);
    }

    /// Open logs take changed topic configs in place (AlterConfigs).
    fn apply_config_changes(&self, catalog: &Catalog) {
        let topics = self.topics.borrow();
        for (name, logs) in topics.iter() {
            let Some(topic) = catalog
                .topic(name)
                .filter(|topic| topic.id == logs.topic_id)
            else {
                continue;
            };
            let wanted = self.log_config(topic);
            for (partition, log) in &logs.logs {
                if log.config() != wanted {
                    match log.set_config(wanted) {
                        Ok(()) => {
                            tracing::info!(topic = %name, partition, "applied changed topic configs")
                        }
                        Err(error) => {
                            tracing::warn!(topic = %name, partition, %error, "cannot apply topic configs")
                        }
                    }
                }
            }
        }
    }

    async fn delete_topic_logs(&self, name: &str) {
        let Some(logs) = self.topics.borrow_mut().remove(name) else {
            return;
        };
        for (partition, log) in logs.logs {
            match log.delete().await {
                Ok(()) => tracing::info!(topic = name, partition, "deleted partition log"),
                Err(error) => {
                    tracing::error!(topic = name, partition, %error, "cannot delete partition log")
                }
            }
        }
    }

    /// Closes every log: pending writes are flushed and synced.
    pub async fn close_all(&self) {
        let logs: Vec<(String, i32, PartitionLog)> = self
            .topics
            .borrow_mut()
            .drain()
            .flat_map(|(name, logs)| {
                logs.logs
                    .into_iter()
                    .map(move |(partition, log)| (name.clone(), partition, log))
            })
            .collect();
        for (topic, partition, log) in logs {
            if let Err(error) = log.close().await {
                tracing::error!(%topic, partition, %error, "error closing partition log");
            }
        }
    }
}
