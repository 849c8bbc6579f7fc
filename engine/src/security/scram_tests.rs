use super::*;

const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_NONCE: &str = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

/// The RFC 7677 user's credential.
fn rfc_credential() -> ScramCredential {
    let salt = STANDARD.decode(RFC_SALT).unwrap();
    ScramCredential::from_password(Mechanism::ScramSha256, "pencil", &salt, 4096)
}

/// A lookup that knows one user.
fn only(
    user: &'static str,
    credential: &ScramCredential,
) -> impl FnOnce(&str) -> Option<ScramCredential> {
    let credential = credential.clone();
    move |name| (name == user).then_some(credential)
}

/// A lookup for client-final, which must not be called.
fn no_lookup(_: &str) -> Option<ScramCredential> {
    panic!("lookup called on client-final")
}

/// The text of a Continue step.
/// A server that has answered `first` with alice's `credential`, and its answer.
fn answered(
    mechanism: Mechanism,
    first: &[u8],
    credential: &ScramCredential,
) -> (ScramServer, String) {
    let mut server = ScramServer::new(mechanism);
    let server_first = continued(server.step(first, only("alice", credential)).unwrap());
    (server, server_first)
}

fn continued(step: ScramStep) -> String {
    match step {
        ScramStep::Continue(bytes) => String::from_utf8(bytes).unwrap(),
        other => panic!("expected Continue, got {other:?}"),
    }
}

/// A SCRAM client, written from RFC 5802, to drive the server in tests.
struct Client {
    mechanism: Mechanism,
    password: String,
    gs2_header: String,
    bare: String,
    nonce: String,
}

impl Client {
    fn new(mechanism: Mechanism, gs2_header: &str, bare_user: &str, password: &str) -> Self {
        Client {
            mechanism,
            password: password.to_owned(),
            gs2_header: gs2_header.to_owned(),
            bare: format!("n={bare_user},r=fyko+d2lbbFgONRv9qkxdawL"),
            nonce: "fyko+d2lbbFgONRv9qkxdawL".to_owned(),
        }
    }

    fn first(&self) -> String {
        format!("{}{}", self.gs2_header, self.bare)
    }

    /// client-final for `server_first`, with `channel` as `c=`'s decoded value and
    /// `nonce_override` replacing the server's nonce when given; also returns the server
    /// signature the client expects.
    fn last_with(
        &self,
        server_first: &str,
        channel: &str,
        nonce_override: Option<&str>,
        extensions: &str,
    ) -> (String, String) {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attribute in server_first.split(',') {
            let (key, value) = attribute.split_once('=').unwrap();
            match key {
                "r" => nonce = Some(value.to_owned()),
                "s" => salt = Some(STANDARD.decode(value).unwrap()),
                "i" => iterations = Some(value.parse::<u32>().unwrap()),
                _ => panic!("unexpected attribute {attribute}"),
            }
        }
        let nonce = nonce.unwrap();
        assert!(nonce.starts_with(&self.nonce));
        let nonce = nonce_override.map(str::to_owned).unwrap_or(nonce);
        let m = self.mechanism;
        let salted = m.salted_password(&self.password, &salt.unwrap(), iterations.unwrap());
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c={},r={nonce}{extensions}", STANDARD.encode(channel));
        let auth = format!("{},{server_first},{without_proof}", self.bare);
        let signature = m.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_signature = m.hmac(&m.server_key(&salted), auth.as_bytes());
        (
            format!("{without_proof},p={}", STANDARD.encode(proof)),
            format!("v={}", STANDARD.encode(server_signature)),
        )
    }

    fn last(&self, server_first: &str) -> (String, String) {
        self.last_with(server_first, &self.gs2_header, None, "")
    }
}

/// Runs a whole exchange with `client` against a server knowing `user` with `credential`.
fn exchange(
    client: &Client,
    user: &'static str,
    credential: &ScramCredential,
) -> Result<ScramStep, AuthError> {
    let mut server = ScramServer::new(client.mechanism);
    let server_first = continued(server.step(client.first().as_bytes(), only(user, credential))?);
    let (last, _) = client.last(&server_first);
    server.step(last.as_bytes(), no_lookup)
}

fn sha512_alice() -> ScramCredential {
    ScramCredential::generate(Mechanism::ScramSha512, "s3cret", MIN_ITERATIONS)
}

