//! [`ClusterClient`]: calls routed to partition leaders, from Metadata.

use std::collections::HashMap;
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse,
    OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{BrokerConnection, ClientError, ClientOptions};
use crate::error_code;

/// Versions this client reads and writes, per API: the ranges Spate's broker serves, which
/// Kafka's brokers serve too. Fetch stops at 12: from 13 on, topics go by id.
const METADATA_VERSIONS: RangeInclusive<i16> = 1..=12;
const FETCH_VERSIONS: RangeInclusive<i16> = 4..=12;
const LIST_OFFSETS_VERSIONS: RangeInclusive<i16> = 1..=7;
const OFFSET_FOR_LEADER_EPOCH_VERSIONS: RangeInclusive<i16> = 2..=4;

/// Opens a connection to `host:port` on the caller's runtime.
pub type Connect<S> = Rc<dyn Fn(String) -> Pin<Box<dyn Future<Output = std::io::Result<S>>>>>;

/// Where a fetch of one partition starts.
#[derive(Clone, Copy, Debug)]
pub struct FetchPosition {
    /// The first offset wanted.
    pub offset: i64,
    /// The leader epoch the caller believes current (-1: unknown, not checked).
    pub current_leader_epoch: i32,
    /// The epoch of the last batch the caller holds (-1: none), for a follower's divergence
    /// check (Fetch v12+).
    pub last_fetched_epoch: i32,
}

/// One partition's part of a Fetch response.
#[derive(Clone, Debug)]
pub struct FetchedPartition {
    /// The partition's error code (0: none). Leadership errors have already refreshed the
    /// client's metadata.
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Whole batches from the position (empty when there is nothing new).
    pub records: Bytes,
    /// Fetch v12+: the leader's (epoch, end offset) where the caller's log diverges from it,
    /// if it does: truncate there before fetching again.
    pub diverging_epoch: Option<(i32, i64)>,
}

/// One partition's part of a ListOffsets response.
#[derive(Clone, Copy, Debug)]
pub struct ListedOffset {
    pub error_code: i16,
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
}

/// One partition's part of an OffsetForLeaderEpoch response.
#[derive(Clone, Copy, Debug)]
pub struct EpochEndOffset {
    pub error_code: i16,
    /// The largest epoch at or below the one asked for that the leader knows.
    pub leader_epoch: i32,
    /// The end offset of that epoch (the first offset of the next one, or the log end).
    pub end_offset: i64,
}

/// A partition's leader as the metadata says.
#[derive(Clone, Copy, Debug)]
struct Leadership {
    leader: i32,
    leader_epoch: i32,
}

