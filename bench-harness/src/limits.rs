//! `spate-bench limits --dir PATH`: what the machine allows, measured in the same run as the
//! broker so every figure can be read as a ratio. O_DIRECT sequential write of 1 MiB blocks
//! (with several in flight), 1 MiB write + fdatasync each, sequential O_DIRECT read, all
//! through io_uring on the data directory's disk, and loopback TCP bandwidth.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use io_uring::{opcode, types, IoUring};
use serde::{Deserialize, Serialize};

use crate::report::{new_latency_histogram, HostFacts};

/// Block size of every disk and TCP operation.
const BLOCK_BYTES: usize = 1 << 20;
/// O_DIRECT buffers are aligned to the 4 KiB physical block.
const ALIGN_BYTES: usize = 4096;
const _: () = assert!(BLOCK_BYTES.is_multiple_of(ALIGN_BYTES));

/// Flags of `spate-bench limits`.
#[derive(clap::Args, Clone, Debug)]
pub struct LimitsArgs {
    /// A directory on the disk under test (the broker's data directory's disk; not tmpfs).
    #[arg(long)]
    pub dir: PathBuf,
    /// MiB written and read by each disk measurement.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: usize,
    /// 1 MiB operations in flight for the sequential write and read.
    #[arg(long, default_value_t = 4)]
    pub queue_depth: usize,
    /// Seconds of loopback TCP.
    #[arg(long, default_value_t = 3.0)]
    pub tcp_seconds: f64,
    /// Measure each figure this many times and report the median.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Write the JSON result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The machine's limits, in 10^6 bytes per second.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    /// O_DIRECT sequential write, 1 MiB blocks, `queue_depth` in flight.
    pub direct_write_mb_s: f64,
    /// O_DIRECT 1 MiB write followed by fdatasync, one at a time.
    pub direct_write_fdatasync_mb_s: f64,
    /// Median fdatasync latency in that test.
    pub fdatasync_p50_us: u64,
    /// 99th percentile fdatasync latency in that test.
    pub fdatasync_p99_us: u64,
    /// O_DIRECT sequential read, 1 MiB blocks, `queue_depth` in flight.
    pub direct_read_mb_s: f64,
    /// One loopback TCP stream, 1 MiB writes.
    pub tcp_loopback_mb_s: f64,
    /// Where the disk figures were measured.
    pub dir: String,
    /// Bytes written or read by each disk measurement.
    pub size_bytes: u64,
    /// Operations in flight for the sequential tests.
    pub queue_depth: usize,
    /// Repetitions whose median is reported.
    pub repeat: usize,
    /// The host.
    pub host: HostFacts,
}

/// Measures, prints and (with `--json`) writes the limits.
pub fn run(args: &LimitsArgs) -> anyhow::Result<Limits> {
    let limits = measure(args)?;
    println!(
        "machine limits ({}), median of {}:",
        limits.dir, limits.repeat
    );
    println!(
        "  O_DIRECT write 1 MiB, QD{}:       {:8.1} MB/s",
        limits.queue_depth, limits.direct_write_mb_s
    );
    println!(
        "  O_DIRECT write 1 MiB + fdatasync: {:8.1} MB/s (fdatasync p50 {} us, p99 {} us)",
        limits.direct_write_fdatasync_mb_s, limits.fdatasync_p50_us, limits.fdatasync_p99_us
    );
    println!(
        "  O_DIRECT read 1 MiB, QD{}:        {:8.1} MB/s",
        limits.queue_depth, limits.direct_read_mb_s
    );
    println!(
        "  TCP loopback, one stream:         {:8.1} MB/s",
        limits.tcp_loopback_mb_s
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&limits)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(limits)
}

