//! Starts a real `spate serve` process on free ports with its own data directory, and
//! stops it (SIGTERM, then kill) when dropped.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use spate_net::client::Client;

pub struct Broker {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub smp: usize,
    /// More `spate serve` arguments.
    pub extra_args: Vec<String>,
    /// Ports other than the Kafka ones that a restart waits to be free (a cluster node's
    /// controller port).
    pub extra_ports: Vec<u16>,
}

impl Broker {
    pub fn start(smp: usize) -> Broker {
        Broker::start_with_args(smp, &[])
    }

    pub fn start_with_args(smp: usize, extra_args: &[&str]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port_range(smp);
        let mut broker = Broker {
            child: None,
            dir,
            port,
            smp,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            extra_ports: Vec::new(),
        };
        broker.spawn();
        broker
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("broker.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_spate"))
            .args(["serve", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--smp", &self.smp.to_string(), "--default-partitions", "2"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn spate");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        for shard in 0..self.smp {
            let address = self.address(shard);
            while TcpStream::connect(address).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "broker did not start:\n{}",
                    self.log()
                );
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|child| child.try_wait().ok().flatten())
                {
                    panic!("broker exited with {status}:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // A port accepts connections as soon as it is bound, before the shards serve: wait
        // for the broker to say it serves, so that a start that fails after binding shows
        // its log here instead of a reset connection in the test. (Only at the default log
        // level: a SPATE_LOG of the test's runner may leave the line out.)
        let logs_serving = std::env::var_os("SPATE_LOG").is_none();
        while logs_serving && !self.log().contains("spate is serving") {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!("broker exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "broker did not start serving:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn address(&self, shard: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + shard as u16))
    }

    pub fn client(&self, shard: usize) -> Client {
        Client::connect(self.address(shard), Duration::from_secs(10)).expect("connect")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// The broker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker did not stop within 10 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// SIGKILL and wait: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same data directory (after `stop` or `kill9`).
    ///
    /// A stopped or killed broker's listening sockets can outlive its process for a moment
    /// (the kernel tears io_uring rings down in the background, and in-flight accepts hold
    /// the socket), so this first waits until every port (and `extra_ports`) can be bound
    /// again.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is still running");
        let ports: Vec<u16> = (self.port..self.port + self.smp as u16)
            .chain(self.extra_ports.iter().copied())
            .collect();
        wait_for(
            "the old broker's ports to be released",
            Duration::from_secs(10),
            || {
                ports
                    .iter()
                    .all(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
            },
        );
        self.spawn();
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

/// A port P such that P..P+count are free right now, below Linux's ephemeral range
/// (32768-60999): a port the kernel gave out as the probe's (bind to port 0) can be taken
/// by any process's next outgoing connection before the broker binds it, and an outgoing
/// socket on that port makes the broker's bind fail with "Address already in use" (seen
/// with two clusters starting at once in one test binary). The Python harness picks its
/// ports the same way.
///
/// A range is handed out once per test process: a port checked free here stays unbound
/// until its broker starts, and a cluster picks its controller ports before it starts its
/// nodes, whose own draws could otherwise land on a later node's controller port ("Address
/// already in use" on that node's start, seen in CI).
pub fn free_port_range(count: usize) -> u16 {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    const RANGE: std::ops::Range<u64> = 12_000..32_000;
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        // A cheap draw that differs between processes and between calls.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos() as u64);
        let draw = DRAWS.fetch_add(1, Ordering::Relaxed);
        let mixed = (nanos
            ^ (u64::from(std::process::id()) << 20)
            ^ draw.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let base = (RANGE.start + (mixed >> 16) % (RANGE.end - RANGE.start - count as u64)) as u16;
        let ports = base..base + count as u16;
        let all_free = ports.clone().all(|port| {
            !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        if all_free {
            handed_out.extend(ports);
            return base;
        }
    }
    panic!("no free port range");
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    create_topic_with_configs(client, name, partitions, &[]);
}

pub fn create_topic_with_configs(
    client: &mut Client,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let configs = configs
        .iter()
        .map(|(key, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(key.to_string()))
                .with_value(Some(StrBytes::from_string(value.to_string())))
        })
        .collect();
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(configs)]);
    let response = client.send(7, &request).expect("create topics");
    assert_eq!(
        response.topics[0].error_code, 0,
        "{:?}",
        response.topics[0].error_message
    );
}

/// A v2 batch of `values`, optionally idempotent.
pub fn batch(values: &[&str], producer: Option<(i64, i16, i32)>) -> Bytes {
    batch_of(values, producer, false, 1_700_000_000_000)
}

/// A transactional v2 batch of `values` from `producer` (id, epoch, first sequence), stamped
/// now (a record of long ago would roll its segment and meet retention under the test).
pub fn transactional_batch(values: &[&str], producer: (i64, i16, i32)) -> Bytes {
    batch_of(values, Some(producer), true, spate_net::records::now_ms())
}

fn batch_of(
    values: &[&str],
    producer: Option<(i64, i16, i32)>,
    transactional: bool,
    first_timestamp: i64,
) -> Bytes {
    let (producer_id, producer_epoch, first_sequence) = producer.unwrap_or((-1, -1, 0));
    let records: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let mut record = spate_net::records::plain_record(
                index,
                Some(Bytes::from(format!("key-{index}"))),
                Some(Bytes::from(value.to_string())),
                first_timestamp + index as i64,
            );
            record.producer_id = producer_id;
            record.producer_epoch = producer_epoch;
            record.sequence = first_sequence + index as i32;
            record.transactional = transactional;
            record
        })
        .collect();
    spate_net::records::encode_batch(&records, Compression::None)
        .expect("encode")
        .freeze()
}

/// A v2 batch of unkeyed `values` stamped now (CreateTime), so that retention leaves it be.
pub fn batch_now(values: impl IntoIterator<Item = String>) -> Bytes {
    let records: Vec<_> = values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let mut record = spate_net::records::plain_record(
                index,
                None,
                Some(Bytes::from(value)),
                spate_net::records::now_ms(),
            );
            record.timestamp_type = kafka_protocol::records::TimestampType::Creation;
            record
        })
        .collect();
    spate_net::records::encode_batch(&records, Compression::None)
        .expect("encode")
        .freeze()
}

