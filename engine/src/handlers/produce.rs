//! Produce (key 0): validate, append, wait for the group commit, acknowledge.
//!
//! The handler runs in two phases, like Redpanda's two-phase produce: the in-order part
//! (topic lookup, validation, offset assignment, copy into the partition's write buffer)
//! runs before the connection reads its next request; the rest (waiting until the batch is
//! written and fdatasync'ed) is the [`Pending`] future that the connection's writer awaits.
//! The partition decides when each acks level may be answered (`Partition::wait_acknowledged`):
//! on a single node every level waits for durability, acks=1 after the same group commit as
//! acks=all, which costs little because the commit is shared.

use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_net::produce_stream::BatchSink;
use spate_storage::{BatchError, ReceivedBatch, StorageError};

use super::errors::{partition_error_code, NONE};
use super::{encode, ApiSpec, CloseReason, Pending, RequestContext};
use crate::partition::{Acks, Appended, Partition, PartitionError, ProducedBatch};
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;
use crate::transactions::partition_add;

/// Served versions: advertised from 0 as Kafka 4 does, served from 3 (magic 2 only).
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::Produce,
    advertised_min: 0,
    min: 3,
    max: 12,
};

/// The compression codec number of zstd in a batch's attributes.
const ZSTD: i16 = 4;
/// Produce v7 is the first that may carry zstd.
const ZSTD_MIN_PRODUCE_VERSION: i16 = 7;
/// Produce v10 is the first with leader hints (KIP-951).
const LEADER_HINTS_VERSION: i16 = 10;
/// Produce v12 is transaction protocol v2's (KIP-890): its transactional batches add their
/// partitions to the transaction.
const IMPLICIT_ADD_VERSION: i16 = 12;
/// Where a v2 batch header has the producer id (then the epoch).
const PRODUCER_ID_AT: usize = 43;
/// Produce requests carry no leader epoch: any is accepted.
const ANY_LEADER_EPOCH: i32 = -1;

/// The batches of a streamed Produce, received into DMA chunks by [`IntoLogs`], by their place
/// in the request: (topic index, partition index).
pub type ReceivedBatches = spate_net::produce_stream::ReceivedBatches<ReceivedBatch>;

/// Receives a streamed Produce's large batches into the DMA chunks their partitions' logs
/// write from, each placed where its log says it will start within a disk block, so that the
/// append adopts them without a copy (`PartitionLog::append_received`).
pub struct IntoLogs<'a>(pub &'a Shard);

impl BatchSink for IntoLogs<'_> {
    type Batch = ReceivedBatch;

    fn begin(&self, topic: &str, partition: i32, bytes: usize) -> ReceivedBatch {
        // A partition not open yet is opened by the handler, and its batch is copied that once.
        let front = self
            .0
            .partitions
            .open_replica(topic, partition)
            .map_or(0, |replica| replica.receive_front(bytes));
        ReceivedBatch::empty(front, bytes)
    }

    fn next_part<'batch>(&self, batch: &'batch mut ReceivedBatch) -> Option<&'batch mut [u8]> {
        // Chunks are taken one at a time as the batch arrives.
        batch.next_part_mut()
    }
}

