//! How the CLI connects to a secured listener: librdkafka-style client properties from
//! `-X KEY=VALUE` and `--command-config FILE` (the same lines, `#` comments allowed), as
//! `kcat -X` and Kafka's `--command-config` take them. Which properties are served, the TLS
//! configuration and the SASL exchange are the library's
//! (`spate_engine::security::client`, which `spate-bench` shares); this module keeps the
//! command's settings and drives them over the blocking client.

use std::path::Path;
use std::sync::OnceLock;

use spate_engine::security::client::{self, ClientSecurity};
use spate_net::client::Client;

static SECURITY: OnceLock<ClientSecurity> = OnceLock::new();

/// Sets the settings from the command's properties (once per process).
pub fn configure(properties: &[String], command_config: Option<&Path>) -> anyhow::Result<()> {
    if SECURITY.get().is_some() {
        return Ok(());
    }
    let security = ClientSecurity::from_file_and_properties(command_config, properties)?;
    let _ = SECURITY.set(security);
    Ok(())
}

/// Secures a connection to `address` just opened: TLS first, if any (before any request);
/// SASL after `authenticate_after` (ApiVersions) ran, through [`authenticate`].
pub fn wrap(client: &mut Client, address: &str) -> anyhow::Result<()> {
    match SECURITY.get().and_then(|security| security.tls.as_ref()) {
        Some(tls) => client::wrap_tls(client, tls, address),
        None => Ok(()),
    }
}

/// Authenticates with SASL, when the settings say to.
pub fn authenticate(client: &mut Client, address: &str) -> anyhow::Result<()> {
    match SECURITY.get().and_then(|security| security.sasl.as_ref()) {
        Some(credentials) => client::login(client, credentials, address),
        None => Ok(()),
    }
}
