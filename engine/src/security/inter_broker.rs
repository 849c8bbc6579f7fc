//! How this node's brokers reach other brokers (followers fetching from their leaders, the
//! consumer-lag monitor asking leaders for their ends): Kafka's
//! `inter.broker.listener.name`, `sasl.mechanism.inter.broker.protocol` and the broker's
//! own credentials.
//!
//! `--inter-broker-listener-name` names the listener used between brokers (by its security
//! protocol, which is its name in Spate). The default is the PLAINTEXT listener, or the first
//! listener when there is none. Nodes of one cluster must agree on it, as Kafka's do.
//! - On a SASL listener, a broker logs in as `--inter-broker-user` with
//!   `--inter-broker-password` (better given as `SPATE_INTER_BROKER_PASSWORD`, which keeps it
//!   out of `ps`), using `--inter-broker-sasl-mechanism` (SCRAM-SHA-512 unless said). With
//!   `--authorizer acl`, that user belongs in `--super-users`, or at least needs
//!   CLUSTER_ACTION on the cluster (followers) and DESCRIBE on topics (the lag monitor), as
//!   Kafka's broker principal does.
//! - On a TLS listener, a broker trusts `--ssl-ca`, or the system's roots without it. It
//!   presents the node's own `--ssl-cert` as a client certificate, so that listeners with
//!   `--ssl-client-auth required` accept it and its subject is its principal.
//!
//! The controller quorum's own port is a separate matter (`cluster::raft`): it does not
//! authenticate yet.

use anyhow::{bail, Context};

use super::client::{ClientSecurity, SaslCredentials};
use super::session::SaslMechanism;
use super::tls::TlsSettings;
use super::{Listener, SecurityProtocol};
use crate::metadata::image::BrokerRegistration;

/// The resolved inter-broker settings.
#[derive(Clone, Debug)]
pub struct InterBrokerConfig {
    /// The security protocol (and so the name) of the listener brokers reach each other on.
    pub protocol: SecurityProtocol,
    /// The credentials brokers log in with, on a SASL listener.
    pub sasl: Option<SaslCredentials>,
}

/// The inter-broker settings as flags, environment or file give them.
#[derive(Clone, Debug, Default)]
pub struct InterBrokerOptions {
    /// `--inter-broker-listener-name`.
    pub listener_name: Option<String>,
    /// `--inter-broker-sasl-mechanism`.
    pub mechanism: Option<String>,
    /// `--inter-broker-user`.
    pub user: Option<String>,
    /// `--inter-broker-password`.
    pub password: Option<String>,
}

impl InterBrokerConfig {
    /// Resolves the options against the node's listeners.
    pub fn resolve(
        listeners: &[Listener],
        options: InterBrokerOptions,
    ) -> anyhow::Result<InterBrokerConfig> {
        let protocol = match options.listener_name.as_deref() {
            Some(name) => {
                let protocol = SecurityProtocol::from_name(name).with_context(|| {
                    format!(
                        "--inter-broker-listener-name {name}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                    )
                })?;
                if !listeners
                    .iter()
                    .any(|listener| listener.protocol == protocol)
                {
                    bail!("--inter-broker-listener-name {name}: no such listener in --listeners");
                }
                protocol
            }
            None => default_listener(listeners).protocol,
        };
        let sasl = if protocol.requires_sasl() {
            let mechanism = match options.mechanism.as_deref() {
                Some(name) => SaslMechanism::from_name(name).with_context(|| {
                    format!("--inter-broker-sasl-mechanism {name}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
                })?,
                None => SaslMechanism::Scram(super::scram::Mechanism::ScramSha512),
            };
            match (options.user, options.password) {
                (Some(user), Some(password)) => Some(SaslCredentials {
                    mechanism,
                    user,
                    password,
                }),
                (None, None) => None,
                _ => bail!(
                    "give both --inter-broker-user and --inter-broker-password (or SPATE_INTER_BROKER_PASSWORD)"
                ),
            }
        } else {
            None
        };
        Ok(InterBrokerConfig { protocol, sasl })
    }

    /// Whether brokers can log in to each other: a node of a replicated cluster whose
    /// inter-broker listener needs SASL must have credentials. A one-node cluster may go
    /// without (a node serving only SASL clients, as before inter-broker credentials
    /// existed), but then its replicas on other shards cannot fetch; see [`Self::warning`].
    pub fn check_for_cluster(&self) -> anyhow::Result<()> {
        if self.protocol.requires_sasl() && self.sasl.is_none() {
            bail!(
                "the inter-broker listener {} needs --inter-broker-user and --inter-broker-password (or SPATE_INTER_BROKER_PASSWORD): brokers log in to each other to replicate",
                self.protocol
            );
        }
        Ok(())
    }

    /// What to warn a one-node cluster of `shard_count` shards about: replicas on its other
    /// shards fetch through the inter-broker listener, which they cannot log in to.
    pub fn warning(&self, shard_count: usize) -> Option<String> {
        (shard_count > 1 && self.protocol.requires_sasl() && self.sasl.is_none()).then(|| {
            format!(
                "the inter-broker listener is {}, without --inter-broker-user: replicas on other shards of this node (replication factors above 1) cannot fetch from their leaders",
                self.protocol
            )
        })
    }

    /// The listener brokers reach each other on.
    pub fn listener<'a>(&self, listeners: &'a [Listener]) -> &'a Listener {
        listeners
            .iter()
            .find(|listener| listener.protocol == self.protocol)
            .unwrap_or_else(|| default_listener(listeners))
    }

