//! `spate quota set|list|remove`: client quotas, through DescribeClientQuotas and
//! AlterClientQuotas (v0–1, KIP-546), like Kafka's `kafka-configs --entity-type users
//! --entity-type clients`.
//!
//! A quota belongs to an [`Entity`]: a user, a client id, or both, each either named or
//! Kafka's `<default>` (the quota of every user or client id without one of its own). An
//! entity holds values under keys (`producer_byte_rate`, `consumer_byte_rate`,
//! `request_percentage`); `set` turns the command line into [`Change`]s, `list` turns the
//! entity flags into a describe filter, and the broker decides which keys and values it
//! accepts, so that a key this client does not know still travels through `--add`.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::describe_client_quotas_response;
use kafka_protocol::messages::{AlterClientQuotasRequest, ApiKey, DescribeClientQuotasRequest};
use serde_json::json;

use super::broker::{str_bytes, Cluster};
use super::output::{print_json, print_text, Table};
use super::{check_error, parse_key_value, ConnectionArgs};

/// The versions of DescribeClientQuotas and AlterClientQuotas this client speaks.
const VERSIONS: std::ops::RangeInclusive<i16> = 0..=1;

/// The entity type of a user's quotas (named by the bare principal name: `alice`).
pub const USER: &str = "user";
/// The entity type of a client id's quotas.
pub const CLIENT_ID: &str = "client-id";
/// How Kafka writes the default entity of a type (a null name on the wire).
pub const DEFAULT_NAME: &str = "<default>";

/// Bytes per second a client may produce, per broker.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Bytes per second a client may fetch, per broker.
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// The percentage of one shard's time a client's requests may take.
pub const REQUEST_PERCENTAGE: &str = "request_percentage";

/// DescribeClientQuotas match types: the component's name exactly, or the type's default
/// entity. (Kafka's third, 2, matches any name of the type: what leaving the type out of
/// a non-strict filter does too.)
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;

/// `spate quota ...`
#[derive(Args, Debug)]
pub struct QuotaArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: QuotaCommand,
}

#[derive(Subcommand, Debug)]
enum QuotaCommand {
    /// Set or delete quota values of a user, a client id, or a user's client id.
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        #[command(flatten)]
        changes: ChangeArgs,
        /// Ask the broker to check the change without making it.
        #[arg(long)]
        validate_only: bool,
    },
    /// List quotas: all, or those of the entity named.
    List {
        #[command(flatten)]
        entity: EntityArgs,
        /// Only entities with exactly the components named (without it, `--user alice`
        /// also lists alice's per-client-id quotas).
        #[arg(long)]
        strict: bool,
    },
    /// Remove an entity's quotas: every key it has, or those named.
    Remove {
        #[command(flatten)]
        entity: EntityArgs,
        /// A key to remove (repeatable). [default: every key the entity has]
        #[arg(long = "key", value_name = "KEY")]
        keys: Vec<String>,
    },
}

/// Which entity a command is about: a user, a client id, or both.
#[derive(Args, Debug, Default)]
struct EntityArgs {
    /// A user, by its bare principal name (`alice`, not `User:alice`).
    #[arg(long, value_name = "NAME", conflicts_with = "default_user")]
    user: Option<String>,
    /// The default user: every user without a quota of its own.
    #[arg(long)]
    default_user: bool,
    /// A client id.
    #[arg(long, value_name = "ID", conflicts_with = "default_client_id")]
    client_id: Option<String>,
    /// The default client id: every client id without a quota of its own.
    #[arg(long)]
    default_client_id: bool,
}

