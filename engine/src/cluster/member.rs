//! This node's member of the controller quorum: bound at start, run on the controller's shard.
//!
//! - [`bind_controller_port`] binds `--controller-listen` on the main thread, before any shard
//!   starts, so that a port in use stops the start with one clear line (as the Kafka ports do).
//! - [`start`] opens the member on the controller's shard: its log and vote
//!   (`raft::log_store`) and snapshot (`raft::metadata_machine`) under
//!   `<data-dir>/controller-quorum/`, and its network (`raft::network`) with a fault table;
//!   it keeps the node's `QuorumStatusCell` current. [`serve`] then serves the controller
//!   port, once the shard that answers forwarded controller calls exists.
//! - A node that is not among the voters is a broker only: its member is a learner of the
//!   quorum (openraft's non-voting member), which receives and applies the metadata log but
//!   neither votes nor counts for commits; it asks the leader to take it at every start
//!   ([`join_as_learner`], `ControllerRequest::JoinQuorum`), giving its `--controller-listen`
//!   address, where the leader then sends it the log.
//! - [`announce_start`] sends the node's start-up records to the controller
//!   (`ControllerRequest::StartNode`) until they are in the image, then heartbeats
//!   (`ControllerRequest::Heartbeat`, every `broker.heartbeat.interval.ms`): the leader fences
//!   a node it has not heard from for `broker.session.timeout.ms`, and unfences it when it
//!   heartbeats again.
//! - [`caught_up`] holds each shard's clients back until its image holds that registration.
//!
//! The directory's name has no `-N` suffix, so partition-directory clean-up never takes it
//! for a partition of a deleted topic.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::forwarding::ControllerCalls;
use super::publisher::ImagePublisher;
use super::raft::log_store::FileLogStore;
use super::raft::metadata_machine::MetadataStateMachine;
use super::raft::network::{self, Faults, TcpNetworkFactory};
use super::raft::quorum::{Quorum, QuorumOptions};
use crate::config::BrokerConfig;
use crate::metadata::controller::{ControllerError, ControllerRequest, NodeStart};
use crate::metadata::image::MetadataImage;
use crate::partition::NodeId;
use crate::shard::{NodeContext, Shard};

/// The member's directory under the data directory.
pub const DIRECTORY: &str = "controller-quorum";
/// How long [`announce_start`] waits between tries while no controller takes the call.
const ANNOUNCE_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Binds this node's controller port if it is a voter; see the module docs.
pub fn bind_controller_port(config: &BrokerConfig) -> anyhow::Result<Option<RawFd>> {
    let Some(cluster) = &config.cluster else {
        return Ok(None);
    };
    let Some(address) = cluster.controller_listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(address).map_err(|error| {
        anyhow::anyhow!(
            "cannot listen on {address} for the controller quorum: {error}. Is another node running? Choose another port with --controller-listen"
        )
    })?;
    Ok(Some(listener.into_raw_fd()))
}

/// A running member.
pub struct Member {
    /// The member.
    pub quorum: Quorum,
    /// Carries the images it applies to the node's shards.
    pub publisher: Rc<ImagePublisher>,
    /// The fault-injection table its network and server consult.
    pub faults: Faults,
    /// The voters' controller addresses, by node id.
    pub voters: BTreeMap<u64, String>,
    /// The controller port, until [`serve`] takes it.
    listener: Option<glommio::net::TcpListener>,
}

/// Starts the member on the controller's shard; see the module docs.
pub async fn start(node: &Arc<NodeContext>, listener_fd: RawFd) -> anyhow::Result<Member> {
    let cluster = node
        .config
        .cluster
        .as_ref()
        .context("a quorum member needs --controller-quorum-voters")?;
    let dir: PathBuf = node.config.data_dir.join(DIRECTORY);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let node_id = u64::try_from(node.config.node_id).context("node ids are not negative")?;
    let voters: BTreeMap<u64, String> = cluster
        .voters
        .iter()
        .map(|voter| (voter.node_id as u64, voter.address.clone()))
        .collect();
    let options = QuorumOptions {
        node_id,
        voters: voters.clone(),
        election_timeout_ms: cluster.election_timeout_ms,
    };
    let publisher = ImagePublisher::new(Arc::new(MetadataImage::default()));
    let log = FileLogStore::open(&dir).await?;
    let machine = MetadataStateMachine::open(&dir, publisher.clone())?;
    let faults = Faults::default();
    let network = TcpNetworkFactory::new(node_id, faults.clone(), node.controller_tls.clone());
    let quorum = Quorum::start(options, network, log, machine).await?;
    // SAFETY: the descriptor is the bound controller listener, handed to this shard alone.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(listener_fd) };
    glommio::spawn_local(quorum.clone().publish_status(node.quorum_status.clone())).detach();
    tracing::info!(
        node = node_id,
        controller_listen = ?cluster.controller_listen,
        security = cluster.controller_security.name(),
        voters = cluster.voters.len(),
        "controller quorum member started"
    );
    Ok(Member {
        quorum,
        publisher,
        faults,
        voters,
        listener: Some(listener),
    })
}

