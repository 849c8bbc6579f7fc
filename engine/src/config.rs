//! Broker configuration: embedded defaults, overridden by a TOML file (`--config`), then by
//! `SPATE_*` environment variables, then by command-line flags.
//!
//! clap reads a flag and its environment variable into the same `Option`, with the flag
//! winning; anything still `None` falls back to the file, then to the default.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::cluster::config::resolve_cluster;
pub use crate::cluster::config::{ClusterConfig, QuorumVoter};

/// `spate serve` flags. Each can also be set by the environment variable named in `--help`
/// or by the same key (with underscores) in the `--config` TOML file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys use underscores: `data_dir = "..."`).
    #[arg(long, env = "SPATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding topic metadata and partition logs. [default: ./spate-data]
    #[arg(long, env = "SPATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listeners and their security: TLS, SASL, the authorizer, how brokers reach each
    /// other (`security::settings`).
    #[command(flatten)]
    pub security: crate::security::settings::SecurityArgs,
    /// Number of shards (one pinned thread each). [default: one per CPU this process may run
    /// on, so `taskset` and cgroup cpusets are honoured]
    #[arg(long, env = "SPATE_SMP")]
    pub smp: Option<usize>,
    /// This node's id; broker ids advertised to clients are node_id * 1024 + shard. [default: 0]
    #[arg(long, env = "SPATE_NODE_ID")]
    pub node_id: Option<i32>,
    /// Partitions of a topic created automatically or without an explicit count (Kafka's
    /// num.partitions). [default: 1]
    #[arg(long, env = "SPATE_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,
    /// Create topics on first use by Metadata or Produce (Kafka's
    /// auto.create.topics.enable). [default: true]
    #[arg(long, env = "SPATE_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Largest request frame accepted; larger ones close the connection (Kafka's
    /// socket.request.max.bytes). [default: 104857600]
    #[arg(long, env = "SPATE_SOCKET_REQUEST_MAX_BYTES")]
    pub socket_request_max_bytes: Option<usize>,
    /// Bytes of recently written data each shard keeps in memory to serve tail fetches
    /// without reading the disk; 0 turns the tail cache off. [default: 67108864]
    #[arg(long, env = "SPATE_TAIL_CACHE_BYTES")]
    pub tail_cache_bytes: Option<usize>,
    /// Default segment size before a new segment file is started (Kafka's log.segment.bytes).
    /// [default: 1073741824]
    #[arg(long, env = "SPATE_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// How far ahead of a busy partition's data its segment's blocks are overwritten with
    /// zeroes, in the background, so that each group commit's fdatasync syncs data only, not
    /// the conversion of preallocated blocks (half the cost of a sync on ext4; the zeroes
    /// double the bytes written). Zeroed in pieces of a sixteenth of it (at most 1 MiB), one at
    /// a time per shard. 16777216 gave 8% more throughput and 22% less CPU per GiB on the
    /// reference host, but a higher p99 latency (BENCHMARKS.md). At most 1073741824.
    /// [default: 0, off]
    #[arg(long, env = "SPATE_LOG_ZERO_AHEAD_BYTES")]
    pub log_zero_ahead_bytes: Option<u64>,
    /// Default largest record batch accepted (Kafka's message.max.bytes). [default: 1048588]
    #[arg(long, env = "SPATE_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<u32>,
    /// Disk properties measured by `spate-tune iotune`; they size the writes each partition
    /// keeps in flight. [default: <data-dir>/io-properties.toml when it exists]
    #[arg(long, env = "SPATE_IO_PROPERTIES")]
    pub io_properties: Option<PathBuf>,
    /// How long a new consumer group waits for more members before its first rebalance
    /// (Kafka's group.initial.rebalance.delay.ms). [default: 3000]
    #[arg(long, env = "SPATE_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Smallest session timeout a consumer may ask for (group.min.session.timeout.ms).
    /// [default: 6000]
    #[arg(long, env = "SPATE_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Largest session timeout a consumer may ask for (group.max.session.timeout.ms).
    /// [default: 1800000]
    #[arg(long, env = "SPATE_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<i32>,
    /// How long a KIP-848 consumer group member (group.protocol=consumer) may go without a
    /// heartbeat before it is fenced (Kafka's group.consumer.session.timeout.ms).
    /// [default: 45000]
    #[arg(long, env = "SPATE_GROUP_CONSUMER_SESSION_TIMEOUT_MS")]
    pub group_consumer_session_timeout_ms: Option<u64>,
    /// How often KIP-848 consumer group members heartbeat, as the coordinator tells them
    /// (Kafka's group.consumer.heartbeat.interval.ms). [default: 5000]
    #[arg(long, env = "SPATE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS")]
    pub group_consumer_heartbeat_interval_ms: Option<i32>,
    /// Most members a KIP-848 consumer group may have; a join past it is refused with
    /// GROUP_MAX_SIZE_REACHED (Kafka's group.consumer.max.size). [default: unbounded]
    #[arg(long, env = "SPATE_GROUP_CONSUMER_MAX_SIZE")]
    pub group_consumer_max_size: Option<usize>,
    /// Partitions of __consumer_offsets when it is first created
    /// (offsets.topic.num.partitions). [default: 50]
    #[arg(long, env = "SPATE_OFFSETS_TOPIC_PARTITIONS")]
    pub offsets_topic_partitions: Option<i32>,
    /// Replicas of each __consumer_offsets partition (offsets.topic.replication.factor); on a
    /// cluster the topic is created once that many nodes have registered. [default: the
    /// smaller of 3 and the number of controller quorum voters; 1 alone]
    #[arg(long, env = "SPATE_OFFSETS_TOPIC_REPLICATION_FACTOR")]
    pub offsets_topic_replication_factor: Option<i16>,
    /// How long committed offsets of an empty group are kept (offsets.retention.minutes).
    /// [default: 10080]
    #[arg(long, env = "SPATE_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<i64>,
    /// Partitions of __transaction_state when the first transactional producer makes it
    /// (transaction.state.log.num.partitions). [default: 50]
    #[arg(long, env = "SPATE_TRANSACTION_STATE_LOG_NUM_PARTITIONS")]
    pub transaction_state_log_num_partitions: Option<i32>,
    /// Replicas of each __transaction_state partition
    /// (transaction.state.log.replication.factor). [default: as
    /// --offsets-topic-replication-factor]
    #[arg(long, env = "SPATE_TRANSACTION_STATE_LOG_REPLICATION_FACTOR")]
    pub transaction_state_log_replication_factor: Option<i16>,
    /// min.insync.replicas of __transaction_state (transaction.state.log.min.isr), at most
    /// its replication factor. [default: 2]
    #[arg(long, env = "SPATE_TRANSACTION_STATE_LOG_MIN_ISR")]
    pub transaction_state_log_min_isr: Option<i16>,
    /// The longest transaction.timeout.ms a producer may ask; a longer one gets
    /// INVALID_TRANSACTION_TIMEOUT (transaction.max.timeout.ms). [default: 900000]
    #[arg(long, env = "SPATE_TRANSACTION_MAX_TIMEOUT_MS")]
    pub transaction_max_timeout_ms: Option<i32>,
    /// How often each transaction coordinator aborts transactions past their timeout
    /// (transaction.abort.timed.out.transaction.cleanup.interval.ms). [default: 10000]
    #[arg(
        long,
        env = "SPATE_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS"
    )]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: Option<u64>,
    /// The transaction.version feature level clients are told (what Kafka's
    /// `kafka-features.sh upgrade --feature transaction.version=N` finalizes): 2 has Kafka 4
    /// clients use transaction protocol v2 (KIP-890: partitions added by their leaders, an
    /// epoch bump per transaction); 0 or 1 keeps every client on protocol v1. [default: 2]
    #[arg(long, env = "SPATE_TRANSACTION_VERSION", value_parser = clap::value_parser!(i16).range(0..=2))]
    pub transaction_version: Option<i16>,
    /// Before a partition leader takes a protocol v1 producer's first transactional batch of a
    /// transaction, ask its coordinator whether the producer added the partition (KIP-890
    /// part 1; Kafka's transaction.partition.verification.enable): a batch of no transaction
    /// the coordinator knows is refused rather than left hanging. [default: true]
    #[arg(long, env = "SPATE_TRANSACTION_PARTITION_VERIFICATION_ENABLE")]
    pub transaction_partition_verification_enable: Option<bool>,
    /// Run the log cleaner that compacts topics with cleanup.policy=compact
    /// (log.cleaner.enable). [default: true]
    #[arg(long, env = "SPATE_LOG_CLEANER_ENABLE")]
    pub log_cleaner_enable: Option<bool>,
    /// How often each shard's cleaner looks for logs due for compaction
    /// (log.cleaner.backoff.ms). [default: 15000]
    #[arg(long, env = "SPATE_LOG_CLEANER_BACKOFF_MS")]
    pub log_cleaner_backoff_ms: Option<u64>,
    /// Most bytes per second each shard's cleaner reads plus writes
    /// (log.cleaner.io.max.bytes.per.second). [default: unlimited; the cleaner runs at a low
    /// scheduling share either way]
    #[arg(long, env = "SPATE_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND")]
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// Memory for the key map of one compaction pass, per shard
    /// (log.cleaner.dedupe.buffer.size). [default: 33554432]
    #[arg(long, env = "SPATE_LOG_CLEANER_DEDUPE_BUFFER_SIZE")]
    pub log_cleaner_dedupe_buffer_size: Option<usize>,
    /// Serve per-shard counters over HTTP at this address: `GET /stats` (JSON) and
    /// `GET /metrics` (Prometheus). [default: off]
    #[arg(long, env = "SPATE_STATS_LISTEN")]
    pub stats_listen: Option<SocketAddr>,
    /// Label the per-topic families of `/metrics` (`spate_bytes_in_total`,
    /// `spate_bytes_out_total`) with their topic; `false` sums every topic into one series
    /// per shard, for clusters with so many topics that a series each would be too many.
    /// [default: true]
    #[arg(long, env = "SPATE_METRICS_TOPIC_LABELS")]
    pub metrics_topic_labels: Option<bool>,
    /// How often each group coordinator measures its groups' consumer lag for
    /// `spate_consumer_group_lag` (one ListOffsets per leader broker per pass); 0 turns it
    /// off. [default: 15000]
    #[arg(long, env = "SPATE_METRICS_CONSUMER_LAG_INTERVAL_MS")]
    pub metrics_consumer_lag_interval_ms: Option<u64>,
    /// Most partitions one CreateTopics or CreatePartitions request may create; larger
    /// requests are refused with POLICY_VIOLATION (Kafka's fixed limit is 10000).
    /// [default: 10000]
    #[arg(long, env = "SPATE_MAX_PARTITIONS_PER_REQUEST")]
    pub max_partitions_per_request: Option<u32>,
    /// Most partitions this node may hold (KIP-578's max.broker.partitions); creations past it
    /// are refused with POLICY_VIOLATION. [default: half the open-files hard limit, at least
    /// 1000; `spate-tune check` reports it]
    #[arg(long, env = "SPATE_MAX_BROKER_PARTITIONS")]
    pub max_broker_partitions: Option<u64>,
    /// Most topics one Metadata or Produce request may create automatically; the others are
    /// answered UNKNOWN_TOPIC_OR_PARTITION (the client retries). [default: 1000]
    #[arg(long, env = "SPATE_AUTO_CREATE_TOPICS_MAX_PER_REQUEST")]
    pub auto_create_topics_max_per_request: Option<usize>,
    /// Most record bytes one Fetch response carries, whatever the client asks (Kafka's
    /// fetch.max.bytes; the first batch is always sent whole, KIP-74). [default: 57671680]
    #[arg(long, env = "SPATE_FETCH_MAX_BYTES")]
    pub fetch_max_bytes: Option<usize>,
    /// Most client connections the node holds at once; more are closed as they arrive
    /// (Kafka's max.connections). [default: a quarter of the open-files hard limit]
    #[arg(long, env = "SPATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most connections from one client address (Kafka's max.connections.per.ip).
    /// [default: no limit beyond max.connections]
    #[arg(long, env = "SPATE_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Bytes of large requests (16 KiB or more) each shard holds at once, from their arrival
    /// until they are answered; a connection whose next request does not fit stops being read
    /// until others are answered (Kafka's queued.max.request.bytes, per shard).
    /// [default: 536870912]
    #[arg(long, env = "SPATE_QUEUED_MAX_REQUEST_BYTES")]
    pub queued_max_request_bytes: Option<usize>,
    /// Samples a client quota's rate is measured over (Kafka's quota.window.num; at least 2).
    /// [default: 11]
    #[arg(long, env = "SPATE_QUOTA_WINDOW_NUM")]
    pub quota_window_num: Option<u32>,
    /// Each quota sample's span in seconds (Kafka's quota.window.size.seconds). [default: 1]
    #[arg(long, env = "SPATE_QUOTA_WINDOW_SIZE_SECONDS")]
    pub quota_window_size_seconds: Option<u64>,
    /// A large request must arrive whole within this time of its start, else the connection
    /// is closed (clients give up on a request after their request.timeout.ms anyway).
    /// [default: 30000]
    #[arg(long, env = "SPATE_REQUEST_RECEIVE_TIMEOUT_MS")]
    pub request_receive_timeout_ms: Option<u64>,
    /// A producer id that appended nothing to a partition for this long loses its
    /// idempotence state there (Kafka's producer.id.expiration.ms). [default: 86400000]
    #[arg(long, env = "SPATE_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: Option<i64>,
    /// A follower that has not caught up with its leader's log end for this long leaves the
    /// partition's ISR (replica.lag.time.max.ms). [default: 30000]
    #[arg(long, env = "SPATE_REPLICA_LAG_TIME_MAX_MS")]
    pub replica_lag_time_max_ms: Option<u64>,
    /// How often a replicated partition's high watermark is checkpointed to its directory,
    /// so that a restarted replica starts from it rather than from the log start
    /// (replica.high.watermark.checkpoint.interval.ms; also at every clean close).
    /// [default: 5000]
    #[arg(long, env = "SPATE_REPLICA_HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS")]
    pub replica_high_watermark_checkpoint_interval_ms: Option<u64>,
    /// Most bytes a follower asks for per partition in one fetch (replica.fetch.max.bytes).
    /// A follower reports to its leader only what it has fdatasync'ed, so a replica that
    /// catches up (a reassignment's new replica, a node back from a failure) syncs once per
    /// fetch: larger fetches copy faster (bench-harness/scripts/reassign-copy.sh).
    /// [default: 1048576]
    #[arg(long, env = "SPATE_REPLICA_FETCH_MAX_BYTES")]
    pub replica_fetch_max_bytes: Option<usize>,
    /// Most bytes of one fetch response to a follower, over all its partitions
    /// (replica.fetch.response.max.bytes); the follower holds one in memory at a time.
    /// [default: 10485760]
    #[arg(long, env = "SPATE_REPLICA_FETCH_RESPONSE_MAX_BYTES")]
    pub replica_fetch_response_max_bytes: Option<usize>,
    /// Move partition leadership back to each partition's preferred replica (its first)
    /// once that replica is live and in sync again, when more than 10% of a broker's
    /// preferred partitions are led elsewhere (auto.leader.rebalance.enable, with Kafka's
    /// leader.imbalance.per.broker.percentage). [default: true]
    #[arg(long, env = "SPATE_AUTO_LEADER_REBALANCE_ENABLE")]
    pub auto_leader_rebalance_enable: Option<bool>,
    /// How often the controller checks the leader balance
    /// (leader.imbalance.check.interval.seconds). [default: 300]
    #[arg(long, env = "SPATE_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS")]
    pub leader_imbalance_check_interval_seconds: Option<u64>,
    /// Which replica a consumer that names its rack (client.rack, Fetch v11+) reads from
    /// (KIP-392, Kafka's replica.selector.class): `rack-aware` sends it to an in-sync
    /// replica in its rack when the leader is in another one (a saving in cross-rack
    /// traffic; it reads a moment behind the leader), `leader` keeps every consumer on the
    /// leader. Kafka's class names are accepted too. [default: rack-aware]
    #[arg(long, env = "SPATE_REPLICA_SELECTOR")]
    pub replica_selector: Option<String>,
    /// Most segment files the node keeps open (one descriptor each); past it, partitions idle
    /// for 10 s or more are closed, least recently used first, and reopen on their next
    /// request. [default: half the open-files hard limit]
    #[arg(long, env = "SPATE_OPEN_SEGMENTS_MAX")]
    pub open_segments_max: Option<usize>,
    /// How the node joins a replicated cluster: the controller quorum and the port its
    /// members talk on (`cluster::config`).
    #[command(flatten)]
    pub cluster: crate::cluster::config::ClusterArgs,
    /// Rack of this node's brokers, for rack-aware placement and clients (broker.rack).
    /// [default: the node, so that replicas go to distinct nodes]
    #[arg(long, env = "SPATE_BROKER_RACK")]
    pub broker_rack: Option<String>,
}

