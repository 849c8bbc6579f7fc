//! The single-node controller at work: a task on the controller's shard that takes calls in
//! batches, persists their records, publishes the new image and answers.
//!
//! One round of [`ControllerTask::run`]:
//! 1. take every queued call (calls that arrive meanwhile wait for the next round);
//! 2. let the [`ControllerState`] turn them into records and answers;
//! 3. append the round's records to the journal and fdatasync it, on glommio's blocking pool
//!    (the shard keeps serving its clients meanwhile): one write and one sync for the round,
//!    however many topics it creates;
//! 4. publish the new image to every shard ([`crate::shard::Shard::publish_metadata`]) and
//!    wait until each has applied it, so that an answered CreateTopics is visible on every
//!    shard of the node at once;
//! 5. answer the calls.
//!
//! If the journal cannot be written (a full disk), the round's changes are dropped, their
//! calls are answered [`ControllerError::NotDurable`], and the next round tries again: nothing
//! a client was told about is ever lost, and the broker keeps serving.
//!
//! On a node of a replicated cluster the journal is the controller quorum's log
//! ([`MetadataLog::Quorum`]): a round runs only while this node's member leads the quorum
//! (else its calls are answered [`ControllerError::NotController`]); it first waits until the
//! member has applied everything committed and starts from that image (another leader may have
//! written since this node last led); step 3 is a quorum write, which returns once a majority
//! has the records and this node has applied them; and step 4 is done by every node's
//! `cluster::publisher`, as the entry is applied there, not by this task.
//!
//! Concurrency contract: lives on the controller's shard (`!Send`); calls from other shards
//! arrive through the mesh and are queued here by the shard's receiving tasks.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::controller::{ControllerError, ControllerReply, ControllerRequest, ControllerState};
use super::image::MetadataImage;
use super::records::MetadataRecord;
use super::store::MetadataStore;
use super::MetadataUpdate;
use crate::notify::Notify;
use crate::oneshot;
use crate::partition::ShardId;
use crate::shard::Shard;

/// What a call to the controller comes back with.
pub type ControllerResult = Result<ControllerReply, ControllerError>;

/// Most calls taken in one round.
const CALLS_PER_ROUND_MAX: usize = 1024;
/// How long the controller waits for every shard to apply a new image before answering
/// anyway (a shard that stopped must not hold up the rest).
const APPLY_WAIT_MAX: Duration = Duration::from_secs(10);
/// How often the idle task looks at the shutdown flag.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Where a call's answer goes.
pub enum ReplyTo {
    /// A task of the controller's own shard.
    Local(oneshot::Sender<ControllerResult>),
    /// A task of another shard, through the mesh.
    Remote {
        /// The calling shard.
        shard: ShardId,
        /// Its id for the call.
        call: u64,
    },
}

/// A queued call.
pub struct Call {
    /// What is asked.
    pub request: ControllerRequest,
    /// Where the answer goes.
    pub reply_to: ReplyTo,
    /// Whether another node forwarded it here: such a call is never forwarded again (two
    /// members that each believe the other leads must not pass a call back and forth).
    pub forwarded: bool,
}

/// How long a quorum write may wait for a majority before its calls are refused.
const QUORUM_WRITE_WAIT: Duration = Duration::from_secs(10);

/// Where the controller's records go (see the module docs).
pub enum MetadataLog {
    /// A one-node cluster's local journal.
    Journal {
        /// The journal.
        store: Arc<Mutex<MetadataStore>>,
        /// Records applied at start that could not be written then (a full disk): written
        /// with the next round.
        unpersisted: RefCell<Vec<MetadataRecord>>,
    },
    /// The controller quorum's log.
    Quorum {
        /// This node's member.
        quorum: crate::cluster::raft::quorum::Quorum,
        /// Where the images it applies go; the newest is what the controller decides against.
        publisher: Rc<crate::cluster::publisher::ImagePublisher>,
        /// Forwards calls to the leader when this member does not lead.
        forwarder: Box<crate::cluster::raft::network::Forwarder>,
        /// The voters' controller addresses, by node id.
        voters: std::collections::BTreeMap<u64, String>,
        /// This member's network table: which peers refused a connection, and when.
        faults: crate::cluster::raft::network::Faults,
    },
}

