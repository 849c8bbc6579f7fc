//! The coordinator's side of transaction protocol v2 (KIP-890; decisions in
//! [`crate::transactions::state_v2`]): partitions added by their leaders
//! (AddPartitionsToTxn v4+), verification, and EndTxn v5 with its epoch bump. Part of
//! [`TxnCoordinator`].

use std::rc::Rc;

use super::{now_ms, TxnCoordinator};
use crate::shard::Shard;
use crate::transactions::state_v2::{self, EndOutcome};

impl TxnCoordinator {
    /// AddPartitionsToTxn v4+ with `verify_only=false`: a partition leader adds its partition
    /// to a v2 producer's transaction before appending the producer's first batch there,
    /// starting the transaction if none is open.
    pub async fn add_partitions_implicitly(
        &self,
        shard: &Rc<Shard>,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
    ) -> Result<(), i16> {
        self.add_with(shard, transactional_id, |entry| {
            state_v2::add_partitions(entry, producer.0, producer.1, partitions, now_ms())
        })
        .await
    }

    /// AddPartitionsToTxn v4+ with `verify_only=true`: whether each partition is in the
    /// producer's transaction. Writes nothing.
    pub fn verify_partitions(
        &self,
        shard: &Shard,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
    ) -> Result<Vec<bool>, i16> {
        self.locate(shard, transactional_id)?;
        state_v2::verify_partitions(
            self.entries.borrow().get(transactional_id),
            producer.0,
            producer.1,
            partitions,
        )
        .map_err(|error| error.code())
    }

    /// EndTxn v5: answered, with the producer id and epoch of the next transaction, once the
    /// prepared commit or abort (epoch bumped) is written; its markers follow.
    pub async fn end_txn_v2(
        &self,
        shard: &Rc<Shard>,
        transactional_id: &str,
        producer: (i64, i16),
        commit: bool,
    ) -> Result<(i64, i16), i16> {
        let mut spare: Option<i64> = None;
        loop {
            let (partition, _) = self.locate(shard, transactional_id)?;
            let mut wanted = false;
            let mut offered = spare.take();
            let outcome = state_v2::end_txn(
                self.entries.borrow().get(transactional_id),
                producer.0,
                producer.1,
                commit,
                now_ms(),
                || match offered.take() {
                    Some(id) => id,
                    None => {
                        wanted = true;
                        -1
                    }
                },
            );
            if wanted {
                // The epoch is exhausted: the completion moves to a new producer id.
                let id = shard.allocate_producer_id().await.map_err(|error| {
                    tracing::warn!(%error, "cannot allocate a producer id");
                    crate::handlers::errors::controller_error_code(&error)
                })?;
                spare = Some(id);
                continue;
            }
            return match outcome.map_err(|error| error.code())? {
                EndOutcome::AlreadyDone {
                    producer_id,
                    producer_epoch,
                } => Ok((producer_id, producer_epoch)),
                EndOutcome::Write(prepared) => {
                    let next = prepared.completed(0);
                    self.transit(shard, transactional_id, partition, prepared)
                        .await?;
                    self.spawn_completion(shard, transactional_id);
                    Ok((next.producer_id, next.producer_epoch))
                }
            };
        }
    }
}
