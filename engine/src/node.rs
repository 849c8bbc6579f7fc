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

use crate::catalog::SharedCatalog;
use crate::config::BrokerConfig;
use crate::connection;
use crate::placement::{ShardId, MAX_SHARDS_PER_NODE};
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

/// How often shards look for shutdown and catalog changes.
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
    let listeners = bind_listeners(config.listen, shard_count)?;
    let catalog = SharedCatalog::load(&config.data_dir)?;
    ensure_offsets_topic(&catalog, config.offsets_topic_partitions)?;
    raise_open_files_limit(&catalog);
    let stats = Arc::new(crate::stats::NodeStats::new(shard_count, started));
    if let Some(address) = config.stats_listen {
        crate::stats::serve(address, stats.clone())?;
    }
    let node = Arc::new(NodeContext {
        config,
        catalog,
        shard_count: shard_count as u32,
        shutdown: AtomicBool::new(false),
        stats,
    });
    block_termination_signals()?;
    let (ready_sender, ready) = mpsc::channel::<Result<ShardId, String>>();
    let mut handles = Vec::with_capacity(shard_count);
    for (index, listener_fd) in listeners.into_iter().enumerate() {
        let shard = ShardId(index as u32);
        let cpu = cpus[index % cpus.len()];
        let node = node.clone();
        let ready_sender = ready_sender.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{index}"))
            .spawn(move || run_shard(shard, node, listener_fd, ready_sender))
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
        data_dir = %node.config.data_dir.display(),
        startup_ms = node.stats.mark_serving(),
        "spate is serving"
    );
    wait_for_termination_signal(&RUNNING_SHARDS, shard_count);
    tracing::info!("shutting down: flushing and closing partition logs");
    node.shutdown.store(true, Ordering::Release);
    for handle in handles {
        if handle.join().is_err() {
            bail!("a shard failed while shutting down");
        }
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn run_shard(
    id: ShardId,
    node: Arc<NodeContext>,
    listener_fd: RawFd,
    ready: mpsc::Sender<Result<ShardId, String>>,
) {
    let _running = RunningShard::enter();
    crate::stats::enter_shard(node.stats.shards[id.0 as usize].clone());
    spate_storage::tail_cache::set_shard_budget_bytes(node.config.tail_cache_bytes);
    let shard = Rc::new(Shard::new(id, node.clone()));
    shard.sync_with_catalog().await;
    shard.groups.load(&shard).await;
    // SAFETY: the descriptor is a bound, listening socket handed to this shard alone.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(listener_fd) };
    let _ = ready.send(Ok(id));
    let maintenance = glommio::spawn_local(maintain(shard.clone()));
    crate::cleaner::spawn(&shard);
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            maintenance_tick_until_shutdown(&node).await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let shard = shard.clone();
                shard.stats().connection_opened();
                glommio::spawn_local(async move {
                    connection::serve(shard.clone(), stream).await;
                    shard.stats().connection_closed();
                })
                .detach();
            }
            Some(Err(error)) => {
                tracing::warn!(shard = id.0, %error, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    maintenance.await;
    shard.close_all().await;
}

/// Keeps the shard's logs in line with the catalog (new partitions opened, deleted topics'
/// logs removed) until shutdown.
async fn maintain(shard: Rc<Shard>) {
    let mut seen_version = shard.node.catalog.version();
    while !shard.node.shutdown.load(Ordering::Acquire) {
        glommio::timer::sleep(MAINTENANCE_INTERVAL).await;
        shard.groups.tick(&shard);
        shard.enforce_retention();
        let version = shard.node.catalog.version();
        if version != seen_version {
            seen_version = version;
            shard.sync_with_catalog().await;
        }
    }
}

async fn maintenance_tick_until_shutdown(node: &NodeContext) {
    while !node.shutdown.load(Ordering::Acquire) {
        glommio::timer::sleep(MAINTENANCE_INTERVAL).await;
    }
}

/// Creates `__consumer_offsets` (compacted, as in Kafka) on first start.
fn ensure_offsets_topic(catalog: &SharedCatalog, partitions: i32) -> anyhow::Result<()> {
    let topic = crate::groups::offsets_topic::TOPIC;
    if let Some(existing) = catalog.snapshot().topic(topic) {
        if existing.partitions != partitions {
            tracing::info!(
                existing = existing.partitions,
                "__consumer_offsets keeps the partition count it was created with"
            );
        }
        return Ok(());
    }
    let configs = [("cleanup.policy".to_string(), "compact".to_string())]
        .into_iter()
        .collect();
    catalog
        .create_topic(topic, partitions, configs, false)
        .map(|_| ())
        .map_err(|error| anyhow::anyhow!("cannot create {topic}: {error}"))
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

/// Descriptors an idle partition holds open: its active segment's `.log` (index files are
/// opened only to be read or written, see `spate_storage`'s segment module). Each sealed
/// segment holds its `.log` open too, so this is a lower bound.
const DESCRIPTORS_PER_PARTITION: u64 = 1;

/// Raises the open-files soft limit to the hard limit (every segment holds descriptors) and
/// warns when the catalog's partitions, plus room for connections, need more than that.
fn raise_open_files_limit(catalog: &SharedCatalog) {
    let Ok(limit) = raise_soft_limit(libc::RLIMIT_NOFILE) else {
        return;
    };
    let partitions: u64 = catalog
        .snapshot()
        .topics
        .values()
        .map(|topic| topic.partitions.max(0) as u64)
        .sum();
    let needed = partitions * DESCRIPTORS_PER_PARTITION + 1024;
    if needed > limit {
        tracing::warn!(
            open_files_limit = limit,
            partitions,
            needed,
            "the open-files limit is too low for this many partitions (one descriptor per segment, plus connections): raise it with `ulimit -n` or LimitNOFILE= in the systemd unit"
        );
    } else {
        tracing::info!(open_files_limit = limit, "open-files limit");
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

/// Binds every shard's port before any shard starts, so a port in use stops the start with
/// a clear message. std's listener does not set SO_REUSEPORT, so a second broker on the
/// same ports fails here rather than silently sharing connections.
fn bind_listeners(bootstrap: SocketAddr, shard_count: usize) -> anyhow::Result<Vec<RawFd>> {
    (0..shard_count)
        .map(|shard| {
            let port = usize::from(bootstrap.port()) + shard;
            let port = u16::try_from(port).context("shard ports run past 65535; choose a lower --listen port")?;
            let address = SocketAddr::new(bootstrap.ip(), port);
            let listener = TcpListener::bind(address).map_err(|error| {
                anyhow::anyhow!(
                    "cannot listen on {address} for shard {shard}: {error}. Is another broker running? Choose another port with --listen (shard s uses port+s)"
                )
            })?;
            Ok(listener.into_raw_fd())
        })
        .collect()
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
