//! Tests of the group state machine, driven by a fake clock.
use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;
const DELAY_MS: u64 = 3_000;

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: DELAY_MS,
        ..GroupConfig::default()
    }
}

fn request(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|name| (name.to_string(), Bytes::from(format!("meta-{name}"))))
            .collect(),
        requires_known_member_id: true,
        supports_skip_assignment: false,
    }
}

fn sync(
    member_id: &str,
    instance: Option<&str>,
    generation_id: i32,
    assignments: Vec<(String, Bytes)>,
) -> SyncRequest {
    SyncRequest {
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        generation_id,
        assignments,
        ..SyncRequest::default()
    }
}

impl SyncRequest {
    fn with_protocol(mut self, protocol_type: &str, protocol_name: &str) -> SyncRequest {
        self.protocol_type = Some(protocol_type.to_string());
        self.protocol_name = Some(protocol_name.to_string());
        self
    }
}

/// Joins a new dynamic member through the MEMBER_ID_REQUIRED handshake; returns its id.
fn join_new(group: &mut Group, now: u64, waiter: Waiter) -> (String, Completions) {
    let (reply, _) = group.join(now, request("", None, &["range", "roundrobin"]), waiter);
    let Reply::Now(result) = reply else {
        panic!("expected MEMBER_ID_REQUIRED")
    };
    assert_eq!(result.error_code, code::MEMBER_ID_REQUIRED);
    let (reply, done) = group.join(
        now,
        request(&result.member_id, None, &["range", "roundrobin"]),
        waiter,
    );
    assert_eq!(reply, Reply::Later);
    (result.member_id, done)
}

/// Two members, joined and synced: a Stable group at generation 1.
fn stable_pair(now: u64) -> (Group, String, String) {
    let mut group = Group::new("g", config());
    let (first, _) = join_new(&mut group, now, 1);
    let (second, _) = join_new(&mut group, now, 2);
    let done = group.tick(now + DELAY_MS);
    assert_eq!(done.joins.len(), 2);
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    let leader = group.leader().unwrap().to_string();
    assert_eq!(leader, first, "the first joiner leads");
    let (reply, _) = group.sync(
        now + DELAY_MS,
        sync(&second, None, 1, vec![]).with_protocol("consumer", "range"),
        3,
    );
    assert_eq!(reply, Reply::Later, "a follower waits for the leader");
    let assignments = vec![
        (first.clone(), Bytes::from("p0")),
        (second.clone(), Bytes::from("p1")),
    ];
    let (reply, done) = group.sync(now + DELAY_MS, sync(&first, None, 1, assignments), 4);
    assert_eq!(reply, Reply::Later);
    assert!(done.persist);
    let follower = done.syncs.iter().find(|(waiter, _)| *waiter == 3).unwrap();
    assert_eq!(follower.1.assignment, Bytes::from("p1"));
    assert_eq!(group.state(), GroupState::Stable);
    (group, first, second)
}

#[test]
fn new_group_waits_the_initial_delay_then_elects_the_first_joiner() {
    let mut group = Group::new("g", config());
    let (first, _) = join_new(&mut group, 0, 1);
    assert!(
        group.tick(DELAY_MS - 1).joins.is_empty(),
        "still inside the initial delay"
    );
    let done = group.tick(DELAY_MS);
    let (_, result) = &done.joins[0];
    assert_eq!(
        (result.generation_id, result.leader.as_str()),
        (1, first.as_str())
    );
    assert_eq!(result.protocol_name.as_deref(), Some("range"));
    assert_eq!(result.members.len(), 1, "the leader sees the members");
}

#[test]
fn join_sync_heartbeat_and_a_third_member_rebalances() {
    let (mut group, first, second) = stable_pair(0);
    let now = DELAY_MS + 100;
    assert_eq!(group.heartbeat(now, &second, None, 1), code::NONE);
    assert_eq!(
        group.heartbeat(now, &second, None, 7),
        code::ILLEGAL_GENERATION
    );
    assert_eq!(
        group.heartbeat(now, "stranger", None, 1),
        code::UNKNOWN_MEMBER_ID
    );
    let (third, _) = join_new(&mut group, now, 5);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat(now, &first, None, 1),
        code::REBALANCE_IN_PROGRESS
    );
    let (reply, _) = group.join(now, request(&first, None, &["range", "roundrobin"]), 6);
    assert_eq!(reply, Reply::Later);
    let (reply, done) = group.join(now, request(&second, None, &["range", "roundrobin"]), 7);
    assert_eq!(reply, Reply::Later);
    assert_eq!(
        done.joins.len(),
        3,
        "everyone rejoined: the join phase completes at once"
    );
    assert!(done
        .joins
        .iter()
        .all(|(_, result)| result.generation_id == 2));
    let leader_view = done
        .joins
        .iter()
        .find(|(_, result)| result.member_id == first)
        .unwrap();
    assert_eq!(leader_view.1.members.len(), 3);
    assert!(done
        .joins
        .iter()
        .any(|(_, result)| result.member_id == third));
}

