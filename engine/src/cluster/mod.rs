//! The replicated cluster (issue 15), in progress.
//!
//! A tour:
//! - [`config`]: `--controller-quorum-voters` and the flags around it.
//! - [`raft`]: the controller quorum on openraft (the only module that names it): the log
//!   store, the metadata state machine, the network, and the [`raft::quorum::Quorum`] facade.
//! - [`member`]: this node's member, started on the controller's shard (shard 0); the node's
//!   registration (`StartNode`) and heartbeats.
//! - [`publisher`]: the images the member applies, handed to the node's shards in order.
//! - [`forwarding`]: controller calls from a node whose member does not lead, to the leader's
//!   node.
//! - [`status`]: the quorum as DescribeQuorum and `spate cluster info` show it.
//! - [`fetcher`]: a follower shard's fetch sessions, one per leader broker it copies from.
//! - [`isr`]: the ISR changes a leader asks of the controller (AlterPartition).
//!
//! The controller itself is `metadata::controller_task`, over the quorum's log instead of the
//! local journal. `README.md` here holds the plan and what is left.

pub mod config;
pub mod fetcher;
pub mod forwarding;
pub mod isr;
pub mod member;
pub mod publisher;
pub mod raft;
pub mod status;

/// A connection from this node's brokers to another broker (see [`connect`]).
pub type PeerConnection = spate_net::async_client::BrokerConnection<PeerStream>;

/// What a [`PeerConnection`] runs over: the socket, or TLS over it.
pub type PeerStream = crate::security::client::ClientStream<glommio::net::TcpStream>;

/// Why [`connect`] could not open a connection.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    /// The broker refused this broker's TLS handshake or SASL login
    /// (`security::client::Refused`): its inter-broker settings need fixing. Otherwise it
    /// could not be reached, or the connection broke, which is routine while a node is down.
    pub refused: bool,
    message: String,
}

impl ConnectError {
    fn unreachable(message: impl Into<String>) -> ConnectError {
        ConnectError {
            refused: false,
            message: message.into(),
        }
    }
}

/// A Kafka connection from this shard to another broker (`host:port` on the inter-broker
/// listener, this node's or another's), as a follower's fetcher or a coordinator measuring
/// lag opens it: 5 s to connect and log in, 10 s per request, responses up to
/// `max_response_bytes`; TLS and the SASL login as `--inter-broker-listener-name` and the
/// inter-broker credentials say (`security::inter_broker`).
pub async fn connect(
    security: &crate::security::client::ClientSecurity,
    address: &str,
    client_id: &str,
    max_response_bytes: usize,
) -> Result<PeerConnection, ConnectError> {
    use std::time::Duration;
    let connecting = async {
        let socket = glommio::net::TcpStream::connect(address)
            .await
            .map_err(|error| ConnectError::unreachable(error.to_string()))?;
        let _ = socket.set_nodelay(true);
        crate::security::client::secure_stream(socket, address, security)
            .await
            .map_err(|error| ConnectError {
                refused: crate::security::client::is_refusal(&error),
                message: format!("{error:#}"),
            })
    };
    let timeout = async {
        glommio::timer::sleep(Duration::from_secs(5)).await;
        Err(ConnectError::unreachable("connect timed out"))
    };
    let stream = futures_lite::future::or(connecting, timeout).await?;
    let options = spate_net::async_client::ClientOptions {
        client_id: client_id.into(),
        request_timeout: Duration::from_secs(10),
        max_response_bytes,
        sleep: std::rc::Rc::new(|duration| Box::pin(glommio::timer::sleep(duration))),
    };
    spate_net::async_client::BrokerConnection::start(stream, address.to_string(), options)
        .await
        .map_err(|error| ConnectError::unreachable(error.to_string()))
}
