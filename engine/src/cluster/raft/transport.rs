//! How the controller port's connections are secured: plain TCP by default, or mutual TLS
//! with `--controller-security-protocol SSL` (Kafka's CONTROLLER listener mapped to SSL).
//!
//! The quorum's port carries Raft's RPCs and forwarded controller calls, which change the
//! metadata of the whole cluster (topics, ACLs, users) and go through no Kafka handler, so no
//! ACL is checked on the way. Under TLS, both ends present the node's certificate
//! (`--ssl-cert`, `--ssl-key`) and check the other's against `--ssl-ca`, whatever
//! `--ssl-client-auth` says for clients: a connection without a certificate signed by that
//! CA ends in the handshake. With `--authorizer acl` the certificate's principal must also be
//! a super user or be allowed ClusterAction on the cluster (`ControllerPort::admits`), as
//! Kafka's controllers require of brokers and of each other; without an authorizer, any
//! certificate of the CA is a member.
//!
//! A member dials another by the address in `--controller-quorum-voters` and checks the
//! server's certificate against that host (an IP address against the certificate's IP
//! addresses), as Kafka's `ssl.endpoint.identification.algorithm=https` does.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use futures_rustls::{TlsAcceptor, TlsConnector};
use glommio::net::TcpStream;

use crate::security::client::ClientStream;
use crate::security::tls::{ClientAuth, CloseNotifyOptional, TlsSettings};

/// A member's connection to another member's controller port: plain, or TLS.
pub(super) type PeerStream = ClientStream<TcpStream>;

/// A connection accepted on this member's controller port under TLS.
pub(super) type AcceptedTls = CloseNotifyOptional<futures_rustls::server::TlsStream<TcpStream>>;

/// How the controller port is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ControllerSecurity {
    /// Plain TCP: anyone who reaches the port is a member (the default, as before).
    #[default]
    Plaintext,
    /// Mutual TLS with the node's certificate; see the module docs.
    Ssl,
}

impl ControllerSecurity {
    /// Parses Kafka's protocol names (`PLAINTEXT`, `SSL`; case-insensitive).
    pub fn parse(name: &str) -> anyhow::Result<ControllerSecurity> {
        match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(ControllerSecurity::Plaintext),
            "SSL" => Ok(ControllerSecurity::Ssl),
            "SASL_PLAINTEXT" | "SASL_SSL" => anyhow::bail!(
                "--controller-security-protocol {name}: the controller port authenticates members \
                 by certificate; use SSL"
            ),
            _ => anyhow::bail!("--controller-security-protocol {name}: expected PLAINTEXT or SSL"),
        }
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            ControllerSecurity::Plaintext => "PLAINTEXT",
            ControllerSecurity::Ssl => "SSL",
        }
    }
}

/// Both sides of the controller port's TLS, built once per node (the rustls configurations
/// are shared by every shard). Cheap to clone.
#[derive(Clone)]
pub struct ControllerTls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
    /// The node's settings, for the principal a member's certificate names.
    settings: Arc<TlsSettings>,
}

impl ControllerTls {
    /// From the node's TLS settings; errors name what is missing or unreadable, so that the
    /// node does not start with a controller port no other member could join.
    pub fn new(settings: Option<&TlsSettings>) -> anyhow::Result<ControllerTls> {
        const NEEDS: &str =
            "--controller-security-protocol SSL needs --ssl-cert, --ssl-key and --ssl-ca";
        let settings = settings.context(NEEDS)?;
        let ca: &PathBuf = settings.ca.as_ref().context(NEEDS)?;
        let acceptor = crate::security::tls::acceptor(&TlsSettings {
            client_auth: ClientAuth::Required,
            ..settings.clone()
        })
        .context("the controller port's TLS")?;
        let client = crate::security::client::tls_config(
            Some(ca),
            Some(&settings.cert),
            Some(&settings.key),
        )
        .context("the controller port's TLS, as a client of other members")?;
        Ok(ControllerTls {
            connector: TlsConnector::from(client),
            acceptor,
            settings: Arc::new(settings.clone()),
        })
    }

    /// TLS over `socket`, just connected to the member at `address`.
    pub(super) async fn connect(
        &self,
        socket: TcpStream,
        address: &str,
    ) -> std::io::Result<PeerStream> {
        let name = crate::security::client::server_name(address)
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
        let stream = self.connector.connect(name, socket).await?;
        Ok(ClientStream::Tls(Box::new(stream)))
    }

    /// The handshake of a connection accepted on the controller port, and the principal its
    /// certificate names (as `--ssl-principal-mapping-rules` map it), or why it names none.
    pub(super) async fn accept(
        &self,
        socket: TcpStream,
    ) -> std::io::Result<(AcceptedTls, Result<String, String>)> {
        let stream = self.acceptor.accept(socket).await?;
        let principal = match stream.get_ref().1.peer_certificates() {
            Some([certificate, ..]) => self.settings.principal_of(certificate.as_ref()),
            _ => Err("it presented no certificate".to_string()),
        };
        Ok((CloseNotifyOptional(stream), principal))
    }
}

/// The node's controller TLS, if its port is secured; built at start so that a bad
/// certificate stops the start.
pub fn for_node(
    security: ControllerSecurity,
    settings: Option<&TlsSettings>,
) -> anyhow::Result<Option<ControllerTls>> {
    match security {
        ControllerSecurity::Plaintext => Ok(None),
        ControllerSecurity::Ssl => ControllerTls::new(settings).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_parse_as_kafka_writes_them() {
        assert_eq!(
            ControllerSecurity::parse("SSL").unwrap(),
            ControllerSecurity::Ssl
        );
        assert_eq!(
            ControllerSecurity::parse("plaintext").unwrap(),
            ControllerSecurity::Plaintext
        );
        let sasl = ControllerSecurity::parse("SASL_SSL")
            .unwrap_err()
            .to_string();
        assert!(sasl.contains("use SSL"), "{sasl}");
        assert!(ControllerSecurity::parse("TLS").is_err());
    }

    #[test]
    fn tls_needs_the_ca_that_signs_members() {
        let settings = TlsSettings {
            cert: "node.pem".into(),
            key: "node.key".into(),
            ca: None,
            client_auth: ClientAuth::None,
            principal_mapping: Default::default(),
        };
        let error = ControllerTls::new(Some(&settings))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("--ssl-ca"), "{error}");
        assert!(ControllerTls::new(None).is_err());
        assert!(for_node(ControllerSecurity::Plaintext, None)
            .unwrap()
            .is_none());
    }
}
