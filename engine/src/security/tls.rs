//! TLS for `SSL` and `SASL_SSL` listeners, with rustls (no OpenSSL): the node's certificate
//! and key (`--ssl-cert`, `--ssl-key`, PEM), and optionally client certificates checked
//! against `--ssl-ca` (`--ssl-client-auth none|requested|required`, Kafka's
//! `ssl.client.auth`).
//!
//! Encryption runs in user space: `connection.rs` reads and writes through the TLS stream, and
//! sends sealed segments by reading them (splice cannot encrypt). Handing the keys to the
//! kernel after the handshake (kTLS), which keeps splice, is the next step; the reference
//! host's kernel has no TLS module, so it could not be built and measured here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use futures_rustls::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Whether TLS clients must, may or need not present a certificate (Kafka's
/// `ssl.client.auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// Asked for; a client without one is still served, one with an invalid one is not.
    Requested,
    /// A client without a certificate signed by `--ssl-ca` is refused.
    Required,
}

impl ClientAuth {
    /// Parses Kafka's names.
    pub fn parse(name: &str) -> anyhow::Result<ClientAuth> {
        match name {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            other => bail!("--ssl-client-auth {other}: expected none, requested or required"),
        }
    }
}

/// The TLS settings of a node.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// The certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign client certificates, PEM.
    pub ca: Option<PathBuf>,
    /// Whether clients present certificates.
    pub client_auth: ClientAuth,
    /// How a certificate's subject becomes a principal (`--ssl-principal-mapping-rules`).
    pub principal_mapping: super::principal_mapping::PrincipalMapper,
}

impl TlsSettings {
    /// The principal a verified certificate (DER) names: `User:` and its subject as the
    /// mapping rules make it. An error says why it names none: a subject that cannot be read,
    /// or one that no rule applies to (Kafka then refuses the connection).
    pub fn principal_of(&self, der: &[u8]) -> Result<String, String> {
        let subject = super::certificate::subject_name(der)
            .ok_or_else(|| "its subject cannot be read".to_string())?;
        self.principal_mapping
            .name(&subject)
            .map(|name| format!("User:{name}"))
            .ok_or_else(|| format!("no --ssl-principal-mapping-rules rule applies to {subject}"))
    }
}

/// The acceptor every TLS listener of the node uses; errors name the file at fault, so that
/// a node with a bad certificate does not start.
pub fn acceptor(settings: &TlsSettings) -> anyhow::Result<TlsAcceptor> {
    let provider = crypto_provider();
    let certs = certificates(&settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).with_context(|| {
        format!(
            "--ssl-key {}: no PEM private key could be read",
            settings.key.display()
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match (settings.client_auth, &settings.ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => bail!("--ssl-client-auth requested or required needs --ssl-ca"),
        (auth, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).with_context(|| {
                    format!("--ssl-ca {}: a certificate is not usable", ca.display())
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().context("--ssl-ca")?)
        }
    };
    let config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "--ssl-cert {} and --ssl-key {} do not make a usable pair",
            settings.cert.display(),
            settings.key.display()
        )
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The crypto provider of the broker's TLS and of the CLI's: ring, not aws-lc-rs, which
/// needs cmake and a long C build on a fresh host (the README's two commands). rustls
/// deprecates ring's provider only because it lacks the post-quantum key exchange; clients
/// fall back to X25519, which ring has.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: cannot read PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("{}: holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// A TLS stream whose peer may close without a close_notify alert, as Kafka's clients do
/// (librdkafka and Java close the socket): such an end reads as an ordinary end of stream,
/// so that the frame reader tells a close between requests (nothing to log) from one in the
/// middle of a request (a truncated frame, logged). A truncation attack gains nothing here:
/// Kafka's size prefixes already show where each request ends.
pub struct CloseNotifyOptional<S>(pub S);

impl<S: futures_lite::AsyncRead + Unpin> futures_lite::AsyncRead for CloseNotifyOptional<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.0).poll_read(context, buffer) {
            std::task::Poll::Ready(Err(error))
                if error.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                std::task::Poll::Ready(Ok(0))
            }
            other => other,
        }
    }
}

impl<S: futures_lite::AsyncWrite + Unpin> futures_lite::AsyncWrite for CloseNotifyOptional<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(context, buffer)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_close(context)
    }
}
