//! Connections to secured listeners (SSL, SASL_PLAINTEXT, SASL_SSL), so that a broker can be
//! measured as production clients use it. The client properties are the `spate` CLI's and
//! librdkafka's: `-X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512
//! -X sasl.username=U -X sasl.password=P -X ssl.ca.location=FILE`, or a `--command-config`
//! file of the same lines; parsing them, the rustls configuration and the SASL exchange are
//! `spate_engine::security::client`'s.
//!
//! Blocking connections (admin requests, ListOffsets, consumers) are the net crate's
//! [`Client`] over a rustls stream; the producers' event-driven connections are an
//! [`AsyncStream`], a glommio socket with futures-rustls over it when TLS is on. Encryption
//! runs in the generator's user space either way, so the generator's own ceiling is lower
//! over TLS: check it with `spate-bench sink` before reading a broker's figure.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Buf, Bytes};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_rustls::client::TlsStream;
use glommio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use spate_engine::security::client::{self, ClientSecurity, SaslLogin, SASL_VERSION};
use spate_net::client::Client;
use spate_net::codec::encode_client_request;

use crate::args::CommonArgs;
use crate::wire::FRAME_BYTES_MAX;

static SECURITY: OnceLock<ClientSecurity> = OnceLock::new();

/// Sets the run's security from its flags (once per process; later calls keep the first).
pub fn configure(common: &CommonArgs) -> anyhow::Result<()> {
    configure_from(common.command_config.as_deref(), &common.properties)
}

/// [`configure`] from a `--command-config` file and `-X` properties.
pub fn configure_from(command_config: Option<&Path>, properties: &[String]) -> anyhow::Result<()> {
    if SECURITY.get().is_none() {
        let security = ClientSecurity::from_file_and_properties(command_config, properties)?;
        let _ = SECURITY.set(security);
    }
    Ok(())
}

fn security() -> &'static ClientSecurity {
    static PLAINTEXT: OnceLock<ClientSecurity> = OnceLock::new();
    SECURITY
        .get()
        .unwrap_or_else(|| PLAINTEXT.get_or_init(ClientSecurity::default))
}

/// A blocking client to `address`: connected, TLS set up and SASL authenticated as the
/// run's security says; `timeout` bounds the connect and each read and write.
pub fn client(address: &str, timeout: Duration) -> anyhow::Result<Client> {
    let mut client = Client::connect(address, timeout)?;
    let security = security();
    if let Some(tls) = &security.tls {
        client::wrap_tls(&mut client, tls, address)?;
    }
    if let Some(credentials) = &security.sasl {
        client::login(&mut client, credentials, address)?;
    }
    Ok(client)
}

/// An event-driven connection: the socket, or TLS over it.
pub enum AsyncStream {
    /// No TLS.
    Plain(TcpStream),
    /// TLS in user space.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to `address` for a producer: no Nagle, `timeout` on every read and write (a
/// broker that stops answering fails the run instead of hanging it), then TLS and SASL as
/// the run's security says.
pub async fn connect_async(address: SocketAddr, timeout: Duration) -> anyhow::Result<AsyncStream> {
    let socket = TcpStream::connect(address)
        .await
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot connect to {address}"))?;
    socket.set_nodelay(true).map_err(std::io::Error::from)?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(std::io::Error::from)?;
    socket
        .set_write_timeout(Some(timeout))
        .map_err(std::io::Error::from)?;
    let security = security();
    let name = address.to_string();
    let mut stream = match &security.tls {
        None => AsyncStream::Plain(socket),
        Some(tls) => {
            let connector = futures_rustls::TlsConnector::from(tls.clone());
            let tls = connector
                .connect(client::server_name(&name)?, socket)
                .await
                .with_context(|| format!("TLS handshake with {address}"))?;
            AsyncStream::Tls(Box::new(tls))
        }
    };
    if let Some(credentials) = &security.sasl {
        let mut login = SaslLogin::new(credentials, &name);
        let handshake = exchange(&mut stream, 1, &login.handshake()).await?;
        login.handshaken(&handshake)?;
        let mut answer = None;
        let mut correlation_id = 1;
        while let Some(request) = login.next(answer.as_ref())? {
            correlation_id += 1;
            answer = Some(exchange(&mut stream, correlation_id, &request).await?);
        }
    }
    Ok(stream)
}

/// Sends one request at [`SASL_VERSION`] and reads its response, before the connection's
/// pipelined traffic starts.
async fn exchange<T: Request>(
    stream: &mut AsyncStream,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<T::Response> {
    let client_id = StrBytes::from_static_str("spate-bench");
    let frame = encode_client_request(SASL_VERSION, correlation_id, &client_id, body)?;
    stream.write_all(&frame).await?;
    stream.flush().await?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let size = (&prefix[..]).get_i32();
    if !(0..=FRAME_BYTES_MAX as i32).contains(&size) {
        bail!("frame of invalid size {size}");
    }
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body).await?;
    let mut body = Bytes::from(body);
    let api_key = ApiKey::try_from(T::KEY).map_err(|_| anyhow::anyhow!("bad key"))?;
    let header = ResponseHeader::decode(&mut body, api_key.response_header_version(SASL_VERSION))?;
    if header.correlation_id != correlation_id {
        bail!(
            "response for {} instead of {correlation_id}",
            header.correlation_id
        );
    }
    T::Response::decode(&mut body, SASL_VERSION)
}

impl AsyncRead for AsyncStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
        buffer: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            AsyncStream::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            AsyncStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for AsyncStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
        buffer: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            AsyncStream::Plain(stream) => Pin::new(stream).poll_write(context, buffer),
            AsyncStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, buffer),
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            // The socket holds nothing back.
            AsyncStream::Plain(_) => Poll::Ready(Ok(())),
            AsyncStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_close(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            AsyncStream::Plain(stream) => Pin::new(stream).poll_close(context),
            AsyncStream::Tls(stream) => Pin::new(stream.as_mut()).poll_close(context),
        }
    }
}
