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
use kafka_protocol::ResponseError;

use spate_storage::{ReadMode, Records};

use super::errors::storage_error_code;
use super::{fetch_response, ApiSpec, RequestContext};
use crate::connection::Frame;
use crate::shard::Shard;

/// Served versions: 13+ identify topics by id, which clients use only if we offer it.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::Fetch, 4, 12);

/// Longest long poll we honour, whatever the client asks, so a shutdown is never held up.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);
/// isolation_level value for read_committed.
const READ_COMMITTED: i8 = 1;

/// Answers once `min_bytes` are available, an error occurs, or `max_wait_ms` passes, with
/// the records as pieces of the response frame (see `fetch_response`).
pub async fn handle(shard: &Rc<Shard>, context: &RequestContext, request: FetchRequest) -> Frame {
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        // Taken before reading, so data that becomes visible while we read wakes us.
        let data_arrived = shard.data_arrived.notified();
        let (topics, records, bytes, any_error) = read_all(shard, context, &request).await;
        let now = Instant::now();
        if bytes >= min_bytes || any_error || now >= deadline {
            let response = FetchResponse::default()
                .with_session_id(0)
                .with_responses(topics);
            for records in records.iter().flatten().flatten() {
                shard.stats().fetch_records(records);
            }
            return fetch_response::encode(
                context.version,
                context.correlation_id,
                &response,
                records,
            );
        }
        futures_lite::future::or(data_arrived, async {
            glommio::timer::sleep(deadline - now).await;
        })
        .await;
    }
}

/// Per topic and partition of a response, the records read for it.
type RecordsByPartition = Vec<Vec<Option<Records>>>;

async fn read_all(
    shard: &Shard,
    context: &RequestContext,
    request: &FetchRequest,
) -> (Vec<FetchableTopicResponse>, RecordsByPartition, usize, bool) {
    let max_bytes = if request.max_bytes <= 0 {
        usize::MAX
    } else {
        request.max_bytes as usize
    };
    let mut total_bytes = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut all_records = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        let mut topic_records = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let budget = max_bytes.saturating_sub(total_bytes);
            let (data, records) =
                match read_partition(shard, context, request, &topic.topic.0, partition, budget)
                    .await
                {
                    Ok((data, records)) => (data, Some(records)),
                    Err(data) => (data, None),
                };
            total_bytes += records.as_ref().map_or(0, Records::len);
            any_error |= data.error_code != 0;
            partitions.push(data);
            topic_records.push(records);
        }
        all_records.push(topic_records);
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    (topics, all_records, total_bytes, any_error)
}

/// The partition's fields and records, or the fields with an error code (records null).
async fn read_partition(
    shard: &Shard,
    context: &RequestContext,
    request: &FetchRequest,
    topic_name: &str,
    partition: &FetchPartition,
    budget: usize,
) -> Result<(PartitionData, Records), PartitionData> {
    let index = partition.partition;
    let mut data = PartitionData::default()
        .with_partition_index(index)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_aborted_transactions((request.isolation_level == READ_COMMITTED).then(Vec::new));
    let catalog = shard.catalog();
    let Some(topic) = catalog
        .topic(topic_name)
        .filter(|topic| (0..topic.partitions).contains(&index))
    else {
        return Err(data.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
    };
    if !shard.owns(topic_name, index) {
        return Err(data.with_error_code(ResponseError::NotLeaderOrFollower.code()));
    }
    if let Err(code) =
        super::offset_for_leader_epoch::check_leader_epoch(partition.current_leader_epoch)
    {
        return Err(data.with_error_code(code));
    }
    let log = match shard.log(topic, index).await {
        Ok(log) => log,
        Err(error) => return Err(data.with_error_code(storage_error_code(&error, context.version))),
    };
    let high_watermark = log.high_watermark().0;
    data = data
        .with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(log.log_start_offset().0);
    if budget == 0 {
        return Ok((data, Records::default()));
    }
    let partition_max = (partition.partition_max_bytes.max(0) as usize)
        .min(budget)
        .max(1);
    // Tail reads come from the shard's tail cache (slices of the chunks the flusher wrote),
    // other reads of the active segment from its file (O_DIRECT, copied once), and reads of
    // sealed segments are file ranges that the connection splices to the socket.
    match log
        .read_records(
            spate_storage::Offset(partition.fetch_offset),
            partition_max,
            ReadMode::FileRanges,
        )
        .await
    {
        Ok(records) => Ok((data, records)),
        Err(error) => Err(data.with_error_code(storage_error_code(&error, context.version))),
    }
}