/// Shard 0 of this node: the broker that answers as controller.
fn own_broker(shard: &Rc<Shard>) -> crate::partition::BrokerId {
    crate::partition::BrokerId::of_shard(shard.node.node_id(), ShardId(0))
}

/// What a member that does not lead needs to forward calls.
struct Forward<'a> {
    quorum: &'a crate::cluster::raft::quorum::Quorum,
    publisher: &'a crate::cluster::publisher::ImagePublisher,
    forwarder: &'a crate::cluster::raft::network::Forwarder,
    voters: &'a std::collections::BTreeMap<u64, String>,
}

/// See the module docs.
pub struct ControllerTask {
    state: RefCell<ControllerState>,
    published: RefCell<Arc<MetadataImage>>,
    log: MetadataLog,
    calls: RefCell<VecDeque<Call>>,
    calls_arrived: Notify,
    /// On the quorum's leader: when each node was last heard from (StartNode or Heartbeat),
    /// and since when this node leads (a node not heard from since is given a whole session
    /// from then, as KRaft's new controller does). Kept in memory only: a new leader starts
    /// every clock afresh.
    heard_from: RefCell<std::collections::HashMap<crate::partition::NodeId, std::time::Instant>>,
    leading_since: std::cell::Cell<Option<std::time::Instant>>,
    /// When the leader balance was last checked (`rebalance_leaders`).
    balance_checked: std::cell::Cell<Option<std::time::Instant>>,
    /// The newest image version each shard has applied, by shard.
    applied: RefCell<Vec<u64>>,
    applied_advanced: Notify,
}

impl ControllerTask {
    /// A controller continuing from `state`, whose image every shard starts from.
    pub fn new(
        state: ControllerState,
        store: MetadataStore,
        unpersisted: Vec<MetadataRecord>,
        shard_count: u32,
    ) -> ControllerTask {
        let log = MetadataLog::Journal {
            store: Arc::new(Mutex::new(store)),
            unpersisted: RefCell::new(unpersisted),
        };
        ControllerTask::with_log(state, log, shard_count)
    }

    /// A controller whose records go to `log`.
    pub fn with_log(state: ControllerState, log: MetadataLog, shard_count: u32) -> ControllerTask {
        let published = Arc::new(state.image().clone());
        ControllerTask {
            applied: RefCell::new(vec![published.version; shard_count as usize]),
            published: RefCell::new(published),
            state: RefCell::new(state),
            log,
            heard_from: RefCell::default(),
            leading_since: std::cell::Cell::new(None),
            balance_checked: std::cell::Cell::new(None),
            calls: RefCell::new(VecDeque::new()),
            calls_arrived: Notify::default(),
            applied_advanced: Notify::default(),
        }
    }

    /// Queues a call for the next round.
    pub fn submit(&self, call: Call) {
        self.calls.borrow_mut().push_back(call);
        self.calls_arrived.notify_all();
    }

    /// A shard has applied the image of `version`.
    pub fn applied(&self, shard: ShardId, version: u64) {
        let mut applied = self.applied.borrow_mut();
        if let Some(slot) = applied.get_mut(shard.0 as usize) {
            *slot = (*slot).max(version);
        }
        drop(applied);
        self.applied_advanced.notify_all();
    }

    /// Serves calls until the node shuts down; then answers what is left `Unavailable`.
    pub async fn run(self: Rc<Self>, shard: Rc<Shard>) {
        while !shard.node.is_shutting_down() {
            let arrived = self.calls_arrived.notified();
            if self.calls.borrow().is_empty() {
                self.fence_silent_nodes(&shard);
                self.rebalance_leaders(&shard);
                if !self.calls.borrow().is_empty() || self.must_claim_controller(&shard) {
                    self.round(&shard).await;
                }
                // Also after a claim that failed (no majority): try again at the next tick,
                // not in a loop.
                futures_lite::future::or(arrived, glommio::timer::sleep(IDLE_CHECK_INTERVAL)).await;
                continue;
            }
            self.round(&shard).await;
        }
        let left: Vec<Call> = self.calls.borrow_mut().drain(..).collect();
        for call in left {
            shard
                .deliver_controller_result(call.reply_to, Err(ControllerError::Unavailable))
                .await;
        }
    }

