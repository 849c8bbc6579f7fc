//! `spate acl add|list|remove` against a real broker with `--authorizer acl`, and against
//! one without an authorizer.

use crate::cli_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cli_support::Broker;
use serde_json::Value;

/// The CLI connects over PLAINTEXT as User:ANONYMOUS, which may then do everything.
const AUTHORIZER: [&str; 4] = ["--authorizer", "acl", "--super-users", "User:ANONYMOUS"];

const NO_AUTHORIZER: &str = "the broker has no authorizer: start it with --authorizer acl";

/// How long an ACL change may take to show in `acl list`.
const LIST_DEADLINE: Duration = Duration::from_secs(20);

/// A command line's words, as a shell would split it (no quoting).
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// An ACL of `--json` output in one comparable line, `describe()`'s words.
fn acl_line(acl: &Value) -> String {
    let field = |name: &str| {
        acl[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in {acl}"))
            .to_string()
    };
    format!(
        "{} {} {} from host {} on {}:{}:{}",
        field("principal"),
        field("permission"),
        field("operation"),
        field("host"),
        field("resource_type"),
        field("pattern_type"),
        field("resource_name"),
    )
}

fn acl_lines(json: &Value) -> BTreeSet<String> {
    json.as_array()
        .unwrap_or_else(|| panic!("a JSON array: {json}"))
        .iter()
        .map(acl_line)
        .collect()
}

fn set(lines: &[&str]) -> BTreeSet<String> {
    lines.iter().map(|line| line.to_string()).collect()
}

/// Polls `acl list ARGS --json` until it shows exactly `expected`.
fn wait_for_list(broker: &Broker, args: &[&str], expected: &[&str]) {
    let mut command = vec!["acl", "list"];
    command.extend_from_slice(args);
    cli_support::wait_for_json(broker, &command, acl_lines, set(expected));
}

/// The lines `add` or `remove` printed after `verb ACL: `.
fn reported(stdout: &str, verb: &str) -> BTreeSet<String> {
    let prefix = format!("{verb} ACL: ");
    stdout
        .lines()
        .map(|line| {
            line.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
                .to_string()
        })
        .collect()
}

const ALICE_WRITE: &str = "User:alice ALLOW WRITE from host * on TOPIC:LITERAL:orders";
const ALICE_READ: &str = "User:alice ALLOW READ from host * on TOPIC:LITERAL:orders";
const BOB_WRITE: &str = "User:bob ALLOW WRITE from host * on TOPIC:LITERAL:orders";
const BOB_READ: &str = "User:bob ALLOW READ from host * on TOPIC:LITERAL:orders";
const EVE_WRITE: &str = "User:eve DENY WRITE from host * on TOPIC:LITERAL:orders";
const EVE_READ: &str = "User:eve DENY READ from host * on TOPIC:LITERAL:orders";
/// Every ACL the first `add` makes.
const ON_ORDERS: [&str; 6] = [
    ALICE_WRITE,
    ALICE_READ,
    BOB_WRITE,
    BOB_READ,
    EVE_WRITE,
    EVE_READ,
];
const CAROL_PREFIXED: &str = "User:carol ALLOW DESCRIBE_CONFIGS from host * on TOPIC:PREFIXED:ord";
const ALICE_GROUP: &str = "User:alice ALLOW READ from host 10.0.0.1 on GROUP:LITERAL:billing";

#[test]
fn acls_are_added_listed_and_removed() {
    let broker = Broker::start_with_args(&AUTHORIZER);

    // The cross product: two allowed and one denied principal, two operations.
    let added = broker.ok(&words(
        "acl add --allow User:alice --allow-principal User:bob --deny User:eve \
         --operation Write --operation read --topic orders",
    ));
    assert_eq!(reported(&added, "added"), set(&ON_ORDERS));
    let added = broker.json(&words(
        "acl add --allow User:carol --operation describe-configs --topic ord \
         --resource-pattern-type prefixed",
    ));
    assert_eq!(acl_lines(&added), set(&[CAROL_PREFIXED]));
    broker.ok(&words(
        "acl add --allow User:alice --allow-host 10.0.0.1 --operation READ --group billing",
    ));

    let mut everything = ON_ORDERS.to_vec();
    everything.extend([CAROL_PREFIXED, ALICE_GROUP]);
    wait_for_list(&broker, &[], &everything);
    let table = broker.ok(&["acl", "list"]);
    assert!(
        table.starts_with("RESOURCE-TYPE  RESOURCE-NAME  PATTERN-TYPE  PRINCIPAL"),
        "{table}"
    );
    assert_eq!(table.lines().count(), everything.len() + 1, "{table}");
    wait_for_list(
        &broker,
        &["--principal", "User:alice"],
        &[ALICE_WRITE, ALICE_READ, ALICE_GROUP],
    );
    // A resource without a pattern type is literal, as in kafka-acls; `match` adds every
    // ACL that applies to the topic.
    wait_for_list(&broker, &["--topic", "orders"], &ON_ORDERS);
    let mut applying = ON_ORDERS.to_vec();
    applying.push(CAROL_PREFIXED);
    wait_for_list(
        &broker,
        &["--topic", "orders", "--resource-pattern-type", "match"],
        &applying,
    );
    wait_for_list(
        &broker,
        &["--topic", "ord", "--prefixed"],
        &[CAROL_PREFIXED],
    );

    // Exactly what an add with the same flags would add.
    let removed = broker.ok(&words(
        "acl remove --allow User:bob --operation Write --operation Read --topic orders",
    ));
    assert_eq!(reported(&removed, "removed"), set(&[BOB_WRITE, BOB_READ]));
    // Everything on a resource, or a principal's.
    let removed = broker.ok(&["acl", "remove", "--group", "billing"]);
    assert_eq!(reported(&removed, "removed"), set(&[ALICE_GROUP]));
    let removed = broker.json(&words("acl remove --topic orders --principal User:eve"));
    assert_eq!(acl_lines(&removed), set(&[EVE_WRITE, EVE_READ]));

    wait_for_list(&broker, &[], &[ALICE_WRITE, ALICE_READ, CAROL_PREFIXED]);
    let removed = broker.ok(&words("acl remove --topic ord --prefixed"));
    assert_eq!(reported(&removed, "removed"), set(&[CAROL_PREFIXED]));
    let nothing = broker.ok(&["acl", "remove", "--group", "billing"]);
    assert_eq!(nothing, "No ACL matched: nothing was removed.\n");
    wait_for_list(&broker, &[], &[ALICE_WRITE, ALICE_READ]);
}

#[test]
fn a_broker_without_an_authorizer_says_how_to_start_one() {
    let broker = Broker::start();
    for line in [
        "acl list",
        "acl list --topic orders --json",
        "acl add --allow User:alice --operation Write --topic orders",
        "acl remove --topic orders",
    ] {
        let stderr = broker.fails(&words(line));
        assert!(stderr.contains(NO_AUTHORIZER), "spate {line}: {stderr}");
    }
}

#[test]
fn each_refused_acl_is_reported_by_its_kafka_error() {
    // User:ANONYMOUS is no super user here and has no ALTER on the cluster.
    let broker = Broker::start_with_args(&["--authorizer", "acl", "--super-users", "User:admin"]);
    let stderr = broker.fails(&words(
        "acl add --allow User:alice --operation Write --operation Read --topic orders",
    ));
    for line in [ALICE_WRITE, ALICE_READ] {
        assert!(
            stderr.contains(&format!(
                "cannot add ACL {line}: CLUSTER_AUTHORIZATION_FAILED (31)"
            )),
            "{stderr}"
        );
    }
    assert!(stderr.contains("2 of 2 ACLs were not added"), "{stderr}");
    let stderr = broker.fails(&["acl", "list"]);
    assert!(
        stderr.contains("cannot list ACLs: CLUSTER_AUTHORIZATION_FAILED (31)"),
        "{stderr}"
    );
    let stderr = broker.fails(&["acl", "remove", "--topic", "orders"]);
    assert!(
        stderr.contains("CLUSTER_AUTHORIZATION_FAILED (31)"),
        "{stderr}"
    );
}

#[test]
fn bad_command_lines_are_refused_before_asking_the_broker() {
    // Nothing listens here: each refusal must come before connecting.
    let nowhere = ["--brokers", "127.0.0.1:1"];
    for (line, expected) in [
        (
            "acl add --operation Write --topic t",
            "name a principal with --allow or --deny",
        ),
        ("acl add --allow User:a --topic t", "name an --operation"),
        (
            "acl add --allow User:a --operation Write",
            "name a resource",
        ),
        (
            "acl add --allow alice --operation Write --topic t",
            "expected a principal like User:NAME",
        ),
        (
            "acl add --allow User:a --operation IdempotentWrite --topic t",
            "TOPIC ACLs do not take IDEMPOTENT_WRITE",
        ),
        (
            "acl remove --operation Write --topic t",
            "--operation, --allow-host and --deny-host need --allow or --deny",
        ),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_spate"));
        command.args(words(line)).args(nowhere);
        let output = cli_support::run_with_deadline(command, "");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "spate {line} succeeded");
        assert!(stderr.contains(expected), "spate {line}: {stderr}");
    }
}