    /// Where this node's brokers reach `broker`: its endpoint on the inter-broker listener
    /// (by name, as Kafka's brokers find each other, so that a listener can be added to every
    /// node first and made the inter-broker one in a second rolling restart); `None` when its
    /// node has no such listener.
    pub fn address_of(&self, broker: &BrokerRegistration) -> Option<String> {
        broker
            .endpoint(self.protocol.name())
            .map(|(host, port)| format!("{host}:{port}"))
    }

    /// How a broker secures its connections to other brokers; `tls` is the node's TLS
    /// settings (its certificate is presented, its CA trusted).
    pub fn client_security(&self, tls: Option<&TlsSettings>) -> anyhow::Result<ClientSecurity> {
        let tls = if self.protocol.is_tls() {
            let settings =
                tls.context("a TLS inter-broker listener needs --ssl-cert and --ssl-key")?;
            Some(super::client::tls_config(
                settings.ca.as_deref(),
                Some(&settings.cert),
                Some(&settings.key),
            )?)
        } else {
            None
        };
        Ok(ClientSecurity {
            tls,
            sasl: self.sasl.clone(),
        })
    }
}

/// The PLAINTEXT listener, or the first when there is none (the rule before
/// `--inter-broker-listener-name`).
fn default_listener(listeners: &[Listener]) -> &Listener {
    listeners
        .iter()
        .find(|listener| listener.protocol == SecurityProtocol::Plaintext)
        .unwrap_or(&listeners[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners(text: &str) -> Vec<Listener> {
        let bind = super::super::listeners::parse_bind_list(text).unwrap();
        super::super::listeners::resolve(bind, Vec::new(), None).unwrap()
    }

    #[test]
    fn the_inter_broker_listener_is_named_or_the_plaintext_one() {
        let both = listeners("SASL_PLAINTEXT://127.0.0.1:9093,PLAINTEXT://127.0.0.1:9092");
        let default = InterBrokerConfig::resolve(&both, InterBrokerOptions::default()).unwrap();
        assert_eq!(default.protocol, SecurityProtocol::Plaintext);
        assert!(default.sasl.is_none());
        let named = InterBrokerOptions {
            listener_name: Some("SASL_PLAINTEXT".into()),
            ..InterBrokerOptions::default()
        };
        let without = InterBrokerConfig::resolve(&both, named.clone()).unwrap();
        let error = without.check_for_cluster().unwrap_err();
        assert!(error.to_string().contains("--inter-broker-user"), "{error}");
        assert!(without.warning(1).is_none() && without.warning(2).is_some());
        let with_user = InterBrokerOptions {
            user: Some("broker".into()),
            password: Some("secret".into()),
            ..named
        };
        let sasl = InterBrokerConfig::resolve(&both, with_user).unwrap();
        sasl.check_for_cluster().unwrap();
        assert_eq!(sasl.protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(sasl.listener(&both).address.port(), 9093);
        let credentials = sasl.sasl.clone().unwrap();
        assert_eq!(credentials.user, "broker");
        assert!(
            !format!("{sasl:?}").contains("secret"),
            "the password is never printed"
        );
        let missing = InterBrokerOptions {
            listener_name: Some("SSL".into()),
            ..InterBrokerOptions::default()
        };
        assert!(InterBrokerConfig::resolve(&both, missing).is_err());
        let sasl_only = listeners("SASL_SSL://127.0.0.1:9094");
        let default = InterBrokerConfig::resolve(&sasl_only, InterBrokerOptions::default());
        assert!(
            default.unwrap().check_for_cluster().is_err(),
            "SASL_SSL needs credentials"
        );
        let half = InterBrokerOptions {
            user: Some("broker".into()),
            ..InterBrokerOptions::default()
        };
        assert!(InterBrokerConfig::resolve(&sasl_only, half).is_err());
    }
}
