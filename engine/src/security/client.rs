//! The client side of a secured listener, for Spate's own clients (the `spate` CLI and
//! `spate-bench`): librdkafka-style client properties (`security.protocol=SASL_SSL`,
//! `sasl.mechanism=...`, `ssl.ca.location=...`, as `kcat -X` and Kafka's `--command-config`
//! take them) turned into a rustls client configuration and SASL credentials, and the SASL
//! exchange as a sans-IO [`SaslLogin`] that a blocking or an async client drives.
//!
//! Served: `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), `sasl.mechanism`
//! (or `sasl.mechanisms`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), `sasl.username`,
//! `sasl.password`, Java's `sasl.jaas.config` (its `username="..." password="..."`),
//! `ssl.ca.location` (Java: `ssl.truststore.location` of a PEM file), `ssl.certificate.location`
//! and `ssl.key.location` (a client certificate). Other keys are ignored with one warning.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kafka_protocol::messages::{
    ApiKey, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use spate_net::client::Client;
use spate_net::codec::encode_client_request;
use spate_net::error_code::error_name;

use super::scram::Mechanism;
use super::scram_client::ScramClient;
use super::session::SaslMechanism;
use super::SecurityProtocol;

/// The SaslHandshake and SaslAuthenticate versions clients send (every Kafka since 1.0
/// serves both).
pub const SASL_VERSION: i16 = 1;

/// How a client secures each connection it opens.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// TLS settings, for SSL and SASL_SSL.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// SASL mechanism and credentials, for SASL_PLAINTEXT and SASL_SSL.
    pub sasl: Option<SaslCredentials>,
}

/// Who a client authenticates as, and how (its `Debug` hides the password, so that a
/// configuration that holds one can be logged).
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .field("password", &"[hidden]")
            .finish()
    }
}

impl ClientSecurity {
    /// The settings of `KEY=VALUE` lines (blank lines and `#` comments skipped).
    pub fn from_properties(lines: &[String]) -> anyhow::Result<ClientSecurity> {
        let mut protocol = SecurityProtocol::Plaintext;
        let (mut mechanism, mut user, mut password) = (None, None, None);
        let (mut ca, mut certificate, mut key): (
            Option<PathBuf>,
            Option<PathBuf>,
            Option<PathBuf>,
        ) = (None, None, None);
        for line in lines.iter().map(|line| line.trim()) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .with_context(|| format!("client property {line:?}: expected KEY=VALUE"))?;
            let value = value.trim().to_string();
            match name.trim() {
                "security.protocol" => {
                    protocol = SecurityProtocol::from_name(&value)
                        .with_context(|| format!("security.protocol={value}: unknown protocol"))?
                }
                "sasl.mechanism" | "sasl.mechanisms" => {
                    mechanism = Some(SaslMechanism::from_name(&value).with_context(|| {
                        format!("sasl.mechanism={value}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
                    })?)
                }
                "sasl.username" => user = Some(value),
                "sasl.password" => password = Some(value),
                "sasl.jaas.config" => {
                    user = user.or(jaas_option(&value, "username"));
                    password = password.or(jaas_option(&value, "password"));
                }
                "ssl.ca.location" | "ssl.truststore.location" => ca = Some(value.into()),
                "ssl.certificate.location" => certificate = Some(value.into()),
                "ssl.key.location" => key = Some(value.into()),
                other => eprintln!("spate: ignoring client property {other}"),
            }
        }
        let sasl = if protocol.requires_sasl() {
            let mechanism = mechanism.unwrap_or(SaslMechanism::Scram(Mechanism::ScramSha512));
            match (user, password) {
                (Some(user), Some(password)) => Some(SaslCredentials {
                    mechanism,
                    user,
                    password,
                }),
                _ => bail!("security.protocol={protocol} needs sasl.username and sasl.password"),
            }
        } else {
            None
        };
        let tls = if protocol.is_tls() {
            Some(tls_config(
                ca.as_deref(),
                certificate.as_deref(),
                key.as_deref(),
            )?)
        } else {
            None
        };
        Ok(ClientSecurity { tls, sasl })
    }

    /// The settings of a `--command-config FILE` followed by `-X KEY=VALUE` properties (the
    /// properties win, being read last).
    pub fn from_file_and_properties(
        command_config: Option<&Path>,
        properties: &[String],
    ) -> anyhow::Result<ClientSecurity> {
        let mut lines: Vec<String> = Vec::new();
        if let Some(path) = command_config {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--command-config {}", path.display()))?;
            lines.extend(text.lines().map(str::to_string));
        }
        lines.extend(properties.iter().cloned());
        ClientSecurity::from_properties(&lines)
    }
}

