//! Recovery of torn, damaged and partly indexed segments, and the helpers other storage tests
//! use to damage a log (`damage`) and check what recovery kept (`check_recovered`).

use crate::segment::{align_up, index_file_path, log_file_path};
use crate::testing::{encode_batch, read_all, run, same_batch, temp_dir, BatchSpec};
use crate::{LogConfig, Offset, PartitionLog};
use proptest::prelude::*;
use std::path::Path;

fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 150,
        ..LogConfig::default()
    }
}

/// Writes `batches` to a fresh log in `path` and closes it; returns the end offset after
/// each batch.
async fn write_log(path: &Path, batches: &[Vec<u8>], config: LogConfig) -> Vec<Offset> {
    let log = PartitionLog::open(path.to_path_buf(), config)
        .await
        .unwrap();
    let mut ends = Vec::new();
    for batch in batches {
        ends.push(log.append(batch, 3).unwrap().last_offset.next());
    }
    log.wait_durable(Offset(ends.last().unwrap().0 - 1))
        .await
        .unwrap();
    log.close().await.unwrap();
    ends
}

/// Opens the damaged log and checks it holds exactly `batches[..kept]`, then that appends
/// continue right after them and survive another reopen.
pub(crate) async fn check_recovered(
    path: &Path,
    batches: &[Vec<u8>],
    kept: usize,
    config: LogConfig,
) {
    let log = PartitionLog::open(path.to_path_buf(), config)
        .await
        .unwrap();
    let expected_end: i64 = batches[..kept]
        .iter()
        .map(|batch| record_count(batch) as i64)
        .sum();
    assert_eq!(
        log.log_end_offset(),
        Offset(expected_end),
        "kept {kept} batches"
    );
    assert_eq!(log.durable_end_offset(), Offset(expected_end));
    for max_bytes in [1, 1 << 20] {
        let stored = read_all(&log, max_bytes).await;
        assert_eq!(stored.len(), kept);
        for ((_, stored), sent) in stored.iter().zip(batches) {
            assert!(same_batch(stored, sent));
        }
    }
    let next = encode_batch(&BatchSpec::records(2, 33).fill(0xC3));
    let appended = log.append(&next, 4).unwrap();
    assert_eq!(appended.base_offset, Offset(expected_end));
    log.wait_durable(appended.last_offset).await.unwrap();
    log.close().await.unwrap();
    let reopened = PartitionLog::open(path.to_path_buf(), config)
        .await
        .unwrap();
    assert_eq!(reopened.log_end_offset(), appended.last_offset.next());
    let stored = read_all(&reopened, 1 << 20).await;
    assert!(same_batch(&stored[kept].1, &next));
    reopened.close().await.unwrap();
}

fn record_count(batch: &[u8]) -> i32 {
    i32::from_be_bytes(batch[57..61].try_into().unwrap())
}

