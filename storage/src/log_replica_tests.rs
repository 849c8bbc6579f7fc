//! Tests of what a replicated partition builds on: reads bounded by the caller's watermark,
//! and the leader epoch checkpoint.
use super::*;

#[test]
fn reads_stop_before_the_first_batch_that_reaches_the_upper_bound() {
    run(async {
        // No tail cache: sealed segments would be file ranges but for the bound.
        crate::tail_cache::set_shard_budget_bytes(0);
        let dir = temp_dir();
        let config = LogConfig {
            segment_bytes: 2_000,
            index_interval_bytes: 0,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.path().join("bounded-0"), config)
            .await
            .unwrap();
        let sent = varied_batches(40);
        let mut batch_ends = Vec::new();
        for batch in &sent {
            batch_ends.push(log.append(batch, 0).unwrap().last_offset.next());
        }
        let end = log.log_end_offset();
        log.wait_durable(Offset(end.0 - 1)).await.unwrap();
        assert!(log.segment_count() > 2);
        // Bounds on batch boundaries (as high watermarks and last stable offsets are), and
        // inside batches: only batches that end below the bound come back.
        let bounds = batch_ends
            .iter()
            .flat_map(|end| [*end, Offset(end.0 - 1)])
            .chain([Offset(0)]);
        for bound in bounds {
            let expected: Vec<usize> = (0..sent.len())
                .filter(|&number| batch_ends[number] <= bound)
                .collect();
            for fetch_offset in [0, bound.0 / 2, (bound.0 - 1).max(0), bound.0] {
                for mode in [ReadMode::Copy, ReadMode::FileRanges] {
                    let mut got = Vec::new();
                    let mut next = Offset(fetch_offset);
                    loop {
                        let records = log.read_records(next, 1 << 20, bound, mode).await.unwrap();
                        let batches = split_batches(&materialize(&records));
                        let Some((last, _)) = batches.last() else {
                            break;
                        };
                        next = Offset(last.base_offset + last.last_offset_delta as i64 + 1);
                        got.extend(batches.into_iter().map(|(info, _)| info));
                    }
                    let want: Vec<i64> = expected
                        .iter()
                        .filter(|&&number| batch_ends[number].0 > fetch_offset)
                        .map(|&number| batch_ends[number].0)
                        .collect();
                    let ends: Vec<i64> = got
                        .iter()
                        .map(|info| info.base_offset + info.last_offset_delta as i64 + 1)
                        .collect();
                    assert_eq!(ends, want, "bound {bound}, fetch {fetch_offset}, {mode:?}");
                }
            }
        }
        // A bound past the durable end reads everything durable.
        assert_eq!(read_all(&log, 1 << 20).await.len(), sent.len());
        log.close().await.unwrap();
        crate::tail_cache::set_shard_budget_bytes(crate::tail_cache::DEFAULT_SHARD_BUDGET_BYTES);
    });
}

#[test]
fn leader_epochs_reach_their_checkpoint_before_their_batches_are_durable_and_survive_reopen() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("epochs-0");
        let entry = |epoch, start| crate::epochs::EpochEntry {
            epoch,
            start_offset: Offset(start),
        };
        // Retention off: the batches' timestamps are old.
        let config = LogConfig {
            retention_ms: -1,
            ..small_segments()
        };
        let log = PartitionLog::open(path.clone(), config).await.unwrap();
        assert!(log.leader_epochs().is_empty());
        let mut last = Offset(0);
        // Epoch 0 for 20 batches, 3 for 20 more (across segment rolls), then 5 taken over at
        // the log end before any batch of it arrives.
        for (number, batch) in varied_batches(40).iter().enumerate() {
            let epoch = if number < 20 { 0 } else { 3 };
            last = log.append(batch, epoch).unwrap().last_offset;
            if number == 19 {
                log.wait_durable(last).await.unwrap();
                // The durable batches' epoch is already on disk.
                let on_disk = crate::epochs::read_checkpoint(&path).unwrap().unwrap();
                assert_eq!(on_disk, vec![entry(0, 0)]);
            }
        }
        log.wait_durable(last).await.unwrap();
        let epoch_3_start = log.leader_epochs()[1].start_offset;
        assert!(epoch_3_start > Offset(0));
        assert_eq!(
            crate::epochs::read_checkpoint(&path).unwrap().unwrap(),
            log.leader_epochs()
        );
        log.assign_leader_epoch(5);
        let end = log.log_end_offset();
        assert_eq!(log.end_offset_for_epoch(0), Some((0, epoch_3_start)));
        assert_eq!(log.end_offset_for_epoch(3), Some((3, end)));
        assert_eq!(log.end_offset_for_epoch(4), Some((3, end)));
        assert_eq!(log.end_offset_for_epoch(5), Some((5, end)));
        assert_eq!(log.end_offset_for_epoch(6), None);
        let expected = vec![entry(0, 0), entry(3, epoch_3_start.0), entry(5, end.0)];
        assert!(log.segment_count() > 2);
        log.close().await.unwrap();
        let reopened = PartitionLog::open(path.clone(), config).await.unwrap();
        // An epoch with no batch yet starts at the log end, and recovery cuts entries at the
        // end as Kafka does: the replica assigns it again when it becomes leader.
        assert_eq!(reopened.leader_epochs(), expected[..2]);
        let on_disk = crate::epochs::read_checkpoint(&path).unwrap().unwrap();
        assert_eq!(on_disk, expected, "the checkpoint had it");
        reopened.close().await.unwrap();
        // Without the file (a log written before it existed, or a lost file): the first
        // batch's epoch, and the epochs of the active segment's batches.
        std::fs::remove_file(path.join(crate::epochs::CHECKPOINT_FILE)).unwrap();
        let rebuilt = PartitionLog::open(path.clone(), config).await.unwrap();
        let entries = rebuilt.leader_epochs();
        assert_eq!(entries[0], entry(0, 0));
        assert_eq!(entries.last().unwrap().epoch, 3);
        // DeleteRecords moves the first epoch's start with the log start.
        rebuilt.delete_records_before(Offset(3)).await.unwrap();
        assert_eq!(rebuilt.leader_epochs()[0], entry(0, 3));
        rebuilt.close().await.unwrap();
    });
}

#[test]
fn regression_an_older_epoch_at_the_start_of_the_active_segment_kept_the_newer_epochs() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("epochs-0");
        let config = LogConfig {
            retention_ms: -1,
            ..small_segments()
        };
        let log = PartitionLog::open(path.clone(), config).await.unwrap();
        // Epoch 0 until a segment rolls: it opens the active segment.
        for batch in varied_batches(40) {
            let last = log.append(&batch, 0).unwrap().last_offset;
            log.wait_durable(last).await.unwrap();
            if log.segment_count() > 1 {
                break;
            }
        }
        assert_eq!(log.segment_count(), 2);
        // Epoch 1 starts inside it.
        let epoch_1_start = log.log_end_offset();
        let small = crate::testing::encode_batch(&BatchSpec::records(1, 10));
        let last = log.append(&small, 1).unwrap().last_offset;
        log.wait_durable(last).await.unwrap();
        assert_eq!(log.segment_count(), 2, "both epochs in the active segment");
        let expected = log.leader_epochs();
        assert_eq!(expected.len(), 2);
        assert_eq!(expected[1].start_offset, epoch_1_start);
        log.close().await.unwrap();
        // Recovery assigned the active segment's epoch 0 at its base again, which removed
        // every entry at or above it.
        let reopened = PartitionLog::open(path, config).await.unwrap();
        assert_eq!(reopened.leader_epochs(), expected);
        reopened.close().await.unwrap();
    });
}
