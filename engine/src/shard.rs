//! A shard: one pinned executor thread that hosts a set of partitions, owns the sockets of the
//! clients that talk to them, and (on shard 0) runs the controller.
//!
//! Concurrency contract: a [`Shard`] lives in an `Rc` on its own executor and is never sent
//! to another thread. Its `RefCell`s are borrowed only between awaits, never across one. The
//! only state shared with other shards is the [`NodeContext`] (configuration, counters, the
//! shutdown flag), which is read-only on the request paths. Everything else that crosses
//! shards is a typed message over the channel mesh (`crate::mesh`): calls to the controller,
//! metadata updates and their acknowledgements.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use glommio::channels::shared_channel::ConnectedReceiver;

use crate::config::BrokerConfig;
use crate::groups::coordinator::Coordinator;
use crate::groups::offsets_topic;
use crate::mesh::{Mesh, ShardMessage};
use crate::metadata::controller::{ControllerError, ControllerReply, ControllerRequest, NewTopic};
use crate::metadata::controller_task::{Call, ControllerResult, ControllerTask, ReplyTo};
use crate::metadata::image::{MetadataImage, TopicImage};
use crate::metadata::MetadataUpdate;
use crate::oneshot;
use crate::partition::{BrokerId, NodeId, Partition, PartitionTable, ShardId};
use crate::stats::CrossShard;

/// What every shard of the node shares (read-mostly; see the module docs).
pub struct NodeContext {
    /// The resolved configuration.
    pub config: BrokerConfig,
    /// Number of shards on this node.
    pub shard_count: u32,
    /// The shard the controller runs on.
    pub controller_shard: ShardId,
    /// Set when SIGINT/SIGTERM arrives; shards poll it and shut down.
    pub shutdown: AtomicBool,
    /// A cluster node's controlled shutdown (Kafka's): SIGTERM first asks the controller to
    /// move this node's leaderships and ISR memberships away (see `cluster::member`), and
    /// the node stops serving once that is done or the wait ran out.
    pub controlled_shutdown: crate::cluster::member::ControlledShutdown,
    /// Every shard's counters (see `stats`).
    pub stats: Arc<crate::stats::NodeStats>,
    /// max.connections and max.connections.per.ip, over every shard.
    pub connections: Arc<crate::connection_limits::ConnectionLimits>,
    /// The controller quorum as this node sees it (empty on a one-node cluster).
    pub quorum_status: crate::cluster::status::QuorumStatusCell,
    /// This start's broker epoch (its wall-clock millisecond): a cluster node registers its
    /// brokers with it, and its shards serve clients once their image holds that
    /// registration (see `cluster::member::caught_up`).
    pub broker_epoch: i64,
    /// Whether this node's last run stopped cleanly (`None`: its first start); see
    /// `shutdown_marker`.
    pub last_shutdown_clean: Option<bool>,
    /// Whether the controller still counts this node in (see `cluster::member`).
    pub controller_lease: crate::cluster::member::ControllerLease,
    /// The TLS acceptor of SSL and SASL_SSL listeners, if the node has any.
    pub tls: Option<futures_rustls::TlsAcceptor>,
    /// How this node's brokers secure their connections to other brokers
    /// (`security::inter_broker`).
    pub inter_broker: crate::security::client::ClientSecurity,
    /// The controller port's mutual TLS, if `--controller-security-protocol SSL`
    /// (`cluster::raft::transport`).
    pub controller_tls: Option<crate::cluster::raft::transport::ControllerTls>,
    /// A cluster node's users written before its first start, for its `StartNode`
    /// (`metadata::bootstrap::start_in_quorum`).
    pub first_credentials: Vec<crate::metadata::records::MetadataRecord>,
}

impl NodeContext {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.config.node_id)
    }

    /// Whether the node is stopping.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

/// One shard's state; see the module docs.
pub struct Shard {
    /// This shard's id.
    pub id: ShardId,
    /// Node-wide shared context.
    pub node: Arc<NodeContext>,
    /// The partitions this shard hosts, and its current metadata image.
    pub partitions: PartitionTable,
    /// The consumer groups whose `__consumer_offsets` partitions this shard leads.
    pub groups: Coordinator,
    /// The transactional ids whose `__transaction_state` partitions this shard leads.
    pub txns: crate::transactions::coordinator::TxnCoordinator,
    mesh: Mesh,
    controller: Option<Rc<ControllerTask>>,
    /// Controller calls of this shard's tasks awaiting an answer, by call id.
    calls: RefCell<HashMap<u64, oneshot::Sender<ControllerResult>>>,
    next_call: Cell<u64>,
    /// Producer ids this shard may hand out without asking the controller.
    producer_ids: RefCell<Range<i64>>,
    /// Bytes of large requests this shard's connections may hold from arrival to answer
    /// (queued.max.request.bytes; see `spate_net::budget`).
    pub request_memory: Rc<spate_net::MemoryBudget>,
    /// This shard's client-quota sensors (`crate::quota`).
    pub quotas: crate::quota::ShardQuotas,
}