#[test]
fn rfc7677_sha256_example() {
    let mut server =
        ScramServer::with_server_nonce(Mechanism::ScramSha256, RFC_SERVER_NONCE.to_owned());
    let credential = rfc_credential();
    let server_first = continued(
        server
            .step(RFC_CLIENT_FIRST.as_bytes(), only("user", &credential))
            .unwrap(),
    );
    assert_eq!(server_first, format!("r={RFC_NONCE},s={RFC_SALT},i=4096"));
    let client_final =
        format!("c=biws,r={RFC_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    let step = server.step(client_final.as_bytes(), no_lookup).unwrap();
    assert_eq!(
        step,
        ScramStep::Done {
            user: "user".to_owned(),
            reply: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec(),
        }
    );
    assert!(server.is_complete());
    assert_eq!(
        server.step(b"anything", no_lookup),
        Err(AuthError::UnexpectedMessage { state: "COMPLETE" })
    );
}

#[test]
fn rfc7677_test_client_computes_the_published_proof() {
    let client = Client {
        mechanism: Mechanism::ScramSha256,
        password: "pencil".to_owned(),
        gs2_header: "n,,".to_owned(),
        bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".to_owned(),
        nonce: "rOprNGfwEbeRWgbNEkqO".to_owned(),
    };
    let (last, verifier) = client.last(&format!("r={RFC_NONCE},s={RFC_SALT},i=4096"));
    assert!(last.ends_with(",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
    assert_eq!(verifier, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

#[test]
fn sha512_round_trip() {
    let credential = sha512_alice();
    let client = Client::new(Mechanism::ScramSha512, "n,,", "alice", "s3cret");
    let (mut server, server_first) = answered(
        Mechanism::ScramSha512,
        client.first().as_bytes(),
        &credential,
    );
    assert!(!server.is_complete());
    let (last, verifier) = client.last(&server_first);
    let step = server.step(last.as_bytes(), no_lookup).unwrap();
    assert_eq!(
        step,
        ScramStep::Done {
            user: "alice".to_owned(),
            reply: verifier.into_bytes(),
        }
    );
    assert!(server.is_complete());
}

#[test]
fn y_flag_authzid_equal_to_user_and_extensions_accepted() {
    let credential = sha512_alice();
    let mut client = Client::new(Mechanism::ScramSha512, "y,a=alice,", "alice", "s3cret");
    // Unknown extensions are ignored, but stay in AuthMessage as sent.
    client.bare.push_str(",foo=bar,tokenauth=false");
    let first = client.first();
    let (mut server, server_first) =
        answered(Mechanism::ScramSha512, first.as_bytes(), &credential);
    let (last, _) = client.last_with(&server_first, "y,a=alice,", None, ",x=ext");
    assert!(matches!(
        server.step(last.as_bytes(), no_lookup),
        Ok(ScramStep::Done { .. })
    ));
}

#[test]
fn wrong_password_fails_and_stays_failed() {
    let credential = sha512_alice();
    let client = Client::new(Mechanism::ScramSha512, "n,,", "alice", "wrong");
    let (mut server, server_first) = answered(
        Mechanism::ScramSha512,
        client.first().as_bytes(),
        &credential,
    );
    let (last, _) = client.last(&server_first);
    assert_eq!(
        server.step(last.as_bytes(), no_lookup),
        Err(AuthError::InvalidClientProof)
    );
    assert!(!server.is_complete());
    assert_eq!(
        server.step(last.as_bytes(), no_lookup),
        Err(AuthError::UnexpectedMessage { state: "FAILED" })
    );
}

#[test]
fn unknown_user_fails() {
    let credential = sha512_alice();
    let client = Client::new(Mechanism::ScramSha512, "n,,", "bob", "s3cret");
    let err = exchange(&client, "alice", &credential).unwrap_err();
    assert_eq!(err, AuthError::InvalidUserCredentials);
    assert_eq!(
        err.to_string(),
        "Authentication failed: Invalid user credentials"
    );
    assert!(!err.is_sent_to_client());
}

#[test]
fn wrong_nonce_in_client_final_fails() {
    let credential = sha512_alice();
    let client = Client::new(Mechanism::ScramSha512, "n,,", "alice", "s3cret");
    let (mut server, server_first) = answered(
        Mechanism::ScramSha512,
        client.first().as_bytes(),
        &credential,
    );
    let forged = format!("{}forged", client.nonce);
    let (last, _) = client.last_with(&server_first, "n,,", Some(&forged), "");
    assert_eq!(
        server.step(last.as_bytes(), no_lookup),
        Err(AuthError::InvalidNonce)
    );
}

/// A SCRAM-SHA-512 client for alice and a server past their first messages: (client,
/// server, server-first-message, the combined nonce in it).
fn first_round_for_alice(credential: &ScramCredential) -> (Client, ScramServer, String, String) {
    let client = Client::new(Mechanism::ScramSha512, "n,,", "alice", "s3cret");
    let (server, server_first) = answered(
        Mechanism::ScramSha512,
        client.first().as_bytes(),
        credential,
    );
    let combined = server_first
        .split(',')
        .find_map(|attribute| attribute.strip_prefix("r="))
        .unwrap()
        .to_string();
    (client, server, server_first, combined)
}

/// librdkafka up to 2.0 (Debian's kcat) sends its nonce again in front of the combined one;
/// Kafka accepts a final nonce that ends with the combined nonce, and so does Spate.
#[test]
fn a_final_nonce_ending_with_the_combined_one_is_accepted_as_kafka_does() {
    let credential = sha512_alice();
    let (client, mut server, server_first, combined) = first_round_for_alice(&credential);
    let doubled = format!("{}{combined}", client.nonce);
    let (last, _) = client.last_with(&server_first, "n,,", Some(&doubled), "");
    assert!(matches!(
        server.step(last.as_bytes(), no_lookup),
        Ok(ScramStep::Done { .. })
    ));
    // A nonce that only starts with it is still refused.
    let (client, mut server, server_first, combined) = first_round_for_alice(&credential);
    let (last, _) = client.last_with(&server_first, "n,,", Some(&format!("{combined}x")), "");
    assert_eq!(
        server.step(last.as_bytes(), no_lookup),
        Err(AuthError::InvalidNonce)
    );
}

#[test]
fn wrong_channel_binding_fails() {
    let credential = sha512_alice();
    let client = Client::new(Mechanism::ScramSha512, "n,,", "alice", "s3cret");
    for channel in ["y,,", "n,a=alice,", "", "n,,x"] {
        let mut server = ScramServer::new(Mechanism::ScramSha512);
        let server_first = continued(
            server
                .step(client.first().as_bytes(), only("alice", &credential))
                .unwrap(),
        );
        let (last, _) = client.last_with(&server_first, channel, None, "");
        assert_eq!(
            server.step(last.as_bytes(), no_lookup),
            Err(AuthError::ChannelBindingMismatch),
            "c= of {channel:?}"
        );
    }
}

#[test]
fn authzid_different_from_user_fails() {
    let credential = sha512_alice();
    let client = Client::new(Mechanism::ScramSha512, "n,a=admin,", "alice", "s3cret");
    let err = exchange(&client, "alice", &credential).unwrap_err();
    assert_eq!(err, AuthError::AuthorizationIdMismatch);
    assert_eq!(
        err.to_string(),
        "Authentication failed: Client requested an authorization id that is different from username"
    );
    assert!(err.is_sent_to_client());
}

#[test]
fn escaped_user_names_are_unescaped() {
    let credential = sha512_alice();
    let client = Client::new(
        Mechanism::ScramSha512,
        "n,a=a=2Cb=3Dc,",
        "a=2Cb=3Dc",
        "s3cret",
    );
    let step = exchange(&client, "a,b=c", &credential).unwrap();
    assert!(matches!(step, ScramStep::Done { user, .. } if user == "a,b=c"));
    assert_eq!(unescape_saslname("=2C=3D"), Some(",=".to_owned()));
    for bad in ["", "a=", "a=2", "a=2c", "a=3d", "a=41", "a=\u{e9}x", "a\0"] {
        assert_eq!(unescape_saslname(bad), None, "{bad:?}");
    }
}

#[test]
fn tokenauth_is_refused_without_lookup() {
    for extension in ["tokenauth=true", "tokenauth=TRUE"] {
        let mut server = ScramServer::new(Mechanism::ScramSha256);
        let first = format!("n,,n=tokenid,r=abc,{extension}");
        assert_eq!(
            server.step(first.as_bytes(), no_lookup),
            Err(AuthError::DelegationTokensNotSupported)
        );
    }
}

#[test]
fn malformed_client_first_is_refused_without_lookup() {
    let cases: &[&[u8]] = &[
        b"",
        b"n",
        b"n,",
        b"n,,",
        b"p=tls-unique,,n=user,r=abc",
        b"x,,n=user,r=abc",
        b"n,b=user,n=user,r=abc",
        b"n,,m=ext,n=user,r=abc",
        b"n,,n=,r=abc",
        b"n,,n=us=er,r=abc",
        b"n,,n=user",
        b"n,,n=user,r=",
        b"n,,n=user,r=a\x01b",
        b"n,,n=user,r=a b",
        b"n,,n=user,r=abc,",
        b"n,,n=user,r=abc,=x",
        b"n,,n=user,r=abc,ext",
        b"n,,n=user,r=abc,ext=",
        b"n,,n=user,r=abc,e1=x",
        b"n,,r=abc,n=user",
        b"n,,n=\xff,r=abc",
    ];
    for case in cases {
        let mut server = ScramServer::new(Mechanism::ScramSha256);
        let result = server.step(case, no_lookup);
        assert!(
            matches!(result, Err(AuthError::InvalidClientFirst(_))),
            "{:?}: {result:?}",
            String::from_utf8_lossy(case)
        );
    }
}

#[test]
fn oversized_messages_are_refused() {
    let mut first = b"n,,n=user,r=".to_vec();
    first.resize(MAX_MESSAGE_BYTES + 1, b'a');
    let mut server = ScramServer::new(Mechanism::ScramSha256);
    assert_eq!(
        server.step(&first, no_lookup),
        Err(AuthError::MessageTooLong {
            len: MAX_MESSAGE_BYTES + 1
        })
    );
    first.truncate(MAX_MESSAGE_BYTES);
    let credential = rfc_credential();
    let mut server = ScramServer::new(Mechanism::ScramSha256);
    assert!(server.step(&first, only("user", &credential)).is_ok());
}

#[test]
fn malformed_client_final_is_refused() {
    let credential = rfc_credential();
    let cases = [
        "".to_owned(),
        "c=biws".to_owned(),
        format!("c=biws,r={RFC_NONCE}"),
        format!("c=biws,r={RFC_NONCE},p="),
        format!("c=biws,r={RFC_NONCE},p=!!!!"),
        format!("c=biws,r={RFC_NONCE},p=AAAA"),
        format!("c=biw,r={RFC_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        format!("r={RFC_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        format!("c=biws,r={RFC_NONCE},m=x,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        format!("c=biws,r={RFC_NONCE},p=AAAA,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        format!("c=biws,r={RFC_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=,x=y"),
        "c=biws,r=,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=".to_owned(),
    ];
    for case in &cases {
        let mut server =
            ScramServer::with_server_nonce(Mechanism::ScramSha256, RFC_SERVER_NONCE.to_owned());
        server
            .step(RFC_CLIENT_FIRST.as_bytes(), only("user", &credential))
            .unwrap();
        let result = server.step(case.as_bytes(), no_lookup);
        assert!(
            matches!(result, Err(AuthError::InvalidClientFinal(_))),
            "{case:?}: {result:?}"
        );
    }
}

#[test]
fn credential_below_minimum_iterations_is_refused() {
    let salt = [7u8; 16];
    let credential = ScramCredential::from_password(Mechanism::ScramSha256, "p", &salt, 4095);
    let mut server = ScramServer::new(Mechanism::ScramSha256);
    let err = server
        .step(b"n,,n=user,r=abc", only("user", &credential))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Iterations 4095 is less than the minimum 4096 for SCRAM-SHA-256"
    );
}

#[test]
fn server_nonces_are_printable_and_fresh() {
    let a = random_nonce();
    let b = random_nonce();
    assert!(is_printable_nonce(&a));
    assert_eq!(a.len(), 43);
    assert_ne!(a, b);
}

#[test]
fn mechanism_names_and_codes() {
    for m in Mechanism::ALL {
        assert_eq!(Mechanism::from_name(m.name()), Some(m));
        assert_eq!(Mechanism::from_code(m.code()), Some(m));
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            format!("\"{}\"", m.name())
        );
    }
    assert_eq!(Mechanism::ScramSha256.code(), 1);
    assert_eq!(Mechanism::ScramSha512.code(), 2);
    assert_eq!(Mechanism::from_name("scram-sha-256"), None);
    assert_eq!(Mechanism::from_code(0), None);
    assert_eq!(Mechanism::from_code(3), None);
}

#[test]
fn verifies_password() {
    let credential = ScramCredential::generate(Mechanism::ScramSha256, "pencil", 4096);
    assert_eq!(credential.salt.len(), SALT_BYTES);
    assert!(credential.verifies_password(Mechanism::ScramSha256, "pencil"));
    assert!(!credential.verifies_password(Mechanism::ScramSha256, "pencil!"));
    assert!(!credential.verifies_password(Mechanism::ScramSha256, ""));
    assert!(!credential.verifies_password(Mechanism::ScramSha512, "pencil"));
}

#[test]
fn salted_password_agrees_with_password() {
    let salt = STANDARD.decode(RFC_SALT).unwrap();
    for m in Mechanism::ALL {
        let salted = m.salted_password("pencil", &salt, 4096);
        assert_eq!(salted.len(), m.hash_len());
        assert_eq!(
            ScramCredential::from_salted_password(m, &salted, &salt, 4096),
            ScramCredential::from_password(m, "pencil", &salt, 4096)
        );
    }
}

#[test]
fn credential_json_round_trip_with_base64() {
    let credential = rfc_credential();
    let json = serde_json::to_value(&credential).unwrap();
    assert_eq!(json["salt"], RFC_SALT);
    assert_eq!(json["iterations"], 4096);
    assert_eq!(
        json["stored_key"].as_str().unwrap(),
        STANDARD.encode(&credential.stored_key)
    );
    assert_eq!(
        json["server_key"].as_str().unwrap(),
        STANDARD.encode(&credential.server_key)
    );
    let back: ScramCredential = serde_json::from_value(json).unwrap();
    assert_eq!(back, credential);
    let bad = r#"{"salt":"!!","stored_key":"","server_key":"","iterations":4096}"#;
    assert!(serde_json::from_str::<ScramCredential>(bad).is_err());
}

/// xorshift64*: a small deterministic generator for the fuzz test.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random message, or a mutation of `valid`: truncated, a byte changed, inserted or
/// removed, a part doubled.
fn mutate(rng: &mut Prng, valid: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8] = b",=nrcpaymsi0123456789+/ \0\xff\xc3";
    let mut out = valid.to_vec();
    match rng.below(7) {
        0 => {
            let len = rng.below(64);
            out = (0..len).map(|_| rng.next() as u8).collect();
        }
        1 => out.truncate(rng.below(valid.len() + 1)),
        2 if !out.is_empty() => {
            let at = rng.below(out.len());
            out[at] = ALPHABET[rng.below(ALPHABET.len())];
        }
        3 => {
            let at = rng.below(out.len() + 1);
            out.insert(at, ALPHABET[rng.below(ALPHABET.len())]);
        }
        4 if !out.is_empty() => {
            out.remove(rng.below(out.len()));
        }
        5 => {
            let at = rng.below(out.len() + 1);
            out.extend_from_within(at..);
        }
        _ => {
            out.truncate(rng.below(valid.len() + 1));
            let tail_len = rng.below(16);
            out.extend((0..tail_len).map(|_| ALPHABET[rng.below(ALPHABET.len())]));
        }
    }
    out
}

#[test]
fn random_and_mutated_messages_never_panic() {
    let credential = rfc_credential();
    let valid_final =
        format!("c=biws,r={RFC_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    let mut rng = Prng(0x9e37_79b9_7f4a_7c15);
    let (mut first_ok, mut final_ok) = (0, 0);
    for _ in 0..5000 {
        let mut server = ScramServer::new(Mechanism::ScramSha256);
        let message = mutate(&mut rng, RFC_CLIENT_FIRST.as_bytes());
        let lookup = |_: &str| Some(credential.clone());
        if server.step(&message, lookup).is_ok() {
            first_ok += 1;
        }
        let _ = server.step(&message, no_lookup);

        let mut server =
            ScramServer::with_server_nonce(Mechanism::ScramSha256, RFC_SERVER_NONCE.to_owned());
        server
            .step(RFC_CLIENT_FIRST.as_bytes(), only("user", &credential))
            .unwrap();
        let message = mutate(&mut rng, valid_final.as_bytes());
        if server.step(&message, no_lookup).is_ok() {
            final_ok += 1;
        }
        assert!(server.step(&message, no_lookup).is_err());
    }
    // Some mutations leave a valid message (the loop reached the success paths too), and
    // most do not.
    assert!(first_ok > 0 && first_ok < 5000, "{first_ok}");
    assert!(final_ok < 5000, "{final_ok}");
}
