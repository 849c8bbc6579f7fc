//! An asynchronous Kafka client for code that runs on a shard: the follower fetcher of a
//! replicated cluster, and anything else a broker asks of another broker.
//!
//! It is runtime-agnostic, as this crate is: the caller gives it a connected stream
//! (`AsyncRead + AsyncWrite`, a glommio `TcpStream` on a shard), a way to sleep (for
//! timeouts), and, for [`ClusterClient`], a way to connect. Nothing blocks a thread.
//!
//! - [`BrokerConnection`] is one connection to one broker: it negotiates API versions with
//!   ApiVersions when it starts, picks for each request the highest version both sides
//!   speak within the range the caller can handle, and sends one request at a time, each
//!   bounded by a timeout. A connection that failed or timed out is marked broken: a
//!   response half-read cannot be resynchronised.
//! - [`ClusterClient`] routes to partition leaders: it learns brokers and leaders from
//!   Metadata, keeps a connection per broker, and offers the calls a follower needs:
//!   [`ClusterClient::fetch`], [`ClusterClient::list_offsets`] and
//!   [`ClusterClient::offset_for_leader_epoch`]. An answer that says the leadership moved
//!   (NOT_LEADER_OR_FOLLOWER, a fenced or unknown epoch, an unknown partition) refreshes the
//!   metadata before it is returned, so the next call goes to the new leader.

mod cluster;

pub use cluster::{
    ClusterClient, Connect, EpochEndOffset, FetchPosition, FetchedPartition, ListedOffset,
};

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};

use crate::codec::encode_client_request;
use crate::frame::{FrameError, FrameReader, Sleep};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed (refused, reset, closed by the broker).
    #[error("connection to {broker} failed: {source}")]
    Io {
        broker: String,
        #[source]
        source: std::io::Error,
    },
    /// The broker's bytes are not a response we can read (a bad frame, a failed decode, a
    /// correlation id that does not match).
    #[error("bad response from {broker}: {reason}")]
    Protocol { broker: String, reason: String },
    /// No answer within the timeout.
    #[error("no response from {broker} within {timeout:?}")]
    Timeout { broker: String, timeout: Duration },
    /// The connection failed earlier; make a new one.
    #[error("the connection to {0} is broken")]
    Broken(String),
    /// The broker speaks no version of the API that we can handle.
    #[error("{broker} serves no version of {api:?} in {ours:?}")]
    UnsupportedVersion {
        broker: String,
        api: ApiKey,
        ours: RangeInclusive<i16>,
    },
    /// The broker answered with a Kafka error code for the whole request or partition.
    #[error("{api:?} failed with error code {code}")]
    Kafka { api: ApiKey, code: i16 },
    /// The cluster's metadata names no leader (or no such broker) for the partition.
    #[error("no leader known for {topic}-{partition}")]
    NoLeader { topic: String, partition: i32 },
}

/// Settings of a connection.
#[derive(Clone)]
pub struct ClientOptions {
    /// The client id in every request header.
    pub client_id: String,
    /// How long a call may wait for its response.
    pub request_timeout: Duration,
    /// The largest response frame accepted (a Fetch response is bounded by its max bytes).
    pub max_response_bytes: usize,
    /// Sleeps on the caller's runtime (glommio's timer on a shard).
    pub sleep: Sleep,
}

/// One connection to one broker, with the API versions it serves.
pub struct BrokerConnection<S> {
    stream: S,
    frames: FrameReader,
    /// For error messages: host:port.
    broker: String,
    options: ClientOptions,
    next_correlation_id: i32,
    /// The broker's (min, max) version per API key.
    versions: HashMap<i16, (i16, i16)>,
    broken: bool,
    client_id: StrBytes,
}

