//! The controller quorum's replicated state machine: the metadata image.
//!
//! Every quorum member (voters and, later, broker-only nodes as learners) applies the committed
//! entries of the metadata log, each a batch of [`MetadataRecord`]s, to its
//! [`MetadataImage`], in log order, and hands each new image to its [`ImageSink`] (on a node:
//! shard 0, which publishes it to every shard over the mesh). Every member starts from the same
//! empty image and applies the same entries, so `MetadataImage::version` (records applied)
//! agrees across the cluster.
//!
//! Snapshots are records too (KRaft's way): [`MetadataImage::to_records`] at the snapshot's log
//! id, with the image's version, serialized as JSON and kept in `raft-snapshot` beside the log
//! (written atomically, with a CRC-32C), so that a restarted member whose log was purged
//! starts from its snapshot (openraft reads it through `get_current_snapshot` when the log's
//! purged id is ahead of `applied_state`, which an in-memory machine always reports empty).
//!
//! Concurrency contract: owned by the Raft task of one executor (`!Send`); the sink is called
//! from that task and must not block.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};

use super::QuorumTypes as C;
use crate::metadata::image::MetadataImage;
use crate::metadata::records::MetadataRecord;
use crate::metadata::MetadataUpdate;

/// The snapshot file, in the quorum's directory.
pub const SNAPSHOT_FILE: &str = "raft-snapshot";
/// First bytes of the snapshot file.
const SNAPSHOT_MAGIC: &[u8; 8] = b"SPATESNP";
/// Bumped when the snapshot body changes incompatibly.
const SNAPSHOT_FORMAT: u32 = 1;

/// One entry of the metadata log: the records of one controller round, applied together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumCommand {
    /// The records, in order.
    pub records: Vec<MetadataRecord>,
}

impl std::fmt::Display for QuorumCommand {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} metadata records", self.records.len())
    }
}

/// Where a member's new images go.
pub trait ImageSink {
    /// `update` has been applied; called in log order, once per entry that changed the image.
    fn applied(&self, update: MetadataUpdate);
}

/// The newest snapshot, shared between a machine and its builders.
type SharedSnapshot = Rc<RefCell<Option<SnapshotOf<C, Vec<u8>>>>>;

/// What a snapshot's bytes hold.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    /// The image's version at the snapshot.
    version: u64,
    /// Records that rebuild the image.
    records: Vec<MetadataRecord>,
}

/// What the snapshot file holds: the snapshot's Raft meta and its bytes.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    format: u32,
    meta: SnapshotMetaOf<C>,
    data: Vec<u8>,
}

/// See the module docs.
pub struct MetadataStateMachine {
    image: Arc<MetadataImage>,
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    /// The newest snapshot, as stored in `snapshot_path`; shared with the snapshot builders,
    /// which may finish while the machine applies more entries.
    snapshot: SharedSnapshot,
    snapshot_path: PathBuf,
    sink: Rc<dyn ImageSink>,
}

impl MetadataStateMachine {
    /// A member's state machine, from the snapshot in `dir` if there is one. The image starts
    /// empty otherwise: openraft re-applies the committed log.
    pub fn open(dir: &Path, sink: Rc<dyn ImageSink>) -> anyhow::Result<MetadataStateMachine> {
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let snapshot = read_snapshot_file(&snapshot_path)?;
        let mut machine = MetadataStateMachine {
            image: Arc::new(MetadataImage::default()),
            last_applied: None,
            membership: StoredMembershipOf::<C>::default(),
            snapshot: Rc::new(RefCell::new(None)),
            snapshot_path,
            sink,
        };
        if let Some(snapshot) = snapshot {
            // Starting from the snapshot is what openraft would ask for anyway once the log
            // before it is purged; doing it here keeps `applied_state` and the image in step.
            machine.load(&snapshot.meta, &snapshot.snapshot)?;
            *machine.snapshot.borrow_mut() = Some(snapshot);
        }
        Ok(machine)
    }

    /// The image applied so far.
    pub fn image(&self) -> &Arc<MetadataImage> {
        &self.image
    }

    fn load(&mut self, meta: &SnapshotMetaOf<C>, data: &[u8]) -> io::Result<()> {
        let body: SnapshotBody = serde_json::from_slice(data).map_err(invalid_data)?;
        let image =
            MetadataImage::from_snapshot(body.version, &body.records).map_err(invalid_data)?;
        self.image = Arc::new(image);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    fn apply_records(&mut self, records: Vec<MetadataRecord>) {
        if records.is_empty() {
            return;
        }
        match self.image.apply_all(&records) {
            Ok(image) => {
                self.image = Arc::new(image);
                self.sink.applied(MetadataUpdate {
                    image: self.image.clone(),
                    records: Arc::new(records),
                });
            }
            // The leader's controller made these records against this same image, so a
            // refusal is a bug; every member refuses alike, so images stay equal. Skipping
            // keeps the quorum alive for an operator to see this line.
            Err(error) => tracing::error!(%error, "a committed metadata entry was not applied"),
        }
    }
}

impl RaftSnapshotBuilder<C> for MetadataStateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        let body = SnapshotBody {
            version: self.image.version,
            records: self.image.to_records(),
        };
        let snapshot = Snapshot {
            meta: SnapshotMetaOf::<C> {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
            },
            snapshot: serde_json::to_vec(&body).map_err(invalid_data)?,
        };
        write_snapshot_file(&self.snapshot_path, &snapshot).await?;
        *self.snapshot.borrow_mut() = Some(snapshot.clone());
        Ok(snapshot)
    }
}

