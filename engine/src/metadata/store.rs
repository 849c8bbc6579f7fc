//! The single-node controller's durable metadata: a snapshot plus a journal of record batches.
//!
//! Files, in `<data>/metadata/`:
//! - `snapshot.json`: the image's durable part (cluster id, topics with their assignments,
//!   the producer-id high mark) and the generation of the journal that continues it;
//! - `journal-<generation>.log`: one line per committed batch of records, each
//!   `<crc32c, 8 hex digits> <json array of records>\n`, appended and fdatasync'ed before the
//!   batch counts (the controller answers nobody until then).
//!
//! Writing a batch costs one `write` and one `fdatasync`, whatever the catalog's size: topic
//! creation is linear, unlike the `topics.json` rewrite it replaces. When a journal holds
//! [`SNAPSHOT_AFTER_RECORDS`] records, a new snapshot naming the next generation is written
//! atomically (temporary file, fsync, rename, directory fsync) and only then is a new journal
//! started and the old one deleted, so a crash at any point leaves a snapshot whose journal
//! holds exactly the batches that came after it. A torn last line (a crash mid-write) fails its
//! checksum and is cut off: that batch was never acknowledged.
//!
//! A data directory of an older Spate holds `topics.json` instead; [`MetadataStore::open`]
//! reads it as a [`LegacyCatalog`], which the controller turns into records at start, and then
//! renames it to `topics.json.migrated`.
//!
//! Concurrency contract: owned by the controller; every method does blocking file I/O and is
//! called from glommio's blocking pool or before the shards start, never on a shard thread.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::image::{MetadataImage, TopicImage};
use super::records::MetadataRecord;

/// Records a journal may hold before the next snapshot.
pub const SNAPSHOT_AFTER_RECORDS: usize = 20_000;

/// The journal's directory under the data directory.
pub const DIRECTORY: &str = "metadata";
const SNAPSHOT_FILE: &str = "snapshot.json";
const LEGACY_CATALOG_FILE: &str = "topics.json";
const SNAPSHOT_FORMAT: u32 = 1;

/// The durable part of an image, as `snapshot.json` holds it.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    format: u32,
    /// The journal generation whose batches come after this snapshot.
    journal: u64,
    cluster_id: String,
    next_producer_id: i64,
    topics: Vec<TopicImage>,
}

/// A topic as the old `topics.json` held it.
#[derive(Clone, Debug, Deserialize)]
pub struct LegacyTopic {
    /// Name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Partition count.
    pub partitions: i32,
    /// Config overrides.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// The old `topics.json`, to be turned into records.
#[derive(Clone, Debug, Deserialize)]
pub struct LegacyCatalog {
    /// The cluster id.
    pub cluster_id: String,
    /// Producer ids below this were handed out.
    pub producer_id_limit: i64,
    /// The topics.
    pub topics: Vec<LegacyTopic>,
}

/// What was on disk at start.
pub struct Loaded {
    /// The image of every durable record.
    pub image: MetadataImage,
    /// An old `topics.json`, when there was no metadata yet.
    pub legacy: Option<LegacyCatalog>,
}

/// See the module docs.
pub struct MetadataStore {
    dir: PathBuf,
    generation: u64,
    journal: File,
    journal_records: usize,
}

impl MetadataStore {
    /// Loads the snapshot and replays its journal (cutting off a torn last batch). Creates the
    /// directory and an empty journal on first start.
    pub fn open(data_dir: &Path) -> anyhow::Result<(MetadataStore, Loaded)> {
        let dir = data_dir.join(DIRECTORY);
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let (mut image, generation) = match fs::read(&snapshot_path) {
            Ok(bytes) => {
                let snapshot: SnapshotFile = serde_json::from_slice(&bytes).with_context(|| {
                    format!("corrupt metadata snapshot {}", snapshot_path.display())
                })?;
                (
                    image_of(snapshot_path.as_path(), &snapshot)?,
                    snapshot.journal,
                )
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => (MetadataImage::default(), 0),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot read {}", snapshot_path.display()))
            }
        };
        let journal_path = journal_path(&dir, generation);
        let journal_records = replay_journal(&journal_path, &mut image)?;
        let legacy = if image.version == 0 {
            read_legacy(&data_dir.join(LEGACY_CATALOG_FILE))?
        } else {
            None
        };
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .with_context(|| format!("cannot open {}", journal_path.display()))?;
        let store = MetadataStore {
            dir,
            generation,
            journal,
            journal_records,
        };
        Ok((store, Loaded { image, legacy }))
    }

