//! Replicas on the shards of one node: a single `spate serve` takes replication factors up
//! to its shard count (Kafka's tools size internal topics as min(3, brokers), and every shard
//! is a broker to them). Each replica is a follower like one on another node: it fetches
//! from its leader's shard, reports only what it has fdatasync'ed, and acks=all waits for
//! it. The checks: the replicas sit on distinct shards with a full ISR; acks=all records
//! come back once, in order, at their offsets, through a kill -9; both replicas hold the
//! same batches; and a restart with fewer shards moves a replica of a shard that is gone to
//! a free one without moving its data.

use crate::harness;

use std::time::{Duration, Instant};

use harness::{batch, decode_values, fetch, metadata, wait_for, Broker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use spate_net::client::Client;

const TOPIC: &str = "mirrored";
const PARTITIONS: i32 = 4;
const WAIT: Duration = Duration::from_secs(30);

/// CreateTopics of `TOPIC` with `factor` replicas and min.insync.replicas=`min_insync`;
/// returns the error code.
fn create(client: &mut Client, factor: i16, min_insync: &str) -> i16 {
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(harness::topic_name(TOPIC))
        .with_num_partitions(PARTITIONS)
        .with_replication_factor(factor)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("min.insync.replicas"))
            .with_value(Some(StrBytes::from_string(min_insync.to_string())))])]);
    let response = client.send(7, &request).expect("create topics");
    response.topics[0].error_code
}

/// (leader shard, replica shards, ISR shards) of each partition, by Metadata.
fn assignments(broker: &Broker) -> Vec<(i32, Vec<i32>, Vec<i32>)> {
    let response = metadata(&mut broker.client(0), Some(&[TOPIC]));
    let mut topic = response.topics[0].partitions.clone();
    topic.sort_by_key(|partition| partition.partition_index);
    topic
        .iter()
        .map(|partition| {
            let shards = |ids: &[kafka_protocol::messages::BrokerId]| -> Vec<i32> {
                ids.iter().map(|id| id.0 % 1024).collect()
            };
            (
                partition.leader_id.0 % 1024,
                shards(&partition.replica_nodes),
                shards(&partition.isr_nodes),
            )
        })
        .collect()
}

fn wait_for_full_isr(broker: &Broker) {
    wait_for("every partition's ISR to be full", WAIT, || {
        assignments(broker).iter().all(|(leader, replicas, isr)| {
            *leader >= 0 && {
                let mut isr = isr.clone();
                isr.sort();
                let mut replicas = replicas.clone();
                replicas.sort();
                isr == replicas
            }
        })
    });
}

/// An idempotent producer that sends one record per request with acks=all to the
/// partition's leader shard and retries it, unchanged, until it is acknowledged.
struct Producer {
    producer_id: i64,
    sequences: Vec<i32>,
    /// (offset, value) acknowledged, per partition.
    acked: Vec<Vec<(i64, String)>>,
}

impl Producer {
    fn new(broker: &Broker) -> Producer {
        Producer {
            producer_id: harness::init_producer_id(&mut broker.client(0)),
            sequences: vec![0; PARTITIONS as usize],
            acked: vec![Vec::new(); PARTITIONS as usize],
        }
    }

    fn send_many(&mut self, broker: &Broker, label: &str, count: usize) {
        for index in 0..count {
            let partition = index as i32 % PARTITIONS;
            self.send(broker, partition, format!("{label}-{index}"));
        }
    }

    fn send(&mut self, broker: &Broker, partition: i32, value: String) {
        let slot = partition as usize;
        let records = batch(&[&value], Some((self.producer_id, 0, self.sequences[slot])));
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(
                Instant::now() < deadline,
                "{value} never acknowledged\n{}",
                broker.log()
            );
            let leader = assignments(broker)[slot].0;
            if leader < 0 {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let request = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(harness::topic_name(TOPIC))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records.clone()))])]);
            let Ok(response) = broker.client(leader as usize).send(9, &request) else {
                continue;
            };
            let answer = &response.responses[0].partition_responses[0];
            match answer.error_code {
                0 => {
                    self.sequences[slot] += 1;
                    self.acked[slot].push((answer.base_offset, value));
                    return;
                }
                // NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS(_AFTER_APPEND)
                6 | 7 | 19 | 20 => std::thread::sleep(Duration::from_millis(20)),
                code => panic!("{value}: error {code}\n{}", broker.log()),
            }
        }
    }
}

