//! The transaction coordinator of one shard: the transactional ids whose
//! `__transaction_state` partition this shard leads, and the plumbing between the handlers,
//! each id's state machine ([`super::state`]) and the log.
//!
//! Every transition is Kafka's: decided on the id's current metadata, marked pending so that
//! no other request races it ([`TxnEntry::begin`]), written to the partition with acks=all,
//! then applied and answered. A prepared commit or abort is answered once written; its
//! markers go to every partition of the transaction in a task of their own
//! ([`super::markers`]), and the transaction is completed (written again) after the last.
//! Meanwhile the producer's next requests get CONCURRENT_TRANSACTIONS, which clients retry.
//!
//! `__transaction_state` is made on first use, as Kafka does: a FindCoordinator or
//! InitProducerId for a transactional id asks the controller for it
//! ([`TxnCoordinator::ensure_topic`]) and answers COORDINATOR_NOT_AVAILABLE until it exists.
//! The coordinator of a partition follows its leadership (`Shard::apply_metadata`): a
//! partition gained is loaded from the log (its ids answer COORDINATOR_LOAD_IN_PROGRESS
//! until then) and its prepared transactions get their markers again; one lost is dropped.
//! The coordinator epoch written into markers is the partition's leader epoch, so that a
//! deposed coordinator's late markers are refused (TRANSACTION_COORDINATOR_FENCED).
//!
//! Concurrency contract: owned by its [`Shard`] (`!Send`); its maps are borrowed only
//! between awaits.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::ResponseError;

use super::markers::{self, Markers};
use super::state::{
    self, AddOutcome, EndOutcome, InitOutcome, InitRequest, TxnEntry, TxnMetadata, TxnState,
};
use super::{state_log, TxnConfig};
use crate::metadata::controller::{ControllerReply, ControllerRequest, NewTopic};
use crate::shard::Shard;

/// One shard's transaction coordinator; see the module docs.
pub struct TxnCoordinator {
    config: TxnConfig,
    entries: RefCell<HashMap<String, TxnEntry>>,
    /// Partitions this shard leads whose ids are not loaded yet.
    unloaded: RefCell<BTreeSet<i32>>,
    /// A load is running.
    loading: Cell<bool>,
    /// The coordinator epoch of each partition this shard leads (its leader epoch).
    epochs: RefCell<BTreeMap<i32, i32>>,
    /// The partition count of `__transaction_state` when this shard last gained one (fixed
    /// once the topic exists).
    partition_count: Cell<i32>,
    /// A request to make `__transaction_state` is out.
    creating: Cell<bool>,
    /// Transactional ids whose markers a task is writing.
    completing: RefCell<BTreeSet<String>>,
    connections: markers::Connections,
}

impl TxnCoordinator {
    /// A coordinator with no ids yet.
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            entries: RefCell::new(HashMap::new()),
            unloaded: RefCell::new(BTreeSet::new()),
            loading: Cell::new(false),
            epochs: RefCell::new(BTreeMap::new()),
            partition_count: Cell::new(0),
            creating: Cell::new(false),
            completing: RefCell::new(BTreeSet::new()),
            connections: RefCell::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// The shard's inter-broker connections for transactions (markers to leaders, a leader's
    /// adds to coordinators).
    pub(crate) fn connections(&self) -> &markers::Connections {
        &self.connections
    }

    /// The `__transaction_state` partition of a transactional id and its leader, if the
    /// topic exists (FindCoordinator's answer).
    pub fn coordinator_of(
        shard: &Shard,
        transactional_id: &str,
    ) -> Option<(i32, crate::partition::BrokerId)> {
        let image = shard.image();
        let topic = image.topic(state_log::TOPIC)?;
        let partition = state_log::partition_for(transactional_id, topic.partition_count());
        let leader = topic.partitions.get(partition as usize)?.leader;
        Some((partition, leader))
    }

    /// Where this shard coordinates `transactional_id`: its partition and the coordinator
    /// epoch; else the code a client retries elsewhere or later.
    fn locate(&self, shard: &Shard, transactional_id: &str) -> Result<(i32, i32), i16> {
        let Some((partition, leader)) = Self::coordinator_of(shard, transactional_id) else {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        };
        if leader != shard.broker_id() {
            return Err(ResponseError::NotCoordinator.code());
        }
        if self.unloaded.borrow().contains(&partition) {
            return Err(ResponseError::CoordinatorLoadInProgress.code());
        }
        self.epochs
            .borrow()
            .get(&partition)
            .map(|&epoch| (partition, epoch))
            .ok_or(ResponseError::CoordinatorLoadInProgress.code())
    }