    /// Appends one batch of records and makes it durable. Non-durable records
    /// ([`MetadataRecord::is_durable`]) are left out; a batch of none writes nothing.
    pub fn append(&mut self, records: &[MetadataRecord]) -> io::Result<()> {
        let durable: Vec<&MetadataRecord> = records
            .iter()
            .filter(|record| record.is_durable())
            .collect();
        if durable.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_vec(&durable).map_err(io::Error::other)?;
        let mut line = format!("{:08x} ", crc32c::crc32c(&json)).into_bytes();
        line.extend_from_slice(&json);
        line.push(b'\n');
        let length_before = self.journal.metadata()?.len();
        let written = self
            .journal
            .write_all(&line)
            .and_then(|()| self.journal.sync_data());
        if let Err(error) = written {
            // Leave no partial line behind for the next batch to follow: cut back to where
            // this batch started (best effort; a torn line is also cut off at the next start).
            let _ = self.journal.set_len(length_before);
            return Err(error);
        }
        self.journal_records += durable.len();
        Ok(())
    }

    /// Whether the journal has grown enough for [`Self::snapshot`].
    pub fn wants_snapshot(&self) -> bool {
        self.journal_records >= SNAPSHOT_AFTER_RECORDS
    }

    /// Writes a snapshot of `image` (which must include every batch appended so far) and
    /// starts a new, empty journal.
    pub fn snapshot(&mut self, image: &MetadataImage) -> anyhow::Result<()> {
        let next = self.generation + 1;
        let snapshot = SnapshotFile {
            format: SNAPSHOT_FORMAT,
            journal: next,
            cluster_id: image.cluster_id.clone(),
            next_producer_id: image.next_producer_id,
            topics: image.topics().map(|topic| (**topic).clone()).collect(),
        };
        let bytes = serde_json::to_vec(&snapshot)?;
        let next_journal_path = journal_path(&self.dir, next);
        // An empty journal of the next generation must exist before the snapshot names it.
        let next_journal = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&next_journal_path)?;
        next_journal.sync_all()?;
        write_atomically(&self.dir.join(SNAPSHOT_FILE), &bytes)?;
        let old = journal_path(&self.dir, self.generation);
        self.journal = OpenOptions::new().append(true).open(&next_journal_path)?;
        self.generation = next;
        self.journal_records = 0;
        if let Err(error) = fs::remove_file(&old) {
            tracing::warn!(path = %old.display(), %error, "cannot delete an old metadata journal");
        }
        Ok(())
    }

    /// Renames a migrated `topics.json` so that it is not read again.
    pub fn retire_legacy_catalog(data_dir: &Path) {
        let path = data_dir.join(LEGACY_CATALOG_FILE);
        let retired = data_dir.join("topics.json.migrated");
        if let Err(error) = fs::rename(&path, &retired) {
            tracing::warn!(path = %path.display(), %error, "cannot rename the migrated topic catalog");
        }
    }
}

fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("journal-{generation:020}.log"))
}

/// The image a snapshot describes.
fn image_of(path: &Path, snapshot: &SnapshotFile) -> anyhow::Result<MetadataImage> {
    if snapshot.format != SNAPSHOT_FORMAT {
        anyhow::bail!(
            "metadata snapshot {} has format {}, this Spate reads format {SNAPSHOT_FORMAT}",
            path.display(),
            snapshot.format
        );
    }
    let mut records = vec![
        MetadataRecord::ClusterId {
            cluster_id: snapshot.cluster_id.clone(),
        },
        MetadataRecord::ProducerIds {
            next: snapshot.next_producer_id,
        },
    ];
    for topic in &snapshot.topics {
        records.extend(topic.creation_records());
    }
    Ok(MetadataImage::default().apply_all(&records)?)
}

/// Applies every intact batch of a journal; cuts the file after the last one. Returns how many
/// records it held.
fn replay_journal(path: &Path, image: &mut MetadataImage) -> anyhow::Result<usize> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut reader = BufReader::new(file);
    let mut intact_bytes = 0u64;
    let mut records = 0usize;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        let Some(batch) = (read > 0).then(|| parse_line(&line)).flatten() else {
            break;
        };
        for record in &batch {
            image
                .apply(record)
                .with_context(|| format!("in {}", path.display()))?;
        }
        records += batch.len();
        intact_bytes += read as u64;
    }
    let length = fs::metadata(path)?.len();
    if intact_bytes < length {
        tracing::warn!(path = %path.display(), cut_bytes = length - intact_bytes, "cutting a torn batch off the metadata journal");
        OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(intact_bytes)?;
    }
    Ok(records)
}

/// A journal line's records, if the line is whole and its checksum matches.
fn parse_line(line: &[u8]) -> Option<Vec<MetadataRecord>> {
    let line = line.strip_suffix(b"\n")?;
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    (crc32c::crc32c(json) == crc)
        .then(|| serde_json::from_slice(json).ok())
        .flatten()
}

fn read_legacy(path: &Path) -> anyhow::Result<Option<LegacyCatalog>> {
    match fs::read(path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("corrupt topic catalog {}", path.display())
            })?))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
