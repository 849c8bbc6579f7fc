//! `spate produce` with headers and timestamps, and `spate consume` from a time, with
//! headers and an isolation level, against a real broker.

use crate::cli_support;

use cli_support::Broker;
use serde_json::Value;

/// `consume stamped --json` with `extra` flags, until --count or 5 s without a record.
fn consumed(broker: &Broker, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["consume", "stamped", "--json"];
    if !extra.contains(&"--timeout-ms") {
        args.extend(["--timeout-ms", "5000"]);
    }
    args.extend_from_slice(extra);
    broker
        .ok(&args)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn records_carry_headers_and_timestamps_and_are_found_by_time() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "stamped", "--partitions", "1"]);
    broker.ok_with_input(
        &[
            "produce",
            "stamped",
            "--timestamp",
            "1000000",
            "--header",
            "trace=abc",
            "--header",
            "origin=test",
        ],
        "a\nb\nc\n",
    );
    broker.ok_with_input(
        &["produce", "stamped", "--timestamp", "1970-01-01T00:33:20Z"],
        "d\ne\n",
    );

    let all = consumed(&broker, &["--offset", "earliest", "--count", "5"]);
    assert_eq!(all.len(), 5);
    assert_eq!(all[0]["timestamp"], 1_000_000);
    assert_eq!(all[0]["headers"]["trace"], "abc");
    assert_eq!(all[0]["headers"]["origin"], "test");
    assert_eq!(all[4]["timestamp"], 2_000_000);
    assert_eq!(all[4]["headers"].as_object().map(|map| map.len()), Some(0));

    for time in ["1500000", "1970-01-01T00:25:00Z"] {
        let later = consumed(&broker, &["--from-timestamp", time, "--count", "2"]);
        let offsets: Vec<i64> = later
            .iter()
            .map(|record| record["offset"].as_i64().unwrap())
            .collect();
        assert_eq!(offsets, vec![3, 4], "from {time}");
    }
    // Nothing that recent: the log end, so nothing is printed before the timeout.
    let none = consumed(
        &broker,
        &["--from-timestamp", "9999999999999", "--timeout-ms", "500"],
    );
    assert!(none.is_empty(), "{none:?}");

    let text = broker.ok(&[
        "consume",
        "stamped",
        "--offset",
        "earliest",
        "--partition",
        "0",
        "--count",
        "1",
        "--print-headers",
        "--print-keys",
        "--key-separator",
        "|",
    ]);
    assert_eq!(text, "trace:abc,origin:test|null|a\n");

    let committed = consumed(
        &broker,
        &[
            "--offset",
            "earliest",
            "--isolation-level",
            "read-committed",
            "--count",
            "5",
        ],
    );
    assert_eq!(
        committed.len(),
        5,
        "no transactions: read_committed sees everything"
    );
    let refused = broker.fails(&["consume", "stamped", "--from-timestamp", "yesterday"]);
    assert!(refused.contains("--from-timestamp"), "{refused}");
}

#[test]
fn an_idempotent_producer_numbers_its_batches() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "exact", "--partitions", "1"]);
    let produced = broker.ok_with_input(
        &["produce", "exact", "--idempotent", "--batch-records", "2"],
        "a\nb\nc\nd\ne\n",
    );
    assert!(produced.is_empty(), "{produced}");
    let refused = broker.fails(&["produce", "exact", "--idempotent", "--acks", "1"]);
    assert!(
        refused.contains("--idempotent needs --acks all"),
        "{refused}"
    );

    let segment = broker
        .data_dir()
        .join("exact-0")
        .join("00000000000000000000.log");
    let dump = broker.ok(&["log", "dump", segment.to_str().unwrap(), "--json"]);
    let batches: Vec<Value> = dump
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line.get("base_offset").is_some())
        .collect();
    let sequences: Vec<i64> = batches
        .iter()
        .map(|batch| batch["base_sequence"].as_i64().unwrap())
        .collect();
    // Lines are batched as they arrive: at most two a batch, numbered without a gap.
    let mut expected = 0;
    for batch in &batches {
        assert!(batch["producer_id"].as_i64().unwrap() >= 0, "{dump}");
        assert_eq!(batch["producer_id"], batches[0]["producer_id"], "{dump}");
        assert_eq!(batch["base_sequence"].as_i64(), Some(expected), "{dump}");
        expected += batch["count"].as_i64().unwrap();
    }
    assert_eq!(expected, 5, "sequences {sequences:?}");
}
