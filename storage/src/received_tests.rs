//! Tests of batches received in place: adopted or copied, they read back as sent; rejected
//! ones append nothing; LogAppendTime stamps them where they lie.
use crate::batch::{self, BatchError};
use crate::testing::{
    encode_batch, names_with_suffix, read_all, received_batch, run, same_batch, same_batches,
    temp_dir, BatchSpec,
};
use crate::{LogConfig, Offset, PartitionLog, StorageError};

#[test]
fn received_batches_are_adopted_in_place_or_copied_and_read_back_the_same() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("received-0");
        let config = LogConfig {
            segment_bytes: 400_000,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path.clone(), config).await.unwrap();
        // Sizes across the chunk size (128 KiB), mixed with small copied appends and with a
        // received batch placed at the wrong front, over a few segment rolls.
        let sizes = [
            300_000, 5_000, 131_000, 70, 262_144, 90_000, 40_000, 200_000, 1_000,
        ];
        let sent: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(number, size)| {
                encode_batch(&BatchSpec::records(2, size / 2).fill(number as u8 + 1))
            })
            .collect();
        let mut adopted = Vec::new();
        for (number, batch) in sent.iter().enumerate() {
            let appended = match number % 3 {
                0 | 2 => {
                    let front = log.receive_front(batch.len());
                    log.append_received(received_batch(batch, front), 3)
                        .unwrap()
                }
                _ if number == 4 => {
                    // Placed one byte off: copied, not adopted.
                    let front = log.receive_front(batch.len()) + 1;
                    log.append_received(received_batch(batch, front), 3)
                        .unwrap()
                }
                _ => log.append(batch, 3).unwrap(),
            };
            adopted.push(appended.in_place);
            if number % 4 == 3 {
                log.wait_durable(appended.last_offset).await.unwrap();
            }
        }
        let expected: Vec<bool> = (0..sent.len()).map(|number| number % 3 != 1).collect();
        assert_eq!(adopted, expected);
        log.wait_durable(Offset(log.log_end_offset().0 - 1))
            .await
            .unwrap();
        let check = |batches: &[(batch::BatchInfo, Vec<u8>)]| same_batches(batches, &sent, 3);
        check(&read_all(&log, 1 << 20).await);
        assert!(names_with_suffix(&path, ".log").len() >= 3, "rolls");
        log.close().await.unwrap();
        // And from the files alone.
        let reopened = PartitionLog::open(path, config).await.unwrap();
        check(&read_all(&reopened, 1 << 20).await);
        reopened.close().await.unwrap();
    });
}

#[test]
fn a_rejected_received_batch_appends_nothing() {
    run(async {
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("bad-0"), LogConfig::default())
            .await
            .unwrap();
        let mut batch = encode_batch(&BatchSpec::records(2, 100_000));
        let last = batch.len() - 1;
        batch[last] ^= 1;
        let front = log.receive_front(batch.len());
        assert!(matches!(
            log.append_received(received_batch(&batch, front), 0),
            Err(StorageError::Batch(BatchError::Corrupt(_)))
        ));
        assert_eq!(log.log_end_offset(), Offset(0));
        batch[last] ^= 1;
        let appended = log
            .append_received(received_batch(&batch, front), 0)
            .unwrap();
        log.wait_durable(appended.last_offset).await.unwrap();
        assert!(same_batch(&read_all(&log, 1 << 20).await[0].1, &batch));
        log.close().await.unwrap();
    });
}

#[test]
fn log_append_time_stamps_received_batches_in_place() {
    run(async {
        let dir = temp_dir();
        let config = LogConfig {
            log_append_time: true,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.path().join("stamped-0"), config)
            .await
            .unwrap();
        let batch = encode_batch(&BatchSpec::records(3, 100_000));
        let front = log.receive_front(batch.len());
        let appended = log
            .append_received(received_batch(&batch, front), 0)
            .unwrap();
        let stamp = appended.log_append_time_ms.expect("stamped");
        log.wait_durable(appended.last_offset).await.unwrap();
        let stored = log.read(Offset(0), 1 << 20, Offset::MAX).await.unwrap();
        let info = batch::parse_stored_batch(&stored).expect("valid CRC after stamping");
        assert_eq!(info.max_timestamp, stamp);
        log.close().await.unwrap();
    });
}
