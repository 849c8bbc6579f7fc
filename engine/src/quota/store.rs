//! The client quotas an operator set, as the metadata image keeps them, and Kafka's rules
//! for which of them applies to a request.
//!
//! A quota belongs to an entity: a user, a client id, or a user with a client id, where
//! either name may be Kafka's `<default>` (every user, every client id). A request's user is
//! its principal's name (`alice` for `User:alice`; `ANONYMOUS` without authentication).
//! Kafka's precedence, most specific first, per quota key:
//!
//! 1. user and client id;       2. user and default client id;   3. user;
//! 4. default user, client id;  5. default user and client id;   6. default user;
//! 7. client id;                8. default client id.
//!
//! The quota found is shared by every client of the entity it names: a quota on user alice
//! binds all of alice's connections together, one on the default user binds each user's
//! connections separately ([`Resolved::sensor`]).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Kafka's entity type names.
pub const USER: &str = "user";
/// Kafka's entity type names.
pub const CLIENT_ID: &str = "client-id";
/// Kafka's entity type names; ip quotas (connection_creation_rate) are refused.
pub const IP: &str = "ip";

/// A quota key Spate enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKey {
    /// Bytes per second of produce requests.
    ProducerByteRate,
    /// Bytes per second of fetch responses to consumers.
    ConsumerByteRate,
    /// Percent of one shard's time spent on the entity's requests.
    RequestPercentage,
}

impl QuotaKey {
    /// Every key, in the order of [`QuotaValues`].
    pub const ALL: [QuotaKey; 3] = [
        QuotaKey::ProducerByteRate,
        QuotaKey::ConsumerByteRate,
        QuotaKey::RequestPercentage,
    ];

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            QuotaKey::ProducerByteRate => "producer_byte_rate",
            QuotaKey::ConsumerByteRate => "consumer_byte_rate",
            QuotaKey::RequestPercentage => "request_percentage",
        }
    }

    /// The key of a name, or why it is refused.
    pub fn parse(name: &str) -> Result<QuotaKey, String> {
        QuotaKey::ALL
            .into_iter()
            .find(|key| key.name() == name)
            .ok_or_else(|| match name {
                "controller_mutation_rate" | "connection_creation_rate" => {
                    format!("Spate does not enforce {name} quotas")
                }
                _ => format!("unknown quota key {name}"),
            })
    }

    /// Kafka's byte rates are LONG configs: whole numbers.
    fn integral(self) -> bool {
        !matches!(self, QuotaKey::RequestPercentage)
    }

    /// Checks a value for the key as Kafka's ClientQuotaControlManager does, and refuses
    /// what no rate could mean (Spate divides by it).
    pub fn validate(self, value: f64) -> Result<(), String> {
        if !value.is_finite() || value <= 0.0 {
            return Err(format!(
                "{} must be a positive number, not {value}",
                self.name()
            ));
        }
        if self.integral() && value.fract() != 0.0 {
            return Err(format!(
                "{} must be a whole number, not {value}",
                self.name()
            ));
        }
        Ok(())
    }
}

/// A quota value. Kafka sends doubles; kept as one so that the metadata records stay `Eq`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &QuotaValue) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// One component of an entity: a name, or Kafka's `<default>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityName {
    /// `<default>`: every user, or every client id, without a quota of its own.
    Default,
    /// One user or client id.
    Name(String),
}

impl EntityName {
    /// From Kafka's wire form, where null is the default.
    pub fn from_wire(name: Option<&str>) -> EntityName {
        match name {
            None => EntityName::Default,
            Some(name) => EntityName::Name(name.to_string()),
        }
    }

    /// Kafka's wire form.
    pub fn as_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Name(name) => Some(name),
        }
    }
}

impl std::fmt::Display for EntityName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_wire().unwrap_or("<default>"))
    }
}

/// What a quota applies to: a user, a client id, or both.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    /// The user, if the entity names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityName>,
    /// The client id, if the entity names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<EntityName>,
}