/// What `set` changes.
#[derive(Args, Debug, Default)]
struct ChangeArgs {
    /// Bytes per second the entity may produce, per broker.
    #[arg(long, value_name = "N")]
    producer_byte_rate: Option<u64>,
    /// Bytes per second the entity may fetch, per broker.
    #[arg(long, value_name = "N")]
    consumer_byte_rate: Option<u64>,
    /// The percentage of one shard's time the entity's requests may take (may be
    /// fractional).
    #[arg(long, value_name = "P", value_parser = parse_number)]
    request_percentage: Option<f64>,
    /// Any quota key and its value (repeatable); the broker refuses keys it does not know.
    #[arg(long = "add", value_name = "KEY=VALUE", value_parser = parse_addition)]
    additions: Vec<(String, f64)>,
    /// A quota key to delete (repeatable).
    #[arg(long = "delete", value_name = "KEY")]
    deletions: Vec<String>,
}

/// One component of an entity: its type and its name, `None` for the type's default.
#[derive(Clone, Debug, PartialEq)]
struct Component {
    entity_type: String,
    name: Option<String>,
}

/// A quota entity: its components, user first, then client id, then any other type a
/// broker answers with, by name.
#[derive(Clone, Debug, PartialEq)]
struct Entity(Vec<Component>);

/// One change `set` or `remove` asks for.
#[derive(Clone, Debug, PartialEq)]
enum Change {
    Set { key: String, value: f64 },
    Remove { key: String },
}

/// An entity and the values it holds, by key.
#[derive(Clone, Debug, PartialEq)]
struct Quota {
    entity: Entity,
    values: BTreeMap<String, f64>,
}

/// Where an entity type goes in an entity: user, then client id, then the rest.
fn type_rank(entity_type: &str) -> u8 {
    match entity_type {
        USER => 0,
        CLIENT_ID => 1,
        _ => 2,
    }
}

impl Component {
    fn new(entity_type: &str, name: Option<&str>) -> Component {
        Component {
            entity_type: entity_type.to_string(),
            name: name.map(str::to_string),
        }
    }

    /// `user=alice` or `client-id=<default>`.
    fn describe(&self) -> String {
        let name = self.name.as_deref().unwrap_or(DEFAULT_NAME);
        format!("{}={name}", self.entity_type)
    }
}

impl Entity {
    /// The entity of these components, in the display order.
    fn new(mut components: Vec<Component>) -> Entity {
        components.sort_by(|left, right| {
            let left = (type_rank(&left.entity_type), &left.entity_type);
            left.cmp(&(type_rank(&right.entity_type), &right.entity_type))
        });
        Entity(components)
    }

    /// `user=alice,client-id=<default>`.
    fn describe(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(Component::describe).collect();
        parts.join(",")
    }

    /// The order `list` prints entities in: by type, defaults before names.
    fn sort_key(&self) -> Vec<(u8, &str, Option<&str>)> {
        self.0
            .iter()
            .map(|component| {
                (
                    type_rank(&component.entity_type),
                    component.entity_type.as_str(),
                    component.name.as_deref(),
                )
            })
            .collect()
    }

    fn json(&self) -> serde_json::Value {
        let components: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|component| (component.entity_type.clone(), json!(component.name)))
            .collect();
        serde_json::Value::Object(components)
    }

    fn wire(&self) -> Vec<EntityData> {
        self.0
            .iter()
            .map(|component| {
                EntityData::default()
                    .with_entity_type(str_bytes(&component.entity_type))
                    .with_entity_name(component.name.as_deref().map(str_bytes))
            })
            .collect()
    }
}

impl EntityArgs {
    /// The components named: `None` names the type's default.
    fn components(&self) -> anyhow::Result<Vec<Component>> {
        let mut components = Vec::new();
        let named = [
            (
                USER,
                &self.user,
                self.default_user,
                "--user",
                "--default-user",
            ),
            (
                CLIENT_ID,
                &self.client_id,
                self.default_client_id,
                "--client-id",
                "--default-client-id",
            ),
        ];
        for (entity_type, name, default, flag, default_flag) in named {
            match (name, default) {
                (Some(name), _) if name.is_empty() => {
                    bail!("{flag} needs a name ({default_flag} for the default)")
                }
                (Some(name), _) => components.push(Component::new(entity_type, Some(name))),
                (None, true) => components.push(Component::new(entity_type, None)),
                (None, false) => {}
            }
        }
        Ok(components)
    }

