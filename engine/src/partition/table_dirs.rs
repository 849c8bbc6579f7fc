//! Partition directories (part of [`super::PartitionTable`]'s module): Kafka's
//! `<topic>-<partition>` layout and Spate's `.replica<k>` names for further replicas on one
//! node, `partition.metadata`, preparing a replica's directory, deleting one (renamed first,
//! so a crash never leaves half a directory under a partition's name), the clean-up of
//! orphans at start, and the I/O of a [`Retirement`].

use std::path::{Path, PathBuf};

use spate_storage::StorageError;
use uuid::Uuid;

use super::{Retirement, PARTITION_METADATA_FILE};
use crate::metadata::image::{MetadataImage, TopicImage};
use crate::partition::BrokerId;

pub(super) async fn retire(retirement: Retirement) {
    let (dir, topic_id, partition) = match retirement {
        Retirement::Close(replica) => {
            if let Err(error) = replica.log().close().await {
                tracing::error!(partition = %replica.key(), %error, "error closing partition log");
            }
            // After the close, which made everything pending durable: the high watermark
            // the next open starts from, durably (a clean stop's is the exact one).
            if let Some((dir, checkpoint)) = replica.high_watermark_checkpoint_due() {
                let written = glommio::executor()
                    .spawn_blocking(move || {
                        spate_storage::high_watermark::write(&dir, checkpoint, true)
                    })
                    .await;
                if let Err(error) = written {
                    tracing::warn!(partition = %replica.key(), %error, "cannot write the high watermark checkpoint");
                }
            }
            return;
        }
        Retirement::Delete(replica) => {
            if let Err(error) = replica.log().close().await {
                tracing::warn!(partition = %replica.key(), %error, "error closing a deleted partition's log");
            }
            (
                replica.log().dir().to_path_buf(),
                replica.topic_id(),
                replica.key().to_string(),
            )
        }
        Retirement::DeleteDirectory { dir, topic_id } => {
            let name = dir
                .file_name()
                .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
            (dir, topic_id, name)
        }
    };
    // Renamed first (one atomic step, so a crash never leaves half a directory under a
    // partition's name), then removed; `remove_dir_all` blocks, so off the shard.
    let removed = glommio::executor()
        .spawn_blocking(move || match rename_for_deletion(&dir, topic_id)? {
            Some(renamed) => std::fs::remove_dir_all(renamed).map(|()| true),
            None => Ok(false),
        })
        .await;
    match removed {
        Ok(true) => tracing::info!(%partition, "deleted partition log"),
        Ok(false) => {}
        Err(error) => tracing::error!(%partition, %error, "cannot delete partition log"),
    }
}

/// `<data>/<topic>-<partition>`, Kafka's layout.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// What follows `<topic>-<partition>` in the directory of a further replica of a partition
/// on the same node.
const REPLICA_SUFFIX: &str = ".replica";

/// The directory of `broker`'s replica of a partition whose replicas are `replicas`:
/// [`partition_dir`], unless several replicas of the partition sit on `broker`'s node (a
/// replication factor above the node count puts them on distinct shards): then the first
/// of them in replica order keeps that name and the k-th further one gets
/// `<topic>-<partition>.replica<k>`. The name depends on the replica's rank among its
/// node's replicas, not on its shard, so that a changed shard count that moves a replica
/// to another shard moves no data. No topic's partition directory can take such a name:
/// those end in `-<digits>`.
pub fn replica_dir(
    data_dir: &Path,
    topic: &str,
    partition: i32,
    replicas: &[BrokerId],
    broker: BrokerId,
) -> PathBuf {
    let rank = replicas
        .iter()
        .filter(|replica| replica.node() == broker.node())
        .position(|replica| *replica == broker)
        .unwrap_or(0);
    if rank == 0 {
        partition_dir(data_dir, topic, partition)
    } else {
        data_dir.join(format!("{topic}-{partition}{REPLICA_SUFFIX}{rank}"))
    }
}

