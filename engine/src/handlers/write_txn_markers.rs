//! WriteTxnMarkers (key 27): the broker side of ending a transaction. The transaction
//! coordinator sends, for each producer, a commit or abort marker to every partition of the
//! transaction; the leader of each appends it as a control batch (see `spate_storage::txn`),
//! which ends the producer's open transaction there, moves the last stable offset, and for an
//! abort adds an entry to the aborted-transaction index. Each partition is answered once its
//! marker is on every in-sync replica, as an acks=all produce; the coordinator retries a
//! partition that failed (a marker appended twice ends nothing twice: the second finds no
//! open transaction).
//!
//! An inter-broker API: only a principal allowed CLUSTER_ACTION on the cluster may call it
//! (Kafka's check); others get CLUSTER_AUTHORIZATION_FAILED for every partition.
//!
//! Not yet: materialising the offsets of a committed TxnOffsetCommit when the marker lands on
//! a `__consumer_offsets` partition (the group coordinator's side of transactions).

use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ApiKey, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::ResponseError;
use spate_storage::txn::TxnMarker;

use super::errors::partition_error_code;
use super::{ApiSpec, RequestContext};
use crate::partition::{Acks, Appended, Partition, PartitionError};
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions (Kafka 4 serves v1 only).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::WriteTxnMarkers, 1, 1);

/// WriteTxnMarkers carries no leader epoch.
const ANY_LEADER_EPOCH: i32 = -1;
/// How long a marker may wait for its in-sync replicas (Kafka uses the request timeout).
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// A marker appended (or refused with a code), by its place in the answer: (marker, topic,
/// partition).
type Pending = (usize, usize, usize, Result<(Rc<Partition>, Appended), i16>);

/// Appends every marker, then answers each partition once its marker is acknowledged.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let allowed = Access::new(shard, context).cluster(AclOperation::ClusterAction);
    let deadline = Instant::now() + MARKER_TIMEOUT;
    // All markers are appended first, then waited for together: one group commit for all.
    let mut pending: Vec<Pending> = Vec::new();
    let mut markers = Vec::with_capacity(request.markers.len());
    for (marker_index, marker) in request.markers.into_iter().enumerate() {
        let kind = TxnMarker {
            commit: marker.transaction_result,
            coordinator_epoch: marker.coordinator_epoch,
        };
        let mut topics = Vec::with_capacity(marker.topics.len());
        for (topic_index, topic) in marker.topics.into_iter().enumerate() {
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for (partition_index, &index) in topic.partition_indexes.iter().enumerate() {
                partitions
                    .push(WritableTxnMarkerPartitionResult::default().with_partition_index(index));
                let result = if !allowed {
                    Err(ResponseError::ClusterAuthorizationFailed.code())
                } else {
                    append(
                        shard,
                        &topic.name.0,
                        index,
                        marker.producer_id.0,
                        marker.producer_epoch,
                        kind,
                    )
                    .await
                    .map_err(|error| log_refusal(&topic.name.0, index, &error, context))
                };
                pending.push((marker_index, topic_index, partition_index, result));
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    for (marker_index, topic_index, partition_index, result) in pending {
        let code = match result {
            Ok((partition, appended)) => {
                match partition
                    .wait_acknowledged(&appended, Acks::All, deadline)
                    .await
                {
                    Ok(()) => spate_net::error_code::NONE,
                    Err(error) => partition_error_code(&error, context.version),
                }
            }
            Err(code) => code,
        };
        markers[marker_index].topics[topic_index].partitions[partition_index].error_code = code;
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}

/// Appends one marker on the partition's leader here.
async fn append(
    shard: &Shard,
    topic: &str,
    index: i32,
    producer_id: i64,
    producer_epoch: i16,
    marker: TxnMarker,
) -> Result<(Rc<Partition>, Appended), PartitionError> {
    let partition = shard
        .partitions
        .leader(topic, index, ANY_LEADER_EPOCH)
        .await?;
    let appended = partition.append_marker(producer_id, producer_epoch, marker)?;
    Ok((partition, appended))
}

fn log_refusal(
    topic: &str,
    partition: i32,
    error: &PartitionError,
    context: &RequestContext,
) -> i16 {
    tracing::debug!(%topic, partition, %error, "transaction marker refused");
    partition_error_code(error, context.version)
}
