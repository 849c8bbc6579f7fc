//! Connections to secured listeners (SSL, SASL_PLAINTEXT, SASL_SSL), so that a broker can be
//! measured as production clients use it. The client properties are the `spate` CLI's and
//! librdkafka's: `-X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512
//! -X sasl.username=U -X sasl.password=P -X ssl.ca.location=FILE`, or a `--command-config`
//! file of the same lines; parsing them, the rustls configuration and the SASL exchange are
//! `spate_engine::security::client`'s.
//!
//! Blocking connections (admin requests, ListOffsets, consumers) are the net crate's
//! [`Client`] over a rustls stream; the producers' event-driven connections are an
//! [`AsyncStream`], a glommio socket with futures-rustls over it when TLS is on (the
//! library's `ClientStream`, which the broker's own connections to other brokers use too). Encryption
//! runs in the generator's user space either way, so the generator's own ceiling is lower
//! over TLS: check it with `spate-bench sink` before reading a broker's figure.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use glommio::net::TcpStream;
use spate_engine::security::client::{self, ClientSecurity, ClientStream};
use spate_net::client::Client;

use crate::args::CommonArgs;

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
pub type AsyncStream = ClientStream<TcpStream>;

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
    client::secure_stream(socket, &address.to_string(), security()).await
}
