//! Starting and stopping a node: preflight checks, one pinned executor per shard, signal
//! handling, clean shutdown.
//!
//! Every check that can fail at start does so before any shard serves a client, with one
//! line that says what is wrong and how to fix it.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{bail, Context};
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::BrokerConfig;
use crate::connection;
use crate::mesh::{Mesh, ShardMessage};
use crate::metadata::bootstrap::{ControllerParts, PartsLog};
use crate::metadata::controller::{ControllerConfig, ControllerLimits};
use crate::metadata::controller_task::{ControllerTask, MetadataLog};
use crate::metadata::image::MetadataImage;
use crate::partition::{ShardId, MAX_SHARDS_PER_NODE};
use crate::security::{Listener, SecurityProtocol};
use crate::shard::{NodeContext, Shard};

/// glommio refuses to start below this locked-memory limit (its io_uring rings).
const MEMLOCK_MIN_BYTES: u64 = 512 * 1024;
/// Shards whose executor is running; a shard that stops before shutdown (a panic, which
/// is a bug) makes the main thread stop the whole node rather than serve with a hole.
static RUNNING_SHARDS: AtomicUsize = AtomicUsize::new(0);

/// Decrements [`RUNNING_SHARDS`] when a shard's future ends, even by unwinding.
struct RunningShard;

impl RunningShard {
    fn enter() -> RunningShard {
        RUNNING_SHARDS.fetch_add(1, Ordering::AcqRel);
        RunningShard
    }
}

