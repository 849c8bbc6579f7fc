//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch, which consumers use to
//! detect log truncation. A single node has one leader epoch ([`crate::LEADER_EPOCH`]) for
//! every partition, whose end is the log end offset.

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::errors::storage_error_code;
use super::{ApiSpec, RequestContext};
use crate::shard::Shard;
use crate::LEADER_EPOCH;

/// Served versions (librdkafka sends exactly v2).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::OffsetForLeaderEpoch, 2, 4);

/// Kafka's "no such epoch" answer.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// Checks a client's `current_leader_epoch` (-1 means the client does not know it).
pub fn check_leader_epoch(current_leader_epoch: i32) -> Result<(), i16> {
    match current_leader_epoch {
        epoch if epoch < 0 || epoch == LEADER_EPOCH => Ok(()),
        epoch if epoch > LEADER_EPOCH => Err(ResponseError::UnknownLeaderEpoch.code()),
        _ => Err(ResponseError::FencedLeaderEpoch.code()),
    }
}

/// Answers each partition with the end offset of the requested epoch.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let catalog = shard.catalog();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic_request in request.topics {
        let mut partitions = Vec::with_capacity(topic_request.partitions.len());
        for partition in topic_request.partitions {
            let index = partition.partition;
            let answer = EpochEndOffset::default()
                .with_partition(index)
                .with_leader_epoch(UNDEFINED_EPOCH)
                .with_end_offset(UNDEFINED_EPOCH_OFFSET);
            let topic = catalog
                .topic(&topic_request.topic.0)
                .filter(|topic| (0..topic.partitions).contains(&index));
            let answer = match topic {
                None => answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                Some(_) if !shard.owns(&topic_request.topic.0, index) => {
                    answer.with_error_code(ResponseError::NotLeaderOrFollower.code())
                }
                Some(topic) => match check_leader_epoch(partition.current_leader_epoch) {
                    Err(code) => answer.with_error_code(code),
                    // Epochs other than ours never existed here.
                    Ok(()) if partition.leader_epoch != LEADER_EPOCH => answer,
                    Ok(()) => match shard.log(topic, index).await {
                        Ok(log) => answer
                            .with_leader_epoch(LEADER_EPOCH)
                            .with_end_offset(log.log_end_offset().0),
                        Err(error) => {
                            answer.with_error_code(storage_error_code(&error, context.version))
                        }
                    },
                },
            };
            partitions.push(answer);
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic_request.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
