//! The server side of SASL/SCRAM-SHA-256 and SASL/SCRAM-SHA-512 (RFC 5802, RFC 7677): the
//! credential a broker stores per user and mechanism ([`ScramCredential`], never the password),
//! and the two-round exchange ([`ScramServer`]) as a pure state machine with no I/O, fed the
//! `auth_bytes` of each SaslAuthenticate request. It follows Apache Kafka's `ScramSaslServer`,
//! `ScramMessages` and `ScramFormatter`, so Kafka's clients (Java and librdkafka) see the same
//! exchange and the same error messages; where Kafka is laxer than the RFC (a stray `m=`
//! extension, an escaped authorization id), the RFC is followed. [`AuthError`] is shared with
//! SASL/PLAIN (`plain.rs`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// The largest client message either mechanism accepts, in bytes: real SCRAM and PLAIN messages
/// are a few hundred bytes, and the bound keeps an unauthenticated peer from making the broker
/// parse or hash megabytes.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// The smallest iteration count Kafka allows for a SCRAM credential (for both mechanisms); a
/// stored credential below it is refused at authentication, as Kafka does.
pub const MIN_ITERATIONS: u32 = 4096;

/// The largest iteration count Kafka allows in AlterUserScramCredentials (for both mechanisms).
pub const MAX_ITERATIONS: u32 = 16384;

/// The iteration count `kafka-configs --alter --add-config 'SCRAM-SHA-256=[password=...]'` uses
/// when none is given.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Length of the random salt [`ScramCredential::generate`] draws.
const SALT_BYTES: usize = 32;

/// Length of the random part of the server nonce, before encoding.
const SERVER_NONCE_BYTES: usize = 32;

/// A SCRAM mechanism, with Kafka's ScramMechanism codes (DescribeUserScramCredentials /
/// AlterUserScramCredentials): 1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    /// SCRAM with SHA-256 and HMAC-SHA-256 (RFC 7677); Kafka code 1.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512 and HMAC-SHA-512; Kafka code 2.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    /// Both mechanisms, in code order, for listing what the broker enables or stores.
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    /// The SASL mechanism name, as in SaslHandshake and Kafka's configuration.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name; exact and case-sensitive, as Kafka matches it.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's ScramMechanism code, as carried by the user SCRAM credential APIs.
    pub fn code(self) -> i8 {
        match self {
            Mechanism::ScramSha256 => 1,
            Mechanism::ScramSha512 => 2,
        }
    }

    /// The mechanism of a Kafka ScramMechanism code; `None` for 0 (UNKNOWN) and anything else.
    pub fn from_code(code: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    /// The hash's output length in bytes: the length of every key, signature and proof.
    fn hash_len(self) -> usize {
        match self {
            Mechanism::ScramSha256 => 32,
            Mechanism::ScramSha512 => 64,
        }
    }

    /// H(data).
    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
            Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => mac::<Hmac<Sha256>>(key, data),
            Mechanism::ScramSha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    /// SaltedPassword = Hi(password, salt, i), which is PBKDF2 with HMAC-H.
    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.hash_len()];
        match self {
            Mechanism::ScramSha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out)
            }
            Mechanism::ScramSha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut out)
            }
        }
        out
    }

    /// StoredKey = H(HMAC(SaltedPassword, "Client Key")).
    fn stored_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.hash(&self.hmac(salted_password, b"Client Key"))
    }

    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    fn server_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.hmac(salted_password, b"Server Key")
    }
}

/// One HMAC computation with a concrete MAC type.
fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length (longer ones are hashed), so this never fails.
    let mut m = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Equality of two byte strings in time that depends only on their lengths (which are not
/// secret here): every byte is compared, with no early return.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// What the broker stores per user and mechanism, never the password: Kafka's ScramCredential.
/// The byte strings are base64 strings in serde, because the credential goes into the JSON
/// metadata journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// The salt the password was salted with, sent to the client in server-first.
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    /// H(ClientKey): what the client's proof is checked against.
    #[serde(with = "base64_bytes")]
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key"): signs server-final so the client can check the broker.
    #[serde(with = "base64_bytes")]
    pub server_key: Vec<u8>,
    /// The PBKDF2 iteration count, sent to the client in server-first.
    pub iterations: u32,
}

