//! `spate acl add|list|remove`: the ACLs a broker's authorizer checks, through CreateAcls,
//! DescribeAcls and DeleteAcls (v1–3), like Kafka's `kafka-acls.sh`.
//!
//! The ACL types and their Kafka names are the broker's own (`spate_engine::security::acl`):
//! `add` builds [`AclBinding`]s, `list` and `remove` send [`AclFilter`]s, and this module
//! only turns them into wire messages and back.
//!
//! `add` creates every principal × host × operation × resource combination, as kafka-acls
//! does; `remove` deletes the same combinations, or with no `--allow`/`--deny` every ACL on
//! the resources (narrowed by `--principal`).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{ApiKey, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use serde_json::json;
use spate_net::error_code::SECURITY_DISABLED;

use super::broker::{str_bytes, Cluster};
use super::output::{print_json, print_text, Table};
use super::{check_error, ConnectionArgs};
use spate_engine::security::acl::{
    self, AclBinding, AclFilter, AclOperation, AclPermission, PatternFilter, PatternType,
    ResourceType, CLUSTER_NAME, WILDCARD,
};

/// The versions of CreateAcls, DescribeAcls and DeleteAcls this client speaks (those with
/// pattern types, KIP-290; Kafka 4 serves no other).
const VERSIONS: std::ops::RangeInclusive<i16> = 1..=3;

/// What SECURITY_DISABLED means to an operator.
const NO_AUTHORIZER: &str = "the broker has no authorizer: start it with --authorizer acl";

/// `spate acl ...`
#[derive(Args, Debug)]
pub struct AclArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: AclCommand,
}

#[derive(Subcommand, Debug)]
enum AclCommand {
    /// Add ACLs: every principal × operation × resource (× host) given.
    Add {
        #[command(flatten)]
        grants: GrantArgs,
        #[command(flatten)]
        resources: ResourceArgs,
    },
    /// List ACLs: all, or those of a principal or resource.
    List {
        /// Only this principal's ACLs (repeatable).
        #[arg(long = "principal", value_name = "PRINCIPAL", value_parser = parse_principal)]
        principals: Vec<String>,
        #[command(flatten)]
        resources: ResourceArgs,
    },
    /// Remove the ACLs `add` with the same options would add, or with only a resource (and
    /// optionally --principal) every ACL on it.
    Remove {
        #[command(flatten)]
        grants: GrantArgs,
        /// Without --allow/--deny: only this principal's ACLs (repeatable).
        #[arg(
            long = "principal",
            value_name = "PRINCIPAL",
            value_parser = parse_principal,
            conflicts_with_all = ["allow", "deny"]
        )]
        principals: Vec<String>,
        #[command(flatten)]
        resources: ResourceArgs,
    },
}

/// Who is allowed or denied what, from where.
#[derive(Args, Debug)]
struct GrantArgs {
    /// A principal to allow, `User:NAME` (`User:*` for everyone); repeatable.
    #[arg(
        long,
        visible_alias = "allow-principal",
        value_name = "PRINCIPAL",
        value_parser = parse_principal
    )]
    allow: Vec<String>,
    /// A principal to deny; repeatable.
    #[arg(
        long,
        visible_alias = "deny-principal",
        value_name = "PRINCIPAL",
        value_parser = parse_principal
    )]
    deny: Vec<String>,
    /// An operation (Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite, All); repeatable.
    #[arg(long = "operation", value_name = "OPERATION", value_parser = parse_operation)]
    operations: Vec<AclOperation>,
    /// A host the --allow principals are allowed from; repeatable. [default: *]
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// A host the --deny principals are denied from; repeatable. [default: *]
    #[arg(long = "deny-host", value_name = "HOST")]
    deny_hosts: Vec<String>,
}

/// The resources an ACL or a filter names, and how it names them.
#[derive(Args, Debug)]
struct ResourceArgs {
    /// A topic (`*` for every topic); repeatable.
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,
    /// A consumer group (`*` for every group); repeatable.
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// The cluster.
    #[arg(long)]
    cluster: bool,
    /// A transactional id (`*` for every one); repeatable.
    #[arg(long = "transactional-id", value_name = "ID")]
    transactional_ids: Vec<String>,
    /// The names are prefixes (--resource-pattern-type prefixed).
    #[arg(long, conflicts_with = "resource_pattern_type")]
    prefixed: bool,
    /// literal or prefixed; list and remove also take any, and match (every ACL that
    /// applies to the named resource: its own, the wildcard's and its prefixes').
    /// [default: literal with a resource; for list without one, any]
    #[arg(long, value_name = "TYPE", value_parser = parse_pattern_filter)]
    resource_pattern_type: Option<PatternFilter>,
}