#[test]
fn a_silent_member_expires_and_the_rest_rebalance() {
    let (mut group, first, second) = stable_pair(0);
    let later = DELAY_MS + SESSION_MS as u64 / 2;
    assert_eq!(group.heartbeat(later, &first, None, 1), code::NONE);
    let done = group.tick(DELAY_MS + SESSION_MS as u64 + 1);
    assert!(done.joins.is_empty());
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(group.members().count(), 1, "{second} expired");
    let (reply, done) = group.join(
        later + SESSION_MS as u64,
        request(&first, None, &["range"]),
        9,
    );
    assert_eq!(reply, Reply::Later);
    assert_eq!(done.joins[0].1.generation_id, 2);
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let (mut group, first, _second) = stable_pair(0);
    let now = DELAY_MS + 10;
    let (reply, _) = group.join(now, request(&first, None, &["range"]), 8);
    assert_eq!(reply, Reply::Later, "the leader's join starts a rebalance");
    group.heartbeat(now + REBALANCE_MS as u64 - 1, &_second, None, 1);
    assert!(group.tick(now + REBALANCE_MS as u64 - 1).joins.is_empty());
    let done = group.tick(now + REBALANCE_MS as u64);
    assert_eq!(done.joins.len(), 1);
    assert_eq!(group.members().count(), 1);
    assert_eq!(group.generation_id(), 2);
}

#[test]
fn a_restarted_static_member_takes_its_place_without_a_rebalance() {
    let mut group = Group::new("g", config());
    let (reply, _) = group.join(0, request("", Some("host-a"), &["range"]), 1);
    assert_eq!(
        reply,
        Reply::Later,
        "static members skip MEMBER_ID_REQUIRED"
    );
    let (reply, _) = group.join(0, request("", Some("host-b"), &["range"]), 2);
    assert_eq!(reply, Reply::Later);
    let done = group.tick(DELAY_MS);
    let ids: Vec<String> = done
        .joins
        .iter()
        .map(|(_, result)| result.member_id.clone())
        .collect();
    let leader = group.leader().unwrap().to_string();
    let follower = ids.iter().find(|id| **id != leader).unwrap().clone();
    let assignments = vec![
        (leader.clone(), Bytes::from("a")),
        (follower.clone(), Bytes::from("b")),
    ];
    group.sync(DELAY_MS, sync(&leader, None, 1, assignments), 3);
    assert_eq!(group.state(), GroupState::Stable);

    let instance = if follower.starts_with("host-a") {
        "host-a"
    } else {
        "host-b"
    };
    let (reply, _) = group.join(DELAY_MS + 5, request("", Some(instance), &["range"]), 4);
    let Reply::Now(result) = reply else {
        panic!("no rebalance expected")
    };
    assert_eq!((result.error_code, result.generation_id), (code::NONE, 1));
    assert_ne!(result.member_id, follower);
    assert_eq!(group.state(), GroupState::Stable);
    assert_eq!(
        group.heartbeat(DELAY_MS + 6, &follower, Some(instance), 1),
        code::FENCED_INSTANCE_ID
    );
    let (reply, _) = group.sync(
        DELAY_MS + 6,
        sync(&result.member_id, Some(instance), 1, vec![]),
        5,
    );
    assert_eq!(
        reply,
        Reply::Now(SyncResult {
            error_code: code::NONE,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: Bytes::from("b"),
        })
    );
}

