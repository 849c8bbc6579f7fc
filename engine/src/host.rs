//! What the broker takes from its host at start: the io-properties file that
//! `spate-tune iotune` writes, and warnings about host settings that hurt a broker.
//!
//! The broker does not link `spate-tune`; it reads the file's flat `[disk]` keys with its
//! own small struct, ignoring keys it does not know (the format promises that readers may).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// Name of the file looked for in the data directory when `--io-properties` is not given.
pub const IO_PROPERTIES_FILE: &str = "io-properties.toml";
/// Used when no io-properties file is found: BENCHMARKS.md's disks reach their bandwidth
/// with 1–8 MiB of writes in flight.
pub const DEFAULT_WRITE_IN_FLIGHT_BYTES: usize = 8 * 1024 * 1024;
const IN_FLIGHT_MIN_BYTES: usize = 1024 * 1024;
const IN_FLIGHT_MAX_BYTES: usize = 64 * 1024 * 1024;
/// glommio pins about 10 MiB per ring and runs three rings per shard.
const MEMLOCK_PER_SHARD_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Deserialize)]
struct IoPropertiesFile {
    version: u32,
    #[serde(default)]
    measured_at: String,
    disk: DiskSection,
}

#[derive(Deserialize)]
struct DiskSection {
    #[serde(default)]
    device: String,
    write_in_flight_bytes: u64,
    #[serde(default)]
    write_sync_bw_bytes_per_s: u64,
}

/// What the broker uses from an io-properties file.
#[derive(Clone, Debug)]
pub struct IoProperties {
    /// The file it came from.
    pub path: PathBuf,
    /// Bytes of O_DIRECT writes a partition's flush keeps in flight.
    pub write_in_flight_bytes_max: usize,
}

/// Loads `explicit` (an error if it cannot be read) or, when absent,
/// `<data_dir>/io-properties.toml` if it exists.
pub fn load_io_properties(
    explicit: Option<&Path>,
    data_dir: &Path,
) -> anyhow::Result<Option<IoProperties>> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let candidate = data_dir.join(IO_PROPERTIES_FILE);
            if !candidate.exists() {
                return Ok(None);
            }
            candidate
        }
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read io-properties file {} (written by `spate-tune iotune`)",
            path.display()
        )
    })?;
    let file: IoPropertiesFile = toml::from_str(&text)
        .with_context(|| format!("invalid io-properties file {}", path.display()))?;
    anyhow::ensure!(
        file.version == 1,
        "io-properties file {} has version {}; this broker reads version 1",
        path.display(),
        file.version
    );
    // The knee is where writes reach 90% of the best bandwidth; twice as much in flight gets
    // the rest without queueing everything at once.
    let knee = usize::try_from(file.disk.write_in_flight_bytes).unwrap_or(IN_FLIGHT_MAX_BYTES);
    let write_in_flight_bytes_max = knee
        .saturating_mul(2)
        .clamp(IN_FLIGHT_MIN_BYTES, IN_FLIGHT_MAX_BYTES);
    tracing::info!(
        file = %path.display(),
        measured_at = %file.measured_at,
        device = %file.disk.device,
        write_sync_mb_s = file.disk.write_sync_bw_bytes_per_s / 1_000_000,
        write_in_flight_bytes_max,
        "using io-properties"
    );
    Ok(Some(IoProperties {
        path,
        write_in_flight_bytes_max,
    }))
}

