//! The index of every ACL and the checks against it (Kafka's `StandardAuthorizer` rules;
//! see the parent module's docs).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{
    AclBinding, AclFilter, AclOperation, AclPermission, PatternType, ResourceType, WILDCARD,
    WILDCARD_PRINCIPAL,
};

/// What an ACL says about one principal, host and operation (the binding without its
/// resource, which is the index's key).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    principal: String,
    host: String,
    operation: AclOperation,
    permission: AclPermission,
}

/// One resource type's ACLs, by pattern.
#[derive(Clone, Debug, Default)]
struct TypeIndex {
    literal: HashMap<String, Vec<Entry>>,
    prefixed: BTreeMap<String, Vec<Entry>>,
}

impl TypeIndex {
    /// The entries of every pattern that matches `name`: the literal name, the wildcard, and
    /// each stored prefix of it.
    fn matching<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let literal = self.literal.get(name).into_iter().flatten();
        let wildcard = (name != WILDCARD)
            .then(|| self.literal.get(WILDCARD))
            .flatten()
            .into_iter()
            .flatten();
        // A lookup per prefix of the name, only when prefixed ACLs exist: names are short
        // (a topic's at most 249 bytes) and prefixed ACLs few.
        let prefixes = (!self.prefixed.is_empty())
            .then(|| {
                name.char_indices()
                    .map(|(at, c)| at + c.len_utf8())
                    .filter_map(|end| self.prefixed.get(&name[..end]))
                    .flatten()
            })
            .into_iter()
            .flatten();
        literal.chain(wildcard).chain(prefixes)
    }
}

/// Who asks: a principal (`User:alice`) from a host (its IP address).
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// The principal.
    pub principal: &'a str,
    /// The client's IP address.
    pub host: &'a str,
}

impl Entry {
    fn names(&self, subject: Subject<'_>) -> bool {
        (self.principal == subject.principal || self.principal == WILDCARD_PRINCIPAL)
            && (self.host == WILDCARD || self.host == subject.host)
    }
}

/// The authorizer's settings (`--authorizer`, `--super-users`,
/// `--allow-everyone-if-no-acl-found`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Whether requests are checked against ACLs at all (`--authorizer acl`).
    pub enabled: bool,
    /// Principals allowed everything.
    pub super_users: Vec<String>,
    /// Whether a resource that no ACL names is open to everyone.
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Parses `--super-users` (`User:admin;User:ops`).
    pub fn parse_super_users(list: &str) -> anyhow::Result<Vec<String>> {
        list.split(';')
            .map(str::trim)
            .filter(|user| !user.is_empty())
            .map(|user| match user.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(user.to_string()),
                _ => anyhow::bail!("super user `{user}` is not a principal like User:NAME"),
            })
            .collect()
    }
}

/// Every ACL, indexed for the checks; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct AclStore {
    bindings: BTreeSet<AclBinding>,
    index: [TypeIndex; 6],
}

impl AclStore {
    /// Adds an ACL; false if it was there.
    pub fn insert(&mut self, binding: AclBinding) -> bool {
        if self.bindings.contains(&binding) {
            return false;
        }
        let index = &mut self.index[binding.resource_type.index()];
        let entries = match binding.pattern_type {
            PatternType::Literal => index
                .literal
                .entry(binding.resource_name.clone())
                .or_default(),
            PatternType::Prefixed => index
                .prefixed
                .entry(binding.resource_name.clone())
                .or_default(),
        };
        entries.push(Entry {
            principal: binding.principal.clone(),
            host: binding.host.clone(),
            operation: binding.operation,
            permission: binding.permission,
        });
        self.bindings.insert(binding)
    }

    /// Removes an ACL; false if it was not there.
    pub fn remove(&mut self, binding: &AclBinding) -> bool {
        if !self.bindings.remove(binding) {
            return false;
        }
        let index = &mut self.index[binding.resource_type.index()];
        let map_entries = match binding.pattern_type {
            PatternType::Literal => index.literal.get_mut(&binding.resource_name),
            PatternType::Prefixed => index.prefixed.get_mut(&binding.resource_name),
        };
        let mut now_empty = false;
        if let Some(entries) = map_entries {
            entries.retain(|entry| {
                !(entry.principal == binding.principal
                    && entry.host == binding.host
                    && entry.operation == binding.operation
                    && entry.permission == binding.permission)
            });
            now_empty = entries.is_empty();
        }
        if now_empty {
            match binding.pattern_type {
                PatternType::Literal => index.literal.remove(&binding.resource_name),
                PatternType::Prefixed => index.prefixed.remove(&binding.resource_name),
            };
        }
        true
    }

