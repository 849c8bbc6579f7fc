//! The `io-properties` file: what `iotune` measured, for `spate serve --io-properties`.
//!
//! A flat TOML document: a few top-level keys saying when and where it was
//! measured, a `[disk]` table of derived figures the broker sizes its writes
//! and in-flight I/O from, and an optional list of raw `[[measurement]]`
//! points for people. Readers ignore keys they do not know. tuning/README.md
//! describes every key without reference to Rust.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TuneError;

/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoProperties {
    /// Format version; 1.
    pub version: u32,
    /// When the measurement finished, RFC 3339 UTC (`2026-05-01T12:00:00Z`).
    pub measured_at: String,
    /// The directory measured (the broker's data directory).
    pub dir: String,
    /// Seconds of I/O the measurement took.
    pub duration_s: f64,
    /// The derived figures.
    pub disk: DiskProperties,
    /// Every point measured, for people; the broker does not need it.
    #[serde(default, rename = "measurement", skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

/// What the broker sizes its I/O from. Bandwidths in bytes per second,
/// latencies in microseconds, sizes in bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskProperties {
    /// Block device name (`vda`, `nvme0n1`), or `unknown`.
    pub device: String,
    /// Filesystem type of the directory.
    pub filesystem: String,
    /// Highest O_DIRECT sequential write bandwidth seen.
    pub write_bw_bytes_per_s: u64,
    /// The smallest write size that reaches ~90% of that bandwidth at `best_write_queue_depth`.
    pub best_write_block_bytes: u64,
    /// The queue depth where write bandwidth stops growing (the knee).
    pub best_write_queue_depth: u32,
    /// `best_write_block_bytes × best_write_queue_depth`: bytes to keep in flight.
    pub write_in_flight_bytes: u64,
    /// Median latency of one write at the best block size and depth.
    pub write_latency_p50_us: u64,
    /// 99th percentile of the same.
    pub write_latency_p99_us: u64,
    /// Bandwidth of write + fdatasync, one at a time, at the best synced block size.
    pub write_sync_bw_bytes_per_s: u64,
    /// The block size that gave `write_sync_bw_bytes_per_s`.
    pub write_sync_block_bytes: u64,
    /// Median fdatasync latency after a write of `write_sync_block_bytes`.
    pub fdatasync_latency_p50_us: u64,
    /// 99th percentile of the same.
    pub fdatasync_latency_p99_us: u64,
    /// Highest O_DIRECT sequential read bandwidth seen.
    pub read_bw_bytes_per_s: u64,
    /// Read size at the knee, as for writes.
    pub best_read_block_bytes: u64,
    /// Read queue depth at the knee.
    pub best_read_queue_depth: u32,
    /// Median latency of one read there.
    pub read_latency_p50_us: u64,
    /// Highest 4 KiB random read rate seen, operations per second.
    pub random_read_iops: u64,
    /// Queue depth where random reads stop scaling.
    pub random_read_queue_depth: u32,
    /// Median latency of a 4 KiB random read at queue depth 1: the device's service time.
    pub random_read_latency_p50_us: u64,
}

/// One measured point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// `write`, `write_sync`, `read` or `random_read`.
    pub workload: String,
    /// Bytes per operation.
    pub block_bytes: u64,
    /// Operations kept in flight.
    pub queue_depth: u32,
    /// Bytes per second.
    pub bw_bytes_per_s: u64,
    /// Operations per second.
    pub iops: u64,
    /// Median operation latency (for `write_sync`: the write alone).
    pub latency_p50_us: u64,
    /// 99th percentile operation latency.
    pub latency_p99_us: u64,
}

impl IoProperties {
    /// The TOML text, with a comment header naming the tool and the reader.
    pub fn to_toml(&self) -> Result<String, TuneError> {
        let body = toml::to_string(self).map_err(|error| TuneError::IoProperties {
            path: "<memory>".into(),
            reason: error.to_string(),
        })?;
        Ok(format!(
            "# Disk properties measured by `spate-tune iotune`; read by `spate serve --io-properties`.\n\
             # Keys are described in tuning/README.md. Bandwidths in bytes/s, latencies in us.\n{body}"
        ))
    }

    /// Writes the file (whole, then renamed into place).
    pub fn write(&self, path: &Path) -> Result<(), TuneError> {
        let fail = |reason: String| TuneError::IoProperties {
            path: path.to_path_buf(),
            reason,
        };
        let text = self.to_toml()?;
        let temporary = path.with_extension("toml.tmp");
        std::fs::write(&temporary, text).map_err(|error| fail(format!("cannot write: {error}")))?;
        std::fs::rename(&temporary, path)
            .map_err(|error| fail(format!("cannot rename into place: {error}")))
    }

