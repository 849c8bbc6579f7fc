//! The group coordinator's side of transactions: TxnOffsetCommit (a transactional producer's
//! `send_offsets_to_transaction`) writes the offsets to the group's `__consumer_offsets`
//! partition as a transactional batch of the producer, and holds them per producer id until
//! the transaction's marker reaches that partition: a commit makes them the group's committed
//! offsets, an abort drops them (Kafka's `pendingTransactionalOffsetCommits`). Loading reads
//! the same from the log: a transactional batch's offsets wait for the control batch that
//! follows it. Part of [`Coordinator`].

use std::rc::Rc;

use super::{append_internal, encode_batch, metadata_codes, Coordinator};
use crate::groups::group::code;
use crate::groups::offsets_topic::{self, OffsetValue};
use crate::shard::Shard;

impl Coordinator {
    /// TxnOffsetCommit: checks the member (when the request names one, as Kafka does), then
    /// writes the offsets as `producer`'s transactional batch and holds them until the
    /// transaction ends. One code for the request, or per-partition codes in request order.
    pub async fn txn_commit(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        producer: (i64, i16),
        member: (&str, Option<&str>, i32),
        offsets: Vec<(String, i32, OffsetValue)>,
    ) -> Result<Vec<i16>, i16> {
        let (member_id, group_instance_id, generation_id) = member;
        if !member_id.is_empty() || generation_id >= 0 || group_instance_id.is_some() {
            // Any version passes a KIP-848 group's check: TxnOffsetCommit has no
            // classic-only versions.
            self.check_committer(group_id, member, i16::MAX)?;
        }
        let codes = metadata_codes(&offsets);
        let accepted: Vec<(String, i32, OffsetValue)> = offsets
            .into_iter()
            .zip(&codes)
            .filter(|(_, code)| **code == code::NONE)
            .map(|(offset, _)| offset)
            .collect();
        if accepted.is_empty() {
            return Ok(codes);
        }
        let records: Vec<_> = accepted
            .iter()
            .map(|(topic, partition, value)| {
                offsets_topic::offset_record(group_id, topic, *partition, Some(value))
            })
            .collect();
        let (producer_id, epoch) = producer;
        append_internal(
            shard,
            offsets_topic::TOPIC,
            self.partition_for(group_id),
            |leader| {
                let sequence = leader.log().next_sequence(producer_id, epoch);
                encode_batch(&records, Some((producer_id, epoch, sequence)))
            },
        )
        .await?;
        self.with_group(group_id, |entry| {
            let pending = entry.pending_txn.entry(producer_id).or_default();
            for (topic, partition, value) in accepted {
                pending.insert((topic, partition), value);
            }
        });
        Ok(codes)
    }

    /// A marker for `producer_id` is on `__consumer_offsets` partition `partition`: its held
    /// offsets of every group there are committed or dropped.
    pub fn complete_txn(&self, partition: i32, producer_id: i64, commit: bool) {
        let partitions = self.offsets_partitions;
        let mut emptied = Vec::new();
        for (group_id, entry) in self.groups.borrow_mut().iter_mut() {
            if offsets_topic::partition_for(group_id, partitions) != partition {
                continue;
            }
            let Some(pending) = entry.pending_txn.remove(&producer_id) else {
                continue;
            };
            if commit {
                entry.offsets.extend(pending);
            }
            emptied.push(group_id.clone());
        }
        for group_id in emptied {
            self.forget_if_unused(&group_id);
        }
    }

    /// Whether a group holds offsets of an open transaction for the partition (OffsetFetch
    /// with require_stable answers UNSTABLE_OFFSET_COMMIT for it, KIP-447).
    pub fn has_pending_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.groups.borrow().get(group_id).is_some_and(|entry| {
            entry
                .pending_txn
                .values()
                .any(|offsets| offsets.contains_key(&(topic.to_string(), partition)))
        })
    }

    /// While loading: an offset record read from a transactional batch of `producer_id`.
    pub(super) fn apply_pending(
        &self,
        producer_id: i64,
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    ) {
        self.with_group(&group, |entry| {
            let pending = entry.pending_txn.entry(producer_id).or_default();
            match value {
                Some(value) => {
                    pending.insert((topic, partition), value);
                }
                None => {
                    pending.remove(&(topic, partition));
                }
            }
        });
    }
}
