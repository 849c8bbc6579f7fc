//! Fetch (key 1): whole stored batches from the requested offsets, below the high
//! watermark, as a long poll that honours `min_bytes` and `max_wait_ms`.
//!
//! Followers fetch here too (`replica_id` >= 0: their positions move the high watermark).
//! Consumers with Fetch v11+ may read from any replica, up to its high watermark, and a
//! leader sends one that names a rack other than its own to an in-sync replica in that
//! rack (`preferred_read_replica`, KIP-392).
//!
//! Versions: from v13 topics go by id (KIP-516; an id this broker does not know is
//! UNKNOWN_TOPIC_ID); from v15 a follower names itself and its broker epoch in
//! `replica_state` (KIP-903) instead of `replica_id`; from v16 a partition refused because
//! this broker does not lead it names its leader and the response says where that leader
//! listens (KIP-951), so a client moves without a Metadata round trip; v17 adds the
//! follower's directory id (KIP-853), which a broker with one log directory per shard
//! ignores.
//!
//! Fetch sessions (KIP-227) are declined by always answering `session_id = 0`, so clients
//! keep sending full fetch requests. There are no transactions yet, so the last stable
//! offset equals the high watermark and there are no aborted transactions to report.

use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, ProducerId};
use kafka_protocol::ResponseError;

use spate_net::fetch_response;
use spate_net::response::RecordPieces;
use spate_storage::{Offset, ReadMode, Records, RecordsPiece};

use super::errors::partition_error_code;
use super::{ApiSpec, Frame, RequestContext};
use crate::partition::{Isolation, Partition, PartitionError};
use crate::quota::{QuotaKey, Who};
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions (see the module's notes for what each adds).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::Fetch, 4, 17);
// The zero-copy encoder writes every version served.
const _: () = assert!(
    *fetch_response::VERSIONS.start() <= SPEC.min && SPEC.max <= *fetch_response::VERSIONS.end()
);

/// Fetch v13 is the first to identify topics by id.
const TOPIC_IDS_VERSION: i16 = 13;
/// Fetch v15 is the first whose followers name themselves in `replica_state`.
const REPLICA_STATE_VERSION: i16 = 15;
/// Fetch v16 is the first with leader hints (KIP-951).
const LEADER_HINTS_VERSION: i16 = 16;

/// Longest long poll we honour, whatever the client asks, so a shutdown is never held up.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);
/// isolation_level value for read_committed.
const READ_COMMITTED: i8 = 1;

/// A fetch's answer, and what client quotas make of it (`crate::quota`).
pub struct Fetched {
    /// The response frame.
    pub frame: Frame,
    /// How long the connection must wait before its next request: a consumer over its
    /// consumer_byte_rate quota, answered empty.
    pub throttle: Duration,
    /// The bytes recorded against the consumer's quota (taken back if another quota
    /// throttles the fetch after all).
    pub charged: f64,
}

/// Answers once `min_bytes` are available, an error occurs, or `max_wait_ms` passes, with
/// the records as pieces of the response frame (see `spate_net::fetch_response`).
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    mut request: FetchRequest,
) -> Fetched {
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let follower = follower_of(context, &request);
    let refused = refused_topics(shard, context, &request, follower);
    // Replication is not a consumer: no client quota binds a follower.
    let who = Who::new(&context.principal, context.client_id.as_deref());
    let quota = follower.is_none() && shard.image().quotas().any(QuotaKey::ConsumerByteRate);
    if quota {
        if let Some(cap) = shard.quotas.fetch_cap(shard.image().quotas(), who) {
            request.max_bytes = request.max_bytes.min(cap.min(i32::MAX as usize) as i32);
        }
    }
    loop {
        let read = read_all(shard, context, &request, follower, &refused).await;
        let now = Instant::now();
        if read.bytes >= min_bytes || read.any_error || now >= deadline {
            let mut charged = 0.0;
            if quota {
                let image = shard.image();
                let key = QuotaKey::ConsumerByteRate;
                let throttle =
                    shard
                        .quotas
                        .record(image.quotas(), key, who, read.bytes as f64, now);
                if !throttle.is_zero() {
                    // As Kafka: a throttled consumer is sent nothing, and what it would have
                    // been sent does not count against it.
                    shard
                        .quotas
                        .unrecord(image.quotas(), key, who, read.bytes as f64);
                    return Fetched {
                        frame: throttled(context, throttle),
                        throttle,
                        charged,
                    };
                }
                charged = read.bytes as f64;
            }
            let mut response = FetchResponse::default()
                .with_session_id(0)
                .with_responses(read.topics);
            if context.version >= LEADER_HINTS_VERSION {
                super::leader_hints::add_to_fetch(&shard.image(), context.listener, &mut response);
            }
            shard
                .stats()
                .response_errors(context.api_key as i16, |count| {
                    crate::request_errors::fetch_errors(&response, count)
                });
            for (records, topic) in read
                .records
                .iter()
                .zip(&response.responses)
                .flat_map(|(records, topic)| records.iter().map(move |one| (one, topic)))
            {
                if let Some(records) = records.as_ref().filter(|records| !records.0.is_empty()) {
                    shard.stats().fetch_records(&records.0);
                    // As Kafka's BytesOutPerSec: consumers' reads, not replication.
                    if follower.is_none() {
                        shard
                            .stats()
                            .topic_traffic(&topic.topic.0)
                            .bytes_out(records.0.len());
                    }
                }
            }
            let frame = fetch_response::encode(
                context.version,
                context.correlation_id,
                &response,
                read.records,
            );
            return Fetched {
                frame,
                throttle: Duration::ZERO,
                charged,
            };
        }
        // Wait for a high watermark of a partition read to advance. The notifications were
        // taken before reading, so data that became visible meanwhile wakes us at once.
        let watched = read
            .watched
            .iter()
            .map(|watched| (watched.events(), watched.generation));
        let changed = crate::notify::any(watched);
        futures_lite::future::or(changed, async {
            glommio::timer::sleep(deadline - now).await;
        })
        .await;
    }
}