#[test]
fn a_sasl_principal_is_checked_through_the_connection_flags() {
    let broker = Broker::start_with_sasl_listener(&AUTHORIZER);
    broker.ok(&words("user add alice --password alice-secret"));
    broker.ok(&words(
        "acl add --allow User:alice --operation Describe --cluster",
    ));
    let sasl = broker.sasl_bootstrap();
    let as_alice_by_flags = [
        "acl",
        "list",
        "--json",
        "--brokers",
        &sasl,
        "-X",
        "security.protocol=SASL_PLAINTEXT",
        "-X",
        "sasl.username=alice",
        "-X",
        "sasl.password=alice-secret",
    ];
    // Alice may describe the cluster's ACLs once her credential and ACL have reached the
    // listener's shard.
    let alice_describe = "User:alice ALLOW DESCRIBE from host * on CLUSTER:LITERAL:kafka-cluster";
    let deadline = Instant::now() + LIST_DEADLINE;
    loop {
        let output = broker.run(&as_alice_by_flags, "");
        if output.status.success() {
            let listed: Value = serde_json::from_slice(&output.stdout).expect("JSON");
            if acl_lines(&listed) == set(&[alice_describe]) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "alice never listed her ACL: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // She may not alter them: the same principal, through a --command-config file.
    let config = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        config.path(),
        "security.protocol=SASL_PLAINTEXT\n\
         sasl.mechanism=SCRAM-SHA-512\n\
         sasl.username=alice\n\
         sasl.password=alice-secret\n",
    )
    .expect("write the command config");
    let config_path = config.path().to_str().expect("a UTF-8 path");
    let stderr = broker.fails(&[
        "acl",
        "add",
        "--allow",
        "User:alice",
        "--operation",
        "Alter",
        "--cluster",
        "--brokers",
        &sasl,
        "--command-config",
        config_path,
    ]);
    assert!(
        stderr.contains("CLUSTER_AUTHORIZATION_FAILED (31)"),
        "{stderr}"
    );
}