    async fn round(&self, shard: &Rc<Shard>) {
        let calls: Vec<Call> = {
            let mut queue = self.calls.borrow_mut();
            let take = queue.len().min(CALLS_PER_ROUND_MAX);
            queue.drain(..take).collect()
        };
        match &self.log {
            MetadataLog::Journal { store, unpersisted } => {
                self.journal_round(shard, calls, store, unpersisted).await
            }
            MetadataLog::Quorum {
                quorum,
                publisher,
                forwarder,
                voters,
                ..
            } => {
                if quorum.is_leader() {
                    self.quorum_round(shard, calls, quorum, publisher).await
                } else {
                    let forward = Forward {
                        quorum,
                        publisher,
                        forwarder,
                        voters,
                    };
                    self.forward_round(shard, calls, forward).await
                }
            }
        }
    }

    /// Whether this node leads the quorum but the image names another controller (it was
    /// just elected): clients send admin requests to the controller that Metadata names, so
    /// a new leader says so at once, in a round of its own.
    fn must_claim_controller(&self, shard: &Rc<Shard>) -> bool {
        let MetadataLog::Quorum {
            quorum, publisher, ..
        } = &self.log
        else {
            return false;
        };
        quorum.is_leader() && publisher.applied_image().controller != Some(own_broker(shard))
    }

    /// On the quorum's leader: queues a fencing of every unfenced node not heard from for a
    /// session timeout (`broker.session.timeout.ms`), or whose controller port refused a
    /// connection since it was last heard from.
    ///
    /// The refusal is the fast path for a process that died (kill -9, a crash, the OOM
    /// killer): its ports close with it, the leader's next Raft call to it is refused within a
    /// Raft heartbeat, and its partitions get new leaders in well under a second instead of a
    /// session timeout. Fencing a live node is always safe (the leader epoch moves on, its
    /// writes are refused, and it is unfenced when it heartbeats again), so a refusal needs no
    /// more proof; a node that is cut off or slow answers with timeouts, not refusals, and is
    /// left to the session timeout as before.
    fn fence_silent_nodes(&self, shard: &Rc<Shard>) {
        let MetadataLog::Quorum {
            quorum,
            publisher,
            faults,
            ..
        } = &self.log
        else {
            return;
        };
        let Some(cluster) = &shard.node.config.cluster else {
            return;
        };
        let now = std::time::Instant::now();
        if !quorum.is_leader() {
            self.leading_since.set(None);
            return;
        }
        let leading_since = self.leading_since.get().unwrap_or(now);
        self.leading_since.set(Some(leading_since));
        let session = Duration::from_millis(cluster.session_timeout_ms);
        let image = publisher.applied_image();
        // One broker per node (its shard 0), so each node appears once.
        let silent: Vec<(crate::partition::NodeId, bool)> = image
            .brokers()
            .filter(|broker| !broker.fenced && broker.id.shard() == ShardId(0))
            .map(|broker| broker.id.node())
            // The leader's own node is alive: it is running this. (A leader frozen and woken
            // finds every clock stale, its own too, until it learns it was deposed.)
            .filter(|node| *node != shard.node.node_id())
            .filter_map(|node| {
                let heard = self.heard_from.borrow().get(&node).copied();
                let since = heard.unwrap_or(leading_since).max(leading_since);
                let refused = u64::try_from(node.0)
                    .ok()
                    .and_then(|peer| faults.refused_at(peer))
                    .is_some_and(|refused| refused > since);
                (refused || now.duration_since(since) > session).then_some((node, refused))
            })
            .collect();
        for (node_id, refused) in silent {
            if refused {
                tracing::warn!(
                    node = node_id.0,
                    "fencing a node whose controller port refuses connections (its process is gone)"
                );
            } else {
                tracing::warn!(
                    node = node_id.0,
                    session_timeout_ms = cluster.session_timeout_ms,
                    "fencing a node that stopped heartbeating"
                );
            }
            let (sender, _ignored) = crate::oneshot::channel();
            self.submit(Call {
                request: ControllerRequest::FenceNode { node_id },
                reply_to: ReplyTo::Local(sender),
                forwarded: true,
            });
        }
    }

