//! Produce (key 0): validate, append, wait for the group commit, acknowledge.
//!
//! The handler runs in two phases, like Redpanda's two-phase produce: the in-order part
//! (topic lookup, validation, offset assignment, copy into the partition's write buffer)
//! runs before the connection reads its next request; the rest (waiting until the batch is
//! written and fdatasync'ed) is the [`Pending`] future that the connection's writer awaits.
//! Every ack level waits for durability: acks=1 is answered after the same group commit as
//! acks=all on a single node, which costs little because the commit is shared.

use std::rc::Rc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::ResponseError;
use spate_storage::{Offset, PartitionLog, ReceivedBatch, StorageError};

use super::errors::{storage_error_code, NONE};
use super::produce_stream::ReceivedBatches;
use super::{encode, ApiSpec, RequestContext};
use crate::connection::{CloseReason, Pending};
use crate::shard::Shard;

/// Served versions: advertised from 0 as Kafka 4 does, served from 3 (magic 2 only).
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::Produce,
    advertised_min: 0,
    min: 3,
    max: 11,
};

/// The compression codec number of zstd in a batch's attributes.
const ZSTD: i16 = 4;
/// Produce v7 is the first that may carry zstd.
const ZSTD_MIN_PRODUCE_VERSION: i16 = 7;

/// A partition that was appended to and must be durable before the response.
struct Appended {
    log: PartitionLog,
    last_offset: Offset,
    /// Where its answer sits in the response: (topic index, partition index).
    slot: (usize, usize),
}

/// Runs the in-order phase and returns the wait-and-respond phase. `received` holds the
/// batches that a streamed request received into DMA chunks, by their place in the request;
/// their records fields in `request` are empty.
pub async fn handle(
    shard: &Rc<Shard>,
    context: RequestContext,
    request: ProduceRequest,
    received: ReceivedBatches,
) -> Result<Pending, CloseReason> {
    let mut received = received.into_iter().peekable();
    let acks = request.acks;
    let mut waits: Vec<Appended> = Vec::new();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let name = topic_data.name.0.to_string();
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        let topic = shard.topic_or_create(&name, true);
        for partition_data in topic_data.partition_data {
            let partition = partition_data.index;
            let slot = (responses.len(), partition_responses.len());
            // The received batches come in request order.
            let batch = match received.next_if(|(at, _)| *at == slot) {
                Some((_, batch)) => Batch::Received(batch),
                None => Batch::InRequest(partition_data.records.as_deref()),
            };
            let result = if !matches!(acks, -1..=1) {
                Err(ResponseError::InvalidRequiredAcks.code())
            } else if request.transactional_id.is_some() {
                // Transactions are not implemented yet: InitProducerId refuses transactional
                // ids, so a client never gets this far with one.
                Err(ResponseError::TransactionalIdAuthorizationFailed.code())
            } else {
                match &topic {
                    None => Err(ResponseError::UnknownTopicOrPartition.code()),
                    Some(topic) if partition < 0 || partition >= topic.partitions => {
                        Err(ResponseError::UnknownTopicOrPartition.code())
                    }
                    Some(_) if !shard.owns(&name, partition) => {
                        Err(ResponseError::NotLeaderOrFollower.code())
                    }
                    Some(topic) => {
                        append(shard, &context, topic, partition, batch, slot, &mut waits).await
                    }
                }
            };
            partition_responses.push(partition_response(partition, result));
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partition_responses),
        );
    }
    let shard = shard.clone();
    Ok(Box::pin(async move {
        for appended in &waits {
            match appended.log.wait_durable(appended.last_offset).await {
                Ok(()) => {}
                Err(error) if is_disk_full(&error) => {
                    // Nothing of this batch is acknowledged; reads of the log still work, and
                    // the operator frees space. Kafka answers KAFKA_STORAGE_ERROR likewise.
                    tracing::error!(%error, "disk full: produce refused");
                    let (topic, partition) = appended.slot;
                    if let Some(answer) = responses
                        .get_mut(topic)
                        .and_then(|topic| topic.partition_responses.get_mut(partition))
                    {
                        *answer = partition_response(
                            answer.index,
                            Err(ResponseError::KafkaStorageError.code()),
                        );
                    }
                }
                Err(error) => crate::fatal(&format!("cannot make produced data durable: {error}")),
            }
        }
        if !waits.is_empty() {
            shard.data_arrived.notify_all();
        }
        if acks == 0 {
            let failed = responses
                .iter()
                .flat_map(|topic| &topic.partition_responses)
                .find(|partition| partition.error_code != NONE);
            return match failed {
                // acks=0 has no response to carry an error: Kafka closes the connection.
                Some(partition) => Err(CloseReason::Protocol(format!(
                    "acks=0 produce failed with error {} on partition {}",
                    partition.error_code, partition.index
                ))),
                None => Ok(None),
            };
        }
        let response = ProduceResponse::default().with_responses(responses);
        encode(&context, &ResponseKind::Produce(response)).map(|frame| Some(frame.into()))
    }))
}