    /// The entity `set` and `remove` change, of which there must be a component at least.
    fn required(&self) -> anyhow::Result<Entity> {
        let components = self.components()?;
        if components.is_empty() {
            bail!("name an entity: --user, --default-user, --client-id or --default-client-id");
        }
        Ok(Entity::new(components))
    }
}

impl ChangeArgs {
    /// The changes in the order of the flags: the named rates, `--add`, then `--delete`;
    /// a key given twice is refused.
    fn changes(&self) -> anyhow::Result<Vec<Change>> {
        let named = [
            (
                PRODUCER_BYTE_RATE,
                self.producer_byte_rate.map(|rate| rate as f64),
            ),
            (
                CONSUMER_BYTE_RATE,
                self.consumer_byte_rate.map(|rate| rate as f64),
            ),
            (REQUEST_PERCENTAGE, self.request_percentage),
        ];
        let mut changes: Vec<Change> = named
            .into_iter()
            .filter_map(|(key, value)| {
                value.map(|value| Change::Set {
                    key: key.to_string(),
                    value,
                })
            })
            .collect();
        changes.extend(self.additions.iter().map(|(key, value)| Change::Set {
            key: key.clone(),
            value: *value,
        }));
        changes.extend(
            self.deletions
                .iter()
                .map(|key| Change::Remove { key: key.clone() }),
        );
        if changes.is_empty() {
            bail!(
                "name a change: --producer-byte-rate, --consumer-byte-rate, \
                 --request-percentage, --add KEY=VALUE or --delete KEY"
            );
        }
        check_distinct(&changes)?;
        Ok(changes)
    }
}

impl Change {
    fn key(&self) -> &str {
        match self {
            Change::Set { key, .. } | Change::Remove { key } => key,
        }
    }

    fn wire(&self) -> OpData {
        let op = OpData::default().with_key(str_bytes(self.key()));
        match self {
            Change::Set { value, .. } => op.with_value(*value),
            Change::Remove { .. } => op.with_remove(true),
        }
    }

    /// `set producer_byte_rate=1048576 for user=alice`, or `removed ...`.
    fn describe(&self, entity: &Entity) -> String {
        match self {
            Change::Set { key, value } => {
                format!(
                    "set {key}={} for {}",
                    format_value(*value),
                    entity.describe()
                )
            }
            Change::Remove { key } => format!("removed {key} for {}", entity.describe()),
        }
    }
}

/// Refuses a key changed twice in one command, which the broker would refuse anyway.
fn check_distinct(changes: &[Change]) -> anyhow::Result<()> {
    for (index, change) in changes.iter().enumerate() {
        if changes[..index]
            .iter()
            .any(|earlier| earlier.key() == change.key())
        {
            bail!("{} is changed twice", change.key());
        }
    }
    Ok(())
}

fn parse_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("expected a number, got {text:?}")),
    }
}

fn parse_addition(text: &str) -> Result<(String, f64), String> {
    let (key, value) = parse_key_value(text)?;
    Ok((key, parse_number(&value)?))
}

/// A value as an operator writes it: `1048576`, not `1048576.0`; `12.5` stays.
fn format_value(value: f64) -> String {
    // Rust's Display never writes an exponent, and drops the `.0` of an integral value.
    value.to_string()
}

/// A value as JSON: an integer when it is one, so that `1048576` compares equal to it.
fn value_json(value: f64) -> serde_json::Value {
    // Beyond 2^53 an f64 no longer holds every integer; such a value stays a float.
    const EXACT_INTEGERS_MAX: f64 = 9_007_199_254_740_992.0;
    if value.fract() == 0.0 && value.abs() <= EXACT_INTEGERS_MAX {
        json!(value as i64)
    } else {
        json!(value)
    }
}

// The wire: requests from the command line, and quotas from responses.

