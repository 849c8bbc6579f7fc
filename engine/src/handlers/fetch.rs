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

use super::errors::storage_error_code;
use super::{ApiSpec, RequestContext};
use crate::shard::Shard;

/// Served versions: 13+ identify topics by id, which clients use only if we offer it.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::Fetch, 4, 12);

/// Longest long poll we honour, whatever the client asks, so a shutdown is never held up.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);
/// isolation_level value for read_committed.
const READ_COMMITTED: i8 = 1;

/// Answers once `min_bytes` are available, an error occurs, or `max_wait_ms` passes.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: FetchRequest,
) -> FetchResponse {
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        // Taken before reading, so data that becomes visible while we read wakes us.
        let data_arrived = shard.data_arrived.notified();
        let (topics, bytes, any_error) = read_all(shard, context, &request).await;
        let now = Instant::now();
        if bytes >= min_bytes || any_error || now >= deadline {
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(topics);
        }
        futures_lite::future::or(data_arrived, async {
            glommio::timer::sleep(deadline - now).await;
        })
        .await;
    }
}

async fn read_all(
    shard: &Shard,
    context: &RequestContext,
    request: &FetchRequest,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let max_bytes = if request.max_bytes <= 0 {
        usize::MAX
    } else {
        request.max_bytes as usize
    };
    let mut total_bytes = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let budget = max_bytes.saturating_sub(total_bytes);
            let data =
                read_partition(shard, context, request, &topic.topic.0, partition, budget).await;
            total_bytes += data.records.as_ref().map_or(0, |records| records.len());
            any_error |= data.error_code != 0;
            partitions.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    (topics, total_bytes, any_error)
}

async fn read_partition(
    shard: &Shard,
    context: &RequestContext,
    request: &FetchRequest,
    topic_name: &str,
    partition: &FetchPartition,
    budget: usize,
) -> PartitionData {
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
        return data.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    if !shard.owns(topic_name, index) {
        return data.with_error_code(ResponseError::NotLeaderOrFollower.code());
    }
    if let Err(code) =
        super::offset_for_leader_epoch::check_leader_epoch(partition.current_leader_epoch)
    {
        return data.with_error_code(code);
    }
    let log = match shard.log(topic, index).await {
        Ok(log) => log,
        Err(error) => return data.with_error_code(storage_error_code(&error, context.version)),
    };
    let high_watermark = log.high_watermark().0;
    data = data
        .with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(log.log_start_offset().0);
    if budget == 0 {
        return data.with_records(Some(bytes::Bytes::new()));
    }
    let partition_max = (partition.partition_max_bytes.max(0) as usize)
        .min(budget)
        .max(1);
    // Tail reads come from the shard's tail cache (slices of the chunks the flusher wrote);
    // the rest from the segment file. Either way the records are copied once, here.
    match log
        .read_records(spate_storage::Offset(partition.fetch_offset), partition_max)
        .await
    {
        Ok(records) => data.with_records(Some(records.into_bytes())),
        Err(error) => data.with_error_code(storage_error_code(&error, context.version)),
    }
}