/// A partition that was appended to, whose answer waits for its acknowledgement.
struct Waiting {
    partition: Rc<Partition>,
    appended: Appended,
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
    let acks = Acks::from_kafka(request.acks);
    let mut names: Vec<&str> = request
        .topic_data
        .iter()
        .map(|topic| &*topic.name.0)
        .collect();
    // WRITE on each topic (an unknown one is created only with CREATE too); nothing is
    // allocated for this without an authorizer.
    let access = Access::new(shard, &context);
    let writable: Vec<bool> = if access.enabled() {
        let writable: Vec<bool> = names
            .iter()
            .map(|name| access.topic(name, AclOperation::Write))
            .collect();
        let mut allowed = writable.iter();
        names.retain(|name| *allowed.next().unwrap_or(&false) && access.may_create_topic(name));
        writable
    } else {
        Vec::new()
    };
    // A transactional producer needs WRITE on its transactional id too.
    let transactional_id_allowed = request
        .transactional_id
        .as_ref()
        .is_none_or(|id| access.allows(ResourceType::TransactionalId, &id.0, AclOperation::Write));
    drop(access);
    // Unknown topics are created together, in one call to the controller.
    shard.topics_or_create(&names, true).await;
    let mut waits: Vec<Waiting> = Vec::new();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for (topic_index, topic_data) in request.topic_data.into_iter().enumerate() {
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        let refused = writable.get(topic_index) == Some(&false);
        for partition_data in topic_data.partition_data {
            let index = partition_data.index;
            let slot = (responses.len(), partition_responses.len());
            // The received batches come in request order.
            let batch = match received.next_if(|(at, _)| *at == slot) {
                Some((_, batch)) => Batch::Received(batch),
                None => Batch::InRequest(partition_data.records.as_deref()),
            };
            let transactional_id = request.transactional_id.as_ref().map(|id| &*id.0);
            let result = match &acks {
                Err(error) => Err(partition_error_code(error, context.version).into()),
                _ if refused => Err(ResponseError::TopicAuthorizationFailed.code().into()),
                Ok(_) if !transactional_id_allowed => {
                    Err(ResponseError::TransactionalIdAuthorizationFailed
                        .code()
                        .into())
                }
                Ok(acks) => {
                    let target = (&*topic_data.name.0, index);
                    append(shard, &context, *acks, target, transactional_id, batch)
                        .await
                        .map(|(partition, appended)| {
                            let accepted = Accepted::of(&partition, &appended);
                            waits.push(Waiting {
                                partition,
                                appended,
                                slot,
                            });
                            accepted
                        })
                }
            };
            partition_responses.push(partition_response(index, result));
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partition_responses),
        );
    }
    let acks = acks.unwrap_or(Acks::All);
    // Kafka's timeout_ms bounds the wait for the ISR (acks=all) of replicated partitions.
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    let node = shard.node.clone();
    let shard = shard.clone();
    Ok(Box::pin(async move {
        let deadline = Instant::now() + timeout;
        for waiting in &waits {
            let acknowledged =
                waiting
                    .partition
                    .wait_acknowledged(&waiting.appended, acks, deadline);
            // An acks=all wait on a replicated partition also ends when this node's
            // controller lease expires: no follower will fetch from a node the controller
            // fenced, and its client should go to the new leader now rather than at its
            // request timeout. (acks=1 waits only for this node's disk.)
            let watch_lease = node.config.cluster.is_some()
                && acks == Acks::All
                && waiting.partition.leads_replicated();
            let result = if watch_lease {
                let fenced = async {
                    node.controller_lease.until_expired().await;
                    Err(PartitionError::NotLeaderOrFollower)
                };
                futures_lite::future::or(acknowledged, fenced).await
            } else {
                // A one-node cluster's produce path stays as it was.
                acknowledged.await
            };
            if let Err(error) = result {
                answer_failed_wait(&context, waiting, &error, &mut responses);
            }
        }
        if acks == Acks::None {
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
        let mut response = ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(context.response_throttle_ms());
        if context.version >= LEADER_HINTS_VERSION {
            super::leader_hints::add_to_produce(&shard.image(), context.listener, &mut response);
        }
        shard
            .stats()
            .response_errors(context.api_key as i16, |count| {
                crate::request_errors::produce_errors(&response, count)
            });
        encode(&context, &ResponseKind::Produce(response)).map(|frame| Some(frame.into()))
    }))
}

