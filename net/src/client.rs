//! A small blocking Kafka client over `std::net::TcpStream` (or TLS over it, given as a
//! [`Transport`] by the caller).
//!
//! It sends one request at a time and waits for its response. That is all the CLI, the
//! engine's integration tests and control-plane tools need; the bench harness will bring
//! its own pipelined, shard-pinned client.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};

use crate::codec::encode_client_request;

/// What a client reads and writes through: the socket itself, or a TLS stream over it.
pub trait Transport: Read + Write + Send {}

impl<T: Read + Write + Send> Transport for T {}

/// A connection to one broker.
pub struct Client {
    /// The socket, for its timeouts.
    socket: TcpStream,
    /// What requests and responses go through.
    stream: Box<dyn Transport>,
    next_correlation_id: i32,
    client_id: StrBytes,
}

impl Client {
    /// Connects with a timeout, and sets the same timeout on reads and writes.
    pub fn connect(address: impl ToSocketAddrs, timeout: Duration) -> anyhow::Result<Client> {
        let address = address
            .to_socket_addrs()?
            .next()
            .context("the broker address resolves to nothing")?;
        let stream = TcpStream::connect_timeout(&address, timeout)
            .with_context(|| format!("cannot connect to {address}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream: Box::new(stream.try_clone()?),
            socket: stream,
            next_correlation_id: 1,
            client_id: StrBytes::from_static_str("spate"),
        })
    }

    /// The connection's socket (to build a TLS stream over a clone of it).
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Sends everything through `transport` from now on (TLS over [`Self::socket`]).
    pub fn set_transport(&mut self, transport: Box<dyn Transport>) {
        self.stream = transport;
    }

    /// The stream requests went through, for a caller that frames its own requests from
    /// now on (a consumer's pipelined fetches) once the connection is set up here.
    pub fn into_transport(self) -> Box<dyn Transport> {
        self.stream
    }

    /// Sends `body` at `version` and waits for its response.
    pub fn send<T: Request>(&mut self, version: i16, body: &T) -> anyhow::Result<T::Response> {
        let api_key = ApiKey::try_from(T::KEY).map_err(|_| anyhow::anyhow!("bad key"))?;
        let correlation_id = self.send_request(version, body)?;
        let mut response = self.read_frame()?;
        let response_header =
            ResponseHeader::decode(&mut response, api_key.response_header_version(version))?;
        if response_header.correlation_id != correlation_id {
            bail!(
                "correlation id mismatch: sent {correlation_id}, got {}",
                response_header.correlation_id
            );
        }
        T::Response::decode(&mut response, version)
    }

    /// Sends `body` at `version` without waiting for a response. Only for requests the
    /// broker answers with silence, which is a Produce with acks=0.
    pub fn send_without_response<T: Request>(
        &mut self,
        version: i16,
        body: &T,
    ) -> anyhow::Result<()> {
        self.send_request(version, body)?;
        Ok(())
    }

    /// Writes the request; returns its correlation id.
    fn send_request<T: Request>(&mut self, version: i16, body: &T) -> anyhow::Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_client_request(version, correlation_id, &self.client_id, body)?;
        self.stream.write_all(&frame)?;
        // A TLS stream may hold the last record until flushed.
        self.stream.flush()?;
        Ok(correlation_id)
    }

    /// Changes how long a read or write may block, for requests the broker may hold for a
    /// while (a JoinGroup waits for the whole group to rejoin).
    pub fn set_timeout(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.socket.set_read_timeout(Some(timeout))?;
        self.socket.set_write_timeout(Some(timeout))?;
        Ok(())
    }

    /// Changes the client id sent in every request header (`spate` by default).
    pub fn set_client_id(&mut self, client_id: &str) {
        self.client_id = StrBytes::from_string(client_id.to_string());
    }

    fn read_frame(&mut self) -> anyhow::Result<Bytes> {
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix)?;
        let size = (&prefix[..]).get_i32();
        if !(0..=1 << 30).contains(&size) {
            bail!("broker sent a frame of invalid size {size}");
        }
        let mut payload = vec![0u8; size as usize];
        self.stream.read_exact(&mut payload)?;
        Ok(Bytes::from(payload))
    }
}