    /// Asks the controller for `__transaction_state` unless it exists or is being made
    /// (Kafka makes it on the first FindCoordinator for a transactional id), with
    /// `transaction.state.log.*` settings: compacted, `min.insync.replicas` at most its
    /// replication factor. Returns at once; the request runs in its own task.
    pub fn ensure_topic(&self, shard: &Rc<Shard>) {
        if shard.image().topic(state_log::TOPIC).is_some() || self.creating.replace(true) {
            return;
        }
        let factor = self
            .config
            .state_replication_factor
            .unwrap_or(shard.node.config.offsets_topic_replication_factor)
            .max(1);
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "min.insync.replicas".to_string(),
                self.config.state_min_isr.min(factor).to_string(),
            ),
            // Kafka's transaction.state.log.segment.bytes.
            ("segment.bytes".to_string(), (100 * 1024 * 1024).to_string()),
        ]);
        let request = ControllerRequest::CreateTopics {
            topics: vec![NewTopic {
                name: state_log::TOPIC.to_string(),
                partitions: Some(self.config.state_partitions),
                replication_factor: Some(factor as i16),
                configs,
                assignments: Vec::new(),
            }],
            validate_only: false,
        };
        let shard = shard.clone();
        glommio::spawn_local(async move {
            match shard.controller_call(request).await {
                Ok(ControllerReply::CreateTopics(results)) => {
                    for result in results {
                        match result {
                            Ok(_) => tracing::info!(
                                "created {} for the first transactional producer",
                                state_log::TOPIC
                            ),
                            Err(error) => {
                                tracing::info!(%error, "cannot create {} yet", state_log::TOPIC)
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::info!(%error, "cannot create {} yet", state_log::TOPIC),
            }
            shard.txns.creating.set(false);
        })
        .detach();
    }

    /// InitProducerId with a transactional id: the producer id and epoch to use, or the code
    /// to answer (CONCURRENT_TRANSACTIONS while the previous producer's transaction is being
    /// aborted: the client retries).
    pub async fn init_producer_id(
        &self,
        shard: &Rc<Shard>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), i16> {
        let mut spare: Option<i64> = None;
        loop {
            let (partition, _) = self.locate(shard, transactional_id)?;
            let mut wanted = false;
            let mut offered = spare.take();
            let outcome = {
                let entries = self.entries.borrow();
                state::init_producer_id(
                    transactional_id,
                    entries.get(transactional_id),
                    InitRequest {
                        timeout_ms,
                        expected,
                    },
                    self.config.max_timeout_ms,
                    now_ms(),
                    || match offered.take() {
                        Some(id) => id,
                        None => {
                            wanted = true;
                            -1
                        }
                    },
                )
            };
            if wanted {
                // A new producer id was needed: get one (an await) and decide again.
                let id = shard.allocate_producer_id().await.map_err(|error| {
                    tracing::warn!(%error, "cannot allocate a producer id");
                    crate::handlers::errors::controller_error_code(&error)
                })?;
                spare = Some(id);
                continue;
            }
            return match outcome.map_err(|error| error.code())? {
                InitOutcome::Write(next) => {
                    let next = self
                        .transit(shard, transactional_id, partition, next)
                        .await?;
                    Ok((next.producer_id, next.producer_epoch))
                }
                InitOutcome::AbortThenRetry(aborting) => {
                    self.transit(shard, transactional_id, partition, aborting)
                        .await?;
                    self.spawn_completion(shard, transactional_id);
                    Err(ResponseError::ConcurrentTransactions.code())
                }
            };
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn: the group's `__consumer_offsets`
    /// partition).
    pub async fn add_partitions(
        &self,
        shard: &Rc<Shard>,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
    ) -> Result<(), i16> {
        self.add_with(shard, transactional_id, |entry| {
            state::add_partitions(entry, producer.0, producer.1, partitions, now_ms())
        })
        .await
    }

    /// An add decided by `decide` on the id's entry, written if it changes anything.
    async fn add_with(
        &self,
        shard: &Rc<Shard>,
        transactional_id: &str,
        decide: impl FnOnce(Option<&TxnEntry>) -> Result<AddOutcome, state::TxnError>,
    ) -> Result<(), i16> {
        let (partition, _) = self.locate(shard, transactional_id)?;
        let outcome =
            decide(self.entries.borrow().get(transactional_id)).map_err(|error| error.code())?;
        match outcome {
            AddOutcome::AlreadyAdded => Ok(()),
            AddOutcome::Write(next) => self
                .transit(shard, transactional_id, partition, next)
                .await
                .map(|_| ()),
        }
    }

    /// EndTxn: answered once the commit or abort is prepared (written); its markers follow.
    pub async fn end_txn(
        &self,
        shard: &Rc<Shard>,
        transactional_id: &str,
        producer: (i64, i16),
        commit: bool,
    ) -> Result<(), i16> {
        let (partition, _) = self.locate(shard, transactional_id)?;
        let outcome = state::end_txn(
            self.entries.borrow().get(transactional_id),
            producer.0,
            producer.1,
            commit,
            now_ms(),
        )
        .map_err(|error| error.code())?;
        match outcome {
            EndOutcome::AlreadyDone => Ok(()),
            EndOutcome::Write(next) => {
                self.transit(shard, transactional_id, partition, next)
                    .await?;
                self.spawn_completion(shard, transactional_id);
                Ok(())
            }
        }
    }

    /// Aborts the transactions past their timeout, and resumes the markers of prepared ones
    /// no task is writing (a completion whose last write failed). Called every
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub fn abort_timed_out(&self, shard: &Rc<Shard>) {
        let now = now_ms();
        let mut due = Vec::new();
        let mut stalled = Vec::new();
        for (id, entry) in self.entries.borrow().iter() {
            if let Some(aborting) = state::abort_timed_out(entry, now) {
                due.push((id.clone(), aborting));
            } else if entry.pending.is_none()
                && matches!(
                    entry.current.state,
                    TxnState::PrepareCommit | TxnState::PrepareAbort
                )
                && !self.completing.borrow().contains(id)
            {
                stalled.push(id.clone());
            }
        }
        for id in stalled {
            self.spawn_completion(shard, &id);
        }
        for (id, aborting) in due {
            let Ok((partition, _)) = self.locate(shard, &id) else {
                continue;
            };
            tracing::info!(transactional_id = %id, producer_id = aborting.producer_id,
                "aborting a transaction past its timeout");
            // Marked pending now, in the step that decided it: a request arriving before the
            // write task runs must not start a transition of its own.
            self.begin_transition(&id, &aborting);
            let shard = shard.clone();
            glommio::spawn_local(async move {
                if shard
                    .txns
                    .write_transition(&shard, &id, partition, aborting)
                    .await
                    .is_ok()
                {
                    shard.txns.spawn_completion(&shard, &id);
                }
            })
            .detach();
        }
    }

    /// Writes `next` for `transactional_id` and applies it: marked pending first (the caller
    /// decided it on the current metadata, with no await since), dropped if the write
    /// fails. Answers NOT_COORDINATOR if the partition moved meanwhile.
    async fn transit(
        &self,
        shard: &Rc<Shard>,
        transactional_id: &str,
        partition: i32,
        next: TxnMetadata,
    ) -> Result<TxnMetadata, i16> {
        self.begin_transition(transactional_id, &next);
        self.write_transition(shard, transactional_id, partition, next)
            .await
    }

    /// Marks `next` pending: from here until [`Self::write_transition`] ends, other requests
    /// for the id get CONCURRENT_TRANSACTIONS. Called in the same step as the decision.
    fn begin_transition(&self, transactional_id: &str, next: &TxnMetadata) {
        self.entries
            .borrow_mut()
            .entry(transactional_id.to_string())
            .or_insert_with(|| {
                TxnEntry::new(TxnMetadata::new(
                    transactional_id.to_string(),
                    next.producer_id,
                    next.timeout_ms,
                    next.last_update_ms,
                ))
            })
            .begin(next.clone());
    }

    /// Writes the pending `next` and applies it, or drops it if the write failed.
    async fn write_transition(
        &self,
        shard: &Rc<Shard>,
        transactional_id: &str,
        partition: i32,
        next: TxnMetadata,
    ) -> Result<TxnMetadata, i16> {
        let (key, value) = state_log::record(&next);
        let written =
            crate::groups::coordinator::append_internal(shard, state_log::TOPIC, partition, |_| {
                crate::groups::coordinator::encode_batch(&[(key, Some(value))], None)
            })
            .await;
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = entries.get_mut(transactional_id) else {
            // The partition was lost (and its ids dropped) while the write waited.
            return Err(ResponseError::NotCoordinator.code());
        };
        match written {
            Ok(()) => {
                entry.complete();
                Ok(next)
            }
            Err(code) => {
                entry.fail();
                if entry.current.producer_epoch == state::NO_EPOCH {
                    // A first InitProducerId that never happened.
                    entries.remove(transactional_id);
                }
                Err(code)
            }
        }
    }

    fn spawn_completion(&self, shard: &Rc<Shard>, transactional_id: &str) {
        if !self
            .completing
            .borrow_mut()
            .insert(transactional_id.to_string())
        {
            return;
        }
        let shard = shard.clone();
        let id = transactional_id.to_string();
        glommio::spawn_local(async move {
            shard.txns.complete(&shard, &id).await;
            shard.txns.completing.borrow_mut().remove(&id);
        })
        .detach();
    }

    /// Writes a prepared transaction's markers, then its completion; gives up if this shard
    /// stops coordinating the id (its next coordinator does it again).
    async fn complete(&self, shard: &Rc<Shard>, transactional_id: &str) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Ok((partition, coordinator_epoch)) = self.locate(shard, transactional_id) else {
                return;
            };
            let Some(metadata) = self
                .entries
                .borrow()
                .get(transactional_id)
                .filter(|entry| entry.pending.is_none())
                .map(|entry| entry.current.clone())
            else {
                return;
            };
            let commit = match metadata.state {
                TxnState::PrepareCommit => true,
                TxnState::PrepareAbort => false,
                _ => return,
            };
            let markers = Markers {
                producer_id: metadata.producer_id,
                producer_epoch: metadata.producer_epoch,
                coordinator_epoch,
                commit,
            };
            let still_coordinating = || {
                self.locate(shard, transactional_id)
                    .is_ok_and(|(_, epoch)| epoch == coordinator_epoch)
            };
            if !markers::write(
                shard,
                &self.connections,
                &markers,
                &metadata.partitions,
                still_coordinating,
            )
            .await
            {
                return;
            }
            let completed = metadata.completed(now_ms());
            match self
                .transit(shard, transactional_id, partition, completed)
                .await
            {
                Ok(_) => return,
                Err(code) => {
                    tracing::warn!(
                        transactional_id,
                        code,
                        "cannot complete a transaction; retrying"
                    );
                    glommio::timer::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// A transactional id's metadata as last written, if this shard knows the id.
    pub fn metadata(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.entries
            .borrow()
            .get(transactional_id)
            .map(|entry| entry.current.clone())
    }

    /// DescribeTransactions: an id's metadata as last written, or the code to answer
    /// (TRANSACTIONAL_ID_NOT_FOUND for an id this coordinator does not know).
    pub fn describe(&self, shard: &Shard, transactional_id: &str) -> Result<TxnMetadata, i16> {
        self.locate(shard, transactional_id)?;
        self.metadata(transactional_id)
            .ok_or(ResponseError::TransactionalIdNotFound.code())
    }

    /// ListTransactions: every id this shard coordinates that `keep` accepts, or
    /// COORDINATOR_LOAD_IN_PROGRESS while some partition is not loaded (Kafka's answer).
    pub fn list(&self, keep: impl Fn(&TxnMetadata) -> bool) -> Result<Vec<TxnMetadata>, i16> {
        if self.has_unloaded() {
            return Err(ResponseError::CoordinatorLoadInProgress.code());
        }
        let mut listed: Vec<TxnMetadata> = self
            .entries
            .borrow()
            .values()
            .map(|entry| &entry.current)
            .filter(|metadata| keep(metadata))
            .cloned()
            .collect();
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(listed)
    }

    /// Whether some partition this shard leads is not loaded yet.
    pub fn has_unloaded(&self) -> bool {
        !self.unloaded.borrow().is_empty()
    }
}

fn now_ms() -> i64 {
    spate_net::records::now_ms()
}

#[path = "coordinator_loading.rs"]
mod loading;

#[path = "coordinator_v2.rs"]
mod v2;
