//! A replicated partition's high watermark across restarts, in the partition directory's
//! `high-watermark-checkpoint` (Kafka keeps the same in one `replication-offset-checkpoint`
//! per log directory).
//!
//! Only the leader's followers can tell a replicated partition's true high watermark, so
//! without a checkpoint a restarted replica starts it at the log start: consumers see an end
//! offset that went back, and read nothing until every in-sync replica has fetched (for as
//! long as a session timeout when one of them is down). The engine writes the checkpoint
//! every few seconds and when it closes a log, and the log reads it back when it opens.
//!
//! It is written without fdatasync: a lost or stale checkpoint only starts the high
//! watermark lower, which is today's behaviour. What must never happen is a checkpoint that
//! claims more than is committed, which a truncation could cause: a follower truncated
//! below its checkpoint (after an unclean election, say) and then given other batches at
//! the same offsets. So the checkpoint names the leader epoch of the batch just below the
//! high watermark, and the log trusts it only if that offset is still in the log with that
//! epoch ([`PartitionLog::restored_high_watermark`](crate::PartitionLog)): a batch at an
//! offset in a given epoch is the same batch on every replica (Kafka's leader epoch
//! invariant), so an unchanged epoch means unchanged data, whatever order the writes
//! reached the disk in.
//!
//! File format: a line with the version `0`, a line `high_watermark epoch` (the epoch is -1
//! when nothing lies below the high watermark).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::Offset;

/// The file name, in the partition's directory.
pub const CHECKPOINT_FILE: &str = "high-watermark-checkpoint";

/// A high watermark and the leader epoch of the batch that holds the offset below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HighWatermarkCheckpoint {
    /// The high watermark.
    pub offset: Offset,
    /// The leader epoch of the batch holding `offset - 1`; -1 if there is none.
    pub epoch: i32,
}

/// The file's text.
pub fn encode(checkpoint: HighWatermarkCheckpoint) -> String {
    format!("0\n{} {}\n", checkpoint.offset.0, checkpoint.epoch)
}

/// Parses the file's text; `None` unless it is exactly a version-0 checkpoint (a torn write
/// ends early and is refused).
pub fn decode(text: &str) -> Option<HighWatermarkCheckpoint> {
    let body = text.strip_prefix("0\n")?.strip_suffix('\n')?;
    let (offset, epoch) = body.split_once(' ')?;
    let offset = Offset(offset.parse().ok()?);
    let epoch = epoch.parse().ok()?;
    (offset.0 >= 0 && epoch >= -1).then_some(HighWatermarkCheckpoint { offset, epoch })
}

/// The checkpoint in `dir`, if there is a readable one (anything else is treated as none,
/// which only starts the high watermark lower; an unparsable file is reported).
pub fn read(dir: &Path) -> Option<HighWatermarkCheckpoint> {
    let path = dir.join(CHECKPOINT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let checkpoint = decode(&text);
            if checkpoint.is_none() {
                tracing::warn!(path = %path.display(), "unreadable high watermark checkpoint: ignored");
            }
            checkpoint
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the high watermark checkpoint: ignored");
            None
        }
    }
}

/// Replaces the checkpoint in `dir` (blocking: run it off the shard): a temporary file
/// renamed over the old one, so a reader sees the old text or the new one, or after a crash
/// possibly an empty file. `sync` makes it durable (at a clean close); periodic writes need
/// not be (see the module docs).
pub fn write(dir: &Path, checkpoint: HighWatermarkCheckpoint, sync: bool) -> io::Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    let temporary = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(encode(checkpoint).as_bytes())?;
    if sync {
        file.sync_data()?;
    }
    drop(file);
    std::fs::rename(&temporary, &path)?;
    if sync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// [`write`] for many partitions (one blocking job per shard and interval); returns the
/// directories that failed with their errors. A directory removed meanwhile (its topic
/// deleted) is not an error.
pub fn write_all(
    checkpoints: &[(PathBuf, HighWatermarkCheckpoint)],
    sync: bool,
) -> Vec<(PathBuf, io::Error)> {
    checkpoints
        .iter()
        .filter_map(|(dir, checkpoint)| match write(dir, *checkpoint, sync) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Some((dir.clone(), error)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_torn_or_foreign_text_is_refused() {
        let checkpoint = HighWatermarkCheckpoint {
            offset: Offset(1234),
            epoch: 7,
        };
        let text = encode(checkpoint);
        assert_eq!(text, "0\n1234 7\n");
        assert_eq!(decode(&text), Some(checkpoint));
        for torn in 0..text.len() {
            assert_eq!(decode(&text[..torn]), None, "{:?}", &text[..torn]);
        }
        for foreign in [
            "1\n1234 7\n",
            "0\n1234\n",
            "0\n-5 1\n",
            "0\n5 -2\n",
            "0\n5 1 2\n",
        ] {
            assert_eq!(decode(foreign), None, "{foreign:?}");
        }

        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        write(dir.path(), checkpoint, false).unwrap();
        assert_eq!(read(dir.path()), Some(checkpoint));
        let later = HighWatermarkCheckpoint {
            offset: Offset(2000),
            epoch: 8,
        };
        assert!(write_all(&[(dir.path().to_path_buf(), later)], true).is_empty());
        assert_eq!(read(dir.path()), Some(later));
        std::fs::write(dir.path().join(CHECKPOINT_FILE), "").unwrap();
        assert_eq!(
            read(dir.path()),
            None,
            "an empty file (a crash after the rename)"
        );
        let gone = dir.path().join("deleted-topic-0");
        assert!(write_all(&[(gone, later)], false).is_empty());
    }
}
