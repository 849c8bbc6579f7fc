//! Connections to brokers, API version negotiation, Metadata, and finding who leads a
//! partition or coordinates a group.

use spate_net::error_code::{
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
};
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use spate_net::client::Client;

use super::error_name;

/// How long to wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take. Longer than the rebalance timeout the consumer asks
/// for, because a JoinGroup is held until the whole group has rejoined.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);
/// The client id in every request header.
pub const CLIENT_ID: &str = "spate-cli";

/// One connection to one broker, and the API versions that broker serves.
pub struct BrokerConnection {
    client: Client,
    address: String,
    /// API key → (min, max) from the broker's ApiVersions response.
    versions: HashMap<i16, (i16, i16)>,
}

impl BrokerConnection {
    /// Connects and asks for the broker's API versions (ApiVersions v0, which every
    /// broker since Kafka 0.10 answers).
    pub fn open(address: &str) -> anyhow::Result<BrokerConnection> {
        let socket_address = resolve(address)?;
        let mut client = Client::connect(socket_address, CONNECT_TIMEOUT)
            .map_err(|error| anyhow!("cannot connect to {address}: {}", io_reason(&error)))?;
        client.set_timeout(REQUEST_TIMEOUT)?;
        client.set_client_id(CLIENT_ID);
        super::security::wrap(&mut client, address)?;
        let response: ApiVersionsResponse = client
            .send(0, &ApiVersionsRequest::default())
            .map_err(|error| {
                anyhow!(
                    "{address} did not answer ApiVersions: {}",
                    io_reason(&error)
                )
            })?;
        if response.error_code != 0 {
            bail!(
                "{address} refused ApiVersions: {}",
                error_name(response.error_code)
            );
        }
        let versions = response
            .api_keys
            .iter()
            .map(|api| (api.api_key, (api.min_version, api.max_version)))
            .collect();
        super::security::authenticate(&mut client, address)?;
        Ok(BrokerConnection {
            client,
            address: address.to_string(),
            versions,
        })
    }

    /// The address this connection was opened to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the broker advertises `key` at all.
    pub fn supports(&self, key: ApiKey) -> bool {
        self.versions.contains_key(&(key as i16))
    }

    /// The highest version of `key` that both we (`ours`) and the broker speak.
    pub fn version(&self, key: ApiKey, ours: RangeInclusive<i16>) -> anyhow::Result<i16> {
        let Some(&(broker_min, broker_max)) = self.versions.get(&(key as i16)) else {
            bail!(
                "the broker at {} does not support {key:?} (API key {})",
                self.address,
                key as i16
            );
        };
        let version = broker_max.min(*ours.end());
        if version < broker_min.max(*ours.start()) {
            bail!(
                "the broker at {} serves {key:?} v{broker_min}-{broker_max}, and this client speaks v{}-{}",
                self.address,
                ours.start(),
                ours.end()
            );
        }
        Ok(version)
    }

