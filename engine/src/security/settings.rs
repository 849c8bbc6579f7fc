//! The listener and security settings of `spate serve`: `--listeners` (or the older
//! `--listen`), what they advertise, TLS, SASL, the authorizer, and how brokers reach each
//! other. [`SecurityArgs`] is flattened into `config::ServeArgs`, so its flags, environment
//! variables and TOML keys are `spate serve`'s like any other; [`SecurityArgs::resolve`] turns
//! them into the [`SecuritySettings`] the rest of `config` puts in `BrokerConfig`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::acl::AuthorizerConfig;
use super::inter_broker::{InterBrokerConfig, InterBrokerOptions};
use super::session::{SaslConfig, SaslMechanism};
use super::tls::TlsSettings;
use super::Listener;

/// The listener and security flags (also read from the environment and the config file).
#[derive(Debug, Default, Args)]
pub struct SecurityArgs {
    /// Bootstrap address. Shard s of this node listens on the same host at port PORT+s and is
    /// advertised to clients as its own broker. [default: 127.0.0.1:9092]
    #[arg(long, env = "SPATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Host name advertised to clients in Metadata. [default: the --listen host, or
    /// 127.0.0.1 when listening on 0.0.0.0]
    #[arg(long, env = "SPATE_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// Listeners with Kafka's names, instead of --listen: `PLAINTEXT://HOST:PORT`,
    /// `SASL_PLAINTEXT://HOST:PORT`, comma-separated (shard s of each listens on its port + s).
    /// Clients are told the endpoints of the listener they connected to. Brokers reach each
    /// other on the one --inter-broker-listener-name names. [default: PLAINTEXT://<--listen>]
    #[arg(long, env = "SPATE_LISTENERS", conflicts_with = "listen")]
    pub listeners: Option<String>,
    /// What each listener advertises, `NAME://HOST:PORT`, comma-separated; a listener not
    /// named advertises its own address (with --advertised-host as the host, when given).
    #[arg(long, env = "SPATE_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
    /// SASL mechanisms clients of SASL listeners may use (Kafka's sasl.enabled.mechanisms):
    /// any of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512. PLAIN checks passwords against the users'
    /// SCRAM credentials (`spate user add`). [default: SCRAM-SHA-256,SCRAM-SHA-512]
    #[arg(long, alias = "sasl-enabled-mechanisms", env = "SPATE_SASL_MECHANISMS")]
    pub sasl_mechanisms: Option<String>,
    /// How long a SASL authentication lasts before the client must authenticate again on the
    /// same connection (KIP-368, connections.max.reauth.ms); 0: for the connection's life.
    /// [default: 0]
    #[arg(long, env = "SPATE_CONNECTIONS_MAX_REAUTH_MS")]
    pub connections_max_reauth_ms: Option<u64>,
    /// `acl` checks every request against the ACLs (`spate acl add`, CreateAcls) with Kafka's
    /// semantics; `none` allows everything. [default: none]
    #[arg(long, env = "SPATE_AUTHORIZER")]
    pub authorizer: Option<String>,
    /// Principals the authorizer allows everything, `User:admin;User:ops` (Kafka's
    /// super.users).
    #[arg(long, env = "SPATE_SUPER_USERS")]
    pub super_users: Option<String>,
    /// With `--authorizer acl`, allow everyone on resources that no ACL names (Kafka's
    /// allow.everyone.if.no.acl.found). [default: false]
    #[arg(long, env = "SPATE_ALLOW_EVERYONE_IF_NO_ACL_FOUND", num_args = 0..=1, default_missing_value = "true")]
    pub allow_everyone_if_no_acl_found: Option<bool>,
    /// Certificate chain of SSL and SASL_SSL listeners, PEM, leaf first.
    #[arg(long, env = "SPATE_SSL_CERT")]
    pub ssl_cert: Option<PathBuf>,
    /// Private key of --ssl-cert, PEM.
    #[arg(long, env = "SPATE_SSL_KEY")]
    pub ssl_key: Option<PathBuf>,
    /// CA certificates, PEM, that client certificates must chain to.
    #[arg(long, env = "SPATE_SSL_CA")]
    pub ssl_ca: Option<PathBuf>,
    /// Whether TLS clients present a certificate: none, requested or required (Kafka's
    /// ssl.client.auth). [default: none]
    #[arg(long, env = "SPATE_SSL_CLIENT_AUTH")]
    pub ssl_client_auth: Option<String>,
    /// How a client certificate's subject becomes its principal (Kafka's
    /// ssl.principal.mapping.rules): `RULE:pattern/replacement/[L|U]` and `DEFAULT` (the whole
    /// subject), comma-separated, first match wins; a subject no rule matches is refused.
    /// [default: DEFAULT]
    #[arg(long, env = "SPATE_SSL_PRINCIPAL_MAPPING_RULES")]
    pub ssl_principal_mapping_rules: Option<String>,
    /// The listener brokers of a cluster reach each other on (Kafka's
    /// inter.broker.listener.name), by its name: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    /// [default: the PLAINTEXT listener, else the first]
    #[arg(long, env = "SPATE_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,
    /// The SASL mechanism brokers log in to each other with on a SASL inter-broker listener
    /// (Kafka's sasl.mechanism.inter.broker.protocol). [default: SCRAM-SHA-512]
    #[arg(
        long,
        alias = "sasl-mechanism-inter-broker-protocol",
        env = "SPATE_INTER_BROKER_SASL_MECHANISM"
    )]
    pub inter_broker_sasl_mechanism: Option<String>,
    /// The user brokers log in to each other as on a SASL inter-broker listener (add it with
    /// `spate user add`, and to --super-users when the authorizer is on).
    #[arg(long, env = "SPATE_INTER_BROKER_USER")]
    pub inter_broker_user: Option<String>,
    /// Its password; prefer the environment variable, which `ps` does not show.
    #[arg(long, env = "SPATE_INTER_BROKER_PASSWORD", hide_env_values = true)]
    pub inter_broker_password: Option<String>,
}

