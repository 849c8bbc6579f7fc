//! The seam between the tuners and the machine.
//!
//! Every file a tuner reads or writes goes through [`Host`], which resolves
//! host paths such as `/proc/sys/vm/swappiness` under a root directory
//! (`--root`, default `/`). Tests point the root at a temporary tree that
//! mimics `/proc` and `/sys`. The few facts that come from system calls rather
//! than files (an io_uring probe, free disk space, the kernel's clock state) go
//! through the [`System`] trait, which tests replace with fixed answers.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::TuneError;

/// The outcome of reading one file under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// The file's contents with trailing whitespace removed.
    Value(String),
    /// The file does not exist: the feature is absent on this host (VM, container, old kernel).
    Absent,
    /// The file exists but could not be read (permissions, a directory, an I/O error).
    Unreadable(String),
}

impl Reading {
    /// The value, if the file was read.
    pub fn value(&self) -> Option<&str> {
        match self {
            Reading::Value(value) => Some(value),
            _ => None,
        }
    }
}

/// What an io_uring probe ring reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UringProbe {
    /// Names of the `IORING_FEAT_*` flags the kernel set, e.g. `"nodrop"`.
    pub features: Vec<String>,
    /// Opcodes (`IORING_OP_*` numbers) the kernel supports.
    pub opcodes: Vec<u8>,
}

/// Free and total bytes of the filesystem holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes available to an unprivileged user.
    pub available_bytes: u64,
    /// Size of the filesystem.
    pub total_bytes: u64,
}

/// Whether the kernel believes its clock is synchronized (from `adjtimex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSync {
    /// `STA_UNSYNC` is clear: a time daemon is steering the clock.
    pub synchronized: bool,
    /// The kernel's estimate of the clock error, in microseconds.
    pub max_error_us: i64,
}

/// Facts that come from system calls rather than files.
pub trait System {
    /// Sets up a small io_uring and asks which features and opcodes it has.
    fn io_uring_probe(&self) -> Result<UringProbe, String>;
    /// `statvfs` of a real path (already resolved under the root).
    fn disk_space(&self, path: &Path) -> Option<DiskSpace>;
    /// The kernel's clock synchronization state.
    fn clock_sync(&self) -> Option<ClockSync>;
    /// The effective user id of this process.
    fn effective_uid(&self) -> u32;
}

/// The machine as seen through a root directory.
pub struct Host {
    root: PathBuf,
    system: Box<dyn System>,
}

impl Host {
    /// The host this process runs on, with real system calls.
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host::with_system(root, Box::new(RealSystem))
    }

    /// A host whose system-call facts come from `system` (tests).
    pub fn with_system(root: impl Into<PathBuf>, system: Box<dyn System>) -> Host {
        Host {
            root: root.into(),
            system,
        }
    }

    /// The root directory every host path is resolved under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the root is the real `/` rather than a fake tree.
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// System-call facts.
    pub fn system(&self) -> &dyn System {
        self.system.as_ref()
    }

    /// The real path of a host path, e.g. `/sys/block` → `ROOT/sys/block`.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    /// Reads a small text file; never fails, see [`Reading`].
    pub fn read(&self, host_path: &str) -> Reading {
        match fs::read_to_string(self.path(host_path)) {
            Ok(text) => Reading::Value(text.trim_end().to_string()),
            Err(error) if error.kind() == ErrorKind::NotFound => Reading::Absent,
            Err(error) => Reading::Unreadable(error.to_string()),
        }
    }

    /// True when the path exists (file, directory or a link to one).
    pub fn exists(&self, host_path: &str) -> bool {
        self.path(host_path).exists()
    }

    /// True when the path is a directory.
    pub fn is_dir(&self, host_path: &str) -> bool {
        self.path(host_path).is_dir()
    }

    /// Names in a directory, sorted; `None` if it is absent or unreadable.
    pub fn list(&self, host_path: &str) -> Option<Vec<String>> {
        let entries = fs::read_dir(self.path(host_path)).ok()?;
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Some(names)
    }

    /// The host path a path resolves to after following symlinks inside the root.
    pub fn canonical(&self, host_path: &str) -> Option<String> {
        let real = fs::canonicalize(self.path(host_path)).ok()?;
        self.host_path_of(&real)
    }

    /// The nearest existing ancestor of `path` (itself if it exists), canonical.
    pub fn nearest_existing(&self, path: &Path) -> Option<String> {
        let mut candidate = Some(path);
        while let Some(current) = candidate {
            if let Some(text) = current.to_str() {
                if self.exists(text) {
                    return self.canonical(text);
                }
            }
            candidate = current.parent();
        }
        None
    }

    fn host_path_of(&self, real: &Path) -> Option<String> {
        let root = fs::canonicalize(&self.root).ok()?;
        let inside = real.strip_prefix(&root).ok()?;
        Some(format!("/{}", inside.to_string_lossy()))
    }

    /// Writes a value to an existing kernel tunable (or any existing file).
    ///
    /// Under a fake root the file is an ordinary file, so the write mimics
    /// sysfs's choice files: writing `none` to `none [mq-deadline] kyber`
    /// moves the brackets instead of replacing the list. That keeps a fake tree
    /// reading back exactly like the real one after `apply` and `restore`.
    pub fn write(&self, host_path: &str, value: &str) -> Result<(), TuneError> {
        let real = self.path(host_path);
        let text = if self.is_real_root() {
            value.to_string()
        } else {
            match self.read(host_path) {
                Reading::Value(old) => select_choice(&old, value).unwrap_or_else(|| value.into()),
                _ => value.to_string(),
            }
        };
        let written = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&real)
            .and_then(|mut file| file.write_all(format!("{text}\n").as_bytes()));
        written.map_err(|source| TuneError::Write {
            path: host_path.to_string(),
            source,
        })
    }

    /// Creates or replaces an ordinary configuration file with exact contents.
    pub fn write_file(&self, host_path: &str, contents: &str) -> Result<(), TuneError> {
        fs::write(self.path(host_path), contents).map_err(|source| TuneError::Write {
            path: host_path.to_string(),
            source,
        })
    }

    /// Removes a file that `apply` created.
    pub fn remove(&self, host_path: &str) -> Result<(), TuneError> {
        match fs::remove_file(self.path(host_path)) {
            Err(error) if error.kind() != ErrorKind::NotFound => Err(TuneError::Write {
                path: host_path.to_string(),
                source: error,
            }),
            _ => Ok(()),
        }
    }
}

