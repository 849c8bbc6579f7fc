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
//! A marker on a `__consumer_offsets` partition also ends the producer's TxnOffsetCommits
//! held by the group coordinator there: a commit makes them the groups' committed offsets.

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

/// Appends every marker, then answers each partition once its marker is acknowledged.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let allowed = Access::new(shard, context).cluster(AclOperation::ClusterAction);
    let mut markers = Vec::with_capacity(request.markers.len());
    for marker in request.markers {
        let kind = TxnMarker {
            commit: marker.transaction_result,
            coordinator_epoch: marker.coordinator_epoch,
        };
        let partitions: Vec<(String, i32)> = marker
            .topics
            .iter()
            .flat_map(|topic| {
                let name = topic.name.0.to_string();
                topic
                    .partition_indexes
                    .iter()
                    .map(move |&index| (name.clone(), index))
            })
            .collect();
        let mut codes = if allowed {
            write_local(
                shard,
                marker.producer_id.0,
                marker.producer_epoch,
                kind,
                &partitions,
                context.version,
            )
            .await
        } else {
            vec![ResponseError::ClusterAuthorizationFailed.code(); partitions.len()]
        }
        .into_iter();
        let topics = marker
            .topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partition_indexes
                    .iter()
                    .map(|&index| {
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(index)
                            .with_error_code(codes.next().unwrap_or_default())
                    })
                    .collect();
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect();
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}

/// Writes one producer's marker to each of `partitions` that this shard leads and answers
/// each (in order) once it is on every in-sync replica: the handler's work, and what the
/// transaction coordinator does for the partitions it leads itself. All are appended first,
/// then waited for together (one group commit for all). A marker acknowledged on a
/// `__consumer_offsets` partition completes the producer's transactional offset commits
/// there (the group coordinator's side, as Kafka's `scheduleHandleTxnCompletion`).
pub async fn write_local(
    shard: &Rc<Shard>,
    producer_id: i64,
    producer_epoch: i16,
    marker: TxnMarker,
    partitions: &[(String, i32)],
    version: i16,
) -> Vec<i16> {
    let deadline = Instant::now() + MARKER_TIMEOUT;
    let mut pending: Vec<Result<(Rc<Partition>, Appended), i16>> =
        Vec::with_capacity(partitions.len());
    for (topic, index) in partitions {
        pending.push(
            append(shard, topic, *index, producer_id, producer_epoch, marker)
                .await
                .map_err(|error| log_refusal(topic, *index, &error, version)),
        );
    }
    let mut codes = Vec::with_capacity(partitions.len());
    for ((topic, index), result) in partitions.iter().zip(pending) {
        let code = match result {
            Ok((partition, appended)) => {
                match partition
                    .wait_acknowledged(&appended, Acks::All, deadline)
                    .await
                {
                    Ok(()) => {
                        if topic == crate::groups::offsets_topic::TOPIC {
                            shard
                                .groups
                                .complete_txn(*index, producer_id, marker.commit);
                        }
                        spate_net::error_code::NONE
                    }
                    Err(error) => partition_error_code(&error, version),
                }
            }
            Err(code) => code,
        };
        codes.push(code);
    }
    codes
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

fn log_refusal(topic: &str, partition: i32, error: &PartitionError, version: i16) -> i16 {
    tracing::debug!(%topic, partition, %error, "transaction marker refused");
    partition_error_code(error, version)
}