/// The resolved settings.
#[derive(Debug)]
pub struct SecuritySettings {
    /// Every listener, with what it advertises.
    pub listeners: Vec<Listener>,
    /// The inter-broker listener's address (what `--listen` gave before listeners existed).
    pub listen: SocketAddr,
    /// The host the inter-broker listener advertises.
    pub advertised_host: String,
    /// SASL on SASL listeners.
    pub sasl: SaslConfig,
    /// TLS on SSL and SASL_SSL listeners (and the controller port, if secured).
    pub tls: Option<TlsSettings>,
    /// How brokers reach each other.
    pub inter_broker: InterBrokerConfig,
    /// The authorizer.
    pub authorizer: AuthorizerConfig,
}

impl SecurityArgs {
    /// Each setting from `self` (flags and environment), else from `file`.
    pub fn or(self, file: SecurityArgs) -> SecurityArgs {
        SecurityArgs {
            listen: self.listen.or(file.listen),
            advertised_host: self.advertised_host.or(file.advertised_host),
            listeners: self.listeners.or(file.listeners),
            advertised_listeners: self.advertised_listeners.or(file.advertised_listeners),
            sasl_mechanisms: self.sasl_mechanisms.or(file.sasl_mechanisms),
            connections_max_reauth_ms: self
                .connections_max_reauth_ms
                .or(file.connections_max_reauth_ms),
            authorizer: self.authorizer.or(file.authorizer),
            super_users: self.super_users.or(file.super_users),
            allow_everyone_if_no_acl_found: self
                .allow_everyone_if_no_acl_found
                .or(file.allow_everyone_if_no_acl_found),
            ssl_cert: self.ssl_cert.or(file.ssl_cert),
            ssl_key: self.ssl_key.or(file.ssl_key),
            ssl_ca: self.ssl_ca.or(file.ssl_ca),
            ssl_client_auth: self.ssl_client_auth.or(file.ssl_client_auth),
            ssl_principal_mapping_rules: self
                .ssl_principal_mapping_rules
                .or(file.ssl_principal_mapping_rules),
            inter_broker_listener_name: self
                .inter_broker_listener_name
                .or(file.inter_broker_listener_name),
            inter_broker_sasl_mechanism: self
                .inter_broker_sasl_mechanism
                .or(file.inter_broker_sasl_mechanism),
            inter_broker_user: self.inter_broker_user.or(file.inter_broker_user),
            inter_broker_password: self.inter_broker_password.or(file.inter_broker_password),
        }
    }

