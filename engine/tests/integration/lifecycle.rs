//! Log lifecycle against a real `spate serve` process: ListOffsets by timestamp through the
//! time index, retention by time and size while producing, and DeleteRecords.

use crate::harness;

use spate_net::error_code::{NONE, OFFSET_OUT_OF_RANGE};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use harness::{create_topic_with_configs, fetch, produce, topic_name, Broker};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{DeleteRecordsRequest, ListOffsetsRequest};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use spate_engine::metadata::placement::default_shard as shard_for;
use spate_net::client::Client;
use spate_net::records::now_ms;

const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// A batch with one record per timestamp, each value `value_bytes` long.
fn timestamped_batch(timestamps: &[i64], value_bytes: usize, compression: Compression) -> Bytes {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(index, timestamp)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: index as i32,
            timestamp: *timestamp,
            key: Some(Bytes::from(format!("key-{index}"))),
            value: Some(Bytes::from(vec![b'v'; value_bytes])),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buffer, &records, &options).expect("encode");
    buffer.freeze()
}

/// ListOffsets v7 for one partition: (error, offset, timestamp).
fn list_offsets(client: &mut Client, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let request = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)])]);
    let response = client.send(7, &request).expect("list offsets");
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.offset, partition.timestamp)
}

/// DeleteRecords v2 for one partition: (error, low watermark).
fn delete_records(client: &mut Client, topic: &str, offset: i64) -> (i16, i64) {
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset)])]);
    let response = client.send(2, &request).expect("delete records");
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.low_watermark)
}

/// Total size of the segment files in a partition directory.
fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|entry| entry.metadata().ok())
                .map(|metadata| metadata.len())
                .sum()
        })
        .unwrap_or(0)
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
                .count()
        })
        .unwrap_or(0)
}

/// The client of the shard that owns partition 0 of `topic`, after creating the topic.
fn topic_client(broker: &Broker, topic: &str, configs: &[(&str, &str)]) -> Client {
    create_topic_with_configs(&mut broker.client(0), topic, 1, configs);
    broker.client(shard_for(topic, 0, broker.smp as u32).0 as usize)
}

#[test]
fn list_offsets_by_timestamp_matches_a_brute_force_scan() {
    let mut broker = Broker::start(2);
    let topic = "by-time";
    let mut client = topic_client(
        &broker,
        topic,
        // Timestamps from 1970: without retention.ms=-1 they would be deleted at once.
        &[
            ("segment.bytes", "4096"),
            ("index.interval.bytes", "512"),
            ("retention.ms", "-1"),
        ],
    );
    // Timestamps that go up and down, in batches of 1..4 records, some compressed.
    let mut records: Vec<(i64, i64)> = Vec::new();
    for number in 0..120i64 {
        let count = 1 + number % 4;
        let timestamps: Vec<i64> = (0..count)
            .map(|index| 1_000_000 + ((number * 37 + index * 11) % 500) * 10)
            .collect();
        let compression = if number % 3 == 0 {
            Compression::Gzip
        } else {
            Compression::None
        };
        let response = produce(
            &mut client,
            topic,
            0,
            timestamped_batch(&timestamps, 100, compression),
            -1,
        );
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, NONE);
        for (index, timestamp) in timestamps.iter().enumerate() {
            records.push((partition.base_offset + index as i64, *timestamp));
        }
    }
    let check = |client: &mut Client, log_start: i64| {
        for target in (999_990..1_005_010).step_by(7) {
            let expected = records
                .iter()
                .find(|(offset, timestamp)| *offset >= log_start && *timestamp >= target)
                .map_or((-1, -1), |(offset, timestamp)| (*offset, *timestamp));
            let (error, offset, timestamp) = list_offsets(client, topic, target);
            assert_eq!(error, NONE);
            assert_eq!((offset, timestamp), expected, "target {target}");
        }
        let max = records
            .iter()
            .filter(|(offset, _)| *offset >= log_start)
            .fold(
                None::<(i64, i64)>,
                |best, &(offset, timestamp)| match best {
                    Some((_, best_timestamp)) if best_timestamp >= timestamp => best,
                    _ => Some((offset, timestamp)),
                },
            )
            .expect("records");
        let (error, offset, timestamp) = list_offsets(client, topic, MAX_TIMESTAMP);
        assert_eq!((error, offset, timestamp), (NONE, max.0, max.1));
    };
    check(&mut client, 0);
    // Move the start into the middle of a batch; lookups ignore what is below it.
    let (error, low_watermark) = delete_records(&mut client, topic, 101);
    assert_eq!((error, low_watermark), (NONE, 101));
    check(&mut client, 101);
    // After a restart the indexes are reloaded (and the log start with them).
    assert_eq!(broker.stop(), Some(0), "clean shutdown:\n{}", broker.log());
    broker.restart();
    let mut client = broker.client(shard_for(topic, 0, 2).0 as usize);
    check(&mut client, 101);
}

/// One produce of ten 200-byte records stamped now, which must succeed.
fn produce_now(client: &mut Client, topic: &str) {
    let timestamps = vec![now_ms(); 10];
    let response = produce(
        client,
        topic,
        0,
        timestamped_batch(&timestamps, 200, Compression::None),
        -1,
    );
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        NONE
    );
}

