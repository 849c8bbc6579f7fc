//! Tests of `PartitionLog::truncate_to` and `truncate_fully_and_start_at`, against a model of
//! what the log holds.
use crate::batch::{BASE_OFFSET_BYTES, LEADER_EPOCH_BYTES};
use crate::epochs::EpochEntry;
use crate::recovery::tests::{check_recovered, damage, Damage};
use crate::replica::tests::{leader_batch, small_segments as config};
use crate::segment::log_file_path;
use crate::testing::{encode_batch, names_with_suffix, read_all, run, temp_dir, BatchSpec};
use crate::{LogConfig, Offset, PartitionLog, StorageError};
use proptest::prelude::*;
use std::path::Path;

fn base_of(batch: &[u8]) -> i64 {
    i64::from_be_bytes(batch[BASE_OFFSET_BYTES].try_into().unwrap())
}

fn last_of(batch: &[u8]) -> i64 {
    base_of(batch) + i32::from_be_bytes(batch[23..27].try_into().unwrap()) as i64
}

fn epoch_of(batch: &[u8]) -> i32 {
    i32::from_be_bytes(batch[LEADER_EPOCH_BYTES].try_into().unwrap())
}

/// What the log must hold: its start, its batches as stored, its leader epochs.
#[derive(Clone, Debug, Default)]
struct Model {
    start: i64,
    batches: Vec<Vec<u8>>,
    epochs: Vec<EpochEntry>,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.start, |batch| last_of(batch) + 1)
    }

    /// A batch of `spec` as stored at the end in `epoch`.
    fn next_batch(&self, spec: &BatchSpec, epoch: i32) -> Vec<u8> {
        leader_batch(spec, self.end(), epoch)
    }

    fn push(&mut self, batch: Vec<u8>) {
        let epoch = epoch_of(&batch);
        if self.epochs.last().is_none_or(|latest| epoch > latest.epoch) {
            self.epochs.push(EpochEntry {
                epoch,
                start_offset: Offset(base_of(&batch)),
            });
        }
        self.batches.push(batch);
    }

    fn truncate_to(&mut self, offset: i64) {
        if offset >= self.end() {
            return;
        }
        if offset < self.start {
            return self.start_at(offset);
        }
        self.batches.retain(|batch| last_of(batch) < offset);
        let end = self.end();
        self.epochs.retain(|entry| entry.start_offset.0 < end);
    }

    fn start_at(&mut self, offset: i64) {
        *self = Model {
            start: offset,
            ..Model::default()
        };
    }
}

/// Appends `spec` in `epoch`, as a leader (`append`) or a follower (`append_replicated`).
async fn append(
    log: &PartitionLog,
    model: &mut Model,
    spec: &BatchSpec,
    epoch: i32,
    replicated: bool,
) {
    let stored = model.next_batch(spec, epoch);
    let appended = if replicated {
        log.append_replicated(&stored).unwrap()
    } else {
        log.append(&encode_batch(spec), epoch).unwrap()
    };
    assert_eq!(appended.base_offset, Offset(model.end()));
    model.push(stored);
}

/// The log holds exactly what the model says, durably.
async fn check(log: &PartitionLog, model: &Model) {
    let end = Offset(model.end());
    assert_eq!(log.log_end_offset(), end);
    if end.0 > model.start {
        log.wait_durable(Offset(end.0 - 1)).await.unwrap();
    }
    assert_eq!(log.durable_end_offset(), end);
    assert_eq!(log.log_start_offset(), Offset(model.start));
    assert_eq!(log.leader_epochs(), model.epochs);
    let stored: Vec<Vec<u8>> = read_all(log, 700)
        .await
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    assert_eq!(stored.len(), model.batches.len());
    assert!(
        stored == model.batches,
        "the batches below the cut, byte for byte"
    );
    if let Some(latest) = model.epochs.last() {
        assert_eq!(
            log.end_offset_for_epoch(latest.epoch),
            Some((latest.epoch, end))
        );
    }
}

/// A log of 30 batches (epoch 1, then 4 from the 16th), across several segments.
async fn filled_log(path: &Path) -> (PartitionLog, Model) {
    let log = PartitionLog::open(path.to_path_buf(), config())
        .await
        .unwrap();
    let mut model = Model::default();
    for number in 0..30 {
        let spec = BatchSpec::records(1 + number % 3, 40 + number as usize * 3).fill(number as u8);
        let epoch = if number < 15 { 1 } else { 4 };
        append(&log, &mut model, &spec, epoch, number % 2 == 0).await;
    }
    check(&log, &model).await;
    assert!(log.segment_count() >= 4, "the test wants sealed segments");
    (log, model)
}