impl QuotaEntity {
    /// An entity from Kafka's (type, name) components, or why it is refused (Kafka's
    /// INVALID_REQUEST cases: empty, repeated or unknown types; ip quotas, which Spate does
    /// not enforce, are refused too).
    pub fn from_components<'a>(
        components: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<QuotaEntity, String> {
        let mut entity = QuotaEntity {
            user: None,
            client_id: None,
        };
        for (entity_type, name) in components {
            let slot = match entity_type {
                USER => &mut entity.user,
                CLIENT_ID => &mut entity.client_id,
                IP => return Err("Spate does not enforce ip quotas".to_string()),
                other => return Err(format!("unknown entity type {other:?}")),
            };
            if slot.is_some() {
                return Err(format!("entity type {entity_type} appears twice"));
            }
            if name == Some("") {
                // As Kafka: an empty name would bind every client that sends no client id.
                return Err(format!("empty {entity_type} names are not supported"));
            }
            *slot = Some(EntityName::from_wire(name));
        }
        if entity.user.is_none() && entity.client_id.is_none() {
            return Err("empty quota entity".to_string());
        }
        Ok(entity)
    }

    /// Kafka's (type, name) components, user first.
    pub fn components(&self) -> impl Iterator<Item = (&'static str, &EntityName)> {
        (self.user.iter().map(|name| (USER, name)))
            .chain(self.client_id.iter().map(|name| (CLIENT_ID, name)))
    }