/// A batch that was appended but could not be made durable is answered with the error
/// (KAFKA_STORAGE_ERROR): nothing of it is acknowledged, and the broker keeps serving every
/// other partition. A full disk leaves the log serving reads, and it heals when space
/// returns; a failed fsync leaves that log refusing appends until the broker restarts, since
/// nothing may ever be acknowledged after one.
fn answer_failed_wait(
    context: &RequestContext,
    waiting: &Waiting,
    error: &PartitionError,
    responses: &mut [TopicProduceResponse],
) {
    match error {
        PartitionError::Storage(storage) if is_disk_full(storage) => {
            tracing::error!(partition = %waiting.partition.key(), %error, "disk full: produce refused");
        }
        PartitionError::Storage(StorageError::Io(_)) => {
            tracing::error!(partition = %waiting.partition.key(), %error, "cannot make produced data durable: the partition refuses appends");
        }
        _ => {}
    }
    let (topic, partition) = waiting.slot;
    if let Some(answer) = responses
        .get_mut(topic)
        .and_then(|topic| topic.partition_responses.get_mut(partition))
    {
        *answer = partition_response(answer.index, Err(Refusal::of(error, context.version)));
    }
}

/// What a successful append tells the producer.
struct Accepted {
    base_offset: i64,
    log_start_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    log_append_time_ms: i64,
}

impl Accepted {
    fn of(partition: &Partition, appended: &Appended) -> Accepted {
        Accepted {
            base_offset: appended.base_offset.0,
            log_start_offset: partition.log_start_offset().0,
            log_append_time_ms: appended.log_append_time_ms.unwrap_or(-1),
        }
    }
}

/// A partition's batch: in the request buffer, or received into DMA chunks.
enum Batch<'request> {
    InRequest(Option<&'request [u8]>),
    Received(spate_storage::ReceivedBatch),
}

/// Validates and appends one partition's batch on its leader.
async fn append(
    shard: &Rc<Shard>,
    context: &RequestContext,
    acks: Acks,
    (topic, index): (&str, i32),
    transactional_id: Option<&str>,
    batch: Batch<'_>,
) -> Result<(Rc<Partition>, Appended), Refusal> {
    let first_bytes = match &batch {
        Batch::InRequest(records) => records.ok_or(if context.version >= 8 {
            ResponseError::InvalidRecord.code()
        } else {
            ResponseError::CorruptMessage.code()
        })?,
        Batch::Received(received) => received.header().unwrap_or_default(),
    };
    if compression_of(first_bytes) == Some(ZSTD) && context.version < ZSTD_MIN_PRODUCE_VERSION {
        return Err(ResponseError::UnsupportedCompressionType.code().into());
    }
    // Transactional records come only in a request with a transactional id (Kafka's
    // `hasTransactionalRecords` check): a batch that claims a transaction without one would
    // open a transaction no coordinator ever ends, and hold read_committed readers back.
    let transactional = is_transactional(first_bytes);
    if transactional && transactional_id.is_none() {
        return Err(ResponseError::TransactionalIdAuthorizationFailed
            .code()
            .into());
    }
    let refused = |error: PartitionError| log_error(context, topic, index, &error);
    let partition = shard
        .partitions
        .leader(topic, index, ANY_LEADER_EPOCH)
        .await
        .map_err(refused)?;
    if shard.node.config.cluster.is_some()
        && partition.leads_replicated()
        && shard.node.controller_lease.expired()
    {
        // The controller has fenced this node and given the partition to another replica:
        // send the client there (see `cluster::member::ControllerLease`).
        return Err(refused(PartitionError::NotLeaderOrFollower));
    }
    if acks == Acks::All {
        partition.check_enough_replicas().map_err(refused)?;
    }
    if let (true, Some(transactional_id), Some(producer)) =
        (transactional, transactional_id, producer_of(first_bytes))
    {
        // The first batch of a transaction here (`transactions::partition_add`): protocol v2
        // adds the partition to the transaction, protocol v1 checks that the client did.
        let first = !partition
            .log()
            .has_ongoing_transaction(producer.0, producer.1);
        if first && context.version >= IMPLICIT_ADD_VERSION {
            partition_add::add(shard, transactional_id, producer, topic, index, true)
                .await
                .map_err(Refusal::from)?;
        } else if first && shard.node.config.transactions.partition_verification {
            partition_add::verify(
                shard,
                transactional_id,
                producer,
                topic,
                index,
                context.version,
            )
            .await
            .map_err(Refusal::from)?;
        }
    }
    let produced = match batch {
        Batch::InRequest(records) => ProducedBatch::InRequest(records.unwrap_or_default()),
        Batch::Received(received) => ProducedBatch::Received(received),
    };
    let appended = partition.append(produced).map_err(refused)?;
    if !appended.duplicate {
        let stats = shard.stats();
        stats.produce_append(appended.appended_bytes, appended.in_place);
        stats
            .topic_traffic(&partition.key().topic)
            .bytes_in(appended.appended_bytes);
    }
    Ok((partition, appended))
}