/// Every acknowledged record read back from the leader once, in order, at its offset, and
/// every replica's directory holding the same batches.
fn verify(broker: &Broker, producer: &Producer, replica_dirs: usize) {
    for partition in 0..PARTITIONS {
        let acked = &producer.acked[partition as usize];
        let leader = assignments(broker)[partition as usize].0;
        let mut client = broker.client(leader as usize);
        let mut read = Vec::new();
        let mut next = 0;
        loop {
            let response = fetch(&mut client, TOPIC, partition, next, 100);
            let data = &response.responses[0].partitions[0];
            assert_eq!(data.error_code, 0, "partition {partition}");
            let records = decode_values(&data.records.clone().unwrap_or_default());
            if records.is_empty() && next >= data.high_watermark {
                break;
            }
            for (offset, value) in records {
                next = offset + 1;
                read.push((offset, value));
            }
        }
        assert_eq!(
            &read, acked,
            "partition {partition}: the acknowledged records are not each read once, in order, at their offsets"
        );
        let deadline = Instant::now() + WAIT;
        loop {
            let dumps: Vec<String> = (0..replica_dirs)
                .map(|rank| dump(broker, partition, rank))
                .collect();
            if !dumps[0].is_empty() && dumps.iter().all(|other| *other == dumps[0]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partition {partition}: the replicas differ:\n{}",
                dumps.join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The batch lines of `spate log dump` of the first segment of the `rank`-th replica of
/// `partition` on this node (its directory: `mirrored-P`, then `mirrored-P.replica<rank>`).
fn dump(broker: &Broker, partition: i32, rank: usize) -> String {
    let dir = if rank == 0 {
        format!("{TOPIC}-{partition}")
    } else {
        format!("{TOPIC}-{partition}.replica{rank}")
    };
    let path = broker
        .data_dir()
        .join("data")
        .join(dir)
        .join("00000000000000000000.log");
    harness::dumped_batches(&path)
}

#[test]
fn a_single_node_replicates_a_topic_over_its_shards_through_a_kill_9() {
    let mut broker = Broker::start(2);
    let mut client = broker.client(0);
    // Two shards, two brokers: a factor of three has nowhere to go.
    assert_eq!(
        create(&mut client, 3, "2"),
        ResponseError::InvalidReplicationFactor.code()
    );
    assert_eq!(create(&mut client, 2, "2"), 0);
    for (leader, replicas, isr) in assignments(&broker) {
        let mut sorted = replicas.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1], "replicas on both shards");
        assert_eq!(leader, replicas[0]);
        assert_eq!(isr.len(), 2);
    }
    // A single node with replicas on its shards is a healthy cluster of its own.
    let health = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["cluster", "health", "--json", "--brokers"])
        .arg(broker.address(0).to_string())
        .output()
        .expect("spate runs");
    let report: serde_json::Value = serde_json::from_slice(&health.stdout).expect("json");
    assert_eq!(health.status.code(), Some(0), "{report}");
    assert_eq!(report["healthy"], true, "{report}");
    assert_eq!(report["brokers"], serde_json::json!([0, 1]), "{report}");
    let mut producer = Producer::new(&broker);
    producer.send_many(&broker, "before", 200);
    verify(&broker, &producer, 2);
    broker.kill9();
    broker.start_again();
    wait_for_full_isr(&broker);
    producer.send_many(&broker, "after", 200);
    verify(&broker, &producer, 2);
}

#[test]
fn a_restart_with_fewer_shards_moves_a_replica_to_a_free_shard_and_keeps_its_data() {
    let mut broker = Broker::start(3);
    assert_eq!(create(&mut broker.client(0), 2, "2"), 0);
    let before = assignments(&broker);
    assert!(
        before.iter().any(|(_, replicas, _)| replicas.contains(&2)),
        "some replica on shard 2: {before:?}"
    );
    let mut producer = Producer::new(&broker);
    producer.send_many(&broker, "three-shards", 200);
    verify(&broker, &producer, 2);
    broker.stop();
    broker.smp = 2;
    broker.start_again();
    wait_for_full_isr(&broker);
    for ((_, old, _), (_, new, _)) in before.iter().zip(assignments(&broker)) {
        let mut sorted = new.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1], "was {old:?}");
        // A replica that stayed on its shard keeps its rank (and directory).
        for (rank, shard) in old.iter().enumerate() {
            if *shard < 2 {
                assert_eq!(new[rank], *shard);
            }
        }
    }
    producer.send_many(&broker, "two-shards", 200);
    verify(&broker, &producer, 2);
}