impl Drop for RunningShard {
    fn drop(&mut self) {
        RUNNING_SHARDS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long SIGTERM waits for the controller to move a cluster node's leaderships away
/// before the node stops anyway (a controller quorum without a majority cannot answer).
const CONTROLLED_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// How often shards look for shutdown and do their maintenance (retention, group timers).
const MAINTENANCE_INTERVAL: Duration = Duration::from_millis(100);

/// Runs a broker until SIGINT or SIGTERM.
pub fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let memlock_bytes = raise_memlock_limit()?;
    check_io_uring()?;
    prepare_data_dir(&config.data_dir)?;
    // Every path below the data directory is made from this one. glommio opens directories
    // with io_uring's openat and fails on relative paths ("Bad file descriptor"), and the
    // default (./spate-data) is relative: resolve it once, here.
    config.data_dir = fs::canonicalize(&config.data_dir).with_context(|| {
        format!(
            "cannot resolve the data directory {}",
            config.data_dir.display()
        )
    })?;
    // Before anything is written: how the last run ended (see `shutdown_marker`).
    let last_shutdown_clean = crate::shutdown_marker::take(&config.data_dir);
    if last_shutdown_clean == Some(false) {
        tracing::warn!("the last run of this node did not stop cleanly (a crash, kill -9 or power loss): recovering its logs");
    }
    if let Some(io) =
        crate::host::load_io_properties(config.io_properties.as_deref(), &config.data_dir)?
    {
        config.write_in_flight_bytes_max = io.write_in_flight_bytes_max;
    }
    let cpus = allowed_cpus()?;
    let shard_count = config.smp.unwrap_or(cpus.len());
    crate::host::warn_about_host(shard_count, memlock_bytes);
    if shard_count > MAX_SHARDS_PER_NODE as usize {
        bail!("--smp {shard_count} is above the maximum of {MAX_SHARDS_PER_NODE} shards per node");
    }
    if shard_count > cpus.len() {
        tracing::warn!(
            shard_count,
            cpus = cpus.len(),
            "more shards than CPUs: some CPUs run several shards"
        );
    }
    let mut listeners = bind_listeners(&config.listeners, shard_count)?;
    let tls = config
        .tls
        .as_ref()
        .map(crate::security::tls::acceptor)
        .transpose()?;
    let inter_broker = config
        .inter_broker
        .client_security(config.tls.as_ref())
        .context("the inter-broker listener")?;
    if let Some(warning) = config.inter_broker.warning(shard_count) {
        tracing::warn!("{warning}");
    }
    let controller_tls = match &config.cluster {
        Some(cluster) => {
            if let Some(warning) = cluster.controller_warning(config.authorizer.enabled) {
                tracing::warn!("{warning}");
            }
            crate::cluster::raft::transport::for_node(
                cluster.controller_security,
                config.tls.as_ref(),
            )?
        }
        None => None,
    };
    let controller_listener = crate::cluster::member::bind_controller_port(&config)?;
    let open_files_limit = raise_open_files_limit();
    // This start's broker epoch: what its brokers register with, and what its followers
    // name in their fetches (KIP-903), so both must be this one value.
    let broker_epoch = spate_net::records::now_ms();
    let bootstrapped = if config.cluster.is_some() {
        crate::metadata::bootstrap::start_in_quorum(
            &config.data_dir,
            controller_config(&config, shard_count as u32),
        )?
    } else {
        crate::metadata::bootstrap::start(
            &config.data_dir,
            controller_config(&config, shard_count as u32),
            broker_epoch,
        )?
    };
    warn_if_descriptors_are_short(open_files_limit, bootstrapped.image.partition_count());
    let stats = Arc::new(
        crate::stats::NodeStats::new(shard_count, started)
            .with_data_dir(config.data_dir.clone())
            .with_topic_labels(config.metrics_topic_labels),
    );
    if let Some(address) = config.stats_listen {
        crate::stats::serve(address, stats.clone())?;
    }
    let node = Arc::new(NodeContext {
        shard_count: shard_count as u32,
        controller_shard: ShardId(0),
        shutdown: AtomicBool::new(false),
        controlled_shutdown: Default::default(),
        stats,
        connections: Arc::new(crate::connection_limits::ConnectionLimits::new(
            config.max_connections,
            config.max_connections_per_ip,
        )),
        quorum_status: Default::default(),
        broker_epoch,
        last_shutdown_clean,
        controller_lease: crate::cluster::member::ControllerLease::new(
            config
                .cluster
                .as_ref()
                .map(|cluster| std::time::Duration::from_millis(cluster.session_timeout_ms)),
        ),
        tls,
        inter_broker,
        first_credentials: bootstrapped.first_credentials.clone(),
        controller_tls,
        config,
    });
    block_termination_signals()?;
    let (ready_sender, ready) = mpsc::channel::<Result<ShardId, String>>();
    let mesh = crate::mesh::builder(shard_count);
    let mut controller = Some(bootstrapped.controller);
    let mut handles = Vec::with_capacity(shard_count);
    for index in 0..shard_count {
        let id = ShardId(index as u32);
        let start = ShardStart {
            id,
            node: node.clone(),
            listener_fds: std::mem::take(&mut listeners[index]),
            ready: ready_sender.clone(),
            image: bootstrapped.image.clone(),
            mesh: mesh.clone(),
            controller: if id == node.controller_shard {
                controller.take()
            } else {
                None
            },
            controller_listener: if id == node.controller_shard {
                controller_listener
            } else {
                None
            },
        };
        let cpu = cpus[index % cpus.len()];
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{index}"))
            .spawn(move || spate_storage::wakeup::guarded(run_shard(start)))
            .map_err(|error| executor_error(&error))?;
        handles.push(handle);
    }
    drop(ready_sender);
    for _ in 0..shard_count {
        match ready.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(message)) => bail!(message),
            Err(_) => bail!("a shard stopped during start-up (see the log above); if it mentions io_uring or memory, raise `ulimit -l`"),
        }
    }
    let listen = node.config.listen;
    tracing::info!(
        shards = shard_count,
        bootstrap = %listen,
        ports = %format!("{}..={}", listen.port(), listen.port() as usize + shard_count - 1),
        listeners = %node
            .config
            .listeners
            .iter()
            .map(|listener| format!("{}://{}", listener.name(), listener.address))
            .collect::<Vec<_>>()
            .join(","),
        data_dir = %node.config.data_dir.display(),
        startup_ms = node.stats.mark_serving(),
        "spate is serving"
    );
    wait_for_termination_signal(&RUNNING_SHARDS, shard_count);
    if node.config.cluster.is_some() {
        tracing::info!("controlled shutdown: moving this node's partition leaderships away");
        if node
            .controlled_shutdown
            .request_and_wait(CONTROLLED_SHUTDOWN_WAIT)
        {
            tracing::info!("controlled shutdown: the controller moved this node's leaderships");
        } else {
            tracing::warn!(
                wait_ms = CONTROLLED_SHUTDOWN_WAIT.as_millis() as u64,
                "controlled shutdown: the controller did not answer in time; stopping anyway"
            );
        }
    }
    tracing::info!("shutting down: flushing and closing partition logs");
    node.shutdown.store(true, Ordering::Release);
    for handle in handles {
        if handle.join().is_err() {
            bail!("a shard failed while shutting down");
        }
    }
    if let Err(error) = crate::shutdown_marker::write(&node.config.data_dir) {
        tracing::warn!(%error, "cannot leave the clean-shutdown marker: the next start will be taken for one after a crash");
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// What a shard's thread starts with.
struct ShardStart {
    id: ShardId,
    node: Arc<NodeContext>,
    /// Each listener's bound socket for this shard.
    listener_fds: Vec<(SecurityProtocol, RawFd)>,
    ready: mpsc::Sender<Result<ShardId, String>>,
    image: Arc<MetadataImage>,
    mesh: glommio::channels::channel_mesh::FullMesh<ShardMessage>,
    /// Set for the controller's shard.
    controller: Option<ControllerParts>,
    /// The bound controller port, for the controller's shard of a quorum voter.
    controller_listener: Option<RawFd>,
}

async fn run_shard(start: ShardStart) {
    let ShardStart {
        id,
        node,
        listener_fds,
        ready,
        image,
        mesh,
        controller,
        controller_listener,
    } = start;
    let _running = RunningShard::enter();
    crate::stats::enter_shard(node.stats.shards[id.0 as usize].clone());
    spate_storage::tail_cache::set_shard_budget_bytes(node.config.tail_cache_bytes);
    let (mesh, receivers) = match Mesh::join(mesh, id).await {
        Ok(joined) => joined,
        Err(error) => {
            let _ = ready.send(Err(format!("{error:#}")));
            return;
        }
    };
    let controller = match controller {
        None => None,
        Some(parts) => match start_controller(&node, parts, controller_listener).await {
            Ok(controller) => Some(controller),
            Err(error) => {
                let _ = ready.send(Err(format!("{error:#}")));
                return;
            }
        },
    };
    let (controller, member) = match controller {
        Some((task, member)) => (Some(task), member),
        None => (None, None),
    };
    let shard = Rc::new(Shard::new(
        id,
        node.clone(),
        image,
        mesh,
        controller.clone(),
    ));
    for (peer, receiver) in receivers {
        glommio::spawn_local(shard.clone().receive_from(peer, receiver)).detach();
    }
    if let Some(controller) = controller {
        glommio::spawn_local(controller.run(shard.clone())).detach();
    }
    if let Some(mut member) = member {
        crate::cluster::member::serve(&mut member, shard.clone());
        glommio::spawn_local(member.publisher.clone().run(shard.clone())).detach();
        glommio::spawn_local(crate::cluster::member::announce_start(shard.clone())).detach();
    }
    shard.groups.load(&shard).await;
    shard.follow_txn_coordinator_leadership(
        &crate::metadata::image::MetadataImage::default(),
        &shard.image(),
    );
    let listeners: Vec<_> = listener_fds
        .into_iter()
        .map(|(protocol, fd)| {
            // SAFETY: the descriptor is a bound, listening socket handed to this shard alone.
            (protocol, unsafe {
                glommio::net::TcpListener::from_raw_fd(fd)
            })
        })
        .collect();
    let _ = ready.send(Ok(id));
    glommio::spawn_local(open_partitions_ahead(shard.clone())).detach();
    crate::cluster::fetcher::spawn(&shard);
    glommio::spawn_local(crate::groups::lag::run(shard.clone())).detach();
    let maintenance = glommio::spawn_local(maintain(shard.clone()));
    glommio::spawn_local(checkpoint_high_watermarks(shard.clone())).detach();
    crate::cleaner::spawn(&shard);
    if node.config.cluster.is_some() {
        // Clients wait in the listen backlog until this shard's image is the quorum's, not
        // the one replayed from disk; see `caught_up`.
        crate::cluster::member::caught_up(&shard).await;
        shard.partitions.set_caught_up();
    }
    let accepting = listeners
        .into_iter()
        .map(|(protocol, listener)| accept(shard.clone(), protocol, listener));
    futures::future::join_all(accepting).await;
    maintenance.await;
    shard.close_all().await;
}

/// Accepts a listener's connections until the node shuts down.
async fn accept(shard: Rc<Shard>, protocol: SecurityProtocol, listener: glommio::net::TcpListener) {
    let node = shard.node.clone();
    let id = shard.id;
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            maintenance_tick_until_shutdown(&node).await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let address = stream.peer_addr().ok().map(|address| address.ip());
                let permit = match node.connections.admit(address) {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        if node.connections.should_log_refusal() {
                            tracing::warn!(shard = id.0, client = ?address, %refusal, "refusing connections (logged once a second)");
                        }
                        continue;
                    }
                };
                let shard = shard.clone();
                shard.stats().connection_opened();
                glommio::spawn_local(async move {
                    connection::serve(shard.clone(), stream, protocol).await;
                    shard.stats().connection_closed();
                    drop(permit);
                })
                .detach();
            }
            Some(Err(error)) => {
                tracing::warn!(shard = id.0, %error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The controller of the controller's shard: over the local journal, or over this node's
/// member of the controller quorum (started here, on this shard's executor), with the
/// publisher that carries the quorum's images to the shards.
async fn start_controller(
    node: &Arc<NodeContext>,
    parts: ControllerParts,
    listener: Option<RawFd>,
) -> anyhow::Result<(Rc<ControllerTask>, Option<crate::cluster::member::Member>)> {
    match parts.log {
        PartsLog::Journal { store, unpersisted } => Ok((
            Rc::new(ControllerTask::new(
                parts.state,
                store,
                unpersisted,
                node.shard_count,
            )),
            None,
        )),
        PartsLog::Quorum => {
            let listener = listener.context("a quorum voter needs its controller port")?;
            let member = crate::cluster::member::start(node, listener).await?;
            let log = MetadataLog::Quorum {
                quorum: member.quorum.clone(),
                publisher: member.publisher.clone(),
                forwarder: Box::new(crate::cluster::raft::network::Forwarder::new(
                    member.quorum.node_id(),
                    member.faults.clone(),
                    node.controller_tls.clone(),
                )),
                voters: member.voters.clone(),
                faults: member.faults.clone(),
            };
            Ok((
                Rc::new(ControllerTask::with_log(parts.state, log, node.shard_count)),
                Some(member),
            ))
        }
    }
}

/// Opens (and so recovers) the partitions this shard leads, in the background once the shard
/// serves, up to its share of the descriptor budget; the rest open on first use. A crash's
/// torn tails are thus repaired at start on ordinary nodes, while a node with more
/// partitions than descriptors still starts at once.
async fn open_partitions_ahead(shard: Rc<Shard>) {
    let budget = shard.node.config.open_partitions_ahead_max / shard.node.shard_count as usize;
    let image = shard.image();
    let mine = image.topics().flat_map(|topic| {
        topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, assignment)| assignment.leader == shard.broker_id())
            .map(move |(index, _)| (topic.name.clone(), index as i32))
    });
    for (topic, partition) in mine.take(budget) {
        if shard.node.is_shutting_down() {
            return;
        }
        if let Err(error) = shard.partitions.leader(&topic, partition, -1).await {
            tracing::error!(%topic, partition, %error, "cannot open partition log");
        }
    }
}

