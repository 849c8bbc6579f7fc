//! One connection's security state: which listener it came in on, whether (and as whom) it
//! has authenticated, and the SASL exchange in progress.
//!
//! The sequence is Kafka's `SaslServerAuthenticator` with SaslHandshake v1 (the mechanism's
//! messages travel in SaslAuthenticate requests): optional ApiVersions, SaslHandshake naming a
//! mechanism, then SaslAuthenticate until the mechanism is done. Any other request before
//! that closes the connection, as does any request after a failed authentication. Once
//! authenticated, a client may authenticate again on the same connection (KIP-368, as the
//! principal it already is); with `--connections-max-reauth-ms` it must, before its session
//! lifetime ends, or its next request closes the connection.

use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use super::listeners::SecurityProtocol;
use super::plain;
use super::scram::{self, ScramServer, ScramStep};
use crate::metadata::image::MetadataImage;

/// Largest frame a client may send before it has authenticated (Kafka's
/// `sasl.server.max.receive.size`): an anonymous peer cannot make the broker hold more.
pub const UNAUTHENTICATED_FRAME_BYTES_MAX: usize = 512 * 1024;

/// A SASL mechanism Spate serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616), checked against the stored SCRAM credentials.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(scram::Mechanism),
}

impl SaslMechanism {
    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(mechanism) => mechanism.name(),
        }
    }

    /// The mechanism of a name, exactly as Kafka spells it.
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            other => scram::Mechanism::from_name(other).map(SaslMechanism::Scram),
        }
    }

    /// Parses `--sasl-mechanisms` (comma-separated).
    pub fn parse_list(list: &str) -> anyhow::Result<Vec<SaslMechanism>> {
        let mut mechanisms = Vec::new();
        for name in list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            let mechanism = SaslMechanism::from_name(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "--sasl-mechanisms: {name:?} is not served (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
                )
            })?;
            if !mechanisms.contains(&mechanism) {
                mechanisms.push(mechanism);
            }
        }
        if mechanisms.is_empty() {
            anyhow::bail!("--sasl-mechanisms names no mechanism");
        }
        Ok(mechanisms)
    }
}

/// SASL settings of a node.
#[derive(Clone, Debug)]
pub struct SaslConfig {
    /// Mechanisms clients may use (`--sasl-mechanisms`, Kafka's sasl.enabled.mechanisms).
    pub mechanisms: Vec<SaslMechanism>,
    /// connections.max.reauth.ms: how long an authentication lasts (`None`: for the
    /// connection's life).
    pub session_lifetime: Option<Duration>,
}

impl Default for SaslConfig {
    fn default() -> SaslConfig {
        SaslConfig {
            mechanisms: vec![
                SaslMechanism::Scram(scram::Mechanism::ScramSha256),
                SaslMechanism::Scram(scram::Mechanism::ScramSha512),
            ],
            session_lifetime: None,
        }
    }
}

/// The principal of a connection that did not authenticate (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "ANONYMOUS";

/// Where a connection's SASL exchange stands.
enum State {
    /// A listener without SASL.
    NotRequired,
    /// Waiting for SaslHandshake.
    Handshake,
    /// The mechanism is chosen; waiting for its first message.
    Authenticate(SaslMechanism),
    /// A SCRAM exchange after its first message.
    Scram(Box<ScramServer>),
    /// Authenticated (possibly until `expires`).
    Authenticated,
    /// Authentication failed: the next request closes the connection.
    Failed,
}

/// What a SaslAuthenticate answers.
pub struct AuthenticateOutcome {
    /// Kafka error code (NONE, SASL_AUTHENTICATION_FAILED or ILLEGAL_SASL_STATE).
    pub error_code: i16,
    /// Message for the client on failure.
    pub error_message: Option<String>,
    /// The mechanism's next message for the client.
    pub auth_bytes: Vec<u8>,
    /// session_lifetime_ms (0: none).
    pub session_lifetime_ms: i64,
    /// Why authentication failed, for the broker's log (the client may be told less).
    pub log_reason: Option<String>,
}

/// One connection's security state; see the module docs.
pub struct Session {
    protocol: SecurityProtocol,
    state: State,
    /// The authenticated user (without the `User:` prefix), or [`ANONYMOUS`].
    user: String,
    /// `User:` and `user`, made once per authentication: every request carries it to the
    /// authorizer.
    principal: std::rc::Rc<str>,
    /// When the authentication runs out, if it does.
    expires: Option<Instant>,
    /// Whether the session has authenticated once (so a new exchange is a re-authentication).
    authenticated_once: bool,
}