    /// On the active controller, every `leader.imbalance.check.interval.seconds`: queues a
    /// preferred election of the partitions whose preferred replica is live and in sync but
    /// does not lead (Kafka's `auto.leader.rebalance.enable`), at most 1,000 per check as
    /// Kafka's `MAX_ELECTIONS_PER_IMBALANCE`. After a node's failure and return its
    /// partitions stay led by the others until then, which piles the load onto them.
    fn rebalance_leaders(&self, shard: &Rc<Shard>) {
        /// Kafka's KRaft controller's cap on the elections of one imbalance check.
        const MAX_ELECTIONS_PER_CHECK: usize = 1_000;
        let Some(interval) = shard.node.config.leader_rebalance_interval else {
            return;
        };
        if let MetadataLog::Quorum { quorum, .. } = &self.log {
            if !quorum.is_leader() {
                self.balance_checked.set(None);
                return;
            }
        }
        let now = std::time::Instant::now();
        let Some(checked) = self.balance_checked.get() else {
            // A new controller waits a whole interval, as Kafka's does.
            self.balance_checked.set(Some(now));
            return;
        };
        if now.duration_since(checked) < interval {
            return;
        }
        self.balance_checked.set(Some(now));
        let partitions = self
            .state
            .borrow()
            .imbalanced_partitions(MAX_ELECTIONS_PER_CHECK);
        if partitions.is_empty() {
            return;
        }
        tracing::info!(
            partitions = partitions.len(),
            "leader imbalance: electing preferred leaders"
        );
        let (sender, _ignored) = crate::oneshot::channel();
        self.submit(Call {
            request: ControllerRequest::ElectLeaders {
                preferred: true,
                partitions: Some(partitions),
            },
            reply_to: ReplyTo::Local(sender),
            forwarded: true,
        });
    }

    async fn journal_round(
        &self,
        shard: &Rc<Shard>,
        calls: Vec<Call>,
        store: &Arc<Mutex<MetadataStore>>,
        unpersisted: &RefCell<Vec<MetadataRecord>>,
    ) {
        let mut records = Vec::new();
        let mut answers = Vec::with_capacity(calls.len());
        for call in calls {
            let (made, reply) = self.state.borrow_mut().handle(call.request);
            answers.push((call.reply_to, !made.is_empty(), reply));
            records.extend(made);
        }
        if records.is_empty() {
            for (reply_to, _, reply) in answers {
                shard.deliver_controller_result(reply_to, Ok(reply)).await;
            }
            return;
        }
        let mut to_write = unpersisted.borrow().clone();
        to_write.extend(records.iter().cloned());
        if let Err(error) = self.persist(store, to_write).await {
            tracing::error!(%error, "cannot write the metadata journal; the changes are refused");
            let published = (**self.published.borrow()).clone();
            self.state.borrow_mut().reset(published);
            for (reply_to, changed, reply) in answers {
                let result = if changed {
                    Err(ControllerError::NotDurable(error.to_string()))
                } else {
                    Ok(reply)
                };
                shard.deliver_controller_result(reply_to, result).await;
            }
            return;
        }
        unpersisted.borrow_mut().clear();
        let image = Arc::new(self.state.borrow().image().clone());
        *self.published.borrow_mut() = image.clone();
        let version = image.version;
        shard
            .publish_metadata(MetadataUpdate {
                image,
                records: Arc::new(records),
            })
            .await;
        self.wait_applied_everywhere(version).await;
        for (reply_to, _, reply) in answers {
            shard.deliver_controller_result(reply_to, Ok(reply)).await;
        }
    }

    /// Appends the records to the journal and syncs it, off the shard; writes a snapshot
    /// when the journal has grown enough.
    async fn persist(
        &self,
        store: &Arc<Mutex<MetadataStore>>,
        records: Vec<MetadataRecord>,
    ) -> std::io::Result<()> {
        let store = store.clone();
        let image = self.state.borrow().image().clone();
        glommio::executor()
            .spawn_blocking(move || {
                let mut store = store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                store.append(&records)?;
                if store.wants_snapshot() {
                    // The journal already holds the batch: a failed snapshot loses nothing.
                    if let Err(error) = store.snapshot(&image) {
                        tracing::warn!(error = %format!("{error:#}"), "cannot write a metadata snapshot");
                    }
                }
                Ok(())
            })
            .await
    }

