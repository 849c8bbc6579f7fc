//! How the CLI connects to a secured listener: librdkafka-style client properties from
//! `-X KEY=VALUE` and `--command-config FILE` (the same lines, `#` comments allowed), as
//! `kcat -X` and Kafka's `--command-config` take them.
//!
//! Served: `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), `sasl.mechanism`
//! (or `sasl.mechanisms`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), `sasl.username`,
//! `sasl.password`, Java's `sasl.jaas.config` (its `username="..." password="..."`),
//! `ssl.ca.location` (Java: `ssl.truststore.location` of a PEM file), `ssl.certificate.location`
//! and `ssl.key.location` (a client certificate). Other keys are ignored with one warning.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context};
use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use spate_engine::security::scram::Mechanism;
use spate_engine::security::scram_client::ScramClient;
use spate_engine::security::session::SaslMechanism;
use spate_engine::security::SecurityProtocol;
use spate_net::client::Client;

use super::error_name;

/// The CLI's security settings for every connection it opens.
pub struct ClientSecurity {
    /// TLS settings, for SSL and SASL_SSL.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// SASL mechanism and credentials, for SASL_PLAINTEXT and SASL_SSL.
    sasl: Option<(SaslMechanism, String, String)>,
}

static SECURITY: OnceLock<ClientSecurity> = OnceLock::new();

/// Sets the settings from the command's properties (once per process).
pub fn configure(properties: &[String], command_config: Option<&Path>) -> anyhow::Result<()> {
    if SECURITY.get().is_some() {
        return Ok(());
    }
    let mut lines: Vec<String> = Vec::new();
    if let Some(path) = command_config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--command-config {}", path.display()))?;
        lines.extend(text.lines().map(str::to_string));
    }
    lines.extend(properties.iter().cloned());
    let security = from_lines(&lines)?;
    let _ = SECURITY.set(security);
    Ok(())
}

fn from_lines(lines: &[String]) -> anyhow::Result<ClientSecurity> {
    let mut protocol = SecurityProtocol::Plaintext;
    let (mut mechanism, mut user, mut password) = (None, None, None);
    let (mut ca, mut certificate, mut key): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) =
        (None, None, None);
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
            (Some(user), Some(password)) => Some((mechanism, user, password)),
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

/// `name="value"` out of a JAAS line.
fn jaas_option(jaas: &str, name: &str) -> Option<String> {
    let start = jaas.find(&format!("{name}=\""))? + name.len() + 2;
    let end = jaas[start..].find('"')? + start;
    Some(jaas[start..end].to_string())
}

fn tls_config(
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
    let builder =
        rustls::ClientConfig::builder_with_provider(spate_engine::security::tls::crypto_provider())
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

/// Secures a connection to `address` just opened: TLS first, if any (before any request);
/// SASL after `authenticate_after` (ApiVersions) ran, through [`authenticate`].
pub fn wrap(client: &mut Client, address: &str) -> anyhow::Result<()> {
    let Some(tls) = SECURITY.get().and_then(|security| security.tls.clone()) else {
        return Ok(());
    };
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .with_context(|| format!("{host} is not a valid TLS server name"))?;
    let connection = rustls::ClientConnection::new(tls, name)?;
    let socket = client.socket().try_clone()?;
    client.set_transport(Box::new(rustls::StreamOwned::new(connection, socket)));
    Ok(())
}

/// Authenticates with SASL, when the settings say to.
pub fn authenticate(client: &mut Client, address: &str) -> anyhow::Result<()> {
    let Some((mechanism, user, password)) =
        SECURITY.get().and_then(|security| security.sasl.as_ref())
    else {
        return Ok(());
    };
    let handshake = client.send(
        1,
        &SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(mechanism.name())),
    )?;
    if handshake.error_code != 0 {
        let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        bail!(
            "{address} refused SASL mechanism {}: {} (offered: {})",
            mechanism.name(),
            error_name(handshake.error_code),
            offered.join(", ")
        );
    }
    let mut step = |bytes: Vec<u8>| -> anyhow::Result<Bytes> {
        let response = client.send(
            1,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
        )?;
        if response.error_code != 0 {
            bail!(
                "{address}: SASL authentication as {user} failed: {}{}",
                error_name(response.error_code),
                response
                    .error_message
                    .map(|message| format!(": {}", message.as_str()))
                    .unwrap_or_default()
            );
        }
        Ok(response.auth_bytes)
    };
    match mechanism {
        SaslMechanism::Plain => {
            step(format!("\0{user}\0{password}").into_bytes())?;
        }
        SaslMechanism::Scram(scram) => {
            let mut exchange = ScramClient::new(*scram, user, password);
            let server_first = step(exchange.first())?;
            let last = exchange.respond(&server_first)?;
            let server_final = step(last)?;
            exchange.verify(&server_final)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let security = from_lines(&lines).unwrap();
        let (mechanism, user, password) = security.sasl.unwrap();
        assert_eq!(mechanism, SaslMechanism::Scram(Mechanism::ScramSha256));
        assert_eq!((user.as_str(), password.as_str()), ("alice", "s3=cr,et"));
        assert!(security.tls.is_none());
        assert!(from_lines(&["security.protocol=SASL_SSL".to_string()]).is_err());
        assert!(from_lines(&["security.protocol=KERBEROS".to_string()]).is_err());
        assert!(from_lines(&["nonsense".to_string()]).is_err());
    }
}