fn log_error(
    context: &RequestContext,
    topic: &str,
    partition: i32,
    error: &PartitionError,
) -> Refusal {
    match error {
        PartitionError::Storage(StorageError::Io(_)) => {
            tracing::error!(topic, partition, %error, "storage error on produce")
        }
        _ => {
            tracing::debug!(topic, partition, %error, client = ?context.client_id, "produce rejected")
        }
    }
    Refusal::of(error, context.version)
}

/// Why a partition's batch was refused: its error code and, for records a topic refuses
/// (Produce v8 and later), KIP-467's message and the records at fault, so that clients fail
/// exactly those records.
struct Refusal {
    code: i16,
    message: Option<&'static str>,
    records: Vec<i32>,
}

impl From<i16> for Refusal {
    fn from(code: i16) -> Refusal {
        Refusal {
            code,
            message: None,
            records: Vec::new(),
        }
    }
}

impl Refusal {
    fn of(error: &PartitionError, version: i16) -> Refusal {
        let refusal = Refusal::from(partition_error_code(error, version));
        match error {
            PartitionError::Storage(StorageError::Batch(BatchError::InvalidRecords {
                reason,
                records,
            })) if version >= 8 => Refusal {
                message: Some(reason),
                records: records.clone(),
                ..refusal
            },
            _ => refusal,
        }
    }
}

/// A full disk refuses writes without putting acknowledged data at risk.
fn is_disk_full(error: &StorageError) -> bool {
    matches!(error, StorageError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull)
}

/// The codec bits of a batch's attributes, if the batch is long enough to have them.
fn attributes_of(batch: &[u8]) -> Option<i16> {
    const ATTRIBUTES_AT: usize = 21;
    let attributes = batch.get(ATTRIBUTES_AT..ATTRIBUTES_AT + 2)?;
    Some(i16::from_be_bytes([attributes[0], attributes[1]]))
}

fn compression_of(batch: &[u8]) -> Option<i16> {
    attributes_of(batch).map(|attributes| attributes & 0x7)
}

/// Whether the batch says it belongs to a transaction (attribute bit 4).
/// The producer id and epoch of a batch (v2 header), if its header is whole.
fn producer_of(batch: &[u8]) -> Option<(i64, i16)> {
    let id = batch.get(PRODUCER_ID_AT..PRODUCER_ID_AT + 8)?;
    let epoch = batch.get(PRODUCER_ID_AT + 8..PRODUCER_ID_AT + 10)?;
    Some((
        i64::from_be_bytes(id.try_into().ok()?),
        i16::from_be_bytes(epoch.try_into().ok()?),
    ))
}

fn is_transactional(batch: &[u8]) -> bool {
    attributes_of(batch).is_some_and(|attributes| attributes & 0x10 != 0)
}

fn partition_response(
    partition: i32,
    result: Result<Accepted, Refusal>,
) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(partition)
        .with_log_append_time_ms(-1);
    match result {
        Ok(accepted) => response
            .with_base_offset(accepted.base_offset)
            .with_log_start_offset(accepted.log_start_offset)
            .with_log_append_time_ms(accepted.log_append_time_ms),
        Err(refusal) => {
            let message = refusal.message.map(StrBytes::from_static_str);
            let record_errors = refusal
                .records
                .iter()
                .map(|index| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(*index)
                        .with_batch_index_error_message(message.clone())
                })
                .collect();
            response
                .with_error_code(refusal.code)
                .with_error_message(message)
                .with_record_errors(record_errors)
                .with_base_offset(-1)
                .with_log_start_offset(-1)
        }
    }
}
