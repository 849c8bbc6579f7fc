//! Fetch (key 1): whole stored batches from the requested offsets, below the high
//! watermark, as a long poll that honours `min_bytes` and `max_wait_ms`.
//!
//! Fetch sessions (KIP-227) are declined by always answering `session_id = 0`, so clients
//! keep sending full fetch requests. There are no transactions yet, so the last stable
//! offset equals the high watermark and there are no aborted transactions to report.

use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};

use spate_net::fetch_response;
use spate_net::response::RecordPieces;
use spate_storage::{Offset, ReadMode, Records, RecordsPiece};

use super::errors::partition_error_code;
use super::{ApiSpec, Frame, RequestContext};
use crate::partition::{Isolation, Partition};
use crate::shard::Shard;

/// Served versions: 13+ identify topics by id, which clients use only if we offer it.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::Fetch, 4, 12);

/// Longest long poll we honour, whatever the client asks, so a shutdown is never held up.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);
/// isolation_level value for read_committed.
const READ_COMMITTED: i8 = 1;

/// Answers once `min_bytes` are available, an error occurs, or `max_wait_ms` passes, with
/// the records as pieces of the response frame (see `spate_net::fetch_response`).
pub async fn handle(shard: &Rc<Shard>, context: &RequestContext, request: FetchRequest) -> Frame {
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        let read = read_all(shard, context, &request).await;
        let now = Instant::now();
        if read.bytes >= min_bytes || read.any_error || now >= deadline {
            let response = FetchResponse::default()
                .with_session_id(0)
                .with_responses(read.topics);
            for records in read.records.iter().flatten().flatten() {
                shard.stats().fetch_records(&records.0);
            }
            return fetch_response::encode(
                context.version,
                context.correlation_id,
                &response,
                read.records,
            );
        }
        // Wait for a high watermark of a partition read to advance. The notifications were
        // taken before reading, so data that became visible meanwhile wakes us at once.
        let watched = read
            .watched
            .iter()
            .map(|(partition, generation)| (partition.high_watermark_events(), *generation));
        let changed = crate::notify::any(watched);
        futures_lite::future::or(changed, async {
            glommio::timer::sleep(deadline - now).await;
        })
        .await;
    }
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

/// One pass over the request's partitions.
struct Read {
    topics: Vec<FetchableTopicResponse>,
    records: RecordsByPartition,
    bytes: usize,
    any_error: bool,
    /// The partitions read, each with a notification of its next high watermark advance.
    watched: Vec<(Rc<Partition>, crate::notify::Generation)>,
}

async fn read_all(shard: &Shard, context: &RequestContext, request: &FetchRequest) -> Read {
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
    let mut seen = std::collections::HashSet::new();
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        let mut topic_records = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let (data, records) = if !seen.insert((&*topic.topic.0, partition.partition)) {
                // A partition named twice would be read (and held in memory) twice: refused.
                (repeated(partition.partition), None)
            } else {
                let budget = match max_bytes.saturating_sub(read.bytes) {
                    0 if read.bytes == 0 => 1,
                    budget => budget,
                };
                match read_partition(
                    shard,
                    context,
                    request,
                    &topic.topic.0,
                    partition,
                    budget,
                    &mut read.watched,
                )
                .await
                {
                    Ok((data, records)) => (data, Some(records)),
                    Err(data) => (data, None),
                }
            };
            read.bytes += records.as_ref().map_or(0, Records::len);
            read.any_error |= data.error_code != 0;
            partitions.push(data);
            topic_records.push(records.map(FetchedRecords));
        }
        read.records.push(topic_records);
        read.topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    read
}

/// The answer for a partition the request names more than once.
fn repeated(index: i32) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(kafka_protocol::ResponseError::InvalidRequest.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
}

/// The partition's fields and records, or the fields with an error code (records null).
async fn read_partition(
    shard: &Shard,
    context: &RequestContext,
    request: &FetchRequest,
    topic: &str,
    fetched: &FetchPartition,
    budget: usize,
    watched: &mut Vec<(Rc<Partition>, crate::notify::Generation)>,
) -> Result<(PartitionData, Records), PartitionData> {
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
    let partition = match shard
        .partitions
        .leader(topic, index, fetched.current_leader_epoch)
        .await
    {
        Ok(partition) => partition,
        Err(error) => return Err(refused(data, error)),
    };
    watched.push((
        partition.clone(),
        partition.high_watermark_events().generation(),
    ));
    let data = data
        .with_high_watermark(partition.high_watermark().0)
        .with_last_stable_offset(partition.last_stable_offset().0)
        .with_log_start_offset(partition.log_start_offset().0);
    if budget == 0 {
        return Ok((data, Records::default()));
    }
    let partition_max = (fetched.partition_max_bytes.max(0) as usize)
        .min(budget)
        .max(1);
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
        Ok(records) => Ok((data, records)),
        Err(error) => Err(refused(data, error)),
    }
}
