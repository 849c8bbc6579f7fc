//! KIP-848 consumer groups on the coordinator: ConsumerGroupHeartbeat and ConsumerGroupDescribe,
//! the conversions between an empty classic group and a consumer group, and the timers. Part
//! of [`Coordinator`]; the state machine is [`ConsumerGroup`].
//!
//! A heartbeat's state change happens at once; an answer carrying a group epoch that is not
//! yet known durable waits until the epoch record is in `__consumer_offsets` (as Kafka
//! answers after its records commit) — whichever heartbeat raised it, and again after a
//! failed write — so that a coordinator that takes over never hands out an epoch a member
//! already saw. Replayed epoch records only ever raise the epoch, so writes that land out
//! of order cannot lower it.
//!
//! An empty consumer group stays (until DeleteGroups), as Kafka keeps it: a member that
//! comes back after its session ran out, or after the coordinator moved (members are not
//! persisted here), gets UNKNOWN_MEMBER_ID and rejoins, rather than GROUP_ID_NOT_FOUND,
//! which Java clients treat as fatal. A heartbeat at epoch > 0 for a group this coordinator
//! does not know is answered the same way.

use std::rc::Rc;
use std::sync::Arc;

use spate_net::error_code::{GROUP_ID_NOT_FOUND, INCONSISTENT_GROUP_PROTOCOL};

use super::{Coordinator, GroupEntry};
use crate::groups::consumer_group::{
    ConsumerGroup, Heartbeat, HeartbeatAnswer, Refusal, TopicsView,
};
use crate::groups::group::{code, Group};
use crate::groups::offsets_topic;
use crate::metadata::image::MetadataImage;
use crate::shard::Shard;

impl Coordinator {
    /// Every topic of `image` a group may subscribe to, by name: built once per image, not
    /// per heartbeat.
    pub fn topics_view(&self, image: &Arc<MetadataImage>) -> Rc<TopicsView> {
        let mut cached = self.topics_view.borrow_mut();
        if let Some((seen, view)) = cached.as_ref() {
            if Arc::ptr_eq(seen, image) {
                return view.clone();
            }
        }
        let view: Rc<TopicsView> = Rc::new(
            image
                .topics()
                .map(|topic| (topic.name.clone(), (topic.id, topic.partition_count())))
                .collect(),
        );
        *cached = Some((image.clone(), view.clone()));
        view
    }

    /// ConsumerGroupHeartbeat: joins, heartbeats and leaves of a consumer group.
    pub async fn consumer_heartbeat(
        &self,
        shard: &Rc<Shard>,
        group_id: &str,
        request: Heartbeat,
        topics: &TopicsView,
    ) -> Result<HeartbeatAnswer, Refusal> {
        let now = self.now_ms();
        let joining = request.member_epoch == 0;
        let outcome = {
            let mut groups = self.groups.borrow_mut();
            let unknown_member = || {
                (
                    code::UNKNOWN_MEMBER_ID,
                    format!("The group {group_id} does not know this member: rejoin."),
                )
            };
            if !groups.contains_key(group_id) && !joining {
                return Err(unknown_member());
            }
            let entry = groups
                .entry(group_id.to_string())
                .or_insert_with(|| GroupEntry {
                    group: Group::new(group_id, self.config.clone()),
                    consumer: None,
                    offsets: Default::default(),
                    pending_txn: Default::default(),
                });
            if entry.consumer.is_none() {
                // An empty classic group (committed offsets at most) becomes a consumer group
                // with its offsets; a classic group with members stays classic (Kafka's
                // online upgrade of a live classic group is not built here).
                if !entry.group.is_empty() {
                    return Err((
                        GROUP_ID_NOT_FOUND,
                        format!("Group {group_id} is not a consumer group."),
                    ));
                }
                if !joining {
                    return Err(unknown_member());
                }
                entry.consumer = Some(ConsumerGroup::new(
                    group_id,
                    self.consumer_config.clone(),
                    0,
                ));
            }
            let consumer = entry.consumer.as_mut().expect("set above");
            consumer.heartbeat(now, request, topics).map(|(answer, _)| {
                let epoch = consumer.group_epoch();
                (
                    answer,
                    (epoch > consumer.persisted_epoch()).then_some(epoch),
                )
            })
        };
        match outcome {
            Err(refusal) => {
                self.forget_if_unused(group_id);
                Err(refusal)
            }
            Ok((answer, None)) => Ok(answer),
            Ok((answer, Some(epoch))) => {
                let record = offsets_topic::consumer_group_record(group_id, Some(epoch));
                self.append(shard, group_id, vec![record])
                    .await
                    .map_err(|error_code| (error_code, String::new()))?;
                self.mark_epoch_persisted(group_id, epoch);
                Ok(answer)
            }
        }
    }