impl ScramCredential {
    /// The credential of a password: SaltedPassword = PBKDF2-HMAC-H(password, salt, iterations),
    /// ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = H(ClientKey),
    /// ServerKey = HMAC(SaltedPassword, "Server Key"). The caller keeps `iterations` within
    /// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`]: the work is proportional to it.
    pub fn from_password(
        mechanism: Mechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let salted = mechanism.salted_password(password, salt, iterations);
        ScramCredential::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// The credential of an already salted password, which is what AlterUserScramCredentials
    /// carries (`salt`, `salted_password`, `iterations`): the client ran PBKDF2, the broker
    /// only derives the two keys.
    pub fn from_salted_password(
        mechanism: Mechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        ScramCredential {
            salt: salt.to_vec(),
            stored_key: mechanism.stored_key(salted_password),
            server_key: mechanism.server_key(salted_password),
            iterations,
        }
    }

    /// The credential of a password with a fresh random 32-byte salt from the thread's
    /// cryptographically secure generator, for users created from a clear password.
    pub fn generate(mechanism: Mechanism, password: &str, iterations: u32) -> ScramCredential {
        ScramCredential::from_password(mechanism, password, &random_salt(), iterations)
    }

    /// Whether `password` is this credential's password, so SASL/PLAIN can authenticate users
    /// that only have SCRAM credentials: derives StoredKey again (a full PBKDF2 run) and compares
    /// it in constant time.
    pub fn verifies_password(&self, mechanism: Mechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password, &self.salt, self.iterations);
        constant_time_eq(&mechanism.stored_key(&salted), &self.stored_key)
    }
}

/// Serde for byte strings as standard, padded base64 strings.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    /// Writes `bytes` as one base64 string.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    /// Reads one base64 string; anything else is a deserialization error.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(D::Error::custom)
    }
}

/// Why a SASL exchange (SCRAM or PLAIN) failed. `Display` is the message Kafka's broker raises
/// for the same failure. Kafka sends that message to the client only for the failures
/// [`AuthError::is_sent_to_client`] names (its `SaslAuthenticationException`s); for the others
/// it sends "Authentication failed during authentication due to invalid credentials with SASL
/// mechanism NAME", so that nothing (such as whether a user exists) leaks to an unauthenticated
/// peer, and logs this one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client message is longer than [`MAX_MESSAGE_BYTES`].
    #[error("Invalid SASL message: {len} bytes, more than the {MAX_MESSAGE_BYTES} allowed")]
    MessageTooLong {
        /// The message's length in bytes.
        len: usize,
    },
    /// The SCRAM client-first message does not parse, or asks for something not supported
    /// (channel binding, mandatory extensions).
    #[error("Invalid SCRAM client first message format: {0}")]
    InvalidClientFirst(&'static str),
    /// The SCRAM client-final message does not parse.
    #[error("Invalid SCRAM client final message format: {0}")]
    InvalidClientFinal(&'static str),
    /// The client asked for delegation-token authentication (`tokenauth=true`), which this
    /// broker does not have.
    #[error("Token Authentication failed: delegation tokens are not supported")]
    DelegationTokensNotSupported,
    /// The user has no credential for this mechanism (or does not exist).
    #[error("Authentication failed: Invalid user credentials")]
    InvalidUserCredentials,
    /// The client asked to act as another user than the one it authenticates as.
    #[error(
        "Authentication failed: Client requested an authorization id that is different from username"
    )]
    AuthorizationIdMismatch,
    /// The stored credential's iteration count is below [`MIN_ITERATIONS`].
    #[error("Iterations {iterations} is less than the minimum {MIN_ITERATIONS} for {}", .mechanism.name())]
    IterationsTooLow {
        /// The stored credential's iteration count.
        iterations: u32,
        /// The mechanism being authenticated.
        mechanism: Mechanism,
    },
    /// client-final's `r=` is not the nonce of server-first.
    #[error("Invalid client nonce in the final client message.")]
    InvalidNonce,
    /// client-final's `c=` is not the base64 of the GS2 header the client sent first.
    #[error("Authentication failed: channel binding does not match the GS2 header")]
    ChannelBindingMismatch,
    /// The client's proof is wrong: a wrong password, in effect.
    #[error("Invalid client credentials")]
    InvalidClientProof,
    /// A message arrived after the exchange had finished or failed.
    #[error("Unexpected challenge in Sasl server state {state}")]
    UnexpectedMessage {
        /// Kafka's name of the state: COMPLETE or FAILED.
        state: &'static str,
    },
    /// The SASL/PLAIN message is not `authzid NUL authcid NUL passwd`.
    #[error("Invalid SASL/PLAIN response: expected 3 tokens, got {tokens}")]
    PlainTokenCount {
        /// How many NUL-separated parts the message has.
        tokens: usize,
    },
    /// The SASL/PLAIN message is not UTF-8.
    #[error("Invalid SASL/PLAIN response: not UTF-8")]
    PlainNotUtf8,
    /// SASL/PLAIN with an empty user name.
    #[error("Authentication failed: username not specified")]
    UsernameNotSpecified,
    /// SASL/PLAIN with an empty password.
    #[error("Authentication failed: password not specified")]
    PasswordNotSpecified,
    /// SASL/PLAIN with an unknown user or a wrong password.
    #[error("Authentication failed: Invalid username or password")]
    InvalidUsernameOrPassword,
}