    /// Checks and resolves the settings, with their defaults.
    pub fn resolve(self) -> anyhow::Result<SecuritySettings> {
        let listeners = resolve_listeners(
            self.listen,
            self.listeners,
            self.advertised_listeners,
            self.advertised_host,
        )?;
        let inter_broker = InterBrokerConfig::resolve(
            &listeners,
            InterBrokerOptions {
                listener_name: self.inter_broker_listener_name,
                mechanism: self.inter_broker_sasl_mechanism,
                user: self.inter_broker_user,
                password: self.inter_broker_password,
            },
        )?;
        let inter_broker_listener = inter_broker.listener(&listeners);
        let listen = inter_broker_listener.address;
        let advertised_host = inter_broker_listener.advertised_host.clone();
        let tls = resolve_tls(
            &listeners,
            self.ssl_cert,
            self.ssl_key,
            self.ssl_ca,
            self.ssl_client_auth,
            self.ssl_principal_mapping_rules,
        )?;
        let sasl = SaslConfig {
            mechanisms: match self.sasl_mechanisms {
                Some(list) => SaslMechanism::parse_list(&list)?,
                None => SaslConfig::default().mechanisms,
            },
            session_lifetime: self
                .connections_max_reauth_ms
                .filter(|&ms| ms > 0)
                .map(std::time::Duration::from_millis),
        };
        let authorizer = AuthorizerConfig {
            enabled: match self.authorizer.as_deref() {
                None | Some("none") | Some("") => false,
                Some("acl") => true,
                Some(other) => anyhow::bail!("--authorizer {other}: expected acl or none"),
            },
            super_users: match self.super_users {
                Some(list) => AuthorizerConfig::parse_super_users(&list)?,
                None => Vec::new(),
            },
            allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found.unwrap_or(false),
        };
        Ok(SecuritySettings {
            listeners,
            listen,
            advertised_host,
            sasl,
            tls,
            inter_broker,
            authorizer,
        })
    }
}

/// `--listeners` (or the single `--listen` address as PLAINTEXT) with what each advertises.
fn resolve_listeners(
    listen: Option<SocketAddr>,
    listeners: Option<String>,
    advertised_listeners: Option<String>,
    advertised_host: Option<String>,
) -> anyhow::Result<Vec<super::Listener>> {
    use super::listeners::{parse_advertised_list, parse_bind_list, SecurityProtocol};
    let bind = match (listen, listeners) {
        (Some(_), Some(_)) => anyhow::bail!("give --listen or --listeners, not both"),
        (_, Some(list)) => parse_bind_list(&list)?,
        (listen, None) => vec![(
            SecurityProtocol::Plaintext,
            listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9092))),
        )],
    };
    let advertised = match advertised_listeners {
        Some(list) => parse_advertised_list(&list)?,
        None => Vec::new(),
    };
    super::listeners::resolve(bind, advertised, advertised_host.as_deref())
}

/// The TLS settings, required when a listener is SSL or SASL_SSL.
fn resolve_tls(
    listeners: &[super::Listener],
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    client_auth: Option<String>,
    principal_mapping: Option<String>,
) -> anyhow::Result<Option<super::tls::TlsSettings>> {
    use super::tls::{ClientAuth, TlsSettings};
    let needed = listeners.iter().any(|listener| listener.protocol.is_tls());
    let client_auth = client_auth
        .as_deref()
        .map(ClientAuth::parse)
        .transpose()?
        .unwrap_or(ClientAuth::None);
    let principal_mapping = principal_mapping
        .as_deref()
        .map(super::principal_mapping::PrincipalMapper::parse)
        .transpose()?
        .unwrap_or_default();
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsSettings {
            cert,
            key,
            ca,
            client_auth,
            principal_mapping,
        })),
        (None, None) if !needed => Ok(None),
        (None, None) => anyhow::bail!("an SSL or SASL_SSL listener needs --ssl-cert and --ssl-key"),
        _ => anyhow::bail!("give both --ssl-cert and --ssl-key"),
    }
}
