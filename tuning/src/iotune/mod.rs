//! `iotune`: measures the data directory's disk and derives the io-properties.
//!
//! The plan is four sweeps over one O_DIRECT scratch file, all through one io_uring:
//! sequential writes at several block sizes and queue depths, write + fdatasync at
//! several block sizes, sequential reads, and 4 KiB random reads. A queue-depth sweep
//! stops early once bandwidth has stopped growing. The duration budget is split
//! evenly over the planned points; preallocating and filling the scratch file
//! happen between points and add a little wall time.

pub mod engine;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::TuneError;
use crate::host::{Host, System};
use crate::io_properties::{
    rfc3339_utc, DiskProperties, IoProperties, Measurement, FORMAT_VERSION,
};
use crate::tuners::disk;
use engine::{Point, PointResult, Runner, ScratchFile, Workload};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Block sizes of the sequential write sweep.
const WRITE_BLOCKS: [u64; 4] = [16 * KIB, 64 * KIB, 256 * KIB, MIB];
/// Block sizes of the write + fdatasync sweep.
const SYNC_BLOCKS: [u64; 4] = [64 * KIB, 256 * KIB, MIB, 4 * MIB];
/// Block sizes of the sequential read sweep.
const READ_BLOCKS: [u64; 2] = [64 * KIB, MIB];
/// Queue depths of the sequential sweeps.
const SEQUENTIAL_DEPTHS: [u32; 6] = [1, 2, 4, 8, 16, 32];
/// Queue depths of the random read sweep.
const RANDOM_DEPTHS: [u32; 7] = [1, 2, 4, 8, 16, 32, 64];
/// Fraction of the best bandwidth that counts as "reached" when looking for the knee.
const KNEE_FRACTION: f64 = 0.9;
/// A deeper queue must add this much bandwidth to count as growth.
const GROWTH_FRACTION: f64 = 1.05;

/// Shortest time one point may get.
const POINT_DURATION_MIN: Duration = Duration::from_millis(40);

/// Scratch file bounds: large enough that reads are not served from a cache behind
/// the device, small enough to leave most of the disk alone.
const REGION_MAX_BYTES: u64 = 4 * GIB;
const REGION_MIN_BYTES: u64 = 256 * MIB;
/// What reads need written before they start.
const READ_SPAN_BYTES: u64 = GIB;

/// What to measure.
#[derive(Debug, Clone)]
pub struct IotuneOptions {
    /// The data directory (must exist).
    pub dir: PathBuf,
    /// Total time to spend on I/O.
    pub duration: Duration,
    /// Print one line per point on stderr.
    pub progress: bool,
}

/// Runs every sweep and returns the derived properties. The scratch file is removed
/// whatever happens.
pub fn run(options: &IotuneOptions) -> Result<IoProperties, TuneError> {
    let started = Instant::now();
    let host = Host::new("/");
    let dir = std::fs::canonicalize(&options.dir).map_err(|error| {
        TuneError::measure(format!("open directory {}", options.dir.display()), error)
    })?;
    let region = region_bytes(host.system(), &dir)?;
    let mut file = ScratchFile::create(&dir, region)?;
    let mut runner = Runner::new()?;
    let planned = (WRITE_BLOCKS.len() + READ_BLOCKS.len()) * SEQUENTIAL_DEPTHS.len()
        + SYNC_BLOCKS.len()
        + RANDOM_DEPTHS.len();
    let per_point = (options.duration / planned as u32).max(POINT_DURATION_MIN);
    let mut sweeper = Sweeper {
        runner: &mut runner,
        file: &mut file,
        per_point,
        progress: options.progress,
        results: Vec::new(),
    };
    for block in WRITE_BLOCKS {
        sweeper.depth_sweep(Workload::Write, block, &SEQUENTIAL_DEPTHS)?;
    }
    for block in SYNC_BLOCKS {
        sweeper.measure(Point {
            workload: Workload::WriteSync,
            block_bytes: block,
            queue_depth: 1,
            duration: per_point,
        })?;
    }
    sweeper.fill_for_reads()?;
    for block in READ_BLOCKS {
        sweeper.depth_sweep(Workload::Read, block, &SEQUENTIAL_DEPTHS)?;
    }
    sweeper.depth_sweep(Workload::RandomRead, 4 * KIB, &RANDOM_DEPTHS)?;
    let results = sweeper.results;
    drop(file);
    let device = disk::locate(&host, &dir).ok();
    let disk = derive(
        &results,
        device
            .as_ref()
            .and_then(|device| device.block.as_ref())
            .map_or("unknown", |block| block.name.as_str()),
        device
            .as_ref()
            .map_or("unknown", |device| device.filesystem.as_str()),
    )?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    Ok(IoProperties {
        version: FORMAT_VERSION,
        measured_at: rfc3339_utc(now),
        dir: dir.display().to_string(),
        duration_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        disk,
        measurements: results.iter().map(measurement).collect(),
    })
}

