//! A partition leader's side of KIP-890. Protocol v2 (part 2): before the first
//! transactional batch of a producer's transaction is appended to a partition (Produce v12+,
//! or a TxnOffsetCommit v5 on the group's `__consumer_offsets` partition), the leader adds
//! the partition to the transaction at the producer's coordinator ([`add`]): directly when
//! this shard coordinates the transactional id, else with AddPartitionsToTxn v5
//! (`verify_only=false`) over an inter-broker connection, as Kafka's
//! `AddPartitionsToTxnManager` does. Protocol v1 (part 1, Kafka's
//! `transaction.partition.verification.enable`): the leader asks the coordinator whether the
//! client added the partition before its first batch ([`verify`], `verify_only=true`), so
//! that a batch that belongs to no transaction the coordinator knows (a late retry of an
//! aborted transaction, a client that skipped AddPartitionsToTxn) is refused instead of
//! opening a transaction no marker will ever end, which would hold read_committed readers
//! back for good (a "hanging" transaction).
//!
//! A partition that already holds an open transaction of the producer at the batch's epoch
//! needs no call (Kafka's `hasOngoingTransaction`): v2 bumps the epoch at every EndTxn, so
//! the first batch of each transaction in each partition makes exactly one.
//!
//! The coordinator's answers become the producer's as Kafka maps them
//! (`ReplicaManager.postVerificationCallback`): PRODUCER_FENCED is INVALID_PRODUCER_EPOCH; an
//! unreachable, moving or loading coordinator is NOT_ENOUGH_REPLICAS (which producers
//! retry); CONCURRENT_TRANSACTIONS (the previous transaction's markers are still being
//! written) is retried here for a moment on the Produce path, then returned for the client to
//! retry.

use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::coordinator::TxnCoordinator;
use super::markers;
use crate::shard::Shard;

/// The AddPartitionsToTxn versions brokers send (Kafka's `EARLIEST_BROKER_VERSION` is 4).
const BROKER_VERSIONS: std::ops::RangeInclusive<i16> = 4..=5;
/// Kafka's `add.partitions.to.txn.retry.backoff.ms` and `...backoff.max.ms`: how often and
/// for how long a Produce retries CONCURRENT_TRANSACTIONS before answering it.
const RETRY_BACKOFF: Duration = Duration::from_millis(20);
const RETRY_FOR: Duration = Duration::from_millis(100);

/// Adds `(topic, partition)` to the transaction of `producer` (id, epoch) at the coordinator
/// of `transactional_id`; `Ok` once it is in. `retry_concurrent`: retry
/// CONCURRENT_TRANSACTIONS for a moment first (the Produce path).
pub async fn add(
    shard: &Rc<Shard>,
    transactional_id: &str,
    producer: (i64, i16),
    topic: &str,
    partition: i32,
    retry_concurrent: bool,
) -> Result<(), i16> {
    let give_up_at = Instant::now() + RETRY_FOR;
    loop {
        let code = match ask(shard, transactional_id, producer, topic, partition, false).await {
            Ok(()) => return Ok(()),
            Err(code) => code,
        };
        if retry_concurrent
            && code == ResponseError::ConcurrentTransactions.code()
            && Instant::now() + RETRY_BACKOFF <= give_up_at
        {
            glommio::timer::sleep(RETRY_BACKOFF).await;
            continue;
        }
        return Err(for_producer(code));
    }
}

/// Whether `(topic, partition)` is in the protocol v1 transaction of `producer` at the
/// coordinator of `transactional_id`; `Ok` if so, else the code for a Produce of
/// `produce_version`.
pub async fn verify(
    shard: &Rc<Shard>,
    transactional_id: &str,
    producer: (i64, i16),
    topic: &str,
    partition: i32,
    produce_version: i16,
) -> Result<(), i16> {
    let code = match ask(shard, transactional_id, producer, topic, partition, true).await {
        Ok(()) => return Ok(()),
        Err(code) => code,
    };
    Err(match ResponseError::try_from_code(code) {
        // Produce v11 is the first that knows TRANSACTION_ABORTABLE.
        Some(ResponseError::TransactionAbortable) if produce_version < 11 => {
            ResponseError::InvalidTxnState.code()
        }
        // Without protocol v2's epoch bump the client cannot wait this out: Kafka answers a
        // retriable NOT_ENOUGH_REPLICAS.
        Some(ResponseError::ConcurrentTransactions) => ResponseError::NotEnoughReplicas.code(),
        _ => for_producer(code),
    })
}

/// One add (or, `verify_only`, one check) at the coordinator; its code.
async fn ask(
    shard: &Rc<Shard>,
    transactional_id: &str,
    producer: (i64, i16),
    topic: &str,
    partition: i32,
    verify_only: bool,
) -> Result<(), i16> {
    let Some((_, coordinator)) = TxnCoordinator::coordinator_of(shard, transactional_id) else {
        return Err(ResponseError::CoordinatorNotAvailable.code());
    };
    let partitions = [(topic.to_string(), partition)];
    if coordinator == shard.broker_id() {
        if verify_only {
            let added =
                shard
                    .txns
                    .verify_partitions(shard, transactional_id, producer, &partitions)?;
            return if added.first() == Some(&true) {
                Ok(())
            } else {
                Err(ResponseError::TransactionAbortable.code())
            };
        }
        return shard
            .txns
            .add_partitions_implicitly(shard, transactional_id, producer, &partitions)
            .await;
    }
    if !shard.image().is_live(coordinator) {
        return Err(ResponseError::CoordinatorNotAvailable.code());
    }
    let connections = shard.txns.connections();
    let Some((address, mut connection)) = markers::checkout(shard, connections, coordinator).await
    else {
        return Err(ResponseError::NetworkException.code());
    };
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_string(),
            )))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_verify_only(verify_only)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![partition])]),
    ]);
    let answer = connection.call(BROKER_VERSIONS, &request).await;
    markers::checkin(connections, address.clone(), connection, answer.is_err());
    let response = match answer {
        Ok((_, response)) => response,
        Err(error) => {
            tracing::debug!(%address, %error, "AddPartitionsToTxn to a coordinator failed");
            return Err(ResponseError::NetworkException.code());
        }
    };
    if response.error_code != 0 {
        return Err(response.error_code);
    }
    let code = response
        .results_by_transaction
        .iter()
        .flat_map(|result| &result.topic_results)
        .flat_map(|topic| &topic.results_by_partition)
        .map(|result| result.partition_error_code)
        .next()
        .unwrap_or(ResponseError::UnknownServerError.code());
    match code {
        0 => Ok(()),
        code => Err(code),
    }
}

/// The coordinator's code as the producer gets it.
fn for_producer(code: i16) -> i16 {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::ProducerFenced) => ResponseError::InvalidProducerEpoch.code(),
        Some(ResponseError::ClusterAuthorizationFailed) => ResponseError::InvalidTxnState.code(),
        Some(
            ResponseError::NetworkException
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::NotCoordinator,
        ) => ResponseError::NotEnoughReplicas.code(),
        _ => code,
    }
}