impl Shard {
    /// A shard starting from `image`; `controller` is set on the controller's shard.
    pub fn new(
        id: ShardId,
        node: Arc<NodeContext>,
        image: Arc<MetadataImage>,
        mesh: Mesh,
        controller: Option<Rc<ControllerTask>>,
    ) -> Shard {
        let broker = BrokerId::of_shard(node.node_id(), id);
        let request_memory = spate_net::MemoryBudget::new(node.config.queued_max_request_bytes);
        let offsets_partitions = image
            .topic(offsets_topic::TOPIC)
            .map_or(node.config.offsets_topic_partitions, |topic| {
                topic.partition_count()
            });
        let groups = Coordinator::new(
            node.config.groups.clone(),
            offsets_partitions,
            node.config.offsets_retention_minutes.saturating_mul(60_000),
        );
        let quotas = crate::quota::ShardQuotas::new(node.config.quota_window);
        Shard {
            id,
            partitions: PartitionTable::new(broker, node.config.clone(), image),
            groups,
            txns: crate::transactions::coordinator::TxnCoordinator::new(
                node.config.transactions.clone(),
            ),
            node,
            mesh,
            controller,
            calls: RefCell::new(HashMap::new()),
            next_call: Cell::new(0),
            producer_ids: RefCell::new(0..0),
            request_memory,
            quotas,
        }
    }