/// Measures a single point in a fresh scratch file (used to compare with fio).
pub fn measure_point(dir: &Path, point: Point) -> Result<PointResult, TuneError> {
    let host = Host::new("/");
    let mut file = ScratchFile::create(dir, region_bytes(host.system(), dir)?)?;
    let mut runner = Runner::new()?;
    if matches!(point.workload, Workload::Read | Workload::RandomRead) {
        fill(&mut runner, &mut file, READ_SPAN_BYTES)?;
    }
    runner.run(&mut file, point)
}

fn region_bytes(system: &dyn System, dir: &Path) -> Result<u64, TuneError> {
    let space = system.disk_space(dir).ok_or_else(|| {
        TuneError::measure(
            format!("statvfs {}", dir.display()),
            std::io::Error::last_os_error(),
        )
    })?;
    let region = (space.available_bytes / 4).min(REGION_MAX_BYTES) / MIB * MIB;
    if region < REGION_MIN_BYTES {
        let error = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let context = format!(
            "{} has {} free; iotune needs 1 GiB",
            dir.display(),
            crate::tuners::format_bytes(space.available_bytes)
        );
        return Err(TuneError::measure(context, error));
    }
    Ok(region)
}

/// Writes sequentially (1 MiB, 8 deep, not measured) until `span` bytes can be read back.
fn fill(runner: &mut Runner, file: &mut ScratchFile, span: u64) -> Result<(), TuneError> {
    let target = span.min(file.region_bytes);
    while file.written_end < target {
        let point = Point {
            workload: Workload::Write,
            block_bytes: MIB,
            queue_depth: 8,
            duration: Duration::from_millis(100),
        };
        runner.run(file, point)?;
    }
    Ok(())
}

struct Sweeper<'a> {
    runner: &'a mut Runner,
    file: &'a mut ScratchFile,
    per_point: Duration,
    progress: bool,
    results: Vec<PointResult>,
}

impl Sweeper<'_> {
    /// Runs one point, first giving writes fresh preallocated space if they might run out.
    fn measure(&mut self, point: Point) -> Result<PointResult, TuneError> {
        if matches!(point.workload, Workload::Write | Workload::WriteSync) {
            let fastest = self
                .results
                .iter()
                .map(|result| result.bw_bytes_per_s)
                .fold(2.0 * GIB as f64, f64::max);
            let needed =
                (fastest * 1.5 * point.duration.as_secs_f64()) as u64 + point.block_bytes * 64;
            if self.file.fresh_bytes_left() < needed {
                self.file.reset()?;
            }
        }
        let result = self.runner.run(self.file, point)?;
        if self.progress {
            eprintln!("{}", describe(&result));
        }
        self.results.push(result.clone());
        Ok(result)
    }

    /// Deepens the queue until bandwidth has failed to grow twice in a row.
    fn depth_sweep(
        &mut self,
        workload: Workload,
        block_bytes: u64,
        depths: &[u32],
    ) -> Result<(), TuneError> {
        let mut best = 0.0_f64;
        let mut flat = 0;
        for &queue_depth in depths {
            let point = Point {
                workload,
                block_bytes,
                queue_depth,
                duration: self.per_point,
            };
            let bw = self.measure(point)?.bw_bytes_per_s;
            if bw >= best * GROWTH_FRACTION {
                flat = 0;
            } else {
                flat += 1;
            }
            best = best.max(bw);
            if flat == 2 {
                break;
            }
        }
        Ok(())
    }

    fn fill_for_reads(&mut self) -> Result<(), TuneError> {
        fill(self.runner, self.file, READ_SPAN_BYTES)
    }
}

