//! The operator CLI (`spate topic|group|produce|consume`) against a real broker.
//!
//! Every test starts its own `spate serve` and runs the `spate` binary as a user would,
//! checking what it prints (tables for people, `--json` for scripts) and its exit status.

use crate::cli_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cli_support::{
    committed, configs_of, keyed_lines, log_ends, member_count, run_with_deadline,
    skip_without_groups, wait_for_group, Broker,
};
use serde_json::Value;

const API_ALTER_CONFIGS: i16 = 33;
const API_INCREMENTAL_ALTER_CONFIGS: i16 = 44;

#[test]
fn topics_are_created_listed_described_reconfigured_and_deleted() {
    let broker = Broker::start();
    let created = broker.ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--config",
        "retention.ms=86400000",
    ]);
    assert!(created.contains("Created topic orders"), "{created}");
    broker.ok(&[
        "topic",
        "create",
        "audit",
        "--partitions",
        "1",
        "--replication-factor",
        "1",
    ]);

    let listed = broker.ok(&["topic", "list"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("TOPIC"), "{listed}");
    assert!(
        lines
            .iter()
            .any(|line| line.split_whitespace().collect::<Vec<_>>() == ["orders", "3", "1"]),
        "{listed}"
    );
    let listed = broker.json(&["topic", "list"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"orders") && names.contains(&"audit"),
        "{names:?}"
    );

    let description = broker.json(&["topic", "describe", "orders"]);
    assert_eq!(description["partitions"].as_array().unwrap().len(), 3);
    for partition in description["partitions"].as_array().unwrap() {
        assert_eq!(partition["log_start_offset"], 0);
        assert_eq!(partition["log_end_offset"], 0);
        assert!(partition["leader"].as_i64().unwrap() >= 0);
    }
    let configs = configs_of(&description);
    assert_eq!(
        configs["retention.ms"],
        ("86400000".into(), "DYNAMIC_TOPIC_CONFIG".into())
    );
    let table = broker.ok(&["topic", "describe", "orders"]);
    assert!(
        table.contains("LOG-END-OFFSET") && table.contains("retention.ms"),
        "{table}"
    );

    let error = broker.fails(&["topic", "create", "orders", "--partitions", "1"]);
    assert!(
        error.starts_with("spate: cannot create topic orders: TOPIC_ALREADY_EXISTS (36)"),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");
    let error = broker.fails(&["topic", "describe", "missing"]);
    assert_eq!(error.trim(), "spate: topic missing does not exist");

    if broker.supports_api(API_INCREMENTAL_ALTER_CONFIGS) {
        broker.ok(&[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=3600000",
            "--set",
            "cleanup.policy=compact",
        ]);
        let configs = configs_of(&broker.json(&["topic", "describe", "orders"]));
        assert_eq!(configs["retention.ms"].0, "3600000");
        assert_eq!(
            configs["cleanup.policy"],
            ("compact".into(), "DYNAMIC_TOPIC_CONFIG".into())
        );
        broker.ok(&[
            "topic",
            "alter-config",
            "orders",
            "--delete",
            "cleanup.policy",
        ]);
        let configs = configs_of(&broker.json(&["topic", "describe", "orders"]));
        assert_eq!(configs["cleanup.policy"].1, "DEFAULT_CONFIG");
        assert_eq!(
            configs["retention.ms"].0, "3600000",
            "an incremental change keeps other overrides"
        );
        let error = broker.fails(&[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "no.such.config=1",
        ]);
        assert!(error.contains("INVALID_CONFIG (40)"), "{error}");
    } else {
        eprintln!("skipped IncrementalAlterConfigs: the broker does not advertise API key 44");
    }
    if broker.supports_api(API_ALTER_CONFIGS) {
        // AlterConfigs replaces the whole set, so the CLI sends the current overrides back.
        broker.ok(&[
            "topic",
            "alter-config",
            "orders",
            "--use-alter-configs",
            "--set",
            "segment.ms=600000",
        ]);
        let configs = configs_of(&broker.json(&["topic", "describe", "orders"]));
        assert_eq!(
            configs["segment.ms"],
            ("600000".into(), "DYNAMIC_TOPIC_CONFIG".into())
        );
        assert_eq!(
            configs["retention.ms"].1, "DYNAMIC_TOPIC_CONFIG",
            "earlier overrides survive"
        );
        broker.ok(&[
            "topic",
            "alter-config",
            "orders",
            "--use-alter-configs",
            "--delete",
            "segment.ms",
        ]);
        assert_eq!(
            configs_of(&broker.json(&["topic", "describe", "orders"]))["segment.ms"].1,
            "DEFAULT_CONFIG"
        );
    } else {
        eprintln!("skipped AlterConfigs: the broker does not advertise API key 33");
    }

    assert!(broker
        .ok(&["topic", "delete", "orders"])
        .contains("Deleted topic orders"));
    let names: Vec<String> = broker
        .json(&["topic", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.contains(&"orders".to_string()), "{names:?}");
    assert_eq!(
        broker.fails(&["topic", "delete", "orders"]).trim(),
        "spate: topic orders does not exist"
    );
}

#[test]
fn produced_lines_are_consumed_back() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "events", "--partitions", "3"]);
    let input = keyed_lines(1000);
    let output = broker.run(&["produce", "events", "--key-separator", ":"], &input);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("produced 1000 records"));
    let ends = log_ends(&broker, "events");
    assert_eq!(ends.values().sum::<i64>(), 1000, "{ends:?}");

    // Back as text: every line, keys printed with the same separator.
    let consumed = broker.ok(&[
        "consume",
        "events",
        "--from-beginning",
        "--count",
        "1000",
        "--print-keys",
        "--key-separator",
        ":",
        "--timeout-ms",
        "10000",
    ]);
    let mut got: Vec<&str> = consumed.lines().collect();
    let mut sent: Vec<&str> = input.lines().collect();
    got.sort_unstable();
    sent.sort_unstable();
    assert_eq!(got, sent);

    // Back as JSON: a key always lands on one partition, and each partition keeps the
    // order of the lines sent to it.
    let consumed = broker.ok(&[
        "consume",
        "events",
        "--from-beginning",
        "--count",
        "1000",
        "--json",
        "--timeout-ms",
        "10000",
    ]);
    let records: Vec<Value> = consumed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 1000);
    let mut partition_of_key: BTreeMap<String, i64> = BTreeMap::new();
    let mut last_index: BTreeMap<i64, i64> = BTreeMap::new();
    for record in &records {
        let partition = record["partition"].as_i64().unwrap();
        let key = record["key"].as_str().unwrap().to_string();
        assert_eq!(*partition_of_key.entry(key).or_insert(partition), partition);
        let index: i64 = record["value"]
            .as_str()
            .unwrap()
            .trim_start_matches("value-")
            .parse()
            .unwrap();
        assert!(last_index
            .insert(partition, index)
            .is_none_or(|previous| previous < index));
    }
    assert!(
        ends.values().filter(|&&end| end > 0).count() >= 2,
        "ten keys spread over partitions: {ends:?}"
    );

    // One partition from an offset.
    let (&partition, &end) = ends.iter().find(|(_, &end)| end >= 10).unwrap();
    let partition = partition.to_string();
    let slice = broker.ok(&[
        "consume",
        "events",
        "--partition",
        &partition,
        "--offset",
        "5",
        "--count",
        "3",
        "--json",
        "--timeout-ms",
        "10000",
    ]);
    let offsets: Vec<i64> = slice
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["offset"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(offsets, vec![5, 6, 7]);
    let tail = broker.ok(&[
        "consume",
        "events",
        "--partition",
        &partition,
        "--offset",
        "latest",
        "--timeout-ms",
        "300",
    ]);
    assert!(
        tail.is_empty(),
        "latest starts after the last record: {tail}"
    );
    let all = broker.ok(&[
        "consume",
        "events",
        "--partition",
        &partition,
        "--offset",
        "earliest",
        "--timeout-ms",
        "1000",
    ]);
    assert_eq!(all.lines().count() as i64, end);
}