    /// The newest metadata image this shard has applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.partitions.image()
    }

    /// This shard's broker id.
    pub fn broker_id(&self) -> BrokerId {
        self.partitions.broker()
    }

    /// This shard's counters.
    pub fn stats(&self) -> &crate::stats::ShardStats {
        &self.node.stats.shards[self.id.0 as usize]
    }

    /// The broker that coordinates a consumer group (leads its `__consumer_offsets`
    /// partition), if that partition exists, and the partition.
    pub fn group_coordinator(&self, group_id: &str) -> (Option<BrokerId>, i32) {
        let partition = self.groups.partition_for(group_id);
        let leader = self
            .image()
            .partition(offsets_topic::TOPIC, partition)
            .map(|assignment| assignment.leader);
        (leader, partition)
    }

    /// Asks the controller and waits for its answer.
    pub async fn controller_call(&self, request: ControllerRequest) -> ControllerResult {
        let (sender, receiver) = oneshot::channel();
        match &self.controller {
            Some(controller) => controller.submit(Call {
                request,
                reply_to: ReplyTo::Local(sender),
                forwarded: false,
            }),
            None => {
                self.stats().cross_shard(CrossShard::ControllerCall);
                let call = self.next_call.get();
                self.next_call.set(call + 1);
                self.calls.borrow_mut().insert(call, sender);
                let message = ShardMessage::ControllerCall { call, request };
                if !self.mesh.send(self.node.controller_shard, message).await {
                    self.calls.borrow_mut().remove(&call);
                    return Err(ControllerError::Unavailable);
                }
            }
        }
        receiver.await.unwrap_or(Err(ControllerError::Unavailable))
    }

    /// A call that another node forwarded to this one's controller (this must be the
    /// controller's shard): answered here, never forwarded on.
    pub async fn forwarded_controller_call(&self, request: ControllerRequest) -> ControllerResult {
        let Some(controller) = &self.controller else {
            return Err(ControllerError::Unavailable);
        };
        let (sender, receiver) = oneshot::channel();
        controller.submit(Call {
            request,
            reply_to: ReplyTo::Local(sender),
            forwarded: true,
        });
        receiver.await.unwrap_or(Err(ControllerError::Unavailable))
    }

    /// Sends a controller answer to the task that called.
    pub async fn deliver_controller_result(&self, reply_to: ReplyTo, result: ControllerResult) {
        match reply_to {
            ReplyTo::Local(sender) => sender.send(result),
            ReplyTo::Remote { shard, call } => {
                self.mesh
                    .send(shard, ShardMessage::ControllerReply { call, result })
                    .await;
            }
        }
    }

    /// The controller's shard publishes a new image: applied here, and sent to every other
    /// shard, which acknowledges it (`ShardMessage::MetadataApplied`).
    pub async fn publish_metadata(self: &Rc<Self>, update: MetadataUpdate) {
        let version = update.version();
        self.apply_metadata(&update);
        if let Some(controller) = &self.controller {
            controller.applied(self.id, version);
        }
        for shard in (0..self.node.shard_count).map(ShardId) {
            if shard != self.id {
                self.mesh
                    .send(shard, ShardMessage::MetadataUpdate(update.clone()))
                    .await;
            }
        }
    }

    /// Takes a new image: the partition table follows it at once, and logs that moved away or
    /// were deleted are closed or deleted in the background.
    pub fn apply_metadata(self: &Rc<Self>, update: &MetadataUpdate) {
        let previous = self.partitions.image();
        let retirements = self.partitions.apply(update);
        self.follow_coordinator_leadership(&previous, &update.image);
        self.follow_txn_coordinator_leadership(&previous, &update.image);
        if !retirements.is_empty() {
            let shard = self.clone();
            glommio::spawn_local(async move { shard.partitions.retire(retirements).await })
                .detach();
        }
    }

    /// Group coordination follows the leadership of `__consumer_offsets` partitions: a
    /// partition this shard now leads has its groups loaded from the log (in the background;
    /// they answer COORDINATOR_LOAD_IN_PROGRESS meanwhile), one it no longer leads has them
    /// dropped.
    fn follow_coordinator_leadership(
        self: &Rc<Self>,
        previous: &MetadataImage,
        current: &MetadataImage,
    ) {
        let me = self.broker_id();
        let led = |image: &MetadataImage| -> std::collections::BTreeSet<i32> {
            image
                .topic(offsets_topic::TOPIC)
                .map(|topic| {
                    (0..topic.partition_count())
                        .filter(|index| topic.partitions[*index as usize].leader == me)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (before, after) = (led(previous), led(current));
        for partition in before.difference(&after) {
            tracing::info!(
                partition,
                "no longer coordinating the groups of this __consumer_offsets partition"
            );
            self.groups.lost(*partition);
        }
        let gained: Vec<i32> = after.difference(&before).copied().collect();
        if gained.is_empty() {
            return;
        }
        for partition in &gained {
            tracing::info!(
                partition,
                "coordinating the groups of this __consumer_offsets partition: loading them"
            );
            self.groups.gained(*partition);
        }
        let shard = self.clone();
        glommio::spawn_local(async move {
            shard.groups.retry_loads(&shard).await;
        })
        .detach();
    }

    /// Transaction coordination follows the leadership of `__transaction_state` partitions,
    /// as group coordination follows `__consumer_offsets` (the coordinator epoch of a
    /// partition is its leader epoch, so a new term of the same leader reloads it too).
    /// `previous` is `None` at start: every partition led is gained.
    pub fn follow_txn_coordinator_leadership(
        self: &Rc<Self>,
        previous: &MetadataImage,
        current: &MetadataImage,
    ) {
        use crate::transactions::state_log;
        let me = self.broker_id();
        let led = |image: &MetadataImage| -> std::collections::BTreeMap<i32, i32> {
            image
                .topic(state_log::TOPIC)
                .map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .enumerate()
                        .filter(|(_, assignment)| assignment.leader == me)
                        .map(|(index, assignment)| (index as i32, assignment.leader_epoch.0))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (before, after) = (led(previous), led(current));
        for partition in before.keys() {
            if !after.contains_key(partition) {
                tracing::info!(
                    partition,
                    "no longer coordinating the transactions of this __transaction_state partition"
                );
                self.txns.lost(*partition);
            }
        }
        let count = current
            .topic(state_log::TOPIC)
            .map_or(0, |topic| topic.partition_count());
        let mut gained = false;
        for (partition, epoch) in &after {
            if before.get(partition) != Some(epoch) {
                tracing::debug!(partition, epoch, "coordinating the transactions of this __transaction_state partition: loading them");
                self.txns.gained(*partition, *epoch, count);
                gained = true;
            }
        }
        if gained {
            let shard = self.clone();
            glommio::spawn_local(async move { shard.txns.load(&shard).await }).detach();
        }
    }

    /// Handles the messages another shard sends this one, in order, until the mesh closes.
    pub async fn receive_from(
        self: Rc<Self>,
        peer: ShardId,
        receiver: ConnectedReceiver<ShardMessage>,
    ) {
        while let Some(message) = receiver.recv().await {
            match message {
                ShardMessage::ControllerCall { call, request } => {
                    let reply_to = ReplyTo::Remote { shard: peer, call };
                    match &self.controller {
                        Some(controller) => controller.submit(Call {
                            request,
                            reply_to,
                            forwarded: false,
                        }),
                        None => {
                            self.deliver_controller_result(
                                reply_to,
                                Err(ControllerError::Unavailable),
                            )
                            .await
                        }
                    }
                }
                ShardMessage::ControllerReply { call, result } => {
                    if let Some(sender) = self.calls.borrow_mut().remove(&call) {
                        sender.send(result);
                    }
                }
                ShardMessage::MetadataUpdate(update) => {
                    self.stats().cross_shard(CrossShard::MetadataUpdate);
                    self.apply_metadata(&update);
                    let applied = ShardMessage::MetadataApplied {
                        version: update.version(),
                    };
                    self.mesh.send(peer, applied).await;
                }
                ShardMessage::MetadataApplied { version } => {
                    if let Some(controller) = &self.controller {
                        controller.applied(peer, version);
                    }
                }
            }
        }
    }

    /// Looks up topics by name, creating the missing ones (one controller call for all of them)
    /// when `allow_create` and automatic creation are on. Per name, in order: the topic, or
    /// `None` when it does not exist (or could not be created).
    pub async fn topics_or_create(
        &self,
        names: &[&str],
        allow_create: bool,
    ) -> Vec<Option<Arc<TopicImage>>> {
        let image = self.image();
        let mut missing: Vec<&str> = Vec::new();
        for name in names {
            if image.topic(name).is_none() && !missing.contains(name) {
                missing.push(name);
            }
        }
        let create = allow_create && self.node.config.auto_create_topics && !missing.is_empty();
        if create {
            missing.truncate(self.node.config.auto_create_topics_max_per_request);
            self.create_automatically(&missing).await;
        }
        let image = self.image();
        names
            .iter()
            .map(|name| image.topic(name).cloned())
            .collect()
    }

    async fn create_automatically(&self, names: &[&str]) {
        let topics = names
            .iter()
            .map(|name| NewTopic {
                name: name.to_string(),
                partitions: None,
                replication_factor: None,
                configs: Default::default(),
                assignments: Vec::new(),
            })
            .collect();
        let request = ControllerRequest::CreateTopics {
            topics,
            validate_only: false,
        };
        match self.controller_call(request).await {
            Ok(ControllerReply::CreateTopics(results)) => {
                for (name, result) in names.iter().zip(results) {
                    match result {
                        Ok(topic) => {
                            tracing::info!(
                                topic = name,
                                partitions = topic.partition_count(),
                                "created topic automatically"
                            )
                        }
                        // Another request created it a moment ago.
                        Err(ControllerError::TopicExists(_)) => {}
                        Err(error) => {
                            tracing::debug!(topic = name, %error, "cannot create topic automatically")
                        }
                    }
                }
            }
            Ok(other) => tracing::error!(
                ?other,
                "the controller answered a creation with something else"
            ),
            Err(error) => tracing::warn!(%error, "cannot create topics automatically"),
        }
    }

    /// A producer id never handed out before in this cluster: from this shard's block, or a
    /// new block from the controller.
    pub async fn allocate_producer_id(&self) -> Result<i64, ControllerError> {
        if let Some(id) = self.producer_ids.borrow_mut().next() {
            return Ok(id);
        }
        match self
            .controller_call(ControllerRequest::AllocateProducerIds)
            .await?
        {
            ControllerReply::ProducerIds(mut block) => {
                let id = block.next().ok_or(ControllerError::Unavailable)?;
                *self.producer_ids.borrow_mut() = block;
                Ok(id)
            }
            _ => Err(ControllerError::Unavailable),
        }
    }

    /// Applies retention (`retention.ms`, `retention.bytes`, the log start offset) to every
    /// open log of this shard. Called from the maintenance tick; it does not await: deleted
    /// segments are renamed at once and unlinked later, off the shard.
    pub fn enforce_retention(&self) {
        let now_ms = spate_net::records::now_ms();
        for replica in self.partitions.open_replicas() {
            match replica.log().enforce_retention(now_ms) {
                Ok(outcome) if outcome.segments_deleted > 0 => {
                    tracing::info!(partition = %replica.key(), segments = outcome.segments_deleted,
                        bytes = outcome.bytes_deleted, log_start = %outcome.log_start, "retention deleted segments")
                }
                Ok(_) | Err(spate_storage::StorageError::Closed) => {}
                Err(error) => {
                    tracing::warn!(partition = %replica.key(), %error, "retention failed")
                }
            }
        }
    }

    /// Drops the idempotence state of producers idle past producer.id.expiration.ms.
    pub fn expire_producers(&self) {
        let now_ms = spate_net::records::now_ms();
        let expiration_ms = self.node.config.producer_id_expiration_ms;
        let expired: usize = self
            .partitions
            .open_replicas()
            .iter()
            .map(|replica| replica.log().expire_producers(now_ms, expiration_ms))
            .sum();
        if expired > 0 {
            tracing::debug!(expired, "expired idle producer ids");
        }
    }

    /// Every open replica whose topic is compacted: a snapshot, so that the cleaner can
    /// await between logs.
    pub fn compacted_replicas(&self) -> Vec<Rc<Partition>> {
        self.partitions
            .open_replicas()
            .into_iter()
            .filter(|replica| replica.log().config().compact)
            .collect()
    }

    /// Closes every log: pending writes are flushed and synced.
    pub async fn close_all(&self) {
        self.partitions.close_all().await;
    }
}