impl ResourceArgs {
    /// Every resource named, in the order of the flags.
    fn named(&self) -> Vec<(ResourceType, String)> {
        let names = |kind: ResourceType, names: &[String]| {
            names
                .iter()
                .map(move |name| (kind, name.clone()))
                .collect::<Vec<_>>()
        };
        let mut resources = names(ResourceType::Topic, &self.topics);
        resources.extend(names(ResourceType::Group, &self.groups));
        if self.cluster {
            resources.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
        }
        resources.extend(names(
            ResourceType::TransactionalId,
            &self.transactional_ids,
        ));
        resources
    }

    /// The resources, of which there must be one at least.
    fn required(&self) -> anyhow::Result<Vec<(ResourceType, String)>> {
        let resources = self.named();
        if resources.is_empty() {
            bail!("name a resource: --topic, --group, --cluster or --transactional-id");
        }
        Ok(resources)
    }

    fn pattern(&self) -> Option<PatternFilter> {
        if self.prefixed {
            Some(PatternFilter::Exactly(PatternType::Prefixed))
        } else {
            self.resource_pattern_type
        }
    }

    /// The pattern of ACLs themselves (not of filters): literal unless asked otherwise.
    fn pattern_type(&self) -> anyhow::Result<PatternType> {
        match self.pattern() {
            None => Ok(PatternType::Literal),
            Some(PatternFilter::Exactly(kind)) => Ok(kind),
            Some(_) => bail!("--resource-pattern-type must be literal or prefixed here"),
        }
    }

    /// One filter per resource (or one for every resource if none is named) and principal
    /// (or any principal): kafka-acls' filters, literal by default when a resource is named.
    fn filters(&self, principals: &[String]) -> Vec<AclFilter> {
        let named = self.named();
        let resources: Vec<Option<&(ResourceType, String)>> = if named.is_empty() {
            vec![None]
        } else {
            named.iter().map(Some).collect()
        };
        let principals: Vec<Option<&String>> = if principals.is_empty() {
            vec![None]
        } else {
            principals.iter().map(Some).collect()
        };
        let pattern = self.pattern().unwrap_or(if named.is_empty() {
            PatternFilter::Any
        } else {
            PatternFilter::Exactly(PatternType::Literal)
        });
        let mut filters = Vec::new();
        for resource in &resources {
            for principal in &principals {
                filters.push(AclFilter {
                    resource_type: resource.map(|(kind, _)| *kind),
                    resource_name: resource.map(|(_, name)| name.clone()),
                    pattern,
                    principal: principal.cloned(),
                    ..AclFilter::any()
                });
            }
        }
        filters
    }
}

impl GrantArgs {
    fn names_principals(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty()
    }

    /// Every combination of principal, host, operation and resource, as kafka-acls makes
    /// them, each checked as the broker will check it.
    fn bindings(
        &self,
        resources: &[(ResourceType, String)],
        pattern_type: PatternType,
    ) -> anyhow::Result<Vec<AclBinding>> {
        if !self.names_principals() {
            bail!("name a principal with --allow or --deny");
        }
        if self.operations.is_empty() {
            bail!("name an --operation");
        }
        if self.allow.is_empty() && !self.allow_hosts.is_empty() {
            bail!("--allow-host needs an --allow principal");
        }
        if self.deny.is_empty() && !self.deny_hosts.is_empty() {
            bail!("--deny-host needs a --deny principal");
        }
        let hosts = |hosts: &[String]| {
            if hosts.is_empty() {
                vec![WILDCARD.to_string()]
            } else {
                hosts.to_vec()
            }
        };
        let grants = [
            (AclPermission::Allow, &self.allow, hosts(&self.allow_hosts)),
            (AclPermission::Deny, &self.deny, hosts(&self.deny_hosts)),
        ];
        let mut bindings: Vec<AclBinding> = Vec::new();
        for (resource_type, resource_name) in resources {
            for operation in &self.operations {
                check_operation(*resource_type, *operation)?;
            }
            for (permission, principals, hosts) in &grants {
                for principal in principals.iter() {
                    for host in hosts {
                        for operation in &self.operations {
                            let binding = AclBinding {
                                resource_type: *resource_type,
                                resource_name: resource_name.clone(),
                                pattern_type,
                                principal: principal.clone(),
                                host: host.clone(),
                                operation: *operation,
                                permission: *permission,
                            };
                            if let Some(reason) = binding.invalid() {
                                bail!("invalid ACL {}: {reason}", binding.describe());
                            }
                            if !bindings.contains(&binding) {
                                bindings.push(binding);
                            }
                        }
                    }
                }
            }
        }
        Ok(bindings)
    }

