//! Helpers for the CLI tests: a real `spate serve` on free ports, and running the `spate`
//! binary's operator commands against it with a deadline.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiVersionsRequest;
use serde_json::Value;
use spate_net::client::Client;

/// The engine harness, for its port picker (below the ephemeral range, one range per
/// process).
use crate::harness::free_port_range;

/// JoinGroup: the broker serves consumer groups.
pub const API_JOIN_GROUP: i16 = 11;

/// How long one CLI command may run before the test fails.
const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// A broker process, stopped (SIGTERM, then kill) when dropped.
pub struct Broker {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    /// The SASL_PLAINTEXT listener's bootstrap port, if the broker has one.
    sasl_port: Option<u16>,
}

/// Shards per broker, each listening on its listener's port + its index.
const SHARDS: u16 = 2;

impl Broker {
    /// Two shards (so partitions have different leaders), two partitions by default, and a
    /// short initial rebalance delay so that group tests do not wait 3 s per join.
    pub fn start() -> Broker {
        Broker::start_with_args(&[])
    }

    /// [`Broker::start`] with more `spate serve` flags (`--authorizer acl`, ...).
    pub fn start_with_args(extra: &[&str]) -> Broker {
        Broker::spawn(false, extra)
    }

    /// [`Broker::start_with_args`] with a SASL_PLAINTEXT listener beside the PLAINTEXT one
    /// ([`Broker::sasl_bootstrap`]).
    pub fn start_with_sasl_listener(extra: &[&str]) -> Broker {
        Broker::spawn(true, extra)
    }

    fn spawn(with_sasl: bool, extra: &[&str]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener_count = if with_sasl { 2 } else { 1 };
        let port = free_port_range(usize::from(SHARDS * listener_count));
        let sasl_port = with_sasl.then_some(port + SHARDS);
        let listen = match sasl_port {
            Some(sasl_port) => [
                "--listeners".to_string(),
                format!("PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"),
            ],
            None => ["--listen".to_string(), format!("127.0.0.1:{port}")],
        };
        let log = std::fs::File::create(dir.path().join("broker.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_spate"))
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(listen)
            .args(["--smp", &SHARDS.to_string(), "--default-partitions", "2"])
            .args(["--group-initial-rebalance-delay-ms", "200"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn spate serve");
        let mut broker = Broker {
            child: Some(child),
            dir,
            port,
            sasl_port,
        };
        broker.wait_until_listening();
        broker
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let listeners = std::iter::once(self.port).chain(self.sasl_port);
        for port in listeners.flat_map(|base| (0..SHARDS).map(move |shard| base + shard)) {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!("broker exited with {status}:\n{}", self.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "broker did not start:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The broker's data directory (`--data-dir`).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The bootstrap address for `--brokers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The SASL_PLAINTEXT listener's bootstrap address (a broker started with
    /// [`Broker::start_with_sasl_listener`]).
    pub fn sasl_bootstrap(&self) -> String {
        let port = self.sasl_port.expect("a broker with a SASL listener");
        format!("127.0.0.1:{port}")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// Whether the broker advertises API `key` in ApiVersions.
    pub fn supports_api(&self, key: i16) -> bool {
        let mut client =
            Client::connect(("127.0.0.1", self.port), Duration::from_secs(10)).expect("connect");
        let response = client
            .send(0, &ApiVersionsRequest::default())
            .expect("ApiVersions");
        response.api_keys.iter().any(|api| api.api_key == key)
    }

    /// A `spate` command with `--brokers` pointing here (through SPATE_BROKERS, which also
    /// tests the environment variable).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_spate"));
        command
            .args(args)
            .env("SPATE_BROKERS", self.bootstrap())
            .env_remove("SPATE_LOG");
        command
    }

    /// Runs `spate ARGS` with `stdin` as input and returns what it printed.
    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        run_with_deadline(self.command(args), stdin)
    }

    /// Runs `spate ARGS`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_input(args, "")
    }

    /// Runs `spate ARGS` with input, asserts success, returns stdout.
    pub fn ok_with_input(&self, args: &[&str], stdin: &str) -> String {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "spate {args:?} failed with {}:\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 stdout")
    }

    /// Runs `spate ARGS`, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args, "");
        assert!(
            !output.status.success(),
            "spate {args:?} should have failed:\nstdout: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stderr).expect("utf-8 stderr")
    }

    /// Runs `spate ARGS --json`, asserts success, parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let text = self.ok(&with_json);
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a command to completion, feeding it `stdin`; kills it and fails the test if it
/// outlives [`COMMAND_DEADLINE`].
pub fn run_with_deadline(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spate");
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let started = Instant::now();
    let pid = child.id();
    let (finished, finished_signal) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished_signal.recv_timeout(COMMAND_DEADLINE).is_err() {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let output = child.wait_with_output().expect("wait for spate");
    let _ = finished.send(());
    let _ = watchdog.join();
    let _ = writer.join();
    assert!(
        started.elapsed() < COMMAND_DEADLINE,
        "{command:?} ran over {COMMAND_DEADLINE:?}; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

// What the tests read back through the CLI.

/// `count` lines `key-i:value-i`, ten distinct keys.
pub fn keyed_lines(count: usize) -> String {
    (0..count)
        .map(|i| format!("key-{}:value-{i}\n", i % 10))
        .collect()
}

pub fn configs_of(description: &Value) -> BTreeMap<String, (String, String)> {
    description["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .map(|config| {
            (
                config["name"].as_str().unwrap().to_string(),
                (
                    config["value"].as_str().unwrap_or("").to_string(),
                    config["source"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// partition → (log start, log end) from `topic describe --json`.
pub fn log_ends(broker: &Broker, topic: &str) -> BTreeMap<i64, i64> {
    let description = broker.json(&["topic", "describe", topic]);
    description["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["log_end_offset"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The group's committed offsets per partition of `topic`, from `group describe --json`.
pub fn committed(broker: &Broker, group: &str, topic: &str) -> BTreeMap<i64, i64> {
    let description = broker.json(&["group", "describe", group]);
    description["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["topic"] == topic)
        .map(|row| {
            (
                row["partition"].as_i64().unwrap(),
                row["committed_offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// Polls `spate COMMAND --json`, seen through `view`, until it shows `expected` (a change
/// made through one shard reaches the others a moment later).
#[allow(dead_code)] // not every test binary that includes this module polls
pub fn wait_for_json<T: PartialEq + std::fmt::Debug>(
    broker: &Broker,
    command: &[&str],
    view: impl Fn(&Value) -> T,
    expected: T,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = view(&broker.json(command));
        if seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "spate {command:?} never showed {expected:#?}; last: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `group describe` until `check` accepts it.
pub fn wait_for_group(
    broker: &Broker,
    group: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = broker.run(&["group", "describe", group, "--json"], "");
        if output.status.success() {
            let description: Value = serde_json::from_slice(&output.stdout).unwrap();
            if check(&description) {
                return description;
            }
        }
        assert!(
            Instant::now() < deadline,
            "group {group} never became {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn member_count(description: &Value) -> usize {
    description["members"].as_array().map_or(0, Vec::len)
}

pub fn skip_without_groups(broker: &Broker) -> bool {
    if broker.supports_api(API_JOIN_GROUP) {
        return false;
    }
    eprintln!("skipped: the broker does not serve consumer groups yet (no JoinGroup, API key 11)");
    true
}