impl AuthError {
    /// Whether Kafka sends this very message to the client (a `SaslAuthenticationException`).
    /// For the other failures the broker should answer with Kafka's generic "Authentication
    /// failed during authentication due to invalid credentials with SASL mechanism NAME".
    pub fn is_sent_to_client(&self) -> bool {
        matches!(
            self,
            AuthError::AuthorizationIdMismatch | AuthError::InvalidUsernameOrPassword
        )
    }
}

/// What to do after a successful [`ScramServer::step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScramStep {
    /// Send these bytes (server-first) as the SaslAuthenticate `auth_bytes`, and wait for the
    /// client's next message.
    Continue(Vec<u8>),
    /// The client is authenticated as `user`; send `reply` (server-final, `v=...`) as the last
    /// `auth_bytes`, so the client can check that the broker knows its credential too.
    Done {
        /// The authenticated user name (unescaped), which becomes the principal `User:NAME`.
        user: String,
        /// server-final.
        reply: Vec<u8>,
    },
}

/// Where a [`ScramServer`] is in the exchange.
#[derive(Debug)]
enum State {
    /// Waiting for client-first; the server nonce is drawn up front.
    ExpectClientFirst { server_nonce: String },
    /// Server-first was sent; waiting for client-final.
    ExpectClientFinal(Box<Pending>),
    /// Authenticated.
    Done,
    /// Refused; every further message is refused too.
    Failed,
}

/// What the server keeps between server-first and client-final.
#[derive(Debug)]
struct Pending {
    /// The GS2 header exactly as the client sent it (`n,,` or `y,,` or with `a=`).
    gs2_header: String,
    /// client-first-message-bare, exactly as received.
    client_first_bare: String,
    /// server-first, exactly as sent.
    server_first: String,
    /// client nonce + server nonce.
    nonce: String,
    /// The unescaped user name.
    user: String,
    /// The user's stored credential.
    credential: ScramCredential,
}

/// The broker's side of one SCRAM exchange (RFC 5802 section 3, as Kafka's ScramSaslServer):
/// client-first -> server-first, client-final -> server-final. One per connection and
/// authentication; it has no I/O, the caller feeds it each SaslAuthenticate's `auth_bytes`.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: Mechanism,
    state: State,
}

impl ScramServer {
    /// A server waiting for client-first, with a fresh random server nonce.
    pub fn new(mechanism: Mechanism) -> ScramServer {
        ScramServer::with_server_nonce(mechanism, random_nonce())
    }

