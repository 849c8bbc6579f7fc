//! [`PartitionTable`]: the partitions a shard hosts, and the one door handlers go through.
//!
//! The table keeps the newest metadata image the shard has applied and the replicas it has
//! opened. [`PartitionTable::leader`] does, once for every handler, what each used to repeat:
//! the topic and partition exist, this shard leads it, the client's leader epoch matches; and
//! it opens (recovers) the partition's log on first use. Logs are opened lazily, so a node
//! with more partitions than descriptors starts at once and serves what is used.
//!
//! Metadata changes arrive as [`MetadataUpdate`]s ([`PartitionTable::apply`]): roles and
//! epochs change in place, topic configs reach open logs, and partitions that moved away or
//! were deleted are handed back as [`Retirement`]s for the shard to close or delete in the
//! background.
//!
//! Directory names, preparing and deleting a replica's directory, and start-up clean-up of
//! orphans live in `table_dirs.rs`.
//!
//! Concurrency contract: owned by one shard (`!Send`). Maps are borrowed only between awaits;
//! opening and retiring logs (which await) are serialised by `open_lock`, lookups are not.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use spate_storage::PartitionLog;
use uuid::Uuid;

use super::error::PartitionError;
use super::ids::{BrokerId, TopicPartition};
use super::log_config::log_config;
use super::replica::{Partition, Role};
use crate::config::BrokerConfig;
use crate::metadata::image::{MetadataImage, PartitionAssignment, TopicImage};
use crate::metadata::records::MetadataRecord;
use crate::metadata::MetadataUpdate;

/// The file in each partition directory that names the topic id it belongs to (Kafka's).
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// A partition this shard no longer hosts, to be closed or deleted off the request path.
pub enum Retirement {
    /// Leadership moved to another shard: close the log, keep the data.
    Close(Rc<Partition>),
    /// The topic was deleted: close the log and remove its directory.
    Delete(Rc<Partition>),
    /// The topic was deleted and this partition's log was never opened: remove its
    /// directory if it still belongs to that topic.
    DeleteDirectory {
        /// The partition directory.
        dir: PathBuf,
        /// The deleted topic's id.
        topic_id: Uuid,
    },
}

impl Retirement {
    /// The directory it closes or deletes.
    pub fn dir(&self) -> &Path {
        match self {
            Retirement::Close(replica) | Retirement::Delete(replica) => replica.log().dir(),
            Retirement::DeleteDirectory { dir, .. } => dir,
        }
    }
}

/// The open replicas of one topic.
struct OpenTopic {
    id: Uuid,
    partitions: HashMap<i32, Rc<Partition>>,
}

/// See the module docs.
pub struct PartitionTable {
    broker: BrokerId,
    config: BrokerConfig,
    image: RefCell<Arc<MetadataImage>>,
    open: RefCell<HashMap<String, OpenTopic>>,
    open_lock: glommio::sync::Semaphore,
    /// Directories of replicas handed back by [`Self::apply`] whose [`Self::retire`] has
    /// not finished: a replica given back to this shard meanwhile (a reassignment undone at
    /// once) waits before it opens one, or it would reuse the old files and then lose them
    /// to the deletion.
    /// (How many retirements of each are pending: a replayed log can drop the same replica
    /// several times.)
    retiring: RefCell<HashMap<PathBuf, usize>>,
    /// Notified as each of `retiring` is done.
    retired: crate::notify::Notify,
    /// Whether the images applied are the cluster's current ones. A restarted cluster node
    /// replays its metadata log from its own files first, and an old record that took a
    /// partition off this broker says nothing about now: a later one may have given it
    /// back, with the data in its directory. Until then a dropped replica is only closed,
    /// never deleted (see `member::caught_up`). Always true on a one-node cluster.
    caught_up: std::cell::Cell<bool>,
}