/// Settings the broker runs with, after every source has been applied.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Root of the data directory.
    pub data_dir: PathBuf,
    /// Bootstrap address; shard s listens on port + s.
    pub listen: SocketAddr,
    /// Host advertised in Metadata.
    pub advertised_host: String,
    /// Every listener; `listen` and `advertised_host` are the inter-broker one's.
    pub listeners: Vec<crate::security::Listener>,
    /// SASL settings of the SASL listeners.
    pub sasl: crate::security::session::SaslConfig,
    /// TLS settings of the SSL and SASL_SSL listeners (`None`: none is configured).
    pub tls: Option<crate::security::tls::TlsSettings>,
    /// How brokers reach each other (`security::inter_broker`).
    pub inter_broker: crate::security::inter_broker::InterBrokerConfig,
    /// The authorizer's settings (off unless `--authorizer acl`).
    pub authorizer: crate::security::acl::AuthorizerConfig,
    /// Shard count, if fixed by the operator; otherwise one per available CPU.
    pub smp: Option<usize>,
    /// This node's id.
    pub node_id: i32,
    /// Partitions of an automatically created topic.
    pub default_partitions: i32,
    /// Whether Metadata and Produce create unknown topics.
    pub auto_create_topics: bool,
    /// Largest request frame accepted.
    pub socket_request_max_bytes: usize,
    /// Per-shard budget of the tail cache (0: off).
    pub tail_cache_bytes: usize,
    /// Broker default for segment.bytes.
    pub segment_bytes: u64,
    /// Every log's zero-ahead lead (`spate_storage::LogConfig::zero_ahead_bytes`).
    pub log_zero_ahead_bytes: u64,
    /// Broker default for max.message.bytes.
    pub max_message_bytes: u32,
    /// An io-properties file named by the operator.
    pub io_properties: Option<PathBuf>,
    /// Bytes of writes a partition's flush keeps in flight (from io-properties, or the
    /// default), set by the node at start.
    pub write_in_flight_bytes_max: usize,
    /// Consumer group timing.
    pub groups: crate::groups::group::GroupConfig,
    /// Partitions of __consumer_offsets when created.
    pub offsets_topic_partitions: i32,
    /// Replicas of each __consumer_offsets partition.
    pub offsets_topic_replication_factor: usize,
    /// offsets.retention.minutes.
    pub offsets_retention_minutes: i64,
    /// The transaction coordinator's settings.
    pub transactions: crate::transactions::TxnConfig,
    /// The log cleaner's settings.
    pub cleaner: CleanerConfig,
    /// Where the stats endpoint listens, if anywhere.
    pub stats_listen: Option<SocketAddr>,
    /// Whether per-topic metrics carry a topic label.
    pub metrics_topic_labels: bool,
    /// How often coordinators measure consumer lag (`None`: never).
    pub metrics_consumer_lag_interval: Option<std::time::Duration>,
    /// Most partitions one request may create.
    pub max_partitions_per_request: u32,
    /// Most partitions this node may hold (max.broker.partitions).
    pub max_broker_partitions: u64,
    /// Most topics one request may create automatically.
    pub auto_create_topics_max_per_request: usize,
    /// fetch.max.bytes: most record bytes in one Fetch response.
    pub fetch_max_bytes: usize,
    /// max.connections.
    pub max_connections: usize,
    /// max.connections.per.ip, if limited.
    pub max_connections_per_ip: Option<usize>,
    /// queued.max.request.bytes, per shard.
    pub queued_max_request_bytes: usize,
    /// How client quotas sample rates (quota.window.num, quota.window.size.seconds).
    pub quota_window: crate::quota::QuotaWindow,
    /// How long a large request may take to arrive.
    pub request_receive_timeout: std::time::Duration,
    /// producer.id.expiration.ms.
    pub producer_id_expiration_ms: i64,
    /// replica.lag.time.max.ms.
    pub replica_lag_time_max: std::time::Duration,
    /// replica.high.watermark.checkpoint.interval.ms.
    pub replica_high_watermark_checkpoint_interval: std::time::Duration,
    /// replica.fetch.max.bytes.
    pub replica_fetch_max_bytes: usize,
    /// replica.fetch.response.max.bytes.
    pub replica_fetch_response_max_bytes: usize,
    /// leader.imbalance.check.interval.seconds, if auto.leader.rebalance.enable.
    pub leader_rebalance_interval: Option<std::time::Duration>,
    /// Whether a leader sends a consumer in another rack to an in-sync replica in the
    /// consumer's rack (`--replica-selector rack-aware`, KIP-392).
    pub rack_aware_reads: bool,
    /// Segment files open over all shards before idle partitions are closed.
    pub open_segments_max: usize,
    /// Partitions opened (and recovered) in the background at start, over all shards; the
    /// rest open on first use. A quarter of the open-files hard limit.
    pub open_partitions_ahead_max: usize,
    /// The cluster this node belongs to; `None` for a one-node cluster.
    pub cluster: Option<ClusterConfig>,
    /// broker.rack, if the operator set one.
    pub broker_rack: Option<String>,
}

