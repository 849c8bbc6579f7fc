//! `spate user add|list|remove`: users' SCRAM credentials, which SASL clients authenticate
//! with (SCRAM-SHA-256, SCRAM-SHA-512, and PLAIN checked against them).
//!
//! Online (the default), through any broker with AlterUserScramCredentials and
//! DescribeUserScramCredentials (KIP-554), like `kafka-configs --alter --entity-type users`:
//! the password is salted and hashed here, and only the salted password travels. Offline,
//! with `--data-dir DIR`, the credential is written straight into a stopped one-node broker's
//! metadata journal, or into a fresh directory: how the first user is made before a broker
//! serves only SASL listeners (Kafka's `kafka-storage format --add-scram`). A node of a
//! replicated cluster started on such a directory sends its users to the controller with its
//! first registration, which adds those no user has yet (`metadata::bootstrap`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::broker::Cluster;
use super::{error_name, ConnectionArgs};
use spate_engine::metadata::records::MetadataRecord;
use spate_engine::metadata::store::MetadataStore;
use spate_engine::security::scram::{self, Mechanism, ScramCredential};

/// `spate user ...`
#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Add a user, or set a new password (one credential per mechanism).
    Add {
        /// The user name.
        name: String,
        /// The password.
        #[arg(long)]
        password: String,
        /// SCRAM mechanism(s) to store the credential for; repeat for both.
        #[arg(long = "mechanism", default_value = "SCRAM-SHA-512")]
        mechanisms: Vec<String>,
        /// PBKDF2 iterations (4096 to 16384).
        #[arg(long, default_value_t = scram::MIN_ITERATIONS)]
        iterations: u32,
        /// Write into this stopped one-node broker's data directory instead of asking a
        /// running broker.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// List users and their mechanisms.
    List {
        /// Read this broker data directory instead of asking a running broker.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Remove a user's credentials (every mechanism, or those named).
    Remove {
        /// The user name.
        name: String,
        /// Mechanism(s) to remove. [default: every one the user has]
        #[arg(long = "mechanism")]
        mechanisms: Vec<String>,
        /// Write into this stopped one-node broker's data directory instead of asking a
        /// running broker.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// Runs `spate user ...`.
pub fn run(args: UserArgs) -> anyhow::Result<()> {
    let json = args.connection.json;
    match args.command {
        UserCommand::Add {
            name,
            password,
            mechanisms,
            iterations,
            data_dir,
        } => {
            if name.is_empty() {
                bail!("the user name must not be empty");
            }
            if !(scram::MIN_ITERATIONS..=scram::MAX_ITERATIONS).contains(&iterations) {
                bail!(
                    "--iterations must be between {} and {}",
                    scram::MIN_ITERATIONS,
                    scram::MAX_ITERATIONS
                );
            }
            let mechanisms = parse_mechanisms(&mechanisms)?;
            match data_dir {
                Some(dir) => {
                    let records: Vec<MetadataRecord> = mechanisms
                        .iter()
                        .map(|&mechanism| MetadataRecord::ScramCredential {
                            user: name.clone(),
                            mechanism,
                            credential: ScramCredential::generate(mechanism, &password, iterations),
                        })
                        .collect();
                    write_offline(&dir, &records)?;
                }
                None => {
                    let upsertions = mechanisms
                        .iter()
                        .map(|&mechanism| {
                            let salt = scram::random_salt();
                            ScramCredentialUpsertion::default()
                                .with_name(StrBytes::from_string(name.clone()))
                                .with_mechanism(mechanism.code())
                                .with_iterations(iterations as i32)
                                .with_salted_password(
                                    scram::salted_password(mechanism, &password, &salt, iterations)
                                        .into(),
                                )
                                .with_salt(salt.into())
                        })
                        .collect();
                    alter(&args.connection, upsertions, Vec::new())?;
                }
            }
            if !json {
                let names: Vec<&str> = mechanisms
                    .iter()
                    .map(|mechanism| mechanism.name())
                    .collect();
                println!("user {name}: {} credential set", names.join(", "));
            }
            Ok(())
        }
        UserCommand::List { data_dir } => {
            let users = match data_dir {
                Some(dir) => {
                    let (_, loaded) = open_store(&dir)?;
                    loaded
                        .image
                        .scram_credentials()
                        .map(|(user, mechanism, credential)| {
                            (user.to_string(), mechanism, credential.iterations)
                        })
                        .collect()
                }
                None => describe(&args.connection)?,
            };
            print_users(&users, json);
            Ok(())
        }
        UserCommand::Remove {
            name,
            mechanisms,
            data_dir,
        } => {
            let named = parse_mechanisms_or_empty(&mechanisms)?;
            match data_dir {
                Some(dir) => {
                    let (_, loaded) = open_store(&dir)?;
                    let held: Vec<Mechanism> = loaded
                        .image
                        .scram_credentials()
                        .filter(|(user, _, _)| *user == name)
                        .map(|(_, mechanism, _)| mechanism)
                        .collect();
                    let removed = removal(&name, &named, &held)?;
                    let records: Vec<MetadataRecord> = removed
                        .iter()
                        .map(|&mechanism| MetadataRecord::RemoveScramCredential {
                            user: name.clone(),
                            mechanism,
                        })
                        .collect();
                    write_offline(&dir, &records)?;
                }
                None => {
                    let held: Vec<Mechanism> = describe(&args.connection)?
                        .into_iter()
                        .filter(|(user, _, _)| *user == name)
                        .map(|(_, mechanism, _)| mechanism)
                        .collect();
                    let removed = removal(&name, &named, &held)?;
                    let deletions = removed
                        .iter()
                        .map(|mechanism| {
                            ScramCredentialDeletion::default()
                                .with_name(StrBytes::from_string(name.clone()))
                                .with_mechanism(mechanism.code())
                        })
                        .collect();
                    alter(&args.connection, Vec::new(), deletions)?;
                }
            }
            if !json {
                println!("user {name}: credentials removed");
            }
            Ok(())
        }
    }
}

fn parse_mechanisms(names: &[String]) -> anyhow::Result<Vec<Mechanism>> {
    let mechanisms = parse_mechanisms_or_empty(names)?;
    if mechanisms.is_empty() {
        bail!("name a mechanism: SCRAM-SHA-256 or SCRAM-SHA-512");
    }
    Ok(mechanisms)
}

fn parse_mechanisms_or_empty(names: &[String]) -> anyhow::Result<Vec<Mechanism>> {
    let mut mechanisms = Vec::new();
    for name in names.iter().flat_map(|names| names.split(',')) {
        let mechanism = Mechanism::from_name(name.trim()).with_context(|| {
            format!("unknown mechanism {name:?}: SCRAM-SHA-256 or SCRAM-SHA-512")
        })?;
        if !mechanisms.contains(&mechanism) {
            mechanisms.push(mechanism);
        }
    }
    Ok(mechanisms)
}

/// The mechanisms to remove: those named (each must be held), or every one held.
fn removal(name: &str, named: &[Mechanism], held: &[Mechanism]) -> anyhow::Result<Vec<Mechanism>> {
    if held.is_empty() {
        bail!("user {name} has no credentials");
    }
    if named.is_empty() {
        return Ok(held.to_vec());
    }
    if let Some(missing) = named.iter().find(|mechanism| !held.contains(mechanism)) {
        bail!("user {name} has no {} credential", missing.name());
    }
    Ok(named.to_vec())
}

/// Opens a one-node broker's metadata store (created when the directory is new).
fn open_store(
    dir: &std::path::Path,
) -> anyhow::Result<(MetadataStore, spate_engine::metadata::store::Loaded)> {
    if dir.join(spate_engine::cluster::member::DIRECTORY).exists() {
        bail!(
            "{} belongs to a node of a replicated cluster that has started, whose metadata lives in the controller quorum: add users online (without --data-dir) through any node",
            dir.display()
        );
    }
    MetadataStore::open(dir)
}

/// Appends records to a stopped broker's metadata journal, durably.
/// A data directory that held no node before is left marked as cleanly stopped, so that the
/// node's first start does not take the journal written here for the remains of a crash.
fn write_offline(dir: &std::path::Path, records: &[MetadataRecord]) -> anyhow::Result<()> {
    let fresh = !dir.join(spate_engine::metadata::store::DIRECTORY).exists();
    let (mut store, loaded) = open_store(dir)?;
    loaded
        .image
        .apply_all(records)
        .context("the credential does not apply to this data directory's metadata")?;
    store
        .append(records)
        .with_context(|| format!("cannot write the metadata journal in {}", dir.display()))?;
    if fresh {
        spate_engine::shutdown_marker::write(dir)
            .with_context(|| format!("cannot mark {} as cleanly stopped", dir.display()))?;
    }
    Ok(())
}

/// A connection to the bootstrap broker, which must serve `api`.
fn connect_serving(connection: &ConnectionArgs, api: ApiKey) -> anyhow::Result<Cluster> {
    let mut cluster = Cluster::connect(connection)?;
    let broker = cluster.any();
    if !broker.supports(api) {
        bail!("{} does not serve {api:?}", broker.address());
    }
    Ok(cluster)
}

fn alter(
    connection: &ConnectionArgs,
    upsertions: Vec<ScramCredentialUpsertion>,
    deletions: Vec<ScramCredentialDeletion>,
) -> anyhow::Result<()> {
    let mut cluster = connect_serving(connection, ApiKey::AlterUserScramCredentials)?;
    let broker = cluster.any();
    let request = AlterUserScramCredentialsRequest::default()
        .with_upsertions(upsertions)
        .with_deletions(deletions);
    let response = broker.send(0, &request)?;
    for result in response.results {
        if result.error_code != 0 {
            bail!(
                "user {}: {}{}",
                result.user.as_str(),
                error_name(result.error_code),
                result
                    .error_message
                    .map(|message| format!(": {}", message.as_str()))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn describe(connection: &ConnectionArgs) -> anyhow::Result<Vec<(String, Mechanism, u32)>> {
    let mut cluster = connect_serving(connection, ApiKey::DescribeUserScramCredentials)?;
    let broker = cluster.any();
    let response = broker.send(
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(None::<Vec<UserName>>),
    )?;
    if response.error_code != 0 {
        bail!("cannot list users: {}", error_name(response.error_code));
    }
    let mut users = Vec::new();
    for result in response.results {
        for info in result.credential_infos {
            if let Some(mechanism) = Mechanism::from_code(info.mechanism) {
                users.push((result.user.to_string(), mechanism, info.iterations as u32));
            }
        }
    }
    Ok(users)
}

fn print_users(users: &[(String, Mechanism, u32)], json: bool) {
    if json {
        let rows: Vec<serde_json::Value> = users
            .iter()
            .map(|(user, mechanism, iterations)| {
                serde_json::json!({"user": user, "mechanism": mechanism.name(), "iterations": iterations})
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!("{:<24} {:<14} ITERATIONS", "USER", "MECHANISM");
    for (user, mechanism, iterations) in users {
        println!("{user:<24} {:<14} {iterations}", mechanism.name());
    }
}
