//! The server-side assignors of KIP-848 consumer groups: `uniform` (the default) and `range`,
//! as Kafka 4's group coordinator names them (`group.consumer.assignors`).
//!
//! An assignor maps every partition of the topics the members subscribe to onto exactly one
//! subscriber. Its inputs are the members (id, static instance id, subscribed topic ids, the
//! target assignment they had), and the partition count of each existing topic; its output
//! the new target assignment. Members reach it in sorted id order, so the result is
//! deterministic (Kafka's uniform assignor iterates hash maps and is not).
//!
//! - **uniform**: balance first (every member's count within one of every other's among the
//!   members sharing a topic), then stickiness: a member keeps what it had as long as that
//!   keeps the balance. Partitions nobody keeps go, topic by topic, to the least-loaded
//!   subscriber; then partitions move from the most- to the least-loaded subscriber of each
//!   topic until no topic can improve (Kafka's heterogeneous builder, which for members with
//!   identical subscriptions ends in its homogeneous builder's balance).
//! - **range**: Kafka 4's, not sticky: per topic, its subscribers sorted (static members by
//!   instance id first, then the others by member id) take contiguous ranges, the first
//!   `partitions % subscribers` one partition more; topics with equal partition counts are
//!   co-partitioned.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors a group may name; the first is the default.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// One member as an assignor sees it.
#[derive(Clone, Debug)]
pub struct MemberSpec<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub subscribed: BTreeSet<Uuid>,
    /// Its current target assignment.
    pub target: &'a Assignment,
}

/// Runs the assignor `name` (one of [`ASSIGNORS`]; anything else is uniform).
pub fn assign(
    name: &str,
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let assigned = if name == "range" {
        range(members, topics)
    } else {
        uniform(members, topics)
    };
    members
        .iter()
        .zip(assigned)
        .map(|(member, assignment)| (member.member_id.to_string(), assignment))
        .collect()
}

