//! The node's topic catalog: which topics exist, their ids, partition counts and config
//! overrides, plus the producer-id allocator. Persisted as `<data>/topics.json`.
//!
//! Concurrency contract: one [`SharedCatalog`] per node, shared by every shard through an
//! `Arc`. It is control-plane state: changed only by admin requests and automatic topic
//! creation, under a mutex, with the file rewritten atomically (write, fsync, rename, fsync
//! directory) before the change is visible. Shards keep their own `Arc<Catalog>` snapshot
//! and compare [`SharedCatalog::version`] (one atomic load, no shared write) on each request,
//! so the produce and fetch paths never contend on it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka's limit on topic name length.
const TOPIC_NAME_MAX_CHARS: usize = 249;
/// Producer ids are handed out in blocks; only a block's end is persisted, so a crash
/// skips the rest of a block but never reuses an id.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// One topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// The topic's name.
    pub name: String,
    /// The topic's id (Kafka's topic UUID); distinguishes a re-created topic from the old one.
    pub id: Uuid,
    /// Number of partitions, 0..partitions.
    pub partitions: i32,
    /// Config overrides by Kafka name.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// An immutable snapshot of the catalog.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// The cluster id reported in Metadata and DescribeCluster.
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
}

impl Catalog {
    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<TopicMeta>> {
        self.topics.values().find(|topic| topic.id == id)
    }
}

#[derive(Serialize, Deserialize)]
struct CatalogFile {
    cluster_id: String,
    producer_id_limit: i64,
    topics: Vec<TopicMeta>,
}

struct State {
    catalog: Arc<Catalog>,
    next_producer_id: i64,
    producer_id_limit: i64,
}

/// Why a catalog change was refused. Each maps to one Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// TOPIC_ALREADY_EXISTS.
    #[error("Topic '{0}' already exists.")]
    TopicExists(String),
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("This server does not host this topic-partition.")]
    UnknownTopic,
    /// INVALID_TOPIC_EXCEPTION.
    #[error("{0}")]
    InvalidTopic(String),
    /// INVALID_PARTITIONS.
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_CONFIG.
    #[error("{0}")]
    InvalidConfig(String),
    /// The catalog file could not be written: the broker cannot keep its promise that
    /// topics survive a restart, so the caller exits the process.
    #[error("cannot persist the topic catalog: {0:#}")]
    Persist(anyhow::Error),
}

/// The node-wide catalog; see the module docs for its concurrency contract.
pub struct SharedCatalog {
    version: AtomicU64,
    state: Mutex<State>,
    path: PathBuf,
}

