//! One short real run of each load command against a `spate` broker started by the test.
//!
//! The broker binary is `target/release/spate` (build it with
//! `cargo build --release -p spate-engine`); without it the test prints why and passes.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Broker {
    child: Child,
    address: String,
    data_dir: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn start_broker() -> Option<Broker> {
    start_broker_with(|address, _| vec!["--listen".to_string(), address.to_string()])
}

/// A broker with the flags `flags(address, data_dir)` gives (its listener on `address`).
fn start_broker_with(flags: impl Fn(&str, &Path) -> Vec<String>) -> Option<Broker> {
    let binary = spate_binary()?;
    // A real disk, not tmpfs: the broker writes with O_DIRECT.
    let data_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "spate-bench-real-{}-{}",
        std::process::id(),
        NEXT_BROKER.fetch_add(1, Ordering::Relaxed)
    ));
    // A free port is only free when asked: a client's ephemeral port can take it before the
    // broker binds it (the broker then exits, and a probe of the port can even connect to
    // itself). So the probe must reach another socket while the broker runs, and a broker
    // that exited is started again on another port.
    for _attempt in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let address = format!("127.0.0.1:{port}");
        let chosen_flags = flags(&address, &data_dir);
        let child = Command::new(&binary)
            .args(["serve", "--data-dir"])
            .arg(&data_dir)
            .args(["--smp", "1"])
            .args(&chosen_flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut broker = Broker {
            child,
            address,
            data_dir: data_dir.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if broker.child.try_wait().ok().flatten().is_some() {
                break;
            }
            let listening = TcpStream::connect(&broker.address)
                .is_ok_and(|probe| probe.local_addr().ok() != probe.peer_addr().ok());
            if listening {
                return Some(broker);
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("the broker exited at start (its port was taken?): trying another port");
    }
    panic!("the broker exited at start five times")
}

static NEXT_BROKER: AtomicUsize = AtomicUsize::new(0);

/// `target/release/spate`, or `None` (with the reason printed) when it is not built.
fn spate_binary() -> Option<PathBuf> {
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/spate");
    if !binary.exists() {
        eprintln!(
            "skipping: {} is absent (cargo build --release -p spate-engine)",
            binary.display()
        );
        return None;
    }
    Some(binary)
}

fn bench(words: &str, json: &Path) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_spate-bench"))
        .args(words.split_whitespace())
        .arg("--json")
        .arg(json)
        .output()
        .expect("spate-bench runs");
    assert!(
        output.status.success(),
        "spate-bench {words} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(json).expect("JSON written")).expect("valid JSON")
}

fn assert_contract(result: &serde_json::Value) {
    for field in [
        "throughput_mb_s",
        "records_per_s",
        "errors",
        "broker_cpu_s_per_gib",
    ] {
        assert!(result.get(field).is_some(), "missing {field} in {result}");
    }
    for field in ["p50", "p99", "p999", "p9999", "max"] {
        assert!(
            result["latency_us"].get(field).is_some(),
            "missing latency_us.{field}"
        );
    }
    assert_eq!(result["errors"], 0, "{result}");
}

#[test]
fn produce_consume_and_e2e_against_a_real_broker() {
    let Some(broker) = start_broker() else { return };
    let pid = broker.child.id();
    let out = &broker.data_dir;
    let common = format!("--brokers {} --broker-pid {pid} --quiet", broker.address);

    let produce = bench(
        &format!("produce {common} --topic real --partitions 2 --producers 2 --duration 2 --warmup 0.5 --rate 20MB/s"),
        &out.join("produce.json"),
    );
    assert_contract(&produce);
    let records_per_s = produce["records_per_s"].as_f64().unwrap();
    // Open loop at 20 MB/s of 1 KiB records: about 19,531 records/s.
    assert!(
        (15_000.0..=22_000.0).contains(&records_per_s),
        "{records_per_s}"
    );

    let consume = bench(
        &format!("consume {common} --topic real --from beginning --until-caught-up --duration 10 --warmup 0"),
        &out.join("consume.json"),
    );
    assert_contract(&consume);
    assert!(consume["records_per_s"].as_f64().unwrap() > 0.0);

    let e2e = bench(
        &format!("e2e {common} --topic real-e2e --partitions 2 --producers 1 --consumers 1 --duration 2 --warmup 0.5 --rate 5000 --fetch-max-wait-ms 50 --svg {}",
            out.join("e2e.svg").display()),
        &out.join("e2e.json"),
    );
    assert_contract(&e2e);
    assert!(e2e["latency_us"]["count"].as_u64().unwrap() > 5000);
    assert!(e2e["produce_latency_us"]["p50"].as_u64().is_some());
    let svg = std::fs::read_to_string(out.join("e2e.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<path"));

    // Percentiles per interval: 2 s of 1 s intervals, 100 producer connections on the one
    // event-driven generator thread.
    let soak = bench(
        &format!("soak {common} --topic real-soak --partitions 4 --producers 100 --max-in-flight 2 --duration 2 --warmup 0.5 --rate 10MB/s --interval-percentiles 1"),
        &out.join("soak.json"),
    );
    assert_contract(&soak);
    let intervals = soak["latency_intervals_us"]["intervals"]
        .as_array()
        .unwrap();
    assert_eq!(intervals.len(), 2, "{intervals:?}");
    let counted: u64 = intervals
        .iter()
        .map(|interval| interval["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, soak["latency_us"]["count"].as_u64().unwrap());

    // A catch-up read of a small backlog (the page cache is kept: a test must not slow
    // the whole machine down), then the topic is gone.
    let catchup = bench(
        &format!("catchup --brokers {} --broker-pid {pid} --quiet --backlog 16MiB --partitions 2 --producers 2 --keep-page-cache", broker.address),
        &out.join("catchup.json"),
    );
    assert_contract(&catchup);
    let facts = &catchup["catchup"];
    assert_eq!(catchup["scenario"], "catchup");
    assert!(
        facts["backlog_bytes"].as_u64().unwrap() >= 16 << 20,
        "{facts}"
    );
    assert_eq!(facts["records_read"], facts["backlog_records"], "{facts}");
    assert_eq!(facts["page_cache_dropped"], false);
    assert_eq!(facts["topic_deleted"], true);
}

/// Runs `openssl` in `directory`.
fn openssl(directory: &Path, args: &str) {
    let status = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(directory)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args}");
}

/// A CA and a server certificate for 127.0.0.1 in `directory`.
fn make_certificates(directory: &Path) {
    std::fs::create_dir_all(directory).unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        directory,
        &format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca"),
    );
    openssl(
        directory,
        &format!("req {ec} -keyout server.key -out server.csr -subj /CN=localhost"),
    );
    std::fs::write(
        directory.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        directory,
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext",
    );
}

#[test]
fn produce_consume_and_connect_over_sasl_ssl() {
    let Some(binary) = spate_binary() else { return };
    let certs = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("spate-bench-certs-{}", std::process::id()));
    make_certificates(&certs);
    let Some(broker) = start_broker_with(|address, data_dir| {
        // The first user, written into the data directory before the broker starts.
        let added = Command::new(&binary)
            .args(["user", "add", "bench", "--password", "bench-secret"])
            .args(["--mechanism", "SCRAM-SHA-512", "--data-dir"])
            .arg(data_dir)
            .output()
            .expect("spate user add runs");
        assert!(added.status.success(), "{added:?}");
        [
            "--listeners".to_string(),
            format!("SASL_SSL://{address}"),
            "--sasl-mechanisms".to_string(),
            "PLAIN,SCRAM-SHA-512".to_string(),
            "--ssl-cert".to_string(),
            certs.join("server.pem").display().to_string(),
            "--ssl-key".to_string(),
            certs.join("server.key").display().to_string(),
        ]
        .to_vec()
    }) else {
        return;
    };
    let out = &broker.data_dir;
    let secure = |password: &str| {
        format!(
            "--brokers {} --quiet -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=bench -X sasl.password={password} -X ssl.ca.location={}",
            broker.address,
            certs.join("ca.pem").display()
        )
    };
    let common = format!(
        "{} --broker-pid {}",
        secure("bench-secret"),
        broker.child.id()
    );
    let produce = bench(
        &format!("produce {common} --topic secure --partitions 2 --duration 1 --warmup 0.2"),
        &out.join("produce.json"),
    );
    assert_contract(&produce);
    assert!(produce["records_per_s"].as_f64().unwrap() > 0.0);
    let written = std::fs::read_to_string(out.join("produce.json")).unwrap();
    assert!(
        !written.contains("bench-secret"),
        "the password is not written down"
    );
    assert!(written.contains("sasl.password=[hidden]"), "{written}");

    let consume = bench(
        &format!("consume {common} --topic secure --from beginning --until-caught-up --duration 20 --warmup 0"),
        &out.join("consume.json"),
    );
    assert_contract(&consume);
    assert_eq!(
        consume["records_per_s"].as_f64().map(|rate| rate > 0.0),
        Some(true)
    );

    let connect = Command::new(env!("CARGO_BIN_EXE_spate-bench"))
        .args(["connect", "--count", "3", "--json"])
        .arg(out.join("connect.json"))
        .args(common.split_whitespace())
        .output()
        .unwrap();
    assert!(connect.status.success(), "{connect:?}");
    let connect: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("connect.json")).unwrap()).unwrap();
    assert_eq!(connect["connections"], 3);
    assert!(connect["p50_ms"].as_f64().unwrap() > 0.0);

    // A wrong password is refused, with Kafka's error named.
    let refused = Command::new(env!("CARGO_BIN_EXE_spate-bench"))
        .args(["connect", "--count", "1"])
        .args(secure("wrong").split_whitespace())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("SASL_AUTHENTICATION_FAILED"), "{stderr}");
    drop(broker);
    let _ = std::fs::remove_dir_all(&certs);
}
