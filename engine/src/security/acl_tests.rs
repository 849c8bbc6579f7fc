use super::*;

fn acl(
    resource_type: ResourceType,
    name: &str,
    pattern_type: PatternType,
    principal: &str,
    operation: AclOperation,
    permission: AclPermission,
) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.into(),
        pattern_type,
        principal: principal.into(),
        host: WILDCARD.into(),
        operation,
        permission,
    }
}

fn allow(name: &str, principal: &str, operation: AclOperation) -> AclBinding {
    acl(
        ResourceType::Topic,
        name,
        PatternType::Literal,
        principal,
        operation,
        AclPermission::Allow,
    )
}

fn enabled() -> AuthorizerConfig {
    AuthorizerConfig {
        enabled: true,
        ..AuthorizerConfig::default()
    }
}

const ALICE: Subject = Subject {
    principal: "User:alice",
    host: "127.0.0.1",
};
const BOB: Subject = Subject {
    principal: "User:bob",
    host: "127.0.0.1",
};

fn store(bindings: impl IntoIterator<Item = AclBinding>) -> AclStore {
    let mut store = AclStore::default();
    for binding in bindings {
        store.insert(binding);
    }
    store
}

fn can(store: &AclStore, subject: Subject, topic: &str, operation: AclOperation) -> bool {
    store.authorize(&enabled(), subject, ResourceType::Topic, topic, operation)
}

#[test]
fn without_the_authorizer_everything_is_allowed() {
    let store = store([acl(
        ResourceType::Topic,
        "*",
        PatternType::Literal,
        "User:*",
        AclOperation::All,
        AclPermission::Deny,
    )]);
    let off = AuthorizerConfig::default();
    assert!(store.authorize(&off, ALICE, ResourceType::Topic, "t", AclOperation::Write));
}

#[test]
fn an_allow_names_its_principal_operation_and_resource_only() {
    let store = store([allow("orders", "User:alice", AclOperation::Write)]);
    assert!(can(&store, ALICE, "orders", AclOperation::Write));
    assert!(!can(&store, BOB, "orders", AclOperation::Write));
    assert!(!can(&store, ALICE, "orders", AclOperation::Read));
    assert!(!can(&store, ALICE, "payments", AclOperation::Write));
}

#[test]
fn read_write_delete_and_alter_imply_describe_and_alter_configs_implies_describe_configs() {
    for operation in [
        AclOperation::Read,
        AclOperation::Write,
        AclOperation::Delete,
        AclOperation::Alter,
    ] {
        let store = store([allow("t", "User:alice", operation)]);
        assert!(
            can(&store, ALICE, "t", AclOperation::Describe),
            "{operation:?}"
        );
        assert!(!can(&store, ALICE, "t", AclOperation::DescribeConfigs));
    }
    let store = store([allow("t", "User:alice", AclOperation::AlterConfigs)]);
    assert!(can(&store, ALICE, "t", AclOperation::DescribeConfigs));
    assert!(!can(&store, ALICE, "t", AclOperation::Describe));
    // A deny implies nothing: denying READ leaves DESCRIBE to the allows.
    let store = super::tests::store([
        allow("t", "User:alice", AclOperation::Describe),
        acl(
            ResourceType::Topic,
            "t",
            PatternType::Literal,
            "User:alice",
            AclOperation::Read,
            AclPermission::Deny,
        ),
    ]);
    assert!(can(&store, ALICE, "t", AclOperation::Describe));
    assert!(!can(&store, ALICE, "t", AclOperation::Read));
}

#[test]
fn a_deny_wins_over_any_allow_and_all_stands_for_every_operation() {
    let store = store([
        allow("*", "User:*", AclOperation::All),
        acl(
            ResourceType::Topic,
            "secret-",
            PatternType::Prefixed,
            "User:bob",
            AclOperation::All,
            AclPermission::Deny,
        ),
    ]);
    assert!(can(&store, BOB, "public", AclOperation::Read));
    assert!(can(&store, ALICE, "secret-plans", AclOperation::Read));
    assert!(!can(&store, BOB, "secret-plans", AclOperation::Read));
    assert!(!can(&store, BOB, "secret-plans", AclOperation::Describe));
}