/// Serves the controller port (Raft's RPCs and forwarded controller calls) once the
/// controller's shard exists. Members elect among themselves as soon as it runs; a node that
/// is a broker only then joins as a learner ([`join_as_learner`]).
pub fn serve(member: &mut Member, shard: Rc<Shard>) {
    let Some(listener) = member.listener.take() else {
        return;
    };
    let shard_for_join = shard.clone();
    let calls = Rc::new(ControllerCalls {
        shard,
        publisher: member.publisher.clone(),
    });
    glommio::spawn_local(network::serve(
        listener,
        member.quorum.raft().clone(),
        member.faults.clone(),
        calls,
        shard_for_join.node.controller_tls.clone(),
    ))
    .detach();
    if !member.voters.contains_key(&member.quorum.node_id()) {
        glommio::spawn_local(join_as_learner(
            shard_for_join,
            member.voters.clone(),
            member.faults.clone(),
        ))
        .detach();
    }
}

/// How long [`join_as_learner`] waits between tries.
const JOIN_RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// On a node that is a broker only: asks the quorum's leader, through the voters in turn, to
/// take this node's member as a learner (`ControllerRequest::JoinQuorum`), so that the leader
/// sends it the metadata log on its controller port. Done at every start (asking again is
/// harmless); returns once the leader took it, or the node stops.
async fn join_as_learner(shard: Rc<Shard>, voters: BTreeMap<u64, String>, faults: Faults) {
    let config = &shard.node.config;
    let Some(address) = config
        .cluster
        .as_ref()
        .and_then(|cluster| cluster.controller_listen)
    else {
        return;
    };
    let request = ControllerRequest::JoinQuorum {
        node_id: NodeId(config.node_id),
        address: address.to_string(),
    };
    let forwarder = network::Forwarder::new(
        config.node_id as u64,
        faults,
        shard.node.controller_tls.clone(),
    );
    let ids: Vec<u64> = voters.keys().copied().collect();
    let (mut next, mut leader, mut refusals) = (0usize, None::<u64>, 0u64);
    while !shard.node.is_shutting_down() && !ids.is_empty() {
        // The leader a voter named, else the next voter.
        let voter = leader.take().unwrap_or_else(|| {
            next += 1;
            ids[(next - 1) % ids.len()]
        });
        let Some(voter_address) = voters.get(&voter) else {
            continue;
        };
        // A voter that cannot be reached: the next one.
        if let Ok(reply) =
            super::forwarding::forward(&forwarder, voter, voter_address, &request).await
        {
            match reply.result {
                Ok(_) => {
                    tracing::info!(%address, voter, "joined the controller quorum as a learner: the leader sends this node the metadata log");
                    return;
                }
                Err(ControllerError::NotController { leader: named }) => {
                    leader = named
                        .and_then(|named| u64::try_from(named).ok())
                        .filter(|named| *named != voter);
                }
                Err(error) => {
                    refusals += 1;
                    if refusals.is_power_of_two() {
                        tracing::warn!(%error, voter, "the controller quorum did not take this node as a learner yet");
                    }
                }
            }
        }
        glommio::timer::sleep(JOIN_RETRY_INTERVAL).await;
    }
}

/// Sends this node's start-up records to the controller until they are in the image, then
/// heartbeats until the node shuts down; see the module docs.
pub async fn announce_start(shard: Rc<Shard>) {
    let config = &shard.node.config;
    let broker_epoch = shard.node.broker_epoch;
    let start = NodeStart {
        node_id: NodeId(config.node_id),
        shard_count: shard.node.shard_count,
        host: config.advertised_host.clone(),
        base_port: config.inter_broker_listener().advertised_port,
        rack: config.rack(),
        broker_epoch,
        clean_shutdown: shard.node.last_shutdown_clean,
        listeners: config.listener_endpoints(),
        credentials: shard.node.first_credentials.clone(),
    };
    let mut refusals = 0u64;
    while !shard.node.is_shutting_down() {
        match shard
            .controller_call(ControllerRequest::StartNode(start.clone()))
            .await
        {
            Ok(_) => {
                shard.node.controller_lease.answered();
                tracing::info!(broker_epoch, "this node's brokers are registered");
                if !start.credentials.is_empty() {
                    crate::metadata::bootstrap::first_credentials_sent(&config.data_dir);
                }
                heartbeat(&shard, start.node_id, broker_epoch).await;
                return;
            }
            Err(ControllerError::NotController { .. }) => {}
            Err(error) => {
                refusals += 1;
                if refusals.is_power_of_two() {
                    tracing::warn!(%error, "the controller did not take this node's start yet");
                }
            }
        }
        glommio::timer::sleep(ANNOUNCE_RETRY_INTERVAL).await;
    }
}