#[test]
fn produce_options_and_failures() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "logs", "--partitions", "2"]);
    for (acks, compression) in [
        ("0", "none"),
        ("1", "gzip"),
        ("all", "zstd"),
        ("all", "lz4"),
        ("all", "snappy"),
    ] {
        broker.ok_with_input(
            &[
                "produce",
                "logs",
                "--partition",
                "1",
                "--acks",
                acks,
                "--compression",
                compression,
            ],
            "a\nb\n",
        );
    }
    // acks=0 gets no answer; the records still arrive (give the broker a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    while log_ends(&broker, "logs")[&1] < 10 {
        assert!(Instant::now() < deadline, "acks=0 records never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let values = broker.ok(&[
        "consume",
        "logs",
        "--partition",
        "1",
        "--from-beginning",
        "--count",
        "10",
        "--timeout-ms",
        "10000",
    ]);
    assert_eq!(values, "a\nb\n".repeat(5));
    assert_eq!(
        log_ends(&broker, "logs")[&0],
        0,
        "--partition 1 wrote only to 1"
    );

    // Unkeyed lines go round-robin.
    broker.ok_with_input(&["produce", "logs"], "1\n2\n3\n4\n");
    assert_eq!(log_ends(&broker, "logs"), BTreeMap::from([(0, 2), (1, 12)]));

    // A line without the separator is reported, the others are sent, the exit is non-zero.
    let output = broker.run(
        &[
            "produce",
            "logs",
            "--key-separator",
            "=",
            "--partition",
            "0",
        ],
        "k=v\nnothing here\nk=w\n",
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2: no key separator"), "{stderr}");
    assert!(stderr.contains("produced 2 of 3 records"), "{stderr}");
    assert_eq!(log_ends(&broker, "logs")[&0], 4);

    let error = broker.fails(&["produce", "nowhere"]);
    assert_eq!(error.trim(), "spate: topic nowhere does not exist");
    let error = broker.fails(&["produce", "logs", "--partition", "7"]);
    assert!(error.contains("has no partition 7"), "{error}");
}