#[test]
fn a_restarted_static_leader_takes_its_place_without_a_rebalance() {
    let mut group = Group::new("g", config());
    group.join(0, request("", Some("leader"), &["range"]), 1);
    group.tick(DELAY_MS);
    let leader = group.leader().unwrap().to_string();
    group.join(DELAY_MS, request("", Some("follower"), &["range"]), 2);
    let (_, done) = group.join(DELAY_MS, request(&leader, Some("leader"), &["range"]), 3);
    let follower = done
        .joins
        .iter()
        .map(|(_, result)| result.member_id.clone())
        .find(|id| *id != leader)
        .unwrap();
    let assignments = vec![
        (leader.clone(), Bytes::from("L")),
        (follower.clone(), Bytes::from("F")),
    ];
    group.sync(DELAY_MS, sync(&leader, Some("leader"), 2, assignments), 4);
    assert_eq!(
        (group.state(), group.generation_id()),
        (GroupState::Stable, 2)
    );

    // Below v9 the restarted leader is told the old leader id, so it acts as a follower.
    let (reply, _) = group.join(DELAY_MS + 10, request("", Some("leader"), &["range"]), 5);
    let Reply::Now(result) = reply else {
        panic!("a static leader's restart must not rebalance")
    };
    assert_eq!((result.error_code, result.generation_id), (code::NONE, 2));
    assert_eq!(result.leader, leader, "the old leader id");
    assert!(result.members.is_empty() && !result.skip_assignment);
    assert_eq!(
        (
            group.state(),
            group.heartbeat(DELAY_MS + 11, &follower, None, 2)
        ),
        (GroupState::Stable, code::NONE)
    );
    let (reply, _) = group.sync(
        DELAY_MS + 11,
        sync(&result.member_id, Some("leader"), 2, vec![]),
        6,
    );
    assert!(matches!(reply, Reply::Now(SyncResult { assignment, .. }) if assignment == "L"));

    // v9+: the new id leads and is told to skip the assignment.
    let mut v9 = request("", Some("leader"), &["range"]);
    v9.supports_skip_assignment = true;
    let (reply, _) = group.join(DELAY_MS + 20, v9, 7);
    let Reply::Now(result) = reply else {
        panic!("no rebalance at v9 either")
    };
    assert!(result.skip_assignment);
    assert_eq!(result.leader, result.member_id);
    assert_eq!(result.members.len(), 2);
    assert_eq!(group.generation_id(), 2);
}

#[test]
fn leaving_rebalances_and_the_last_leaver_empties_the_group() {
    let (mut group, first, second) = stable_pair(0);
    let mut done = Completions::default();
    assert_eq!(
        group.leave(DELAY_MS + 1, &second, None, &mut done),
        code::NONE
    );
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        group.leave(DELAY_MS + 1, "nobody", None, &mut done),
        code::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        group.leave(DELAY_MS + 2, &first, None, &mut done),
        code::NONE
    );
    assert_eq!(group.state(), GroupState::Empty);
    assert!(done.persist);
    assert_eq!(
        group.check_commit(DELAY_MS + 3, "", None, -1),
        code::NONE,
        "simple commits on an empty group"
    );
}

#[test]
fn commits_check_member_and_generation() {
    let (mut group, first, _) = stable_pair(0);
    assert_eq!(group.check_commit(DELAY_MS, &first, None, 1), code::NONE);
    assert_eq!(
        group.check_commit(DELAY_MS, &first, None, 0),
        code::ILLEGAL_GENERATION
    );
    assert_eq!(
        group.check_commit(DELAY_MS, "", None, -1),
        code::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn bad_timeouts_and_foreign_protocols_are_refused() {
    let mut group = Group::new("g", config());
    let mut short = request("", None, &["range"]);
    short.session_timeout_ms = 10;
    let (reply, _) = group.join(0, short, 1);
    assert!(matches!(
        reply,
        Reply::Now(JoinResult {
            error_code: code::INVALID_SESSION_TIMEOUT,
            ..
        })
    ));
    let (_, first, _) = stable_pair(0);
    drop(first);
    let (mut group, _, _) = stable_pair(0);
    let (reply, _) = group.join(DELAY_MS, request("", None, &["sticky-only"]), 9);
    assert!(matches!(
        reply,
        Reply::Now(JoinResult {
            error_code: code::INCONSISTENT_GROUP_PROTOCOL,
            ..
        })
    ));
}

#[test]
fn pending_member_ids_lapse_after_the_session_timeout() {
    let mut group = Group::new("g", config());
    let (reply, _) = group.join(0, request("", None, &["range"]), 1);
    let Reply::Now(result) = reply else { panic!() };
    group.tick(SESSION_MS as u64 + 1);
    let (reply, _) = group.join(
        SESSION_MS as u64 + 2,
        request(&result.member_id, None, &["range"]),
        2,
    );
    assert!(matches!(
        reply,
        Reply::Now(JoinResult {
            error_code: code::UNKNOWN_MEMBER_ID,
            ..
        })
    ));
}