/// Measures without printing.
pub fn measure(args: &LimitsArgs) -> anyhow::Result<Limits> {
    if args.queue_depth == 0 || args.size_mib == 0 || args.repeat == 0 {
        bail!("--queue-depth, --size-mib and --repeat must be at least 1");
    }
    let path = args
        .dir
        .join(format!(".spate-bench-limits-{}", std::process::id()));
    let size_bytes = (args.size_mib * BLOCK_BYTES) as u64;
    let outcome = (|| {
        let mut write = Vec::new();
        let mut synced = Vec::new();
        let mut sync_p50 = Vec::new();
        let mut sync_p99 = Vec::new();
        let mut read = Vec::new();
        let mut tcp = Vec::new();
        for _ in 0..args.repeat {
            write.push(sequential(
                &path,
                size_bytes,
                args.queue_depth,
                Direction::Write,
            )?);
            read.push(sequential(
                &path,
                size_bytes,
                args.queue_depth,
                Direction::Read,
            )?);
            let sync = write_fdatasync(&path, size_bytes.min(512 << 20))?;
            synced.push(sync.0);
            sync_p50.push(sync.1 as f64);
            sync_p99.push(sync.2 as f64);
            tcp.push(tcp_loopback(Duration::from_secs_f64(args.tcp_seconds))?);
        }
        Ok(Limits {
            direct_write_mb_s: median(&mut write),
            direct_write_fdatasync_mb_s: median(&mut synced),
            fdatasync_p50_us: median(&mut sync_p50) as u64,
            fdatasync_p99_us: median(&mut sync_p99) as u64,
            direct_read_mb_s: median(&mut read),
            tcp_loopback_mb_s: median(&mut tcp),
            dir: args.dir.display().to_string(),
            size_bytes,
            queue_depth: args.queue_depth,
            repeat: args.repeat,
            host: HostFacts::probe(),
        })
    })();
    let _ = std::fs::remove_file(&path);
    outcome
}

/// The median of `values` (the upper one of an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// A 4 KiB-aligned, zero-initialised heap buffer for O_DIRECT.
struct AlignedBuffer {
    pointer: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuffer {
    fn new(bytes: usize, fill: u8) -> anyhow::Result<AlignedBuffer> {
        let layout = std::alloc::Layout::from_size_align(bytes, ALIGN_BYTES)?;
        // SAFETY: the layout has a non-zero size.
        let pointer = unsafe { std::alloc::alloc_zeroed(layout) };
        if pointer.is_null() {
            bail!("cannot allocate {bytes} aligned bytes");
        }
        // SAFETY: `pointer` is valid for `bytes` writes.
        unsafe { std::ptr::write_bytes(pointer, fill, bytes) };
        Ok(AlignedBuffer { pointer, layout })
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.pointer, self.layout) };
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Write,
    Read,
}

fn open_direct(path: &Path, direction: Direction) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.custom_flags(libc::O_DIRECT);
    match direction {
        Direction::Write => options.write(true).create(true).truncate(true),
        Direction::Read => options.read(true),
    };
    options.open(path).with_context(|| {
        format!(
            "cannot open {} with O_DIRECT (tmpfs does not support it)",
            path.display()
        )
    })
}

