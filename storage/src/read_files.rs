//! Buffered read-only descriptors of sealed segment files, for zero-copy fetches.
//!
//! Segments are written and read through O_DIRECT `DmaFile`s. Sending a file range to a
//! socket without copying it (splice or sendfile) needs the page cache instead: splice from an
//! O_DIRECT descriptor does small synchronous reads and was measured slow (BENCHMARKS.md,
//! "Fetch path"). So a fetch that sends a sealed segment's bytes uses a second descriptor of
//! the same file, opened without O_DIRECT.
//!
//! It is opened through `/proc/self/fd/<n>` of the segment's `DmaFile`, which names the very
//! inode that descriptor has open: whatever the directory holds at that moment (compaction
//! may have renamed a cleaned file over the name, retention may have renamed it away), the
//! read descriptor sees the same bytes as the `DmaFile` the plan was made with.
//!
//! Only sealed segments are read this way: they are never written again, so the page cache
//! cannot hold a stale copy of a block that an O_DIRECT write later changes (the active
//! segment's last block is rewritten by every flush; it is read with O_DIRECT or from the tail
//! cache).
//!
//! Descriptors are bounded per shard ([`MAX_OPEN_PER_SHARD`]), least recently used first out,
//! and an entry goes as soon as its segment's `DmaFile` is dropped (retention, compaction,
//! log close), found on the next look-up. A fetch holds its descriptor through an `Rc` until
//! the bytes are sent, so eviction never closes a descriptor in use.
//!
//! Concurrency contract: shard-local (a thread local of the shard's thread), never borrowed
//! across an `.await`.

use glommio::io::{BufferedFile, DmaFile};
use std::cell::RefCell;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::{Rc, Weak};

/// Read descriptors kept open per shard: enough for the segments that consumers catching up
/// read at once, few against the open-files limit.
pub(crate) const MAX_OPEN_PER_SHARD: usize = 64;

struct Entry {
    segment: Weak<DmaFile>,
    file: Rc<BufferedFile>,
}

thread_local! {
    /// Most recently used last.
    static OPEN: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// The buffered read descriptor of `segment`'s file, opened on first use.
pub(crate) fn read_file(segment: &Rc<DmaFile>) -> io::Result<Rc<BufferedFile>> {
    let found = OPEN.with(|open| {
        let mut open = open.borrow_mut();
        open.retain(|entry| entry.segment.strong_count() > 0);
        let position = open
            .iter()
            .position(|entry| std::ptr::eq(entry.segment.as_ptr(), Rc::as_ptr(segment)))?;
        let entry = open.remove(position);
        let file = entry.file.clone();
        open.push(entry);
        Some(file)
    });
    if let Some(file) = found {
        return Ok(file);
    }
    let file = Rc::new(reopen_read_only(segment)?);
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        if open.len() >= MAX_OPEN_PER_SHARD {
            open.remove(0);
        }
        open.push(Entry {
            segment: Rc::downgrade(segment),
            file: file.clone(),
        });
    });
    Ok(file)
}

/// Asks the kernel to start reading `[start, end)` of a sealed segment into the page cache,
/// and as much again after it (up to `segment_end`): the next fetch of a consumer catching up
/// asks for the bytes right after these. Without the hint, the splice reads the range page by
/// page behind the kernel's readahead window (128 KiB), one fetch at a time; with it, the disk
/// has the whole range and the next one in flight at once. `POSIX_FADV_WILLNEED` submits the
/// reads and returns without waiting for them; pages already cached are skipped.
pub(crate) fn read_ahead(file: &BufferedFile, start: u64, end: u64, segment_end: u64) {
    let ahead_end = end.saturating_add(end - start).min(segment_end);
    // SAFETY: fadvise on a descriptor we own; a failure only loses the hint.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            start as libc::off_t,
            (ahead_end - start) as libc::off_t,
            libc::POSIX_FADV_WILLNEED,
        );
    }
}

/// Descriptors this shard holds open.
#[cfg(test)]
pub(crate) fn open_count() -> usize {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        open.retain(|entry| entry.segment.strong_count() > 0);
        open.len()
    })
}

/// A new read-only, buffered descriptor of the inode `file` has open. Synchronous: the inode
/// is in memory, so the open does no disk I/O.
fn reopen_read_only(file: &DmaFile) -> io::Result<BufferedFile> {
    let path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .expect("a formatted path has no NUL");
    // SAFETY: a valid NUL-terminated path; the returned descriptor is checked.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that only this BufferedFile owns.
    Ok(unsafe { BufferedFile::from_raw_fd(fd) })
}
