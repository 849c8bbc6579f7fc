//! O_DIRECT I/O through io_uring: a scratch file, aligned buffers, and one measured point.

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{opcode, types, IoUring};

use crate::error::TuneError;

/// Alignment of buffers, offsets and sizes: the physical block size of every disk we expect.
pub const ALIGN_BYTES: u64 = 4096;

/// Deepest queue measured; the ring is sized for it.
pub const QUEUE_DEPTH_MAX: u32 = 64;

/// What a point does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Sequential O_DIRECT writes into freshly preallocated space.
    Write,
    /// One sequential write, then fdatasync, then the next: a group commit.
    WriteSync,
    /// Sequential O_DIRECT reads of what was written.
    Read,
    /// 4 KiB O_DIRECT reads at random aligned offsets of what was written.
    RandomRead,
}

impl Workload {
    /// The name used in the io-properties file.
    pub fn label(self) -> &'static str {
        match self {
            Workload::Write => "write",
            Workload::WriteSync => "write_sync",
            Workload::Read => "read",
            Workload::RandomRead => "random_read",
        }
    }
}

/// One measurement to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// What to do.
    pub workload: Workload,
    /// Bytes per operation; a multiple of [`ALIGN_BYTES`].
    pub block_bytes: u64,
    /// Operations in flight (1 for [`Workload::WriteSync`]).
    pub queue_depth: u32,
    /// How long to run, including a short warm-up that is not counted.
    pub duration: Duration,
}

/// What one point measured.
#[derive(Debug, Clone, PartialEq)]
pub struct PointResult {
    /// The point.
    pub point: Point,
    /// Bytes per second over the counted window.
    pub bw_bytes_per_s: f64,
    /// Operations per second.
    pub iops: f64,
    /// Median latency of one operation (the write, for `WriteSync`).
    pub latency_p50_us: u64,
    /// 99th percentile latency.
    pub latency_p99_us: u64,
    /// Median fdatasync latency (`WriteSync` only).
    pub sync_p50_us: u64,
    /// 99th percentile fdatasync latency (`WriteSync` only).
    pub sync_p99_us: u64,
}

/// A heap buffer aligned for O_DIRECT, freed on drop.
pub struct AlignedBuffer {
    pointer: NonNull<u8>,
    layout: Layout,
}

impl AlignedBuffer {
    /// A buffer of `len` bytes (a multiple of 4096) filled with a non-repeating pattern,
    /// so that a compressing or deduplicating device cannot shortcut the writes.
    pub fn new(len: usize, seed: u64) -> Result<AlignedBuffer, TuneError> {
        let layout =
            Layout::from_size_align(len.max(ALIGN_BYTES as usize), ALIGN_BYTES as usize)
                .map_err(|error| TuneError::Usage(format!("buffer of {len} bytes: {error}")))?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let pointer = NonNull::new(raw)
            .ok_or_else(|| TuneError::Usage(format!("out of memory for {len} bytes")))?;
        let mut buffer = AlignedBuffer { pointer, layout };
        let mut state = seed | 1;
        for chunk in buffer.as_mut_slice().chunks_exact_mut(8) {
            state = xorshift(state);
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        Ok(buffer)
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: pointer is valid for layout.size() bytes and uniquely borrowed through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.layout.size()) }
    }

    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.pointer.as_ptr()
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { alloc::dealloc(self.pointer.as_ptr(), self.layout) }
    }
}

/// A small fast generator for offsets and fill patterns; quality is not needed.
fn xorshift(mut state: u64) -> u64 {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    state
}

/// The file iotune writes and reads, removed on drop.
pub struct ScratchFile {
    file: File,
    path: PathBuf,
    /// Bytes preallocated; writes stay inside.
    pub region_bytes: u64,
    /// Where the next sequential write goes.
    write_cursor: u64,
    /// End of the data written since the last reset: reads stay below it.
    pub written_end: u64,
    read_cursor: u64,
    random_state: u64,
}

impl ScratchFile {
    /// Creates `.spate-iotune-PID` in `dir` with O_DIRECT and preallocates `region_bytes`.
    pub fn create(dir: &Path, region_bytes: u64) -> Result<ScratchFile, TuneError> {
        let path = dir.join(format!(".spate-iotune-{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .map_err(|error| {
                let hint = if error.raw_os_error() == Some(libc::EINVAL) {
                    " (this filesystem does not support O_DIRECT: tmpfs?)"
                } else {
                    ""
                };
                TuneError::measure(format!("create {}{hint}", path.display()), error)
            })?;
        let mut scratch = ScratchFile {
            file,
            path,
            region_bytes: region_bytes / ALIGN_BYTES * ALIGN_BYTES,
            write_cursor: 0,
            written_end: 0,
            read_cursor: 0,
            random_state: 0x9E37_79B9_7F4A_7C15,
        };
        scratch.reset()?;
        Ok(scratch)
    }