/// Allocates the file's blocks up front, as fio and a segment appender do.
fn preallocate(file: &std::fs::File, size_bytes: u64) -> anyhow::Result<()> {
    // SAFETY: fallocate on an open descriptor.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size_bytes as i64) } != 0 {
        bail!("fallocate: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sequential 1 MiB operations over `size_bytes`, `queue_depth` in flight; MB/s.
fn sequential(
    path: &Path,
    size_bytes: u64,
    queue_depth: usize,
    direction: Direction,
) -> anyhow::Result<f64> {
    let file = open_direct(path, direction)?;
    let fd = types::Fd(file.as_raw_fd());
    if direction == Direction::Write {
        preallocate(&file, size_bytes)?;
    }
    let buffers = (0..queue_depth)
        .map(|_| AlignedBuffer::new(BLOCK_BYTES, 0x5a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut ring = IoUring::new(queue_depth.next_power_of_two() as u32)?;
    let mut free: Vec<usize> = (0..queue_depth).collect();
    let mut next_offset = 0u64;
    let mut in_flight = 0usize;
    let started = Instant::now();
    while next_offset < size_bytes || in_flight > 0 {
        while next_offset < size_bytes && !free.is_empty() {
            let slot = free.pop().expect("checked non-empty");
            let buffer = buffers[slot].pointer;
            let entry = match direction {
                Direction::Write => opcode::Write::new(fd, buffer, BLOCK_BYTES as u32)
                    .offset(next_offset)
                    .build(),
                Direction::Read => opcode::Read::new(fd, buffer, BLOCK_BYTES as u32)
                    .offset(next_offset)
                    .build(),
            };
            // SAFETY: the buffer outlives the operation (it is freed only after the ring
            // drains), and the ring has room for `queue_depth` entries.
            unsafe { ring.submission().push(&entry.user_data(slot as u64)) }
                .map_err(|_| anyhow::anyhow!("submission queue full"))?;
            next_offset += BLOCK_BYTES as u64;
            in_flight += 1;
        }
        ring.submit_and_wait(1)?;
        for completion in ring.completion() {
            if completion.result() != BLOCK_BYTES as i32 {
                bail!(
                    "short or failed O_DIRECT operation: {}",
                    completion.result()
                );
            }
            free.push(completion.user_data() as usize);
            in_flight -= 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(size_bytes as f64 / seconds / 1e6)
}

/// 1 MiB O_DIRECT writes, each followed by fdatasync; (MB/s, fdatasync p50 us, p99 us).
fn write_fdatasync(path: &Path, size_bytes: u64) -> anyhow::Result<(f64, u64, u64)> {
    let file = open_direct(path, Direction::Write)?;
    let fd = types::Fd(file.as_raw_fd());
    preallocate(&file, size_bytes)?;
    let buffer = AlignedBuffer::new(BLOCK_BYTES, 0xa5)?;
    let mut ring = IoUring::new(4)?;
    let mut sync_latency = new_latency_histogram();
    let started = Instant::now();
    let mut offset = 0u64;
    while offset < size_bytes {
        let write = opcode::Write::new(fd, buffer.pointer, BLOCK_BYTES as u32)
            .offset(offset)
            .build();
        complete_one(&mut ring, &write, BLOCK_BYTES as i32)?;
        let sync_started = Instant::now();
        let sync = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        complete_one(&mut ring, &sync, 0)?;
        sync_latency.saturating_record(sync_started.elapsed().as_micros().max(1) as u64);
        offset += BLOCK_BYTES as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((
        size_bytes as f64 / seconds / 1e6,
        sync_latency.value_at_quantile(0.5),
        sync_latency.value_at_quantile(0.99),
    ))
}

fn complete_one(
    ring: &mut IoUring,
    entry: &io_uring::squeue::Entry,
    expected: i32,
) -> anyhow::Result<()> {
    // SAFETY: the caller's buffers outlive this call, which waits for the completion.
    unsafe { ring.submission().push(entry) }
        .map_err(|_| anyhow::anyhow!("submission queue full"))?;
    ring.submit_and_wait(1)?;
    let completion = ring
        .completion()
        .next()
        .context("io_uring returned no completion")?;
    if completion.result() != expected {
        bail!(
            "io_uring operation returned {} (expected {expected})",
            completion.result()
        );
    }
    Ok(())
}

/// One loopback TCP stream: a sender thread writing 1 MiB blocks for `duration` and a
/// receiver discarding them; MB/s received.
pub fn tcp_loopback(duration: Duration) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> anyhow::Result<(u64, Instant)> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0u8; BLOCK_BYTES];
        let mut received = 0u64;
        loop {
            let read = stream.read(&mut buffer)?;
            if read == 0 {
                return Ok((received, Instant::now()));
            }
            received += read as u64;
        }
    });
    let mut stream = TcpStream::connect(address)?;
    let block = vec![0x5au8; BLOCK_BYTES];
    let started = Instant::now();
    while started.elapsed() < duration {
        stream.write_all(&block)?;
    }
    drop(stream);
    let (received, finished) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    Ok(received as f64 / finished.duration_since(started).as_secs_f64() / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_three() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [5.0]), 5.0);
    }

    #[test]
    fn small_disk_and_tcp_measurements_run() {
        // Under the target directory: on the real disk, where O_DIRECT works.
        let dir = tempfile_dir();
        let args = LimitsArgs {
            dir: dir.clone(),
            size_mib: 8,
            queue_depth: 2,
            tcp_seconds: 0.2,
            repeat: 1,
            json: None,
        };
        let limits = measure(&args).unwrap();
        assert!(limits.direct_write_mb_s > 0.0);
        assert!(limits.direct_write_fdatasync_mb_s > 0.0);
        assert!(limits.direct_read_mb_s > 0.0);
        assert!(limits.tcp_loopback_mb_s > 0.0);
        // The file is cleaned up.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/spate-bench-test")
            .join(format!("limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
