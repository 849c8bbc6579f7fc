//! Access control lists with Kafka's semantics, and the authorizer that checks them.
//!
//! An ACL ([`AclBinding`]) allows or denies a principal (`User:alice`, or `User:*` for
//! everyone) an operation on resources from a host (`*` for any). It names its resources by
//! a pattern: a literal name, the literal `*` (every resource of the type), or a prefix
//! (KIP-290). The rules are those of Kafka's `StandardAuthorizer`:
//! - super users (`--super-users`) may do everything;
//! - a matching DENY wins over any ALLOW;
//! - an ALLOW of READ, WRITE, DELETE or ALTER also allows DESCRIBE, and an ALLOW of
//!   ALTER_CONFIGS also allows DESCRIBE_CONFIGS; ALL stands for every operation;
//! - a resource that no ACL names at all (for any principal) is allowed to everyone only
//!   under `--allow-everyone-if-no-acl-found`, else denied.
//!
//! ACLs live in the metadata image ([`AclStore`], written by the controller from CreateAcls
//! and DeleteAcls), so every shard and every node checks the same ones. Handlers ask through
//! `crate::security::authorizer`, which also answers the authorized-operations bitfields
//! (KIP-430) that Metadata, DescribeCluster and DescribeGroups carry.

use serde::{Deserialize, Serialize};

/// The only name of the cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal resource name matching every resource of its type.
pub const WILDCARD: &str = "*";
/// The principal that matches every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Kafka's resource types (`org.apache.kafka.common.resource.ResourceType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// The cluster (named [`CLUSTER_NAME`]).
    Cluster,
    /// A transactional id.
    TransactionalId,
    /// A delegation token.
    DelegationToken,
    /// A user (for delegation tokens).
    User,
}

impl ResourceType {
    /// Every type.
    pub const ALL: [ResourceType; 6] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
        ResourceType::DelegationToken,
        ResourceType::User,
    ];

    /// The wire code.
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::DelegationToken => 6,
            ResourceType::User => 7,
        }
    }

    /// The type of a wire code (not ANY or UNKNOWN).
    pub fn from_code(code: i8) -> Option<ResourceType> {
        ResourceType::ALL
            .into_iter()
            .find(|kind| kind.code() == code)
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "TOPIC",
            ResourceType::Group => "GROUP",
            ResourceType::Cluster => "CLUSTER",
            ResourceType::TransactionalId => "TRANSACTIONAL_ID",
            ResourceType::DelegationToken => "DELEGATION_TOKEN",
            ResourceType::User => "USER",
        }
    }

    /// The type of a name, in any case, `-` or `_` between words.
    pub fn parse(name: &str) -> Option<ResourceType> {
        let name = name.to_ascii_uppercase().replace('-', "_");
        ResourceType::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The operations the type supports, those an authorized-operations bitfield reports
    /// (Kafka's `AclEntry.supportedOperations`, as Kafka 3 answers for groups).
    pub fn operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                Alter,
                Describe,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
        }
    }
}

/// How an ACL names its resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatternType {
    /// The name itself (or every resource, for [`WILDCARD`]).
    Literal,
    /// Every resource whose name starts with it.
    Prefixed,
}

impl PatternType {
    /// The wire code.
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    /// The pattern type of a wire code (not ANY, MATCH or UNKNOWN).
    pub fn from_code(code: i8) -> Option<PatternType> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "LITERAL",
            PatternType::Prefixed => "PREFIXED",
        }
    }
}

/// Kafka's ACL operations (`org.apache.kafka.common.acl.AclOperation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AclOperation {
    /// Every operation.
    All,
    /// Read.
    Read,
    /// Write.
    Write,
    /// Create.
    Create,
    /// Delete.
    Delete,
    /// Alter.
    Alter,
    /// Describe.
    Describe,
    /// Between brokers.
    ClusterAction,
    /// Describe configs.
    DescribeConfigs,
    /// Alter configs.
    AlterConfigs,
    /// Idempotent produce.
    IdempotentWrite,
    /// Create delegation tokens.
    CreateTokens,
    /// Describe delegation tokens.
    DescribeTokens,
}