/// `write 64 KiB QD4: 1620 MB/s, 24700 IOPS, p50 150 us, p99 420 us`.
pub fn describe(result: &PointResult) -> String {
    let point = result.point;
    let mut line = format!(
        "{} {} QD{}: {:.0} MB/s, {:.0} IOPS, p50 {} us, p99 {} us",
        point.workload.label(),
        crate::tuners::format_bytes(point.block_bytes),
        point.queue_depth,
        result.bw_bytes_per_s / 1e6,
        result.iops,
        result.latency_p50_us,
        result.latency_p99_us
    );
    if point.workload == Workload::WriteSync {
        line.push_str(&format!(
            ", fdatasync p50 {} us, p99 {} us",
            result.sync_p50_us, result.sync_p99_us
        ));
    }
    line
}

fn measurement(result: &PointResult) -> Measurement {
    Measurement {
        workload: result.point.workload.label().to_string(),
        block_bytes: result.point.block_bytes,
        queue_depth: result.point.queue_depth,
        bw_bytes_per_s: result.bw_bytes_per_s as u64,
        iops: result.iops as u64,
        latency_p50_us: result.latency_p50_us,
        latency_p99_us: result.latency_p99_us,
    }
}

/// The point with the fewest bytes in flight that reaches 90% of the best
/// bandwidth of `workload`: where bandwidth stops growing and latency starts to
/// climb. Ties go to fewer, larger operations (less CPU per byte), then to the
/// lower median latency.
pub fn knee(results: &[PointResult], workload: Workload) -> Option<&PointResult> {
    let of_kind: Vec<&PointResult> = results
        .iter()
        .filter(|result| result.point.workload == workload)
        .collect();
    let best = of_kind
        .iter()
        .map(|result| result.bw_bytes_per_s)
        .fold(0.0, f64::max);
    of_kind
        .into_iter()
        .filter(|result| {
            result.bw_bytes_per_s >= KNEE_FRACTION * best && result.bw_bytes_per_s > 0.0
        })
        .min_by_key(|result| {
            let in_flight = result.point.block_bytes * u64::from(result.point.queue_depth);
            (in_flight, result.point.queue_depth, result.latency_p50_us)
        })
}

fn best_of(results: &[PointResult], workload: Workload) -> Option<&PointResult> {
    results
        .iter()
        .filter(|result| result.point.workload == workload)
        .max_by(|left, right| left.bw_bytes_per_s.total_cmp(&right.bw_bytes_per_s))
}