    /// Without principals, remove takes every ACL on the resources: nothing else may narrow
    /// it but --principal.
    fn check_unused(&self) -> anyhow::Result<()> {
        if !self.operations.is_empty()
            || !self.allow_hosts.is_empty()
            || !self.deny_hosts.is_empty()
        {
            bail!(
                "--operation, --allow-host and --deny-host need --allow or --deny \
                 (without them, remove takes every ACL on the resource, or --principal's)"
            );
        }
        Ok(())
    }
}

/// Refuses an operation the resource type has no use for (kafka-acls does the same).
fn check_operation(resource_type: ResourceType, operation: AclOperation) -> anyhow::Result<()> {
    let supported = resource_type.operations();
    if operation == AclOperation::All || supported.contains(&operation) {
        return Ok(());
    }
    let names: Vec<&str> = supported.iter().map(|operation| operation.name()).collect();
    bail!(
        "{} ACLs do not take {}: they take ALL, {}",
        resource_type.name(),
        operation.name(),
        names.join(", ")
    )
}

fn parse_principal(text: &str) -> Result<String, String> {
    match text.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(text.to_string()),
        _ => Err(format!("expected a principal like User:NAME, got {text:?}")),
    }
}

fn parse_operation(text: &str) -> Result<AclOperation, String> {
    AclOperation::parse(text).ok_or_else(|| {
        let names: Vec<&str> = AclOperation::ALL.iter().map(|op| op.name()).collect();
        format!(
            "unknown operation {text:?}: expected one of {}",
            names.join(", ")
        )
    })
}

fn parse_pattern_filter(text: &str) -> Result<PatternFilter, String> {
    match text.to_ascii_lowercase().as_str() {
        "any" => Ok(PatternFilter::Any),
        "match" => Ok(PatternFilter::Match),
        "literal" => Ok(PatternFilter::Exactly(PatternType::Literal)),
        "prefixed" => Ok(PatternFilter::Exactly(PatternType::Prefixed)),
        _ => Err(format!(
            "unknown pattern type {text:?}: expected literal, prefixed, any or match"
        )),
    }
}

// The wire: ACLs and filters to messages, and back.

fn creation(binding: &AclBinding) -> AclCreation {
    AclCreation::default()
        .with_resource_type(binding.resource_type.code())
        .with_resource_name(str_bytes(&binding.resource_name))
        .with_resource_pattern_type(binding.pattern_type.code())
        .with_principal(str_bytes(&binding.principal))
        .with_host(str_bytes(&binding.host))
        .with_operation(binding.operation.code())
        .with_permission_type(binding.permission.code())
}

/// A DescribeAclsRequest or a DeleteAclsFilter, which carry a filter in the same fields
/// (kafka-protocol gives them no common trait).
macro_rules! wire_filter {
    ($message:ty, $filter:expr) => {{
        let filter: &AclFilter = $filter;
        <$message>::default()
            .with_resource_type_filter(filter.resource_type.map_or(acl::ANY, ResourceType::code))
            .with_resource_name_filter(filter.resource_name.as_deref().map(str_bytes))
            .with_pattern_type_filter(filter.pattern.code())
            .with_principal_filter(filter.principal.as_deref().map(str_bytes))
            .with_host_filter(filter.host.as_deref().map(str_bytes))
            .with_operation(filter.operation.map_or(acl::ANY, AclOperation::code))
            .with_permission_type(filter.permission.map_or(acl::ANY, AclPermission::code))
    }};
}

/// An ACL as a response carries it, in wire codes.
struct WireAcl<'a> {
    resource_type: i8,
    resource_name: &'a str,
    pattern_type: i8,
    principal: &'a str,
    host: &'a str,
    operation: i8,
    permission: i8,
}

/// The [`WireAcl`] of a resource pattern (type, name, pattern type) and an entry
/// (principal, host, operation, permission): DescribeAcls sends them apart, DeleteAcls's
/// matching ACLs together.
macro_rules! wire_binding {
    ($resource:expr, $entry:expr) => {
        WireAcl {
            resource_type: $resource.resource_type,
            resource_name: $resource.resource_name.as_str(),
            pattern_type: $resource.pattern_type,
            principal: $entry.principal.as_str(),
            host: $entry.host.as_str(),
            operation: $entry.operation,
            permission: $entry.permission_type,
        }
    };
}