#[test]
fn errors_are_one_clear_line() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    for args in [
        vec!["topic", "list"],
        vec!["group", "list"],
        vec!["consume", "t"],
        vec!["produce", "t"],
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_spate"));
        command.args(&args).env("SPATE_BROKERS", &address);
        let output = run_with_deadline(command, "");
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.trim(),
            format!("spate: cannot connect to {address}: Connection refused"),
            "{args:?}"
        );
    }
    // --brokers beats the environment variable.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_spate"));
    command
        .args(["topic", "list", "--brokers", &address])
        .env("SPATE_BROKERS", "127.0.0.1:1");
    let stderr = String::from_utf8_lossy(&run_with_deadline(command, "").stderr).to_string();
    assert!(stderr.contains(&address), "{stderr}");
}

#[test]
fn every_command_explains_its_flags() {
    let help = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_spate"));
        command.args(args).arg("--help").stdin(Stdio::null());
        let output = run_with_deadline(command, "");
        assert!(output.status.success(), "{args:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let top = help(&[]);
    for command in ["serve", "topic", "group", "produce", "consume"] {
        assert!(top.contains(command), "{top}");
    }
    let expectations: &[(&[&str], &[&str])] = &[
        (
            &["topic", "create"],
            &[
                "--partitions",
                "--replication-factor",
                "--config",
                "--brokers",
                "--json",
            ],
        ),
        (&["topic", "list"], &["--brokers"]),
        (&["topic", "describe"], &["--all-configs"]),
        (&["topic", "delete"], &["<NAME>"]),
        (
            &["topic", "alter-config"],
            &["--set", "--delete", "--use-alter-configs"],
        ),
        (&["group", "list"], &["--json"]),
        (&["group", "describe"], &["<NAME>"]),
        (
            &["group", "reset-offsets"],
            &[
                "--topic",
                "--to-earliest",
                "--to-latest",
                "--to-offset",
                "--shift-by",
                "--to-datetime",
                "--execute",
            ],
        ),
        (&["group", "delete"], &["<NAME>"]),
        (
            &["produce"],
            &["--key-separator", "--acks", "--partition", "--compression"],
        ),
        (
            &["consume"],
            &[
                "--group",
                "--from-beginning",
                "--offset",
                "--partition",
                "--count",
                "--print-keys",
                "--key-separator",
                "--timeout-ms",
            ],
        ),
    ];
    for (args, flags) in expectations {
        let text = help(args);
        for flag in *flags {
            assert!(
                text.contains(flag),
                "spate {args:?} --help lacks {flag}:\n{text}"
            );
        }
    }
}

#[test]
fn a_group_consumer_commits_and_its_offsets_can_be_reset() {
    let broker = Broker::start();
    if skip_without_groups(&broker) {
        return;
    }
    broker.ok(&["topic", "create", "orders", "--partitions", "3"]);
    broker.ok_with_input(
        &["produce", "orders", "--key-separator", ":"],
        &keyed_lines(300),
    );
    let ends = log_ends(&broker, "orders");

    let first = broker.ok(&[
        "consume",
        "orders",
        "--group",
        "billing",
        "--from-beginning",
        "--count",
        "120",
        "--timeout-ms",
        "10000",
    ]);
    assert_eq!(first.lines().count(), 120);
    let offsets = committed(&broker, "billing", "orders");
    assert_eq!(
        offsets.values().sum::<i64>(),
        120,
        "the commit covers exactly what was printed: {offsets:?}"
    );
    let description = broker.json(&["group", "describe", "billing"]);
    assert_eq!(description["state"], "Empty");
    let lag: i64 = description["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["lag"].as_i64().unwrap())
        .sum();
    assert_eq!(lag, 180);
    let table = broker.ok(&["group", "describe", "billing"]);
    assert!(
        table.contains("CURRENT-OFFSET") && table.contains("LAG"),
        "{table}"
    );
    let listed = broker.json(&["group", "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "billing" && g["protocol_type"] == "consumer"),
        "{listed}"
    );

    // The second consumer resumes where the first stopped.
    let rest = broker.ok(&[
        "consume",
        "orders",
        "--group",
        "billing",
        "--count",
        "180",
        "--timeout-ms",
        "10000",
    ]);
    let mut all: Vec<&str> = first.lines().chain(rest.lines()).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 300, "no record twice, none missed");
    assert_eq!(committed(&broker, "billing", "orders"), ends);

    // A dry run prints the plan and changes nothing.
    let plan = broker.ok(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
    ]);
    assert!(
        plan.contains("NEW-OFFSET") && plan.contains("Dry run"),
        "{plan}"
    );
    assert_eq!(committed(&broker, "billing", "orders"), ends);

    let reset = |args: &[&str]| {
        let mut full = vec!["group", "reset-offsets", "billing", "--topic", "orders"];
        full.extend_from_slice(args);
        full.push("--execute");
        broker.ok(&full);
        committed(&broker, "billing", "orders")
    };
    assert!(reset(&["--to-earliest"])
        .values()
        .all(|&offset| offset == 0));
    let moved = reset(&["--to-offset", "4", "--partition", "0"]);
    assert_eq!(moved[&0], 4.min(ends[&0]));
    assert_eq!(moved[&1], 0, "only partition 0 moved");
    let shifted = reset(&["--shift-by", "3"]);
    assert_eq!(shifted[&0], (moved[&0] + 3).min(ends[&0]));
    assert_eq!(shifted[&1], 3.min(ends[&1]));
    let shifted = reset(&["--shift-by", "-100"]);
    assert!(
        shifted.values().all(|&offset| offset == 0),
        "clamped to the log start: {shifted:?}"
    );
    assert_eq!(reset(&["--to-latest"]), ends);
    assert!(reset(&["--to-datetime", "2001-01-01T00:00:00Z"])
        .values()
        .all(|&offset| offset == 0));
    assert_eq!(
        reset(&["--to-datetime", "2999-01-01T00:00:00.000+01:00"]),
        ends
    );

    // After a reset a new consumer starts at the new offsets.
    reset(&["--to-offset", "2"]);
    let resumed = broker.ok(&[
        "consume",
        "orders",
        "--group",
        "billing",
        "--count",
        "3",
        "--json",
        "--timeout-ms",
        "10000",
    ]);
    for line in resumed.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert!(record["offset"].as_i64().unwrap() >= 2, "{record}");
    }
    assert!(
        resumed
            .lines()
            .any(|line| serde_json::from_str::<Value>(line).unwrap()["offset"] == 2),
        "{resumed}"
    );
}