impl Session {
    /// The state of a new connection on a listener of `protocol`.
    pub fn new(protocol: SecurityProtocol) -> Session {
        Session {
            protocol,
            state: if protocol.requires_sasl() {
                State::Handshake
            } else {
                State::NotRequired
            },
            user: ANONYMOUS.to_string(),
            principal: format!("User:{ANONYMOUS}").into(),
            expires: None,
            authenticated_once: false,
        }
    }

    /// Takes a verified client certificate's principal (`User:CN=alice,...`, from
    /// `security::certificate`) as the connection's, as Kafka's SSL listeners do. On a
    /// SASL_SSL listener the SASL user replaces it once the client authenticates.
    pub fn set_certificate_principal(&mut self, principal: String) {
        self.user = principal
            .strip_prefix("User:")
            .unwrap_or(&principal)
            .to_string();
        self.principal = principal.into();
    }

    /// The listener's name (its protocol), which picks the endpoints clients are told.
    pub fn listener(&self) -> &'static str {
        self.protocol.name()
    }

    /// The connection's principal, as Kafka writes it (`User:alice`).
    pub fn principal(&self) -> std::rc::Rc<str> {
        self.principal.clone()
    }

    /// Whether the last exchange has completed with an authentication.
    pub fn is_authenticated_now(&self) -> bool {
        matches!(self.state, State::Authenticated)
    }

    /// Whether requests other than the SASL ones are served (which also means that large
    /// frames may be read and produce batches streamed).
    pub fn is_open(&self) -> bool {
        match self.state {
            State::NotRequired | State::Authenticated => true,
            // A re-authentication in progress keeps the connection open (KIP-368).
            State::Handshake | State::Authenticate(_) | State::Scram(_) => self.authenticated_once,
            State::Failed => false,
        }
    }

    /// Checks a request's API against the state; `Err` says why the connection closes.
    pub fn admit(&self, api_key: ApiKey, now: Instant) -> Result<(), String> {
        if matches!(self.state, State::Failed) {
            return Err(format!(
                "{api_key:?} request after a failed SASL authentication"
            ));
        }
        if matches!(
            api_key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        ) {
            return Ok(());
        }
        if !self.is_open() {
            return Err(format!(
                "unexpected {api_key:?} request before SASL authentication"
            ));
        }
        if self.expires.is_some_and(|expires| now >= expires) {
            return Err(format!(
                "{api_key:?} request after the SASL session of {} expired (connections.max.reauth.ms); the client did not re-authenticate",
                self.principal()
            ));
        }
        Ok(())
    }

    /// SaslHandshake: picks the mechanism. Returns the error code; the enabled mechanisms
    /// go in the response either way.
    pub fn handshake(&mut self, mechanism: &str, config: &SaslConfig) -> i16 {
        use spate_net::error_code::{ILLEGAL_SASL_STATE, NONE, UNSUPPORTED_SASL_MECHANISM};
        match self.state {
            State::Handshake | State::Authenticated => {}
            _ => return ILLEGAL_SASL_STATE,
        }
        if !self.protocol.requires_sasl() {
            return ILLEGAL_SASL_STATE;
        }
        match SaslMechanism::from_name(mechanism) {
            Some(mechanism) if config.mechanisms.contains(&mechanism) => {
                self.state = State::Authenticate(mechanism);
                NONE
            }
            _ => UNSUPPORTED_SASL_MECHANISM,
        }
    }

    /// SaslAuthenticate: one message of the chosen mechanism, checked against `image`'s
    /// credentials.
    pub fn authenticate(
        &mut self,
        message: &[u8],
        image: &MetadataImage,
        config: &SaslConfig,
        now: Instant,
    ) -> AuthenticateOutcome {
        use spate_net::error_code::{ILLEGAL_SASL_STATE, NONE, SASL_AUTHENTICATION_FAILED};
        let mechanism = match &self.state {
            State::Authenticate(mechanism) => *mechanism,
            State::Scram(server) => SaslMechanism::Scram(server.mechanism()),
            _ => SaslMechanism::Plain,
        };
        let step = match std::mem::replace(&mut self.state, State::Failed) {
            State::Authenticate(SaslMechanism::Plain) => {
                plain::authenticate(message, |user, password| {
                    image.verifies_password(user, password)
                })
                .map(|user| ScramStep::Done {
                    user,
                    reply: Vec::new(),
                })
            }
            State::Authenticate(SaslMechanism::Scram(mechanism)) => {
                let mut server = Box::new(ScramServer::new(mechanism));
                let step = server.step(message, |user| image.scram_credential(user, mechanism));
                if step.is_ok() {
                    self.state = State::Scram(server);
                }
                step
            }
            State::Scram(mut server) => {
                let step = server.step(message, |_| None);
                if step.is_ok() {
                    self.state = State::Scram(server);
                }
                step
            }
            other => {
                // Out of sequence: Kafka answers ILLEGAL_SASL_STATE; a client that did not
                // authenticate may not go on.
                let error_message = match &other {
                    State::NotRequired => "SaslAuthenticate on a listener without SASL",
                    _ => "SaslAuthenticate without a SaslHandshake before it",
                };
                if matches!(other, State::NotRequired | State::Authenticated) {
                    self.state = other;
                }
                return AuthenticateOutcome {
                    error_code: ILLEGAL_SASL_STATE,
                    error_message: Some(error_message.to_string()),
                    auth_bytes: Vec::new(),
                    session_lifetime_ms: 0,
                    log_reason: None,
                };
            }
        };
        match step {
            Ok(ScramStep::Continue(reply)) => AuthenticateOutcome {
                error_code: NONE,
                error_message: None,
                auth_bytes: reply,
                session_lifetime_ms: 0,
                log_reason: None,
            },
            Ok(ScramStep::Done { user, reply }) => {
                if self.authenticated_once && user != self.user {
                    self.state = State::Failed;
                    return AuthenticateOutcome {
                        error_code: SASL_AUTHENTICATION_FAILED,
                        error_message: Some(format!(
                            "Cannot change principals during re-authentication from User:{}: User:{user}",
                            self.user
                        )),
                        auth_bytes: Vec::new(),
                        session_lifetime_ms: 0,
                    log_reason: None,
                    };
                }
                self.principal = format!("User:{user}").into();
                self.user = user;
                self.state = State::Authenticated;
                self.authenticated_once = true;
                self.expires = config.session_lifetime.map(|lifetime| now + lifetime);
                AuthenticateOutcome {
                    error_code: NONE,
                    error_message: None,
                    auth_bytes: reply,
                    session_lifetime_ms: config
                        .session_lifetime
                        .map_or(0, |lifetime| lifetime.as_millis() as i64),
                    log_reason: None,
                }
            }
            Err(error) => {
                self.state = State::Failed;
                // Kafka tells the client only some reasons; the rest (an unknown user among
                // them) get one general message, so that a peer cannot probe for user names.
                // The broker logs the real reason.
                let for_client = if error.is_sent_to_client() {
                    error.to_string()
                } else {
                    format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {}", mechanism.name())
                };
                AuthenticateOutcome {
                    error_code: SASL_AUTHENTICATION_FAILED,
                    error_message: Some(for_client),
                    log_reason: Some(error.to_string()),
                    auth_bytes: Vec::new(),
                    session_lifetime_ms: 0,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::records::MetadataRecord;
    use crate::security::scram::{Mechanism, ScramCredential};
    use spate_net::error_code::{
        ILLEGAL_SASL_STATE, NONE, SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM,
    };

    fn image_with(users: &[&str]) -> MetadataImage {
        let records: Vec<MetadataRecord> = users
            .iter()
            .map(|user| MetadataRecord::ScramCredential {
                user: user.to_string(),
                mechanism: Mechanism::ScramSha256,
                credential: ScramCredential::from_password(
                    Mechanism::ScramSha256,
                    &format!("{user}-secret"),
                    b"salt",
                    4096,
                ),
            })
            .collect();
        MetadataImage::default().apply_all(&records).unwrap()
    }

    fn plain_config(lifetime: Option<Duration>) -> SaslConfig {
        SaslConfig {
            mechanisms: vec![SaslMechanism::Plain],
            session_lifetime: lifetime,
        }
    }

    fn plain(user: &str, password: &str) -> Vec<u8> {
        format!("\0{user}\0{password}").into_bytes()
    }

    #[test]
    fn a_plaintext_listener_serves_everything_and_refuses_sasl() {
        let mut session = Session::new(SecurityProtocol::Plaintext);
        let now = Instant::now();
        assert!(session.admit(ApiKey::Produce, now).is_ok());
        assert_eq!(
            session.handshake("PLAIN", &plain_config(None)),
            ILLEGAL_SASL_STATE
        );
        let outcome = session.authenticate(b"x", &image_with(&[]), &plain_config(None), now);
        assert_eq!(outcome.error_code, ILLEGAL_SASL_STATE);
        assert!(session.admit(ApiKey::Fetch, now).is_ok());
        assert_eq!(&*session.principal(), "User:ANONYMOUS");
    }

    #[test]
    fn a_sasl_listener_serves_nothing_else_until_authenticated() {
        let image = image_with(&["alice"]);
        let config = plain_config(None);
        let now = Instant::now();
        let mut session = Session::new(SecurityProtocol::SaslPlaintext);
        assert!(session.admit(ApiKey::ApiVersions, now).is_ok());
        assert!(session.admit(ApiKey::Metadata, now).is_err());
        assert!(session.admit(ApiKey::Produce, now).is_err());
        assert!(!session.is_open());
        // Authenticate before the handshake: refused, and the connection may not go on.
        let early = session.authenticate(&plain("alice", "alice-secret"), &image, &config, now);
        assert_eq!(early.error_code, ILLEGAL_SASL_STATE);
        assert!(session.admit(ApiKey::ApiVersions, now).is_err());

        let mut session = Session::new(SecurityProtocol::SaslPlaintext);
        assert_eq!(
            session.handshake("SCRAM-SHA-512", &config),
            UNSUPPORTED_SASL_MECHANISM
        );
        assert_eq!(session.handshake("PLAIN", &config), NONE);
        let outcome = session.authenticate(&plain("alice", "alice-secret"), &image, &config, now);
        assert_eq!(outcome.error_code, NONE, "{:?}", outcome.error_message);
        assert!(session.is_open());
        assert!(session.admit(ApiKey::Produce, now).is_ok());
        assert_eq!(&*session.principal(), "User:alice");
    }

    #[test]
    fn a_failed_authentication_closes_the_connection_and_says_little() {
        let image = image_with(&["alice"]);
        let config = plain_config(None);
        let now = Instant::now();
        for (user, password) in [("alice", "wrong"), ("mallory", "x")] {
            let mut session = Session::new(SecurityProtocol::SaslPlaintext);
            assert_eq!(session.handshake("PLAIN", &config), NONE);
            let outcome = session.authenticate(&plain(user, password), &image, &config, now);
            assert_eq!(outcome.error_code, SASL_AUTHENTICATION_FAILED);
            assert!(outcome.log_reason.is_some());
            assert!(session.admit(ApiKey::ApiVersions, now).is_err());
            assert!(session.admit(ApiKey::SaslHandshake, now).is_err());
        }
    }

    #[test]
    fn re_authentication_keeps_the_principal_and_the_lifetime_is_enforced() {
        let image = image_with(&["alice", "bob"]);
        let config = plain_config(Some(Duration::from_secs(60)));
        let now = Instant::now();
        let mut session = Session::new(SecurityProtocol::SaslPlaintext);
        session.handshake("PLAIN", &config);
        let outcome = session.authenticate(&plain("alice", "alice-secret"), &image, &config, now);
        assert_eq!(outcome.session_lifetime_ms, 60_000);
        assert!(session.admit(ApiKey::Fetch, now).is_ok());
        let late = now + Duration::from_secs(61);
        assert!(session.admit(ApiKey::Fetch, late).is_err());
        // Re-authenticating as the same user renews the session...
        assert_eq!(session.handshake("PLAIN", &config), NONE);
        assert!(
            session.admit(ApiKey::Fetch, now).is_ok(),
            "open while re-authenticating"
        );
        let again = session.authenticate(&plain("alice", "alice-secret"), &image, &config, late);
        assert_eq!(again.error_code, NONE);
        assert!(session.admit(ApiKey::Fetch, late).is_ok());
        // ...as another user is refused.
        assert_eq!(session.handshake("PLAIN", &config), NONE);
        let other = session.authenticate(&plain("bob", "bob-secret"), &image, &config, late);
        assert_eq!(other.error_code, SASL_AUTHENTICATION_FAILED);
        assert!(session.admit(ApiKey::Fetch, late).is_err());
    }

    #[test]
    fn mechanisms_parse_by_kafka_names() {
        assert_eq!(
            SaslMechanism::parse_list("PLAIN, SCRAM-SHA-512").unwrap(),
            vec![
                SaslMechanism::Plain,
                SaslMechanism::Scram(Mechanism::ScramSha512)
            ]
        );
        assert!(SaslMechanism::parse_list("GSSAPI").is_err());
        assert!(SaslMechanism::parse_list("").is_err());
    }
}