fn segment_bases(path: &Path) -> Vec<i64> {
    names_with_suffix(path, ".log")
        .iter()
        .map(|name| name.trim_end_matches(".log").parse().unwrap())
        .collect()
}

/// After a cut: appends continue at the new end in a newer epoch, and all of it survives a
/// reopen.
async fn continue_and_reopen(path: &Path, log: PartitionLog, mut model: Model) {
    check(&log, &model).await;
    for number in 0..6 {
        let spec = BatchSpec::records(2, 50).fill(0xA0 + number);
        append(&log, &mut model, &spec, 9, number % 2 == 1).await;
    }
    check(&log, &model).await;
    log.close().await.unwrap();
    let reopened = PartitionLog::open(path.to_path_buf(), config())
        .await
        .unwrap();
    check(&reopened, &model).await;
    reopened.close().await.unwrap();
}

#[test]
fn truncation_inside_a_sealed_segment_cuts_the_straddling_batch_whole() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let (log, mut model) = filled_log(&path).await;
        // A batch of three records in the first segment, cut after its first record.
        let straddling = model.batches[2].clone();
        assert_eq!(last_of(&straddling) - base_of(&straddling), 2);
        let offset = base_of(&straddling) + 1;
        log.truncate_to(Offset(offset)).await.unwrap();
        model.truncate_to(offset);
        assert_eq!(model.end(), base_of(&straddling));
        assert_eq!(log.segment_count(), 1);
        // Epoch 4 started above the cut: it is unknown again.
        assert_eq!(log.end_offset_for_epoch(4), None);
        assert_eq!(log.end_offset_for_epoch(1), Some((1, Offset(model.end()))));
        continue_and_reopen(&path, log, model).await;
    });
}

#[test]
fn truncation_at_a_segment_boundary_leaves_an_empty_active_segment_there() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let (log, mut model) = filled_log(&path).await;
        let bases = segment_bases(&path);
        let boundary = bases[2];
        log.truncate_to(Offset(boundary)).await.unwrap();
        model.truncate_to(boundary);
        assert_eq!(model.end(), boundary);
        assert_eq!(segment_bases(&path), bases[..3]);
        continue_and_reopen(&path, log, model).await;
    });
}

#[test]
fn truncation_inside_the_active_segment_and_at_or_past_the_end() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let (log, mut model) = filled_log(&path).await;
        let segments = log.segment_count();
        let end = model.end();
        log.truncate_to(Offset(end)).await.unwrap();
        log.truncate_to(Offset(end + 10)).await.unwrap();
        check(&log, &model).await;
        let last = model.batches[29].clone();
        log.truncate_to(Offset(base_of(&last))).await.unwrap();
        model.truncate_to(base_of(&last));
        assert_eq!(log.segment_count(), segments);
        // Epoch 4's entry goes once its first batch does.
        let epoch_4_start = model.epochs[1].start_offset.0;
        log.truncate_to(Offset(epoch_4_start)).await.unwrap();
        model.truncate_to(epoch_4_start);
        assert_eq!(
            log.leader_epochs(),
            [EpochEntry {
                epoch: 1,
                start_offset: Offset(0)
            }]
        );
        assert_eq!(
            crate::epochs::read_checkpoint(&path).unwrap().unwrap(),
            log.leader_epochs(),
            "the checkpoint is cut too"
        );
        continue_and_reopen(&path, log, model).await;
    });
}

#[test]
fn a_truncation_at_or_past_the_end_drops_an_epoch_that_began_there_without_a_batch() {
    // A replica made leader in epoch 5 (its entry starts at the log end) and deposed before
    // any batch of that epoch: as a follower it sends 5 as its last fetched epoch, its new
    // leader answers that epoch 4 ended at this end, and the truncation there must drop
    // epoch 5, or the follower asks again for ever (Kafka's `truncateTo` cuts the epoch
    // cache at the log end even when the log itself is not cut).
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let (log, model) = filled_log(&path).await;
        let end = Offset(model.end());
        for target in [end, Offset(end.0 + 10)] {
            log.assign_leader_epoch(5);
            assert_eq!(log.latest_epoch().map(|entry| entry.epoch), Some(5));
            log.truncate_to(target).await.unwrap();
            assert_eq!(log.leader_epochs(), model.epochs, "truncate_to({target})");
            assert_eq!(
                crate::epochs::read_checkpoint(&path).unwrap().unwrap(),
                model.epochs,
                "the checkpoint is cut too"
            );
        }
        continue_and_reopen(&path, log, model).await;
    });
}