    /// `user=alice,client-id=<default>`, for logs and the CLI.
    pub fn describe(&self) -> String {
        self.components()
            .map(|(entity_type, name)| format!("{entity_type}={name}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One entity's quotas, by [`QuotaKey::ALL`]'s order.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QuotaValues([Option<f64>; 3]);

impl QuotaValues {
    /// The value of a key, if set.
    pub fn get(&self, key: QuotaKey) -> Option<f64> {
        self.0[key as usize]
    }

    fn set(&mut self, key: QuotaKey, value: Option<f64>) {
        self.0[key as usize] = value;
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    /// The keys set, with their values.
    pub fn iter(&self) -> impl Iterator<Item = (QuotaKey, f64)> + '_ {
        QuotaKey::ALL
            .into_iter()
            .filter_map(|key| Some((key, self.get(key)?)))
    }
}

/// The quotas under one user name (or the default user): the user's own, and those of the
/// user with each client id.
#[derive(Clone, Debug, Default)]
struct UserQuotas {
    own: QuotaValues,
    clients: HashMap<String, QuotaValues>,
    default_client: QuotaValues,
}

impl UserQuotas {
    fn is_empty(&self) -> bool {
        self.own.is_empty() && self.clients.is_empty() && self.default_client.is_empty()
    }
}

/// The quota that applies to a request, and whose sensor measures it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resolved {
    /// The bound: bytes per second, or percent of a shard.
    pub bound: f64,
    /// Which names key the sensor shared by the clients it binds together: the user's
    /// (when the entity names a user, or the default user) and the client id's (likewise).
    pub sensor: SensorScope,
}

/// Which of a request's names its quota's sensor is keyed by (Kafka's metric tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SensorScope {
    /// Keyed by the request's user.
    pub by_user: bool,
    /// Keyed by the request's client id.
    pub by_client_id: bool,
}

/// Every client quota, indexed for [`QuotaStore::resolve`] without allocating.
#[derive(Clone, Debug, Default)]
pub struct QuotaStore {
    /// Canonical, ordered: what DescribeClientQuotas lists and snapshots carry.
    entries: BTreeMap<QuotaEntity, QuotaValues>,
    /// Which keys any entity sets: a request skips the quotas of keys no one set.
    keys_set: [usize; 3],
    users: HashMap<String, UserQuotas>,
    default_user: UserQuotas,
    clients: HashMap<String, QuotaValues>,
    default_client: QuotaValues,
}

impl QuotaStore {
    /// Whether any entity has a quota for `key`: the fast path of every request.
    pub fn any(&self, key: QuotaKey) -> bool {
        self.keys_set[key as usize] > 0
    }

    /// Sets (`Some`) or removes (`None`) one key of one entity. The value was validated
    /// before it became a record.
    pub fn set(&mut self, entity: &QuotaEntity, key: QuotaKey, value: Option<f64>) {
        let before = self.entries.get(entity).and_then(|values| values.get(key));
        match (before.is_some(), value.is_some()) {
            (false, true) => self.keys_set[key as usize] += 1,
            (true, false) => self.keys_set[key as usize] -= 1,
            _ => {}
        }
        let values = self.entries.entry(entity.clone()).or_default();
        values.set(key, value);
        if values.is_empty() {
            self.entries.remove(entity);
        }
        self.index_mut(entity).set(key, value);
        self.prune(entity);
    }

    /// The index slot of an entity.
    fn index_mut(&mut self, entity: &QuotaEntity) -> &mut QuotaValues {
        let user = match &entity.user {
            None => {
                return match entity.client_id.as_ref() {
                    Some(EntityName::Name(client)) => {
                        self.clients.entry(client.clone()).or_default()
                    }
                    _ => &mut self.default_client,
                }
            }
            Some(EntityName::Default) => &mut self.default_user,
            Some(EntityName::Name(user)) => self.users.entry(user.clone()).or_default(),
        };
        match &entity.client_id {
            None => &mut user.own,
            Some(EntityName::Default) => &mut user.default_client,
            Some(EntityName::Name(client)) => user.clients.entry(client.clone()).or_default(),
        }
    }

    /// Drops the index's empty slots of an entity, so that the index stays as small as the
    /// quotas (a user removed is gone).
    fn prune(&mut self, entity: &QuotaEntity) {
        let user = match &entity.user {
            None => {
                if let Some(EntityName::Name(client)) = &entity.client_id {
                    if self.clients.get(client).is_some_and(QuotaValues::is_empty) {
                        self.clients.remove(client);
                    }
                }
                return;
            }
            Some(EntityName::Default) => &mut self.default_user,
            Some(EntityName::Name(user)) => match self.users.get_mut(user) {
                Some(quotas) => quotas,
                None => return,
            },
        };
        if let Some(EntityName::Name(client)) = &entity.client_id {
            if user.clients.get(client).is_some_and(QuotaValues::is_empty) {
                user.clients.remove(client);
            }
        }
        if let Some(EntityName::Name(name)) = &entity.user {
            if self.users.get(name).is_some_and(UserQuotas::is_empty) {
                self.users.remove(name);
            }
        }
    }

    /// Every entity with its quotas, ordered.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&QuotaEntity, &QuotaValues)> {
        self.entries.iter()
    }

    /// The quotas of one entity.
    pub fn get(&self, entity: &QuotaEntity) -> Option<&QuotaValues> {
        self.entries.get(entity)
    }

    /// The quota for `key` that binds a request of `user` with `client_id`, by Kafka's
    /// precedence (the module docs).
    pub fn resolve(&self, key: QuotaKey, user: &str, client_id: &str) -> Option<Resolved> {
        if !self.any(key) {
            return None;
        }
        let found = |values: Option<&QuotaValues>, by_user, by_client_id| {
            // Validated positive before stored; a record that says otherwise binds nothing.
            let bound = values?
                .get(key)
                .filter(|bound| bound.is_finite() && *bound > 0.0)?;
            Some(Resolved {
                bound,
                sensor: SensorScope {
                    by_user,
                    by_client_id,
                },
            })
        };
        let for_user = |quotas: Option<&UserQuotas>| {
            let quotas = quotas?;
            found(quotas.clients.get(client_id), true, true)
                .or_else(|| found(Some(&quotas.default_client), true, true))
                .or_else(|| found(Some(&quotas.own), true, false))
        };
        for_user(self.users.get(user))
            .or_else(|| for_user(Some(&self.default_user)))
            .or_else(|| found(self.clients.get(client_id), false, true))
            .or_else(|| found(Some(&self.default_client), false, true))
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