impl AclOperation {
    /// Every operation.
    pub const ALL: [AclOperation; 13] = [
        AclOperation::All,
        AclOperation::Read,
        AclOperation::Write,
        AclOperation::Create,
        AclOperation::Delete,
        AclOperation::Alter,
        AclOperation::Describe,
        AclOperation::ClusterAction,
        AclOperation::DescribeConfigs,
        AclOperation::AlterConfigs,
        AclOperation::IdempotentWrite,
        AclOperation::CreateTokens,
        AclOperation::DescribeTokens,
    ];

    /// The wire code (2 for ALL up to 14).
    pub fn code(self) -> i8 {
        self as i8 + 2
    }

    /// The operation of a wire code (not ANY or UNKNOWN).
    pub fn from_code(code: i8) -> Option<AclOperation> {
        AclOperation::ALL
            .into_iter()
            .find(|operation| operation.code() == code)
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            AclOperation::All => "ALL",
            AclOperation::Read => "READ",
            AclOperation::Write => "WRITE",
            AclOperation::Create => "CREATE",
            AclOperation::Delete => "DELETE",
            AclOperation::Alter => "ALTER",
            AclOperation::Describe => "DESCRIBE",
            AclOperation::ClusterAction => "CLUSTER_ACTION",
            AclOperation::DescribeConfigs => "DESCRIBE_CONFIGS",
            AclOperation::AlterConfigs => "ALTER_CONFIGS",
            AclOperation::IdempotentWrite => "IDEMPOTENT_WRITE",
            AclOperation::CreateTokens => "CREATE_TOKENS",
            AclOperation::DescribeTokens => "DESCRIBE_TOKENS",
        }
    }

    /// The operation of a name as Kafka's tools write it (`Read`, `DescribeConfigs`,
    /// `DESCRIBE_CONFIGS`, `describe-configs`).
    pub fn parse(name: &str) -> Option<AclOperation> {
        let squashed: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        AclOperation::ALL
            .into_iter()
            .find(|operation| operation.name().replace('_', "") == squashed)
    }

    /// Whether an ALLOW of `self` allows `wanted` (Kafka's implied operations).
    fn allows(self, wanted: AclOperation) -> bool {
        use AclOperation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` denies `wanted`.
    fn denies(self, wanted: AclOperation) -> bool {
        self == AclOperation::All || self == wanted
    }
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AclPermission {
    /// Deny.
    Deny,
    /// Allow.
    Allow,
}

impl AclPermission {
    /// The wire code.
    pub fn code(self) -> i8 {
        match self {
            AclPermission::Deny => 2,
            AclPermission::Allow => 3,
        }
    }

    /// The permission of a wire code (not ANY or UNKNOWN).
    pub fn from_code(code: i8) -> Option<AclPermission> {
        match code {
            2 => Some(AclPermission::Deny),
            3 => Some(AclPermission::Allow),
            _ => None,
        }
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            AclPermission::Deny => "DENY",
            AclPermission::Allow => "ALLOW",
        }
    }
}

/// One ACL: a pattern of resources and what one principal may or may not do on them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    /// The resources' type.
    pub resource_type: ResourceType,
    /// The name, prefix, or [`WILDCARD`].
    pub resource_name: String,
    /// How `resource_name` matches.
    pub pattern_type: PatternType,
    /// `User:NAME`, or [`WILDCARD_PRINCIPAL`].
    pub principal: String,
    /// A client's IP address, or `*`.
    pub host: String,
    /// The operation.
    pub operation: AclOperation,
    /// Allow or deny.
    pub permission: AclPermission,
}

impl AclBinding {
    /// Why the binding cannot be stored (Kafka's `AclControlManager.validateNewAcl`), as the
    /// message of an INVALID_REQUEST.
    pub fn invalid(&self) -> Option<String> {
        if self.resource_name.is_empty() {
            return Some("Resource name should not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Some(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Some(format!(
                    "Could not parse principal from `{}` (no colon is found).",
                    self.principal
                ))
            }
        }
        if self.host.is_empty() {
            return Some("Invalid host: it should not be empty".into());
        }
        None
    }

    /// One line for the CLI and logs, in kafka-acls' words.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {} from host {} on {}:{}:{}",
            self.principal,
            self.permission.name(),
            self.operation.name(),
            self.host,
            self.resource_type.name(),
            self.pattern_type.name(),
            self.resource_name
        )
    }
}

/// Which pattern types a filter matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    /// Any pattern type; a name given must be the pattern's own.
    Any,
    /// Every pattern that matches the name given: the literal name, the wildcard, and the
    /// prefixes of the name.
    Match,
    /// Exactly this pattern type; a name given must be the pattern's own.
    Exactly(PatternType),
}

impl PatternFilter {
    /// The wire code (ANY 1, MATCH 2, or the pattern type's).
    pub fn code(self) -> i8 {
        match self {
            PatternFilter::Any => ANY,
            PatternFilter::Match => MATCH,
            PatternFilter::Exactly(kind) => kind.code(),
        }
    }
}

/// A filter over ACLs, as DescribeAcls and DeleteAcls send it (`None`: any).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    /// The resources' type.
    pub resource_type: Option<ResourceType>,
    /// The resource name.
    pub resource_name: Option<String>,
    /// The pattern types.
    pub pattern: PatternFilter,
    /// The principal.
    pub principal: Option<String>,
    /// The host.
    pub host: Option<String>,
    /// The operation.
    pub operation: Option<AclOperation>,
    /// Allow or deny.
    pub permission: Option<AclPermission>,
}

/// The wire code of ANY in every ACL enum of a filter.
pub const ANY: i8 = 1;
/// The wire code of MATCH among a filter's pattern types.
const MATCH: i8 = 2;

impl AclFilter {
    /// A filter as the wire gives it; `Err` for codes that are UNKNOWN or out of range
    /// (Kafka's "The request contained an invalid filter").
    pub fn from_wire(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, String> {
        fn invalid(what: &str, code: i8) -> String {
            format!("Invalid {what} {code} in the filter")
        }
        fn any_or<T>(code: i8, parsed: Option<T>, what: &str) -> Result<Option<T>, String> {
            match code {
                ANY => Ok(None),
                _ => parsed.map(Some).ok_or_else(|| invalid(what, code)),
            }
        }
        let pattern = match pattern_type {
            ANY => PatternFilter::Any,
            MATCH => PatternFilter::Match,
            code => PatternFilter::Exactly(
                PatternType::from_code(code).ok_or_else(|| invalid("pattern type", code))?,
            ),
        };
        Ok(AclFilter {
            resource_type: any_or(
                resource_type,
                ResourceType::from_code(resource_type),
                "resource type",
            )?,
            resource_name: resource_name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation: any_or(operation, AclOperation::from_code(operation), "operation")?,
            permission: any_or(
                permission,
                AclPermission::from_code(permission),
                "permission",
            )?,
        })
    }

    /// Every ACL.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    /// Exactly one binding.
    pub fn exactly(binding: &AclBinding) -> AclFilter {
        AclFilter {
            resource_type: Some(binding.resource_type),
            resource_name: Some(binding.resource_name.clone()),
            pattern: PatternFilter::Exactly(binding.pattern_type),
            principal: Some(binding.principal.clone()),
            host: Some(binding.host.clone()),
            operation: Some(binding.operation),
            permission: Some(binding.permission),
        }
    }

    /// Whether the filter matches an ACL (Kafka's `AclBindingFilter.matches`).
    pub fn matches(&self, binding: &AclBinding) -> bool {
        fn either<T: PartialEq>(filter: &Option<T>, value: &T) -> bool {
            filter.as_ref().is_none_or(|wanted| wanted == value)
        }
        if !either(&self.resource_type, &binding.resource_type)
            || !either(&self.operation, &binding.operation)
            || !either(&self.permission, &binding.permission)
            || !either(&self.principal, &binding.principal)
            || !either(&self.host, &binding.host)
        {
            return false;
        }
        match (self.pattern, &self.resource_name) {
            (PatternFilter::Exactly(kind), _) if kind != binding.pattern_type => false,
            (_, None) => true,
            (PatternFilter::Any | PatternFilter::Exactly(_), Some(name)) => {
                *name == binding.resource_name
            }
            (PatternFilter::Match, Some(name)) => match binding.pattern_type {
                PatternType::Literal => {
                    *name == binding.resource_name || binding.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&binding.resource_name),
            },
        }
    }
}

mod store;
pub use store::{AclStore, AuthorizerConfig, Subject};

/// The value Kafka sends when authorized operations were not requested.
pub const NOT_REQUESTED: i32 = i32::MIN;

/// The field's value: the bitfield if the client asked, else the sentinel.
pub fn if_requested(requested: bool, operations: impl FnOnce() -> i32) -> i32 {
    if requested {
        operations()
    } else {
        NOT_REQUESTED
    }
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
