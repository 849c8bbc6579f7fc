//! Tests of transactions in the log: markers as Kafka writes them, the `.txnindex` format, the
//! aborted-transaction search, and a log's last stable offset and aborts through rolls,
//! reopens, a lost index file, replication and retention.
use super::*;
use crate::batch::parse_stored_batch;
use crate::testing::{encode_batch, run, temp_dir, BatchSpec};
use crate::{LogConfig, PartitionLog, StorageError};
use bytes::Bytes;

const COMMIT: TxnMarker = TxnMarker {
    commit: true,
    coordinator_epoch: 7,
};
const ABORT: TxnMarker = TxnMarker {
    commit: false,
    coordinator_epoch: 7,
};

#[test]
fn a_marker_batch_is_what_kafka_reads_as_a_control_record() {
    for marker in [COMMIT, ABORT] {
        let bytes = marker_batch(42, 3, marker, 1_700_000_000_000);
        let info = parse_stored_batch(&bytes).expect("a valid batch, CRC included");
        assert!(info.is_control() && info.is_transactional());
        assert_eq!((info.producer_id, info.producer_epoch), (42, 3));
        assert_eq!((info.base_sequence, info.record_count), (-1, 1));
        assert_eq!(info.marker, Some(marker));
        // An independent reader (the kafka-protocol crate) agrees.
        let mut buffer = Bytes::from(bytes);
        let records =
            kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buffer).expect("decode");
        let record = &records[0].records[0];
        assert!(record.control && record.transactional);
        let key = record.key.as_ref().expect("a control key");
        assert_eq!(&key[..], &[0, 0, 0, u8::from(marker.commit)]);
        let value = record.value.as_ref().expect("a marker value");
        assert_eq!(&value[..], &[0, 0, 0, 0, 0, 7]);
    }
}

#[test]
fn a_txn_index_decodes_as_written_and_refuses_a_torn_or_foreign_one() {
    let entries = vec![
        AbortedTxn {
            producer_id: 1,
            first_offset: Offset(10),
            last_offset: Offset(20),
            last_stable_offset: Offset(21),
        },
        AbortedTxn {
            producer_id: 1 << 40,
            first_offset: Offset(15),
            last_offset: Offset(30),
            last_stable_offset: Offset(25),
        },
    ];
    let bytes = encode_entries(&entries);
    assert_eq!(bytes.len(), 68, "Kafka's 34-byte entries");
    assert_eq!(decode_entries(&bytes), Some(entries));
    assert_eq!(decode_entries(&bytes[..67]), None);
    let mut other_version = bytes.clone();
    other_version[1] = 1;
    assert_eq!(decode_entries(&other_version), None);
    assert_eq!(decode_entries(&[]), Some(Vec::new()));
}