fn small_batches() -> Vec<Vec<u8>> {
    (0..5u8)
        .map(|number| {
            encode_batch(
                &BatchSpec::records(1 + number as i32 % 3, 40 + number as usize * 9).fill(number),
            )
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Damage {
    /// The file ends at the cut.
    Truncate,
    /// Zeros from the cut to the end of the block (an O_DIRECT write that did not land).
    ZeroTail,
    /// One byte flipped at the cut, the length kept.
    Garble,
}

pub(crate) fn damage(pristine: &[u8], cut: usize, damage: Damage) -> Vec<u8> {
    match damage {
        Damage::Truncate => pristine[..cut].to_vec(),
        Damage::ZeroTail => {
            let mut bytes = pristine[..cut].to_vec();
            bytes.resize(align_up(pristine.len() as u64) as usize, 0);
            bytes
        }
        Damage::Garble => {
            let mut bytes = pristine.to_vec();
            bytes[cut] ^= 0xFF;
            bytes
        }
    }
}

#[test]
fn every_torn_tail_of_the_last_batch_is_cut_off() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let batches = small_batches();
        write_log(&path, &batches, config()).await;
        let log_path = log_file_path(&path, Offset(0));
        let index_path = index_file_path(&path, Offset(0));
        let pristine = std::fs::read(&log_path).unwrap();
        let pristine_index = std::fs::read(&index_path).unwrap();
        assert!(
            !pristine_index.is_empty(),
            "the test wants index entries to go stale"
        );
        let last_start = pristine.len() - batches[4].len();
        for cut in last_start..pristine.len() {
            for kind in [Damage::Truncate, Damage::ZeroTail, Damage::Garble] {
                std::fs::write(&log_path, damage(&pristine, cut, kind)).unwrap();
                std::fs::write(&index_path, &pristine_index).unwrap();
                // partitionLeaderEpoch (bytes 12..16) is not covered by the CRC: a
                // garbled epoch leaves an intact batch.
                let relative = cut - last_start;
                let survives = match kind {
                    Damage::Truncate => false,
                    // The batch may end with zeros already (an empty header count).
                    Damage::ZeroTail => pristine[cut..].iter().all(|byte| *byte == 0),
                    Damage::Garble => (12..16).contains(&relative),
                };
                check_recovered(&path, &batches, if survives { 5 } else { 4 }, config()).await;
            }
        }
    });
}

#[test]
fn missing_stale_and_padded_files_of_sealed_segments_are_repaired() {
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let config = LogConfig {
            segment_bytes: 600,
            index_interval_bytes: 100,
            ..LogConfig::default()
        };
        let batches: Vec<Vec<u8>> = (0..24u8)
            .map(|number| encode_batch(&BatchSpec::records(2, 30).fill(number)))
            .collect();
        write_log(&path, &batches, config).await;
        let mut bases: Vec<Offset> = std::fs::read_dir(&path)
            .unwrap()
            .filter_map(|entry| {
                crate::segment::parse_log_file_name(entry.unwrap().file_name().to_str().unwrap())
            })
            .collect();
        bases.sort();
        assert!(bases.len() >= 4);
        let indexes: Vec<Vec<u8>> = bases
            .iter()
            .map(|base| std::fs::read(index_file_path(&path, *base)).unwrap())
            .collect();
        assert!(indexes[0].len() >= 8);

        // Missing indexes are rebuilt as they were.
        for base in &bases {
            std::fs::remove_file(index_file_path(&path, *base)).unwrap();
        }
        check_recovered(&path, &batches, batches.len(), config).await;
        for (base, index) in bases.iter().zip(&indexes).take(bases.len() - 1) {
            assert_eq!(
                &std::fs::read(index_file_path(&path, *base)).unwrap(),
                index
            );
        }

        // Stale indexes pointing into the middle of batches are rebuilt too.
        for base in &bases {
            let garbage = crate::index::encode_entries(&[
                crate::index::IndexEntry {
                    relative_offset: 1,
                    position: 7,
                },
                crate::index::IndexEntry {
                    relative_offset: 3,
                    position: 90,
                },
            ]);
            std::fs::write(index_file_path(&path, *base), garbage).unwrap();
        }
        let batches_now = {
            let mut all = batches.clone();
            all.push(encode_batch(&BatchSpec::records(2, 33).fill(0xC3)));
            all
        };
        check_recovered(&path, &batches_now, batches_now.len(), config).await;
        assert_eq!(
            &std::fs::read(index_file_path(&path, bases[0])).unwrap(),
            &indexes[0]
        );

        // A sealed segment left padded by a crash right after a roll is trimmed.
        let sealed = log_file_path(&path, bases[1]);
        let size = std::fs::metadata(&sealed).unwrap().len();
        let mut padded = std::fs::read(&sealed).unwrap();
        padded.resize(align_up(size) as usize, 0);
        std::fs::write(&sealed, padded).unwrap();
        let log = PartitionLog::open(path.clone(), config).await.unwrap();
        assert_eq!(std::fs::metadata(&sealed).unwrap().len(), size);
        assert_eq!(read_all(&log, 1 << 20).await.len(), batches_now.len() + 1);
        log.close().await.unwrap();
    });
}