    fn mark_epoch_persisted(&self, group_id: &str, epoch: i32) {
        if let Some(consumer) = self
            .groups
            .borrow_mut()
            .get_mut(group_id)
            .and_then(|entry| entry.consumer.as_mut())
        {
            consumer.mark_persisted(epoch);
        }
    }

    /// A copy of a consumer group for ConsumerGroupDescribe, or why there is none.
    pub fn consumer_group(&self, group_id: &str) -> Result<ConsumerGroup, Refusal> {
        let groups = self.groups.borrow();
        match groups.get(group_id) {
            Some(GroupEntry {
                consumer: Some(consumer),
                ..
            }) => Ok(consumer.clone()),
            Some(_) => Err((
                GROUP_ID_NOT_FOUND,
                format!("Group {group_id} is not a consumer group."),
            )),
            None => Err((GROUP_ID_NOT_FOUND, format!("Group {group_id} not found."))),
        }
    }

    /// OffsetFetch v9's member check for a consumer group (others pass): a group error.
    pub fn check_fetch(&self, group_id: &str, member_id: Option<&str>, member_epoch: i32) -> i16 {
        match self.groups.borrow().get(group_id) {
            Some(GroupEntry {
                consumer: Some(consumer),
                ..
            }) => consumer.check_fetch(member_id, member_epoch),
            _ => code::NONE,
        }
    }

    /// A JoinGroup's answer when the group is a consumer group: INCONSISTENT_GROUP_PROTOCOL
    /// while it has members (classic members inside a consumer group are not built here);
    /// an empty one becomes classic again (its epoch record tombstoned).
    pub(super) fn classic_join_refused(&self, shard: &Rc<Shard>, group_id: &str) -> Option<i16> {
        let mut groups = self.groups.borrow_mut();
        let entry = groups.get_mut(group_id)?;
        let consumer = entry.consumer.as_ref()?;
        if !consumer.is_empty() {
            return Some(INCONSISTENT_GROUP_PROTOCOL);
        }
        entry.consumer = None;
        drop(groups);
        let record = offsets_topic::consumer_group_record(group_id, None);
        self.append_in_background(shard, group_id, vec![record], "consumer group tombstone");
        None
    }

    /// Fences the consumer group's timed-out members; a changed epoch is persisted.
    pub(super) fn tick_consumer_group(&self, shard: &Rc<Shard>, group_id: &str, now: u64) {
        let epoch = {
            let mut groups = self.groups.borrow_mut();
            let Some(consumer) = groups
                .get_mut(group_id)
                .and_then(|entry| entry.consumer.as_mut())
            else {
                return;
            };
            if !consumer.tick(now) {
                return;
            }
            consumer.group_epoch()
        };
        // In its own task: no request waits for a timer's fencing. The epoch counts as
        // durable once written, and a heartbeat before that writes it again.
        let shard = shard.clone();
        let group_id = group_id.to_string();
        glommio::spawn_local(async move {
            let record = offsets_topic::consumer_group_record(&group_id, Some(epoch));
            match shard.groups.append(&shard, &group_id, vec![record]).await {
                Ok(()) => shard.groups.mark_epoch_persisted(&group_id, epoch),
                Err(error_code) => {
                    tracing::warn!(group = %group_id, error_code, "cannot write the consumer group epoch")
                }
            }
        })
        .detach();
    }
}