/// The name a TLS client checks the broker's certificate against: the host of
/// `HOST:PORT` (an IP address is checked against the certificate's IP addresses).
pub fn server_name(address: &str) -> anyhow::Result<ServerName<'static>> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .with_context(|| format!("{host} is not a valid TLS server name"))
}

/// Puts TLS under a blocking client just connected to `address` (before its first request).
pub fn wrap_tls(
    client: &mut Client,
    tls: &Arc<rustls::ClientConfig>,
    address: &str,
) -> anyhow::Result<()> {
    let connection = rustls::ClientConnection::new(tls.clone(), server_name(address)?)?;
    let socket = client.socket().try_clone()?;
    client.set_transport(Box::new(rustls::StreamOwned::new(connection, socket)));
    Ok(())
}

/// Runs a [`SaslLogin`] over a blocking client.
pub fn login(
    client: &mut Client,
    credentials: &SaslCredentials,
    address: &str,
) -> anyhow::Result<()> {
    let mut login = SaslLogin::new(credentials, address);
    let handshake = client.send(SASL_VERSION, &login.handshake())?;
    login.handshaken(&handshake)?;
    let mut answer = None;
    while let Some(request) = login.next(answer.as_ref())? {
        answer = Some(client.send(SASL_VERSION, &request)?);
    }
    Ok(())
}

/// An event-driven client connection: the socket, or TLS over it (rustls in user space).
pub enum ClientStream<S> {
    /// No TLS.
    Plain(S),
    /// TLS.
    Tls(Box<futures_rustls::client::TlsStream<S>>),
}

/// The server refused this client's TLS handshake or SASL login: a matter of configuration
/// (credentials, certificates, mechanisms) to fix, not of a server being unreachable.
/// [`secure_stream`] returns it inside its error; see [`is_refusal`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Whether an error of [`secure_stream`] is a [`Refused`].
pub fn is_refusal(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Refused>().is_some()
}

/// Secures an event-driven connection to `address` just opened: TLS, then the SASL login,
/// as `security` says (each request of the login framed here, before the caller's first).
/// A handshake the server's TLS refused (an alert, a certificate it does not trust or that
/// does not name it) or a SASL login it refused is a [`Refused`]; a connection that breaks
/// meanwhile is not.
pub async fn secure_stream<S>(
    socket: S,
    address: &str,
    security: &ClientSecurity,
) -> anyhow::Result<ClientStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = match &security.tls {
        None => ClientStream::Plain(socket),
        Some(tls) => {
            let connector = futures_rustls::TlsConnector::from(tls.clone());
            let tls = connector
                .connect(server_name(address)?, socket)
                .await
                .map_err(|error| {
                    let refused = error
                        .get_ref()
                        .is_some_and(|inner| inner.is::<rustls::Error>());
                    if refused {
                        anyhow::Error::new(Refused(format!(
                            "TLS handshake with {address}: {error}"
                        )))
                    } else {
                        anyhow::Error::new(error).context(format!("TLS handshake with {address}"))
                    }
                })?;
            ClientStream::Tls(Box::new(tls))
        }
    };
    if let Some(credentials) = &security.sasl {
        let mut login = SaslLogin::new(credentials, address);
        let refused = |error: anyhow::Error| anyhow::Error::new(Refused(format!("{error:#}")));
        let handshake = exchange(&mut stream, 1, &login.handshake()).await?;
        login.handshaken(&handshake).map_err(refused)?;
        let mut answer = None;
        let mut correlation_id = 1;
        while let Some(request) = login.next(answer.as_ref()).map_err(refused)? {
            correlation_id += 1;
            answer = Some(exchange(&mut stream, correlation_id, &request).await?);
        }
    }
    Ok(stream)
}

