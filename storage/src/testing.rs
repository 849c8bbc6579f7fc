//! Test helpers: a hand-written v2 batch encoder and a glommio executor runner.

use crate::batch::{CRC_COVERAGE_START, HEADER_BYTES};
use std::future::Future;
use std::sync::Once;

/// What to put in a test batch.
#[derive(Clone, Debug)]
pub(crate) struct BatchSpec {
    pub record_count: i32,
    pub value_bytes: usize,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// Byte written into every value, so batches can be told apart.
    pub fill: u8,
    /// Each record's timestamp; empty means `1_700_000_000_000 + offset delta`.
    pub timestamps: Vec<i64>,
    /// The batch belongs to a transaction (attribute bit 4).
    pub transactional: bool,
}

impl BatchSpec {
    pub fn records(record_count: i32, value_bytes: usize) -> BatchSpec {
        BatchSpec {
            record_count,
            value_bytes,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            fill: 0x5A,
            timestamps: Vec::new(),
            transactional: false,
        }
    }

    /// One record per timestamp, stamped with them.
    pub fn timestamped(timestamps: &[i64], value_bytes: usize) -> BatchSpec {
        BatchSpec {
            timestamps: timestamps.to_vec(),
            ..BatchSpec::records(timestamps.len() as i32, value_bytes)
        }
    }

    /// Each record's timestamp.
    pub fn record_timestamps(&self) -> Vec<i64> {
        if self.timestamps.is_empty() {
            (0..self.record_count as i64)
                .map(|delta| 1_700_000_000_000 + delta)
                .collect()
        } else {
            self.timestamps.clone()
        }
    }

    pub fn producer(mut self, producer_id: i64, epoch: i16, base_sequence: i32) -> BatchSpec {
        self.producer_id = producer_id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch transactional.
    pub fn transactional(mut self) -> BatchSpec {
        self.transactional = true;
        self
    }

    pub fn fill(mut self, fill: u8) -> BatchSpec {
        self.fill = fill;
        self
    }
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        if zigzag < 0x80 {
            out.push(zigzag as u8);
            return;
        }
        out.push((zigzag as u8 & 0x7F) | 0x80);
        zigzag >>= 7;
    }
}