impl WireAcl<'_> {
    fn decode(&self) -> anyhow::Result<AclBinding> {
        fn known<T>(parsed: Option<T>, what: &str, code: i8) -> anyhow::Result<T> {
            parsed.with_context(|| format!("the broker answered an unknown {what} code {code}"))
        }
        Ok(AclBinding {
            resource_type: known(
                ResourceType::from_code(self.resource_type),
                "resource type",
                self.resource_type,
            )?,
            resource_name: self.resource_name.to_string(),
            pattern_type: known(
                PatternType::from_code(self.pattern_type),
                "pattern type",
                self.pattern_type,
            )?,
            principal: self.principal.to_string(),
            host: self.host.to_string(),
            operation: known(
                AclOperation::from_code(self.operation),
                "operation",
                self.operation,
            )?,
            permission: known(
                AclPermission::from_code(self.permission),
                "permission",
                self.permission,
            )?,
        })
    }
}

/// Runs `spate acl ...`.
pub fn run(args: AclArgs) -> anyhow::Result<()> {
    let connection = &args.connection;
    match args.command {
        AclCommand::Add { grants, resources } => {
            let bindings = grants.bindings(&resources.required()?, resources.pattern_type()?)?;
            add(connection, &bindings)
        }
        AclCommand::List {
            principals,
            resources,
        } => list(connection, &resources.filters(&principals)),
        AclCommand::Remove {
            grants,
            principals,
            resources,
        } => {
            let resources_named = resources.required()?;
            let filters = if grants.names_principals() {
                let bindings = grants.bindings(&resources_named, resources.pattern_type()?)?;
                bindings.iter().map(AclFilter::exactly).collect()
            } else {
                grants.check_unused()?;
                resources.filters(&principals)
            };
            remove(connection, &filters)
        }
    }
}

/// A connection to the bootstrap broker and the version of `api` to speak with it.
fn connect(connection: &ConnectionArgs, api: ApiKey) -> anyhow::Result<(Cluster, i16)> {
    let mut cluster = Cluster::connect(connection)?;
    let version = cluster.any().version(api, VERSIONS)?;
    Ok((cluster, version))
}

/// Fails with [`NO_AUTHORIZER`] when any answer is SECURITY_DISABLED.
fn require_authorizer(codes: impl IntoIterator<Item = i16>) -> anyhow::Result<()> {
    if codes.into_iter().any(|code| code == SECURITY_DISABLED) {
        bail!(NO_AUTHORIZER);
    }
    Ok(())
}

/// Fails unless the broker answered once for each thing asked about, in order.
fn check_count(answers: usize, asked: usize, what: &str) -> anyhow::Result<()> {
    if answers != asked {
        bail!("the broker answered {answers} results for {asked} {what}");
    }
    Ok(())
}

/// Reports each failure on stderr, then fails with their count.
fn fail_on(failures: &[anyhow::Error], total: usize, what: &str) -> anyhow::Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    for failure in failures {
        eprintln!("spate: {failure:#}");
    }
    bail!("{} of {total} {what}", failures.len())
}

fn add(connection: &ConnectionArgs, bindings: &[AclBinding]) -> anyhow::Result<()> {
    let (mut cluster, version) = connect(connection, ApiKey::CreateAcls)?;
    let creations = bindings.iter().map(creation).collect();
    let response = cluster.any().send(
        version,
        &CreateAclsRequest::default().with_creations(creations),
    )?;
    require_authorizer(response.results.iter().map(|result| result.error_code))?;
    check_count(response.results.len(), bindings.len(), "ACLs")?;
    let mut added = Vec::new();
    let mut failures = Vec::new();
    for (binding, result) in bindings.iter().zip(&response.results) {
        let outcome = check_error(result.error_code, result.error_message.as_deref(), || {
            format!("cannot add ACL {}", binding.describe())
        });
        match outcome {
            Ok(()) => added.push(binding.clone()),
            Err(error) => failures.push(error),
        }
    }
    print_changes("added", &added, connection.json);
    fail_on(&failures, bindings.len(), "ACLs were not added")
}

