//! The command line's ACLs and filters, and their wire form, without a broker.

use super::*;

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

fn grants(allow: &[&str], deny: &[&str], operations: &[AclOperation]) -> GrantArgs {
    GrantArgs {
        allow: strings(allow),
        deny: strings(deny),
        operations: operations.to_vec(),
        allow_hosts: Vec::new(),
        deny_hosts: Vec::new(),
    }
}

fn resources(topics: &[&str]) -> ResourceArgs {
    ResourceArgs {
        topics: strings(topics),
        groups: Vec::new(),
        cluster: false,
        transactional_ids: Vec::new(),
        prefixed: false,
        resource_pattern_type: None,
    }
}

#[test]
fn add_makes_every_combination_once_with_hosts_defaulting_to_any() {
    let mut grants = grants(
        &["User:a", "User:b", "User:a"],
        &["User:c"],
        &[AclOperation::Read, AclOperation::Write],
    );
    grants.deny_hosts = strings(&["10.0.0.1", "10.0.0.2"]);
    let topics = resources(&["x", "y"]).required().unwrap();
    let bindings = grants.bindings(&topics, PatternType::Literal).unwrap();
    // 2 topics × (2 allowed × 1 host + 1 denied × 2 hosts) × 2 operations.
    assert_eq!(bindings.len(), 2 * (2 + 2) * 2);
    assert!(bindings
        .iter()
        .filter(|binding| binding.permission == AclPermission::Allow)
        .all(|binding| binding.host == WILDCARD));
    let first = &bindings[0];
    assert_eq!(
        first.describe(),
        "User:a ALLOW READ from host * on TOPIC:LITERAL:x"
    );
}

#[test]
fn add_refuses_what_kafka_acls_refuses() {
    let topic = resources(&["t"]).required().unwrap();
    let literal = PatternType::Literal;
    let write = [AclOperation::Write];
    assert!(grants(&[], &[], &write).bindings(&topic, literal).is_err());
    assert!(grants(&["User:a"], &[], &[])
        .bindings(&topic, literal)
        .is_err());
    let mut stray_host = grants(&["User:a"], &[], &write);
    stray_host.deny_hosts = strings(&["h"]);
    assert!(stray_host.bindings(&topic, literal).is_err());
    let cluster_only = grants(&["User:a"], &[], &[AclOperation::ClusterAction]);
    assert!(cluster_only.bindings(&topic, literal).is_err());
    assert!(resources(&[]).required().is_err());
    let mut any = resources(&["t"]);
    any.resource_pattern_type = Some(PatternFilter::Any);
    assert!(any.pattern_type().is_err());
}

#[test]
fn list_filters_are_literal_for_a_named_resource_and_any_without_one() {
    let everything = resources(&[]).filters(&[]);
    assert_eq!(everything, vec![AclFilter::any()]);
    let filters = resources(&["x", "y"]).filters(&strings(&["User:a"]));
    assert_eq!(filters.len(), 2);
    assert_eq!(filters[1].resource_type, Some(ResourceType::Topic));
    assert_eq!(filters[1].resource_name.as_deref(), Some("y"));
    assert_eq!(filters[1].principal.as_deref(), Some("User:a"));
    assert_eq!(
        filters[1].pattern,
        PatternFilter::Exactly(PatternType::Literal)
    );
    let mut prefixed = resources(&["x"]);
    prefixed.prefixed = true;
    assert_eq!(
        prefixed.filters(&[])[0].pattern,
        PatternFilter::Exactly(PatternType::Prefixed)
    );
}

#[test]
fn filters_reach_the_wire_as_the_broker_reads_them() {
    let binding = AclBinding {
        resource_type: ResourceType::TransactionalId,
        resource_name: "tx".into(),
        pattern_type: PatternType::Prefixed,
        principal: "User:a".into(),
        host: "*".into(),
        operation: AclOperation::Describe,
        permission: AclPermission::Deny,
    };
    let mut matching = AclFilter::any();
    matching.pattern = PatternFilter::Match;
    for filter in [AclFilter::any(), AclFilter::exactly(&binding), matching] {
        let wire = wire_filter!(DeleteAclsFilter, &filter);
        let read = AclFilter::from_wire(
            wire.resource_type_filter,
            wire.resource_name_filter.as_deref(),
            wire.pattern_type_filter,
            wire.principal_filter.as_deref(),
            wire.host_filter.as_deref(),
            wire.operation,
            wire.permission_type,
        );
        assert_eq!(read, Ok(filter));
    }
    assert_eq!(
        describe_filter(&AclFilter::exactly(&binding)),
        binding.describe()
    );
    let wire = WireAcl {
        resource_type: binding.resource_type.code(),
        resource_name: &binding.resource_name,
        pattern_type: binding.pattern_type.code(),
        principal: &binding.principal,
        host: &binding.host,
        operation: binding.operation.code(),
        permission: binding.permission.code(),
    };
    assert_eq!(wire.decode().unwrap(), binding);
    let unknown = WireAcl {
        operation: 0,
        ..wire
    };
    assert!(unknown.decode().is_err());
}

#[test]
fn names_parse_as_kafka_acls_writes_them() {
    assert_eq!(
        parse_operation("describe-configs"),
        Ok(AclOperation::DescribeConfigs)
    );
    assert!(parse_operation("Fly").is_err());
    assert_eq!(parse_pattern_filter("MATCH"), Ok(PatternFilter::Match));
    assert!(parse_pattern_filter("glob").is_err());
    assert!(parse_principal("User:").is_err());
    assert_eq!(parse_principal("User:*"), Ok("User:*".to_string()));
}
