//! Tests of `PartitionLog::append_replicated`.
use crate::batch::{BatchError, BASE_OFFSET_BYTES, LEADER_EPOCH_BYTES};
use crate::epochs::EpochEntry;
use crate::error::StorageError;
use crate::testing::{encode_batch, read_all, run, temp_dir, BatchSpec};
use crate::{LogConfig, Offset, PartitionLog};

/// A batch as a leader stores it: `spec` at `base_offset`, appended in `leader_epoch`.
pub(crate) fn leader_batch(spec: &BatchSpec, base_offset: i64, leader_epoch: i32) -> Vec<u8> {
    let mut bytes = encode_batch(spec);
    bytes[BASE_OFFSET_BYTES].copy_from_slice(&base_offset.to_be_bytes());
    bytes[LEADER_EPOCH_BYTES].copy_from_slice(&leader_epoch.to_be_bytes());
    bytes
}

/// Leader batches from `start` on, `(records, epoch)` each, told apart by their fill byte.
pub(crate) fn leader_batches(start: i64, shapes: &[(i32, i32)]) -> Vec<Vec<u8>> {
    let mut next = start;
    shapes
        .iter()
        .enumerate()
        .map(|(number, &(records, epoch))| {
            let spec = BatchSpec::records(records, 30 + number * 7).fill(number as u8);
            let batch = leader_batch(&spec, next, epoch);
            next += records as i64;
            batch
        })
        .collect()
}

/// Segments of 1,000 bytes, retention off (the test batches' timestamps are old).
pub(crate) fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1_000,
        index_interval_bytes: 200,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

#[test]
fn replicated_batches_are_stored_as_sent_with_their_epochs_across_rolls_and_reopen() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("follower-0");
        let log = PartitionLog::open(path.clone(), small_segments())
            .await
            .unwrap();
        let shapes: Vec<(i32, i32)> = (0..24)
            .map(|number| (1 + number % 3, if number < 10 { 2 } else { 7 }))
            .collect();
        let batches = leader_batches(0, &shapes);
        // Fetched in responses of 1 to 3 batches.
        let mut last = Offset(0);
        for chunk in batches.chunks(3) {
            let records = chunk.concat();
            let appended = log.append_replicated(&records).unwrap();
            assert_eq!(
                appended.base_offset.0,
                i64::from_be_bytes(chunk[0][..8].try_into().unwrap())
            );
            last = appended.last_offset;
        }
        log.wait_durable(last).await.unwrap();
        assert!(log.segment_count() > 2, "the test wants rolls");
        let epoch_7_start: i64 = shapes[..10]
            .iter()
            .map(|(records, _)| *records as i64)
            .sum();
        let expected_epochs = vec![
            EpochEntry {
                epoch: 2,
                start_offset: Offset(0),
            },
            EpochEntry {
                epoch: 7,
                start_offset: Offset(epoch_7_start),
            },
        ];
        assert_eq!(log.leader_epochs(), expected_epochs);
        assert_eq!(
            crate::epochs::read_checkpoint(&path).unwrap().unwrap(),
            expected_epochs,
            "the flusher wrote the checkpoint"
        );
        let check = |stored: Vec<(crate::batch::BatchInfo, Vec<u8>)>| {
            let stored: Vec<Vec<u8>> = stored.into_iter().map(|(_, bytes)| bytes).collect();
            assert_eq!(
                stored, batches,
                "byte for byte, offsets and epochs included"
            );
        };
        check(read_all(&log, 1 << 20).await);
        log.close().await.unwrap();
        let reopened = PartitionLog::open(path, small_segments()).await.unwrap();
        check(read_all(&reopened, 100).await);
        assert_eq!(reopened.leader_epochs(), expected_epochs);
        reopened.close().await.unwrap();
    });
}

#[test]
fn a_replicated_idempotent_batch_is_a_duplicate_once_this_replica_leads() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p-0"), LogConfig::default())
            .await
            .unwrap();
        let producer = BatchSpec::records(3, 20).producer(42, 1, 0);
        // A leader stored it at 5, after five records of others.
        let others = leader_batches(0, &[(5, 3)]);
        let idempotent = leader_batch(&producer, 5, 3);
        log.append_replicated(&[others[0].clone(), idempotent].concat())
            .unwrap();
        // Sequences are not checked on replication: a gap from the same producer is stored.
        let gap = leader_batch(&BatchSpec::records(1, 20).producer(42, 1, 9), 8, 3);
        log.append_replicated(&gap).unwrap();
        log.assign_leader_epoch(4);
        // The retry of the batch before the gap, as a client sends it to the new leader.
        let retry = log.append(
            &encode_batch(&BatchSpec::records(1, 20).producer(42, 1, 9)),
            4,
        );
        let retry = retry.unwrap();
        assert!(retry.duplicate);
        assert_eq!(
            (retry.base_offset, retry.last_offset),
            (Offset(8), Offset(8))
        );
        let first = log.append(&encode_batch(&producer), 4).unwrap();
        assert!(first.duplicate);
        assert_eq!(
            (first.base_offset, first.last_offset),
            (Offset(5), Offset(7))
        );
        log.close().await.unwrap();
    });
}

#[test]
fn a_bad_batch_refuses_the_whole_append() {
    run(async {
        let dir = temp_dir();
        let config = LogConfig {
            max_message_bytes: 500,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.path().join("p-0"), config)
            .await
            .unwrap();
        let batches = leader_batches(0, &[(2, 1), (3, 1), (1, 1)]);
        log.append_replicated(&batches[0]).unwrap();
        let end = log.log_end_offset();
        assert_eq!(end, Offset(2));
        let refused = |records: &[u8]| {
            let error = log.append_replicated(records).unwrap_err();
            assert_eq!(log.log_end_offset(), end, "nothing appended for {error}");
            error
        };
        // Not at the log end: again, or past it.
        assert!(matches!(
            refused(&batches[0]),
            StorageError::UnexpectedAppendOffset {
                expected: Offset(2),
                received: Offset(0)
            }
        ));
        assert!(matches!(
            refused(&batches[2]),
            StorageError::UnexpectedAppendOffset {
                expected: Offset(2),
                received: Offset(5)
            }
        ));
        // A gap between two batches of one append.
        let gapped = [batches[1].clone(), leader_batches(6, &[(1, 1)])[0].clone()].concat();
        assert!(matches!(
            refused(&gapped),
            StorageError::UnexpectedAppendOffset {
                expected: Offset(5),
                received: Offset(6)
            }
        ));
        // A damaged second batch, a cut one, none at all.
        let mut damaged = batches[2].clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xFF;
        let corrupt = [batches[1].clone(), damaged].concat();
        assert!(matches!(
            refused(&corrupt),
            StorageError::Batch(BatchError::Corrupt(_))
        ));
        let cut = [&batches[1][..], &batches[2][..20]].concat();
        assert!(matches!(
            refused(&cut),
            StorageError::Batch(BatchError::Corrupt(_))
        ));
        assert!(matches!(
            refused(&[]),
            StorageError::Batch(BatchError::Corrupt(_))
        ));
        let large = leader_batch(&BatchSpec::records(1, 600), 2, 1);
        assert!(matches!(
            refused(&large),
            StorageError::Batch(BatchError::TooLarge { max: 500, .. })
        ));
        // The good ones go in together.
        let both = log.append_replicated(&batches[1..].concat()).unwrap();
        assert_eq!((both.base_offset, both.last_offset), (Offset(2), Offset(5)));
        log.close().await.unwrap();
    });
}