    /// A round on the quorum's leader; see the module docs.
    async fn quorum_round(
        &self,
        shard: &Rc<Shard>,
        calls: Vec<Call>,
        quorum: &crate::cluster::raft::quorum::Quorum,
        publisher: &crate::cluster::publisher::ImagePublisher,
    ) {
        use crate::cluster::raft::quorum::QuorumWriteError;
        let refusal = |error: QuorumWriteError| match error {
            QuorumWriteError::NotLeader { leader } => ControllerError::NotController {
                leader: leader.and_then(|leader| i32::try_from(leader).ok()),
            },
            other => ControllerError::NotDurable(other.to_string()),
        };
        let caught_up = if quorum.is_leader() {
            quorum
                .catch_up(std::time::Instant::now() + QUORUM_WRITE_WAIT)
                .await
        } else {
            Err(QuorumWriteError::NotLeader {
                leader: quorum.leader(),
            })
        };
        if let Err(error) = caught_up {
            let error = refusal(error);
            for call in calls {
                shard
                    .deliver_controller_result(call.reply_to, Err(error.clone()))
                    .await;
            }
            return;
        }
        let applied = publisher.applied_image();
        if self.state.borrow().image().version != applied.version {
            self.state.borrow_mut().reset((*applied).clone());
        }
        let mut records = Vec::new();
        if applied.controller != Some(own_broker(shard)) {
            records.push(MetadataRecord::Controller {
                broker: own_broker(shard),
            });
            self.state.borrow_mut().claim_controller(own_broker(shard));
        }
        let mut answers = Vec::with_capacity(calls.len());
        for call in calls {
            if let ControllerRequest::JoinQuorum { node_id, address } = &call.request {
                let result = self.add_learner(quorum, *node_id, address.clone()).await;
                shard.deliver_controller_result(call.reply_to, result).await;
                continue;
            }
            self.note_heard_from(&call.request);
            let (made, reply) = self.state.borrow_mut().handle(call.request);
            answers.push((call.reply_to, !made.is_empty(), reply));
            records.extend(made);
        }
        let written = if records.is_empty() {
            Ok(applied.version)
        } else {
            let deadline = std::time::Instant::now() + QUORUM_WRITE_WAIT;
            quorum.write(records, deadline).await
        };
        match written {
            Ok(version) => {
                self.wait_applied_everywhere(version).await;
                for (reply_to, _, reply) in answers {
                    shard.deliver_controller_result(reply_to, Ok(reply)).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "the controller quorum did not take a round's changes");
                let error = refusal(error);
                self.state
                    .borrow_mut()
                    .reset((*publisher.applied_image()).clone());
                for (reply_to, changed, reply) in answers {
                    let result = if changed {
                        Err(error.clone())
                    } else {
                        Ok(reply)
                    };
                    shard.deliver_controller_result(reply_to, result).await;
                }
            }
        }
    }

    /// A broker-only node joins the quorum as a learner (see
    /// [`ControllerRequest::JoinQuorum`]); a voter's id is refused, so that no call can
    /// change a voter's address or role.
    async fn add_learner(
        &self,
        quorum: &crate::cluster::raft::quorum::Quorum,
        node: crate::partition::NodeId,
        address: String,
    ) -> ControllerResult {
        let MetadataLog::Quorum { voters, .. } = &self.log else {
            return Err(ControllerError::Unavailable);
        };
        let Ok(node_id) = u64::try_from(node.0) else {
            return Err(ControllerError::PolicyViolation(format!(
                "node id {} is negative",
                node.0
            )));
        };
        if voters.contains_key(&node_id) {
            return Err(ControllerError::PolicyViolation(format!(
                "node {node_id} is a voter of the controller quorum, not a node to add"
            )));
        }
        let deadline = std::time::Instant::now() + QUORUM_WRITE_WAIT;
        match quorum.add_learner(node_id, address.clone(), deadline).await {
            Ok(()) => {
                tracing::info!(node = node_id, %address, "a broker-only node joined the controller quorum as a learner");
                Ok(ControllerReply::Acknowledged)
            }
            Err(crate::cluster::raft::quorum::QuorumWriteError::NotLeader { leader }) => {
                Err(ControllerError::NotController {
                    leader: leader.and_then(|leader| i32::try_from(leader).ok()),
                })
            }
            Err(error) => Err(ControllerError::NotDurable(error.to_string())),
        }
    }