impl PartitionTable {
    /// The table of the shard that is broker `broker`, starting from `image`.
    pub fn new(
        broker: BrokerId,
        config: BrokerConfig,
        image: Arc<MetadataImage>,
    ) -> PartitionTable {
        PartitionTable {
            broker,
            image: RefCell::new(image),
            open: RefCell::new(HashMap::new()),
            open_lock: glommio::sync::Semaphore::new(1),
            retiring: RefCell::default(),
            retired: crate::notify::Notify::default(),
            caught_up: std::cell::Cell::new(config.cluster.is_none()),
            config,
        }
    }

    /// The images applied from now on are the cluster's current ones (a restarted cluster
    /// node has caught up with its controller quorum): a replica dropped from now on is
    /// deleted, not only closed.
    pub fn set_caught_up(&self) {
        self.caught_up.set(true);
    }

    /// The newest metadata image this shard has applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// The broker id of this shard.
    pub fn broker(&self) -> BrokerId {
        self.broker
    }

    /// The partition if this shard leads it: the one check every handler makes (exists, led
    /// here, `current_leader_epoch` matches; -1 means the client does not know the epoch).
    /// Opens the log on first use.
    pub async fn leader(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<Rc<Partition>, PartitionError> {
        let replica = self.hosted(topic, partition).await?;
        if !replica.is_leader() {
            return Err(PartitionError::NotLeaderOrFollower);
        }
        replica.check_leader_epoch(current_leader_epoch)?;
        Ok(replica)
    }

    /// The partition if this shard hosts a replica of it, leader or follower, whose leader
    /// epoch is the client's (-1: any): what a consumer may read from with Fetch v11+
    /// (KIP-392), up to this replica's high watermark. Opens the log on first use.
    pub async fn readable(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<Rc<Partition>, PartitionError> {
        let replica = self.hosted(topic, partition).await?;
        replica.check_leader_epoch(current_leader_epoch)?;
        Ok(replica)
    }

    /// This shard's replica of a partition it hosts, whatever its role: a follower's fetch
    /// session appends to it. Opens the log on first use.
    pub async fn replica_of(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Rc<Partition>, PartitionError> {
        self.hosted(topic, partition).await
    }

    /// The replica if it is open already (no I/O), whatever its role.
    pub fn open_replica(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        let image = self.image.borrow();
        let id = image.topic(topic)?.id;
        let open = self.open.borrow();
        let topic = open.get(topic).filter(|open| open.id == id)?;
        topic.partitions.get(&partition).cloned()
    }

    /// Every open replica: a snapshot, so that the caller may await between them.
    pub fn open_replicas(&self) -> Vec<Rc<Partition>> {
        self.open
            .borrow()
            .values()
            .flat_map(|topic| topic.partitions.values().cloned())
            .collect()
    }

    /// How many replicas are open.
    pub fn open_count(&self) -> usize {
        self.open
            .borrow()
            .values()
            .map(|topic| topic.partitions.len())
            .sum()
    }

    /// This shard's replica of a partition it hosts, opened if needed.
    async fn hosted(&self, topic: &str, partition: i32) -> Result<Rc<Partition>, PartitionError> {
        self.check_hosted(topic, partition)?;
        if let Some(open) = self.open_replica(topic, partition) {
            open.touch();
            if open.reopen_due() {
                return Ok(self.reopen(open).await);
            }
            return Ok(open);
        }
        // Not while an older replica's directory of the same name is being closed or
        // deleted (`retiring`); before the lock, which the retirement takes.
        loop {
            let (_, assignment) = self.check_hosted(topic, partition)?;
            let dir = self.dir_of(topic, partition, &assignment);
            if !self.retiring.borrow().contains_key(&dir) {
                break;
            }
            self.retired.notified().await;
        }
        let _permit = self.open_lock.acquire_permit(1).await;
        // The image may have changed while we waited for the lock.
        let (topic_image, assignment) = self.check_hosted(topic, partition)?;
        if let Some(open) = self.open_replica(topic, partition) {
            return Ok(open);
        }
        self.retire_replaced_topic(&topic_image).await;
        let dir = prepare_partition_dir(self.dir_of(topic, partition, &assignment), &topic_image)?;
        let log = PartitionLog::open(dir, log_config(&topic_image.configs, &self.config)).await?;
        // Images applied while the log was opening found no replica to change: the replica
        // takes the assignment of the image as it is now, not as it was before the open (a
        // follower left with an older leader epoch drops every answer of its leader, and
        // never rejoins the ISR).
        let current = self
            .check_hosted(topic, partition)
            .and_then(|(current, assignment)| {
                if current.id == topic_image.id {
                    Ok((current, assignment))
                } else {
                    Err(PartitionError::UnknownTopicOrPartition)
                }
            });
        let (topic_image, assignment) = match current {
            Ok(current) => current,
            Err(error) => {
                if let Err(error) = log.close().await {
                    tracing::debug!(topic, partition, %error, "closing a log opened for a replica no longer hosted");
                }
                return Err(error);
            }
        };
        let replica = self.replica(
            TopicPartition::new(topic, partition),
            &topic_image,
            &assignment,
            log,
        );
        self.open
            .borrow_mut()
            .entry(topic.to_string())
            .or_insert_with(|| OpenTopic {
                id: topic_image.id,
                partitions: HashMap::new(),
            })
            .partitions
            .insert(partition, replica.clone());
        let open = self.open_count();
        crate::stats::update_current(|stats| stats.set_partitions_open(open));
        Ok(replica)
    }

    /// Opens a failed replica's log again (recovery finds what is on disk), for a log that
    /// failed because the disk was full: once space is back the partition takes writes again
    /// without a restart. The failed log keeps serving reads until the new one is open; if
    /// opening fails (the disk is still full), it stays, and is tried again later.
    async fn reopen(&self, failed: Rc<Partition>) -> Rc<Partition> {
        let _permit = self.open_lock.acquire_permit(1).await;
        let key = failed.key().clone();
        let current = self.open_replica(&key.topic, key.partition);
        if !current
            .as_ref()
            .is_some_and(|current| Rc::ptr_eq(current, &failed))
        {
            return current.unwrap_or(failed); // replaced or retired meanwhile
        }
        let Ok((topic_image, assignment)) = self.check_hosted(&key.topic, key.partition) else {
            return failed;
        };
        let config = log_config(&topic_image.configs, &self.config);
        let log = match PartitionLog::open(failed.log().dir().to_path_buf(), config).await {
            Ok(log) => log,
            Err(error) => {
                tracing::warn!(partition = %key, %error, "cannot reopen failed partition log yet");
                return failed;
            }
        };
        // As in `hosted`: the assignment as it is once the log is open.
        let (topic_image, assignment) = self
            .check_hosted(&key.topic, key.partition)
            .unwrap_or((topic_image, assignment));
        let reopened = self.replica(key.clone(), &topic_image, &assignment, log);
        reopened.note_reopen_attempt();
        if let Some(open) = self.open.borrow_mut().get_mut(&*key.topic) {
            open.partitions.insert(key.partition, reopened.clone());
        }
        tracing::info!(partition = %key, log_end_offset = %reopened.log_end_offset(), "reopened partition log after a recoverable failure");
        // The failed log holds files only; requests still holding it finish with its error.
        if let Err(error) = failed.log().close().await {
            tracing::debug!(partition = %key, %error, "closing the failed log");
        }
        reopened
    }

    /// A replica over `log`, with the role and leader epoch `assignment` gives this shard.
    fn replica(
        &self,
        key: TopicPartition,
        topic: &TopicImage,
        assignment: &PartitionAssignment,
        log: PartitionLog,
    ) -> Rc<Partition> {
        Rc::new(Partition::new(
            key,
            topic.id,
            log,
            self.broker,
            self.role_in(assignment),
            assignment.leader_epoch,
            self.min_insync(&topic.configs),
        ))
    }

    /// This shard's directory for its replica of a partition assigned so.
    fn dir_of(&self, topic: &str, partition: i32, assignment: &PartitionAssignment) -> PathBuf {
        replica_dir(
            &self.config.data_dir,
            topic,
            partition,
            &assignment.replicas,
            self.broker,
        )
    }

    /// The topic and assignment if this shard hosts the partition.
    fn check_hosted(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<TopicImage>, PartitionAssignment), PartitionError> {
        let image = self.image.borrow();
        let topic = image
            .topic(topic)
            .ok_or(PartitionError::UnknownTopicOrPartition)?;
        let assignment = topic
            .partition(partition)
            .ok_or(PartitionError::UnknownTopicOrPartition)?;
        if !assignment.replicas.contains(&self.broker) {
            return Err(PartitionError::NotLeaderOrFollower);
        }
        Ok((topic.clone(), assignment.clone()))
    }

    /// A topic's `min.insync.replicas`.
    fn min_insync(&self, configs: &std::collections::BTreeMap<String, String>) -> usize {
        crate::topic_config::effective(configs, "min.insync.replicas", &self.config)
            .parse()
            .unwrap_or(1)
    }

    fn role_in(&self, assignment: &PartitionAssignment) -> Role {
        if assignment.leader == self.broker {
            Role::Leader {
                replicas: assignment.replicas.clone(),
                isr: assignment.isr.clone(),
                partition_epoch: assignment.partition_epoch,
            }
        } else {
            Role::Follower {
                leader: assignment.leader,
            }
        }
    }

    /// If the open logs under this name belong to an older topic of the same name, delete
    /// them first: their directories are about to be reused. Holds `open_lock`.
    async fn retire_replaced_topic(&self, topic: &TopicImage) {
        let stale = {
            let mut open = self.open.borrow_mut();
            match open.get(&topic.name) {
                Some(existing) if existing.id != topic.id => open.remove(&topic.name),
                _ => None,
            }
        };
        for replica in stale
            .into_iter()
            .flat_map(|old| old.partitions.into_values())
        {
            retire(Retirement::Delete(replica)).await;
        }
    }

    /// Takes a new image: roles and epochs of open replicas change in place, configs reach
    /// open logs, and what this shard no longer hosts is returned for [`Self::retire`],
    /// which the caller must run: until it has, a replica of the same directory does not
    /// open (`retiring`).
    pub fn apply(&self, update: &MetadataUpdate) -> Vec<Retirement> {
        let previous = std::mem::replace(&mut *self.image.borrow_mut(), update.image.clone());
        let mut retirements = Vec::new();
        for record in update.records.iter() {
            match record {
                MetadataRecord::RemoveTopic { topic_id } => {
                    if let Some(topic) = previous.topic_by_id(*topic_id) {
                        retirements.extend(self.remove_topic(topic));
                    }
                }
                MetadataRecord::PartitionChange {
                    topic_id,
                    partition,
                    assignment,
                } => retirements
                    .extend(self.change_partition(&previous, *topic_id, *partition, assignment)),
                MetadataRecord::TopicConfigs { topic_id, configs } => {
                    let wanted = log_config(configs, &self.config);
                    let min_insync = self.min_insync(configs);
                    for replica in self.open_of(*topic_id) {
                        replica.set_min_insync(min_insync);
                        if replica.log().config() != wanted {
                            if let Err(error) = replica.log().set_config(wanted) {
                                tracing::warn!(partition = %replica.key(), %error, "cannot apply topic configs");
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let mut retiring = self.retiring.borrow_mut();
        for retirement in &retirements {
            *retiring.entry(retirement.dir().to_path_buf()).or_default() += 1;
        }
        drop(retiring);
        retirements
    }

    fn open_of(&self, topic_id: Uuid) -> Vec<Rc<Partition>> {
        self.open
            .borrow()
            .values()
            .filter(|topic| topic.id == topic_id)
            .flat_map(|topic| topic.partitions.values().cloned())
            .collect()
    }

    fn remove_topic(&self, topic: &TopicImage) -> Vec<Retirement> {
        let mut open = {
            let mut topics = self.open.borrow_mut();
            match topics.get(&topic.name) {
                Some(existing) if existing.id == topic.id => topics.remove(&topic.name),
                _ => None,
            }
        }
        .map(|open| open.partitions)
        .unwrap_or_default();
        let mut retirements = Vec::new();
        for (index, assignment) in topic.partitions.iter().enumerate() {
            if !assignment.replicas.contains(&self.broker) {
                continue;
            }
            retirements.push(match open.remove(&(index as i32)) {
                Some(replica) => Retirement::Delete(replica),
                None => Retirement::DeleteDirectory {
                    dir: replica_dir(
                        &self.config.data_dir,
                        &topic.name,
                        index as i32,
                        &assignment.replicas,
                        self.broker,
                    ),
                    topic_id: topic.id,
                },
            });
        }
        retirements
    }

    /// An open replica takes its new role; a replica this shard no longer hosts (a
    /// reassignment dropped it) is handed back: deleted unless another replica of this node
    /// now uses its directory (a partition moved between shards of the node when its shard
    /// count changed), then closed only.
    fn change_partition(
        &self,
        previous: &MetadataImage,
        topic_id: Uuid,
        partition: i32,
        assignment: &PartitionAssignment,
    ) -> Option<Retirement> {
        let (name, min_insync) = {
            let image = self.image.borrow();
            let topic = image.topic_by_id(topic_id)?;
            (topic.name.clone(), self.min_insync(&topic.configs))
        };
        let hosted = assignment.replicas.contains(&self.broker);
        let open = self.open_replica(&name, partition);
        if hosted {
            if let Some(replica) = open {
                replica.set_role(
                    self.role_in(assignment),
                    assignment.leader_epoch,
                    min_insync,
                );
            }
            return None;
        }
        let old_replicas = previous
            .topic_by_id(topic_id)
            .and_then(|topic| topic.partition(partition))
            .map(|old| old.replicas.clone())
            .filter(|old| old.contains(&self.broker))?;
        let data_dir = &self.config.data_dir;
        let dir = replica_dir(data_dir, &name, partition, &old_replicas, self.broker);
        let reused = assignment
            .replicas
            .iter()
            .filter(|broker| broker.node() == self.broker.node())
            .any(|broker| {
                replica_dir(data_dir, &name, partition, &assignment.replicas, *broker) == dir
            });
        // Deleted only on a current image; a replayed one closes (see `caught_up`).
        let delete = !reused && self.caught_up.get();
        let Some(replica) = open else {
            return delete.then_some(Retirement::DeleteDirectory { dir, topic_id });
        };
        // Waiters for acks=all on a leader that was dropped end now (NOT_LEADER_OR_FOLLOWER)
        // instead of at their timeout.
        replica.set_role(
            Role::Follower {
                leader: assignment.leader,
            },
            assignment.leader_epoch,
            min_insync,
        );
        self.open
            .borrow_mut()
            .get_mut(&name)?
            .partitions
            .remove(&partition);
        Some(if !delete {
            Retirement::Close(replica)
        } else {
            tracing::info!(partition = %replica.key(), "this broker is no longer a replica of the partition: deleting its log");
            Retirement::Delete(replica)
        })
    }

    /// Closes or deletes what [`Self::apply`] handed back, one at a time, so that a topic
    /// deleted and created again under the same name never races its old directory.
    pub async fn retire(&self, retirements: Vec<Retirement>) {
        if retirements.is_empty() {
            return;
        }
        let _permit = self.open_lock.acquire_permit(1).await;
        for retirement in retirements {
            let dir = retirement.dir().to_path_buf();
            retire(retirement).await;
            let mut retiring = self.retiring.borrow_mut();
            if let Some(pending) = retiring.get_mut(&dir) {
                *pending -= 1;
                if *pending == 0 {
                    retiring.remove(&dir);
                }
            }
            drop(retiring);
            self.retired.notify_all();
        }
        let open = self.open_count();
        crate::stats::update_current(|stats| stats.set_partitions_open(open));
    }

    /// Closes the least recently used logs, idle for `idle_min` or more, while the open logs'
    /// segments (one descriptor each) are more than `segments_max`: a node hosting more data
    /// than descriptors keeps serving what is used, and reopens the rest on their next
    /// request. Returns how many logs it closed.
    pub async fn close_idle(&self, segments_max: usize, idle_min: std::time::Duration) -> usize {
        let mut open: Vec<Rc<Partition>> = self.open_replicas();
        let mut segments: usize = open
            .iter()
            .map(|replica| replica.log().segment_count())
            .sum();
        if segments <= segments_max {
            return 0;
        }
        let _permit = self.open_lock.acquire_permit(1).await;
        open.sort_by_key(|replica| replica.last_used());
        let now = std::time::Instant::now();
        let mut closed = 0;
        for replica in open {
            if segments <= segments_max || now.duration_since(replica.last_used()) < idle_min {
                break;
            }
            let key = replica.key().clone();
            let still_open = self.open_replica(&key.topic, key.partition);
            if !still_open.is_some_and(|open| Rc::ptr_eq(&open, &replica)) {
                continue;
            }
            if let Some(topic) = self.open.borrow_mut().get_mut(&*key.topic) {
                topic.partitions.remove(&key.partition);
            }
            segments -= replica.log().segment_count();
            retire(Retirement::Close(replica)).await;
            closed += 1;
        }
        let open = self.open_count();
        crate::stats::update_current(|stats| stats.set_partitions_open(open));
        if closed > 0 {
            tracing::info!(
                closed,
                segments,
                segments_max,
                "closed idle partition logs to stay within the descriptor budget"
            );
        }
        closed
    }

    /// Writes the high watermark checkpoint of every open replicated replica whose high
    /// watermark moved since its last one (see `spate_storage::high_watermark`), in one
    /// blocking job off the shard.
    pub async fn checkpoint_high_watermarks(&self) {
        let due: Vec<_> = self
            .open_replicas()
            .into_iter()
            .filter_map(|replica| Some((replica.clone(), replica.high_watermark_checkpoint_due()?)))
            .collect();
        if due.is_empty() {
            return;
        }
        let checkpoints: Vec<_> = due
            .iter()
            .map(|(_, checkpoint)| checkpoint.clone())
            .collect();
        let failed = glommio::executor()
            .spawn_blocking(move || spate_storage::high_watermark::write_all(&checkpoints, false))
            .await;
        for (dir, error) in &failed {
            tracing::warn!(dir = %dir.display(), %error, "cannot write the high watermark checkpoint");
        }
        for (replica, (dir, checkpoint)) in due {
            if !failed.iter().any(|(failed, _)| *failed == dir) {
                replica.note_checkpointed(checkpoint.offset);
            }
        }
    }

    /// Closes every open log (clean shutdown): pending writes are flushed and synced.
    pub async fn close_all(&self) {
        let replicas: Vec<Rc<Partition>> = self
            .open
            .borrow_mut()
            .drain()
            .flat_map(|(_, topic)| topic.partitions.into_values())
            .collect();
        for replica in replicas {
            retire(Retirement::Close(replica)).await;
        }
    }
}

// Partition directories: their names, preparing one, deleting one; and the I/O of a
// retirement.
#[path = "table_dirs.rs"]
mod dirs;
pub use dirs::{partition_dir, remove_orphaned_partition_dirs, replica_dir};
use dirs::{prepare_partition_dir, retire};

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