/// Runs the shard's timers (group sessions, retention) until shutdown.
async fn maintain(shard: Rc<Shard>) {
    // Producer ids are expired every this many ticks (10 s): the scan visits every producer of
    // every open partition, and an expiration is a day by default.
    const TICKS_PER_PRODUCER_EXPIRY: u64 = 100;
    // Idle partitions are closed, when segments hold too many descriptors, every second.
    const TICKS_PER_IDLE_CLOSE: u64 = 10;
    const IDLE_BEFORE_CLOSE: Duration = Duration::from_secs(10);
    // Gauges are published every this many ticks (1 s).
    const TICKS_PER_GAUGES: u64 = 10;
    let mut gauges = crate::gauges::GaugePublisher::default();
    let mut ticks = 0u64;
    let mut next_txn_abort = std::time::Instant::now();
    while !shard.node.is_shutting_down() {
        glommio::timer::sleep(MAINTENANCE_INTERVAL).await;
        shard.groups.tick(&shard);
        if std::time::Instant::now() >= next_txn_abort {
            next_txn_abort = std::time::Instant::now() + shard.txns.config().abort_interval;
            shard.txns.abort_timed_out(&shard);
        }
        shard.enforce_retention();
        crate::cluster::isr::shrink_lagging(&shard, shard.node.config.replica_lag_time_max);
        ticks += 1;
        if ticks.is_multiple_of(TICKS_PER_GAUGES) {
            gauges.publish(&shard);
        }
        if ticks.is_multiple_of(TICKS_PER_PRODUCER_EXPIRY) {
            shard.expire_producers();
        }
        if ticks.is_multiple_of(TICKS_PER_IDLE_CLOSE) {
            // Loading and closing logs do I/O: in their own task, so that group timers keep
            // ticking.
            let shard = shard.clone();
            glommio::spawn_local(async move {
                if shard.groups.has_unloaded() {
                    shard.groups.retry_loads(&shard).await;
                }
                if shard.txns.has_unloaded() {
                    shard.txns.load(&shard).await;
                }
                let segments_max =
                    shard.node.config.open_segments_max / shard.node.shard_count as usize;
                shard
                    .partitions
                    .close_idle(segments_max, IDLE_BEFORE_CLOSE)
                    .await;
            })
            .detach();
        }
    }
}