#[test]
fn an_active_group_cannot_be_reset_or_deleted_until_its_consumer_leaves() {
    let broker = Broker::start();
    if skip_without_groups(&broker) {
        return;
    }
    broker.ok(&["topic", "create", "jobs", "--partitions", "2"]);
    broker.ok_with_input(&["produce", "jobs"], "a\nb\nc\n");
    let consumer = broker
        .command(&[
            "consume",
            "jobs",
            "--group",
            "workers",
            "--from-beginning",
            "--timeout-ms",
            "20000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let description = wait_for_group(&broker, "workers", "stable with one member", |d| {
        d["state"] == "Stable" && member_count(d) == 1
    });
    let assignment = &description["members"][0]["assignment"]["jobs"];
    assert_eq!(assignment, &serde_json::json!([0, 1]), "{description}");
    let table = broker.ok(&["group", "describe", "workers"]);
    assert!(table.contains("jobs:0,1"), "{table}");

    let error = broker.fails(&[
        "group",
        "reset-offsets",
        "workers",
        "--topic",
        "jobs",
        "--to-earliest",
        "--execute",
    ]);
    assert!(error.contains("active member"), "{error}");
    let error = broker.fails(&["group", "delete", "workers"]);
    assert!(error.contains("NON_EMPTY_GROUP (68)"), "{error}");

    // Ctrl-C: the consumer commits, leaves the group and exits cleanly.
    unsafe { libc::kill(consumer.id() as i32, libc::SIGINT) };
    let output = consumer.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: BTreeSet<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        printed,
        BTreeSet::from(["a".into(), "b".into(), "c".into()])
    );
    let description = broker.json(&["group", "describe", "workers"]);
    assert_eq!(
        description["state"], "Empty",
        "LeaveGroup empties the group at once"
    );
    assert_eq!(
        committed(&broker, "workers", "jobs").values().sum::<i64>(),
        3
    );

    assert!(broker
        .ok(&["group", "delete", "workers"])
        .contains("Deleted group workers"));
    assert_eq!(
        broker.fails(&["group", "describe", "workers"]).trim(),
        "spate: group workers does not exist"
    );
    let listed = broker.json(&["group", "list"]);
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "workers"),
        "{listed}"
    );
}

