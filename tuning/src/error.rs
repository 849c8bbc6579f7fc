//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while checking, tuning or measuring a host.
///
/// A tuner never returns one of these from `check`: a file it cannot read becomes a
/// finding with status `cannot check`. Errors are for writes, the state file, the
/// io-properties file and iotune's disk I/O.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// Writing a tunable failed (read-only /sys, not root, a value the kernel refused).
    /// `apply` reports it against the tuner and goes on with the next one.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file as seen on the host (not prefixed with `--root`).
        path: String,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The state file that records previous values could not be read or written.
    /// `apply` stops before changing anything; `restore` stops before writing.
    #[error("state file {path}: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
    },
    /// An io-properties file could not be read, parsed or written.
    /// The caller fixes or regenerates the file (`spate-tune iotune`).
    #[error("io-properties file {path}: {reason}")]
    IoProperties {
        /// The io-properties file.
        path: PathBuf,
        /// What went wrong, in words.
        reason: String,
    },
    /// iotune could not set up or run its measurement (no O_DIRECT, no io_uring, disk full).
    /// Nothing is written; its scratch file is removed.
    #[error("iotune: {context}: {source}")]
    Measure {
        /// What iotune was doing.
        context: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A command-line value made no sense (an unknown tuner name, a bad CPU list).
    #[error("{0}")]
    Usage(String),
}

impl TuneError {
    /// Wraps an I/O error met while measuring, with what iotune was doing.
    pub fn measure(context: impl Into<String>, source: std::io::Error) -> TuneError {
        TuneError::Measure {
            context: context.into(),
            source,
        }
    }
}
