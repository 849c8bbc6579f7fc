//! Partition reassignment (KIP-455): new replicas added, old ones dropped once the new are
//! in sync, cancellation, and the checks of a target.

use super::*;

type Results = Vec<((String, i32), Result<(), ControllerError>)>;

/// The result of an AlterReassignments of partitions of "r".
fn reassign(controller: &mut ControllerState, asked: Vec<(i32, Option<Vec<BrokerId>>)>) -> Results {
    reassign_with(controller, asked, true)
}

fn reassign_with(
    controller: &mut ControllerState,
    asked: Vec<(i32, Option<Vec<BrokerId>>)>,
    allow_factor_change: bool,
) -> Results {
    let partitions = asked
        .into_iter()
        .map(|(partition, target)| (("r".to_string(), partition), target))
        .collect();
    match controller.handle(ControllerRequest::AlterReassignments {
        partitions,
        allow_factor_change,
    }) {
        (_, ControllerReply::AlterReassignments(results)) => results,
        other => panic!("unexpected {other:?}"),
    }
}

/// The partition's leader adds `joining` to its ISR, as it does once the follower caught up.
fn joins_isr(controller: &mut ControllerState, topic_id: uuid::Uuid, joining: BrokerId) {
    let now = assignment(controller, 0);
    let mut isr = now.isr.clone();
    isr.push(joining);
    let (_, reply) = controller.handle(ControllerRequest::AlterPartition(IsrChange {
        topic_id,
        partition: 0,
        leader: now.leader,
        leader_epoch: now.leader_epoch,
        partition_epoch: now.partition_epoch,
        isr,
        broker_epochs: Vec::new(),
    }));
    assert!(
        matches!(reply, ControllerReply::AlterPartition(Ok(_))),
        "{reply:?}"
    );
}

/// The three-node cluster of `three_nodes_with_a_replicated_topic` and a fourth node with
/// two shards, registered after the topic was created.
fn with_a_fourth_node() -> (ControllerState, uuid::Uuid) {
    let (mut controller, topic_id) = three_nodes_with_a_replicated_topic();
    controller.start_node(None, &node_start(4, 2, 40));
    (controller, topic_id)
}

fn on_node_4(shard: u32) -> BrokerId {
    BrokerId::of_shard(NodeId(4), ShardId(shard))
}

#[test]
fn new_replicas_are_added_and_the_old_dropped_once_the_new_are_in_sync() {
    let (mut controller, topic_id) = with_a_fourth_node();
    let before = assignment(&controller, 0);
    let [a, b, c] = before.replicas[..] else {
        panic!("{before:?}")
    };
    let d = on_node_4(0);
    assert_eq!(
        reassign(&mut controller, vec![(0, Some(vec![a, b, d]))]),
        [(("r".into(), 0), Ok(()))]
    );
    let during = assignment(&controller, 0);
    assert_eq!(
        during.replicas,
        [a, b, d, c],
        "the target first, then what goes"
    );
    assert_eq!(
        (during.adding.clone(), during.removing.clone()),
        (vec![d], vec![c])
    );
    assert_eq!(during.isr, before.isr, "the new replica is not in sync yet");
    assert_eq!(
        (during.leader, during.leader_epoch),
        (before.leader, before.leader_epoch)
    );
    // Asking again for the same target changes nothing.
    let (records, _) = controller.handle(ControllerRequest::AlterReassignments {
        partitions: vec![(("r".into(), 0), Some(vec![a, b, d]))],
        allow_factor_change: true,
    });
    assert!(records.is_empty(), "{records:?}");

    joins_isr(&mut controller, topic_id, d);
    let after = assignment(&controller, 0);
    assert_eq!(after.replicas, [a, b, d]);
    let mut isr = after.isr.clone();
    isr.sort();
    let mut wanted = vec![a, b, d];
    wanted.sort();
    assert_eq!(isr, wanted);
    assert!(!after.is_reassigning());
    assert_eq!(
        (after.leader, after.leader_epoch),
        (before.leader, before.leader_epoch)
    );
    assert_eq!(
        after.partition_epoch,
        during.partition_epoch + 1,
        "one change"
    );
}