#[test]
fn the_aborted_search_finds_every_abort_that_overlaps_a_read_and_no_other() {
    // Transactions (producer, first, marker) aborted in marker order; a brute force over
    // every read range is the reference.
    let spans = [(1, 0, 5), (2, 3, 9), (3, 12, 14), (4, 6, 20), (5, 21, 22)];
    let mut aborted = AbortedTxns::default();
    let mut open: Vec<(i64, i64)> = spans.iter().map(|&(id, first, _)| (id, first)).collect();
    for &(producer_id, first, marker) in &spans {
        open.retain(|&(id, _)| id != producer_id);
        // As `ProducerStateTable::aborted` computes it: the oldest transaction still open
        // then (all of them began before this marker), else the offset after the marker.
        let last_stable = open
            .iter()
            .filter(|&&(_, first)| first < marker)
            .map(|&(_, first)| first)
            .min()
            .unwrap_or(marker + 1);
        aborted.push(AbortedTxn {
            producer_id,
            first_offset: Offset(first),
            last_offset: Offset(marker),
            last_stable_offset: Offset(last_stable),
        });
    }
    for start in 0..24 {
        for upper in start..25 {
            let found: Vec<i64> = aborted
                .overlapping(Offset(start), Offset(upper))
                .iter()
                .map(|entry| entry.producer_id)
                .collect();
            let expected: Vec<i64> = spans
                .iter()
                .filter(|&&(_, first, marker)| marker >= start && first < upper)
                .map(|&(id, _, _)| id)
                .collect();
            assert_eq!(found, expected, "[{start}, {upper})");
        }
    }
    assert_eq!(aborted.in_segment(Offset(9), Offset(20)).len(), 2);
    aborted.retain_from(Offset(10));
    assert_eq!(aborted.len(), 3);
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1_000,
        index_interval_bytes: 200,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

fn transactional(producer_id: i64, epoch: i16, sequence: i32) -> Vec<u8> {
    encode_batch(
        &BatchSpec::records(2, 40)
            .producer(producer_id, epoch, sequence)
            .transactional(),
    )
}

fn plain(fill: u8) -> Vec<u8> {
    encode_batch(&BatchSpec::records(1, 60).fill(fill))
}

/// What read_committed readers learn of a log: (last stable offset, aborts below it as
/// (producer, first offset, marker offset)), over the whole log: one read learns those of
/// the segment it reads (checked in `log_with_transactions`).
fn committed_view(log: &PartitionLog) -> (Offset, Vec<(i64, i64, i64)>) {
    let high_watermark = log.durable_end_offset();
    let stable = log.last_stable_offset(high_watermark);
    let aborted = log
        .shared
        .state
        .borrow()
        .aborted
        .overlapping(Offset(0), stable)
        .iter()
        .map(|entry| (entry.producer_id, entry.first_offset.0, entry.last_offset.0))
        .collect();
    (stable, aborted)
}

#[test]
fn open_transactions_hold_the_last_stable_offset_and_aborts_are_indexed() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("t-0"), small_segments())
            .await
            .unwrap();
        log.append(&plain(1), 0).unwrap(); // 0
        log.append(&transactional(10, 0, 0), 0).unwrap(); // 1-2, producer 10 opens at 1
        log.append(&transactional(11, 0, 0), 0).unwrap(); // 3-4, producer 11 opens at 3
        let last = log.append(&plain(2), 0).unwrap().last_offset; // 5
        log.wait_durable(last).await.unwrap();
        assert_eq!(committed_view(&log), (Offset(1), vec![]));
        // A plain batch from a producer whose transaction is open is refused.
        let plain_from_10 = encode_batch(&BatchSpec::records(1, 10).producer(10, 0, 2));
        assert!(matches!(
            log.append(&plain_from_10, 0),
            Err(StorageError::InvalidTxnState)
        ));
        // Producer 10 aborts: the stable offset moves to producer 11's start.
        let marker = log.append_marker(10, 0, ABORT, 0).unwrap().last_offset; // 6
        log.wait_durable(marker).await.unwrap();
        assert_eq!(committed_view(&log), (Offset(3), vec![(10, 1, 6)]));
        // Producer 11 commits: nothing unstable is left.
        let marker = log.append_marker(11, 0, COMMIT, 0).unwrap().last_offset; // 7
        log.wait_durable(marker).await.unwrap();
        assert_eq!(committed_view(&log), (Offset(8), vec![(10, 1, 6)]));
        // The high watermark bounds it, and a completed transaction whose marker is above
        // the high watermark still holds it (Kafka's unreplicated transactions).
        log.append(&transactional(12, 0, 0), 0).unwrap(); // 8-9
        log.append_marker(12, 0, COMMIT, 0).unwrap(); // 10
        assert_eq!(log.last_stable_offset(Offset(9)), Offset(8));
        assert_eq!(log.last_stable_offset(Offset(10)), Offset(8));
        assert_eq!(log.last_stable_offset(Offset(11)), Offset(11));
        log.close().await.unwrap();
    });
}

#[test]
fn markers_from_an_older_producer_epoch_or_coordinator_are_refused() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("t-0"), small_segments())
            .await
            .unwrap();
        log.append(&transactional(10, 4, 0), 0).unwrap();
        assert!(matches!(
            log.append_marker(10, 3, ABORT, 0),
            Err(StorageError::InvalidProducerEpoch)
        ));
        log.append_marker(10, 4, ABORT, 0).unwrap();
        let older_coordinator = TxnMarker {
            commit: true,
            coordinator_epoch: 6,
        };
        assert!(matches!(
            log.append_marker(10, 4, older_coordinator, 0),
            Err(StorageError::CoordinatorFenced)
        ));
        // A marker for a producer this partition never saw is written (the transaction
        // added the partition but sent nothing to it), and ends nothing.
        let appended = log.append_marker(99, 0, COMMIT, 0).unwrap();
        log.wait_durable(appended.last_offset).await.unwrap();
        assert_eq!(committed_view(&log).1, vec![(10, 0, 2)]);
        log.close().await.unwrap();
    });
}