/// Calls routed to partition leaders.
pub struct ClusterClient<S> {
    bootstrap: Vec<String>,
    connect: Connect<S>,
    options: ClientOptions,
    /// Sent as Fetch's replica id: -1 for a consumer, a broker id for a follower.
    replica_id: i32,
    /// Broker id -> host:port.
    brokers: HashMap<i32, String>,
    leaders: HashMap<(String, i32), Leadership>,
    /// By host:port.
    connections: HashMap<String, BrokerConnection<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClusterClient<S> {
    /// A client that learns the cluster from any of `bootstrap` (host:port each).
    pub fn new(
        bootstrap: Vec<String>,
        connect: Connect<S>,
        options: ClientOptions,
    ) -> ClusterClient<S> {
        ClusterClient {
            bootstrap,
            connect,
            options,
            replica_id: -1,
            brokers: HashMap::new(),
            leaders: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    /// Fetches as the follower `broker_id` rather than as a consumer (Kafka's replica id).
    pub fn with_replica_id(mut self, broker_id: i32) -> ClusterClient<S> {
        self.replica_id = broker_id;
        self
    }

    /// Reads brokers and leaders of `topics` from Metadata, asking a broker already known
    /// and then each bootstrap address, until one answers.
    pub async fn refresh_metadata(&mut self, topics: &[&str]) -> Result<(), ClientError> {
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(
                topics
                    .iter()
                    .map(|name| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                    })
                    .collect(),
            ));
        let mut addresses: Vec<String> = self.brokers.values().cloned().collect();
        addresses.extend(self.bootstrap.iter().cloned());
        let mut last_error = None;
        for address in addresses {
            let answer = match self.connection(&address).await {
                Ok(connection) => connection.call(METADATA_VERSIONS, &request).await,
                Err(error) => Err(error),
            };
            match answer {
                Ok((_, response)) => {
                    self.learn(&response);
                    return Ok(());
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or(ClientError::NoLeader {
            topic: topics.join(","),
            partition: -1,
        }))
    }

    fn learn(&mut self, response: &MetadataResponse) {
        // Metadata lists every live broker: one that left is forgotten.
        self.brokers = response
            .brokers
            .iter()
            .map(|broker| {
                let address = format!("{}:{}", broker.host.as_str(), broker.port);
                (broker.node_id.0, address)
            })
            .collect();
        for topic in &response.topics {
            let Some(name) = &topic.name else { continue };
            if topic.error_code != error_code::NONE {
                // Gone (or not visible): none of its partitions has a leader to go to.
                self.leaders
                    .retain(|(known, _), _| known.as_str() != name.0.as_str());
                continue;
            }
            for partition in &topic.partitions {
                let key = (name.0.to_string(), partition.partition_index);
                if partition.error_code == error_code::NONE && partition.leader_id.0 >= 0 {
                    let leadership = Leadership {
                        leader: partition.leader_id.0,
                        leader_epoch: partition.leader_epoch,
                    };
                    self.leaders.insert(key, leadership);
                } else {
                    self.leaders.remove(&key);
                }
            }
        }
    }

    /// The partition's leader (broker id) and leader epoch, from the metadata (refreshed
    /// once if the partition is not known yet).
    pub async fn leader(&mut self, topic: &str, partition: i32) -> Result<(i32, i32), ClientError> {
        let key = (topic.to_string(), partition);
        if !self.leaders.contains_key(&key) {
            self.refresh_metadata(&[topic]).await?;
        }
        let leadership = self.leaders.get(&key).ok_or(ClientError::NoLeader {
            topic: topic.to_string(),
            partition,
        })?;
        Ok((leadership.leader, leadership.leader_epoch))
    }

    /// The connection to the partition's leader.
    async fn leader_connection(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut BrokerConnection<S>, ClientError> {
        let (leader, _) = self.leader(topic, partition).await?;
        let address = self
            .brokers
            .get(&leader)
            .cloned()
            .ok_or(ClientError::NoLeader {
                topic: topic.to_string(),
                partition,
            })?;
        self.connection(&address).await
    }

    /// The open connection to `address`, or a new one if there is none or it broke.
    async fn connection(&mut self, address: &str) -> Result<&mut BrokerConnection<S>, ClientError> {
        let usable = self
            .connections
            .get(address)
            .is_some_and(|connection| !connection.is_broken());
        if !usable {
            self.connections.remove(address);
            let stream = (self.connect)(address.to_string())
                .await
                .map_err(|source| ClientError::Io {
                    broker: address.to_string(),
                    source,
                })?;
            let connection =
                BrokerConnection::start(stream, address.to_string(), self.options.clone()).await?;
            self.connections.insert(address.to_string(), connection);
        }
        Ok(self
            .connections
            .get_mut(address)
            .expect("inserted or found above"))
    }

    /// After a partition error: if it says the leadership moved, forget the partition's
    /// leader so that the next call looks it up again.
    fn after_partition_error(&mut self, topic: &str, partition: i32, code: i16) {
        let moved = [
            error_code::NOT_LEADER_OR_FOLLOWER,
            error_code::UNKNOWN_TOPIC_OR_PARTITION,
            error_code::FENCED_LEADER_EPOCH,
            error_code::UNKNOWN_LEADER_EPOCH,
        ];
        if moved.contains(&code) {
            self.leaders.remove(&(topic.to_string(), partition));
        }
    }

    /// Fetches one partition from its leader: up to `max_bytes` of whole batches from
    /// `position`, waiting up to `max_wait` for at least one byte.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        position: FetchPosition,
        max_bytes: i32,
        max_wait: Duration,
    ) -> Result<FetchedPartition, ClientError> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(self.replica_id))
            .with_max_wait_ms(max_wait.as_millis().min(i32::MAX as u128) as i32)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(position.current_leader_epoch)
                    .with_fetch_offset(position.offset)
                    .with_last_fetched_epoch(position.last_fetched_epoch)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(max_bytes)])]);
        let connection = self.leader_connection(topic, partition).await?;
        // The broker holds the request up to `max_wait`: that is not a dead broker.
        let (_, response) = connection
            .call_holding(FETCH_VERSIONS, &request, max_wait)
            .await?;
        if response.error_code != error_code::NONE {
            return Err(ClientError::Kafka {
                api: ApiKey::Fetch,
                code: response.error_code,
            });
        }
        let data = response
            .responses
            .into_iter()
            .filter(|answer| answer.topic.0.as_str() == topic)
            .flat_map(|answer| answer.partitions)
            .find(|answer| answer.partition_index == partition)
            .ok_or_else(|| missing(ApiKey::Fetch, topic, partition))?;
        self.after_partition_error(topic, partition, data.error_code);
        Ok(FetchedPartition {
            error_code: data.error_code,
            high_watermark: data.high_watermark,
            last_stable_offset: data.last_stable_offset,
            log_start_offset: data.log_start_offset,
            records: data.records.unwrap_or_default(),
            diverging_epoch: (data.diverging_epoch.epoch >= 0)
                .then_some((data.diverging_epoch.epoch, data.diverging_epoch.end_offset)),
        })
    }

    /// Asks the partition's leader for the offset at `timestamp` (Kafka's -2 earliest, -1
    /// latest, -3 the largest timestamp, or a time in ms).
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<ListedOffset, ClientError> {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(self.replica_id))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)])]);
        let connection = self.leader_connection(topic, partition).await?;
        let (_, response) = connection.call(LIST_OFFSETS_VERSIONS, &request).await?;
        let data = response
            .topics
            .into_iter()
            .filter(|answer| answer.name.0.as_str() == topic)
            .flat_map(|answer| answer.partitions)
            .find(|answer| answer.partition_index == partition)
            .ok_or_else(|| missing(ApiKey::ListOffsets, topic, partition))?;
        self.after_partition_error(topic, partition, data.error_code);
        Ok(ListedOffset {
            error_code: data.error_code,
            offset: data.offset,
            timestamp: data.timestamp,
            leader_epoch: data.leader_epoch,
        })
    }

    /// Asks the partition's leader where `leader_epoch` ended in its log (a follower's
    /// truncation point, KIP-101/279).
    pub async fn offset_for_leader_epoch(
        &mut self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        current_leader_epoch: i32,
    ) -> Result<EpochEndOffset, ClientError> {
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(self.replica_id))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(current_leader_epoch)
                    .with_leader_epoch(leader_epoch)])]);
        let connection = self.leader_connection(topic, partition).await?;
        let (_, response) = connection
            .call(OFFSET_FOR_LEADER_EPOCH_VERSIONS, &request)
            .await?;
        let data = response
            .topics
            .into_iter()
            .filter(|answer| answer.topic.0.as_str() == topic)
            .flat_map(|answer| answer.partitions)
            .find(|answer| answer.partition == partition)
            .ok_or_else(|| missing(ApiKey::OffsetForLeaderEpoch, topic, partition))?;
        self.after_partition_error(topic, partition, data.error_code);
        Ok(EpochEndOffset {
            error_code: data.error_code,
            leader_epoch: data.leader_epoch,
            end_offset: data.end_offset,
        })
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn missing(api: ApiKey, topic: &str, partition: i32) -> ClientError {
    ClientError::Protocol {
        broker: format!("{api:?} response"),
        reason: format!("no answer for {topic}-{partition}"),
    }
}