    /// Every ACL, ordered.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &AclBinding> {
        self.bindings.iter()
    }

    /// Whether an ACL is stored.
    pub fn contains(&self, binding: &AclBinding) -> bool {
        self.bindings.contains(binding)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// The ACLs a filter matches.
    pub fn matching<'a>(&'a self, filter: &'a AclFilter) -> impl Iterator<Item = &'a AclBinding> {
        self.bindings
            .iter()
            .filter(move |binding| filter.matches(binding))
    }

    /// Whether `subject` may do `operation` on a resource; see the module docs.
    pub fn authorize(
        &self,
        config: &AuthorizerConfig,
        subject: Subject<'_>,
        resource_type: ResourceType,
        name: &str,
        operation: AclOperation,
    ) -> bool {
        if !config.enabled || config.super_users.iter().any(|u| u == subject.principal) {
            return true;
        }
        let mut named = false;
        let mut allowed = false;
        for entry in self.index[resource_type.index()].matching(name) {
            named = true;
            if !entry.names(subject) {
                continue;
            }
            match entry.permission {
                AclPermission::Deny if entry.operation.denies(operation) => return false,
                AclPermission::Allow if entry.operation.allows(operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!named && config.allow_everyone_if_no_acl_found)
    }

    /// Whether `subject` may do `operation` on some resource of a type (Kafka's
    /// `Authorizer.authorizeByResourceType`, which KIP-679 uses to let WRITE on any topic
    /// imply IDEMPOTENT_WRITE): an ALLOW on a pattern that no DENY dominates. Operations
    /// match exactly or by ALL here, without implications, as in Kafka.
    pub fn authorize_any(
        &self,
        config: &AuthorizerConfig,
        subject: Subject<'_>,
        resource_type: ResourceType,
        operation: AclOperation,
    ) -> bool {
        // Kafka first checks a made-up name, which lets super users and (with no ACL in the
        // way) allow-everyone-if-no-acl-found through.
        if self.authorize(config, subject, resource_type, "hardcode", operation) {
            return true;
        }
        let index = &self.index[resource_type.index()];
        let has = |entries: &[Entry], permission: AclPermission| {
            entries.iter().any(|entry| {
                entry.names(subject)
                    && entry.permission == permission
                    && (entry.operation == operation || entry.operation == AclOperation::All)
            })
        };
        let denied_literal = |name: &str| {
            index
                .literal
                .get(name)
                .is_some_and(|e| has(e, AclPermission::Deny))
        };
        if denied_literal(WILDCARD) {
            return false;
        }
        if index
            .literal
            .get(WILDCARD)
            .is_some_and(|e| has(e, AclPermission::Allow))
        {
            return true;
        }
        let dominated = |name: &str| {
            name.char_indices()
                .map(|(at, c)| &name[..at + c.len_utf8()])
                .any(|prefix| {
                    index
                        .prefixed
                        .get(prefix)
                        .is_some_and(|e| has(e, AclPermission::Deny))
                })
        };
        let literal = index.literal.iter().any(|(name, entries)| {
            has(entries, AclPermission::Allow) && !denied_literal(name) && !dominated(name)
        });
        literal
            || index
                .prefixed
                .iter()
                .any(|(prefix, entries)| has(entries, AclPermission::Allow) && !dominated(prefix))
    }

    /// The authorized-operations bitfield of a resource (KIP-430): a bit per operation of
    /// the type that `subject` may do.
    pub fn authorized_operations(
        &self,
        config: &AuthorizerConfig,
        subject: Subject<'_>,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        resource_type
            .operations()
            .iter()
            .filter(|&&operation| self.authorize(config, subject, resource_type, name, operation))
            .fold(0, |bits, operation| bits | 1 << operation.code())
    }
}