/// Checkpoints the replicated partitions' high watermarks until shutdown (the close of each
/// log writes the last one).
async fn checkpoint_high_watermarks(shard: Rc<Shard>) {
    let interval = shard.node.config.replica_high_watermark_checkpoint_interval;
    while !shard.node.is_shutting_down() {
        glommio::timer::sleep(interval).await;
        shard.partitions.checkpoint_high_watermarks().await;
    }
}

async fn maintenance_tick_until_shutdown(node: &NodeContext) {
    while !node.shutdown.load(Ordering::Acquire) {
        glommio::timer::sleep(MAINTENANCE_INTERVAL).await;
    }
}

/// The controller's settings, from the broker's.
fn controller_config(config: &BrokerConfig, shard_count: u32) -> ControllerConfig {
    ControllerConfig {
        node_id: crate::partition::NodeId(config.node_id),
        shard_count,
        advertised_host: config.advertised_host.clone(),
        base_port: config.inter_broker_listener().advertised_port,
        listeners: config.listener_endpoints(),
        rack: config.rack(),
        default_partitions: config.default_partitions,
        offsets_topic_partitions: config.offsets_topic_partitions,
        offsets_topic_replication_factor: config.offsets_topic_replication_factor,
        limits: ControllerLimits {
            partitions_per_request_max: config.max_partitions_per_request,
            partitions_per_node_max: config.max_broker_partitions,
        },
    }
}