/// What a client sees at the log start, read while retention may move it: ListOffsets
/// EARLIEST, then the first record there, a fetch just below (out of range) and one at it.
/// Retention runs on its own tick, so it may delete the segment at the start between two of
/// these requests; that is retried (bounded) with the new start, never taken for an error.
/// Returns (log start, timestamp of its first record).
fn read_at_log_start(client: &mut Client, topic: &str) -> (i64, i64) {
    for _ in 0..20 {
        let (error, earliest, _) = list_offsets(client, topic, EARLIEST);
        assert_eq!(error, NONE);
        assert!(earliest > 0, "{topic}: old segments deleted");
        let below = fetch(client, topic, 0, earliest - 1, 0);
        let below = &below.responses[0].partitions[0];
        assert_eq!(below.error_code, OFFSET_OUT_OF_RANGE);
        assert!(below.log_start_offset >= earliest);
        let at = fetch(client, topic, 0, earliest, 0);
        let at = &at.responses[0].partitions[0];
        if at.error_code == OFFSET_OUT_OF_RANGE {
            // Moved on between the two requests: only ever forward.
            assert!(at.log_start_offset > earliest, "{topic}: start went back");
            continue;
        }
        assert_eq!(at.error_code, NONE);
        let mut records = at.records.clone().expect("records at the log start");
        let batches =
            kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records).expect("decode");
        let first = batches
            .iter()
            .flat_map(|batch| batch.records.iter())
            .find(|record| record.offset >= earliest)
            .expect("a record at the log start");
        return (earliest, first.timestamp);
    }
    panic!("{topic}: the log start moved on at every one of 20 reads");
}

#[test]
fn retention_ms_and_bytes_delete_old_segments_while_a_producer_runs() {
    let broker = Broker::start(1);
    let configs_by_topic = [
        ("short-lived", vec![("retention.ms", "2000")]),
        ("size-capped", vec![("retention.bytes", "40000")]),
    ];
    for (topic, limits) in &configs_by_topic {
        let mut configs = vec![("segment.bytes", "8192"), ("file.delete.delay.ms", "0")];
        configs.extend(limits.iter().copied());
        let mut client = topic_client(&broker, topic, &configs);
        let dir = broker.data_dir().join("data").join(format!("{topic}-0"));
        let started = Instant::now();
        let mut most_segments = 0;
        let mut produced = 0i64;
        while started.elapsed() < Duration::from_secs(5) {
            produce_now(&mut client, topic);
            produced += 10;
            most_segments = most_segments.max(segment_count(&dir));
            std::thread::sleep(Duration::from_millis(5));
        }
        if topic == &"short-lived" {
            // Time-based: the age of the oldest record kept only means something while records
            // keep coming (once they stop, the active segment, never deleted, just ages). So a
            // second producer keeps going while the checks run, however slow the machine.
            let stop = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|scope| {
                let mut producer = broker.client(shard_for(topic, 0, 1).0 as usize);
                let stop = &stop;
                scope.spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        produce_now(&mut producer, topic);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                });
                let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let (_, oldest_timestamp) = read_at_log_start(&mut client, topic);
                    // The limit, plus a retention tick and the time one segment takes to fill.
                    let age_ms = now_ms() - oldest_timestamp;
                    assert!(
                        age_ms < 2_000 + 1_500,
                        "{topic}: oldest record is {age_ms} ms old"
                    );
                }));
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Err(panic) = checked {
                    std::panic::resume_unwind(panic);
                }
            });
        } else {
            // Retention runs on the shard's 100 ms tick; on a loaded machine the tick runs
            // late and more than one tick of produce can pile up. Once producing stops, the
            // next tick must bring the log back within the limit.
            let deadline = Instant::now() + Duration::from_secs(10);
            while log_bytes(&dir) >= 40_000 + 4 * 8_192 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            read_at_log_start(&mut client, topic);
            let log_bytes = log_bytes(&dir);
            assert!(
                // The oldest kept segment, the preallocated active one, and a tick of
                // produce.
                (40_000..40_000 + 4 * 8_192).contains(&log_bytes),
                "{topic}: {log_bytes} bytes of segments left"
            );
        }
        println!("{topic}: produced {produced}, at most {most_segments} segments");
    }
}

#[test]
fn delete_records_moves_the_log_start_and_survives_a_restart() {
    let mut broker = Broker::start(1);
    let topic = "trimmed";
    let mut client = topic_client(&broker, topic, &[("segment.bytes", "2048")]);
    for _ in 0..50 {
        let timestamps = vec![now_ms(); 4];
        let batch = timestamped_batch(&timestamps, 100, Compression::None);
        produce(&mut client, topic, 0, batch, -1);
    }
    assert_eq!(
        delete_records(&mut client, topic, 201).0,
        OFFSET_OUT_OF_RANGE
    );
    assert_eq!(delete_records(&mut client, topic, 77), (NONE, 77));
    assert_eq!(
        delete_records(&mut client, topic, 10),
        (NONE, 77),
        "never backwards"
    );
    assert_eq!(list_offsets(&mut client, topic, EARLIEST).1, 77);
    let below = fetch(&mut client, topic, 0, 76, 0);
    assert_eq!(
        below.responses[0].partitions[0].error_code,
        OFFSET_OUT_OF_RANGE
    );
    let at = fetch(&mut client, topic, 0, 77, 0);
    let values = harness::decode_values(at.responses[0].partitions[0].records.as_ref().unwrap());
    assert_eq!(values[0].0, 76, "the whole batch holding 77 comes back");

    assert_eq!(broker.stop(), Some(0), "clean shutdown:\n{}", broker.log());
    broker.restart();
    let mut client = broker.client(0);
    assert_eq!(list_offsets(&mut client, topic, EARLIEST).1, 77);
    assert_eq!(delete_records(&mut client, topic, -1), (NONE, 200));
    assert_eq!(list_offsets(&mut client, topic, EARLIEST).1, 200);
    let response = produce(
        &mut client,
        topic,
        0,
        timestamped_batch(&[now_ms()], 10, Compression::None),
        -1,
    );
    assert_eq!(
        response.responses[0].partition_responses[0].base_offset,
        200
    );
}
