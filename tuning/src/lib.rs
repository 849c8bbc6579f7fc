//! spate-tune: checks and tunes a Linux host for Spate, and measures its disk.
//!
//! It stands alone: it knows nothing of the broker at run time, and the broker
//! only reads the io-properties file it writes.
//!
//! A tour of the principal types:
//!
//! - [`host::Host`] is the seam to the machine. Every tuner reads and writes
//!   files such as `/proc/sys/vm/swappiness` through it, resolved under a root
//!   directory (`--root`, default `/`), so tests run against a fake `/proc` and
//!   `/sys` tree. Facts that come from system calls (an io_uring probe ring,
//!   `statvfs`, `adjtimex`) go through its [`host::System`] trait.
//! - [`tuners::TUNERS`] is the one table of tuners. Each [`tuners::Tuner`] has a
//!   stable name and a check that turns a [`tuners::Context`] (the host, the shard
//!   CPUs, the data directory) into a [`finding::Finding`]: a
//!   [`finding::Status`] (`ok`, `would change`, `not applicable`,
//!   `cannot check`), the current and recommended values, why it matters, and the
//!   [`finding::PlannedWrite`]s that would bring the host in line.
//! - [`report::Report`] renders findings as text lines or as the stable JSON
//!   document of `check --json`.
//! - [`apply`] carries out planned writes, recording each previous value in a
//!   [`apply::State`] file, and `restore` puts them back.
//! - [`iotune`] measures the data directory's disk with O_DIRECT io_uring I/O
//!   and derives an [`io_properties::IoProperties`], the flat TOML file that
//!   `spate serve --io-properties` reads; [`io_properties::parse`] reads it back.

#![deny(missing_docs)]

pub mod apply;
pub mod cpus;
pub mod error;
pub mod finding;
pub mod host;
pub mod io_properties;
pub mod iotune;
pub mod report;
pub mod tuners;

#[cfg(test)]
mod fake;

pub use error::TuneError;
pub use io_properties::{parse as parse_io_properties, IoProperties};