#[test]
fn prefixed_patterns_match_names_that_start_with_them() {
    let store = store([acl(
        ResourceType::Topic,
        "orders.",
        PatternType::Prefixed,
        "User:alice",
        AclOperation::Read,
        AclPermission::Allow,
    )]);
    assert!(can(&store, ALICE, "orders.eu", AclOperation::Read));
    assert!(can(&store, ALICE, "orders.", AclOperation::Read));
    assert!(!can(&store, ALICE, "orders", AclOperation::Read));
    assert!(!can(&store, ALICE, "xorders.eu", AclOperation::Read));
    // Multi-byte names are cut only at character boundaries.
    assert!(!can(&store, ALICE, "ordérs", AclOperation::Read));
}

#[test]
fn hosts_must_match_unless_the_acl_says_any() {
    let mut binding = allow("t", "User:alice", AclOperation::Read);
    binding.host = "10.0.0.1".into();
    let store = store([binding]);
    assert!(!can(&store, ALICE, "t", AclOperation::Read));
    let from_there = Subject {
        host: "10.0.0.1",
        ..ALICE
    };
    assert!(can(&store, from_there, "t", AclOperation::Read));
}

#[test]
fn a_resource_no_acl_names_is_open_only_with_allow_everyone_if_no_acl_found() {
    let store = store([allow("named", "User:bob", AclOperation::Read)]);
    let open = AuthorizerConfig {
        enabled: true,
        allow_everyone_if_no_acl_found: true,
        ..AuthorizerConfig::default()
    };
    let check = |config: &AuthorizerConfig, topic: &str| {
        store.authorize(
            config,
            ALICE,
            ResourceType::Topic,
            topic,
            AclOperation::Read,
        )
    };
    assert!(!check(&enabled(), "unnamed"));
    assert!(check(&open, "unnamed"));
    // An ACL for anyone on the resource closes it to everyone else, as in Kafka.
    assert!(!check(&open, "named"));
}

#[test]
fn super_users_may_do_everything() {
    let store = store([acl(
        ResourceType::Cluster,
        CLUSTER_NAME,
        PatternType::Literal,
        "User:*",
        AclOperation::All,
        AclPermission::Deny,
    )]);
    let config = AuthorizerConfig {
        enabled: true,
        super_users: AuthorizerConfig::parse_super_users("User:admin; User:alice").unwrap(),
        allow_everyone_if_no_acl_found: false,
    };
    assert!(store.authorize(
        &config,
        ALICE,
        ResourceType::Cluster,
        CLUSTER_NAME,
        AclOperation::Alter
    ));
    assert!(!store.authorize(
        &config,
        BOB,
        ResourceType::Cluster,
        CLUSTER_NAME,
        AclOperation::Alter
    ));
    assert!(AuthorizerConfig::parse_super_users("admin").is_err());
}

#[test]
fn write_on_any_topic_is_found_unless_a_deny_dominates_it() {
    let any = |store: &AclStore, subject| {
        store.authorize_any(
            &enabled(),
            subject,
            ResourceType::Topic,
            AclOperation::Write,
        )
    };
    let allowed = store([acl(
        ResourceType::Topic,
        "logs-",
        PatternType::Prefixed,
        "User:alice",
        AclOperation::Write,
        AclPermission::Allow,
    )]);
    assert!(any(&allowed, ALICE));
    assert!(!any(&allowed, BOB));
    let mut dominated = allowed.clone();
    dominated.insert(acl(
        ResourceType::Topic,
        "log",
        PatternType::Prefixed,
        "User:alice",
        AclOperation::All,
        AclPermission::Deny,
    ));
    assert!(!any(&dominated, ALICE));
    let literal = store([allow("t", "User:alice", AclOperation::Write)]);
    assert!(any(&literal, ALICE));
    let mut denied = literal.clone();
    denied.insert(acl(
        ResourceType::Topic,
        "t",
        PatternType::Literal,
        "User:*",
        AclOperation::Write,
        AclPermission::Deny,
    ));
    assert!(!any(&denied, ALICE));
}