fn executor_error(error: &glommio::GlommioError<()>) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot start a shard executor: {error}. Spate needs io_uring and locked memory: run as root or raise the limit with `ulimit -l unlimited` (or LimitMEMLOCK=infinity in a systemd unit)"
    )
}

/// glommio locks memory for its io_uring rings and DMA buffers. Raise the soft limit to
/// the hard limit (root may raise both to unlimited). Returns the limit in force.
fn raise_memlock_limit() -> anyhow::Result<u64> {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        return Ok(u64::MAX);
    }
    let limit = raise_soft_limit(libc::RLIMIT_MEMLOCK)
        .map_err(|error| anyhow::anyhow!("cannot read the locked-memory limit: {error}"))?;
    if limit < MEMLOCK_MIN_BYTES {
        bail!(
            "the locked-memory limit is {} KiB and cannot be raised; Spate needs at least {} KiB (io_uring): run `ulimit -l unlimited` as root before starting, or set `memlock` in /etc/security/limits.conf",
            limit / 1024,
            MEMLOCK_MIN_BYTES / 1024
        );
    }
    tracing::info!(memlock_kib = limit / 1024, "locked-memory limit");
    Ok(limit)
}

/// Raises `resource`'s soft limit to its hard limit where it can; returns the soft limit in
/// force.
fn raise_soft_limit(resource: libc::__rlimit_resource_t) -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on local structs.
    unsafe {
        if libc::getrlimit(resource, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(resource, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// Descriptors an open partition holds at least: its active segment's `.log` (index files are
/// opened only to be read or written, see `spate_storage`'s segment module). Each sealed
/// segment holds its `.log` open too, so this is a lower bound.
const DESCRIPTORS_PER_PARTITION: u64 = 1;

/// Raises the open-files soft limit to the hard limit (segments and connections hold
/// descriptors); returns the limit in force.
fn raise_open_files_limit() -> u64 {
    match raise_soft_limit(libc::RLIMIT_NOFILE) {
        Ok(limit) => {
            tracing::info!(open_files_limit = limit, "open-files limit");
            limit
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-files limit");
            u64::MAX
        }
    }
}

/// Warns when the node's partitions, were they all open, would need more descriptors than
/// the limit allows (they open on first use, so the node still starts and serves).
fn warn_if_descriptors_are_short(limit: u64, partitions: u64) {
    let needed = partitions * DESCRIPTORS_PER_PARTITION + 1024;
    if needed > limit {
        tracing::warn!(
            open_files_limit = limit,
            partitions,
            needed,
            "the open-files limit is too low to keep every partition open (one descriptor per segment, plus connections): partitions open on first use; raise the limit with `ulimit -n` or LimitNOFILE= in the systemd unit"
        );
    }
}

fn check_io_uring() -> anyhow::Result<()> {
    if let Ok(value) = fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if value.trim() == "2" {
            bail!("io_uring is disabled on this host (kernel.io_uring_disabled = 2); enable it with `sysctl kernel.io_uring_disabled=0`");
        }
    }
    Ok(())
}

/// Creates the data directory and checks that files in it can be opened with O_DIRECT
/// (tmpfs, for example, refuses O_DIRECT).
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the data directory {}: choose another with --data-dir",
            dir.display()
        )
    })?;
    let probe = dir.join(".spate-write-probe");
    let opened = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe);
    let result = match opened {
        Ok(_) => Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Err(anyhow::anyhow!(
            "the data directory {} is on a file system without O_DIRECT support (tmpfs?); choose a directory on a disk with --data-dir",
            dir.display()
        )),
        Err(error) => Err(anyhow::anyhow!(
            "the data directory {} is not writable ({error}); fix its permissions or choose another with --data-dir",
            dir.display()
        )),
    };
    let _ = fs::remove_file(&probe);
    result
}