fn list(connection: &ConnectionArgs, filters: &[AclFilter]) -> anyhow::Result<()> {
    let (mut cluster, version) = connect(connection, ApiKey::DescribeAcls)?;
    let mut bindings = Vec::new();
    for filter in filters {
        let request = wire_filter!(DescribeAclsRequest, filter);
        let response = cluster.any().send(version, &request)?;
        require_authorizer([response.error_code])?;
        check_error(
            response.error_code,
            response.error_message.as_deref(),
            || "cannot list ACLs".to_string(),
        )?;
        for resource in &response.resources {
            for acl in &resource.acls {
                bindings.push(wire_binding!(resource, acl).decode()?);
            }
        }
    }
    bindings.sort();
    bindings.dedup();
    print_list(&bindings, connection.json);
    Ok(())
}

fn remove(connection: &ConnectionArgs, filters: &[AclFilter]) -> anyhow::Result<()> {
    let (mut cluster, version) = connect(connection, ApiKey::DeleteAcls)?;
    let wire_filters = filters
        .iter()
        .map(|filter| wire_filter!(DeleteAclsFilter, filter))
        .collect();
    let response = cluster.any().send(
        version,
        &DeleteAclsRequest::default().with_filters(wire_filters),
    )?;
    let codes = response
        .filter_results
        .iter()
        .map(|result| result.error_code);
    require_authorizer(codes)?;
    check_count(response.filter_results.len(), filters.len(), "filters")?;
    let mut removed = Vec::new();
    let mut failures = Vec::new();
    for (filter, result) in filters.iter().zip(&response.filter_results) {
        let outcome = check_error(result.error_code, result.error_message.as_deref(), || {
            format!(
                "cannot remove the ACLs matching {}",
                describe_filter(filter)
            )
        });
        if let Err(error) = outcome {
            failures.push(error);
            continue;
        }
        for matching in &result.matching_acls {
            let binding = wire_binding!(matching, matching).decode()?;
            let outcome = check_error(
                matching.error_code,
                matching.error_message.as_deref(),
                || format!("cannot remove ACL {}", binding.describe()),
            );
            match outcome {
                Ok(()) => removed.push(binding),
                Err(error) => failures.push(error),
            }
        }
    }
    if removed.is_empty() && failures.is_empty() && !connection.json {
        print_text("No ACL matched: nothing was removed.\n");
    }
    print_changes("removed", &removed, connection.json);
    fail_on(&failures, filters.len(), "removals failed")
}

/// A filter in the words of [`AclBinding::describe`], `ANY` where it matches anything.
fn describe_filter(filter: &AclFilter) -> String {
    let pattern = match filter.pattern {
        PatternFilter::Any => "ANY",
        PatternFilter::Match => "MATCH",
        PatternFilter::Exactly(kind) => kind.name(),
    };
    format!(
        "{} {} {} from host {} on {}:{pattern}:{}",
        filter.principal.as_deref().unwrap_or("ANY"),
        filter.permission.map_or("ANY", AclPermission::name),
        filter.operation.map_or("ANY", AclOperation::name),
        filter.host.as_deref().unwrap_or("ANY"),
        filter.resource_type.map_or("ANY", ResourceType::name),
        filter.resource_name.as_deref().unwrap_or("ANY"),
    )
}

fn binding_json(binding: &AclBinding) -> serde_json::Value {
    json!({
        "resource_type": binding.resource_type.name(),
        "resource_name": binding.resource_name,
        "pattern_type": binding.pattern_type.name(),
        "principal": binding.principal,
        "host": binding.host,
        "operation": binding.operation.name(),
        "permission": binding.permission.name(),
    })
}

/// What `add` or `remove` changed: a line per ACL, or a JSON array.
fn print_changes(verb: &str, bindings: &[AclBinding], json: bool) {
    if json {
        print_json(&bindings.iter().map(binding_json).collect());
        return;
    }
    let lines: String = bindings
        .iter()
        .map(|binding| format!("{verb} ACL: {}\n", binding.describe()))
        .collect();
    print_text(&lines);
}

fn print_list(bindings: &[AclBinding], json: bool) {
    if json {
        print_json(&bindings.iter().map(binding_json).collect());
        return;
    }
    let mut table = Table::new(&[
        "RESOURCE-TYPE",
        "RESOURCE-NAME",
        "PATTERN-TYPE",
        "PRINCIPAL",
        "HOST",
        "OPERATION",
        "PERMISSION",
    ]);
    for binding in bindings {
        table.row(vec![
            binding.resource_type.name().to_string(),
            binding.resource_name.clone(),
            binding.pattern_type.name().to_string(),
            binding.principal.clone(),
            binding.host.clone(),
            binding.operation.name().to_string(),
            binding.permission.name().to_string(),
        ]);
    }
    table.print();
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