/// Logs a warning for each host setting that `spate-tune check` would flag and that hurts
/// this broker. Never fails: a host we cannot inspect is not a reason to refuse to serve.
pub fn warn_about_host(shard_count: usize, memlock_bytes: u64) {
    let wanted = MEMLOCK_PER_SHARD_BYTES * shard_count as u64;
    if memlock_bytes < wanted {
        tracing::warn!(
            memlock_kib = memlock_bytes / 1024,
            recommended_kib = wanted / 1024,
            "locked-memory limit is low: glommio may fall back to slower unregistered buffers; raise it with `ulimit -l unlimited` (see `spate-tune check`)"
        );
    }
    if let Ok(swaps) = std::fs::read_to_string("/proc/swaps") {
        if swaps.lines().skip(1).any(|line| !line.trim().is_empty()) {
            tracing::warn!("swap is on: a shard paged out stalls every partition it owns; turn it off with `swapoff -a` (see `spate-tune check`)");
        }
    }
}

/// Turns transparent huge pages off for this process, whatever the host's setting. Called
/// first thing in `main`, before the heap grows.
///
/// mimalloc (v3) asks for huge pages on all of its memory (`MADV_HUGEPAGE`), so each first
/// touch of a 2 MiB stretch of heap is one page fault that zeroes 2 MiB on the shard's
/// thread. With 1,000 producer connections the request buffers take a few hundred MB at
/// once, and those faults (about 6 ms per huge page on the reference VM, four times the cost
/// of the same 2 MiB in 4 KiB pages) kept the shard busy in the kernel for about a second
/// (BENCHMARKS.md, "Many producer connections"). Never fails: without the setting the
/// broker still serves, only with those stalls.
pub fn disable_transparent_huge_pages() {
    // SAFETY: prctl with integer arguments; it changes a flag of this process only.
    let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if result != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot turn transparent huge pages off for this process: first use of heap memory may stall a shard"
        );
    }
}

/// The hard limit on open descriptors (what the broker raises its soft limit to at start);
/// the descriptor budgets of partitions and connections are derived from it.
pub fn open_files_hard_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_max
}

/// The default `max.connections`: a quarter of the descriptor limit (a connection holds two
/// descriptors: its socket, and the duplicate its writer uses).
pub fn default_max_connections() -> usize {
    (open_files_hard_limit() / 4).max(64) as usize
}

/// The default `max.broker.partitions`: half the descriptor limit, since an open partition
/// holds at least one descriptor and connections need the other half.
pub fn default_max_broker_partitions() -> u64 {
    (open_files_hard_limit() / 2).max(1000)
}

/// (total, available to the broker) bytes of the file system holding `dir`: DescribeLogDirs
/// and `spate_disk_free_bytes`.
pub fn file_system_bytes(dir: &Path) -> std::io::Result<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `path` is a valid C string; `stats` is written by statvfs only.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fragment = stats.f_frsize as i64;
    Ok((
        stats.f_blocks as i64 * fragment,
        stats.f_bavail as i64 * fragment,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_knee_and_clamps_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IO_PROPERTIES_FILE);
        std::fs::write(
            &path,
            "version = 1\nmeasured_at = \"x\"\nfuture_key = 3\n[disk]\ndevice = \"vda\"\nwrite_in_flight_bytes = 2097152\nunknown = 1\n",
        )
        .unwrap();
        let found = load_io_properties(None, dir.path()).unwrap().unwrap();
        assert_eq!(found.write_in_flight_bytes_max, 4 * 1024 * 1024);
        std::fs::write(&path, "version = 1\n[disk]\nwrite_in_flight_bytes = 4096\n").unwrap();
        let tiny = load_io_properties(Some(&path), Path::new("/nonexistent"))
            .unwrap()
            .unwrap();
        assert_eq!(tiny.write_in_flight_bytes_max, IN_FLIGHT_MIN_BYTES);
    }

    #[test]
    fn absent_is_fine_unless_named_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_io_properties(None, dir.path()).unwrap().is_none());
        assert!(load_io_properties(Some(&dir.path().join("missing.toml")), dir.path()).is_err());
        let path = dir.path().join("v2.toml");
        std::fs::write(&path, "version = 2\n[disk]\nwrite_in_flight_bytes = 1\n").unwrap();
        assert!(load_io_properties(Some(&path), dir.path()).is_err());
    }
}