/// Sends one request at [`SASL_VERSION`] and reads its response.
async fn exchange<S, T>(
    stream: &mut S,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<T::Response>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: Request,
{
    /// SASL answers are small; a larger frame is not one.
    const ANSWER_BYTES_MAX: i32 = 1 << 20;
    let client_id = StrBytes::from_static_str("spate");
    let frame = encode_client_request(SASL_VERSION, correlation_id, &client_id, body)?;
    stream.write_all(&frame).await?;
    stream.flush().await?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let size = i32::from_be_bytes(prefix);
    if !(0..=ANSWER_BYTES_MAX).contains(&size) {
        bail!("a SASL answer of invalid size {size}");
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

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
        buffer: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
        buffer: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_write(context, buffer),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, buffer),
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_flush(context),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    fn poll_close(
        self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_close(context),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_close(context),
        }
    }
}

/// Redacts what must not be written down from properties shown back to a user (results
/// files, logs): values of keys that name a password or a JAAS line.
pub fn redacted(properties: &[String]) -> Vec<String> {
    properties
        .iter()
        .map(|line| match line.split_once('=') {
            Some((key, _)) if key.contains("password") || key.contains("jaas") => {
                format!("{key}=[hidden]")
            }
            _ => line.clone(),
        })
        .collect()
}

/// `name="value"` out of a JAAS line.
fn jaas_option(jaas: &str, name: &str) -> Option<String> {
    let start = jaas.find(&format!("{name}=\""))? + name.len() + 2;
    let end = jaas[start..].find('"')? + start;
    Some(jaas[start..end].to_string())
}