#[test]
fn a_leader_that_is_moved_away_hands_over_with_a_new_leader_epoch() {
    let (mut controller, topic_id) = with_a_fourth_node();
    let before = assignment(&controller, 0);
    let d = on_node_4(0);
    // To a single replica on the new node: the factor may change (v0, or v1 allowing it).
    assert_eq!(
        reassign_with(&mut controller, vec![(0, Some(vec![d]))], false),
        [(
            ("r".into(), 0),
            Err(ControllerError::InvalidReplicationFactor(
                "The replication factor is changed from 3 to 1 but allow_replication_factor_change is false.".into()
            ))
        )]
    );
    assert_eq!(
        reassign(&mut controller, vec![(0, Some(vec![d]))]),
        [(("r".into(), 0), Ok(()))]
    );
    assert_eq!(
        assignment(&controller, 0).leader,
        before.leader,
        "leads until the end"
    );
    joins_isr(&mut controller, topic_id, d);
    let after = assignment(&controller, 0);
    assert_eq!(
        (after.replicas.clone(), after.isr.clone(), after.leader),
        (vec![d], vec![d], d)
    );
    assert_eq!(after.leader_epoch, before.leader_epoch.next());
}

#[test]
fn a_target_within_the_replicas_in_sync_completes_at_once() {
    let (mut controller, _) = with_a_fourth_node();
    let before = assignment(&controller, 0);
    let [a, b, c] = before.replicas[..] else {
        panic!("{before:?}")
    };
    assert_eq!(
        reassign(&mut controller, vec![(0, Some(vec![c, b]))]),
        [(("r".into(), 0), Ok(()))]
    );
    let after = assignment(&controller, 0);
    assert_eq!(after.replicas, [c, b]);
    assert!(!after.isr.contains(&a) && after.isr.len() == 2);
    assert!(!after.is_reassigning());
    assert_eq!(
        after.leader, c,
        "the old leader went: the target's first in sync leads"
    );
}

#[test]
fn a_cancelled_reassignment_goes_back_to_the_replicas_it_started_from() {
    let (mut controller, _) = with_a_fourth_node();
    let before = assignment(&controller, 0);
    assert_eq!(
        reassign(&mut controller, vec![(0, None)]),
        [(
            ("r".into(), 0),
            Err(ControllerError::NoReassignmentInProgress)
        )]
    );
    let [a, b, _] = before.replicas[..] else {
        panic!("{before:?}")
    };
    reassign(&mut controller, vec![(0, Some(vec![a, b, on_node_4(0)]))]);
    assert_eq!(
        reassign(&mut controller, vec![(0, None)]),
        [(("r".into(), 0), Ok(()))]
    );
    let after = assignment(&controller, 0);
    let mut replicas = after.replicas.clone();
    replicas.sort();
    let mut wanted = before.replicas.clone();
    wanted.sort();
    assert_eq!(replicas, wanted);
    assert!(!after.is_reassigning());
    assert_eq!(after.leader, before.leader);
}

#[test]
fn targets_are_checked_as_kafka_checks_them_and_a_node_keeps_its_shards() {
    let (mut controller, _) = with_a_fourth_node();
    let before = assignment(&controller, 0);
    let [a, b, c] = before.replicas[..] else {
        panic!("{before:?}")
    };
    let invalid = |results: Results| match &results[..] {
        [(_, Err(ControllerError::InvalidReplicaAssignment(why)))] => why.clone(),
        other => panic!("{other:?}"),
    };
    assert!(invalid(reassign(&mut controller, vec![(0, Some(vec![]))])).contains("empty"));
    assert!(invalid(reassign(&mut controller, vec![(0, Some(vec![a, a]))])).contains("duplicate"));
    assert!(invalid(reassign(
        &mut controller,
        vec![(0, Some(vec![a, BrokerId(77)]))]
    ))
    .contains("no such broker"));
    assert_eq!(
        reassign(&mut controller, vec![(9, Some(vec![a]))]),
        [(("r".into(), 9), Err(ControllerError::UnknownTopic))]
    );
    // A node's replicas may come or go, but not move between its shards in one step: their
    // directories are named by rank on the node.
    assert_eq!(
        reassign(
            &mut controller,
            vec![(0, Some(vec![a, b, c, on_node_4(0)]))]
        ),
        [(("r".into(), 0), Ok(()))]
    );
    let why = invalid(reassign(
        &mut controller,
        vec![(0, Some(vec![a, b, c, on_node_4(1)]))],
    ));
    assert!(why.contains("shards of node 4"), "{why}");
    let why = invalid(reassign(
        &mut controller,
        vec![(0, Some(vec![a, b, c, on_node_4(0), on_node_4(1)]))],
    ));
    assert!(why.contains("shards of node 4"), "{why}");
    assert_eq!(
        assignment(&controller, 0).adding,
        [on_node_4(0)],
        "unchanged"
    );
}