/// Whether a fetch is a follower's (replication, which no client quota binds).
pub fn is_follower(context: &RequestContext, request: &FetchRequest) -> bool {
    follower_of(context, request).is_some()
}

/// The empty answer to a throttled consumer (Kafka's `getThrottledResponse` without a
/// fetch session).
pub fn throttled(context: &RequestContext, throttle: Duration) -> Frame {
    let response = FetchResponse::default()
        .with_session_id(0)
        .with_throttle_time_ms(throttle.as_millis().min(i32::MAX as u128) as i32);
    fetch_response::encode::<FetchedRecords>(
        context.version,
        context.correlation_id,
        &response,
        Vec::new(),
    )
}

/// Per topic and partition of a response, the records read for it.
type RecordsByPartition = Vec<Vec<Option<FetchedRecords>>>;

/// Records read from a log, as the Fetch encoder sees them: its pieces are the log's, sent
/// by the connection from where they lie (`connection::write_frame`).
struct FetchedRecords(Records);

impl RecordPieces for FetchedRecords {
    type Piece = RecordsPiece;

    fn len(&self) -> usize {
        self.0.len()
    }

    fn pieces(&self) -> &[RecordsPiece] {
        self.0.pieces()
    }

    fn in_memory(piece: &RecordsPiece) -> Option<&[u8]> {
        piece.in_memory()
    }

    fn piece_len(piece: &RecordsPiece) -> usize {
        piece.len()
    }
}

/// A partition a long poll waits on: a consumer for its high watermark to advance, a
/// follower for its durable end (new data to copy) or its high watermark (which the follower
/// takes, so that it could lead with an up-to-date one and serves it to its own reads).
struct Watched {
    partition: Rc<Partition>,
    follower: bool,
    /// Taken before reading, so that data that became visible meanwhile wakes at once.
    generation: crate::notify::Generation,
}

impl Watched {
    /// Watches `partition`'s durable end (`follower`) or high watermark from now on.
    fn new(partition: &Rc<Partition>, follower: bool) -> Watched {
        let mut watched = Watched {
            partition: partition.clone(),
            follower,
            generation: partition.high_watermark_events().generation(),
        };
        watched.generation = watched.events().generation();
        watched
    }

    fn events(&self) -> &crate::notify::Notify {
        if self.follower {
            self.partition.durable_end_events()
        } else {
            self.partition.high_watermark_events()
        }
    }
}

/// How much of `fetched` a read may return within what is left of the response's budget
/// (at least one byte: the first batch goes whole), or `None` when nothing is left.
fn partition_max(fetched: &FetchPartition, budget: usize) -> Option<usize> {
    (budget > 0).then(|| {
        (fetched.partition_max_bytes.max(0) as usize)
            .min(budget)
            .max(1)
    })
}