    /// Frees everything written and preallocates the region afresh, so that the
    /// next writes land in new space, as a broker's appends to a new segment do.
    pub fn reset(&mut self) -> Result<(), TuneError> {
        self.file
            .set_len(0)
            .map_err(|error| TuneError::measure("truncate the scratch file", error))?;
        let length = i64::try_from(self.region_bytes).unwrap_or(i64::MAX);
        // SAFETY: fallocate on a file descriptor we own.
        let status = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, 0, length) };
        if status != 0 {
            let error = std::io::Error::last_os_error();
            // Filesystems without fallocate still take the writes; a full disk does not.
            if error.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(TuneError::measure("preallocate the scratch file", error));
            }
        }
        self.write_cursor = 0;
        self.written_end = 0;
        self.read_cursor = 0;
        Ok(())
    }

    /// Bytes left before the write cursor wraps.
    pub fn fresh_bytes_left(&self) -> u64 {
        self.region_bytes - self.write_cursor
    }

    fn next_offset(&mut self, workload: Workload, block_bytes: u64) -> u64 {
        match workload {
            Workload::Write | Workload::WriteSync => {
                if self.write_cursor + block_bytes > self.region_bytes {
                    self.write_cursor = 0;
                }
                let offset = self.write_cursor;
                self.write_cursor += block_bytes;
                self.written_end = self.written_end.max(self.write_cursor);
                offset
            }
            Workload::Read => {
                if self.read_cursor + block_bytes > self.written_end {
                    self.read_cursor = 0;
                }
                let offset = self.read_cursor;
                self.read_cursor += block_bytes;
                offset
            }
            Workload::RandomRead => {
                self.random_state = xorshift(self.random_state);
                let blocks = (self.written_end / block_bytes).max(1);
                self.random_state % blocks * block_bytes
            }
        }
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        // Best effort: there is no one to report a failed cleanup to but stderr.
        if let Err(error) = std::fs::remove_file(&self.path) {
            eprintln!(
                "spate-tune: could not remove {}: {error}",
                self.path.display()
            );
        }
    }
}

/// Runs points on one ring.
pub struct Runner {
    ring: IoUring,
}

/// Part of each point spent warming up and not counted.
const WARMUP_FRACTION: u32 = 10;

impl Runner {
    /// Sets up a ring deep enough for [`QUEUE_DEPTH_MAX`].
    pub fn new() -> Result<Runner, TuneError> {
        let ring = IoUring::new(QUEUE_DEPTH_MAX * 2)
            .map_err(|error| TuneError::measure("set up an io_uring", error))?;
        Ok(Runner { ring })
    }

    /// Measures one point against the scratch file.
    pub fn run(&mut self, file: &mut ScratchFile, point: Point) -> Result<PointResult, TuneError> {
        assert!(point.block_bytes.is_multiple_of(ALIGN_BYTES) && point.block_bytes > 0);
        assert!(point.queue_depth >= 1 && point.queue_depth <= QUEUE_DEPTH_MAX);
        if point.workload != Workload::Write
            && point.workload != Workload::WriteSync
            && file.written_end < point.block_bytes
        {
            return Err(TuneError::Usage("read before anything was written".into()));
        }
        match point.workload {
            Workload::WriteSync => self.run_synced(file, point),
            _ => self.run_queued(file, point),
        }
    }

