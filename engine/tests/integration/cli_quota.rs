//! `spate quota set|list|remove` against a real broker (AlterClientQuotas and
//! DescribeClientQuotas, KIP-546).

use crate::cli_support;

use cli_support::Broker;
use serde_json::{json, Value};

/// A command line's words, as a shell would split it (no quoting).
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Polls `quota list ARGS --json` until it shows exactly `expected`.
fn wait_for_list(broker: &Broker, args: &str, expected: Value) {
    let mut command = words("quota list");
    command.extend(words(args));
    cli_support::wait_for_json(broker, &command, Value::clone, expected);
}

fn alice(values: Value) -> Value {
    json!({"entity": {"user": "alice"}, "values": values})
}

fn default_user_app(values: Value) -> Value {
    json!({"entity": {"user": null, "client-id": "app"}, "values": values})
}

#[test]
fn quotas_are_set_listed_and_removed() {
    let broker = Broker::start();

    let set = broker.ok(&words(
        "quota set --user alice --producer-byte-rate 1048576 --request-percentage 12.5 \
         --add consumer_byte_rate=2097152",
    ));
    assert_eq!(
        set,
        "set producer_byte_rate=1048576 for user=alice\n\
         set request_percentage=12.5 for user=alice\n\
         set consumer_byte_rate=2097152 for user=alice\n"
    );
    let set = broker.ok(&words(
        "quota set --default-user --client-id app --consumer-byte-rate 4096",
    ));
    assert_eq!(
        set,
        "set consumer_byte_rate=4096 for user=<default>,client-id=app\n"
    );

    let alice_all = alice(json!({
        "producer_byte_rate": 1_048_576,
        "consumer_byte_rate": 2_097_152,
        "request_percentage": 12.5,
    }));
    let app = default_user_app(json!({"consumer_byte_rate": 4096}));
    wait_for_list(&broker, "", json!([app.clone(), alice_all.clone()]));
    let table = broker.ok(&["quota", "list"]);
    assert_eq!(
        table,
        "ENTITY                        KEY                 VALUE\n\
         user=<default>,client-id=app  consumer_byte_rate  4096\n\
         user=alice                    consumer_byte_rate  2097152\n\
         user=alice                    producer_byte_rate  1048576\n\
         user=alice                    request_percentage  12.5\n"
    );

    // Filters: a name exactly, a default by the default match; strict or not.
    wait_for_list(&broker, "--user alice", json!([alice_all.clone()]));
    wait_for_list(&broker, "--user alice --strict", json!([alice_all.clone()]));
    wait_for_list(&broker, "--default-user", json!([app.clone()]));
    wait_for_list(&broker, "--default-user --strict", json!([]));
    wait_for_list(&broker, "--client-id app", json!([app.clone()]));
    wait_for_list(&broker, "--user bob", json!([]));

    // A validated change changes nothing.
    let validated = broker.ok(&words(
        "quota set --user bob --producer-byte-rate 100 --validate-only",
    ));
    assert!(validated.contains("set producer_byte_rate=100 for user=bob"));
    wait_for_list(&broker, "--user bob", json!([]));

    // One key, then the whole entity.
    let removed = broker.ok(&words("quota remove --user alice --key request_percentage"));
    assert_eq!(removed, "removed request_percentage for user=alice\n");
    let alice_rates = alice(json!({
        "producer_byte_rate": 1_048_576,
        "consumer_byte_rate": 2_097_152,
    }));
    wait_for_list(&broker, "", json!([app.clone(), alice_rates]));
    let removed = broker.ok(&words("quota remove --default-user --client-id app"));
    assert_eq!(
        removed,
        "removed consumer_byte_rate for user=<default>,client-id=app\n"
    );
    let removed = broker.json(&words("quota remove --user alice"));
    assert_eq!(
        removed,
        json!({
            "entity": {"user": "alice"},
            "set": {},
            "removed": ["consumer_byte_rate", "producer_byte_rate"],
            "validate_only": false,
        })
    );
    wait_for_list(&broker, "", json!([]));
    let nothing = broker.ok(&words("quota remove --user alice"));
    assert_eq!(nothing, "user=alice has no quotas: nothing was removed.\n");
}

#[test]
fn values_the_broker_refuses_fail_with_its_error() {
    let broker = Broker::start();
    for line in [
        "quota set --user alice --producer-byte-rate 0",
        "quota set --user alice --add bogus_key=1",
        "quota set --user alice --add consumer_byte_rate=1.5",
    ] {
        let stderr = broker.fails(&words(line));
        assert!(
            stderr.contains("spate: user=alice: INVALID_REQUEST"),
            "spate {line}: {stderr}"
        );
    }
    // Nothing of a refused entry was applied.
    wait_for_list(&broker, "", json!([]));
}

#[test]
fn bad_command_lines_are_refused_before_asking_the_broker() {
    // Nothing listens here: each refusal must come before connecting.
    let nowhere = ["--brokers", "127.0.0.1:1"];
    for (line, expected) in [
        ("quota set --producer-byte-rate 1", "name an entity"),
        ("quota set --user alice", "name a change"),
        (
            "quota set --user alice --default-user --producer-byte-rate 1",
            "cannot be used with",
        ),
        (
            "quota set --client-id app --default-client-id --producer-byte-rate 1",
            "cannot be used with",
        ),
        ("quota set --user alice --add bogus", "expected KEY=VALUE"),
        ("quota set --user alice --add k=fast", "expected a number"),
        ("quota set --user alice --producer-byte-rate 1.5", "invalid"),
        (
            "quota set --user alice --producer-byte-rate 1 --delete producer_byte_rate",
            "producer_byte_rate is changed twice",
        ),
        ("quota remove", "name an entity"),
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_spate"));
        command.args(words(line)).args(nowhere);
        let output = cli_support::run_with_deadline(command, "");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "spate {line} succeeded");
        assert!(stderr.contains(expected), "spate {line}: {stderr}");
    }
}