pub fn produce(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> ProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    client.send(9, &request).expect("produce")
}

pub fn fetch(
    client: &mut Client,
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> FetchResponse {
    let request = FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    client.send(11, &request).expect("fetch")
}

/// Values of every record in fetched bytes, with their offsets.
pub fn decode_values(records: &Bytes) -> Vec<(i64, String)> {
    let mut bytes = records.clone();
    let mut out = Vec::new();
    for set in kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).expect("decode")
    {
        for record in set.records {
            out.push((
                record.offset,
                String::from_utf8(record.value.expect("value").to_vec()).expect("utf8"),
            ));
        }
    }
    out
}

/// Metadata v12 for the named topics (all of them for `None`), without creating any.
pub fn metadata(client: &mut Client, topics: Option<&[&str]>) -> MetadataResponse {
    let topics = topics.map(|names| {
        names
            .iter()
            .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
            .collect()
    });
    let request = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false);
    client.send(12, &request).expect("metadata")
}

/// Waits until `condition` holds, polling, or panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn temp_path(broker: &Broker, name: &str) -> PathBuf {
    broker.dir.path().join(name)
}

/// The batch lines (`baseOffset ...`) of `spate log dump` of a segment file: what two replicas
/// of a partition must agree on.
pub fn dumped_batches(segment: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["log", "dump"])
        .arg(segment)
        .output()
        .expect("spate log dump");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("baseOffset"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A new idempotent producer id (InitProducerId without a transactional id).
pub fn init_producer_id(client: &mut Client) -> i64 {
    let response = client
        .send(
            1,
            &kafka_protocol::messages::InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(-1),
        )
        .expect("init producer id");
    assert_eq!(response.error_code, 0);
    response.producer_id.0
}
