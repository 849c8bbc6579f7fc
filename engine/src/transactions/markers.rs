//! Writing one transaction's markers: a commit or abort marker for the producer to every
//! partition of the transaction, on each partition's leader (Kafka's
//! `TransactionMarkerChannelManager`, one request per leader broker at a time).
//!
//! Partitions this shard leads are written directly (`handlers::write_txn_markers::
//! write_local`); the others get WriteTxnMarkers v1 over an inter-broker connection to their
//! leader (another shard of this node or another node: the same Kafka port either way), kept
//! for the next transaction. A partition whose marker failed with a retriable error (no
//! leader, a leader that moved, an ISR too small, a broken connection) is tried again with a
//! backoff, with the image of that moment, until it is written; one whose topic or partition
//! is gone is dropped (nothing is left to end there), as Kafka does. The caller says when to
//! stop: a coordinator that lost its `__transaction_state` partition leaves the markers to
//! the new coordinator, which writes them again after loading (a marker written twice ends
//! nothing twice).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_storage::txn::TxnMarker;

use crate::partition::BrokerId;
use crate::shard::Shard;

/// Inter-broker connections by address, kept between transactions.
pub type Connections = RefCell<HashMap<String, crate::cluster::PeerConnection>>;

/// WriteTxnMarkers versions this broker sends (Kafka 4 serves v1 only).
const VERSIONS: std::ops::RangeInclusive<i16> = 1..=1;
/// How long a leader may hold the request: its markers wait for the ISR (see the handler).
const HELD: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One transaction's markers to write.
#[derive(Clone, Debug)]
pub struct Markers {
    /// The producer.
    pub producer_id: i64,
    /// Its epoch (bumped already when a timeout or a newer producer aborts).
    pub producer_epoch: i16,
    /// The coordinator's epoch (its partition's leader epoch).
    pub coordinator_epoch: i32,
    /// Commit or abort.
    pub commit: bool,
}

