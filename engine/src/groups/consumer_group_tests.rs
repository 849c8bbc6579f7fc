//! The KIP-848 state machine on a fake clock: joins, revoke-before-assign, fencing, timeouts,
//! leaves, static members, topic changes and the commit checks.

use super::*;

const T: u128 = 1;

fn topics(partitions: i32) -> TopicsView {
    [("orders".to_string(), (Uuid::from_u128(T), partitions))]
        .into_iter()
        .collect()
}

fn parts(list: &[i32]) -> Assignment {
    if list.is_empty() {
        return Assignment::new();
    }
    [(Uuid::from_u128(T), list.iter().copied().collect())]
        .into_iter()
        .collect()
}

fn join(id: &str) -> Heartbeat {
    Heartbeat {
        version: 1,
        member_id: id.to_string(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["orders".to_string()]),
        owned: Some(Assignment::new()),
        client_id: "test".to_string(),
        ..Heartbeat::default()
    }
}

fn beat(id: &str, epoch: i32, owned: &[i32]) -> Heartbeat {
    Heartbeat {
        version: 1,
        member_id: id.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(parts(owned)),
        ..Heartbeat::default()
    }
}

fn ok(
    group: &mut ConsumerGroup,
    now: u64,
    request: Heartbeat,
    view: &TopicsView,
) -> HeartbeatAnswer {
    group
        .heartbeat(now, request, view)
        .unwrap_or_else(|refusal| panic!("{refusal:?}"))
        .0
}

fn err(group: &mut ConsumerGroup, request: Heartbeat, view: &TopicsView) -> i16 {
    group.heartbeat(0, request, view).expect_err("refused").0
}

fn owned(answer: &HeartbeatAnswer) -> Vec<i32> {
    answer
        .assignment
        .as_ref()
        .expect("an assignment")
        .values()
        .flatten()
        .copied()
        .collect()
}

#[test]
fn a_second_member_gets_partitions_only_once_the_first_revoked_them() {
    let view = topics(4);
    let mut group = ConsumerGroup::new("g", ConsumerGroupConfig::default(), 0);
    let a = ok(&mut group, 0, join("a"), &view);
    assert_eq!((a.member_epoch, owned(&a)), (1, vec![0, 1, 2, 3]));
    assert_eq!(group.state(), "Stable");

    let b = ok(&mut group, 1, join("b"), &view);
    // Epoch 2, but what b's target holds still belongs to a.
    assert_eq!((b.member_epoch, owned(&b)), (2, vec![]));
    assert_eq!(group.state(), "Reconciling");
    let b_target: Vec<i32> = group
        .target_of("b")
        .unwrap()
        .values()
        .flatten()
        .copied()
        .collect();
    assert_eq!(b_target.len(), 2);

    // a must give b's partitions up first: it stays at epoch 1 with what it keeps.
    let a = ok(&mut group, 2, beat("a", 1, &[0, 1, 2, 3]), &view);
    let kept = owned(&a);
    assert_eq!((a.member_epoch, kept.len()), (1, 2));
    assert!(kept.iter().all(|p| !b_target.contains(p)));
    // Still holding them: no change, nothing for b yet.
    let again = ok(&mut group, 3, beat("a", 1, &[0, 1, 2, 3]), &view);
    assert_eq!((again.member_epoch, again.assignment), (1, None));
    let b = ok(&mut group, 4, beat("b", 2, &[]), &view);
    assert_eq!((b.member_epoch, b.assignment), (2, None));
    // Revoked: a moves to epoch 2, and b gets its partitions.
    let a = ok(&mut group, 5, beat("a", 1, &kept), &view);
    assert_eq!((a.member_epoch, a.assignment), (2, None));
    let b = ok(&mut group, 6, beat("b", 2, &[]), &view);
    assert_eq!(owned(&b), b_target);
    assert_eq!(group.state(), "Stable");
}

#[test]
fn epochs_ahead_unknown_members_and_a_lost_answer_are_told_apart() {
    let view = topics(2);
    let mut group = ConsumerGroup::new("g", ConsumerGroupConfig::default(), 0);
    ok(&mut group, 0, join("a"), &view);
    assert_eq!(
        err(&mut group, beat("a", 7, &[]), &view),
        code::FENCED_MEMBER_EPOCH
    );
    assert_eq!(
        err(&mut group, beat("zz", 1, &[]), &view),
        code::UNKNOWN_MEMBER_ID
    );
    // A new partition bumps the epoch; a's answer is lost and it heartbeats at its previous
    // epoch, owning only what it was given: accepted.
    let view = topics(3);
    let moved = ok(&mut group, 1, beat("a", 1, &[0, 1]), &view);
    assert_eq!((moved.member_epoch, owned(&moved)), (2, vec![0, 1, 2]));
    let retried = ok(&mut group, 2, beat("a", 1, &[0, 1]), &view);
    assert_eq!(retried.member_epoch, 2);
    // Two epochs behind is not a lost answer.
    let view = topics(4);
    assert_eq!(
        ok(&mut group, 3, beat("a", 2, &[0, 1, 2]), &view).member_epoch,
        3
    );
    assert_eq!(
        err(&mut group, beat("a", 1, &[0, 1]), &view),
        code::FENCED_MEMBER_EPOCH
    );
}

