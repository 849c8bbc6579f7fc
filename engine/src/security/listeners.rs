//! Listeners with Kafka's names: `--listeners PLAINTEXT://HOST:PORT,SASL_PLAINTEXT://HOST:PORT`
//! and `--advertised-listeners` likewise.
//!
//! A listener's name is its security protocol (Kafka's default
//! `listener.security.protocol.map`), so each protocol appears at most once. Shard s of a
//! listener listens on its port + s, as the single `--listen` address always has. Clients are
//! told, in Metadata, DescribeCluster and FindCoordinator, the endpoints of the listener they
//! connected to, so a client that authenticated on the SASL port is never sent to the
//! plaintext one.

use std::fmt;
use std::net::SocketAddr;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Kafka's security protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecurityProtocol {
    /// No authentication, no encryption.
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    /// SASL authentication, no encryption.
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// TLS.
    #[serde(rename = "SSL")]
    Ssl,
    /// SASL over TLS.
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name, which is also the listener's name.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// The protocol of a name, case-insensitively as Kafka reads it.
    pub fn from_name(name: &str) -> Option<SecurityProtocol> {
        [
            SecurityProtocol::Plaintext,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .find(|protocol| protocol.name().eq_ignore_ascii_case(name))
    }

    /// Whether connections are encrypted with TLS (`security::tls`).
    pub fn is_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before any other request.
    pub fn requires_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One listener of this node, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Its security protocol, which names it.
    pub protocol: SecurityProtocol,
    /// Where shard 0 listens; shard s listens on port + s.
    pub address: SocketAddr,
    /// Host advertised to clients of this listener.
    pub advertised_host: String,
    /// Port advertised for shard 0; shard s is advertised at port + s.
    pub advertised_port: u16,
}

impl Listener {
    /// The listener's name, as clients and the metadata image call it.
    pub fn name(&self) -> &'static str {
        self.protocol.name()
    }

    /// The endpoint brokers of this node register for this listener.
    pub fn endpoint(&self) -> ListenerEndpoint {
        ListenerEndpoint {
            name: self.name().to_string(),
            host: self.advertised_host.clone(),
            base_port: self.advertised_port,
        }
    }
}

/// A listener as the metadata image knows it: what a node's brokers advertise on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    /// The listener's name (its security protocol).
    pub name: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port of the node's shard 0; shard s is at `base_port + s`.
    pub base_port: u16,
}

/// Parses a comma-separated `NAME://HOST:PORT` list (`--listeners`). Hosts may be IP
/// addresses only, since each shard binds port + s on the same address.
pub fn parse_bind_list(list: &str) -> anyhow::Result<Vec<(SecurityProtocol, SocketAddr)>> {
    let mut parsed: Vec<(SecurityProtocol, SocketAddr)> = Vec::new();
    for (protocol, host, port) in parse_list(list)? {
        let address: SocketAddr = format!("{host}:{port}")
            .parse()
            .with_context(|| format!("listener {protocol}://{host}:{port}: expected an IP address and port (an empty host is not bindable here; use 0.0.0.0)"))?;
        parsed.push((protocol, address));
    }
    Ok(parsed)
}

/// Parses a comma-separated `NAME://HOST:PORT` list of advertised endpoints
/// (`--advertised-listeners`); hosts may be names.
pub fn parse_advertised_list(list: &str) -> anyhow::Result<Vec<(SecurityProtocol, String, u16)>> {
    parse_list(list)
}