/// Writes the markers to every partition; true once each is written (or gone), false as soon
/// as `keep_going` says to stop.
pub async fn write(
    shard: &Rc<Shard>,
    connections: &Connections,
    markers: &Markers,
    partitions: &BTreeSet<(String, i32)>,
    keep_going: impl Fn() -> bool,
) -> bool {
    let mut remaining = partitions.clone();
    let mut backoff = FIRST_BACKOFF;
    while !remaining.is_empty() {
        if !keep_going() {
            return false;
        }
        let image = shard.image();
        let mut by_leader: BTreeMap<BrokerId, Vec<(String, i32)>> = BTreeMap::new();
        let mut gone = Vec::new();
        for (topic, partition) in &remaining {
            let assignment = image
                .topic(topic)
                .and_then(|image| image.partitions.get(usize::try_from(*partition).ok()?));
            match assignment {
                None => gone.push((topic.clone(), *partition)),
                Some(assignment) if image.is_live(assignment.leader) => by_leader
                    .entry(assignment.leader)
                    .or_default()
                    .push((topic.clone(), *partition)),
                // No leader now: the next round looks again.
                Some(_) => {}
            }
        }
        for partition in gone {
            tracing::info!(topic = %partition.0, partition = partition.1,
                "no transaction marker for a partition that no longer exists");
            remaining.remove(&partition);
        }
        for (leader, partitions) in by_leader {
            let codes = if leader == shard.broker_id() {
                let marker = TxnMarker {
                    commit: markers.commit,
                    coordinator_epoch: markers.coordinator_epoch,
                };
                crate::handlers::write_txn_markers::write_local(
                    shard,
                    markers.producer_id,
                    markers.producer_epoch,
                    marker,
                    &partitions,
                    *VERSIONS.end(),
                )
                .await
            } else {
                send(shard, connections, leader, markers, &partitions).await
            };
            for (partition, code) in partitions.into_iter().zip(codes) {
                if done(&partition, code, markers) {
                    remaining.remove(&partition);
                }
            }
        }
        if !remaining.is_empty() {
            glommio::timer::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    true
}

/// Whether a partition's answer ends its marker: written, or never to be (Kafka's
/// `TransactionMarkerRequestCompletionHandler`).
fn done(partition: &(String, i32), code: i16, markers: &Markers) -> bool {
    let (topic, index) = partition;
    match ResponseError::try_from_code(code) {
        None => true,
        Some(ResponseError::UnknownTopicOrPartition) => {
            tracing::info!(%topic, partition = index, "no transaction marker for a deleted partition");
            true
        }
        // The partition has seen a newer epoch of this producer, or a newer coordinator's
        // marker: this marker is stale and must not be written.
        Some(
            error @ (ResponseError::InvalidProducerEpoch
            | ResponseError::TransactionCoordinatorFenced),
        ) => {
            tracing::warn!(%topic, partition = index, producer_id = markers.producer_id,
                ?error, "transaction marker refused for good; not retried");
            true
        }
        Some(error) => {
            tracing::debug!(%topic, partition = index, ?error, "transaction marker to retry");
            false
        }
    }
}

/// A connection to broker `broker` (kept in `connections`, or opened) and its address;
/// `None` when the broker is unknown or unreachable. The connection is out of the map while
/// in use (no borrow is held across an await): put it back with [`checkin`].
pub async fn checkout(
    shard: &Rc<Shard>,
    connections: &Connections,
    broker: BrokerId,
) -> Option<(String, crate::cluster::PeerConnection)> {
    let image = shard.image();
    let address = image
        .broker(broker)
        .and_then(|broker| shard.node.config.inter_broker.address_of(broker))?;
    let cached = connections.borrow_mut().remove(&address);
    if let Some(open) = cached.filter(|open| !open.is_broken()) {
        return Some((address, open));
    }
    match crate::cluster::connect(
        &shard.node.inter_broker,
        &address,
        "spate-txn-coordinator",
        1 << 20,
    )
    .await
    {
        Ok(connection) => Some((address, connection)),
        Err(error) => {
            tracing::debug!(%address, %error, "cannot reach a broker for transactions");
            None
        }
    }
}

/// Keeps a connection from [`checkout`] for the next request, unless its call failed.
pub fn checkin(
    connections: &Connections,
    address: String,
    connection: crate::cluster::PeerConnection,
    failed: bool,
) {
    if !failed {
        connections.borrow_mut().insert(address, connection);
    }
}

/// WriteTxnMarkers to another broker; one code per partition (a failed request: a retriable
/// code for each).
async fn send(
    shard: &Rc<Shard>,
    connections: &Connections,
    leader: BrokerId,
    markers: &Markers,
    partitions: &[(String, i32)],
) -> Vec<i16> {
    let retry = vec![ResponseError::NotLeaderOrFollower.code(); partitions.len()];
    let Some((address, mut connection)) = checkout(shard, connections, leader).await else {
        return retry;
    };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(markers.producer_id))
            .with_producer_epoch(markers.producer_epoch)
            .with_transaction_result(markers.commit)
            .with_coordinator_epoch(markers.coordinator_epoch)
            .with_topics(
                topics
                    .iter()
                    .map(|(topic, indexes)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partition_indexes(indexes.clone())
                    })
                    .collect(),
            )]);
    let answer = connection.call_holding(VERSIONS, &request, HELD).await;
    checkin(connections, address.clone(), connection, answer.is_err());
    let response = match answer {
        Ok((_, response)) => response,
        Err(error) => {
            tracing::debug!(%address, %error, "WriteTxnMarkers failed; retrying");
            return retry;
        }
    };
    let mut codes: HashMap<(String, i32), i16> = HashMap::new();
    for marker in response.markers {
        for topic in marker.topics {
            for partition in topic.partitions {
                codes.insert(
                    (topic.name.0.to_string(), partition.partition_index),
                    partition.error_code,
                );
            }
        }
    }
    partitions
        .iter()
        .map(|partition| {
            codes
                .get(partition)
                .copied()
                .unwrap_or(ResponseError::UnknownServerError.code())
        })
        .collect()
}