    /// Sends a request at `version` and waits for its response.
    pub fn send<T: Request>(&mut self, version: i16, body: &T) -> anyhow::Result<T::Response> {
        self.client.send(version, body).map_err(|error| {
            anyhow!(
                "{} request to {} failed: {}",
                api_name::<T>(),
                self.address,
                io_reason(&error)
            )
        })
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    pub fn send_without_response<T: Request>(
        &mut self,
        version: i16,
        body: &T,
    ) -> anyhow::Result<()> {
        self.client
            .send_without_response(version, body)
            .map_err(|error| {
                anyhow!(
                    "{} request to {} failed: {}",
                    api_name::<T>(),
                    self.address,
                    io_reason(&error)
                )
            })
    }
}

fn api_name<T: Request>() -> String {
    ApiKey::try_from(T::KEY)
        .map(|key| format!("{key:?}"))
        .unwrap_or_else(|_| format!("API {}", T::KEY))
}

fn resolve(address: &str) -> anyhow::Result<SocketAddr> {
    address
        .to_socket_addrs()
        .map_err(|error| {
            anyhow!(
                "cannot resolve {address}: {}",
                strip_os_error(&error.to_string())
            )
        })?
        .next()
        .with_context(|| format!("cannot resolve {address}: no addresses"))
}

/// The innermost cause of an error, without Rust's "(os error N)" suffix: "Connection
/// refused" reads better in a one-line message than the whole chain.
fn io_reason(error: &anyhow::Error) -> String {
    match error
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
    {
        Some(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.kind() == std::io::ErrorKind::TimedOut =>
        {
            "timed out".to_string()
        }
        Some(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the broker closed the connection".to_string()
        }
        Some(io) => strip_os_error(&io.to_string()),
        None => format!("{error:#}"),
    }
}

fn strip_os_error(text: &str) -> String {
    match text.find(" (os error ") {
        Some(position) => text[..position].to_string(),
        None => text.to_string(),
    }
}

/// One partition as Metadata describes it.
#[derive(Clone, Debug)]
pub struct PartitionLayout {
    /// The partition number.
    pub index: i32,
    /// Broker id of the leader, -1 when there is none.
    pub leader: i32,
    /// The leader's epoch, -1 when the broker does not say.
    pub leader_epoch: i32,
    /// Broker ids of the replicas.
    pub replicas: Vec<i32>,
    /// Broker ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// The partition's Metadata error code (0 = none).
    pub error_code: i16,
}

/// One topic as Metadata describes it.
#[derive(Clone, Debug)]
pub struct TopicLayout {
    /// The topic's name.
    pub name: String,
    /// The topic id (nil before Metadata v10 or when the broker has none).
    pub id: uuid::Uuid,
    /// Whether the broker marks it internal (`__consumer_offsets`).
    pub internal: bool,
    /// Partitions in index order.
    pub partitions: Vec<PartitionLayout>,
}

impl TopicLayout {
    /// The leader of `partition`, or an error naming the problem.
    pub fn leader(&self, partition: i32) -> anyhow::Result<i32> {
        let layout = self
            .partitions
            .iter()
            .find(|layout| layout.index == partition)
            .with_context(|| format!("topic {} has no partition {partition}", self.name))?;
        if layout.leader < 0 {
            bail!(
                "partition {}-{partition} has no leader ({})",
                self.name,
                error_name(layout.error_code)
            );
        }
        Ok(layout.leader)
    }

    /// Partition indexes grouped by their leader.
    pub fn by_leader(&self, partitions: &[i32]) -> anyhow::Result<BTreeMap<i32, Vec<i32>>> {
        let mut grouped: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &partition in partitions {
            grouped
                .entry(self.leader(partition)?)
                .or_default()
                .push(partition);
        }
        Ok(grouped)
    }

    /// Every partition index.
    pub fn partition_indexes(&self) -> Vec<i32> {
        self.partitions.iter().map(|layout| layout.index).collect()
    }
}

/// The bootstrap broker plus a connection per broker we have talked to.
pub struct Cluster {
    bootstrap: BrokerConnection,
    /// Broker id → "host:port", from the last Metadata response.
    brokers: BTreeMap<i32, String>,
    connections: HashMap<i32, BrokerConnection>,
}

impl Cluster {
    /// Connects to the first answering address of `--brokers`, with the command's security
    /// settings (which every later connection uses too).
    pub fn connect(connection: &super::ConnectionArgs) -> anyhow::Result<Cluster> {
        super::security::configure(&connection.properties, connection.command_config.as_deref())?;
        let bootstrap = connection.brokers.as_str();
        let mut last_error = anyhow!("no broker address given");
        for address in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match BrokerConnection::open(address) {
                Ok(connection) => {
                    return Ok(Cluster {
                        bootstrap: connection,
                        brokers: BTreeMap::new(),
                        connections: HashMap::new(),
                    })
                }
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// The bootstrap connection, for requests any broker answers.
    pub fn any(&mut self) -> &mut BrokerConnection {
        &mut self.bootstrap
    }

    /// Broker ids and addresses from the last Metadata response.
    pub fn brokers(&self) -> &BTreeMap<i32, String> {
        &self.brokers
    }

    /// A Metadata request for `topics` (all topics when `None`). Remembers the brokers.
    pub fn metadata(&mut self, topics: Option<&[&str]>) -> anyhow::Result<MetadataResponse> {
        let version = self.bootstrap.version(ApiKey::Metadata, 1..=12)?;
        let mut request = MetadataRequest::default().with_topics(topics.map(|names| {
            names
                .iter()
                .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
                .collect()
        }));
        if version >= 4 {
            request = request.with_allow_auto_topic_creation(false);
        }
        let response = self.bootstrap.send(version, &request)?;
        self.brokers = response
            .brokers
            .iter()
            .map(|broker| (broker.node_id.0, format!("{}:{}", broker.host, broker.port)))
            .collect();
        Ok(response)
    }

    /// Every topic's layout, sorted by name.
    pub fn topics(&mut self) -> anyhow::Result<Vec<TopicLayout>> {
        let response = self.metadata(None)?;
        let mut topics: Vec<TopicLayout> = response.topics.iter().map(layout_of).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// One topic's layout; fails when the topic does not exist.
    pub fn topic(&mut self, name: &str) -> anyhow::Result<TopicLayout> {
        let response = self.metadata(Some(&[name]))?;
        let topic = response
            .topics
            .iter()
            .find(|topic| topic.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            .with_context(|| format!("the broker did not describe topic {name}"))?;
        match topic.error_code {
            0 => Ok(layout_of(topic)),
            3 => bail!("topic {name} does not exist"),
            code => bail!("topic {name}: {}", error_name(code)),
        }
    }

    /// The connection to broker `node_id`, opened on first use.
    pub fn broker(&mut self, node_id: i32) -> anyhow::Result<&mut BrokerConnection> {
        if !self.connections.contains_key(&node_id) {
            if !self.brokers.contains_key(&node_id) {
                self.metadata(Some(&[]))?;
            }
            let address = self
                .brokers
                .get(&node_id)
                .with_context(|| format!("Metadata names no broker {node_id}"))?
                .clone();
            self.connections
                .insert(node_id, BrokerConnection::open(&address)?);
        }
        Ok(self.connections.get_mut(&node_id).expect("inserted above"))
    }

    /// Forgets a connection that failed, so the next use reconnects.
    pub fn drop_broker(&mut self, node_id: i32) {
        self.connections.remove(&node_id);
    }

    /// The id and address of `group`'s coordinator (FindCoordinator), retrying while the
    /// coordinator is still loading.
    pub fn find_coordinator(&mut self, group: &str) -> anyhow::Result<(i32, String)> {
        self.find_coordinator_of(group, KeyType::Group)
    }

    /// The id and address of the coordinator of a group or transactional id.
    pub fn find_coordinator_of(
        &mut self,
        key: &str,
        key_type: KeyType,
    ) -> anyhow::Result<(i32, String)> {
        let lowest = match key_type {
            KeyType::Group => 0,
            // Key types came with v1.
            KeyType::Transaction => 1,
        };
        let version = self
            .bootstrap
            .version(ApiKey::FindCoordinator, lowest..=6)?;
        let what = match key_type {
            KeyType::Group => "group",
            KeyType::Transaction => "transactional id",
        };
        for attempt in 0.. {
            let request = if version >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![str_bytes(key)])
            } else {
                FindCoordinatorRequest::default().with_key(str_bytes(key))
            }
            .with_key_type(key_type as i8);
            let response = self.bootstrap.send(version, &request)?;
            let (code, message, node_id, host, port) = match response.coordinators.first() {
                Some(found) if version >= 4 => (
                    found.error_code,
                    found.error_message.clone(),
                    found.node_id.0,
                    found.host.to_string(),
                    found.port,
                ),
                _ => (
                    response.error_code,
                    response.error_message.clone(),
                    response.node_id.0,
                    response.host.to_string(),
                    response.port,
                ),
            };
            let retriable = [
                COORDINATOR_NOT_AVAILABLE,
                COORDINATOR_LOAD_IN_PROGRESS,
                NOT_COORDINATOR,
            ];
            if retriable.contains(&code) && attempt < 20 {
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
            super::check_error(code, message.as_deref(), || {
                format!("cannot find the coordinator of {what} {key}")
            })?;
            return Ok((node_id, format!("{host}:{port}")));
        }
        unreachable!("the loop returns")
    }

    /// The connection to `group`'s coordinator.
    pub fn coordinator(&mut self, group: &str) -> anyhow::Result<&mut BrokerConnection> {
        self.coordinator_of(group, KeyType::Group)
    }

    /// The connection to the coordinator of a group or transactional id.
    pub fn coordinator_of(
        &mut self,
        key: &str,
        key_type: KeyType,
    ) -> anyhow::Result<&mut BrokerConnection> {
        let (node_id, address) = self.find_coordinator_of(key, key_type)?;
        self.brokers.entry(node_id).or_insert(address);
        self.broker(node_id)
    }
}

fn layout_of(
    topic: &kafka_protocol::messages::metadata_response::MetadataResponseTopic,
) -> TopicLayout {
    let mut partitions: Vec<PartitionLayout> = topic
        .partitions
        .iter()
        .map(|partition| PartitionLayout {
            index: partition.partition_index,
            leader: partition.leader_id.0,
            leader_epoch: partition.leader_epoch,
            replicas: partition.replica_nodes.iter().map(|id| id.0).collect(),
            isr: partition.isr_nodes.iter().map(|id| id.0).collect(),
            error_code: partition.error_code,
        })
        .collect();
    partitions.sort_by_key(|partition| partition.index);
    TopicLayout {
        name: topic
            .name
            .as_ref()
            .map(|name| name.0.to_string())
            .unwrap_or_default(),
        id: topic.topic_id,
        internal: topic.is_internal,
        partitions,
    }
}

/// FindCoordinator's key types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// A consumer group.
    Group = 0,
    /// A transactional id.
    Transaction = 1,
}

/// A `TopicName` from a `&str`.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

/// A `StrBytes` from a `&str`.
pub fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_error_suffix_is_dropped() {
        assert_eq!(
            strip_os_error("Connection refused (os error 111)"),
            "Connection refused"
        );
        assert_eq!(strip_os_error("timed out"), "timed out");
    }
}