    /// A server whose server nonce is fixed, to reproduce published exchanges in tests.
    fn with_server_nonce(mechanism: Mechanism, server_nonce: String) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::ExpectClientFirst { server_nonce },
        }
    }

    /// The mechanism this exchange runs.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether the exchange has authenticated the client.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Handles one client message. `lookup(user)` returns the user's stored credential for
    /// this mechanism, if any; it is called at most once per exchange, on client-first, and
    /// only once the message has parsed. Any error leaves the server failed, and every later
    /// message is refused.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<ScramStep, AuthError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let (next, step) = match state {
            State::ExpectClientFirst { server_nonce } => {
                let pending = self.client_first(message, &server_nonce, lookup)?;
                let reply = pending.server_first.clone().into_bytes();
                (
                    State::ExpectClientFinal(pending),
                    ScramStep::Continue(reply),
                )
            }
            State::ExpectClientFinal(pending) => {
                (State::Done, self.client_final(message, *pending)?)
            }
            State::Done => return Err(AuthError::UnexpectedMessage { state: "COMPLETE" }),
            State::Failed => return Err(AuthError::UnexpectedMessage { state: "FAILED" }),
        };
        self.state = next;
        Ok(step)
    }

    /// client-first: parse, look the user up, check the authorization id and the credential,
    /// and build server-first.
    fn client_first(
        &self,
        message: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Box<Pending>, AuthError> {
        let text = message_text(message, AuthError::InvalidClientFirst("not UTF-8"))?;
        let first = ClientFirst::parse(text)?;
        if first.token_auth {
            return Err(AuthError::DelegationTokensNotSupported);
        }
        let credential = lookup(&first.user).ok_or(AuthError::InvalidUserCredentials)?;
        if first.authzid.as_ref().is_some_and(|a| *a != first.user) {
            return Err(AuthError::AuthorizationIdMismatch);
        }
        if credential.iterations < MIN_ITERATIONS {
            return Err(AuthError::IterationsTooLow {
                iterations: credential.iterations,
                mechanism: self.mechanism,
            });
        }
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credential.salt),
            credential.iterations
        );
        Ok(Box::new(Pending {
            gs2_header: first.gs2_header.to_owned(),
            client_first_bare: first.bare.to_owned(),
            server_first,
            nonce,
            user: first.user,
            credential,
        }))
    }

    /// client-final: parse, check the channel binding, the nonce and the proof, and build
    /// server-final.
    fn client_final(&self, message: &[u8], pending: Pending) -> Result<ScramStep, AuthError> {
        let text = message_text(message, AuthError::InvalidClientFinal("not UTF-8"))?;
        let last = ClientFinal::parse(text)?;
        if last.channel_binding != pending.gs2_header.as_bytes() {
            return Err(AuthError::ChannelBindingMismatch);
        }
        // Kafka's ScramSaslServer accepts a final nonce that ends with the combined one, and
        // librdkafka up to 2.0 (Debian's kcat) sends its own nonce once more in front of it:
        // refusing it as RFC 5802's equality would is refusing those clients. The proof is
        // checked over the message as sent, so nothing else is weakened.
        if !last.nonce.ends_with(pending.nonce.as_str()) {
            return Err(AuthError::InvalidNonce);
        }
        if last.proof.len() != self.mechanism.hash_len() {
            return Err(AuthError::InvalidClientFinal("proof has the wrong length"));
        }
        let auth_message = format!(
            "{},{},{}",
            pending.client_first_bare, pending.server_first, last.without_proof
        );
        let credential = &pending.credential;
        let signature = self
            .mechanism
            .hmac(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = last
            .proof
            .iter()
            .zip(&signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !constant_time_eq(&self.mechanism.hash(&client_key), &credential.stored_key) {
            return Err(AuthError::InvalidClientProof);
        }
        let server_signature = self
            .mechanism
            .hmac(&credential.server_key, auth_message.as_bytes());
        let reply = format!("v={}", STANDARD.encode(server_signature)).into_bytes();
        Ok(ScramStep::Done {
            user: pending.user,
            reply,
        })
    }
}

/// A server nonce: 32 random bytes from the thread's secure generator, URL-safe base64 without
/// padding, so it is printable and has no ','.
/// A fresh random 32-byte salt from the thread's cryptographically secure generator.
pub fn random_salt() -> Vec<u8> {
    use rand::Rng as _;
    let mut salt = vec![0u8; SALT_BYTES];
    rand::rng().fill_bytes(&mut salt);
    salt
}

/// SaltedPassword = PBKDF2-HMAC-H(password, salt, iterations): what a client of
/// AlterUserScramCredentials sends instead of the password (`spate user add`).
pub fn salted_password(
    mechanism: Mechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    mechanism.salted_password(password, salt, iterations)
}

/// A fresh nonce: 32 random bytes, base64 (printable, without commas); also the client's.
pub(crate) fn random_nonce() -> String {
    use rand::Rng as _;
    let mut bytes = [0u8; SERVER_NONCE_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The message as text, after the size bound; `not_utf8` is the error for invalid UTF-8.
fn message_text(message: &[u8], not_utf8: AuthError) -> Result<&str, AuthError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(AuthError::MessageTooLong { len: message.len() });
    }
    std::str::from_utf8(message).map_err(|_| not_utf8)
}

/// A parsed client-first message: `gs2-header client-first-message-bare`, where the GS2 header
/// is `n,[a=authzid],` or `y,[a=authzid],` and the bare part `n=saslname,r=nonce[,ext=value]*`.
#[derive(Debug)]
struct ClientFirst<'a> {
    /// The GS2 header as sent, with both commas.
    gs2_header: &'a str,
    /// client-first-message-bare as sent.
    bare: &'a str,
    /// The authorization id, unescaped, when one was given.
    authzid: Option<String>,
    /// The user name, unescaped.
    user: String,
    /// The client nonce.
    nonce: &'a str,
    /// Whether the client asked for delegation-token authentication (`tokenauth=true`).
    token_auth: bool,
}