fn parse_list(list: &str) -> anyhow::Result<Vec<(SecurityProtocol, String, u16)>> {
    let mut parsed: Vec<(SecurityProtocol, String, u16)> = Vec::new();
    for entry in list
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (name, rest) = entry
            .split_once("://")
            .with_context(|| format!("listener {entry:?}: expected NAME://HOST:PORT"))?;
        let protocol = SecurityProtocol::from_name(name).with_context(|| {
            format!(
                "listener {entry:?}: the name must be PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL"
            )
        })?;
        let (host, port) = rest
            .rsplit_once(':')
            .with_context(|| format!("listener {entry:?}: expected NAME://HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("listener {entry:?}: bad port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if parsed.iter().any(|(seen, _, _)| *seen == protocol) {
            bail!("listener {protocol} is named twice");
        }
        parsed.push((protocol, host, port));
    }
    if parsed.is_empty() {
        bail!("no listener given");
    }
    Ok(parsed)
}

/// Resolves the configured listeners: `bind` from `--listeners` (or the single `--listen`
/// address as PLAINTEXT), `advertised` from `--advertised-listeners` (per name; by default the
/// bound host, or `default_host` when set or when the bound host is unspecified).
pub fn resolve(
    bind: Vec<(SecurityProtocol, SocketAddr)>,
    advertised: Vec<(SecurityProtocol, String, u16)>,
    default_host: Option<&str>,
) -> anyhow::Result<Vec<Listener>> {
    for (protocol, _, _) in &advertised {
        if !bind.iter().any(|(bound, _)| bound == protocol) {
            bail!("--advertised-listeners names {protocol}, which is not among --listeners");
        }
    }
    let mut listeners = Vec::with_capacity(bind.len());
    for (protocol, address) in bind {
        let (advertised_host, advertised_port) =
            match advertised.iter().find(|(named, _, _)| *named == protocol) {
                Some((_, host, port)) => (host.clone(), *port),
                None => (
                    default_host.map_or_else(
                        || match address.ip() {
                            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
                            ip => ip.to_string(),
                        },
                        str::to_string,
                    ),
                    address.port(),
                ),
            };
        if listeners
            .iter()
            .any(|listener: &Listener| ports_overlap(listener.address, address))
        {
            bail!("listener {protocol} at {address} is too close to another listener's port: each listener uses one port per shard");
        }
        listeners.push(Listener {
            protocol,
            address,
            advertised_host,
            advertised_port,
        });
    }
    Ok(listeners)
}

/// Whether two listeners' first ports are equal; that the shards' port ranges do not overlap
/// is checked when binding, with the shard count known.
fn ports_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_with_kafka_names() {
        let bind =
            parse_bind_list("PLAINTEXT://127.0.0.1:9092, sasl_plaintext://0.0.0.0:9192").unwrap();
        assert_eq!(
            bind[0],
            (
                SecurityProtocol::Plaintext,
                "127.0.0.1:9092".parse().unwrap()
            )
        );
        assert_eq!(bind[1].0, SecurityProtocol::SaslPlaintext);
        let advertised = parse_advertised_list("SASL_PLAINTEXT://broker.example:19192").unwrap();
        let listeners = resolve(bind, advertised, None).unwrap();
        assert_eq!(listeners[0].advertised_host, "127.0.0.1");
        assert_eq!(
            (
                listeners[1].advertised_host.as_str(),
                listeners[1].advertised_port
            ),
            ("broker.example", 19192)
        );
    }

    #[test]
    fn bad_listener_lists_are_refused() {
        assert!(parse_bind_list("PLAINTEXT://localhost:9092").is_err());
        assert!(parse_bind_list("FOO://127.0.0.1:9092").is_err());
        assert!(parse_bind_list("PLAINTEXT://127.0.0.1").is_err());
        assert!(parse_bind_list("PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2").is_err());
        assert!(parse_bind_list("").is_err());
        let bind = parse_bind_list("PLAINTEXT://127.0.0.1:9092").unwrap();
        let advertised = parse_advertised_list("SASL_PLAINTEXT://h:1").unwrap();
        assert!(resolve(bind, advertised, None).is_err());
        let same_port =
            parse_bind_list("PLAINTEXT://0.0.0.0:9092,SASL_PLAINTEXT://127.0.0.1:9092").unwrap();
        assert!(resolve(same_port, Vec::new(), None).is_err());
    }
}