/// How each shard's log cleaner runs (see `crate::cleaner`).
#[derive(Clone, Copy, Debug)]
pub struct CleanerConfig {
    /// log.cleaner.enable.
    pub enable: bool,
    /// log.cleaner.backoff.ms.
    pub backoff_ms: u64,
    /// What one compaction pass may use.
    pub options: spate_storage::CompactionOptions,
}

impl ServeArgs {
    /// Resolves flags, environment, file and defaults into one configuration.
    pub fn resolve(self) -> anyhow::Result<BrokerConfig> {
        let mut file = match &self.config {
            Some(path) => read_config_file(path)?,
            None => ConfigFile::default(),
        };
        let crate::security::settings::SecuritySettings {
            listeners,
            listen,
            advertised_host,
            sasl,
            tls,
            inter_broker,
            authorizer,
        } = self.security.or(file.security()).resolve()?;
        let node_id = self.node_id.or(file.node_id).unwrap_or(0);
        let cluster = resolve_cluster(node_id, self.cluster.or(file.cluster()))?;
        let config = BrokerConfig {
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("spate-data")),
            listen,
            advertised_host,
            listeners,
            sasl,
            tls,
            inter_broker,
            authorizer,
            smp: self.smp.or(file.smp),
            node_id,
            default_partitions: self
                .default_partitions
                .or(file.default_partitions)
                .unwrap_or(1),
            auto_create_topics: self
                .auto_create_topics
                .or(file.auto_create_topics)
                .unwrap_or(true),
            socket_request_max_bytes: self
                .socket_request_max_bytes
                .or(file.socket_request_max_bytes)
                .unwrap_or(100 * 1024 * 1024),
            tail_cache_bytes: self
                .tail_cache_bytes
                .or(file.tail_cache_bytes)
                .unwrap_or(spate_storage::tail_cache::DEFAULT_SHARD_BUDGET_BYTES),
            segment_bytes: self.segment_bytes.or(file.segment_bytes).unwrap_or(1 << 30),
            log_zero_ahead_bytes: self
                .log_zero_ahead_bytes
                .or(file.log_zero_ahead_bytes)
                .unwrap_or(spate_storage::DEFAULT_ZERO_AHEAD_BYTES),
            max_message_bytes: self
                .max_message_bytes
                .or(file.max_message_bytes)
                .unwrap_or(1_048_588),
            io_properties: self.io_properties.or(file.io_properties),
            write_in_flight_bytes_max: crate::host::DEFAULT_WRITE_IN_FLIGHT_BYTES,
            groups: crate::groups::group::GroupConfig {
                initial_rebalance_delay_ms: self
                    .group_initial_rebalance_delay_ms
                    .or(file.group_initial_rebalance_delay_ms)
                    .unwrap_or(3_000),
                min_session_timeout_ms: self
                    .group_min_session_timeout_ms
                    .or(file.group_min_session_timeout_ms)
                    .unwrap_or(6_000),
                max_session_timeout_ms: self
                    .group_max_session_timeout_ms
                    .or(file.group_max_session_timeout_ms)
                    .unwrap_or(1_800_000),
                consumer: crate::groups::consumer_group::ConsumerGroupConfig {
                    session_timeout_ms: self
                        .group_consumer_session_timeout_ms
                        .or(file.group_consumer_session_timeout_ms)
                        .unwrap_or(45_000),
                    heartbeat_interval_ms: self
                        .group_consumer_heartbeat_interval_ms
                        .or(file.group_consumer_heartbeat_interval_ms)
                        .unwrap_or(5_000)
                        .max(1),
                    max_size: self
                        .group_consumer_max_size
                        .or(file.group_consumer_max_size)
                        .unwrap_or(usize::MAX),
                },
            },
            offsets_topic_partitions: self
                .offsets_topic_partitions
                .or(file.offsets_topic_partitions)
                .unwrap_or(crate::groups::offsets_topic::DEFAULT_PARTITIONS),
            offsets_topic_replication_factor: self
                .offsets_topic_replication_factor
                .or(file.offsets_topic_replication_factor)
                .map_or_else(
                    || {
                        cluster
                            .as_ref()
                            .map_or(1, |cluster| cluster.voters.len().min(3))
                    },
                    |factor| factor.max(1) as usize,
                ),
            offsets_retention_minutes: self
                .offsets_retention_minutes
                .or(file.offsets_retention_minutes)
                .unwrap_or(10_080),
            transactions: crate::transactions::TxnConfig {
                state_partitions: self
                    .transaction_state_log_num_partitions
                    .or(file.transaction_state_log_num_partitions)
                    .unwrap_or(crate::transactions::state_log::DEFAULT_PARTITIONS),
                state_replication_factor: self
                    .transaction_state_log_replication_factor
                    .or(file.transaction_state_log_replication_factor)
                    .map(|factor| factor.max(1) as usize),
                state_min_isr: self
                    .transaction_state_log_min_isr
                    .or(file.transaction_state_log_min_isr)
                    .unwrap_or(2)
                    .max(1) as usize,
                max_timeout_ms: self
                    .transaction_max_timeout_ms
                    .or(file.transaction_max_timeout_ms)
                    .unwrap_or(900_000),
                abort_interval: std::time::Duration::from_millis(
                    self.transaction_abort_timed_out_transaction_cleanup_interval_ms
                        .or(file.transaction_abort_timed_out_transaction_cleanup_interval_ms)
                        .unwrap_or(10_000)
                        .max(1),
                ),
                transaction_version: self
                    .transaction_version
                    .or(file.transaction_version)
                    .unwrap_or(crate::handlers::api_versions::MAX_TRANSACTION_VERSION)
                    .clamp(0, crate::handlers::api_versions::MAX_TRANSACTION_VERSION),
                partition_verification: self
                    .transaction_partition_verification_enable
                    .or(file.transaction_partition_verification_enable)
                    .unwrap_or(true),
            },
            cleaner: CleanerConfig {
                enable: self
                    .log_cleaner_enable
                    .or(file.log_cleaner_enable)
                    .unwrap_or(true),
                backoff_ms: self
                    .log_cleaner_backoff_ms
                    .or(file.log_cleaner_backoff_ms)
                    .unwrap_or(15_000),
                options: spate_storage::CompactionOptions {
                    map_bytes_max: self
                        .log_cleaner_dedupe_buffer_size
                        .or(file.log_cleaner_dedupe_buffer_size)
                        .unwrap_or(spate_storage::CompactionOptions::default().map_bytes_max),
                    io_bytes_per_second: self
                        .log_cleaner_io_max_bytes_per_second
                        .or(file.log_cleaner_io_max_bytes_per_second),
                },
            },
            stats_listen: self.stats_listen.or(file.stats_listen),
            metrics_topic_labels: self
                .metrics_topic_labels
                .or(file.metrics_topic_labels)
                .unwrap_or(true),
            metrics_consumer_lag_interval: Some(
                self.metrics_consumer_lag_interval_ms
                    .or(file.metrics_consumer_lag_interval_ms)
                    .unwrap_or(15_000),
            )
            .filter(|&ms| ms > 0)
            .map(std::time::Duration::from_millis),
            max_partitions_per_request: self
                .max_partitions_per_request
                .or(file.max_partitions_per_request)
                .unwrap_or(10_000),
            max_broker_partitions: self
                .max_broker_partitions
                .or(file.max_broker_partitions)
                .unwrap_or_else(crate::host::default_max_broker_partitions),
            auto_create_topics_max_per_request: self
                .auto_create_topics_max_per_request
                .or(file.auto_create_topics_max_per_request)
                .unwrap_or(1000),
            fetch_max_bytes: self
                .fetch_max_bytes
                .or(file.fetch_max_bytes)
                .unwrap_or(55 * 1024 * 1024),
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or_else(crate::host::default_max_connections),
            max_connections_per_ip: self.max_connections_per_ip.or(file.max_connections_per_ip),
            queued_max_request_bytes: self
                .queued_max_request_bytes
                .or(file.queued_max_request_bytes)
                .unwrap_or(512 * 1024 * 1024),
            quota_window: crate::quota::QuotaWindow {
                samples: self
                    .quota_window_num
                    .or(file.quota_window_num)
                    .unwrap_or(11)
                    .max(2),
                window: std::time::Duration::from_secs(
                    self.quota_window_size_seconds
                        .or(file.quota_window_size_seconds)
                        .unwrap_or(1)
                        .max(1),
                ),
            },
            request_receive_timeout: std::time::Duration::from_millis(
                self.request_receive_timeout_ms
                    .or(file.request_receive_timeout_ms)
                    .unwrap_or(30_000),
            ),
            producer_id_expiration_ms: self
                .producer_id_expiration_ms
                .or(file.producer_id_expiration_ms)
                .unwrap_or(86_400_000),
            replica_lag_time_max: std::time::Duration::from_millis(
                self.replica_lag_time_max_ms
                    .or(file.replica_lag_time_max_ms)
                    .unwrap_or(30_000)
                    .max(100),
            ),
            replica_high_watermark_checkpoint_interval: std::time::Duration::from_millis(
                self.replica_high_watermark_checkpoint_interval_ms
                    .or(file.replica_high_watermark_checkpoint_interval_ms)
                    .unwrap_or(5_000)
                    .max(10),
            ),
            // At least one batch always comes (Kafka's rule), so a small limit only slows
            // copying; the response limit bounds what a follower holds.
            replica_fetch_max_bytes: self
                .replica_fetch_max_bytes
                .or(file.replica_fetch_max_bytes)
                .unwrap_or(1 << 20)
                .clamp(1024, 1 << 30),
            replica_fetch_response_max_bytes: self
                .replica_fetch_response_max_bytes
                .or(file.replica_fetch_response_max_bytes)
                .unwrap_or(10 << 20)
                .clamp(1024, 1 << 30),
            rack_aware_reads: rack_aware_reads(
                self.replica_selector
                    .as_deref()
                    .or(file.replica_selector.as_deref()),
            )?,
            leader_rebalance_interval: self
                .auto_leader_rebalance_enable
                .or(file.auto_leader_rebalance_enable)
                .unwrap_or(true)
                .then(|| {
                    std::time::Duration::from_secs(
                        self.leader_imbalance_check_interval_seconds
                            .or(file.leader_imbalance_check_interval_seconds)
                            .unwrap_or(300)
                            .max(1),
                    )
                }),
            open_segments_max: self
                .open_segments_max
                .or(file.open_segments_max)
                .unwrap_or_else(|| (crate::host::open_files_hard_limit() / 2) as usize),
            open_partitions_ahead_max: (crate::host::open_files_hard_limit() / 4) as usize,
            cluster,
            broker_rack: self.broker_rack.or(file.broker_rack),
        };
        config.validate()?;
        Ok(config)
    }
}