impl<'a> ClientFirst<'a> {
    /// Parses client-first; see [`ClientFirst`] for the grammar.
    fn parse(text: &'a str) -> Result<ClientFirst<'a>, AuthError> {
        let invalid = AuthError::InvalidClientFirst;
        let mut parts = text.splitn(3, ',');
        let flag = parts.next().unwrap_or_default();
        let authz = parts.next().ok_or(invalid("missing GS2 header"))?;
        let bare = parts.next().ok_or(invalid("missing GS2 header"))?;
        match flag {
            "n" | "y" => {}
            _ if flag.starts_with("p=") => return Err(invalid("channel binding is not supported")),
            _ => return Err(invalid("invalid GS2 channel binding flag")),
        }
        let authzid = match authz {
            "" => None,
            _ => {
                let escaped = authz
                    .strip_prefix("a=")
                    .ok_or(invalid("invalid authorization id"))?;
                Some(unescape_saslname(escaped).ok_or(invalid("invalid authorization id"))?)
            }
        };
        let gs2_header = &text[..flag.len() + authz.len() + 2];

        let mut attributes = bare.split(',');
        let name = attributes.next().unwrap_or_default();
        if name.starts_with("m=") {
            return Err(invalid("mandatory extensions are not supported"));
        }
        let user = name
            .strip_prefix("n=")
            .and_then(unescape_saslname)
            .ok_or(invalid("missing or invalid user name"))?;
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| is_printable_nonce(n))
            .ok_or(invalid("missing or invalid nonce"))?;
        let mut token_auth = false;
        for attribute in attributes {
            let (key, value) = parse_extension(attribute).ok_or(invalid("invalid extension"))?;
            token_auth |= key == "tokenauth" && value.eq_ignore_ascii_case("true");
        }
        Ok(ClientFirst {
            gs2_header,
            bare,
            authzid,
            user,
            nonce,
            token_auth,
        })
    }
}

/// A parsed client-final message: `c=base64,r=nonce[,ext=value]*,p=base64`.
#[derive(Debug)]
struct ClientFinal<'a> {
    /// The decoded `c=`: for our (non-PLUS) mechanisms, the GS2 header.
    channel_binding: Vec<u8>,
    /// The combined nonce.
    nonce: &'a str,
    /// client-final-message-without-proof as sent, part of AuthMessage.
    without_proof: &'a str,
    /// The decoded proof.
    proof: Vec<u8>,
}

impl<'a> ClientFinal<'a> {
    /// Parses client-final; see [`ClientFinal`] for the grammar.
    fn parse(text: &'a str) -> Result<ClientFinal<'a>, AuthError> {
        let invalid = AuthError::InvalidClientFinal;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(invalid("missing proof"))?;
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| invalid("proof is not base64"))?;
        let mut attributes = without_proof.split(',');
        let channel_binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(invalid("missing channel binding"))?;
        let channel_binding = STANDARD
            .decode(channel_binding)
            .map_err(|_| invalid("channel binding is not base64"))?;
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| is_printable_nonce(n))
            .ok_or(invalid("missing or invalid nonce"))?;
        for attribute in attributes {
            match parse_extension(attribute) {
                Some((key, _)) if key != "p" && key != "m" => {}
                _ => return Err(invalid("invalid extension")),
            }
        }
        Ok(ClientFinal {
            channel_binding,
            nonce,
            without_proof,
            proof,
        })
    }
}

/// RFC 5802's `printable` nonce: non-empty, ASCII 0x21..=0x7E except ','.
fn is_printable_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// An extension `name=value`: the name ASCII letters (Kafka's `tokenauth`, the RFC's single
/// letters), the value non-empty without NUL. `None` when malformed.
fn parse_extension(attribute: &str) -> Option<(&str, &str)> {
    let (key, value) = attribute.split_once('=')?;
    let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic());
    let value_ok = !value.is_empty() && !value.contains('\0');
    (key_ok && value_ok).then_some((key, value))
}

/// The name a `saslname` stands for: `=2C` is ',', `=3D` is '=', any other '=' is invalid, and
/// so are NUL and the empty name. `None` when invalid.
fn unescape_saslname(escaped: &str) -> Option<String> {
    if escaped.is_empty() || escaped.contains('\0') {
        return None;
    }
    let mut name = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('=') {
        name.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        name.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    name.push_str(rest);
    Some(name)
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