/// The topic and partition a partition or replica directory's name names.
fn parse_replica_dir_name(name: &str) -> Option<(&str, i32)> {
    let name = match name.rsplit_once(REPLICA_SUFFIX) {
        Some((partition_dir, rank)) if rank.parse::<u32>().is_ok() => partition_dir,
        _ => name,
    };
    let (topic, partition) = name.rsplit_once('-')?;
    Some((topic, partition.parse().ok()?))
}

/// `partition.metadata` as Kafka writes it.
fn partition_metadata(topic_id: Uuid) -> String {
    format!("version: 0\ntopic_id: {topic_id}\n")
}

/// Renames a partition directory to `<name>.<random>-delete` (and syncs its parent) if it
/// belongs to the topic `topic_id`; a directory of a newer topic of the same name stays.
/// Directories so named are removed at start if a crash interrupted their removal.
fn rename_for_deletion(dir: &Path, topic_id: Uuid) -> std::io::Result<Option<PathBuf>> {
    match std::fs::read_to_string(dir.join(PARTITION_METADATA_FILE)) {
        Ok(found) if found == partition_metadata(topic_id) => {}
        Ok(_) => return Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    }
    let renamed = deletion_name(dir);
    std::fs::rename(dir, &renamed)?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(Some(renamed))
}

/// The name a directory is renamed to before it is removed.
fn deletion_name(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    dir.with_file_name(format!("{name}.{}-delete", Uuid::new_v4().simple()))
}

/// Prepares a replica's directory (see [`replica_dir`]) for this topic: a directory left by a
/// deleted topic of the same name (its `partition.metadata` names another id) is removed
/// first.
pub(super) fn prepare_partition_dir(
    dir: PathBuf,
    topic: &TopicImage,
) -> Result<PathBuf, StorageError> {
    let metadata_path = dir.join(PARTITION_METADATA_FILE);
    let expected = partition_metadata(topic.id);
    match std::fs::read_to_string(&metadata_path) {
        Ok(found) if found == expected => return Ok(dir),
        Ok(_) => {
            tracing::warn!(dir = %dir.display(), "removing partition directory of a deleted topic");
            std::fs::remove_dir_all(&dir)?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error.into()),
    }
    std::fs::create_dir_all(&dir)?;
    crate::metadata::store::write_atomically(&metadata_path, expected.as_bytes())
        .map_err(|error| StorageError::Io(std::io::Error::other(format!("{error:#}"))))?;
    Ok(dir)
}

/// Partition directories under `data_dir` that no topic of `image` owns (left by a topic
/// deleted before a crash), renamed to `<name>.<topic id>-delete` at once and removed on a
/// background thread. Runs at start, before any shard serves.
pub fn remove_orphaned_partition_dirs(
    data_dir: &Path,
    image: &MetadataImage,
) -> std::io::Result<usize> {
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if !path.is_dir() {
            continue;
        }
        if name.ends_with("-delete") {
            orphans.push(path);
            continue;
        }
        let Some((topic, partition)) = parse_replica_dir_name(name) else {
            continue;
        };
        // A directory whose `partition.metadata` is gone is half-deleted (or half-created):
        // it is an orphan unless the image has that partition.
        let found = std::fs::read_to_string(path.join(PARTITION_METADATA_FILE)).ok();
        let owned = image.topic(topic).is_some_and(|owner| {
            partition < owner.partition_count()
                && found
                    .as_ref()
                    .is_none_or(|found| *found == partition_metadata(owner.id))
        });
        if !owned {
            let renamed = deletion_name(&path);
            std::fs::rename(&path, &renamed)?;
            tracing::info!(dir = %name, "removing the partition directory of a deleted topic");
            orphans.push(renamed);
        }
    }
    let count = orphans.len();
    if count > 0 {
        std::thread::Builder::new()
            .name("spate-delete".into())
            .spawn(move || {
                for dir in orphans {
                    if let Err(error) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(dir = %dir.display(), %error, "cannot remove a deleted partition directory");
                    }
                }
            })?;
    }
    Ok(count)
}