#[test]
fn a_silent_member_is_fenced_and_its_partitions_go_to_the_others() {
    let view = topics(2);
    let mut group = ConsumerGroup::new("g", ConsumerGroupConfig::default(), 0);
    ok(&mut group, 0, join("a"), &view);
    ok(&mut group, 0, join("b"), &view);
    let a = ok(&mut group, 1, beat("a", 1, &[0, 1]), &view);
    let kept = owned(&a);
    ok(&mut group, 2, beat("a", 1, &kept), &view);
    // b never comes back: 45 s later it is fenced and the epoch rises.
    assert!(!group.tick(30_000));
    ok(&mut group, 30_000, beat("a", 2, &kept), &view);
    assert!(group.tick(45_001));
    assert_eq!(group.members().count(), 1);
    assert_eq!(group.state(), "Assigning");
    let a = ok(&mut group, 45_002, beat("a", 2, &kept), &view);
    assert_eq!((a.member_epoch, owned(&a)), (3, vec![0, 1]));
    assert_eq!(
        err(&mut group, beat("b", 2, &[]), &view),
        code::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_member_that_keeps_what_it_must_revoke_is_fenced_after_its_rebalance_timeout() {
    let view = topics(2);
    let mut group = ConsumerGroup::new("g", ConsumerGroupConfig::default(), 0);
    ok(&mut group, 0, join("a"), &view);
    ok(&mut group, 0, join("b"), &view);
    ok(&mut group, 1, beat("a", 1, &[0, 1]), &view);
    ok(&mut group, 20_000, beat("a", 1, &[0, 1]), &view);
    ok(&mut group, 20_000, beat("b", 2, &[]), &view);
    // Rebalance timeout 30 s from the heartbeat that asked a to revoke.
    assert!(group.tick(30_002));
    assert_eq!(
        group
            .members()
            .map(|m| m.member_id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
}

#[test]
fn leaving_removes_the_member_and_a_static_member_returns_to_its_partitions() {
    let view = topics(2);
    let mut group = ConsumerGroup::new("g", ConsumerGroupConfig::default(), 0);
    let mut static_join = join("s1");
    static_join.instance_id = Some("i".to_string());
    let first = ok(&mut group, 0, static_join, &view);
    assert_eq!(owned(&first), vec![0, 1]);
    // A temporary leave (-2) keeps the partitions; the instance rejoins under a new id.
    let mut pause = beat("s1", -2, &[0, 1]);
    pause.instance_id = Some("i".to_string());
    assert_eq!(ok(&mut group, 1, pause, &view).member_epoch, -2);
    let epoch = group.group_epoch();
    let mut back = join("s2");
    back.instance_id = Some("i".to_string());
    let back = ok(&mut group, 2, back, &view);
    assert_eq!(back.member_id, "s2");
    assert_eq!(owned(&back), vec![0, 1]);
    // Back at the same epoch: nobody else has to rebalance for a static member's restart.
    assert_eq!((group.group_epoch(), back.member_epoch), (epoch, epoch));
    // A second instance with the same id while s2 holds it: refused.
    let mut other = join("s3");
    other.instance_id = Some("i".to_string());
    assert_eq!(err(&mut group, other, &view), code::UNRELEASED_INSTANCE_ID);
    // A plain leave.
    ok(&mut group, 3, join("d"), &view);
    let epoch = group.group_epoch();
    let leave = ok(&mut group, 4, beat("d", -1, &[]), &view);
    assert_eq!(leave.member_epoch, -1);
    assert_eq!(group.group_epoch(), epoch + 1);
    assert_eq!(
        err(&mut group, beat("d", -1, &[]), &view),
        code::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn malformed_heartbeats_are_refused_with_kafkas_codes() {
    let view = topics(1);
    let mut group = ConsumerGroup::new("g", ConsumerGroupConfig::default(), 0);
    assert_eq!(err(&mut group, join(""), &view), code::INVALID_REQUEST);
    let mut no_timeout = join("a");
    no_timeout.rebalance_timeout_ms = -1;
    assert_eq!(err(&mut group, no_timeout, &view), code::INVALID_REQUEST);
    let mut owning = join("a");
    owning.owned = Some(parts(&[0]));
    assert_eq!(err(&mut group, owning, &view), code::INVALID_REQUEST);
    let mut assignor = join("a");
    assignor.server_assignor = Some("sticky".to_string());
    assert_eq!(err(&mut group, assignor, &view), code::UNSUPPORTED_ASSIGNOR);
    let mut regex = join("a");
    regex.subscribed_topic_regex = Some("(".to_string());
    assert_eq!(
        err(&mut group, regex, &view),
        code::INVALID_REGULAR_EXPRESSION
    );
    assert!(group.is_empty());
}

#[test]
fn a_regex_subscribes_to_every_matching_topic() {
    let mut view = topics(1);
    view.insert("orders-eu".to_string(), (Uuid::from_u128(2), 2));
    view.insert("audit".to_string(), (Uuid::from_u128(3), 1));
    let mut group = ConsumerGroup::new("g", ConsumerGroupConfig::default(), 0);
    let mut request = join("a");
    request.subscribed_topic_names = None;
    request.subscribed_topic_regex = Some("orders.*".to_string());
    let answer = ok(&mut group, 0, request, &view);
    let topics: Vec<Uuid> = answer.assignment.unwrap().keys().copied().collect();
    assert_eq!(topics, [Uuid::from_u128(1), Uuid::from_u128(2)]);
}

#[test]
fn commits_and_fetches_need_the_current_member_epoch() {
    let view = topics(1);
    let mut group = ConsumerGroup::new("g", ConsumerGroupConfig::default(), 4);
    // Empty: an admin's commit (no member, epoch -1) is fine.
    assert_eq!(group.check_commit("", -1, 9), code::NONE);
    let a = ok(&mut group, 0, join("a"), &view);
    assert_eq!(a.member_epoch, 5, "a loaded group goes on from its epoch");
    assert_eq!(group.check_commit("a", 5, 9), code::NONE);
    assert_eq!(group.check_commit("a", 4, 9), code::STALE_MEMBER_EPOCH);
    assert_eq!(group.check_commit("a", 5, 8), code::UNSUPPORTED_VERSION);
    assert_eq!(group.check_commit("x", 5, 9), code::UNKNOWN_MEMBER_ID);
    assert_eq!(group.check_fetch(None, -1), code::NONE);
    assert_eq!(group.check_fetch(Some("a"), 5), code::NONE);
    assert_eq!(group.check_fetch(Some("a"), 3), code::STALE_MEMBER_EPOCH);
    assert_eq!(group.check_fetch(Some("x"), 3), code::UNKNOWN_MEMBER_ID);
}

#[test]
fn a_full_group_refuses_new_members_but_not_its_own() {
    let view = topics(2);
    let config = ConsumerGroupConfig {
        max_size: 1,
        ..ConsumerGroupConfig::default()
    };
    let mut group = ConsumerGroup::new("g", config, 0);
    ok(&mut group, 0, join("a"), &view);
    assert_eq!(
        err(&mut group, join("b"), &view),
        code::GROUP_MAX_SIZE_REACHED
    );
    assert_eq!(
        ok(&mut group, 1, beat("a", 1, &[0, 1]), &view).member_epoch,
        1
    );
}

#[test]
fn a_departure_bumps_the_epoch_once() {
    let mut view = topics(2);
    view.insert("solo".to_string(), (Uuid::from_u128(9), 1));
    let mut group = ConsumerGroup::new("g", ConsumerGroupConfig::default(), 0);
    ok(&mut group, 0, join("a"), &view);
    let mut solo = join("b");
    solo.subscribed_topic_names = Some(vec!["solo".to_string()]);
    ok(&mut group, 0, solo, &view);
    let before = group.group_epoch();
    ok(&mut group, 1, beat("b", -1, &[]), &view);
    assert_eq!(group.group_epoch(), before + 1);
    // The next heartbeat finds nothing new: "solo" left with its only subscriber.
    let a = ok(&mut group, 2, beat("a", 1, &[0, 1]), &view);
    assert_eq!(
        (group.group_epoch(), a.member_epoch),
        (before + 1, before + 1)
    );
}

#[test]
fn static_joins_respect_the_size_limit_and_cannot_take_another_members_id() {
    let view = topics(2);
    let config = ConsumerGroupConfig {
        max_size: 2,
        ..ConsumerGroupConfig::default()
    };
    let mut group = ConsumerGroup::new("g", config, 0);
    ok(&mut group, 0, join("a"), &view);
    let mut first = join("s1");
    first.instance_id = Some("i".to_string());
    ok(&mut group, 0, first, &view);
    let mut another = join("s9");
    another.instance_id = Some("other".to_string());
    assert_eq!(
        err(&mut group, another, &view),
        code::GROUP_MAX_SIZE_REACHED
    );
    // Instance "i" leaves for a while and comes back under a's member id: refused.
    let mut pause = beat("s1", -2, &[]);
    pause.instance_id = Some("i".to_string());
    ok(&mut group, 1, pause, &view);
    let mut stolen = join("a");
    stolen.instance_id = Some("i".to_string());
    assert_eq!(err(&mut group, stolen, &view), code::INVALID_REQUEST);
    assert_eq!(group.members().count(), 2);
}

#[test]
fn costly_or_unbalanced_regexes_are_refused() {
    let view = topics(1);
    let mut group = ConsumerGroup::new("g", ConsumerGroupConfig::default(), 0);
    for pattern in [r"\w{100}", "x)|(?:.*", &"a".repeat(2000)] {
        let mut request = join("a");
        request.subscribed_topic_names = None;
        request.subscribed_topic_regex = Some(pattern.to_string());
        assert_eq!(
            err(&mut group, request, &view),
            code::INVALID_REGULAR_EXPRESSION,
            "{pattern}"
        );
    }
}
