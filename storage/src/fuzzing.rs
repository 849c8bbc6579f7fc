//! Entry points for fuzzing the code that parses bytes from the network or the disk: record
//! batch validation, index loading, and the recovery scan of a segment. Each takes arbitrary
//! bytes, must never panic on them (only on a broken invariant, which is a bug), and checks
//! what it can about the result.
//!
//! Used by the cargo-fuzz targets in `storage/fuzz/` (nightly) and, on stable, by
//! `storage/tests/fuzz_corpus.rs`, which replays the committed corpus and proptest-generated
//! inputs through the same functions. Not part of the storage API.

use crate::batch::{self, HEADER_BYTES};
use crate::index::{OffsetIndex, INDEX_ENTRY_BYTES};
use crate::time_index::{TimeIndex, TIME_INDEX_ENTRY_BYTES};
use crate::{LogConfig, Offset, PartitionLog};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Validates `bytes` as a producer's batch and parses them as stored bytes; a batch the
/// validator accepts must parse, once the broker assigned it an offset, as one stored batch of
/// the same size.
pub fn batch_validate(bytes: &[u8]) {
    let validated = batch::validate_client_batch(bytes, u32::MAX);
    let stored = batch::parse_stored_batch(bytes);
    if let Ok(info) = validated {
        // Producers may send any baseOffset; the broker overwrites it (stored offsets are >= 0).
        let mut assigned = bytes.to_vec();
        assigned[batch::BASE_OFFSET_BYTES].fill(0);
        let Some(stored) = batch::parse_stored_batch(&assigned) else {
            panic!("a valid client batch must parse as a stored batch");
        };
        assert_eq!(stored.batch_bytes, bytes.len());
        assert_eq!(stored.record_count, info.record_count);
        assert!(info.batch_bytes >= HEADER_BYTES);
    }
    if let Some(stored) = stored {
        assert!(stored.batch_bytes >= HEADER_BYTES && stored.batch_bytes <= bytes.len());
    }
}

/// Loads `bytes` as an offset index and as a time index, bounded by a segment size and an
/// offset span taken from the first bytes, and checks the invariants lookups rely on.
pub fn index_load(bytes: &[u8]) {
    let bound = bytes.first().map_or(u64::MAX, |byte| 1u64 << (*byte % 64));
    let offsets = OffsetIndex::decode(bytes, bound);
    assert!(offsets.len() * INDEX_ENTRY_BYTES <= bytes.len());
    for pair in offsets.entries().windows(2) {
        assert!(pair[0].relative_offset < pair[1].relative_offset);
        assert!(pair[0].position < pair[1].position);
    }
    assert!(offsets
        .entries()
        .iter()
        .all(|entry| (entry.position as u64) < bound));
    let mut previous = 0;
    for probe in [0, 1, 7, 1 << 10, 1 << 20, u32::MAX] {
        let position = offsets.floor_position(probe);
        assert!(position >= previous, "floor lookups are monotonic");
        previous = position;
    }
    let times = TimeIndex::decode(bytes, bound);
    assert!(times.len() * TIME_INDEX_ENTRY_BYTES <= bytes.len());
    for pair in times.entries().windows(2) {
        assert!(pair[0].timestamp < pair[1].timestamp);
        assert!(pair[0].relative_offset < pair[1].relative_offset);
    }
    let mut previous = None;
    for probe in [i64::MIN, -1, 0, 1 << 20, 1 << 40, i64::MAX] {
        let offset = times.floor_offset(probe);
        assert!(offset >= previous, "floor lookups are monotonic");
        previous = offset;
    }
}

/// Writes `bytes` as the only segment of a fresh log (the first byte, if any, picks how much
/// of the rest is an `.index` file), opens the log (recovery), and checks that everything
/// below the recovered end reads back as contiguous intact batches, that an append follows,
/// and that a second open agrees. Runs a glommio executor on the calling thread; needs a
/// temporary directory on a real disk (O_DIRECT), taken from `SPATE_FUZZ_DIR` or the system's.
pub fn recovery_scan(bytes: &[u8]) {
    let dir = scratch_dir();
    let outcome = std::panic::catch_unwind(|| recovery_scan_in(&dir, bytes));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn recovery_scan_in(dir: &Path, bytes: &[u8]) {
    let (index_bytes, log_bytes) = match bytes.split_first() {
        Some((split, rest)) => rest.split_at((*split as usize * 8).min(rest.len())),
        None => (&[][..], &[][..]),
    };
    let log_dir = dir.join("fuzz-0");
    if std::fs::create_dir_all(&log_dir).is_err() {
        return;
    }
    let written = std::fs::write(log_dir.join("00000000000000000000.log"), log_bytes)
        .and_then(|()| std::fs::write(log_dir.join("00000000000000000000.index"), index_bytes));
    if written.is_err() {
        return;
    }
    run_executor(async move {
        let config = LogConfig {
            index_interval_bytes: 64,
            ..LogConfig::default()
        };
        let Ok(log) = PartitionLog::open(log_dir.clone(), config).await else {
            return;
        };
        let end = log.log_end_offset();
        assert_eq!(log.durable_end_offset(), end);
        let mut next = log.log_start_offset();
        while next < end {
            let Ok(fetched) = log.read(next, 1 << 16, Offset::MAX).await else {
                panic!("a recovered log reads back below its end");
            };
            let mut rest = &fetched[..];
            assert!(!rest.is_empty());
            while let Some(info) = batch::parse_stored_batch(rest) {
                assert_eq!(info.base_offset, next.0, "recovered batches are contiguous");
                next = Offset(info.last_offset() + 1);
                rest = &rest[info.batch_bytes..];
            }
            assert!(rest.is_empty(), "reads return whole intact batches");
        }
        let _ = log.offset_for_timestamp(0).await;
        let _ = log.max_timestamp().await;
        let _ = log.close().await;
        if let Ok(again) = PartitionLog::open(log_dir, config).await {
            assert_eq!(again.log_end_offset(), end, "recovery is idempotent");
            let _ = again.close().await;
        }
    });
}

fn scratch_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let parent = std::env::var_os("SPATE_FUZZ_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    parent.join(format!(
        "spate-fuzz-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

fn run_executor<F: std::future::Future<Output = ()> + 'static>(future: F) {
    // glommio needs locked memory for its rings; the soft limit goes up to the hard one.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or fill the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit);
        }
    }
    match glommio::LocalExecutorBuilder::default().make() {
        Ok(executor) => executor.run(future),
        Err(error) => panic!("cannot start a glommio executor for fuzzing: {error}"),
    }
}