/// CreateTopics of "m" with explicit replicas per partition.
fn create_assigned(
    controller: &mut ControllerState,
    assignments: Vec<Vec<BrokerId>>,
) -> Result<Arc<TopicImage>, ControllerError> {
    let (_, reply) = controller.handle(ControllerRequest::CreateTopics {
        topics: vec![NewTopic {
            name: "m".into(),
            partitions: Some(assignments.len() as i32),
            replication_factor: Some(-1),
            configs: BTreeMap::new(),
            assignments,
        }],
        validate_only: false,
    });
    let ControllerReply::CreateTopics(mut results) = reply else {
        panic!("{reply:?}")
    };
    results.remove(0)
}

#[test]
fn a_topic_created_with_explicit_replicas_has_them_led_by_the_first_unfenced() {
    let (mut controller, _) = with_a_fourth_node();
    let [a, b, d] = [
        BrokerId::of_shard(NodeId(0), ShardId(0)),
        BrokerId::of_shard(NodeId(2), ShardId(0)),
        on_node_4(1),
    ];
    let invalid = |result: Result<Arc<TopicImage>, ControllerError>| match result {
        Err(ControllerError::InvalidReplicaAssignment(why)) => why,
        other => panic!("{other:?}"),
    };
    assert!(
        invalid(create_assigned(&mut controller, vec![vec![a, b], vec![d]]))
            .contains("same number of replicas")
    );
    assert!(
        invalid(create_assigned(&mut controller, vec![vec![a, BrokerId(5)]]))
            .contains("no such broker")
    );
    controller.handle(ControllerRequest::FenceNode { node_id: NodeId(4) });
    assert!(invalid(create_assigned(&mut controller, vec![vec![d]])).contains("fenced"));
    let created = create_assigned(&mut controller, vec![vec![d, b], vec![a, d]]).expect("created");
    let partitions = &controller
        .image()
        .topic("m")
        .expect("in the image")
        .partitions;
    assert_eq!(partitions, &created.partitions);
    assert_eq!(
        (
            partitions[0].replicas.clone(),
            partitions[0].isr.clone(),
            partitions[0].leader
        ),
        (vec![d, b], vec![b], b),
        "the fenced replica is out of the ISR and does not lead"
    );
    assert_eq!(
        (partitions[1].isr.clone(), partitions[1].leader),
        (vec![a], a)
    );
}

#[test]
fn partitions_added_on_the_replicas_named_are_checked_like_kafkas() {
    let (mut controller, _) = with_a_fourth_node();
    let [b, d] = [BrokerId::of_shard(NodeId(2), ShardId(0)), on_node_4(0)];
    let mut grow = |assignments: Vec<Vec<BrokerId>>| {
        let (_, reply) = controller.handle(ControllerRequest::CreatePartitions {
            topics: vec![("r".into(), 8)],
            assignments: vec![Some(assignments)],
            validate_only: false,
        });
        match reply {
            ControllerReply::CreatePartitions(mut results) => results.remove(0),
            other => panic!("{other:?}"),
        }
    };
    let invalid = |result: Result<(), ControllerError>| match result {
        Err(ControllerError::InvalidReplicaAssignment(why)) => why,
        other => panic!("{other:?}"),
    };
    assert!(invalid(grow(vec![vec![d, b]])).contains("by 2 but 1 assignments"));
    assert!(invalid(grow(vec![vec![d, b], vec![d]])).contains("Inconsistent replication factor"));
    let c = BrokerId::of_shard(NodeId(3), ShardId(0));
    assert_eq!(grow(vec![vec![d, b, c], vec![c, b, d]]), Ok(()));
    let partitions = &controller.image().topic("r").expect("topic").partitions;
    assert_eq!(partitions.len(), 8);
    assert_eq!(
        (partitions[6].replicas.clone(), partitions[6].leader),
        (vec![d, b, c], d)
    );
    assert_eq!(
        (partitions[7].replicas.clone(), partitions[7].leader),
        (vec![c, b, d], c)
    );
}
