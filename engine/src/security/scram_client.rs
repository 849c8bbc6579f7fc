//! The client side of SCRAM (RFC 5802, RFC 7677), for the `spate` CLI on SASL listeners: the
//! exchange Kafka's clients run, checked against the server's signature so that a broker
//! that does not know the password cannot pass for one that does.

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::scram::{self, Mechanism, MIN_ITERATIONS};

/// One SCRAM exchange as the client.
pub struct ScramClient {
    mechanism: Mechanism,
    password: String,
    nonce: String,
    first_bare: String,
    /// What the server's final message must carry, once the proof was sent.
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// A new exchange for `user`.
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> ScramClient {
        let nonce = scram::random_nonce();
        let user = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            mechanism,
            password: password.to_string(),
            first_bare: format!("n={user},r={nonce}"),
            nonce,
            server_signature: None,
        }
    }

    /// client-first-message.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// client-final-message, from the server's first message.
    pub fn respond(&mut self, server_first: &[u8]) -> anyhow::Result<Vec<u8>> {
        let server_first =
            std::str::from_utf8(server_first).context("the server's SCRAM message is not text")?;
        let field = |name: &str| {
            server_first
                .split(',')
                .find_map(|part| part.strip_prefix(name))
                .with_context(|| format!("the server's SCRAM message lacks {name}"))
        };
        let nonce = field("r=")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            bail!("the server's SCRAM nonce does not extend ours");
        }
        let salt = STANDARD
            .decode(field("s=")?)
            .context("the server's SCRAM salt is not base64")?;
        let iterations: u32 = field("i=")?.parse().context("bad SCRAM iteration count")?;
        if !(MIN_ITERATIONS..=1_000_000).contains(&iterations) {
            bail!("the server asks for {iterations} SCRAM iterations");
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let mechanism = self.mechanism;
        let salted = scram::salted_password(mechanism, &self.password, &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(key, signature)| key ^ signature)
            .collect();
        let server_key = mechanism.hmac(&salted, b"Server Key");
        self.server_signature = Some(mechanism.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server's final message.
    pub fn verify(&self, server_final: &[u8]) -> anyhow::Result<()> {
        let text = std::str::from_utf8(server_final).unwrap_or("");
        if let Some(error) = text.strip_prefix("e=") {
            bail!("the broker refused the SCRAM exchange: {error}");
        }
        let signature = text
            .strip_prefix("v=")
            .and_then(|value| STANDARD.decode(value).ok())
            .context("the broker's final SCRAM message carries no signature")?;
        if Some(&signature) != self.server_signature.as_ref() {
            bail!("the broker's SCRAM signature is wrong: it does not know the password");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::{ScramCredential, ScramServer, ScramStep};

    #[test]
    fn the_client_authenticates_to_the_server_and_checks_it() {
        for mechanism in Mechanism::ALL {
            let credential = ScramCredential::generate(mechanism, "p,=w", 4096);
            let mut server = ScramServer::new(mechanism);
            let mut client = ScramClient::new(mechanism, "a,b=c", "p,=w");
            let ScramStep::Continue(server_first) = server
                .step(&client.first(), |user| {
                    (user == "a,b=c").then(|| credential.clone())
                })
                .unwrap()
            else {
                panic!("SCRAM needs two rounds")
            };
            let last = client.respond(&server_first).unwrap();
            let ScramStep::Done { user, reply } = server.step(&last, |_| None).unwrap() else {
                panic!("done after the proof")
            };
            assert_eq!(user, "a,b=c");
            client.verify(&reply).unwrap();
            assert!(client.verify(b"v=AAAA").is_err());
        }
        let mut client = ScramClient::new(Mechanism::ScramSha256, "u", "p");
        assert!(client.respond(b"r=other,s=AAAA,i=4096").is_err());
        assert!(client.respond(b"garbage").is_err());
    }
}