    /// Keeps `queue_depth` operations in flight until the time is up.
    fn run_queued(
        &mut self,
        file: &mut ScratchFile,
        point: Point,
    ) -> Result<PointResult, TuneError> {
        let depth = point.queue_depth as usize;
        let mut buffers = (0..depth)
            .map(|slot| AlignedBuffer::new(point.block_bytes as usize, slot as u64 + 7))
            .collect::<Result<Vec<_>, _>>()?;
        let mut submitted_at = vec![Instant::now(); depth];
        let mut free_slots: Vec<usize> = (0..depth).collect();
        let mut histogram = new_histogram()?;
        let start = Instant::now();
        let counted_from = start + point.duration / WARMUP_FRACTION;
        let end = start + point.duration;
        let fd = types::Fd(file.file.as_raw_fd());
        let length = point.block_bytes as u32;
        let mut in_flight = 0;
        let mut failure = None;
        loop {
            if Instant::now() < end && failure.is_none() {
                while let Some(slot) = free_slots.pop() {
                    let offset = file.next_offset(point.workload, point.block_bytes);
                    let pointer = buffers[slot].as_mut_ptr();
                    let entry = match point.workload {
                        Workload::Read | Workload::RandomRead => {
                            opcode::Read::new(fd, pointer, length)
                                .offset(offset)
                                .build()
                        }
                        _ => opcode::Write::new(fd, pointer, length)
                            .offset(offset)
                            .build(),
                    };
                    // SAFETY: the buffer outlives the operation: we drain every
                    // operation before `buffers` is dropped at the end of this function.
                    unsafe { self.push(&entry.user_data(slot as u64))? };
                    submitted_at[slot] = Instant::now();
                    in_flight += 1;
                }
            }
            if in_flight == 0 {
                break;
            }
            if let Err(error) = self.submit_and_wait(1) {
                // Operations may still own the buffers: leak them rather than free memory
                // the kernel could write to.
                std::mem::forget(buffers);
                return Err(error);
            }
            let now = Instant::now();
            for (slot, result) in self.reap() {
                in_flight -= 1;
                free_slots.push(slot);
                if let Err(error) = check_result(result, length, point.workload) {
                    failure.get_or_insert(error);
                } else if submitted_at[slot] >= counted_from && now <= end {
                    record(&mut histogram, now - submitted_at[slot]);
                }
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        let counted = end - counted_from;
        Ok(summarize(point, &histogram, None, counted))
    }

    /// Write, wait, fdatasync, wait: what a group commit costs.
    fn run_synced(
        &mut self,
        file: &mut ScratchFile,
        point: Point,
    ) -> Result<PointResult, TuneError> {
        let mut buffer = AlignedBuffer::new(point.block_bytes as usize, 11)?;
        let mut writes = new_histogram()?;
        let mut syncs = new_histogram()?;
        let start = Instant::now();
        let counted_from = start + point.duration / WARMUP_FRACTION;
        let end = start + point.duration;
        let fd = types::Fd(file.file.as_raw_fd());
        let length = point.block_bytes as u32;
        while Instant::now() < end {
            let offset = file.next_offset(Workload::WriteSync, point.block_bytes);
            let began = Instant::now();
            let write = opcode::Write::new(fd, buffer.as_mut_ptr(), length)
                .offset(offset)
                .build();
            // SAFETY: we wait for the write's completion before touching the buffer again,
            // and leak the buffer if that wait fails.
            unsafe { self.push(&write)? };
            if let Err(error) = self.complete_one(length, Workload::WriteSync) {
                std::mem::forget(buffer);
                return Err(error);
            }
            let written = Instant::now();
            let sync = opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build();
            // SAFETY: fsync references no memory.
            unsafe { self.push(&sync)? };
            self.complete_one(0, Workload::WriteSync)?;
            let synced = Instant::now();
            if began >= counted_from && synced <= end {
                record(&mut writes, written - began);
                record(&mut syncs, synced - written);
            }
        }
        Ok(summarize(point, &writes, Some(&syncs), end - counted_from))
    }

    /// # Safety
    /// Memory the entry points to must stay valid until its completion is reaped.
    unsafe fn push(&mut self, entry: &io_uring::squeue::Entry) -> Result<(), TuneError> {
        let full = std::io::Error::other("submission queue full");
        if self.ring.submission().push(entry).is_err() {
            self.submit_and_wait(0)?;
            self.ring
                .submission()
                .push(entry)
                .map_err(|_| TuneError::measure("queue an operation", full))?;
        }
        Ok(())
    }

    fn submit_and_wait(&mut self, want: usize) -> Result<(), TuneError> {
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(TuneError::measure("submit to io_uring", error)),
            }
        }
    }

    fn reap(&mut self) -> Vec<(usize, i32)> {
        self.ring
            .completion()
            .map(|entry| (entry.user_data() as usize, entry.result()))
            .collect()
    }

    fn complete_one(&mut self, length: u32, workload: Workload) -> Result<(), TuneError> {
        self.submit_and_wait(1)?;
        for (_, result) in self.reap() {
            check_result(result, length, workload)?;
        }
        Ok(())
    }
}

/// A completion's result: the bytes transferred, or a negated errno.
fn check_result(result: i32, expected: u32, workload: Workload) -> Result<(), TuneError> {
    if result < 0 {
        let error = std::io::Error::from_raw_os_error(-result);
        return Err(TuneError::measure(
            format!("{} failed", workload.label()),
            error,
        ));
    }
    if result as u32 != expected {
        let error = std::io::Error::other(format!("{result} of {expected} bytes"));
        return Err(TuneError::measure(
            format!("short {}", workload.label()),
            error,
        ));
    }
    Ok(())
}

fn new_histogram() -> Result<Histogram<u64>, TuneError> {
    // 1 us to 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .map_err(|error| TuneError::Usage(format!("histogram: {error}")))
}

fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    histogram.saturating_record((latency.as_micros() as u64).max(1));
}

fn summarize(
    point: Point,
    operations: &Histogram<u64>,
    syncs: Option<&Histogram<u64>>,
    counted: Duration,
) -> PointResult {
    let seconds = counted.as_secs_f64().max(1e-9);
    let count = operations.len() as f64;
    PointResult {
        point,
        bw_bytes_per_s: count * point.block_bytes as f64 / seconds,
        iops: count / seconds,
        latency_p50_us: operations.value_at_quantile(0.50),
        latency_p99_us: operations.value_at_quantile(0.99),
        sync_p50_us: syncs.map_or(0, |syncs| syncs.value_at_quantile(0.50)),
        sync_p99_us: syncs.map_or(0, |syncs| syncs.value_at_quantile(0.99)),
    }
}
