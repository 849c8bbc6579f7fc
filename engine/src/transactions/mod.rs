//! Transactions (issue 17): the transaction coordinator, on the internal topic
//! `__transaction_state`, as Kafka keeps it.
//!
//! A tour:
//! - [`state`]: one transactional id's state machine (Kafka's `TransactionMetadata` and the
//!   decisions of its coordinator for transaction protocol v1), free of I/O: InitProducerId
//!   with a transactional id (epoch bumps fence zombies; an open transaction of the previous
//!   producer is aborted first), AddPartitionsToTxn / AddOffsetsToTxn, EndTxn, and the abort
//!   of a transaction past its timeout; property-tested against Kafka's promises.
//! - [`state_v2`]: what transaction protocol v2 (KIP-890, Kafka 4's clients) decides
//!   differently: partitions added by their leaders (AddPartitionsToTxn v4+, implicitly
//!   starting a transaction, or verify-only), and EndTxn v5's epoch bump per transaction.
//! - [`state_log`]: the `__transaction_state` records in Kafka's key and value schemas, and
//!   the partition a transactional id lives on.
//! - [`coordinator::TxnCoordinator`]: one shard's coordinator, for the transactional ids of
//!   the `__transaction_state` partitions the shard leads (loaded from them when it gains
//!   one, like the group coordinator): every transition is written to the partition, on
//!   every in-sync replica, before it is answered; a prepared commit or abort then has its
//!   markers written ([`markers`]) and is completed; abandoned transactions are aborted when
//!   their timeout passes.
//! - [`markers`]: the markers of one transaction, written to every partition's leader (this
//!   shard's directly, others' with WriteTxnMarkers over an inter-broker connection) and
//!   retried until each is written or its topic is gone.
//! - [`partition_add`]: a partition leader's side of protocol v2: before a producer's first
//!   transactional batch of a transaction is appended (Produce v12, TxnOffsetCommit v5), the
//!   partition is added at the coordinator (directly, or AddPartitionsToTxn v5 to another
//!   broker); for protocol v1 producers it checks that the client added it (KIP-890 part 1,
//!   `--transaction-partition-verification-enable`). ApiVersions finalizes
//!   `transaction.version` at `--transaction-version`.
//!
//! Built beside it: what transactions leave in a partition's log (`spate_storage::txn`:
//! markers as control batches, the last stable offset, the aborted transaction index and
//! `.txnindex` files), the broker side of WriteTxnMarkers (`handlers::write_txn_markers`),
//! transactional produce (WRITE on the transactional id), read_committed Fetch and
//! ListOffsets, and the group coordinator's side (TxnOffsetCommit's offsets held per
//! producer until the marker reaches the group's `__consumer_offsets` partition).
//!
//! Inspection (KIP-664): DescribeTransactions and ListTransactions answer from the
//! coordinator's ids (`handlers::describe_transactions`, `handlers::list_transactions`);
//! DescribeProducers from a partition leader's producer state (`handlers::describe_producers`).
//! `spate txn` (`cli::txn`) uses them, and finds and aborts hanging transactions.
//!
//! Still to come: the expiry of idle transactional ids (`transactional.id.expiration.ms`).

pub mod coordinator;
pub mod markers;
pub mod partition_add;
pub mod state;
pub mod state_log;
pub mod state_v2;

/// The transaction coordinator's settings (Kafka's `transaction.*` broker configs).
#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// transaction.state.log.num.partitions: partitions of `__transaction_state` when made.
    pub state_partitions: i32,
    /// transaction.state.log.replication.factor (`None`: as `__consumer_offsets`).
    pub state_replication_factor: Option<usize>,
    /// transaction.state.log.min.isr, at most the replication factor.
    pub state_min_isr: usize,
    /// transaction.max.timeout.ms.
    pub max_timeout_ms: i32,
    /// transaction.abort.timed.out.transaction.cleanup.interval.ms.
    pub abort_interval: std::time::Duration,
    /// The finalized `transaction.version` feature level clients are told (ApiVersions): 2
    /// has Kafka 4 clients use transaction protocol v2 (KIP-890); 0 or 1 keeps them on v1.
    /// Requests of either protocol are served whatever the level.
    pub transaction_version: i16,
    /// transaction.partition.verification.enable: a partition leader asks the coordinator
    /// whether a protocol v1 producer added the partition before taking its first
    /// transactional batch there (KIP-890 part 1).
    pub partition_verification: bool,
}

impl Default for TxnConfig {
    fn default() -> TxnConfig {
        TxnConfig {
            state_partitions: state_log::DEFAULT_PARTITIONS,
            state_replication_factor: None,
            state_min_isr: 2,
            max_timeout_ms: 900_000,
            abort_interval: std::time::Duration::from_secs(10),
            transaction_version: crate::handlers::api_versions::MAX_TRANSACTION_VERSION,
            partition_verification: true,
        }
    }
}
