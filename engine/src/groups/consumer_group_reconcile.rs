//! One member's step toward its target assignment (Kafka's `CurrentAssignmentBuilder`), the
//! rule at the heart of KIP-848: revoke first, then take only what nobody else holds. Part of
//! [`super::ConsumerGroup`].

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{Assignment, ConsumerMember, MemberState};

/// Moves a member toward its target (Kafka's `CurrentAssignmentBuilder`): revoke first,
/// then take the target's partitions that nobody else holds.
pub(super) fn reconcile(
    member: &mut ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    owners: &BTreeMap<(Uuid, i32), String>,
    subscribed: &BTreeSet<Uuid>,
) {
    // Whether the member still owns any of `partitions` (not saying counts as owning).
    let still_owns = |partitions: &Assignment| match owned {
        None => partitions.values().any(|p| !p.is_empty()),
        Some(owned) => partitions.iter().any(|(topic, partitions)| {
            owned
                .get(topic)
                .is_some_and(|owned| !owned.is_disjoint(partitions))
        }),
    };
    if member.state == MemberState::UnrevokedPartitions && still_owns(&member.pending_revocation) {
        return;
    }
    // A member that must revoke keeps the epoch it has (Kafka trunk, KIP-1251).
    let epoch = member.member_epoch;
    let mut keep = Assignment::new();
    let mut revoke = Assignment::new();
    let mut newly = Assignment::new();
    let mut unreleased = false;
    let topics: BTreeSet<Uuid> = target
        .keys()
        .chain(member.assigned.keys())
        .copied()
        .collect();
    let none = BTreeSet::new();
    for topic in topics {
        let wanted = if subscribed.contains(&topic) {
            target.get(&topic).unwrap_or(&none)
        } else {
            &none
        };
        let assigned = member.assigned.get(&topic).unwrap_or(&none);
        let kept: BTreeSet<i32> = assigned.intersection(wanted).copied().collect();
        let revoked: BTreeSet<i32> = assigned.difference(&kept).copied().collect();
        let mut free = BTreeSet::new();
        for &partition in wanted.difference(&kept) {
            let held_by_other = owners
                .get(&(topic, partition))
                .is_some_and(|owner| *owner != member.member_id);
            if held_by_other {
                unreleased = true;
            } else {
                free.insert(partition);
            }
        }
        if !kept.is_empty() {
            keep.insert(topic, kept);
        }
        if !revoked.is_empty() {
            revoke.insert(topic, revoked);
        }
        if !free.is_empty() {
            newly.insert(topic, free);
        }
    }
    let set_epoch = |member: &mut ConsumerMember, new_epoch: i32| {
        if member.member_epoch != new_epoch {
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = new_epoch;
        }
    };
    if !revoke.is_empty() && still_owns(&revoke) {
        member.state = MemberState::UnrevokedPartitions;
        set_epoch(member, epoch);
        member.assigned = keep;
        member.pending_revocation = revoke;
        return;
    }
    let mut assigned = keep;
    for (topic, partitions) in newly {
        assigned.entry(topic).or_default().extend(partitions);
    }
    member.assigned = assigned;
    member.pending_revocation = Assignment::new();
    set_epoch(member, target_epoch);
    member.state = if unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
}
