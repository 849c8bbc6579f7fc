//! Transactions (issue 17): the transaction coordinator's state, on the internal topic
//! `__transaction_state`, as Kafka keeps it.
//!
//! Built so far, free of I/O:
//! - [`state`]: one transactional id's state machine (Kafka's `TransactionMetadata` and the
//!   decisions of its coordinator for transaction protocol v1): InitProducerId with a
//!   transactional id (epoch bumps fence zombies; an open transaction of the previous
//!   producer is aborted first), AddPartitionsToTxn / AddOffsetsToTxn, EndTxn, and the abort
//!   of a transaction past its timeout; property-tested against Kafka's promises.
//! - [`state_log`]: the `__transaction_state` records in Kafka's key and value schemas, and
//!   the partition a transactional id lives on.
//!
//! Built beside it, outside this module: what transactions leave in a partition's log
//! (`spate_storage::txn`: markers as control batches, the last stable offset, the aborted
//! transaction index and `.txnindex` files), the broker side of WriteTxnMarkers
//! (`handlers::write_txn_markers`), transactional produce (WRITE on the transactional id),
//! and read_committed Fetch and ListOffsets.
//!
//! Still to come: the coordinator on the shards that lead `__transaction_state`'s partitions
//! (like the group coordinator) with its loading, FindCoordinator for transactions,
//! InitProducerId with a transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn
//! (sending WriteTxnMarkers to each partition's leader), TxnOffsetCommit and the group
//! coordinator's side of committed offsets, timeouts, and the inspection APIs.

pub mod state;
pub mod state_log;
