//! ListOffsets (key 2): earliest, latest, by timestamp, and max timestamp.
//!
//! Earliest and latest come from the log's offsets. Timestamp look-ups scan batch headers
//! from the start of the log and decode only the one batch that holds the answer; the time
//! index of the log-lifecycle work will replace the scan.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use spate_storage::{PartitionLog, StorageError};

use super::errors::storage_error_code;
use super::{ApiSpec, RequestContext};
use crate::log_scan::scan_batches;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::ListOffsets, 1, 7);

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// Answers each partition.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let catalog = shard.catalog();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic_request in request.topics {
        let mut partitions = Vec::with_capacity(topic_request.partitions.len());
        for partition in topic_request.partitions {
            let index = partition.partition_index;
            let answer = ListOffsetsPartitionResponse::default()
                .with_partition_index(index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let topic = catalog
                .topic(&topic_request.name.0)
                .filter(|topic| (0..topic.partitions).contains(&index));
            let answer = match topic {
                None => answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                Some(_) if !shard.owns(&topic_request.name.0, index) => {
                    answer.with_error_code(ResponseError::NotLeaderOrFollower.code())
                }
                Some(topic) => match super::offset_for_leader_epoch::check_leader_epoch(
                    partition.current_leader_epoch,
                ) {
                    Err(code) => answer.with_error_code(code),
                    Ok(()) => {
                        let result = match shard.log(topic, index).await {
                            Ok(log) => lookup(&log, partition.timestamp).await,
                            Err(error) => Err(error),
                        };
                        match result {
                            Ok(Some((offset, timestamp))) => answer
                                .with_offset(offset)
                                .with_timestamp(timestamp)
                                // The codec refuses a non-default epoch below v4, where the
                                // field does not exist.
                                .with_leader_epoch(if context.version >= 4 {
                                    crate::LEADER_EPOCH
                                } else {
                                    -1
                                }),
                            Ok(None) => answer,
                            Err(error) => {
                                answer.with_error_code(storage_error_code(&error, context.version))
                            }
                        }
                    }
                },
            };
            partitions.push(answer);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic_request.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The (offset, timestamp) answer for one partition, or `None` when no record qualifies.
async fn lookup(log: &PartitionLog, timestamp: i64) -> Result<Option<(i64, i64)>, StorageError> {
    match timestamp {
        // No transactions yet: the last stable offset is the high watermark.
        LATEST => Ok(Some((log.high_watermark().0, -1))),
        EARLIEST => Ok(Some((log.log_start_offset().0, -1))),
        MAX_TIMESTAMP => {
            let mut best: Option<(i64, bytes::Bytes)> = None;
            scan_batches(log, |max_timestamp, batch| {
                if best.as_ref().is_none_or(|(time, _)| max_timestamp > *time) {
                    best = Some((max_timestamp, batch.clone()));
                }
                false
            })
            .await?;
            Ok(best
                .and_then(|(max_timestamp, batch)| first_record_at_or_after(batch, max_timestamp)))
        }
        target if target >= 0 => {
            let mut found = None;
            scan_batches(log, |max_timestamp, batch| {
                if max_timestamp >= target {
                    found = Some(batch.clone());
                }
                found.is_some()
            })
            .await?;
            Ok(found.and_then(|batch| first_record_at_or_after(batch, target)))
        }
        _ => Ok(None),
    }
}

/// The first record of a stored batch whose timestamp is at least `target`.
fn first_record_at_or_after(mut batch: bytes::Bytes, target: i64) -> Option<(i64, i64)> {
    let records = RecordBatchDecoder::decode(&mut batch).ok()?;
    records
        .records
        .iter()
        .find(|record| record.timestamp >= target)
        .map(|record| (record.offset, record.timestamp))
}