/// The selected word of a sysfs choice list: `none [mq-deadline] kyber` → `mq-deadline`.
/// A plain value is returned as is.
pub fn selected_choice(text: &str) -> String {
    let selected = text
        .split_whitespace()
        .find(|word| word.starts_with('[') && word.ends_with(']'));
    match selected {
        Some(word) => word.trim_matches(['[', ']']).to_string(),
        None => text.trim().to_string(),
    }
}

/// The words of a sysfs choice list without brackets.
pub fn choices(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|word| word.trim_matches(['[', ']']).to_string())
        .collect()
}

/// `old` with the brackets moved to `value`, if `old` is a choice list that offers it.
fn select_choice(old: &str, value: &str) -> Option<String> {
    if !old.contains('[') || !choices(old).iter().any(|choice| choice == value) {
        return None;
    }
    let words: Vec<String> = choices(old)
        .into_iter()
        .map(|word| {
            if word == value {
                format!("[{word}]")
            } else {
                word
            }
        })
        .collect();
    Some(words.join(" "))
}

/// System calls on the machine this process runs on.
pub struct RealSystem;

impl System for RealSystem {
    fn io_uring_probe(&self) -> Result<UringProbe, String> {
        let ring = io_uring::IoUring::new(8).map_err(|error| error.to_string())?;
        let params = ring.params();
        let named = [
            ("nodrop", params.is_feature_nodrop()),
            ("submit_stable", params.is_feature_submit_stable()),
            ("fast_poll", params.is_feature_fast_poll()),
            ("ext_arg", params.is_feature_ext_arg()),
            ("native_workers", params.is_feature_native_workers()),
        ];
        let features = named
            .iter()
            .filter(|(_, present)| *present)
            .map(|(name, _)| name.to_string())
            .collect();
        let mut probe = io_uring::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|error| format!("probe: {error}"))?;
        let opcodes = (0..=u8::MAX)
            .filter(|code| probe.is_supported(*code))
            .collect();
        Ok(UringProbe { features, opcodes })
    }

    fn disk_space(&self, path: &Path) -> Option<DiskSpace> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs fills the zeroed struct we own; c_path is NUL-terminated.
        let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
        let status = unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) };
        if status != 0 {
            return None;
        }
        let fragment = stats.f_frsize as u64;
        Some(DiskSpace {
            available_bytes: stats.f_bavail as u64 * fragment,
            total_bytes: stats.f_blocks as u64 * fragment,
        })
    }

    fn clock_sync(&self) -> Option<ClockSync> {
        // SAFETY: with modes = 0, adjtimex only reads the kernel's state into our struct.
        let mut timex: libc::timex = unsafe { std::mem::zeroed() };
        let state = unsafe { libc::adjtimex(&mut timex) };
        if state < 0 {
            return None;
        }
        Some(ClockSync {
            synchronized: timex.status & libc::STA_UNSYNC == 0 && state != libc::TIME_ERROR,
            max_error_us: timex.maxerror,
        })
    }

    fn effective_uid(&self) -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;

    #[test]
    fn reads_present_absent_and_unreadable_files() {
        let tree = FakeTree::new();
        tree.file("/proc/sys/vm/swappiness", "60\n");
        tree.dir("/proc/sys/fs/aio-max-nr");
        let host = tree.host();
        assert_eq!(
            host.read("/proc/sys/vm/swappiness"),
            Reading::Value("60".into())
        );
        assert_eq!(host.read("/proc/sys/vm/missing"), Reading::Absent);
        assert!(matches!(
            host.read("/proc/sys/fs/aio-max-nr"),
            Reading::Unreadable(_)
        ));
    }

    #[test]
    fn writing_a_choice_moves_the_brackets_in_a_fake_tree() {
        let tree = FakeTree::new();
        tree.file(
            "/sys/block/vda/queue/scheduler",
            "none [mq-deadline] kyber\n",
        );
        let host = tree.host();
        host.write("/sys/block/vda/queue/scheduler", "none")
            .unwrap();
        let after = host.read("/sys/block/vda/queue/scheduler");
        assert_eq!(after, Reading::Value("[none] mq-deadline kyber".into()));
        assert_eq!(selected_choice("[none] mq-deadline kyber"), "none");
    }

    #[test]
    fn writing_a_missing_tunable_fails_without_creating_it() {
        let tree = FakeTree::new();
        let host = tree.host();
        assert!(host.write("/proc/sys/vm/swappiness", "1").is_err());
        assert_eq!(host.read("/proc/sys/vm/swappiness"), Reading::Absent);
    }

    #[test]
    fn nearest_existing_walks_up_and_stays_inside_the_root() {
        let tree = FakeTree::new();
        tree.dir("/data");
        let host = tree.host();
        let found = host.nearest_existing(Path::new("/data/spate/not-yet"));
        assert_eq!(found.as_deref(), Some("/data"));
    }
}