/// A rustls client configuration trusting `ca` (PEM; the system's roots without it) and,
/// given both, presenting `certificate` with `key` (PEM) as the client's certificate.
pub fn tls_config(
    ca: Option<&Path>,
    certificate: Option<&Path>,
    key: Option<&Path>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
    let ca = ca.unwrap_or(Path::new(SYSTEM_ROOTS));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("ssl.ca.location {}", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("ssl.ca.location {}", ca.display()))?)
            .with_context(|| {
                format!("ssl.ca.location {}: an unusable certificate", ca.display())
            })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(super::tls::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (certificate, key) {
        (Some(certificate), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(certificate)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("ssl.certificate.location {}", certificate.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("ssl.key.location {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("give both ssl.certificate.location and ssl.key.location"),
    };
    Ok(Arc::new(config))
}

/// One SASL login as a client, without I/O: send [`SaslLogin::handshake`], give its answer
/// to [`SaslLogin::handshaken`], then send each SaslAuthenticate request that
/// [`SaslLogin::next`] returns, giving it the previous answer, until it returns `None`.
pub struct SaslLogin<'a> {
    credentials: &'a SaslCredentials,
    address: &'a str,
    state: LoginState,
}

enum LoginState {
    /// The handshake is not answered yet.
    Handshake,
    /// The first SaslAuthenticate is to be sent.
    Start,
    /// PLAIN's one message was sent.
    PlainSent,
    /// SCRAM's client-first message was sent.
    ScramFirstSent(ScramClient),
    /// SCRAM's proof was sent.
    ScramProofSent(ScramClient),
    /// Authenticated.
    Done,
}

impl<'a> SaslLogin<'a> {
    /// A login with `credentials` to the broker at `address` (named in errors).
    pub fn new(credentials: &'a SaslCredentials, address: &'a str) -> SaslLogin<'a> {
        SaslLogin {
            credentials,
            address,
            state: LoginState::Handshake,
        }
    }

    /// The SaslHandshake request (sent at [`SASL_VERSION`]).
    pub fn handshake(&self) -> SaslHandshakeRequest {
        SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(self.credentials.mechanism.name()))
    }

    /// Checks the broker's answer to the handshake.
    pub fn handshaken(&mut self, response: &SaslHandshakeResponse) -> anyhow::Result<()> {
        if response.error_code != 0 {
            let offered: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
            bail!(
                "{} refused SASL mechanism {}: {} (offered: {})",
                self.address,
                self.credentials.mechanism.name(),
                error_name(response.error_code),
                offered.join(", ")
            );
        }
        self.state = LoginState::Start;
        Ok(())
    }

    /// The next SaslAuthenticate request (sent at [`SASL_VERSION`]), given the answer to the
    /// previous one; `None` once authenticated.
    pub fn next(
        &mut self,
        answer: Option<&SaslAuthenticateResponse>,
    ) -> anyhow::Result<Option<SaslAuthenticateRequest>> {
        let SaslCredentials {
            mechanism,
            user,
            password,
        } = self.credentials;
        let answer_bytes = match answer {
            Some(answer) if answer.error_code != 0 => bail!(
                "{}: SASL authentication as {user} failed: {}{}",
                self.address,
                error_name(answer.error_code),
                answer
                    .error_message
                    .as_ref()
                    .map(|message| format!(": {}", message.as_str()))
                    .unwrap_or_default()
            ),
            Some(answer) => answer.auth_bytes.clone(),
            None => Bytes::new(),
        };
        let request = |bytes: Vec<u8>| {
            Some(SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)))
        };
        let (state, next) = match std::mem::replace(&mut self.state, LoginState::Done) {
            LoginState::Handshake => bail!("SaslAuthenticate before the handshake"),
            LoginState::Start => match mechanism {
                SaslMechanism::Plain => (
                    LoginState::PlainSent,
                    request(format!("\0{user}\0{password}").into_bytes()),
                ),
                SaslMechanism::Scram(scram) => {
                    let exchange = ScramClient::new(*scram, user, password);
                    let first = exchange.first();
                    (LoginState::ScramFirstSent(exchange), request(first))
                }
            },
            LoginState::ScramFirstSent(mut exchange) => {
                let proof = exchange.respond(&answer_bytes)?;
                (LoginState::ScramProofSent(exchange), request(proof))
            }
            LoginState::ScramProofSent(exchange) => {
                exchange.verify(&answer_bytes)?;
                (LoginState::Done, None)
            }
            LoginState::PlainSent | LoginState::Done => (LoginState::Done, None),
        };
        self.state = state;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::{ScramCredential, ScramServer, ScramStep};

    #[test]
    fn properties_and_jaas_lines_give_credentials() {
        let lines: Vec<String> = [
            "# a Java client's file",
            "security.protocol=SASL_PLAINTEXT",
            "sasl.mechanism=SCRAM-SHA-256",
            r#"sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="s3=cr,et";"#,
        ]
        .map(String::from)
        .to_vec();
        let security = ClientSecurity::from_properties(&lines).unwrap();
        let credentials = security.sasl.unwrap();
        assert_eq!(
            credentials.mechanism,
            SaslMechanism::Scram(Mechanism::ScramSha256)
        );
        assert_eq!(
            (credentials.user.as_str(), credentials.password.as_str()),
            ("alice", "s3=cr,et")
        );
        assert!(security.tls.is_none());
        for bad in [
            "security.protocol=SASL_SSL",
            "security.protocol=KERBEROS",
            "nonsense",
        ] {
            assert!(ClientSecurity::from_properties(&[bad.to_string()]).is_err());
        }
        assert_eq!(
            redacted(&lines[2..]),
            ["sasl.mechanism=SCRAM-SHA-256", "sasl.jaas.config=[hidden]"]
        );
    }

    #[test]
    fn a_scram_login_runs_against_the_server_side() {
        let credential = ScramCredential::generate(Mechanism::ScramSha512, "pw", 4096);
        let credentials = SaslCredentials {
            mechanism: SaslMechanism::Scram(Mechanism::ScramSha512),
            user: "alice".into(),
            password: "pw".into(),
        };
        let mut login = SaslLogin::new(&credentials, "broker");
        assert_eq!(login.handshake().mechanism.as_str(), "SCRAM-SHA-512");
        assert!(login.next(None).is_err(), "not before the handshake");
        let mut login = SaslLogin::new(&credentials, "broker");
        login.handshaken(&SaslHandshakeResponse::default()).unwrap();
        let mut server = ScramServer::new(Mechanism::ScramSha512);
        let mut answer: Option<SaslAuthenticateResponse> = None;
        let mut rounds = 0;
        while let Some(request) = login.next(answer.as_ref()).unwrap() {
            rounds += 1;
            let reply = match server
                .step(&request.auth_bytes, |user| {
                    (user == "alice").then(|| credential.clone())
                })
                .unwrap()
            {
                ScramStep::Continue(reply) => reply,
                ScramStep::Done { user, reply } => {
                    assert_eq!(user, "alice");
                    reply
                }
            };
            answer = Some(SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply)));
        }
        assert_eq!(rounds, 2);
        // A refusal is an error naming the user, not a login.
        let mut login = SaslLogin::new(&credentials, "broker");
        login.handshaken(&SaslHandshakeResponse::default()).unwrap();
        login.next(None).unwrap();
        let refused = SaslAuthenticateResponse::default().with_error_code(58);
        let error = login.next(Some(&refused)).unwrap_err().to_string();
        assert!(error.contains("alice"), "{error}");
    }
}