/// One pass over the request's partitions.
struct Read {
    topics: Vec<FetchableTopicResponse>,
    records: RecordsByPartition,
    bytes: usize,
    any_error: bool,
    /// The partitions read, each with the notification that brings it new data.
    watched: Vec<Watched>,
}

/// Who sends a fetch: a follower (its broker id and, from v15, its broker epoch, -1 when
/// not given) or a consumer (`None`).
fn follower_of(context: &RequestContext, request: &FetchRequest) -> Option<FollowerFetch> {
    let (id, epoch) = if context.version >= REPLICA_STATE_VERSION {
        (
            request.replica_state.replica_id.0,
            request.replica_state.replica_epoch,
        )
    } else {
        (request.replica_id.0, -1)
    };
    (id >= 0).then_some(FollowerFetch {
        broker: crate::partition::BrokerId(id),
        broker_epoch: epoch,
    })
}

/// The request a partition is read for, and who asks.
#[derive(Clone, Copy)]
struct Asked<'a> {
    context: &'a RequestContext,
    request: &'a FetchRequest,
    follower: Option<FollowerFetch>,
}

/// A follower's identity in its fetch.
#[derive(Clone, Copy, Debug)]
struct FollowerFetch {
    broker: crate::partition::BrokerId,
    /// Its broker epoch (Fetch v15+), or -1.
    broker_epoch: i64,
}

/// The name of a requested topic: from v13 its id's, `None` for an id this broker does not
/// know.
fn topic_name(
    image: &crate::metadata::image::MetadataImage,
    context: &RequestContext,
    topic: &kafka_protocol::messages::fetch_request::FetchTopic,
) -> Option<kafka_protocol::messages::TopicName> {
    if context.version < TOPIC_IDS_VERSION {
        return Some(topic.topic.clone());
    }
    image.topic_by_id(topic.topic_id).map(|found| {
        kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_string(
            found.name.clone(),
        ))
    })
}

/// Per requested topic, whether the authorizer refuses it (empty without an authorizer): a
/// consumer needs READ on the topic, a follower CLUSTER_ACTION on the cluster. Checked once
/// per request, not per long-poll round.
fn refused_topics(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: &FetchRequest,
    follower: Option<FollowerFetch>,
) -> Vec<bool> {
    let access = Access::new(shard, context);
    if !access.enabled() {
        return Vec::new();
    }
    if follower.is_some() {
        let refused = !access.cluster(AclOperation::ClusterAction);
        return vec![refused; request.topics.len()];
    }
    let image = shard.image();
    request
        .topics
        .iter()
        .map(|topic| {
            topic_name(&image, context, topic)
                .is_some_and(|name| !access.topic(&name.0, AclOperation::Read))
        })
        .collect()
}