#[test]
fn truncation_below_the_log_start_starts_an_empty_log_there() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let (log, mut model) = filled_log(&path).await;
        log.delete_records_before(Offset(20)).await.unwrap();
        log.truncate_to(Offset(12)).await.unwrap();
        model.start_at(12);
        assert_eq!(log.segment_count(), 1);
        assert!(log.read(Offset(11), 100, Offset::MAX).await.is_err());
        check(&log, &model).await;
        // And ahead of everything: a follower that fell behind the leader's log start.
        log.truncate_fully_and_start_at(Offset(1_000))
            .await
            .unwrap();
        model.start_at(1_000);
        assert_eq!(segment_bases(&path), [1_000]);
        assert!(matches!(
            log.truncate_fully_and_start_at(Offset(-1)).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        continue_and_reopen(&path, log, model).await;
    });
}

#[test]
fn appends_during_a_truncation_are_refused_as_retriable() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let (log, mut model) = filled_log(&path).await;
        // Pending, not yet durable: the truncation drains it first.
        let spec = BatchSpec::records(1, 10);
        append(&log, &mut model, &spec, 4, false).await;
        let truncation = glommio::spawn_local({
            let log = log.clone();
            async move { log.truncate_to(Offset(5)).await }
        });
        futures_lite::future::yield_now().await;
        assert!(matches!(
            log.append(&encode_batch(&spec), 4),
            Err(StorageError::Truncating)
        ));
        assert!(matches!(
            log.truncate_to(Offset(3)).await,
            Err(StorageError::Truncating)
        ));
        truncation.await.unwrap();
        model.truncate_to(5);
        continue_and_reopen(&path, log, model).await;
    });
}

#[test]
fn after_a_truncation_every_torn_tail_of_the_last_batch_is_cut_off() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p-0");
        let (log, mut model) = filled_log(&path).await;
        let offset = base_of(&model.batches[27]) + 1;
        log.truncate_to(Offset(offset)).await.unwrap();
        model.truncate_to(offset);
        for number in 0..3 {
            append(
                &log,
                &mut model,
                &BatchSpec::records(2, 30).fill(0xB0 + number),
                6,
                true,
            )
            .await;
        }
        check(&log, &model).await;
        log.close().await.unwrap();
        let active = *segment_bases(&path).last().unwrap();
        let log_path = log_file_path(&path, Offset(active));
        let pristine = std::fs::read(&log_path).unwrap();
        let last = model.batches.last().unwrap();
        let last_start = pristine.len() - last.len();
        assert_eq!(&pristine[last_start..], &last[..]);
        let kept = model.batches.len();
        for cut in last_start..pristine.len() {
            for kind in [Damage::Truncate, Damage::ZeroTail, Damage::Garble] {
                std::fs::write(&log_path, damage(&pristine, cut, kind)).unwrap();
                let relative = cut - last_start;
                let survives = match kind {
                    Damage::Truncate => false,
                    Damage::ZeroTail => pristine[cut..].iter().all(|byte| *byte == 0),
                    // partitionLeaderEpoch is not covered by the CRC.
                    Damage::Garble => (12..16).contains(&relative),
                };
                let kept = if survives { kept } else { kept - 1 };
                // One segment, whatever check_recovered appends: the next damage rewrites it.
                let one_segment = LogConfig {
                    segment_bytes: 1 << 30,
                    ..config()
                };
                check_recovered(&path, &model.batches, kept, one_segment).await;
            }
        }
    });
}