#[test]
fn two_group_members_split_the_partitions() {
    let broker = Broker::start();
    if skip_without_groups(&broker) {
        return;
    }
    broker.ok(&["topic", "create", "tasks", "--partitions", "4"]);
    let spawn = || {
        broker
            .command(&[
                "consume",
                "tasks",
                "--group",
                "pool",
                "--timeout-ms",
                "10000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    wait_for_group(&broker, "pool", "stable with one member", |d| {
        d["state"] == "Stable" && member_count(d) == 1
    });
    let second = spawn();
    let description = wait_for_group(&broker, "pool", "stable with two members", |d| {
        d["state"] == "Stable"
            && member_count(d) == 2
            && d["members"].as_array().unwrap().iter().all(|m| {
                m["assignment"]["tasks"]
                    .as_array()
                    .is_some_and(|p| p.len() == 2)
            })
    });
    assert_eq!(member_count(&description), 2);
    let lines: String = (0..400).map(|i| format!("task-{i}\n")).collect();
    broker.ok_with_input(&["produce", "tasks"], &lines);
    let mut seen = Vec::new();
    for consumer in [first, second] {
        let output = consumer.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(!text.is_empty(), "each member read its own partitions");
        seen.extend(text.lines().map(String::from));
    }
    seen.sort_unstable();
    let mut expected: Vec<String> = lines.lines().map(String::from).collect();
    expected.sort_unstable();
    assert_eq!(
        seen, expected,
        "every record exactly once across the two members"
    );
}
