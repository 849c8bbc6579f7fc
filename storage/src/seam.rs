//! The seam between the flusher and the disk: every O_DIRECT write and `fdatasync` of a
//! segment's `.log` file goes through [`SegmentIo`], which forwards to the glommio `DmaFile`
//! or, when a test installed a [`FaultPlan`] on the log, injects a failure first: an error
//! before anything is written (EIO, ENOSPC), a short write, a torn write (part written, then
//! an error), or a failed `fdatasync`.
//!
//! This is where the disk can break a durability promise, so it is where faults are injected;
//! what the storage must do about each is checked by the property tests in `seam_tests.rs`:
//! the log fails (no acknowledgement after the fault, appends refused), what was acknowledged
//! before stays readable, and recovery keeps exactly a prefix with everything acknowledged.
//! Reads and recovery go to the real file: torn and damaged files are what recovery's own
//! tests feed it.
//!
//! Owned by the log's flusher task on its shard; the plan's counters are `Cell`s.

use glommio::io::{DmaBuffer, DmaFile};
use std::cell::Cell;
use std::io;
use std::rc::Rc;

/// One failure to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Fault {
    /// The write fails with this OS error (e.g. `libc::ENOSPC`, `libc::EIO`) and writes
    /// nothing.
    WriteError(i32),
    /// The write stores only its first whole blocks and reports that shorter length.
    ShortWrite,
    /// The write stores its first whole blocks, then fails with EIO.
    TornWrite,
    /// `fdatasync` fails with EIO (the data may or may not be on disk).
    SyncError,
}

/// When to inject a fault: at the `at`-th write or sync (counting from 0), once.
#[derive(Debug)]
pub(crate) struct FaultPlan {
    fault: Fault,
    at: u64,
    writes: Cell<u64>,
    syncs: Cell<u64>,
    fired: Cell<bool>,
    /// While set, every `fdatasync` waits before it starts (a slow disk, held still).
    hold_syncs: Cell<bool>,
    /// While set, every zero write ahead (see `zeroing`) waits before it starts, registered
    /// as in flight.
    hold_zeroes: Cell<bool>,
    /// Zero writes completed.
    zero_writes: Cell<u64>,
}

#[cfg_attr(not(test), allow(dead_code))]
impl FaultPlan {
    pub fn new(fault: Fault, at: u64) -> FaultPlan {
        FaultPlan {
            fault,
            at,
            writes: Cell::new(0),
            syncs: Cell::new(0),
            fired: Cell::new(false),
            hold_syncs: Cell::new(false),
            hold_zeroes: Cell::new(false),
            zero_writes: Cell::new(0),
        }
    }

    /// Holds every zero write ahead (`true`) until released (`false`).
    pub fn hold_zeroes(&self, hold: bool) {
        self.hold_zeroes.set(hold);
    }

    pub(crate) fn zeroes_held(&self) -> bool {
        self.hold_zeroes.get()
    }

    pub(crate) fn count_zero_write(&self) {
        self.zero_writes.set(self.zero_writes.get() + 1);
    }

    /// Zero writes ahead completed so far.
    pub fn zero_writes(&self) -> u64 {
        self.zero_writes.get()
    }

    /// Holds every `fdatasync` (`true`) until released (`false`).
    pub fn hold_syncs(&self, hold: bool) {
        self.hold_syncs.set(hold);
    }

    /// Writes started so far.
    pub fn writes_started(&self) -> u64 {
        self.writes.get()
    }

    /// `fdatasync`s started so far (held ones included).
    pub fn syncs_started(&self) -> u64 {
        self.syncs.get()
    }

    /// Whether the fault fired.
    pub fn fired(&self) -> bool {
        self.fired.get()
    }

    /// The fault for the next write, if this is its turn.
    fn next_write(&self) -> Option<Fault> {
        let number = self.writes.replace(self.writes.get() + 1);
        let due = !matches!(self.fault, Fault::SyncError) && number == self.at;
        self.fire(due)
    }

    /// The fault for the next sync, if this is its turn.
    fn next_sync(&self) -> Option<Fault> {
        let number = self.syncs.replace(self.syncs.get() + 1);
        let due = matches!(self.fault, Fault::SyncError) && number == self.at;
        self.fire(due)
    }

    fn fire(&self, due: bool) -> Option<Fault> {
        if due && !self.fired.get() {
            self.fired.set(true);
            Some(self.fault)
        } else {
            None
        }
    }
}

/// A segment file as the flusher writes it.
#[derive(Clone, Copy)]
pub(crate) struct SegmentIo<'file> {
    pub file: &'file DmaFile,
    pub faults: Option<&'file FaultPlan>,
}

impl SegmentIo<'_> {
    /// One O_DIRECT write of a whole, block-aligned buffer; returns the bytes written.
    pub async fn write_at(&self, chunk: Rc<DmaBuffer>, position: u64) -> io::Result<usize> {
        let _in_flight = crate::metrics::in_flight(crate::metrics::IoOp::Write);
        match self.faults.and_then(FaultPlan::next_write) {
            None | Some(Fault::SyncError) => Ok(self.file.write_rc_at(chunk, position).await?),
            Some(Fault::WriteError(errno)) => Err(io::Error::from_raw_os_error(errno)),
            Some(fault @ (Fault::ShortWrite | Fault::TornWrite)) => {
                let written = self.write_prefix(&chunk, position).await?;
                if fault == Fault::TornWrite {
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
                Ok(written)
            }
        }
    }

    /// Writes the first half of `chunk`'s whole blocks (possibly none).
    async fn write_prefix(&self, chunk: &DmaBuffer, position: u64) -> io::Result<usize> {
        let blocks = chunk.len() / crate::segment::BLOCK_BYTES as usize / 2;
        let length = blocks * crate::segment::BLOCK_BYTES as usize;
        if length == 0 {
            return Ok(0);
        }
        let mut prefix = glommio::allocate_dma_buffer_global(length);
        prefix
            .as_bytes_mut()
            .copy_from_slice(&chunk.as_bytes()[..length]);
        Ok(self.file.write_rc_at(Rc::new(prefix), position).await?)
    }

    pub async fn fdatasync(&self) -> io::Result<()> {
        let _in_flight = crate::metrics::in_flight(crate::metrics::IoOp::Fdatasync);
        let fault = self.faults.and_then(FaultPlan::next_sync);
        while self.faults.is_some_and(|plan| plan.hold_syncs.get()) {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        match fault {
            Some(Fault::SyncError) => Err(io::Error::from_raw_os_error(libc::EIO)),
            _ => Ok(self.file.fdatasync().await?),
        }
    }
}

#[cfg(test)]
#[path = "seam_tests.rs"]
mod tests;