/// The filter of `list`: a component per entity flag (exact for a name, the default
/// match for a `--default-*`); none at all lists every quota.
fn describe_request(components: &[Component], strict: bool) -> DescribeClientQuotasRequest {
    let filter = components
        .iter()
        .map(|component| {
            let match_type = match component.name {
                Some(_) => MATCH_EXACT,
                None => MATCH_DEFAULT,
            };
            ComponentData::default()
                .with_entity_type(str_bytes(&component.entity_type))
                .with_match_type(match_type)
                .with_match(component.name.as_deref().map(str_bytes))
        })
        .collect();
    DescribeClientQuotasRequest::default()
        .with_components(filter)
        .with_strict(strict)
}

/// One entry: these changes to this entity.
fn alter_request(
    entity: &Entity,
    changes: &[Change],
    validate_only: bool,
) -> AlterClientQuotasRequest {
    let entry = EntryData::default()
        .with_entity(entity.wire())
        .with_ops(changes.iter().map(Change::wire).collect());
    AlterClientQuotasRequest::default()
        .with_entries(vec![entry])
        .with_validate_only(validate_only)
}

/// The quotas of a DescribeClientQuotas response, in the order `list` prints them.
fn decode_entries(entries: &[describe_client_quotas_response::EntryData]) -> Vec<Quota> {
    let mut quotas: Vec<Quota> = entries
        .iter()
        .map(|entry| {
            let components = entry
                .entity
                .iter()
                .map(|component| {
                    Component::new(
                        component.entity_type.as_str(),
                        component.entity_name.as_deref(),
                    )
                })
                .collect();
            let values = entry
                .values
                .iter()
                .map(|value| (value.key.to_string(), value.value))
                .collect();
            Quota {
                entity: Entity::new(components),
                values,
            }
        })
        .collect();
    quotas.sort_by(|left, right| left.entity.sort_key().cmp(&right.entity.sort_key()));
    quotas
}

// The commands.

/// Runs `spate quota ...`.
pub fn run(args: QuotaArgs) -> anyhow::Result<()> {
    let connection = &args.connection;
    match args.command {
        QuotaCommand::Set {
            entity,
            changes,
            validate_only,
        } => {
            let entity = entity.required()?;
            let changes = changes.changes()?;
            set(connection, &entity, &changes, validate_only)
        }
        QuotaCommand::List { entity, strict } => list(connection, &entity.components()?, strict),
        QuotaCommand::Remove { entity, keys } => {
            let entity = entity.required()?;
            let changes: Vec<Change> = keys.into_iter().map(|key| Change::Remove { key }).collect();
            check_distinct(&changes)?;
            remove(connection, &entity, changes)
        }
    }
}

/// A connection to the bootstrap broker and the version of `api` to speak with it.
fn connect(connection: &ConnectionArgs, api: ApiKey) -> anyhow::Result<(Cluster, i16)> {
    let mut cluster = Cluster::connect(connection)?;
    let version = cluster.any().version(api, VERSIONS)?;
    Ok((cluster, version))
}

/// Sends one AlterClientQuotas entry and fails with the broker's error if it refuses it.
fn alter(
    connection: &ConnectionArgs,
    entity: &Entity,
    changes: &[Change],
    validate_only: bool,
) -> anyhow::Result<()> {
    let (mut cluster, version) = connect(connection, ApiKey::AlterClientQuotas)?;
    let request = alter_request(entity, changes, validate_only);
    let response = cluster.any().send(version, &request)?;
    let [result] = response.entries.as_slice() else {
        bail!(
            "the broker answered {} results for 1 entity",
            response.entries.len()
        );
    };
    check_error(result.error_code, result.error_message.as_deref(), || {
        entity.describe()
    })
}

/// The quotas matching `components` (every quota when there are none).
fn describe(
    connection: &ConnectionArgs,
    components: &[Component],
    strict: bool,
) -> anyhow::Result<Vec<Quota>> {
    let (mut cluster, version) = connect(connection, ApiKey::DescribeClientQuotas)?;
    let request = describe_request(components, strict);
    let response = cluster.any().send(version, &request)?;
    check_error(
        response.error_code,
        response.error_message.as_deref(),
        || "cannot list quotas".to_string(),
    )?;
    Ok(decode_entries(
        response.entries.as_deref().unwrap_or_default(),
    ))
}