#[test]
fn filters_match_as_kafka_matches_them() {
    let literal = allow("orders", "User:alice", AclOperation::Read);
    let wildcard = allow("*", "User:alice", AclOperation::Read);
    let prefixed = acl(
        ResourceType::Topic,
        "ord",
        PatternType::Prefixed,
        "User:alice",
        AclOperation::Read,
        AclPermission::Allow,
    );
    let filter = |pattern, name: Option<&str>| AclFilter {
        resource_name: name.map(str::to_string),
        pattern,
        ..AclFilter::any()
    };
    let matched = |filter: &AclFilter| {
        [&literal, &wildcard, &prefixed]
            .map(|binding| filter.matches(binding))
            .to_vec()
    };
    assert_eq!(matched(&AclFilter::any()), [true, true, true]);
    assert_eq!(
        matched(&filter(PatternFilter::Any, Some("orders"))),
        [true, false, false]
    );
    assert_eq!(
        matched(&filter(PatternFilter::Match, Some("orders"))),
        [true, true, true]
    );
    assert_eq!(
        matched(&filter(PatternFilter::Exactly(PatternType::Prefixed), None)),
        [false, false, true]
    );
    assert_eq!(
        matched(&AclFilter {
            principal: Some("User:bob".into()),
            ..AclFilter::any()
        }),
        [false, false, false]
    );
    assert_eq!(
        matched(&AclFilter::exactly(&prefixed)),
        [false, false, true]
    );
}

#[test]
fn wire_codes_round_trip_and_unknown_ones_are_refused() {
    for kind in ResourceType::ALL {
        assert_eq!(ResourceType::from_code(kind.code()), Some(kind));
        assert_eq!(ResourceType::parse(&kind.name().to_lowercase()), Some(kind));
    }
    for operation in AclOperation::ALL {
        assert_eq!(AclOperation::from_code(operation.code()), Some(operation));
        assert_eq!(AclOperation::parse(operation.name()), Some(operation));
    }
    assert_eq!(AclOperation::Read.code(), 3);
    assert_eq!(AclOperation::DescribeTokens.code(), 14);
    assert_eq!(
        AclOperation::parse("DescribeConfigs"),
        Some(AclOperation::DescribeConfigs)
    );
    assert_eq!(
        AclOperation::parse("describe-configs"),
        Some(AclOperation::DescribeConfigs)
    );
    assert!(AclFilter::from_wire(0, None, 1, None, None, 1, 1).is_err());
    assert!(AclFilter::from_wire(1, None, 0, None, None, 1, 1).is_err());
    assert!(AclFilter::from_wire(1, None, 1, None, None, 99, 1).is_err());
    assert!(AclFilter::from_wire(1, None, 1, None, None, 1, 0).is_err());
    assert_eq!(
        AclFilter::from_wire(1, None, 1, None, None, 1, 1).unwrap(),
        AclFilter::any()
    );
}

#[test]
fn removing_an_acl_takes_it_out_of_the_checks() {
    let binding = allow("t", "User:alice", AclOperation::Read);
    let mut store = store([binding.clone(), binding.clone()]);
    assert_eq!(store.iter().len(), 1);
    assert!(store.remove(&binding));
    assert!(!store.remove(&binding));
    assert!(store.is_empty());
    assert!(!can(&store, ALICE, "t", AclOperation::Read));
}

#[test]
fn bindings_that_kafka_refuses_are_refused() {
    let mut cluster = allow("kafka-cluster", "User:alice", AclOperation::Alter);
    cluster.resource_type = ResourceType::Cluster;
    assert_eq!(cluster.invalid(), None);
    cluster.resource_name = "other".into();
    assert!(cluster.invalid().is_some());
    assert!(allow("t", "alice", AclOperation::Read).invalid().is_some());
    assert!(allow("", "User:alice", AclOperation::Read)
        .invalid()
        .is_some());
}

#[test]
fn bitfields_have_a_bit_per_allowed_operation_of_the_type() {
    let open = AuthorizerConfig::default();
    let store = AclStore::default();
    // READ..DESCRIBE (3..=8) plus DESCRIBE_CONFIGS and ALTER_CONFIGS (10, 11).
    assert_eq!(
        store.authorized_operations(&open, ALICE, ResourceType::Topic, "t"),
        0b1101_1111_1000
    );
    let store = super::tests::store([allow("t", "User:alice", AclOperation::Read)]);
    assert_eq!(
        store.authorized_operations(&enabled(), ALICE, ResourceType::Topic, "t"),
        1 << 3 | 1 << 8
    );
}
