//! The stats endpoint against a real `spate serve`: produce and fetch traffic cause no
//! cross-shard interaction on any shard, while an admin change is counted.

use crate::harness;

use std::io::{Read, Write};
use std::net::TcpStream;

use harness::{batch, create_topic, fetch, free_port_range, produce, Broker};
use spate_engine::metadata::placement::default_shard as shard_for;

fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to stats");
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    body.to_string()
}

fn stats(port: u16) -> serde_json::Value {
    serde_json::from_str(&get(port, "/stats")).expect("JSON")
}

fn cross_shard_total(stats: &serde_json::Value, kind: &str) -> u64 {
    stats["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|shard| shard["cross_shard"][kind].as_u64().expect("counter"))
        .sum()
}

fn requests(stats: &serde_json::Value, api: &str) -> u64 {
    stats["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|shard| shard["requests"][api].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn produce_and_fetch_stay_on_their_shard() {
    let stats_port = free_port_range(1);
    let address = format!("127.0.0.1:{stats_port}");
    let broker = Broker::start_with_args(2, &["--stats-listen", &address]);
    // Created through shard 1, so that shard 1 calls the controller on shard 0; the answer
    // comes once every shard has applied the new metadata, which shard 1 counts too.
    create_topic(&mut broker.client(1), "events", 4);
    let before = stats(stats_port);
    for kind in ["controller_call", "metadata_update"] {
        assert!(cross_shard_total(&before, kind) >= 1, "{kind}: {before:#}");
    }
    assert_eq!(before["shards"].as_array().map(Vec::len), Some(2));

    let mut clients: Vec<_> = (0..2).map(|shard| broker.client(shard)).collect();
    for round in 0..25 {
        for partition in 0..4 {
            let owner = shard_for("events", partition, 2).0 as usize;
            let client = &mut clients[owner];
            let response = produce(client, "events", partition, batch(&["a", "b"], None), -1);
            assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
            let fetched = fetch(client, "events", partition, round * 2, 0);
            assert_eq!(fetched.responses[0].partitions[0].error_code, 0);
        }
    }
    let after = stats(stats_port);
    for kind in ["metadata_update", "controller_call"] {
        assert_eq!(
            cross_shard_total(&after, kind),
            cross_shard_total(&before, kind),
            "{kind} moved under produce/fetch traffic: {after:#}"
        );
    }
    assert_eq!(
        requests(&after, "Produce") - requests(&before, "Produce"),
        100
    );
    assert_eq!(requests(&after, "Fetch") - requests(&before, "Fetch"), 100);
    let partitions: u64 = after["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|shard| shard["partitions_open"].as_u64().unwrap())
        .sum();
    assert!(partitions >= 4, "{after:#}");
    assert!(after["rss_bytes"].as_u64().unwrap() > 0);
    let metrics = get(stats_port, "/metrics");
    assert!(metrics.contains("spate_cross_shard_total{shard=\"0\",kind=\"metadata_update\"}"));
    assert!(metrics.contains("api=\"Produce\""));

    // Latency: every Produce and Fetch answered is counted at both stages, in +Inf as in the
    // count (`_count` is per shard; summed over the shards it is every request).
    let latency_total = |stats: &serde_json::Value, api: &str, stage: &str| -> u64 {
        stats["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|shard| {
                shard["request_latency"][api][stage]["count"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum()
    };
    for api in ["Produce", "Fetch"] {
        for stage in ["local", "total"] {
            let counted = latency_total(&after, api, stage) - latency_total(&before, api, stage);
            assert_eq!(counted, 100, "{api} {stage}: {after:#}");
        }
    }
    let counts: u64 = metrics
        .lines()
        .filter(|line| {
            line.starts_with("spate_request_latency_seconds_count{")
                && line.contains("api=\"Produce\",stage=\"total\"")
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counts, requests(&after, "Produce"), "{metrics}");
    for line in metrics.lines().filter(|line| line.contains("le=\"+Inf\"")) {
        let name = &line[..line.find("_bucket{").unwrap()];
        let labels = &line[line.find('{').unwrap()..line.find(",le=").unwrap()];
        let count_line = format!("{name}_count{labels}}}");
        let count = metrics
            .lines()
            .find(|other| other.starts_with(&count_line))
            .unwrap_or_else(|| panic!("no {count_line}"));
        assert_eq!(line.rsplit(' ').next(), count.rsplit(' ').next(), "{line}");
    }
    for gauge in [
        "# TYPE spate_request_latency_seconds histogram",
        "spate_build_info{version=",
        "spate_disk_free_bytes ",
        "spate_under_replicated_partitions{shard=\"0\"} 0",
        "spate_offline_partitions{shard=\"0\"} 0",
    ] {
        assert!(metrics.contains(gauge), "{gauge} in\n{metrics}");
    }
    assert!(after["disk_free_bytes"].as_u64().unwrap() > 0);
    // Every acks=all produce waited for a group commit: each shard that led a partition
    // synced at least once, and a commit made at least one block durable.
    for family in ["spate_fsync_latency_seconds", "spate_group_commit_bytes"] {
        let synced: u64 = metrics
            .lines()
            .filter(|line| line.starts_with(&format!("{family}_count{{")))
            .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert!(synced >= 2, "{family}: {metrics}");
    }
    assert!(metrics.contains("spate_group_commit_bytes_bucket{shard=\"0\",le=\"4096\"}"));
    promtool_check(&metrics);
}

/// The error codes of responses, per shard, API and error, summed over the shards.
fn request_errors(stats: &serde_json::Value, api: &str, error: &str) -> u64 {
    stats["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|shard| shard["request_errors"][api][error].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn response_errors_are_counted_by_api_and_error() {
    let stats_port = free_port_range(1);
    let address = format!("127.0.0.1:{stats_port}");
    let broker = Broker::start_with_args(2, &["--stats-listen", &address]);
    create_topic(&mut broker.client(0), "errs", 1);
    let owner = shard_for("errs", 0, 2).0 as usize;
    let before = stats(stats_port);
    // Three produces and two fetches to the shard that does not lead the partition, a fetch
    // of a topic that does not exist, and answers without errors beside them.
    let mut wrong = broker.client(1 - owner);
    for _ in 0..3 {
        let response = produce(&mut wrong, "errs", 0, batch(&["x"], None), -1);
        assert_eq!(response.responses[0].partition_responses[0].error_code, 6);
    }
    for _ in 0..2 {
        assert_eq!(
            fetch(&mut wrong, "errs", 0, 0, 0).responses[0].partitions[0].error_code,
            6
        );
    }
    let missing = fetch(&mut broker.client(owner), "no-such-topic", 0, 0, 0);
    assert_eq!(missing.responses[0].partitions[0].error_code, 3);
    let mut right = broker.client(owner);
    for _ in 0..4 {
        produce(&mut right, "errs", 0, batch(&["y"], None), -1);
    }
    let after = stats(stats_port);
    let counted = |api: &str, error: &str| {
        request_errors(&after, api, error) - request_errors(&before, api, error)
    };
    assert_eq!(counted("Produce", "NOT_LEADER_OR_FOLLOWER"), 3, "{after:#}");
    assert_eq!(counted("Fetch", "NOT_LEADER_OR_FOLLOWER"), 2, "{after:#}");
    assert_eq!(
        counted("Fetch", "UNKNOWN_TOPIC_OR_PARTITION"),
        1,
        "{after:#}"
    );
    assert_eq!(counted("Produce", "NONE"), 0, "no error is not an error");
    let metrics = get(stats_port, "/metrics");
    let wrong_shard = 1 - owner;
    let line = format!(
        "spate_request_errors_total{{shard=\"{wrong_shard}\",api=\"Produce\",error=\"NOT_LEADER_OR_FOLLOWER\"}} 3"
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    promtool_check(&metrics);
}

/// (bytes in, bytes out) of `topic` (`""`: all topics, labels off), summed over the shards.
fn topic_bytes(stats: &serde_json::Value, topic: &str) -> (u64, u64) {
    stats["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|shard| {
            let traffic = &shard["topics"][topic];
            (
                traffic["bytes_in"].as_u64().unwrap_or(0),
                traffic["bytes_out"].as_u64().unwrap_or(0),
            )
        })
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

#[test]
fn bytes_in_and_out_are_counted_by_topic_or_in_one_series() {
    for labelled in [true, false] {
        let stats_port = free_port_range(1);
        let address = format!("127.0.0.1:{stats_port}");
        let labels = labelled.to_string();
        let broker = Broker::start_with_args(
            2,
            &[
                "--stats-listen",
                &address,
                "--metrics-topic-labels",
                &labels,
            ],
        );
        create_topic(&mut broker.client(0), "ins", 2);
        create_topic(&mut broker.client(0), "outs", 1);
        let mut produced = std::collections::HashMap::new();
        let mut fetched = std::collections::HashMap::new();
        for (topic, partitions, records) in [("ins", 2, 3), ("outs", 1, 5)] {
            for partition in 0..partitions {
                let mut client = broker.client(shard_for(topic, partition, 2).0 as usize);
                for n in 0..records {
                    let batch = batch(&[&format!("{topic}-{partition}-{n}")], None);
                    *produced.entry(topic).or_insert(0) += batch.len() as u64;
                    let response = produce(&mut client, topic, partition, batch, -1);
                    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
                }
                let response = fetch(&mut client, topic, partition, 0, 0);
                let records = response.responses[0].partitions[0].records.clone();
                *fetched.entry(topic).or_insert(0) += records.map_or(0, |r| r.len() as u64);
            }
        }
        let after = stats(stats_port);
        let metrics = get(stats_port, "/metrics");
        if labelled {
            for topic in ["ins", "outs"] {
                assert_eq!(
                    topic_bytes(&after, topic),
                    (produced[topic], fetched[topic]),
                    "{topic}: {after:#}"
                );
            }
            assert!(
                metrics.contains("spate_bytes_in_total{shard=\""),
                "{metrics}"
            );
            assert!(metrics.contains(",topic=\"outs\"}"), "{metrics}");
        } else {
            let all = (produced.values().sum(), fetched.values().sum());
            assert_eq!(topic_bytes(&after, ""), all, "{after:#}");
            assert!(!metrics.contains("topic=\""), "{metrics}");
        }
        promtool_check(&metrics);
    }
}

/// The value of the one `/metrics` line that starts with `series` (name and labels).
fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
}

/// `spate group reset-offsets GROUP --topic TOPIC --to-offset OFFSET --execute`.
fn commit(broker: &Broker, group: &str, topic: &str, offset: i64) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
        .args([
            "group",
            "reset-offsets",
            group,
            "--topic",
            topic,
            "--to-offset",
        ])
        .arg(offset.to_string())
        .args(["--execute", "--brokers"])
        .arg(broker.address(0).to_string())
        .output()
        .expect("spate group reset-offsets");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn log_sizes_consumer_lag_busy_time_and_io_depth_are_published() {
    let stats_port = free_port_range(1);
    let address = format!("127.0.0.1:{stats_port}");
    let broker = Broker::start_with_args(
        2,
        &[
            "--stats-listen",
            &address,
            "--metrics-consumer-lag-interval-ms",
            "100",
        ],
    );
    // Two partitions on different shards: whichever shard coordinates the group reads one
    // high watermark itself and asks the other shard's broker for the other.
    let topic = "sized";
    assert_ne!(shard_for(topic, 0, 2), shard_for(topic, 1, 2));
    create_topic(&mut broker.client(0), topic, 2);
    let mut stored = [0u64; 2];
    for (partition, records) in [(0, 7), (1, 3)] {
        let mut client = broker.client(shard_for(topic, partition, 2).0 as usize);
        for n in 0..records {
            let batch = batch(&[&format!("{partition}-{n}")], None);
            stored[partition as usize] += batch.len() as u64;
            let response = produce(&mut client, topic, partition, batch, -1);
            assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
        }
    }
    commit(&broker, "lagging", topic, 2);
    let lag_of = |metrics: &str, partition: i32| {
        metric_value(
            metrics,
            &format!("spate_consumer_group_lag{{group=\"lagging\",topic=\"{topic}\",partition=\"{partition}\"}}"),
        )
    };
    let size_of = |metrics: &str, partition: i32| {
        let shard = shard_for(topic, partition, 2).0;
        metric_value(
            metrics,
            &format!("spate_log_size_bytes{{shard=\"{shard}\",topic=\"{topic}\",partition=\"{partition}\"}}"),
        )
    };
    // Published within a second or two: wait for the values, not for a time.
    let mut metrics = String::new();
    harness::wait_for(
        "lag and log sizes",
        std::time::Duration::from_secs(30),
        || {
            metrics = get(stats_port, "/metrics");
            lag_of(&metrics, 0) == Some(5.0)
                && lag_of(&metrics, 1) == Some(1.0)
                && size_of(&metrics, 0) == Some(stored[0] as f64)
                && size_of(&metrics, 1) == Some(stored[1] as f64)
        },
    );
    // Every acks=all produce wrote and synced through the shard's ring: each found a depth.
    let depth_counts: f64 = (0..2)
        .filter_map(|shard| {
            metric_value(
                &metrics,
                &format!("spate_io_uring_depth_count{{shard=\"{shard}\"}}"),
            )
        })
        .sum();
    assert!(depth_counts >= 20.0, "{metrics}");
    for shard in 0..2 {
        for op in ["write", "fdatasync", "read"] {
            let series = format!("spate_io_uring_in_flight{{shard=\"{shard}\",op=\"{op}\"}}");
            assert!(
                metric_value(&metrics, &series).is_some(),
                "{series}: {metrics}"
            );
        }
        let busy = metric_value(
            &metrics,
            &format!("spate_shard_busy_seconds_total{{shard=\"{shard}\"}}"),
        );
        assert!(busy.is_some_and(|busy| busy > 0.0), "{metrics}");
        let ratio = metric_value(
            &metrics,
            &format!("spate_shard_busy_ratio{{shard=\"{shard}\"}}"),
        )
        .expect("busy ratio");
        assert!((0.0..=1.0).contains(&ratio), "{metrics}");
    }
    let json = stats(stats_port);
    let owner = shard_for(topic, 0, 2).0 as usize;
    assert_eq!(
        json["shards"][owner]["log_size_bytes"][topic]["0"].as_u64(),
        Some(stored[0]),
        "{json:#}"
    );
    promtool_check(&metrics);

    // Caught up: no lag. Past the end (a reset ahead of the log): no negative lag either.
    commit(&broker, "lagging", topic, 7);
    harness::wait_for("lag caught up", std::time::Duration::from_secs(30), || {
        metrics = get(stats_port, "/metrics");
        lag_of(&metrics, 0) == Some(0.0) && lag_of(&metrics, 1) == Some(0.0)
    });
}

/// `promtool check metrics` (Prometheus' linter) finds nothing in `metrics`. Skipped with a
/// line where promtool is not installed, unless SPATE_REQUIRE_PROMTOOL=1 (ci/test.sh
/// installs it and sets that).
fn promtool_check(metrics: &str) {
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if std::env::var("SPATE_REQUIRE_PROMTOOL").as_deref() != Ok("1") => {
            eprintln!("skipped promtool check metrics: {error}");
            return;
        }
        Err(error) => panic!("promtool: {error}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