impl<S: AsyncRead + AsyncWrite + Unpin> BrokerConnection<S> {
    /// Takes a connected stream and negotiates API versions (ApiVersions v3, or v0 for a
    /// broker that refuses v3).
    pub async fn start(
        stream: S,
        broker: String,
        options: ClientOptions,
    ) -> Result<BrokerConnection<S>, ClientError> {
        let frames = FrameReader::new(options.max_response_bytes);
        let client_id = StrBytes::from_string(options.client_id.clone());
        let mut connection = BrokerConnection {
            stream,
            frames,
            broker,
            options,
            next_correlation_id: 1,
            versions: HashMap::new(),
            broken: false,
            client_id,
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("spate"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = match connection.send(3, &request).await {
            Ok(response) if response.error_code == 0 => response,
            // KIP-511: a broker that does not speak v3 answers in v0 with its range; a
            // v0 request is understood by every broker.
            Ok(_) | Err(ClientError::Protocol { .. }) => {
                connection.broken = false;
                connection.send(0, &ApiVersionsRequest::default()).await?
            }
            Err(error) => return Err(error),
        };
        if response.error_code != 0 {
            return Err(ClientError::Kafka {
                api: ApiKey::ApiVersions,
                code: response.error_code,
            });
        }
        connection.versions = versions_of(&response);
        Ok(connection)
    }

    /// The broker this connection goes to (host:port).
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// Whether an earlier failure left the connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The highest version of `api` that the broker serves and that lies in `ours`.
    pub fn version_for(&self, api: ApiKey, ours: RangeInclusive<i16>) -> Result<i16, ClientError> {
        let unsupported = || ClientError::UnsupportedVersion {
            broker: self.broker.clone(),
            api,
            ours: ours.clone(),
        };
        let &(min, max) = self.versions.get(&(api as i16)).ok_or_else(unsupported)?;
        let version = max.min(*ours.end());
        if version < min || version < *ours.start() {
            return Err(unsupported());
        }
        Ok(version)
    }

    /// Sends `body` at the highest version both sides speak within `ours`, and waits for
    /// the response; returns it with the version used.
    pub async fn call<T: Request>(
        &mut self,
        ours: RangeInclusive<i16>,
        body: &T,
    ) -> Result<(i16, T::Response), ClientError> {
        self.call_holding(ours, body, Duration::ZERO).await
    }

    /// [`Self::call`] for a request the broker may hold for up to `held` before it answers
    /// (a Fetch's long poll): the timeout is that much longer.
    pub async fn call_holding<T: Request>(
        &mut self,
        ours: RangeInclusive<i16>,
        body: &T,
        held: Duration,
    ) -> Result<(i16, T::Response), ClientError> {
        let api = api_key::<T>();
        let version = self.version_for(api, ours)?;
        let timeout = self.options.request_timeout + held;
        Ok((version, self.send_within(version, body, timeout).await?))
    }

    /// Sends `body` at `version` and waits for its response, within the timeout.
    pub async fn send<T: Request>(
        &mut self,
        version: i16,
        body: &T,
    ) -> Result<T::Response, ClientError> {
        self.send_within(version, body, self.options.request_timeout)
            .await
    }

    async fn send_within<T: Request>(
        &mut self,
        version: i16,
        body: &T,
        timeout: Duration,
    ) -> Result<T::Response, ClientError> {
        if self.broken {
            return Err(ClientError::Broken(self.broker.clone()));
        }
        let sleep = (self.options.sleep)(timeout);
        let broker = self.broker.clone();
        // Until the response is read whole, the connection is in an unknown state.
        self.broken = true;
        let result = futures_lite::future::or(self.exchange(version, body), async move {
            sleep.await;
            Err(ClientError::Timeout { broker, timeout })
        })
        .await;
        self.broken = result.is_err();
        result
    }

    async fn exchange<T: Request>(
        &mut self,
        version: i16,
        body: &T,
    ) -> Result<T::Response, ClientError> {
        let api = api_key::<T>();
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_client_request(version, correlation_id, &self.client_id, body)
            .map_err(|error| self.protocol(error))?;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|source| self.io(source))?;
        // A TLS stream may hold the request's last record until flushed.
        self.stream
            .flush()
            .await
            .map_err(|source| self.io(source))?;
        let mut response = match self.frames.next_frame(&mut self.stream).await {
            Ok(Some(response)) => response,
            Ok(None) => {
                return Err(self.io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)))
            }
            Err(FrameError::Io(source)) => return Err(self.io(source)),
            Err(error) => return Err(self.protocol(error)),
        };
        let header = ResponseHeader::decode(&mut response, api.response_header_version(version))
            .map_err(|error| self.protocol(error))?;
        if header.correlation_id != correlation_id {
            return Err(self.protocol(format!(
                "correlation id {} answers request {correlation_id}",
                header.correlation_id
            )));
        }
        decode_body::<T>(&mut response, version).map_err(|error| self.protocol(error))
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            broker: self.broker.clone(),
            source,
        }
    }

    fn protocol(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Protocol {
            broker: self.broker.clone(),
            reason: format!("{reason:#}"),
        }
    }
}

/// Decodes a response body; bytes left over mean we misread it.
fn decode_body<T: Request>(response: &mut Bytes, version: i16) -> anyhow::Result<T::Response> {
    let body = T::Response::decode(response, version)?;
    anyhow::ensure!(
        response.is_empty(),
        "{} bytes after the response body",
        response.len()
    );
    Ok(body)
}

fn api_key<T: Request>() -> ApiKey {
    ApiKey::try_from(T::KEY).expect("kafka-protocol's requests have known keys")
}

fn versions_of(response: &ApiVersionsResponse) -> HashMap<i16, (i16, i16)> {
    response
        .api_keys
        .iter()
        .map(|api| (api.api_key, (api.min_version, api.max_version)))
        .collect()
}

#[cfg(test)]
mod tests;