fn set(
    connection: &ConnectionArgs,
    entity: &Entity,
    changes: &[Change],
    validate_only: bool,
) -> anyhow::Result<()> {
    alter(connection, entity, changes, validate_only)?;
    print_changes(entity, changes, validate_only, connection.json);
    Ok(())
}

fn list(connection: &ConnectionArgs, components: &[Component], strict: bool) -> anyhow::Result<()> {
    let quotas = describe(connection, components, strict)?;
    if connection.json {
        print_json(&quotas_json(&quotas));
    } else {
        print_text(&quotas_table(&quotas));
    }
    Ok(())
}

/// Removes the keys named, or every key the entity has (found with a strict describe).
fn remove(connection: &ConnectionArgs, entity: &Entity, named: Vec<Change>) -> anyhow::Result<()> {
    let changes = if named.is_empty() {
        let quotas = describe(connection, &entity.0, true)?;
        held_keys(&quotas, entity)
    } else {
        named
    };
    if changes.is_empty() {
        if connection.json {
            print_changes(entity, &changes, false, true);
        } else {
            print_text(&format!(
                "{} has no quotas: nothing was removed.\n",
                entity.describe()
            ));
        }
        return Ok(());
    }
    alter(connection, entity, &changes, false)?;
    print_changes(entity, &changes, false, connection.json);
    Ok(())
}

/// A removal of every key `entity` holds among `quotas` (a strict describe answers only
/// the entity itself; the check keeps another broker's looser answer from widening it).
fn held_keys(quotas: &[Quota], entity: &Entity) -> Vec<Change> {
    quotas
        .iter()
        .filter(|quota| quota.entity == *entity)
        .flat_map(|quota| quota.values.keys())
        .map(|key| Change::Remove { key: key.clone() })
        .collect()
}

// Output.

/// What `set` or `remove` changed: a line per change, or one JSON object.
fn print_changes(entity: &Entity, changes: &[Change], validate_only: bool, json: bool) {
    if json {
        print_json(&changes_json(entity, changes, validate_only));
        return;
    }
    let lines: String = changes
        .iter()
        .map(|change| {
            let line = change.describe(entity);
            if validate_only {
                format!("valid, not applied (--validate-only): {line}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    print_text(&lines);
}

/// `{"entity": {...}, "set": {KEY: VALUE}, "removed": [KEY], "validate_only": false}`.
fn changes_json(entity: &Entity, changes: &[Change], validate_only: bool) -> serde_json::Value {
    let mut set = serde_json::Map::new();
    let mut removed = Vec::new();
    for change in changes {
        match change {
            Change::Set { key, value } => {
                set.insert(key.clone(), value_json(*value));
            }
            Change::Remove { key } => removed.push(json!(key)),
        }
    }
    json!({
        "entity": entity.json(),
        "set": set,
        "removed": removed,
        "validate_only": validate_only,
    })
}

/// `[{"entity": {"user": "alice", "client-id": null}, "values": {KEY: VALUE}}]`: null
/// for a default name, no field for a component the entity lacks.
fn quotas_json(quotas: &[Quota]) -> serde_json::Value {
    quotas
        .iter()
        .map(|quota| {
            let values: serde_json::Map<String, serde_json::Value> = quota
                .values
                .iter()
                .map(|(key, value)| (key.clone(), value_json(*value)))
                .collect();
            json!({"entity": quota.entity.json(), "values": values})
        })
        .collect()
}

/// ENTITY, KEY, VALUE: a row per value.
fn quotas_table(quotas: &[Quota]) -> String {
    let mut table = Table::new(&["ENTITY", "KEY", "VALUE"]);
    for quota in quotas {
        for (key, value) in &quota.values {
            table.row(vec![
                quota.entity.describe(),
                key.clone(),
                format_value(*value),
            ]);
        }
    }
    table.render()
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;