/// What a successful append tells the producer.
struct Accepted {
    base_offset: i64,
    log_start_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    log_append_time_ms: i64,
}

/// A partition's batch: in the request buffer, or received into DMA chunks.
enum Batch<'request> {
    InRequest(Option<&'request [u8]>),
    Received(ReceivedBatch),
}

/// Validates and appends one partition's batch.
async fn append(
    shard: &Shard,
    context: &RequestContext,
    topic: &crate::catalog::TopicMeta,
    partition: i32,
    batch: Batch<'_>,
    slot: (usize, usize),
    waits: &mut Vec<Appended>,
) -> Result<Accepted, i16> {
    let first_bytes = match &batch {
        Batch::InRequest(records) => records.ok_or(if context.version >= 8 {
            ResponseError::InvalidRecord.code()
        } else {
            ResponseError::CorruptMessage.code()
        })?,
        Batch::Received(received) => received.header().unwrap_or_default(),
    };
    if compression_of(first_bytes) == Some(ZSTD) && context.version < ZSTD_MIN_PRODUCE_VERSION {
        return Err(ResponseError::UnsupportedCompressionType.code());
    }
    let log = shard
        .log(topic, partition)
        .await
        .map_err(|error| log_error(context, topic, partition, &error))?;
    let (batch_bytes, appended) = match batch {
        Batch::InRequest(records) => {
            let records = records.unwrap_or_default();
            (records.len(), log.append(records, crate::LEADER_EPOCH))
        }
        Batch::Received(received) => (
            received.len(),
            log.append_received(received, crate::LEADER_EPOCH),
        ),
    };
    let appended = appended.map_err(|error| log_error(context, topic, partition, &error))?;
    if !appended.duplicate {
        shard.stats().produce_append(batch_bytes, appended.in_place);
    }
    let log_start = log.log_start_offset().0;
    // A retried duplicate is answered with the original's offset, and only once the
    // original is durable: it may still be in the same group commit.
    waits.push(Appended {
        log,
        last_offset: appended.last_offset,
        slot,
    });
    Ok(Accepted {
        base_offset: appended.base_offset.0,
        log_start_offset: log_start,
        log_append_time_ms: appended.log_append_time_ms.unwrap_or(-1),
    })
}

fn log_error(
    context: &RequestContext,
    topic: &crate::catalog::TopicMeta,
    partition: i32,
    error: &StorageError,
) -> i16 {
    match error {
        StorageError::Io(_) => {
            tracing::error!(topic = %topic.name, partition, %error, "storage error on produce")
        }
        _ => {
            tracing::debug!(topic = %topic.name, partition, %error, client = ?context.client_id, "produce rejected")
        }
    }
    storage_error_code(error, context.version)
}

/// A full disk refuses writes without putting acknowledged data at risk; any other
/// failure to make data durable (a failed fsync) leaves the log's state unknown, and the
/// broker stops rather than serve it.
fn is_disk_full(error: &StorageError) -> bool {
    matches!(error, StorageError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull)
}

/// The codec bits of a batch's attributes, if the batch is long enough to have them.
fn compression_of(batch: &[u8]) -> Option<i16> {
    const ATTRIBUTES_AT: usize = 21;
    let attributes = batch.get(ATTRIBUTES_AT..ATTRIBUTES_AT + 2)?;
    Some(i16::from_be_bytes([attributes[0], attributes[1]]) & 0x7)
}

fn partition_response(partition: i32, result: Result<Accepted, i16>) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(partition)
        .with_log_append_time_ms(-1);
    match result {
        Ok(accepted) => response
            .with_base_offset(accepted.base_offset)
            .with_log_start_offset(accepted.log_start_offset)
            .with_log_append_time_ms(accepted.log_append_time_ms),
        Err(code) => response
            .with_error_code(code)
            .with_base_offset(-1)
            .with_log_start_offset(-1),
    }
}