async fn read_all(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: &FetchRequest,
    follower: Option<FollowerFetch>,
    refused: &[bool],
) -> Read {
    // Kafka's rule: the response holds at most the smaller of the client's max_bytes and the
    // broker's fetch.max.bytes, except that the first batch found is always sent whole
    // (KIP-74), so a max_bytes of 0 gets exactly one batch.
    let max_bytes = (request.max_bytes.max(0) as usize).min(shard.node.config.fetch_max_bytes);
    let mut read = Read {
        topics: Vec::with_capacity(request.topics.len()),
        records: Vec::with_capacity(request.topics.len()),
        bytes: 0,
        any_error: false,
        watched: Vec::new(),
    };
    let image = shard.image();
    let mut seen = std::collections::HashSet::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        let mut topic_records = Vec::with_capacity(topic.partitions.len());
        let name = topic_name(&image, context, topic);
        let authorized = refused.get(topic_index) != Some(&true);
        for partition in &topic.partitions {
            let (data, records) = if !authorized {
                (
                    refused_as(partition.partition, ResponseError::TopicAuthorizationFailed),
                    None,
                )
            } else if let Some(name) = name
                .as_ref()
                .filter(|name| seen.insert((name.0.clone(), partition.partition)))
            {
                let budget = match max_bytes.saturating_sub(read.bytes) {
                    0 if read.bytes == 0 => 1,
                    budget => budget,
                };
                match read_partition(
                    shard,
                    Asked {
                        context,
                        request,
                        follower,
                    },
                    &name.0,
                    partition,
                    budget,
                    &mut read.watched,
                )
                .await
                {
                    Ok((data, records)) => (data, Some(records)),
                    Err(data) => (data, None),
                }
            } else if name.is_some() {
                // A partition named twice would be read (and held in memory) twice: refused.
                (
                    refused_as(partition.partition, ResponseError::InvalidRequest),
                    None,
                )
            } else {
                (
                    refused_as(partition.partition, ResponseError::UnknownTopicId),
                    None,
                )
            };
            read.bytes += records.as_ref().map_or(0, Records::len);
            // A diverging follower is answered at once too: it truncates before anything else.
            // So is a consumer sent to another replica.
            read.any_error |= data.error_code != 0
                || data.diverging_epoch.end_offset >= 0
                || data.preferred_read_replica.0 >= 0;
            partitions.push(data);
            topic_records.push(records.map(FetchedRecords));
        }
        read.records.push(topic_records);
        read.topics.push(
            FetchableTopicResponse::default()
                .with_topic(name.unwrap_or_else(|| topic.topic.clone()))
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    read
}

/// The answer for a partition refused before it is looked up: named more than once
/// (INVALID_REQUEST), of a topic id this broker does not know (UNKNOWN_TOPIC_ID), or not
/// authorized (TOPIC_AUTHORIZATION_FAILED).
fn refused_as(index: i32, error: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
}

/// The partition's fields and records, or the fields with an error code (records null).
async fn read_partition(
    shard: &Rc<Shard>,
    asked: Asked<'_>,
    topic: &str,
    fetched: &FetchPartition,
    budget: usize,
    watched: &mut Vec<Watched>,
) -> Result<(PartitionData, Records), PartitionData> {
    let Asked {
        context,
        request,
        follower,
    } = asked;
    let index = fetched.partition;
    let data = PartitionData::default()
        .with_partition_index(index)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_aborted_transactions((request.isolation_level == READ_COMMITTED).then(Vec::new));
    let refused = |data: PartitionData, error| {
        data.with_error_code(partition_error_code(&error, context.version))
    };
    // Consumers that speak Fetch v11+ may read from a follower (KIP-392), as Kafka lets
    // them whatever its replica selector; older ones and followers read from the leader.
    let consumer_reads_anywhere = context.version >= 11 && follower.is_none();
    let found = if consumer_reads_anywhere {
        shard
            .partitions
            .readable(topic, index, fetched.current_leader_epoch)
            .await
    } else {
        shard
            .partitions
            .leader(topic, index, fetched.current_leader_epoch)
            .await
    };
    let partition = match found {
        Ok(partition) => partition,
        Err(error) => return Err(refused(data, error)),
    };
    if consumer_reads_anywhere && partition.is_leader() {
        if let Some(replica) = closer_replica(shard, topic, index, &request.rack_id) {
            // The consumer is sent there: no records, answered at once.
            let data = data
                .with_high_watermark(partition.high_watermark().0)
                .with_last_stable_offset(partition.last_stable_offset().0)
                .with_log_start_offset(partition.log_start_offset().0)
                .with_preferred_read_replica(BrokerId(replica.0));
            return Ok((data, Records::default()));
        }
    }
    if let Some(follower) = follower {
        return read_for_follower(shard, follower, &partition, fetched, data, budget, watched)
            .await
            .map_err(|(data, error)| refused(data, error));
    }
    watched.push(Watched::new(&partition, false));
    let data = data
        .with_high_watermark(partition.high_watermark().0)
        .with_last_stable_offset(partition.last_stable_offset().0)
        .with_log_start_offset(partition.log_start_offset().0);
    let Some(partition_max) = partition_max(fetched, budget) else {
        return Ok((data, Records::default()));
    };
    // Tail reads come from the shard's tail cache (slices of the chunks the flusher wrote),
    // other reads of the active segment from its file (O_DIRECT, copied once), and reads of
    // sealed segments are file ranges that the connection splices to the socket.
    let isolation = Isolation::from_kafka(request.isolation_level);
    match partition
        .read(
            Offset(fetched.fetch_offset),
            partition_max,
            isolation,
            ReadMode::FileRanges,
        )
        .await
    {
        Ok(records) if request.isolation_level == READ_COMMITTED && !records.is_empty() => {
            let aborted = partition
                .aborted_transactions(Offset(fetched.fetch_offset))
                .into_iter()
                .map(|entry| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(entry.producer_id))
                        .with_first_offset(entry.first_offset.0)
                })
                .collect();
            Ok((data.with_aborted_transactions(Some(aborted)), records))
        }
        Ok(records) => Ok((data, records)),
        Err(error) => Err(refused(data, error)),
    }
}