#[test]
fn missing_and_garbled_time_indexes_are_rebuilt_as_written() {
    use crate::segment::time_index_file_path;
    run(async {
        let dir = temp_dir();
        let path = dir.path().join("p");
        let config = LogConfig {
            segment_bytes: 600,
            index_interval_bytes: 100,
            ..LogConfig::default()
        };
        let batches: Vec<Vec<u8>> = (0..24i64)
            .map(|number| {
                let spec = BatchSpec::timestamped(&[1_000 + number * 10, 995 + number * 10], 30);
                encode_batch(&spec.fill(number as u8))
            })
            .collect();
        write_log(&path, &batches, config).await;
        let mut bases: Vec<Offset> = std::fs::read_dir(&path)
            .unwrap()
            .filter_map(|entry| {
                crate::segment::parse_log_file_name(entry.unwrap().file_name().to_str().unwrap())
            })
            .collect();
        bases.sort();
        assert!(bases.len() >= 4);
        let written: Vec<Vec<u8>> = bases
            .iter()
            .map(|base| std::fs::read(time_index_file_path(&path, *base)).unwrap())
            .collect();
        assert!(written[0].len() >= 24, "cadence entries and the roll entry");
        // As if written before time indexes existed: no files at all.
        for base in &bases {
            std::fs::remove_file(time_index_file_path(&path, *base)).unwrap();
        }
        let log = PartitionLog::open(path.clone(), config).await.unwrap();
        log.close().await.unwrap();
        for (base, original) in bases.iter().zip(&written).take(bases.len() - 1) {
            let rebuilt = std::fs::read(time_index_file_path(&path, *base)).unwrap();
            assert_eq!(&rebuilt, original, "segment {base}");
        }
        // Entries that point past the segment's end: the index is rebuilt, not trusted.
        let garbage = crate::time_index::encode_entries(&[crate::time_index::TimeIndexEntry {
            timestamp: i64::MAX - 1,
            relative_offset: 10_000,
        }]);
        std::fs::write(time_index_file_path(&path, bases[0]), garbage).unwrap();
        let log = PartitionLog::open(path.clone(), config).await.unwrap();
        let (offset, timestamp) = log.max_timestamp().await.unwrap().unwrap();
        assert_eq!(timestamp, 1_000 + 23 * 10);
        assert_eq!(offset, Offset(46));
        log.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Cut or garble the active segment anywhere: the log keeps exactly the batches
    /// before the damage.
    #[test]
    fn damage_anywhere_keeps_the_batches_before_it(
        sizes in proptest::collection::vec((1i32..4, 0usize..300), 1..7),
        cut_fraction in 0.0f64..1.0,
        garble in any::<bool>(),
    ) {
        let batches: Vec<Vec<u8>> = sizes.iter().enumerate()
            .map(|(number, (records, value_bytes))| encode_batch(&BatchSpec::records(*records, *value_bytes).fill(number as u8)))
            .collect();
        run(async move {
            let dir = temp_dir();
            let path = dir.path().join("p");
            write_log(&path, &batches, config()).await;
            let log_path = log_file_path(&path, Offset(0));
            let pristine = std::fs::read(&log_path).unwrap();
            let cut = ((pristine.len() as f64) * cut_fraction) as usize;
            let kind = if garble { Damage::Garble } else { Damage::Truncate };
            std::fs::write(&log_path, damage(&pristine, cut, kind)).unwrap();
            let mut start = 0;
            let mut kept = 0;
            for batch in &batches {
                let end = start + batch.len();
                let intact = match kind {
                    Damage::Garble => !(start..end).contains(&cut) || (12..16).contains(&(cut - start)),
                    _ => end <= cut,
                };
                if !intact {
                    break;
                }
                kept += 1;
                start = end;
            }
            check_recovered(&path, &batches, kept, config()).await;
        });
    }
}
