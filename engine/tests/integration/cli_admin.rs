//! `spate topic add-partitions|trim-prefix`, `spate group offset-delete` and `spate cluster
//! info` against a real broker, as an operator runs them.

use crate::cli_support;

use cli_support::{committed, Broker};
use serde_json::Value;

/// (log start, log end) of each partition, from `topic describe --json`.
fn bounds(broker: &Broker, topic: &str) -> Vec<(i64, i64)> {
    let described = broker.json(&["topic", "describe", topic]);
    described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|partition: &Value| {
            (
                partition["log_start_offset"].as_i64().unwrap(),
                partition["log_end_offset"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// `topic trim-prefix grown --partition P --offset O`.
fn trim<'a>(partition: &'a str, offset: &'a str) -> [&'a str; 7] {
    [
        "topic",
        "trim-prefix",
        "grown",
        "--partition",
        partition,
        "--offset",
        offset,
    ]
}

fn lines(count: usize) -> String {
    (0..count).map(|line| format!("record-{line}\n")).collect()
}

#[test]
fn partitions_are_added_and_a_prefix_is_trimmed() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "grown", "--partitions", "2"]);
    broker.ok_with_input(&["produce", "grown", "--partition", "0"], &lines(10));

    let added = broker.ok(&["topic", "add-partitions", "grown", "--count", "4"]);
    assert!(added.contains("now has 4 partitions (was 2)"), "{added}");
    assert_eq!(bounds(&broker, "grown").len(), 4);
    let refused = broker.fails(&["topic", "add-partitions", "grown", "--count", "3"]);
    assert!(refused.contains("must be more"), "{refused}");
    // A new partition takes records at once.
    broker.ok_with_input(&["produce", "grown", "--partition", "3"], &lines(2));
    assert_eq!(bounds(&broker, "grown")[3], (0, 2));

    let trimmed = broker.json(&trim("0", "4"));
    assert_eq!(trimmed["log_start_offset"], 4, "{trimmed}");
    assert_eq!(bounds(&broker, "grown")[0], (4, 10));
    let all = broker.ok(&trim("0", "-1"));
    assert!(all.contains("now starts at offset 10"), "{all}");
    let beyond = broker.fails(&trim("0", "99"));
    assert!(beyond.contains("OFFSET_OUT_OF_RANGE"), "{beyond}");
    let missing = broker.fails(&trim("9", "0"));
    assert!(missing.contains("no partition 9"), "{missing}");
}

#[test]
fn a_groups_offsets_for_a_topic_are_deleted() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "tracked", "--partitions", "2"]);
    broker.ok(&["topic", "create", "kept", "--partitions", "1"]);
    broker.ok_with_input(&["produce", "tracked"], &lines(6));
    broker.ok_with_input(&["produce", "kept"], &lines(3));
    for topic in ["tracked", "kept"] {
        broker.ok(&[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            topic,
            "--to-latest",
            "--execute",
        ]);
    }
    assert_eq!(committed(&broker, "billing", "tracked").len(), 2);

    let deleted = broker.ok(&["group", "offset-delete", "billing", "--topic", "tracked"]);
    assert!(
        deleted.contains("Deleted the committed offsets"),
        "{deleted}"
    );
    assert!(committed(&broker, "billing", "tracked")
        .values()
        .all(|&offset| offset < 0));
    assert_eq!(committed(&broker, "billing", "kept").get(&0), Some(&3));

    let unknown = broker.fails(&["group", "offset-delete", "nobody", "--topic", "tracked"]);
    assert!(unknown.contains("does not exist"), "{unknown}");
}

#[test]
fn cluster_info_shows_every_shard_as_a_broker() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "spread", "--partitions", "4"]);
    let info = broker.json(&["cluster", "info"]);
    let brokers = info["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 2, "{info}");
    assert!(
        info["cluster_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{info}"
    );
    let ports: Vec<i64> = brokers
        .iter()
        .map(|b| b["port"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ports,
        vec![broker.port as i64, broker.port as i64 + 1],
        "{info}"
    );
    let led: i64 = brokers
        .iter()
        .map(|b| b["leader_partitions"].as_i64().unwrap())
        .sum();
    assert_eq!(led, info["partitions"].as_i64().unwrap(), "{info}");
    assert_eq!(
        brokers
            .iter()
            .filter(|b| b["is_controller"] == true)
            .count(),
        1,
        "{info}"
    );
    // A one-node cluster describes its controller as a quorum of one that it leads, whose
    // log end is the metadata image's version (it grew with the topic just created).
    let quorum = &info["quorum"];
    assert_eq!(quorum["leader_id"], 0, "{info}");
    assert_eq!(quorum["error"], serde_json::Value::Null, "{info}");
    let voters = quorum["voters"].as_array().unwrap();
    assert_eq!(voters.len(), 1, "{info}");
    assert!(quorum["high_watermark"].as_i64().unwrap() > 0, "{info}");
    assert_eq!(
        voters[0]["log_end_offset"], quorum["high_watermark"],
        "{info}"
    );
    let text = broker.ok(&["cluster", "info"]);
    assert!(text.starts_with("Cluster: "), "{text}");
    assert!(text.contains("LEADER-PARTITIONS"), "{text}");
    assert!(text.contains("Controller quorum: leader 0"), "{text}");
}

#[test]
fn offsets_are_reset_by_duration_to_current_and_from_an_exported_file() {
    let broker = Broker::start();
    broker.ok(&["topic", "create", "paced", "--partitions", "1"]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let two_hours_ago = (now_ms - 7_200_000).to_string();
    broker.ok_with_input(
        &["produce", "paced", "--timestamp", &two_hours_ago],
        &lines(3),
    );
    broker.ok_with_input(&["produce", "paced"], &lines(2));
    let reset = |target: &[&str]| {
        let mut args = vec!["group", "reset-offsets", "pacer", "--topic", "paced"];
        args.extend_from_slice(target);
        broker.ok(&args)
    };

    reset(&["--by-duration", "PT1H", "--execute"]);
    assert_eq!(committed(&broker, "pacer", "paced").get(&0), Some(&3));
    let exported = reset(&["--to-current", "--export"]);
    assert_eq!(exported, "paced,0,3\n");

    let file = tempfile::NamedTempFile::new().unwrap();
    let edited = format!(
        "# edited\n{}\nother,0,99\n",
        exported.trim().replace(",3", ",1")
    );
    std::fs::write(file.path(), edited).unwrap();
    let path = file.path().to_str().unwrap();
    reset(&["--from-file", path, "--execute"]);
    assert_eq!(committed(&broker, "pacer", "paced").get(&0), Some(&1));

    std::fs::write(file.path(), "other,0,5\n").unwrap();
    let refused = broker.fails(&[
        "group",
        "reset-offsets",
        "pacer",
        "--topic",
        "paced",
        "--from-file",
        path,
    ]);
    assert!(refused.contains("no offsets for topic paced"), "{refused}");
    let bad = broker.fails(&[
        "group",
        "reset-offsets",
        "pacer",
        "--topic",
        "paced",
        "--by-duration",
        "30 minutes",
    ]);
    assert!(bad.contains("ISO 8601 duration"), "{bad}");
    let none = broker.fails(&[
        "group",
        "reset-offsets",
        "newcomer",
        "--topic",
        "paced",
        "--to-current",
    ]);
    assert!(none.contains("no committed offset"), "{none}");
}