/// The replica a consumer in `client_rack` should read `topic`-`index` from instead of this
/// leader (Kafka's RackAwareReplicaSelector): none when rack-aware reads are off, the
/// consumer names no rack or shares this leader's; else the first in-sync, unfenced replica
/// in its rack, if any.
fn closer_replica(
    shard: &Rc<Shard>,
    topic: &str,
    index: i32,
    client_rack: &str,
) -> Option<crate::partition::BrokerId> {
    if !shard.node.config.rack_aware_reads || client_rack.is_empty() {
        return None;
    }
    let image = shard.image();
    let me = shard.broker_id();
    let in_rack = |broker: crate::partition::BrokerId| {
        image
            .broker(broker)
            .is_some_and(|found| !found.fenced && found.rack.as_deref() == Some(client_rack))
    };
    if in_rack(me) {
        return None;
    }
    let assignment = image.topic(topic)?.partition(index)?;
    assignment
        .isr
        .iter()
        .copied()
        .find(|broker| *broker != me && in_rack(*broker))
}

/// Whether the fetching follower's broker may join an ISR (Kafka's
/// `Partition.isReplicaIsrEligible`, KIP-903): registered and unfenced in this broker's
/// image, and the fetch either names no broker epoch or the one registered, so a fetch from
/// an earlier incarnation of a restarted broker does not bring it back in.
fn isr_eligible(shard: &Rc<Shard>, fetch: FollowerFetch) -> bool {
    shard.image().broker(fetch.broker).is_some_and(|broker| {
        !broker.fenced && (fetch.broker_epoch == -1 || fetch.broker_epoch == broker.epoch)
    })
}

/// A follower's fetch (Kafka's replica fetch: `replica_id` is its broker id): its position
/// moves the high watermark (and may get it back into the ISR), its log is checked for
/// divergence from this leader's (Fetch v12's `last_fetched_epoch`: the answer then carries
/// the epoch and end offset to truncate to, and no records), and it reads up to this leader's
/// durable end, waking when that advances.
async fn read_for_follower(
    shard: &Rc<Shard>,
    fetch: FollowerFetch,
    partition: &Rc<Partition>,
    fetched: &FetchPartition,
    data: PartitionData,
    budget: usize,
    watched: &mut Vec<Watched>,
) -> Result<(PartitionData, Records), (PartitionData, PartitionError)> {
    let follower = fetch.broker;
    if !partition.has_replica(follower) {
        return Err((data, PartitionError::NotLeaderOrFollower));
    }
    let fetch_offset = Offset(fetched.fetch_offset);
    let data = data.with_log_start_offset(partition.log_start_offset().0);
    if fetched.last_fetched_epoch >= 0 {
        let epoch = crate::partition::LeaderEpoch(fetched.last_fetched_epoch);
        // An epoch older than every one this leader knows cannot be told apart from none on
        // the wire (Kafka's followers read a diverging epoch only when it is >= 0): no
        // divergence, and a follower ahead of this log is told so by OFFSET_OUT_OF_RANGE.
        let diverging = partition
            .end_offset_for_epoch(epoch)
            .and_then(|(ours, end)| (ours != epoch || end < fetch_offset).then_some((ours.0, end)));
        if let Some((epoch, end_offset)) = diverging {
            let data = data
                .with_high_watermark(partition.high_watermark().0)
                .with_last_stable_offset(partition.last_stable_offset().0)
                .with_diverging_epoch(
                    kafka_protocol::messages::fetch_response::EpochEndOffset::default()
                        .with_epoch(epoch)
                        .with_end_offset(end_offset.0),
                );
            return Ok((data, Records::default()));
        }
    }
    if let Some(wanted) = partition.follower_fetched(
        follower,
        fetch_offset,
        isr_eligible(shard, fetch),
        fetch.broker_epoch,
    ) {
        crate::cluster::isr::request_change(shard, partition.clone(), wanted);
    }
    watched.push(Watched::new(partition, true));
    watched.push(Watched::new(partition, false));
    let data = data
        .with_high_watermark(partition.high_watermark().0)
        .with_last_stable_offset(partition.last_stable_offset().0);
    let Some(partition_max) = partition_max(fetched, budget) else {
        return Ok((data, Records::default()));
    };
    match partition
        .read_for_follower(fetch_offset, partition_max, ReadMode::FileRanges)
        .await
    {
        Ok(records) => Ok((data, records)),
        Err(error) => Err((data, error)),
    }
}