/// `--replica-selector`: true for rack-aware (the default), false for leader.
fn rack_aware_reads(selector: Option<&str>) -> anyhow::Result<bool> {
    match selector {
        None
        | Some("rack-aware")
        | Some("RackAwareReplicaSelector")
        | Some("org.apache.kafka.common.replica.RackAwareReplicaSelector") => Ok(true),
        Some("leader") | Some("LeaderSelector") => Ok(false),
        Some(other) => anyhow::bail!("--replica-selector {other}: expected rack-aware or leader"),
    }
}

impl BrokerConfig {
    /// The listener nodes reach each other's brokers on (follower fetches, consumer lag):
    /// `--inter-broker-listener-name`, else the PLAINTEXT one, else the first.
    pub fn inter_broker_listener(&self) -> &crate::security::Listener {
        self.inter_broker.listener(&self.listeners)
    }

    /// What this node's brokers register for each listener.
    pub fn listener_endpoints(&self) -> Vec<crate::security::ListenerEndpoint> {
        self.listeners
            .iter()
            .map(crate::security::Listener::endpoint)
            .collect()
    }

    /// The rack of this node's brokers: `--broker-rack`, else, on a node of a replicated
    /// cluster, the node itself (so that rack-aware placement puts replicas on distinct
    /// nodes); a one-node cluster has none, as before.
    pub fn rack(&self) -> Option<String> {
        self.broker_rack.clone().or_else(|| {
            self.cluster
                .as_ref()
                .map(|_| format!("node-{}", self.node_id))
        })
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(cluster) = &self.cluster {
            self.inter_broker.check_for_cluster()?;
            cluster.check_controller_security(self.tls.as_ref())?;
        }
        anyhow::ensure!(
            self.default_partitions >= 1,
            "default partitions must be at least 1, got {}",
            self.default_partitions
        );
        anyhow::ensure!(
            (0..=1_000_000).contains(&self.node_id),
            "node id must be between 0 and 1000000, got {}",
            self.node_id
        );
        anyhow::ensure!(
            self.smp != Some(0),
            "--smp must be at least 1 (or left out for one shard per CPU)"
        );
        anyhow::ensure!(
            self.segment_bytes >= 64 * 1024,
            "segment bytes must be at least 65536, got {}",
            self.segment_bytes
        );
        anyhow::ensure!(
            self.log_zero_ahead_bytes <= 1 << 30,
            "log zero-ahead bytes must be at most 1073741824, got {}",
            self.log_zero_ahead_bytes
        );
        anyhow::ensure!(
            self.offsets_topic_partitions >= 1,
            "offsets topic partitions must be at least 1"
        );
        anyhow::ensure!(
            self.transactions.state_partitions >= 1,
            "transaction state log partitions must be at least 1"
        );
        anyhow::ensure!(
            self.transactions.max_timeout_ms >= 1,
            "transaction max timeout must be at least 1 ms"
        );
        anyhow::ensure!(
            self.groups.min_session_timeout_ms <= self.groups.max_session_timeout_ms,
            "group min session timeout is above the max"
        );
        anyhow::ensure!(
            self.cleaner.backoff_ms >= 1,
            "log cleaner backoff must be at least 1 ms"
        );
        anyhow::ensure!(
            self.socket_request_max_bytes >= 1024,
            "socket request max bytes must be at least 1024"
        );
        Ok(())
    }
}

#[path = "config_file.rs"]
mod file;
use file::read_config_file;
pub use file::ConfigFile;

#[cfg(test)]
#[path = "config_tests.rs"]
pub(crate) mod tests;