impl RaftStateMachine<C> for MetadataStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(command) => self.apply_records(command.records),
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembershipOf::<C>::new(Some(entry.log_id), membership)
                }
            }
            if let Some(responder) = responder {
                responder.send(self.image.version);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // The builder owns a copy of what it snapshots, so openraft may build while this
        // machine applies more entries.
        SnapshotBuilder {
            machine: MetadataStateMachine {
                image: self.image.clone(),
                last_applied: self.last_applied,
                membership: self.membership.clone(),
                snapshot: self.snapshot.clone(),
                snapshot_path: self.snapshot_path.clone(),
                sink: self.sink.clone(),
            },
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let snapshot = Snapshot {
            meta: meta.clone(),
            snapshot,
        };
        // Validate before anything changes: a bad snapshot from the leader leaves this member
        // as it was.
        let mut loaded = MetadataStateMachine {
            image: Arc::new(MetadataImage::default()),
            last_applied: None,
            membership: StoredMembershipOf::<C>::default(),
            snapshot: Rc::new(RefCell::new(None)),
            snapshot_path: self.snapshot_path.clone(),
            sink: self.sink.clone(),
        };
        loaded.load(&snapshot.meta, &snapshot.snapshot)?;
        write_snapshot_file(&self.snapshot_path, &snapshot).await?;
        self.image = loaded.image;
        self.last_applied = loaded.last_applied;
        self.membership = loaded.membership;
        *self.snapshot.borrow_mut() = Some(snapshot);
        // The shards move to the snapshot's image as a whole; no records lead to it.
        self.sink.applied(MetadataUpdate {
            image: self.image.clone(),
            records: Arc::new(Vec::new()),
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Vec<u8>>>, io::Error> {
        Ok(self.snapshot.borrow().clone())
    }
}

/// Builds a snapshot of the state at the moment openraft asked for the builder.
pub struct SnapshotBuilder {
    machine: MetadataStateMachine,
}

impl RaftSnapshotBuilder<C> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        self.machine.build_snapshot().await
    }
}

fn invalid_data(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// `magic, u32 LE CRC-32C of the body, body` where the body is the JSON of [`SnapshotFile`].
fn encode_snapshot_file(snapshot: &SnapshotOf<C, Vec<u8>>) -> io::Result<Vec<u8>> {
    let file = SnapshotFile {
        format: SNAPSHOT_FORMAT,
        meta: snapshot.meta.clone(),
        data: snapshot.snapshot.clone(),
    };
    let body = serde_json::to_vec(&file).map_err(invalid_data)?;
    let mut bytes = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 4 + body.len());
    bytes.extend_from_slice(SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

fn decode_snapshot_file(bytes: &[u8]) -> io::Result<SnapshotOf<C, Vec<u8>>> {
    let header = SNAPSHOT_MAGIC.len() + 4;
    if bytes.len() < header || &bytes[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
        return Err(invalid_data("not a Spate metadata snapshot"));
    }
    let crc = u32::from_le_bytes(
        bytes[SNAPSHOT_MAGIC.len()..header]
            .try_into()
            .unwrap_or([0; 4]),
    );
    let body = &bytes[header..];
    if crc32c::crc32c(body) != crc {
        return Err(invalid_data("the snapshot's checksum does not match"));
    }
    let file: SnapshotFile = serde_json::from_slice(body).map_err(invalid_data)?;
    if file.format != SNAPSHOT_FORMAT {
        return Err(invalid_data(format!(
            "snapshot format {} is not {SNAPSHOT_FORMAT}",
            file.format
        )));
    }
    Ok(Snapshot {
        meta: file.meta,
        snapshot: file.data,
    })
}

/// Writes the snapshot atomically (tmp, fdatasync, rename, directory sync) on glommio's
/// blocking pool, so the shard keeps serving meanwhile.
async fn write_snapshot_file(path: &Path, snapshot: &SnapshotOf<C, Vec<u8>>) -> io::Result<()> {
    let bytes = encode_snapshot_file(snapshot)?;
    let path = path.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || {
            crate::metadata::store::write_atomically(&path, &bytes)
                .map_err(|error| io::Error::other(format!("{error:#}")))
        })
        .await
}

/// The snapshot in `path`, if any. A damaged snapshot stops the start: the log before it may
/// be purged, so the member cannot rebuild the image without it (an operator can delete the
/// quorum directory of this member and let it catch up from the leader).
fn read_snapshot_file(path: &Path) -> anyhow::Result<Option<SnapshotOf<C, Vec<u8>>>> {
    match std::fs::read(path) {
        Ok(bytes) => decode_snapshot_file(&bytes)
            .map(Some)
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(anyhow::anyhow!("cannot read {}: {error}", path.display())),
    }
}
