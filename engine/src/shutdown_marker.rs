//! Whether the node's last run ended in a clean shutdown: a marker file written once every
//! partition was flushed and closed (the last step of SIGINT/SIGTERM), and taken away at the
//! next start. A node registers with the answer (`NodeStart::clean_shutdown`, Kafka's
//! KIP-966 tells the controller the same through the previous broker epoch), so that an
//! operator and the controller's log can tell a restart after a crash or kill -9 from a
//! planned one.
//!
//! It is information, not a safety rule: a replica reports to its leader only what it has
//! fdatasync'ed, so a node that died uncleanly still holds every record it was counted for,
//! and its replicas rejoin the ISR only once they have caught up, as after any restart.

use std::path::Path;

/// The marker's name in the data directory (a file, so partition-directory clean-up, which
/// looks at directories, never takes it for a partition).
const MARKER: &str = ".clean-shutdown";

/// How the last run ended, read (and the marker removed) at start, before anything is
/// written: `None` for a data directory that never held a node (neither a metadata journal
/// nor a controller quorum's files), else whether the marker was there.
pub fn take(data_dir: &Path) -> Option<bool> {
    let marker = data_dir.join(MARKER);
    let clean = marker.exists();
    if clean {
        if let Err(error) = std::fs::remove_file(&marker).and_then(|()| sync_dir(data_dir)) {
            tracing::warn!(%error, "cannot remove the clean-shutdown marker");
        }
        return Some(true);
    }
    let ran_before = [
        crate::metadata::store::DIRECTORY,
        crate::cluster::member::DIRECTORY,
    ]
    .iter()
    .any(|name| data_dir.join(name).exists());
    ran_before.then_some(false)
}

/// Leaves the marker once the node has stopped cleanly (file and directory fsync'ed, so a
/// power loss right after cannot leave a marker without the data it vouches for).
pub fn write(data_dir: &Path) -> std::io::Result<()> {
    let marker = data_dir.join(MARKER);
    let file = std::fs::File::create(&marker)?;
    file.sync_all()?;
    sync_dir(data_dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_stop_is_told_once_and_a_crash_after_a_first_start_is_told_as_unclean() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(take(dir.path()), None, "never ran here");
        std::fs::create_dir(dir.path().join(crate::metadata::store::DIRECTORY)).unwrap();
        assert_eq!(take(dir.path()), Some(false), "ran, and left no marker");
        write(dir.path()).unwrap();
        assert_eq!(take(dir.path()), Some(true));
        assert_eq!(
            take(dir.path()),
            Some(false),
            "the marker is taken at start"
        );
    }
}