/// The CPUs this process may run on (honours `taskset` and cgroup cpusets).
fn allowed_cpus() -> anyhow::Result<Vec<usize>> {
    // SAFETY: `set` is a zeroed cpu_set_t filled in by the kernel.
    let cpus: Vec<usize> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            bail!(
                "cannot read the CPU affinity mask: {}",
                std::io::Error::last_os_error()
            );
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    };
    if cpus.is_empty() {
        bail!("the CPU affinity mask is empty");
    }
    Ok(cpus)
}

/// Binds every shard's port of every listener before any shard starts, so a port in use
/// stops the start with a clear message. std's listener does not set SO_REUSEPORT, so a second
/// broker on the same ports fails here rather than silently sharing connections. Returns, per
/// shard, each listener's socket.
fn bind_listeners(
    listeners: &[Listener],
    shard_count: usize,
) -> anyhow::Result<Vec<Vec<(SecurityProtocol, RawFd)>>> {
    let mut bound: Vec<Vec<(SecurityProtocol, RawFd)>> = vec![Vec::new(); shard_count];
    for listener in listeners {
        let bootstrap = listener.address;
        for (shard, sockets) in bound.iter_mut().enumerate() {
            let port = usize::from(bootstrap.port()) + shard;
            let port = u16::try_from(port).with_context(|| {
                format!(
                    "shard ports of listener {} run past 65535; choose a lower port",
                    listener.name()
                )
            })?;
            let address = SocketAddr::new(bootstrap.ip(), port);
            let socket = TcpListener::bind(address).map_err(|error| {
                anyhow::anyhow!(
                    "cannot listen on {address} for shard {shard} of listener {}: {error}. Is another broker running, or do two listeners' port ranges overlap? Choose other ports with --listen or --listeners (shard s uses port+s)",
                    listener.name()
                )
            })?;
            sockets.push((listener.protocol, socket.into_raw_fd()));
        }
    }
    Ok(bound)
}

fn termination_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local value.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in this thread before the shards are spawned, so they inherit
/// the mask and only the main thread receives the signals (through `sigtimedwait`).
fn block_termination_signals() -> anyhow::Result<()> {
    let set = termination_signals();
    // SAFETY: setting this thread's signal mask.
    let result = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if result != 0 {
        bail!("cannot block termination signals: error {result}");
    }
    Ok(())
}

fn wait_for_termination_signal(running_shards: &AtomicUsize, shard_count: usize) {
    let set = termination_signals();
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    loop {
        // SAFETY: waiting for blocked signals with a timeout.
        let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
        if signal == libc::SIGINT || signal == libc::SIGTERM {
            return;
        }
        if running_shards.load(Ordering::Acquire) < shard_count {
            tracing::error!("a shard stopped unexpectedly; shutting the node down");
            return;
        }
    }
}