/// Turns the measured points into the `[disk]` table.
pub fn derive(
    results: &[PointResult],
    device: &str,
    filesystem: &str,
) -> Result<DiskProperties, TuneError> {
    let missing = |what: &str| TuneError::Usage(format!("iotune measured no {what} point"));
    let write = knee(results, Workload::Write).ok_or_else(|| missing("write"))?;
    let write_best = best_of(results, Workload::Write).ok_or_else(|| missing("write"))?;
    let sync = best_of(results, Workload::WriteSync).ok_or_else(|| missing("write_sync"))?;
    let read = knee(results, Workload::Read).ok_or_else(|| missing("read"))?;
    let read_best = best_of(results, Workload::Read).ok_or_else(|| missing("read"))?;
    let random = knee(results, Workload::RandomRead).ok_or_else(|| missing("random_read"))?;
    let random_best =
        best_of(results, Workload::RandomRead).ok_or_else(|| missing("random_read"))?;
    let random_qd1 = results
        .iter()
        .find(|result| {
            result.point.workload == Workload::RandomRead && result.point.queue_depth == 1
        })
        .unwrap_or(random);
    Ok(DiskProperties {
        device: device.to_string(),
        filesystem: filesystem.to_string(),
        write_bw_bytes_per_s: write_best.bw_bytes_per_s as u64,
        best_write_block_bytes: write.point.block_bytes,
        best_write_queue_depth: write.point.queue_depth,
        write_in_flight_bytes: write.point.block_bytes * u64::from(write.point.queue_depth),
        write_latency_p50_us: write.latency_p50_us,
        write_latency_p99_us: write.latency_p99_us,
        write_sync_bw_bytes_per_s: sync.bw_bytes_per_s as u64,
        write_sync_block_bytes: sync.point.block_bytes,
        fdatasync_latency_p50_us: sync.sync_p50_us,
        fdatasync_latency_p99_us: sync.sync_p99_us,
        read_bw_bytes_per_s: read_best.bw_bytes_per_s as u64,
        best_read_block_bytes: read.point.block_bytes,
        best_read_queue_depth: read.point.queue_depth,
        read_latency_p50_us: read.latency_p50_us,
        random_read_iops: random_best.iops as u64,
        random_read_queue_depth: random.point.queue_depth,
        random_read_latency_p50_us: random_qd1.latency_p50_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(
        workload: Workload,
        block_bytes: u64,
        queue_depth: u32,
        bw_mb: f64,
        p50: u64,
    ) -> PointResult {
        PointResult {
            point: Point {
                workload,
                block_bytes,
                queue_depth,
                duration: Duration::from_millis(100),
            },
            bw_bytes_per_s: bw_mb * 1e6,
            iops: bw_mb * 1e6 / block_bytes as f64,
            latency_p50_us: p50,
            latency_p99_us: p50 * 3,
            sync_p50_us: 150,
            sync_p99_us: 900,
        }
    }

    fn sample() -> Vec<PointResult> {
        vec![
            result(Workload::Write, 64 * KIB, 1, 500.0, 120),
            result(Workload::Write, 64 * KIB, 2, 900.0, 130),
            result(Workload::Write, 64 * KIB, 4, 1500.0, 160),
            result(Workload::Write, 64 * KIB, 8, 1850.0, 270),
            result(Workload::Write, 64 * KIB, 16, 1900.0, 540),
            result(Workload::Write, MIB, 1, 1700.0, 600),
            result(Workload::Write, MIB, 2, 1880.0, 1100),
            result(Workload::WriteSync, 64 * KIB, 1, 210.0, 120),
            result(Workload::WriteSync, MIB, 1, 1200.0, 600),
            result(Workload::Read, MIB, 1, 1800.0, 550),
            result(Workload::Read, MIB, 2, 1950.0, 1000),
            result(Workload::RandomRead, 4 * KIB, 1, 40.0, 90),
            result(Workload::RandomRead, 4 * KIB, 8, 300.0, 100),
            result(Workload::RandomRead, 4 * KIB, 16, 310.0, 200),
        ]
    }

    #[test]
    fn the_knee_is_the_least_in_flight_that_reaches_ninety_percent() {
        let results = sample();
        let write = knee(&results, Workload::Write).unwrap();
        // 64 KiB × 8 = 512 KiB reaches 1850 >= 0.9 × 1900; 1 MiB × 1 does not quite (1700 < 1710).
        assert_eq!(
            (write.point.block_bytes, write.point.queue_depth),
            (64 * KIB, 8)
        );
        assert!(knee(&results[..0], Workload::Write).is_none());
    }

    #[test]
    fn derives_the_disk_table() {
        let disk = derive(&sample(), "vda", "ext4").unwrap();
        assert_eq!(disk.write_bw_bytes_per_s, 1_900_000_000);
        assert_eq!(disk.write_in_flight_bytes, 512 * KIB);
        assert_eq!(disk.write_sync_block_bytes, MIB);
        assert_eq!(disk.fdatasync_latency_p50_us, 150);
        assert_eq!(
            (disk.best_read_block_bytes, disk.best_read_queue_depth),
            (MIB, 1)
        );
        assert_eq!(disk.random_read_queue_depth, 8);
        assert_eq!(disk.random_read_latency_p50_us, 90);
        assert_eq!(disk.random_read_iops, (310.0e6 / 4096.0) as u64);
        assert!(derive(&sample()[..5], "vda", "ext4").is_err());
    }
}