/// How often [`caught_up`] looks at the shard's image.
const CAUGHT_UP_POLL: Duration = Duration::from_millis(10);

/// Returns once this shard's image holds its broker's registration of this start (its
/// `StartNode`, see [`announce_start`]), or the node stops.
///
/// A restarted node replays an image from its own files that may be long stale: a node
/// killed while it led partitions still leads them there, although the quorum has fenced it
/// and moved them. The registration of this start is written to the quorum's log after
/// everything that happened while the node was away, so an image that holds it is at
/// least that new. Like a Kafka broker, which serves only once it has caught up with the
/// metadata log, a shard accepts no client connection before then (they wait in the listen
/// backlog): told the stale image, a client would send its writes to a leader that is not
/// one.
pub async fn caught_up(shard: &Shard) {
    let registered = |shard: &Shard| {
        shard
            .image()
            .broker(shard.broker_id())
            .is_some_and(|registration| registration.epoch == shard.node.broker_epoch)
    };
    let started = std::time::Instant::now();
    let mut logged = false;
    while !registered(shard) && !shard.node.is_shutting_down() {
        if !logged && started.elapsed() >= Duration::from_secs(1) {
            tracing::info!(
                shard = shard.id.0,
                "waiting for the controller quorum to register this node before serving clients"
            );
            logged = true;
        }
        glommio::timer::sleep(CAUGHT_UP_POLL).await;
    }
    if registered(shard) {
        tracing::info!(
            shard = shard.id.0,
            waited_ms = started.elapsed().as_millis() as u64,
            "caught up with the controller quorum: serving clients"
        );
    }
}

/// Whether the controller still counts this node in, as far as this node can tell: when it
/// last answered one of its heartbeats (or its registration).
///
/// The controller fences a node it has not heard from for a session timeout and gives its
/// leaderships to other ISR members. A node cut off from the controller (a network
/// partition, or a quorum that lost its majority around it) cannot learn that: its image
/// still names it leader, clients that still reach it keep sending it produce requests, and
/// their acks=all waits can never complete (no follower fetches from it any more). Clients
/// then stay with it until their request times out, and come back, because its Metadata
/// still names it: a 40 s isolation stalled a librdkafka producer 41 s. Once no heartbeat
/// has been answered for a session, the controller has fenced this node (it heard from it
/// no later than it answered), so the node stops acting as leader of its replicated
/// partitions towards clients: produce and its waits answer NOT_LEADER_OR_FOLLOWER and
/// Metadata names no leader for them, until a heartbeat is answered again. Nothing changes
/// for safety (the leader epochs already guard that); this is about sending clients away.
pub struct ControllerLease {
    origin: std::time::Instant,
    /// Milliseconds from `origin` to the last answer.
    answered_ms: std::sync::atomic::AtomicU64,
    /// The session timeout; zero on a one-node cluster (no controller to lose).
    session_ms: u64,
}

impl ControllerLease {
    /// The lease of a node whose controller fences it after `session` without a heartbeat
    /// (None: a one-node cluster, never expired). It starts as answered now: a node serves
    /// clients only once its registration was taken.
    pub fn new(session: Option<Duration>) -> ControllerLease {
        ControllerLease {
            origin: std::time::Instant::now(),
            answered_ms: std::sync::atomic::AtomicU64::new(0),
            session_ms: session.map_or(0, |session| session.as_millis() as u64),
        }
    }

    /// The controller answered a heartbeat (or the registration) just now.
    pub fn answered(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.answered_ms
            .fetch_max(now, std::sync::atomic::Ordering::Release);
    }

    /// Whether a session has passed since the last answer: the controller has fenced this
    /// node, or will at its next check.
    pub fn expired(&self) -> bool {
        self.session_ms > 0 && self.silent_for() > Duration::from_millis(self.session_ms)
    }