/// Encodes an uncompressed v2 batch with `baseOffset` 0, as a producer would send it.
pub(crate) fn encode_batch(spec: &BatchSpec) -> Vec<u8> {
    let timestamps = spec.record_timestamps();
    let base_timestamp = timestamps.first().copied().unwrap_or(1_700_000_000_000);
    let mut records = Vec::new();
    let mut record = Vec::new();
    for delta in 0..spec.record_count {
        record.clear();
        record.push(0); // attributes
        put_varint(&mut record, timestamps[delta as usize] - base_timestamp); // timestampDelta
        put_varint(&mut record, delta as i64); // offsetDelta
        put_varint(&mut record, -1); // null key
        put_varint(&mut record, spec.value_bytes as i64);
        record.extend(std::iter::repeat_n(spec.fill, spec.value_bytes));
        put_varint(&mut record, 0); // no headers
        put_varint(&mut records, record.len() as i64);
        records.extend_from_slice(&record);
    }
    let total = HEADER_BYTES + records.len();
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(&0i64.to_be_bytes());
    bytes.extend_from_slice(&((total - 12) as i32).to_be_bytes());
    bytes.extend_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
    bytes.push(2); // magic
    bytes.extend_from_slice(&[0; 4]); // crc, filled below
    let attributes: i16 = if spec.transactional { 0x10 } else { 0 };
    bytes.extend_from_slice(&attributes.to_be_bytes());
    bytes.extend_from_slice(&(spec.record_count - 1).to_be_bytes());
    bytes.extend_from_slice(&base_timestamp.to_be_bytes());
    let max_timestamp = timestamps.iter().copied().max().unwrap_or(base_timestamp);
    bytes.extend_from_slice(&max_timestamp.to_be_bytes());
    bytes.extend_from_slice(&spec.producer_id.to_be_bytes());
    bytes.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    bytes.extend_from_slice(&spec.base_sequence.to_be_bytes());
    bytes.extend_from_slice(&spec.record_count.to_be_bytes());
    bytes.extend_from_slice(&records);
    let crc = crc32c::crc32c(&bytes[CRC_COVERAGE_START..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(bytes.len(), total);
    bytes
}

/// Runs `future` on a fresh glommio executor, after lifting the locked-memory limit that
/// glommio's io_uring buffers need (the tests run as root).
pub(crate) fn run<F, T>(future: F) -> T
where
    F: Future<Output = T> + 'static,
    T: 'static,
{
    static RAISE_MEMLOCK: Once = Once::new();
    RAISE_MEMLOCK.call_once(|| {
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit and getrlimit only read or fill the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
            // Without CAP_SYS_RESOURCE (some containers, even as root) the hard limit stays;
            // raise the soft limit to it. glommio runs within the default 8 MiB.
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0 {
                limit.rlim_cur = limit.rlim_max;
                unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
            }
        }
    });
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(crate::wakeup::guarded(future))
}

/// The names of the files in `dir` that end with `suffix` ("" for all), sorted.
pub(crate) fn names_with_suffix(dir: &std::path::Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Waits (a little) for the background task to unlink the files renamed for deletion.
pub(crate) async fn wait_for_unlink(dir: &std::path::Path) {
    let deleted = crate::segment::DELETED_SUFFIX;
    for _ in 0..100 {
        if names_with_suffix(dir, deleted).is_empty() {
            return;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "deleted files still there: {:?}",
        names_with_suffix(dir, deleted)
    );
}

/// Waits until `condition` holds, checking every millisecond; panics after 10 s.
pub(crate) async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// A temporary directory on the real disk (O_DIRECT does not work on tmpfs).
pub(crate) fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("spate-storage-test")
        .tempdir()
        .unwrap()
}

/// Every stored batch in `bytes`, which must hold whole batches only.
pub(crate) fn split_batches(mut bytes: &[u8]) -> Vec<(crate::batch::BatchInfo, Vec<u8>)> {
    let mut batches = Vec::new();
    while !bytes.is_empty() {
        let info =
            crate::batch::parse_stored_batch(bytes).expect("reads return whole, intact batches");
        batches.push((info, bytes[..info.batch_bytes].to_vec()));
        bytes = &bytes[info.batch_bytes..];
    }
    batches
}

/// Reads the whole log, from its start to the durable end, in fetches of `max_bytes`.
pub(crate) async fn read_all(
    log: &crate::PartitionLog,
    max_bytes: usize,
) -> Vec<(crate::batch::BatchInfo, Vec<u8>)> {
    let mut batches = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.durable_end_offset() {
        let bytes = log.read(next, max_bytes, crate::Offset::MAX).await.unwrap();
        let fetched = split_batches(&bytes);
        assert!(
            !fetched.is_empty(),
            "a read below the durable end returns a batch"
        );
        for (info, batch) in fetched {
            assert_eq!(info.base_offset, next.0, "batches are contiguous");
            next = crate::Offset(info.last_offset() + 1);
            batches.push((info, batch));
        }
    }
    batches
}

/// Whether a stored batch is the client batch `sent`, apart from the bytes the broker rewrites.
pub(crate) fn same_batch(stored: &[u8], sent: &[u8]) -> bool {
    use crate::batch::{BASE_OFFSET_BYTES, LEADER_EPOCH_BYTES};
    stored.len() == sent.len()
        && stored[BASE_OFFSET_BYTES.end..LEADER_EPOCH_BYTES.start]
            == sent[BASE_OFFSET_BYTES.end..LEADER_EPOCH_BYTES.start]
        && stored[LEADER_EPOCH_BYTES.end..] == sent[LEADER_EPOCH_BYTES.end..]
}

/// A record's key and value as a test gives them (`None` value: a tombstone).
pub(crate) type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A client batch of keyed records, stamped `timestamp_ms` plus `step_ms` per record, in a
/// Kafka codec, as the
/// kafka-protocol encoder writes it (one batch: baseSequence -1 keeps offset - sequence
/// constant, which is what the encoder groups by).
pub(crate) fn encode_keyed(
    records: &[KeyValue],
    codec: kafka_protocol::records::Compression,
    (timestamp_ms, step_ms): (i64, i64),
) -> bytes::Bytes {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(number, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: number as i64,
            sequence: number as i32 - 1,
            timestamp: timestamp_ms + step_ms * number as i64,
            key: key.clone().map(bytes::Bytes::from),
            value: value.clone().map(bytes::Bytes::from),
            headers: Default::default(),
        })
        .collect();
    let mut buffer = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut buffer, &records, &options).unwrap();
    buffer.freeze()
}

/// A batch received the way the engine receives one: into chunks placed at `front`.
pub(crate) fn received_batch(batch: &[u8], front: usize) -> crate::ReceivedBatch {
    let mut received = crate::ReceivedBatch::new(front, batch.len());
    let mut rest = batch;
    for part in received.parts_mut() {
        let (now, later) = rest.split_at(part.len());
        part.copy_from_slice(now);
        rest = later;
    }
    received
}

/// Asserts that `stored` holds the `sent` batches, in order, stamped with `leader_epoch`.
pub(crate) fn same_batches(
    stored: &[(crate::batch::BatchInfo, Vec<u8>)],
    sent: &[Vec<u8>],
    leader_epoch: i32,
) {
    assert_eq!(stored.len(), sent.len());
    for ((info, stored), original) in stored.iter().zip(sent) {
        assert!(same_batch(stored, original));
        assert_eq!(info.partition_leader_epoch, leader_epoch);
    }
}