#[derive(Clone, Debug)]
enum Operation {
    Append {
        records: i32,
        value_bytes: usize,
        replicated: bool,
        new_epoch: bool,
    },
    /// To `start - 1 + fraction * (end - start + 2)`: below the start, inside, or at the end.
    Truncate {
        fraction: f64,
    },
    /// Past the end: a follower behind its leader's log start.
    StartAhead {
        ahead: i64,
    },
    Reopen {
        crash: bool,
    },
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        6 => (1i32..4, 0usize..200, any::<bool>(), proptest::bool::weighted(0.2)).prop_map(
            |(records, value_bytes, replicated, new_epoch)| Operation::Append {
                records,
                value_bytes,
                replicated,
                new_epoch
            }
        ),
        2 => (0.0f64..1.0).prop_map(|fraction| Operation::Truncate { fraction }),
        1 => (1i64..50).prop_map(|ahead| Operation::StartAhead { ahead }),
        1 => any::<bool>().prop_map(|crash| Operation::Reopen { crash }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Appends (as leader and as follower), truncations, and reopens (closed or crashed)
    /// leave the log holding what the model says.
    #[test]
    fn truncations_and_reopens_match_the_model(operations in proptest::collection::vec(operation(), 1..30)) {
        run(async move {
            let dir = temp_dir();
            let path = dir.path().join("p-0");
            let mut log = PartitionLog::open(path.clone(), config()).await.unwrap();
            let mut model = Model::default();
            let mut epoch = 0;
            for (number, operation) in operations.into_iter().enumerate() {
                match operation {
                    Operation::Append { records, value_bytes, replicated, new_epoch } => {
                        epoch += new_epoch as i32;
                        let spec = BatchSpec::records(records, value_bytes).fill(number as u8);
                        append(&log, &mut model, &spec, epoch, replicated).await;
                    }
                    Operation::Truncate { fraction } => {
                        let span = (model.end() - model.start + 2) as f64;
                        let offset = (model.start - 1 + (fraction * span) as i64).max(0);
                        log.truncate_to(Offset(offset)).await.unwrap();
                        model.truncate_to(offset);
                    }
                    Operation::StartAhead { ahead } => {
                        let offset = model.end() + ahead;
                        log.truncate_fully_and_start_at(Offset(offset)).await.unwrap();
                        model.start_at(offset);
                    }
                    Operation::Reopen { crash } => {
                        check(&log, &model).await;
                        if crash {
                            drop(log);
                        } else {
                            log.close().await.unwrap();
                        }
                        log = PartitionLog::open(path.clone(), config()).await.unwrap();
                    }
                }
                check(&log, &model).await;
            }
            log.close().await.unwrap();
        });
    }
}

/// Copies the files of a closed log (no subdirectories).
fn copy_log(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Where the first batch with an offset at or above `offset` starts in a segment file.
fn cut_position_in(file: &[u8], offset: i64) -> usize {
    let mut position = 0;
    while position < file.len() {
        let info = crate::batch::parse_stored_batch(&file[position..]).unwrap();
        if info.last_offset() >= offset {
            break;
        }
        position += info.batch_bytes;
    }
    position
}

#[test]
fn a_crash_at_any_step_of_a_truncation_leaves_a_prefix_at_least_as_long_as_the_cut() {
    run(async {
        let dir = temp_dir();
        let pristine = dir.path().join("pristine");
        let (log, model) = filled_log(&pristine).await;
        log.close().await.unwrap();
        let bases = segment_bases(&pristine);
        // Inside the second segment, in a batch of several records.
        let straddling = model
            .batches
            .iter()
            .find(|batch| base_of(batch) > bases[1] && last_of(batch) > base_of(batch))
            .unwrap()
            .clone();
        let offset = base_of(&straddling) + 1;
        let mut truncated = model.clone();
        truncated.truncate_to(offset);
        let above: Vec<i64> = bases
            .iter()
            .copied()
            .filter(|base| *base > offset)
            .collect();
        // The steps `cut_tail` takes, in its order: the segments above renamed from the
        // highest down (each `.log` first), then the segment holding the cut truncated. A
        // crash after each: how many segments were renamed, whether the cut was made.
        let steps = (0..=above.len())
            .map(|renamed| (renamed, false))
            .chain([(above.len(), true)]);
        for (number, (renamed, cut)) in steps.enumerate() {
            let path = dir.path().join(format!("crash-{number}"));
            copy_log(&pristine, &path);
            for base in above.iter().rev().take(renamed) {
                crate::compaction::rename_for_deletion(&path, Offset(*base)).unwrap();
            }
            if cut {
                let cut_file = log_file_path(&path, Offset(bases[1]));
                let bytes = std::fs::read(&cut_file).unwrap();
                let position = cut_position_in(&bytes, offset);
                std::fs::write(&cut_file, &bytes[..position]).unwrap();
            }
            let log = PartitionLog::open(path.clone(), config()).await.unwrap();
            let stored: Vec<Vec<u8>> = read_all(&log, 1 << 20)
                .await
                .into_iter()
                .map(|(_, bytes)| bytes)
                .collect();
            assert!(stored.len() >= truncated.batches.len(), "step {number}");
            assert!(
                stored[..] == model.batches[..stored.len()],
                "a prefix of the old log"
            );
            let mut recovered = model.clone();
            recovered.batches.truncate(stored.len());
            let end = recovered.end();
            recovered.epochs.retain(|entry| entry.start_offset.0 < end);
            check(&log, &recovered).await;
            // The follower truncates again after its restart.
            log.truncate_to(Offset(offset)).await.unwrap();
            check(&log, &truncated).await;
            log.close().await.unwrap();
        }
    });
}