    /// How long until the lease expires if no answer comes (zero once expired; `None` on a
    /// one-node cluster).
    pub fn remaining(&self) -> Option<Duration> {
        (self.session_ms > 0)
            .then(|| Duration::from_millis(self.session_ms).saturating_sub(self.silent_for()))
    }

    fn silent_for(&self) -> Duration {
        let answered = self.answered_ms.load(std::sync::atomic::Ordering::Acquire);
        self.origin
            .elapsed()
            .saturating_sub(Duration::from_millis(answered))
    }

    /// Waits until the lease has expired (for ever on a one-node cluster).
    pub async fn until_expired(&self) {
        loop {
            match self.remaining() {
                None => futures_lite::future::pending::<()>().await,
                Some(left) if left.is_zero() => return,
                // A heartbeat answered meanwhile pushes the expiry out: look again then.
                Some(left) => glommio::timer::sleep(left + Duration::from_millis(1)).await,
            }
        }
    }
}

/// A controlled shutdown's progress, shared by the main thread (which asks for it on
/// SIGTERM and waits) and the controller's shard (whose heartbeat loop carries it out).
#[derive(Default)]
pub struct ControlledShutdown {
    /// 0: not asked; 1: asked; 2: done.
    state: std::sync::atomic::AtomicU8,
}

impl ControlledShutdown {
    /// Asks for it and waits until it is done or `wait` passed; whether it was done.
    pub fn request_and_wait(&self, wait: Duration) -> bool {
        use std::sync::atomic::Ordering;
        self.state.store(1, Ordering::Release);
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            if self.state.load(Ordering::Acquire) == 2 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn requested(&self) -> bool {
        self.state.load(std::sync::atomic::Ordering::Acquire) == 1
    }

    fn done(&self) {
        self.state.store(2, std::sync::atomic::Ordering::Release);
    }
}

/// How often the heartbeat loop looks for a controlled shutdown between heartbeats.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// Tells the controller every heartbeat interval that this node is alive, until it stops;
/// on a controlled shutdown, stops heartbeating (a heartbeat would unfence the node) and
/// asks the controller to fence it now, which moves its leaderships to other ISR members.
async fn heartbeat(shard: &Rc<Shard>, node_id: NodeId, broker_epoch: i64) {
    let interval = shard
        .node
        .config
        .cluster
        .as_ref()
        .map_or(Duration::from_millis(500), |cluster| {
            Duration::from_millis(cluster.heartbeat_interval_ms)
        });
    let mut lease_expiry_logged = false;
    while !shard.node.is_shutting_down() {
        let sent = std::time::Instant::now();
        let result = shard
            .controller_call(ControllerRequest::Heartbeat {
                node_id,
                broker_epoch,
            })
            .await;
        match result {
            Ok(_) => {
                let was_expired = shard.node.controller_lease.expired();
                shard.node.controller_lease.answered();
                if was_expired {
                    tracing::info!(
                        "the controller answers heartbeats again: leading towards clients again"
                    );
                }
            }
            Err(error) => {
                tracing::debug!(%error, "a heartbeat was not taken");
                if shard.node.controller_lease.expired() && !lease_expiry_logged {
                    lease_expiry_logged = true;
                    tracing::warn!(
                        "no heartbeat answered for a session: the controller has fenced this \
                         node; its replicated partitions send clients elsewhere"
                    );
                }
            }
        }
        if !shard.node.controller_lease.expired() {
            lease_expiry_logged = false;
        }
        while sent.elapsed() < interval && !shard.node.controlled_shutdown.requested() {
            glommio::timer::sleep(SHUTDOWN_POLL.min(interval.saturating_sub(sent.elapsed()))).await;
        }
        if shard.node.controlled_shutdown.requested() {
            shut_down(shard, node_id, broker_epoch).await;
            return;
        }
    }
}

/// Asks the controller to fence this node before it stops, until it answers (the main
/// thread stops waiting after its own deadline).
async fn shut_down(shard: &Rc<Shard>, node_id: NodeId, broker_epoch: i64) {
    loop {
        let result = shard
            .controller_call(ControllerRequest::ControlledShutdown {
                node_id,
                broker_epoch,
            })
            .await;
        match result {
            Ok(_) => {
                shard.node.controlled_shutdown.done();
                return;
            }
            Err(error) => {
                tracing::debug!(%error, "the controlled shutdown was not taken yet");
                glommio::timer::sleep(ANNOUNCE_RETRY_INTERVAL).await;
            }
        }
    }
}
