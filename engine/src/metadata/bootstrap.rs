//! A node's metadata at start: load the journal, register this node's brokers, migrate an
//! old `topics.json`, place partitions anew on a changed shard count, create
//! `__consumer_offsets`, and remove the directories of topics deleted before a crash; or, on a
//! node of a replicated cluster ([`start_in_quorum`]), leave all that to the quorum, except
//! the users `spate user add --data-dir` wrote before the node's first start, which go to the
//! controller with its registration.
//!
//! Runs on the main thread before any shard serves, so it may block on files.

use std::path::Path;
use std::sync::Arc;

use super::controller::{ControllerConfig, ControllerState};
use super::image::MetadataImage;
use super::records::MetadataRecord;
use super::store::MetadataStore;

/// What the controller's shard needs to run the controller (all `Send`: it is built on the
/// main thread and moved to the shard's thread).
pub struct ControllerParts {
    /// The state machine, at the published image.
    pub state: ControllerState,
    /// Where its records go.
    pub log: PartsLog,
}

/// Where the controller's records go, before its shard runs.
pub enum PartsLog {
    /// A one-node cluster's journal.
    Journal {
        /// The journal.
        store: MetadataStore,
        /// Start-up records that could not be written yet (a full disk); written with the
        /// next change.
        unpersisted: Vec<MetadataRecord>,
    },
    /// The controller quorum's log, which the controller's shard opens (its member lives on
    /// that shard's executor).
    Quorum,
}

/// The image every shard starts from, and the controller's parts.
pub struct Bootstrapped {
    /// The image at start.
    pub image: Arc<MetadataImage>,
    /// For the controller's shard.
    pub controller: ControllerParts,
    /// On a cluster node's first start, the users `spate user add --data-dir` wrote before
    /// it (sent with its `StartNode`); empty otherwise.
    pub first_credentials: Vec<MetadataRecord>,
}

/// See the module docs. `broker_epoch` is this start's, which the node's brokers register
/// with.
pub fn start(
    data_dir: &Path,
    config: ControllerConfig,
    broker_epoch: i64,
) -> anyhow::Result<Bootstrapped> {
    let (mut store, loaded) = MetadataStore::open(data_dir)?;
    let mut state = ControllerState::new(loaded.image, config);
    let records = state.startup(loaded.legacy.as_ref(), broker_epoch);
    let unpersisted = match store.append(&records) {
        Ok(()) => {
            if loaded.legacy.is_some() {
                tracing::info!("migrated topics.json into the metadata journal");
                MetadataStore::retire_legacy_catalog(data_dir);
            }
            Vec::new()
        }
        Err(error) => {
            // A full disk must not keep the broker from starting and serving reads: what
            // start-up decided holds in memory and is written with the next change.
            tracing::warn!(%error, "cannot write the start-up metadata records yet; continuing");
            records
        }
    };
    let image = Arc::new(state.image().clone());
    match crate::partition::table::remove_orphaned_partition_dirs(data_dir, &image) {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "removing partition directories of deleted topics"),
        Err(error) => {
            tracing::warn!(%error, "cannot look for partition directories of deleted topics")
        }
    }
    Ok(Bootstrapped {
        first_credentials: Vec::new(),
        image,
        controller: ControllerParts {
            state,
            log: PartsLog::Journal { store, unpersisted },
        },
    })
}

/// The start of a node whose metadata lives in the controller quorum: shards start from an
/// empty image and follow what the quorum's member applies (`cluster::publisher`); the node's
/// start-up records are sent to the controller once the member runs
/// (`ControllerRequest::StartNode`). Partition directories are not cleaned against the empty
/// image, which knows no topics yet.
pub fn start_in_quorum(data_dir: &Path, config: ControllerConfig) -> anyhow::Result<Bootstrapped> {
    let first_credentials = first_credentials(data_dir)?;
    Ok(Bootstrapped {
        first_credentials,
        image: Arc::new(MetadataImage::default()),
        controller: ControllerParts {
            state: ControllerState::new(MetadataImage::default(), config),
            log: PartsLog::Quorum,
        },
    })
}

/// Where a cluster node's journal goes once its first users are in the quorum's metadata.
const SENT_CREDENTIALS: &str = "metadata.sent-to-cluster";

/// The users of a cluster node's data directory written before its first start: a journal
/// that `spate user add --data-dir` made (users and nothing else; a node that ever ran has a
/// cluster id), which the node sends with its `StartNode`. A one-node cluster's journal is
/// refused: it cannot yet move into a controller quorum.
fn first_credentials(data_dir: &Path) -> anyhow::Result<Vec<MetadataRecord>> {
    let journal = data_dir.join(super::store::DIRECTORY);
    if !journal.exists() {
        return Ok(Vec::new());
    }
    let (_, loaded) = MetadataStore::open(data_dir)?;
    let image = loaded.image;
    anyhow::ensure!(
        image.cluster_id.is_empty() && image.topics().len() == 0,
        "{} holds the metadata of a one-node cluster; a node cannot yet move it into a \
         controller quorum: start the cluster node on an empty data directory",
        journal.display()
    );
    Ok(image
        .scram_credentials()
        .map(
            |(user, mechanism, credential)| MetadataRecord::ScramCredential {
                user: user.to_string(),
                mechanism,
                credential: credential.clone(),
            },
        )
        .collect())
}

/// Moves the journal of [`first_credentials`] aside once the controller has taken them, so
/// that a later start does not send them again (a user removed online stays removed).
/// Blocking, once in a node's life.
pub fn first_credentials_sent(data_dir: &Path) {
    let journal = data_dir.join(super::store::DIRECTORY);
    match std::fs::rename(&journal, data_dir.join(SENT_CREDENTIALS)) {
        Ok(()) => tracing::info!(
            "the users written before this node's first start are in the cluster's metadata"
        ),
        Err(error) => {
            tracing::warn!(%error, journal = %journal.display(), "cannot move the first users' journal aside; a restart sends them again (only users still absent are added)")
        }
    }
}