/// A log with transactions across many rolls: every fourth aborted, one left open at the
/// end. Returns what a read_committed reader saw before closing it.
async fn log_with_transactions(path: &std::path::Path) -> (Offset, Vec<(i64, i64, i64)>) {
    let log = PartitionLog::open(path.to_path_buf(), small_segments())
        .await
        .unwrap();
    let mut last = Offset(0);
    for number in 0..24i64 {
        let producer = 100 + number % 3;
        let epoch = (number / 3) as i16; // a new epoch per transaction: sequences restart
        log.append(&transactional(producer, epoch, 0), 0).unwrap();
        log.append(&plain(number as u8), 0).unwrap();
        log.append(&transactional(producer, epoch, 2), 0).unwrap();
        let marker = if number % 4 == 1 { ABORT } else { COMMIT };
        last = log
            .append_marker(producer, epoch, marker, 0)
            .unwrap()
            .last_offset;
    }
    log.append(&transactional(200, 0, 0), 0).unwrap();
    let end = log.append(&plain(0), 0).unwrap().last_offset;
    log.wait_durable(last.max(end)).await.unwrap();
    assert!(log.segment_count() > 5, "the test wants rolls");
    let view = committed_view(&log);
    assert_eq!(view.1.len(), 6);
    // A read from the start learns the aborts that begin in its segment, not all of them.
    let first_segment_end = log.shared.state.borrow().segments[1].base_offset;
    let one_read = log.aborted_transactions(Offset(0), view.0);
    let expected: Vec<_> = view
        .1
        .iter()
        .filter(|&&(_, first, _)| first < first_segment_end.0)
        .collect();
    assert_eq!(one_read.len(), expected.len());
    assert!(one_read.len() < 6);
    log.close().await.unwrap();
    view
}

#[test]
fn the_last_stable_offset_and_aborts_survive_reopening_with_or_without_index_files() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("t-0");
        let before = log_with_transactions(&path).await;
        let indexes = crate::testing::names_with_suffix(&path, ".txnindex");
        assert!(
            indexes.len() > 5,
            "sealed segments have their index: {indexes:?}"
        );
        let reopen = || async {
            let log = PartitionLog::open(path.clone(), small_segments())
                .await
                .unwrap();
            let view = committed_view(&log);
            log.close().await.unwrap();
            view
        };
        assert_eq!(reopen().await, before);
        // Without the index of a segment below the newest snapshot, the log is replayed from
        // its first segment, and the index written again.
        std::fs::remove_file(path.join(&indexes[1])).unwrap();
        assert_eq!(reopen().await, before);
        assert!(path.join(&indexes[1]).exists(), "rewritten by the replay");
        // Without snapshots (an older release's log), from the first segment too.
        for name in crate::testing::names_with_suffix(&path, ".snapshot") {
            std::fs::remove_file(path.join(name)).unwrap();
        }
        assert_eq!(reopen().await, before);
    });
}

#[test]
fn a_follower_that_copies_the_leaders_batches_has_the_same_transactions() {
    run(async {
        let dir = temp_dir();
        let leader_path = dir.path().join("leader-0");
        let before = log_with_transactions(&leader_path).await;
        let leader = PartitionLog::open(leader_path, small_segments())
            .await
            .unwrap();
        let follower = PartitionLog::open(dir.path().join("follower-0"), small_segments())
            .await
            .unwrap();
        let end = leader.durable_end_offset();
        let mut next = Offset(0);
        while next < end {
            let bytes = leader.read(next, 700, end).await.unwrap();
            let appended = follower.append_replicated(&bytes).unwrap();
            next = appended.last_offset.next();
        }
        follower.wait_durable(Offset(end.0 - 1)).await.unwrap();
        assert_eq!(committed_view(&follower), before);
        leader.close().await.unwrap();
        follower.close().await.unwrap();
    });
}