impl SharedCatalog {
    /// Loads `<data_dir>/topics.json`, or starts an empty catalog with a new cluster id.
    pub fn load(data_dir: &Path) -> anyhow::Result<SharedCatalog> {
        let path = data_dir.join("topics.json");
        let file = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<CatalogFile>(&bytes)
                .with_context(|| format!("corrupt topic catalog {}", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => CatalogFile {
                cluster_id: Uuid::new_v4().simple().to_string(),
                producer_id_limit: 0,
                topics: Vec::new(),
            },
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()))
            }
        };
        let catalog = Catalog {
            cluster_id: file.cluster_id,
            topics: file
                .topics
                .into_iter()
                .map(|topic| (topic.name.clone(), Arc::new(topic)))
                .collect(),
        };
        let shared = SharedCatalog {
            version: AtomicU64::new(1),
            state: Mutex::new(State {
                catalog: Arc::new(catalog),
                next_producer_id: file.producer_id_limit,
                producer_id_limit: file.producer_id_limit,
            }),
            path,
        };
        shared.persist(&shared.lock())?;
        Ok(shared)
    }

    /// Changes whenever the catalog does; cheap to poll.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current catalog.
    pub fn snapshot(&self) -> Arc<Catalog> {
        self.lock().catalog.clone()
    }

    /// Creates a topic. `validate_only` checks without creating.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<TopicMeta>, CatalogError> {
        validate_topic_name(name)?;
        if partitions < 1 {
            return Err(CatalogError::InvalidPartitions(format!(
                "Number of partitions must be larger than 0, got {partitions}."
            )));
        }
        crate::topic_config::validate(&configs).map_err(CatalogError::InvalidConfig)?;
        let mut state = self.lock();
        if state.catalog.topics.contains_key(name) {
            return Err(CatalogError::TopicExists(name.to_string()));
        }
        let topic = Arc::new(TopicMeta {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
        });
        if !validate_only {
            self.update(&mut state, |catalog| {
                catalog.topics.insert(name.to_string(), topic.clone());
            })?;
        }
        Ok(topic)
    }

    /// Deletes a topic; returns what was deleted.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicMeta>, CatalogError> {
        let mut state = self.lock();
        let topic = state
            .catalog
            .topic(name)
            .cloned()
            .ok_or(CatalogError::UnknownTopic)?;
        self.update(&mut state, |catalog| {
            catalog.topics.remove(name);
        })?;
        Ok(topic)
    }

    /// Raises a topic's partition count to `total`.
    pub fn add_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), CatalogError> {
        let mut state = self.lock();
        let topic = state
            .catalog
            .topic(name)
            .cloned()
            .ok_or(CatalogError::UnknownTopic)?;
        if total <= topic.partitions {
            return Err(CatalogError::InvalidPartitions(format!(
                "Topic currently has {} partitions, which is higher than or equal to the requested {total}.",
                topic.partitions
            )));
        }
        if validate_only {
            return Ok(());
        }
        let grown = Arc::new(TopicMeta {
            partitions: total,
            ..(*topic).clone()
        });
        self.update(&mut state, |catalog| {
            catalog.topics.insert(name.to_string(), grown);
        })
    }

    /// Replaces a topic's config overrides with `configs` (after validation).
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), CatalogError> {
        crate::topic_config::validate(&configs).map_err(CatalogError::InvalidConfig)?;
        let mut state = self.lock();
        let topic = state
            .catalog
            .topic(name)
            .cloned()
            .ok_or(CatalogError::UnknownTopic)?;
        if validate_only || topic.configs == configs {
            return Ok(());
        }
        let changed = Arc::new(TopicMeta {
            configs,
            ..(*topic).clone()
        });
        self.update(&mut state, |catalog| {
            catalog.topics.insert(name.to_string(), changed);
        })
    }

    /// A producer id never handed out before on this node.
    pub fn allocate_producer_id(&self) -> Result<i64, CatalogError> {
        crate::stats::cross_shard(crate::stats::CrossShard::ProducerId);
        let mut state = self.lock();
        if state.next_producer_id >= state.producer_id_limit {
            state.producer_id_limit = state.next_producer_id + PRODUCER_ID_BLOCK;
            self.persist(&state).map_err(CatalogError::Persist)?;
        }
        let id = state.next_producer_id;
        state.next_producer_id += 1;
        Ok(id)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock is a bug that already took its shard down; the
        // state it guards is replaced whole on each change, so it is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies a change to a copy, persists it, then publishes it.
    fn update(
        &self,
        state: &mut State,
        change: impl FnOnce(&mut Catalog),
    ) -> Result<(), CatalogError> {
        crate::stats::cross_shard(crate::stats::CrossShard::CatalogChange);
        let mut next = (*state.catalog).clone();
        change(&mut next);
        let previous = std::mem::replace(&mut state.catalog, Arc::new(next));
        if let Err(error) = self.persist(state) {
            state.catalog = previous;
            return Err(CatalogError::Persist(error));
        }
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Writes the catalog atomically. This is blocking file I/O on a shard thread; it runs
    /// only on admin operations, never on the produce or fetch path.
    fn persist(&self, state: &State) -> anyhow::Result<()> {
        let file = CatalogFile {
            cluster_id: state.catalog.cluster_id.clone(),
            producer_id_limit: state.producer_id_limit,
            topics: state
                .catalog
                .topics
                .values()
                .map(|topic| (**topic).clone())
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)?;
        write_atomically(&self.path, &bytes)
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

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), CatalogError> {
    let invalid = |why: String| Err(CatalogError::InvalidTopic(why));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.chars().count() > TOPIC_NAME_MAX_CHARS {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_MAX_CHARS} characters, topic name: {name}"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return invalid(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_survive_reload_and_ids_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = SharedCatalog::load(dir.path()).unwrap();
        let version = catalog.version();
        let topic = catalog
            .create_topic("orders", 3, BTreeMap::new(), false)
            .unwrap();
        assert!(catalog.version() > version);
        catalog.add_partitions("orders", 5, false).unwrap();
        let cluster_id = catalog.snapshot().cluster_id.clone();
        drop(catalog);
        let reloaded = SharedCatalog::load(dir.path()).unwrap().snapshot();
        assert_eq!(reloaded.cluster_id, cluster_id);
        let orders = reloaded.topic("orders").unwrap();
        assert_eq!((orders.id, orders.partitions), (topic.id, 5));
    }

    #[test]
    fn refuses_duplicates_bad_names_and_shrinking() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = SharedCatalog::load(dir.path()).unwrap();
        catalog
            .create_topic("a", 2, BTreeMap::new(), false)
            .unwrap();
        assert!(matches!(
            catalog.create_topic("a", 2, BTreeMap::new(), false),
            Err(CatalogError::TopicExists(_))
        ));
        for bad in ["", ".", "..", "has space", &"x".repeat(250)] {
            assert!(matches!(
                catalog.create_topic(bad, 1, BTreeMap::new(), false),
                Err(CatalogError::InvalidTopic(_))
            ));
        }
        assert!(matches!(
            catalog.add_partitions("a", 2, false),
            Err(CatalogError::InvalidPartitions(_))
        ));
        assert!(catalog.create_topic("b", 1, BTreeMap::new(), true).is_ok());
        assert!(catalog.snapshot().topic("b").is_none(), "validate_only");
    }

    #[test]
    fn producer_ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = SharedCatalog::load(dir.path()).unwrap();
        let ids: Vec<i64> = (0..5)
            .map(|_| first.allocate_producer_id().unwrap())
            .collect();
        drop(first);
        let second = SharedCatalog::load(dir.path()).unwrap();
        let next = second.allocate_producer_id().unwrap();
        assert!(ids.iter().all(|&id| id < next));
    }
}