    /// Reads and checks a file.
    pub fn read(path: &Path) -> Result<IoProperties, TuneError> {
        let text = std::fs::read_to_string(path).map_err(|error| TuneError::IoProperties {
            path: path.to_path_buf(),
            reason: format!("cannot read: {error}"),
        })?;
        parse(&text).map_err(|error| match error {
            TuneError::IoProperties { reason, .. } => TuneError::IoProperties {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })
    }
}

/// Parses and checks io-properties text.
pub fn parse(text: &str) -> Result<IoProperties, TuneError> {
    let fail = |reason: String| TuneError::IoProperties {
        path: "<text>".into(),
        reason,
    };
    let properties: IoProperties = toml::from_str(text).map_err(|error| fail(error.to_string()))?;
    if properties.version != FORMAT_VERSION {
        return Err(fail(format!(
            "version {} (this reader knows {FORMAT_VERSION})",
            properties.version
        )));
    }
    let disk = &properties.disk;
    let positive = [
        ("write_bw_bytes_per_s", disk.write_bw_bytes_per_s),
        ("best_write_block_bytes", disk.best_write_block_bytes),
        (
            "best_write_queue_depth",
            u64::from(disk.best_write_queue_depth),
        ),
        ("write_sync_bw_bytes_per_s", disk.write_sync_bw_bytes_per_s),
        ("read_bw_bytes_per_s", disk.read_bw_bytes_per_s),
        ("random_read_iops", disk.random_read_iops),
    ];
    if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
        return Err(fail(format!("disk.{key} must be positive")));
    }
    if !disk.best_write_block_bytes.is_multiple_of(4096) {
        return Err(fail(
            "disk.best_write_block_bytes must be a multiple of 4096".into(),
        ));
    }
    Ok(properties)
}

/// Seconds since the Unix epoch as RFC 3339 UTC. Written by hand because it
/// is a dozen lines and the only date the crate ever formats.
pub fn rfc3339_utc(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let second_of_day = unix_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> IoProperties {
        IoProperties {
            version: 1,
            measured_at: rfc3339_utc(1_777_636_800),
            dir: "/data/spate".into(),
            duration_s: 30.1,
            disk: DiskProperties {
                device: "vda".into(),
                filesystem: "ext4".into(),
                write_bw_bytes_per_s: 1_900_000_000,
                best_write_block_bytes: 262_144,
                best_write_queue_depth: 4,
                write_in_flight_bytes: 1_048_576,
                write_latency_p50_us: 540,
                write_latency_p99_us: 1200,
                write_sync_bw_bytes_per_s: 1_200_000_000,
                write_sync_block_bytes: 4_194_304,
                fdatasync_latency_p50_us: 160,
                fdatasync_latency_p99_us: 900,
                read_bw_bytes_per_s: 1_950_000_000,
                best_read_block_bytes: 1_048_576,
                best_read_queue_depth: 2,
                read_latency_p50_us: 1000,
                random_read_iops: 90_000,
                random_read_queue_depth: 16,
                random_read_latency_p50_us: 80,
            },
            measurements: vec![Measurement {
                workload: "write".into(),
                block_bytes: 65536,
                queue_depth: 1,
                bw_bytes_per_s: 500_000_000,
                iops: 7600,
                latency_p50_us: 120,
                latency_p99_us: 300,
            }],
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let properties = sample();
        let text = properties.to_toml().unwrap();
        assert!(text.contains("[disk]\ndevice = \"vda\""), "{text}");
        assert!(text.contains("[[measurement]]"));
        assert_eq!(parse(&text).unwrap(), properties);
    }

    #[test]
    fn a_minimal_file_without_measurements_parses_and_bad_ones_do_not() {
        let mut properties = sample();
        properties.measurements.clear();
        let text = properties.to_toml().unwrap();
        assert!(!text.contains("measurement"));
        assert!(parse(&text).is_ok());
        assert!(parse(&text.replace("version = 1", "version = 2")).is_err());
        assert!(parse(&text.replace("random_read_iops = 90000", "random_read_iops = 0")).is_err());
        assert!(parse("version = 1").is_err());
    }

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_777_636_800 + 3661), "2026-05-01T13:01:01Z");
    }
}