    fn note_heard_from(&self, request: &ControllerRequest) {
        let node = match request {
            ControllerRequest::StartNode(start) => start.node_id,
            ControllerRequest::Heartbeat { node_id, .. } => *node_id,
            _ => return,
        };
        self.heard_from
            .borrow_mut()
            .insert(node, std::time::Instant::now());
    }

    /// A round on a member that does not lead: each call goes to the leader's node, unless
    /// it was forwarded here already or no leader is known (NOT_CONTROLLER; the client
    /// retries). Calls go one at a time: controller calls are rare, and the leader batches.
    async fn forward_round(&self, shard: &Rc<Shard>, calls: Vec<Call>, forward: Forward<'_>) {
        let this_node = shard.node.config.node_id as u64;
        for call in calls {
            let leader = forward
                .quorum
                .leader()
                .filter(|leader| *leader != this_node);
            let address = leader.and_then(|leader| forward.voters.get(&leader));
            let result = match (leader, address) {
                (Some(leader), Some(address)) if !call.forwarded => {
                    // The forward ends when the quorum's leader changes, not only at its
                    // timeout: a leader cut off by a network partition answers nothing, and
                    // this task (with every call of this node behind it, its heartbeats
                    // too) would otherwise wait the whole FORWARD_TIMEOUT, even after this
                    // node was elected in its place. The call may or may not have taken
                    // effect there; the caller is told NOT_CONTROLLER and retries, as after
                    // a timeout.
                    let forwarded = async {
                        crate::cluster::forwarding::forward(
                            forward.forwarder,
                            leader,
                            address,
                            &call.request,
                        )
                        .await
                    };
                    let leader_changed = async {
                        let now = forward.quorum.until_leader_changes_from(leader).await;
                        tracing::debug!(
                            from = leader,
                            to = ?now,
                            "the quorum's leader changed while a call was forwarded to it"
                        );
                        Err(ControllerError::NotController {
                            leader: now.and_then(|now| i32::try_from(now).ok()),
                        })
                    };
                    match futures_lite::future::or(forwarded, leader_changed).await {
                        Ok(reply) => {
                            self.wait_published(forward.publisher, reply.version).await;
                            reply.result
                        }
                        Err(error) => Err(error),
                    }
                }
                _ => Err(ControllerError::NotController {
                    leader: leader.and_then(|leader| i32::try_from(leader).ok()),
                }),
            };
            shard.deliver_controller_result(call.reply_to, result).await;
        }
    }

    /// Waits until this node's shards have an image of at least `version` (or the apply
    /// wait runs out: the answer goes out anyway, as on the leader).
    async fn wait_published(
        &self,
        publisher: &crate::cluster::publisher::ImagePublisher,
        version: u64,
    ) {
        let deadline = std::time::Instant::now() + APPLY_WAIT_MAX;
        while publisher.applied_image().version < version {
            if std::time::Instant::now() >= deadline {
                return;
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        self.wait_applied_everywhere(version).await;
    }

    async fn wait_applied_everywhere(&self, version: u64) {
        let deadline = std::time::Instant::now() + APPLY_WAIT_MAX;
        loop {
            let advanced = self.applied_advanced.notified();
            if self
                .applied
                .borrow()
                .iter()
                .all(|applied| *applied >= version)
            {
                return;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                tracing::warn!(
                    version,
                    "a shard has not applied the metadata image in time; answering anyway"
                );
                return;
            }
            futures_lite::future::or(advanced, glommio::timer::sleep(deadline - now)).await;
        }
    }
}