fn uniform(members: &[MemberSpec<'_>], topics: &BTreeMap<Uuid, i32>) -> Vec<Assignment> {
    let mut result = vec![Assignment::new(); members.len()];
    let mut load = vec![0usize; members.len()];
    let mut owner: HashMap<(Uuid, i32), usize> = HashMap::new();
    // What each member had and still may hold.
    for (index, member) in members.iter().enumerate() {
        for (topic, partitions) in member.target {
            let Some(&count) = topics.get(topic) else {
                continue;
            };
            if !member.subscribed.contains(topic) {
                continue;
            }
            for &partition in partitions.range(0..count) {
                if owner.insert((*topic, partition), index).is_none() {
                    result[index].entry(*topic).or_default().insert(partition);
                    load[index] += 1;
                }
            }
        }
    }
    let subscribers: BTreeMap<Uuid, Vec<usize>> = topics
        .keys()
        .map(|topic| {
            let subs: Vec<usize> = (0..members.len())
                .filter(|&index| members[index].subscribed.contains(topic))
                .collect();
            (*topic, subs)
        })
        .filter(|(_, subs)| !subs.is_empty())
        .collect();
    // Topics with the most partitions per subscriber first, then the fewest subscribers.
    let mut order: Vec<Uuid> = subscribers.keys().copied().collect();
    order.sort_by(|a, b| {
        let density = |topic: &Uuid| topics[topic] as f64 / subscribers[topic].len() as f64;
        density(b)
            .total_cmp(&density(a))
            .then(subscribers[a].len().cmp(&subscribers[b].len()))
            .then(a.cmp(b))
    });
    for topic in &order {
        let subs = &subscribers[topic];
        for partition in 0..topics[topic] {
            if owner.contains_key(&(*topic, partition)) {
                continue;
            }
            let Some(&least) = subs.iter().min_by_key(|&&index| (load[index], index)) else {
                continue;
            };
            owner.insert((*topic, partition), least);
            result[least].entry(*topic).or_default().insert(partition);
            load[least] += 1;
        }
    }
    // Each move lowers the sum of squared loads, so this ends; 16 rounds bound it as Kafka's.
    for _ in 0..16 {
        let mut moved = false;
        for topic in order.iter().filter(|topic| subscribers[*topic].len() >= 2) {
            let subs = &subscribers[topic];
            loop {
                let holders = subs
                    .iter()
                    .filter(|&&index| result[index].get(topic).is_some_and(|p| !p.is_empty()));
                let Some(&most) = holders.max_by_key(|&&index| (load[index], usize::MAX - index))
                else {
                    break;
                };
                let Some(&least) = subs.iter().min_by_key(|&&index| (load[index], index)) else {
                    break;
                };
                if load[most] <= load[least] + 1 {
                    break;
                }
                let partitions = result[most].get_mut(topic).expect("a holder");
                let partition = *partitions.iter().next_back().expect("not empty");
                partitions.remove(&partition);
                if partitions.is_empty() {
                    result[most].remove(topic);
                }
                result[least].entry(*topic).or_default().insert(partition);
                load[most] -= 1;
                load[least] += 1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    result
}

fn range(members: &[MemberSpec<'_>], topics: &BTreeMap<Uuid, i32>) -> Vec<Assignment> {
    let mut result = vec![Assignment::new(); members.len()];
    // Static members by instance id first, then the others by member id.
    let mut sorted: Vec<usize> = (0..members.len()).collect();
    sorted.sort_by(|&a, &b| {
        let key = |index: usize| {
            let member = &members[index];
            (
                member.instance_id.is_none(),
                member.instance_id,
                member.member_id,
            )
        };
        key(a).cmp(&key(b))
    });
    for (topic, &count) in topics {
        let subs: Vec<usize> = sorted
            .iter()
            .copied()
            .filter(|&index| members[index].subscribed.contains(topic))
            .collect();
        if subs.is_empty() || count <= 0 {
            continue;
        }
        let quota = count as usize / subs.len();
        let mut extra = count as usize % subs.len();
        let mut next = 0usize;
        for index in subs {
            let mut take = quota;
            if extra > 0 {
                take += 1;
                extra -= 1;
            }
            let partitions: BTreeSet<i32> = (next..next + take).map(|p| p as i32).collect();
            next += take;
            if !partitions.is_empty() {
                result[index].insert(*topic, partitions);
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn spec<'a>(id: &'a str, subscribed: &[u128], target: &'a Assignment) -> MemberSpec<'a> {
        MemberSpec {
            member_id: id,
            instance_id: None,
            subscribed: subscribed.iter().map(|&t| topic(t)).collect(),
            target,
        }
    }

    fn counts(result: &BTreeMap<String, Assignment>) -> Vec<usize> {
        result
            .values()
            .map(|assignment| assignment.values().map(BTreeSet::len).sum())
            .collect()
    }

    /// Every partition of every subscribed topic exactly once, to a subscriber.
    fn assert_complete(
        result: &BTreeMap<String, Assignment>,
        members: &[MemberSpec<'_>],
        topics: &BTreeMap<Uuid, i32>,
    ) {
        for (t, &count) in topics {
            let subscribed = members.iter().any(|m| m.subscribed.contains(t));
            let mut seen = Vec::new();
            for member in members {
                if let Some(partitions) = result[member.member_id].get(t) {
                    assert!(member.subscribed.contains(t), "{result:?}");
                    seen.extend(partitions.iter().copied());
                }
            }
            seen.sort_unstable();
            let wanted: Vec<i32> = if subscribed {
                (0..count).collect()
            } else {
                vec![]
            };
            assert_eq!(seen, wanted, "{result:?}");
        }
    }

    #[test]
    fn uniform_balances_then_keeps_what_members_had() {
        let topics: BTreeMap<Uuid, i32> = [(topic(1), 5), (topic(2), 2)].into_iter().collect();
        let none = Assignment::new();
        let members = [spec("a", &[1, 2], &none), spec("b", &[1, 2], &none)];
        let first = assign("uniform", &members, &topics);
        assert_complete(&first, &members, &topics);
        let mut sizes = counts(&first);
        sizes.sort_unstable();
        assert_eq!(sizes, [3, 4]);
        // A third member joins: it gets a share, the others keep the rest of theirs.
        let (a, b) = (first["a"].clone(), first["b"].clone());
        let members = [
            spec("a", &[1, 2], &a),
            spec("b", &[1, 2], &b),
            spec("c", &[1, 2], &none),
        ];
        let second = assign("uniform", &members, &topics);
        assert_complete(&second, &members, &topics);
        assert!(
            counts(&second).iter().all(|&n| (2..=3).contains(&n)),
            "{second:?}"
        );
        for id in ["a", "b"] {
            let before = &first[id];
            let after = &second[id];
            for (t, partitions) in after {
                assert!(
                    partitions.is_subset(&before[t]),
                    "{id} moved: {first:?} {second:?}"
                );
            }
        }
    }

    #[test]
    fn uniform_gives_each_topic_only_to_its_subscribers_and_balances_overlaps() {
        let topics: BTreeMap<Uuid, i32> = [(topic(1), 6), (topic(2), 6), (topic(3), 1)]
            .into_iter()
            .collect();
        let none = Assignment::new();
        let members = [
            spec("a", &[1], &none),
            spec("b", &[1, 2], &none),
            spec("c", &[2], &none),
        ];
        let result = assign("uniform", &members, &topics);
        assert_complete(&result, &members, &topics);
        assert_eq!(counts(&result), [4, 4, 4], "{result:?}");
    }

    #[test]
    fn range_gives_contiguous_ranges_and_copartitions_topics() {
        let topics: BTreeMap<Uuid, i32> = [(topic(1), 3), (topic(2), 3)].into_iter().collect();
        let none = Assignment::new();
        let mut static_member = spec("z", &[1, 2], &none);
        static_member.instance_id = Some("i-0");
        let members = [spec("m1", &[1, 2], &none), static_member];
        let result = assign("range", &members, &topics);
        assert_complete(&result, &members, &topics);
        // The static member sorts first.
        let first: BTreeSet<i32> = [0, 1].into_iter().collect();
        let last: BTreeSet<i32> = [2].into_iter().collect();
        for t in [topic(1), topic(2)] {
            assert_eq!(result["z"][&t], first);
            assert_eq!(result["m1"][&t], last);
        }
    }

    #[test]
    fn deleted_and_unsubscribed_topics_and_partitions_past_the_count_are_dropped() {
        let topics: BTreeMap<Uuid, i32> = [(topic(1), 2)].into_iter().collect();
        let had: Assignment = [
            (topic(1), [0, 1, 7].into_iter().collect()),
            (topic(9), [0].into_iter().collect()),
        ]
        .into_iter()
        .collect();
        let members = [spec("a", &[1, 9], &had)];
        for name in ASSIGNORS {
            let result = assign(name, &members, &topics);
            assert_complete(&result, &members, &topics);
            assert_eq!(result["a"].len(), 1, "{name}: {result:?}");
        }
    }
}
