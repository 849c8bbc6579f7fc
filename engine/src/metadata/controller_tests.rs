use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::groups::offsets_topic;
use crate::metadata::image::PartitionAssignment;
use crate::metadata::placement;
use crate::metadata::store::LegacyTopic;
use crate::partition::LeaderEpoch;

fn config(shard_count: u32) -> ControllerConfig {
    ControllerConfig {
        node_id: NodeId(0),
        shard_count,
        advertised_host: "127.0.0.1".into(),
        base_port: 9092,
        listeners: Vec::new(),
        rack: None,
        default_partitions: 3,
        offsets_topic_partitions: 5,
        offsets_topic_replication_factor: 1,
        limits: ControllerLimits {
            partitions_per_request_max: 100,
            partitions_per_node_max: 200,
        },
    }
}

fn started(shard_count: u32) -> ControllerState {
    let mut controller = ControllerState::new(MetadataImage::default(), config(shard_count));
    controller.startup(None, 1);
    controller
}

fn new_topic(name: &str, partitions: Option<i32>) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions,
        replication_factor: None,
        configs: BTreeMap::new(),
        assignments: Vec::new(),
    }
}

fn create(
    controller: &mut ControllerState,
    topics: Vec<NewTopic>,
) -> Vec<Result<Arc<TopicImage>, ControllerError>> {
    match controller.handle(ControllerRequest::CreateTopics {
        topics,
        validate_only: false,
    }) {
        (_, ControllerReply::CreateTopics(results)) => results,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_first_start_forms_a_cluster_with_the_offsets_topic_and_one_broker_per_shard() {
    let mut controller = ControllerState::new(MetadataImage::default(), config(2));
    let records = controller.startup(None, 7);
    let image = controller.image();
    assert_eq!(image.cluster_id.len(), 32);
    assert_eq!(image.brokers().len(), 2);
    assert_eq!(image.broker(BrokerId(1)).unwrap().port, 9093);
    assert_eq!(image.controller, Some(BrokerId(0)));
    let offsets = image.topic(offsets_topic::TOPIC).unwrap();
    assert_eq!(offsets.partition_count(), 5);
    assert_eq!(offsets.configs["cleanup.policy"], "compact");
    // Registrations are not durable, the rest is.
    assert!(records.iter().any(|record| !record.is_durable()));
    assert!(records.iter().any(MetadataRecord::is_durable));
    let again = controller.startup(None, 8);
    assert!(
        again.iter().all(|record| !record.is_durable()),
        "a second start changes nothing durable: {again:?}"
    );
}

#[test]
fn an_old_catalog_is_migrated_with_its_ids_configs_and_producer_ids() {
    let id = Uuid::new_v4();
    let legacy = LegacyCatalog {
        cluster_id: "old-cluster".into(),
        producer_id_limit: 3000,
        topics: vec![LegacyTopic {
            name: "orders".into(),
            id,
            partitions: 4,
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        }],
    };
    let mut controller = ControllerState::new(MetadataImage::default(), config(2));
    controller.startup(Some(&legacy), 1);
    let image = controller.image();
    assert_eq!(image.cluster_id, "old-cluster");
    assert_eq!(image.next_producer_id, 3000);
    let orders = image.topic("orders").unwrap();
    assert_eq!((orders.id, orders.partition_count()), (id, 4));
    assert_eq!(orders.configs["retention.ms"], "1000");
    for (index, assignment) in orders.partitions.iter().enumerate() {
        assert_eq!(
            assignment.leader,
            placement::default_leader(NodeId(0), "orders", index as i32, 2)
        );
    }
}

#[test]
fn topics_are_created_once_with_kafkas_checks_and_validate_only_creates_nothing() {
    let mut controller = started(2);
    let results = create(
        &mut controller,
        vec![
            new_topic("a", None),
            new_topic("a", Some(1)),
            new_topic("bad name", Some(1)),
            new_topic("zero", Some(0)),
        ],
    );
    assert_eq!(results[0].as_ref().unwrap().partition_count(), 3);
    assert_eq!(results[1], Err(ControllerError::TopicExists("a".into())));
    assert!(matches!(results[2], Err(ControllerError::InvalidTopic(_))));
    assert!(matches!(
        results[3],
        Err(ControllerError::InvalidPartitions(_))
    ));
    let mut replicated = new_topic("r", Some(1));
    replicated.replication_factor = Some(3);
    assert!(matches!(
        create(&mut controller, vec![replicated])[0],
        Err(ControllerError::InvalidReplicationFactor(_))
    ));
    let (records, reply) = controller.handle(ControllerRequest::CreateTopics {
        topics: vec![new_topic("checked", Some(2))],
        validate_only: true,
    });
    assert!(records.is_empty());
    assert!(matches!(&reply, ControllerReply::CreateTopics(results) if results[0].is_ok()));
    assert!(controller.image().topic("checked").is_none());
}

#[test]
fn partition_limits_refuse_huge_requests_and_a_full_node() {
    let mut controller = started(2);
    // More than the per-request limit fails the whole request, as in Kafka.
    let results = create(
        &mut controller,
        vec![
            new_topic("small", Some(1)),
            new_topic("huge", Some(i32::MAX)),
        ],
    );
    assert!(results
        .iter()
        .all(|result| matches!(result, Err(ControllerError::PolicyViolation(_)))));
    assert!(controller.image().topic("small").is_none());
    // The node holds 5 (offsets) + 100 + 90 = 195 of 200.
    assert!(create(&mut controller, vec![new_topic("t1", Some(100))])[0].is_ok());
    assert!(create(&mut controller, vec![new_topic("t2", Some(90))])[0].is_ok());
    let full = create(&mut controller, vec![new_topic("t3", Some(6))]);
    assert!(
        matches!(full[0], Err(ControllerError::PolicyViolation(ref message)) if message.contains("max.broker.partitions"))
    );
    let (_, reply) = controller.handle(ControllerRequest::CreatePartitions {
        assignments: Vec::new(),
        topics: vec![("t2".into(), 96), ("t2".into(), 95)],
        validate_only: false,
    });
    let ControllerReply::CreatePartitions(results) = reply else {
        panic!()
    };
    assert!(matches!(
        results[0],
        Err(ControllerError::PolicyViolation(_))
    ));
    assert!(results[1].is_ok());
    assert_eq!(controller.image().partition_count(), 200);
}

#[test]
fn internal_topics_cannot_be_deleted_or_repartitioned() {
    let mut controller = started(1);
    let (records, reply) = controller.handle(ControllerRequest::DeleteTopics {
        names: vec![offsets_topic::TOPIC.into(), "missing".into()],
    });
    assert!(records.is_empty());
    let ControllerReply::DeleteTopics(results) = reply else {
        panic!()
    };
    assert!(matches!(results[0], Err(ControllerError::InternalTopic(_))));
    assert_eq!(results[1], Err(ControllerError::UnknownTopic));
    let (_, reply) = controller.handle(ControllerRequest::CreatePartitions {
        assignments: Vec::new(),
        topics: vec![(offsets_topic::TOPIC.into(), 60)],
        validate_only: false,
    });
    let ControllerReply::CreatePartitions(results) = reply else {
        panic!()
    };
    assert!(matches!(results[0], Err(ControllerError::InternalTopic(_))));
    assert_eq!(
        controller
            .image()
            .topic(offsets_topic::TOPIC)
            .unwrap()
            .partition_count(),
        5
    );
}

#[test]
fn deleted_topics_can_be_created_again_with_a_new_id() {
    let mut controller = started(1);
    let first = create(&mut controller, vec![new_topic("t", Some(1))])[0]
        .clone()
        .unwrap();
    let (records, reply) = controller.handle(ControllerRequest::DeleteTopics {
        names: vec!["t".into()],
    });
    assert_eq!(
        records,
        [MetadataRecord::RemoveTopic { topic_id: first.id }]
    );
    assert!(matches!(&reply, ControllerReply::DeleteTopics(results) if results[0] == Ok(first.id)));
    let second = create(&mut controller, vec![new_topic("t", Some(2))])[0]
        .clone()
        .unwrap();
    assert_ne!(first.id, second.id);
}

#[test]
fn configs_are_replaced_or_changed_incrementally_and_checked() {
    let mut controller = started(1);
    create(&mut controller, vec![new_topic("t", Some(1))]);
    let (_, reply) = controller.handle(ControllerRequest::AlterTopicConfigs {
        topics: vec![
            (
                "t".into(),
                ConfigChange::Replace(BTreeMap::from([("retention.ms".into(), "5".into())])),
            ),
            (
                "t".into(),
                ConfigChange::Incremental(vec![(
                    "cleanup.policy".into(),
                    2,
                    Some("compact".into()),
                )]),
            ),
            (
                "t".into(),
                ConfigChange::Replace(BTreeMap::from([("no.such.config".into(), "1".into())])),
            ),
            ("missing".into(), ConfigChange::Replace(BTreeMap::new())),
        ],
        validate_only: false,
    });
    let ControllerReply::AlterTopicConfigs(results) = reply else {
        panic!()
    };
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(matches!(results[2], Err(ControllerError::InvalidConfig(_))));
    assert_eq!(results[3], Err(ControllerError::UnknownTopic));
    let configs = &controller.image().topic("t").unwrap().configs;
    assert_eq!(configs["retention.ms"], "5");
    assert_eq!(configs["cleanup.policy"], "delete,compact");
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut controller = started(1);
    let mut blocks = Vec::new();
    for _ in 0..3 {
        let (records, reply) = controller.handle(ControllerRequest::AllocateProducerIds);
        assert_eq!(records.len(), 1);
        let ControllerReply::ProducerIds(block) = reply else {
            panic!()
        };
        blocks.push(block);
    }
    assert_eq!(blocks, [0..1000, 1000..2000, 2000..3000]);
}

#[test]
fn a_changed_shard_count_moves_partitions_with_a_new_leader_epoch() {
    let mut controller = started(2);
    create(&mut controller, vec![new_topic("t", Some(8))]);
    let before = controller.image().topic("t").unwrap().clone();
    let mut restarted = ControllerState::new(controller.image().clone(), config(4));
    let records = restarted.startup(None, 2);
    let after = restarted.image().topic("t").unwrap();
    let mut moved = 0;
    for (index, (old, new)) in before.partitions.iter().zip(&after.partitions).enumerate() {
        assert_eq!(
            new.leader,
            placement::default_leader(NodeId(0), "t", index as i32, 4)
        );
        if old.leader == new.leader {
            assert_eq!(new.leader_epoch, old.leader_epoch);
        } else {
            assert_eq!(new.leader_epoch, LeaderEpoch(1));
            moved += 1;
        }
    }
    assert!(moved > 0);
    assert!(records
        .iter()
        .any(|record| matches!(record, MetadataRecord::PartitionChange { .. })));
}

fn node_start(node: i32, shard_count: u32, broker_epoch: i64) -> NodeStart {
    NodeStart {
        node_id: NodeId(node),
        shard_count,
        host: "127.0.0.1".into(),
        base_port: 9000 + node as u16 * 100,
        rack: Some(format!("node-{node}")),
        broker_epoch,
        clean_shutdown: Some(false),
        listeners: Vec::new(),
        credentials: Vec::new(),
    }
}

#[test]
fn nodes_register_are_fenced_and_return_and_placement_follows() {
    let mut controller = started(1);
    controller.start_node(None, &node_start(1, 2, 10));
    controller.start_node(None, &node_start(2, 1, 20));
    let registered = controller.image().broker(BrokerId(1025)).unwrap();
    assert_eq!((registered.port, registered.epoch), (9101, 10));
    assert_eq!(registered.rack.as_deref(), Some("node-1"));

    // A new topic spreads over the three nodes.
    let create = |controller: &mut ControllerState, name: &str| {
        controller.handle(ControllerRequest::CreateTopics {
            topics: vec![NewTopic {
                name: name.into(),
                partitions: Some(9),
                replication_factor: None,
                configs: BTreeMap::new(),
                assignments: Vec::new(),
            }],
            validate_only: false,
        })
    };
    create(&mut controller, "spread");
    let leaders = |controller: &ControllerState, name: &str| -> BTreeSet<NodeId> {
        let topic = controller.image().topic(name).unwrap().clone();
        topic
            .partitions
            .iter()
            .map(|partition| partition.leader.node())
            .collect()
    };
    assert_eq!(leaders(&controller, "spread").len(), 3);

    // Fencing node 2 takes it out of placement; a heartbeat of an older incarnation does not
    // bring it back, one of the registered incarnation does.
    let fence = ControllerRequest::FenceNode { node_id: NodeId(2) };
    let led_by_2 = |controller: &ControllerState| -> Vec<usize> {
        let topic = controller.image().topic("spread").unwrap().clone();
        (0..topic.partitions.len())
            .filter(|index| topic.partitions[*index].replicas[0].node() == NodeId(2))
            .collect()
    };
    let (records, _) = controller.handle(fence.clone());
    assert!(matches!(
        records[0],
        MetadataRecord::NodeFencing { fenced: true, .. }
    ));
    // Its single-replica partitions have no other ISR member: no leader until it returns,
    // in a new leader epoch.
    assert_eq!(records.len(), 1 + led_by_2(&controller).len());
    for index in led_by_2(&controller) {
        let partition = &controller.image().topic("spread").unwrap().partitions[index];
        assert_eq!(partition.leader, PartitionAssignment::NO_LEADER);
        assert_eq!(partition.leader_epoch, LeaderEpoch(1));
    }
    assert!(controller.image().broker(BrokerId(2048)).unwrap().fenced);
    assert!(
        controller.handle(fence).0.is_empty(),
        "fencing twice writes nothing"
    );
    create(&mut controller, "avoids-fenced");
    assert!(!leaders(&controller, "avoids-fenced").contains(&NodeId(2)));
    let stale = ControllerRequest::Heartbeat {
        node_id: NodeId(2),
        broker_epoch: 19,
    };
    assert!(controller.handle(stale).0.is_empty());
    let current = ControllerRequest::Heartbeat {
        node_id: NodeId(2),
        broker_epoch: 20,
    };
    assert_eq!(
        controller.handle(current.clone()).0.len(),
        1 + led_by_2(&controller).len()
    );
    assert!(!controller.image().broker(BrokerId(2048)).unwrap().fenced);
    for index in led_by_2(&controller) {
        let partition = &controller.image().topic("spread").unwrap().partitions[index];
        assert_eq!(
            partition.leader.node(),
            NodeId(2),
            "back on its only replica"
        );
        assert_eq!(partition.leader_epoch, LeaderEpoch(2));
    }
    assert!(
        controller.handle(current).0.is_empty(),
        "an unfenced node's heartbeat writes nothing"
    );

    // A restart registers again with a new epoch, unfenced.
    controller.handle(ControllerRequest::FenceNode { node_id: NodeId(1) });
    controller.start_node(None, &node_start(1, 2, 11));
    let again = controller.image().broker(BrokerId(1024)).unwrap();
    assert_eq!((again.epoch, again.fenced), (11, false));
    assert_eq!(
        again.clean_shutdown,
        Some(false),
        "registered with how it last stopped"
    );
}

/// A controller with nodes 1, 2 and 3 registered (one shard each) and an RF=3 topic.
fn three_nodes_with_a_replicated_topic() -> (ControllerState, uuid::Uuid) {
    let mut controller = started(1);
    controller.start_node(None, &node_start(2, 1, 20));
    controller.start_node(None, &node_start(3, 1, 30));
    let (_, reply) = controller.handle(ControllerRequest::CreateTopics {
        topics: vec![NewTopic {
            name: "r".into(),
            partitions: Some(6),
            replication_factor: Some(3),
            configs: BTreeMap::new(),
            assignments: Vec::new(),
        }],
        validate_only: false,
    });
    let ControllerReply::CreateTopics(results) = reply else {
        panic!("{reply:?}")
    };
    let id = results[0].as_ref().expect("created").id;
    (controller, id)
}

fn assignment(controller: &ControllerState, partition: usize) -> PartitionAssignment {
    controller.image().topic("r").unwrap().partitions[partition].clone()
}

#[test]
fn replicas_go_to_distinct_nodes_and_a_factor_above_the_node_count_is_refused() {
    let (mut controller, _) = three_nodes_with_a_replicated_topic();
    for partition in 0..6 {
        let assigned = assignment(&controller, partition);
        let mut nodes: Vec<NodeId> = assigned.replicas.iter().map(|b| b.node()).collect();
        nodes.sort();
        nodes.dedup();
        assert_eq!(nodes.len(), 3, "three distinct nodes: {assigned:?}");
        assert_eq!(assigned.isr.len(), 3);
        assert_eq!(assigned.leader, assigned.replicas[0]);
    }
    let (_, reply) = controller.handle(ControllerRequest::CreateTopics {
        topics: vec![NewTopic {
            name: "too-many".into(),
            partitions: Some(1),
            replication_factor: Some(4),
            configs: BTreeMap::new(),
            assignments: Vec::new(),
        }],
        validate_only: false,
    });
    let ControllerReply::CreateTopics(results) = reply else {
        panic!("{reply:?}")
    };
    assert!(matches!(
        results[0],
        Err(ControllerError::InvalidReplicationFactor(_))
    ));
    // New partitions keep the topic's factor.
    controller.handle(ControllerRequest::CreatePartitions {
        assignments: Vec::new(),
        topics: vec![("r".into(), 7)],
        validate_only: false,
    });
    assert_eq!(assignment(&controller, 6).replicas.len(), 3);
}

#[test]
fn fencing_a_leader_elects_the_next_isr_member_and_alter_partition_brings_it_back() {
    let (mut controller, topic_id) = three_nodes_with_a_replicated_topic();
    let before = assignment(&controller, 0);
    let victim = before.leader.node();
    controller.handle(ControllerRequest::FenceNode { node_id: victim });
    let after = assignment(&controller, 0);
    assert_eq!(
        after.leader, before.replicas[1],
        "the next replica in the ISR leads"
    );
    assert_eq!(after.leader_epoch, before.leader_epoch.next());
    assert_eq!(after.partition_epoch, before.partition_epoch + 1);
    assert!(after.isr.iter().all(|broker| broker.node() != victim));
    assert_eq!(after.isr.len(), 2);
    // Every partition lost the fenced node from its ISR.
    for partition in 0..6 {
        assert!(assignment(&controller, partition)
            .isr
            .iter()
            .all(|broker| broker.node() != victim));
    }

    let victim_broker = before.leader;
    let mut wanted = after.isr.clone();
    wanted.push(victim_broker);
    let change = |isr: Vec<BrokerId>, leader_epoch, partition_epoch| {
        ControllerRequest::AlterPartition(IsrChange {
            topic_id,
            partition: 0,
            leader: after.leader,
            leader_epoch,
            partition_epoch,
            isr,
            broker_epochs: Vec::new(),
        })
    };
    // A fenced broker cannot join.
    let (records, reply) = controller.handle(change(
        wanted.clone(),
        after.leader_epoch,
        after.partition_epoch,
    ));
    assert!(records.is_empty());
    assert!(
        matches!(
            reply,
            ControllerReply::AlterPartition(Err(ControllerError::IneligibleReplica(_)))
        ),
        "{reply:?}"
    );
    controller.start_node(None, &node_start(victim.0, 1, 99));
    // A stale view is refused: an older partition epoch, an older leader epoch.
    let (_, reply) = controller.handle(change(
        wanted.clone(),
        after.leader_epoch,
        after.partition_epoch - 1,
    ));
    assert!(
        matches!(
            reply,
            ControllerReply::AlterPartition(Err(ControllerError::InvalidUpdateVersion { .. }))
        ),
        "{reply:?}"
    );
    let (_, reply) = controller.handle(change(
        wanted.clone(),
        before.leader_epoch,
        after.partition_epoch,
    ));
    assert!(
        matches!(
            reply,
            ControllerReply::AlterPartition(Err(ControllerError::FencedLeaderEpoch))
        ),
        "{reply:?}"
    );
    // The current view is taken; the leader stays, in the same leader epoch.
    let (records, reply) =
        controller.handle(change(wanted, after.leader_epoch, after.partition_epoch));
    assert_eq!(records.len(), 1);
    let ControllerReply::AlterPartition(Ok(changed)) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(changed.isr.len(), 3);
    assert_eq!(changed.leader, after.leader);
    assert_eq!(changed.leader_epoch, after.leader_epoch);
    assert_eq!(changed.partition_epoch, after.partition_epoch + 1);
    assert_eq!(assignment(&controller, 0), changed);
}

/// KIP-903: a leader names the broker epoch each joining follower's fetch carried; a fetch
/// from an earlier incarnation of a restarted broker cannot bring it into the ISR.
#[test]
fn a_replica_joins_the_isr_only_with_its_current_broker_epoch() {
    let (mut controller, topic_id) = three_nodes_with_a_replicated_topic();
    let before = assignment(&controller, 0);
    let victim = before.leader;
    controller.handle(ControllerRequest::FenceNode {
        node_id: victim.node(),
    });
    controller.start_node(None, &node_start(victim.node().0, 1, 99));
    let after = assignment(&controller, 0);
    let mut wanted = after.isr.clone();
    wanted.push(victim);
    let change = |broker_epoch: i64| {
        ControllerRequest::AlterPartition(IsrChange {
            topic_id,
            partition: 0,
            leader: after.leader,
            leader_epoch: after.leader_epoch,
            partition_epoch: after.partition_epoch,
            isr: wanted.clone(),
            broker_epochs: vec![(victim, broker_epoch)],
        })
    };
    let (records, reply) = controller.handle(change(98));
    assert!(records.is_empty());
    assert!(
        matches!(
            reply,
            ControllerReply::AlterPartition(Err(ControllerError::IneligibleReplica(_)))
        ),
        "{reply:?}"
    );
    let (records, reply) = controller.handle(change(99));
    assert_eq!(records.len(), 1, "{reply:?}");
    assert!(assignment(&controller, 0).isr.contains(&victim));
}

#[test]
fn the_last_isr_member_stays_and_leads_again_when_it_returns() {
    let (mut controller, _) = three_nodes_with_a_replicated_topic();
    let before = assignment(&controller, 0);
    let order: Vec<NodeId> = before.replicas.iter().map(|b| b.node()).collect();
    controller.handle(ControllerRequest::FenceNode { node_id: order[0] });
    controller.handle(ControllerRequest::FenceNode { node_id: order[1] });
    let alone = assignment(&controller, 0);
    assert_eq!(alone.isr, vec![before.replicas[2]]);
    assert_eq!(alone.leader, before.replicas[2]);
    controller.handle(ControllerRequest::FenceNode { node_id: order[2] });
    let offline = assignment(&controller, 0);
    assert_eq!(offline.leader, PartitionAssignment::NO_LEADER);
    assert_eq!(
        offline.isr,
        vec![before.replicas[2]],
        "the last member stays in the ISR"
    );
    // A replica out of the ISR coming back does not lead (no unclean election)...
    controller.start_node(None, &node_start(order[0].0, 1, 100));
    assert_eq!(
        assignment(&controller, 0).leader,
        PartitionAssignment::NO_LEADER
    );
    // ...the last ISR member does, in a new epoch.
    controller.start_node(None, &node_start(order[2].0, 1, 101));
    let back = assignment(&controller, 0);
    assert_eq!(back.leader, before.replicas[2]);
    assert!(back.leader_epoch > offline.leader_epoch);
}

#[test]
fn a_controlled_shutdown_moves_leadership_only_for_the_registered_incarnation() {
    let (mut controller, _) = three_nodes_with_a_replicated_topic();
    let before = assignment(&controller, 0);
    let node = before.leader.node();
    let epoch = controller.image().broker(before.leader).unwrap().epoch;
    let stale = ControllerRequest::ControlledShutdown {
        node_id: node,
        broker_epoch: epoch - 1,
    };
    assert!(
        controller.handle(stale).0.is_empty(),
        "an older incarnation changes nothing"
    );
    let current = ControllerRequest::ControlledShutdown {
        node_id: node,
        broker_epoch: epoch,
    };
    assert!(!controller.handle(current).0.is_empty());
    let after = assignment(&controller, 0);
    assert_ne!(after.leader.node(), node);
    assert!(after.isr.iter().all(|broker| broker.node() != node));
    assert!(controller.image().broker(before.leader).unwrap().fenced);
}

// Leader elections, and replicas on one node's shards, in a file of their own.
#[path = "controller_election_tests.rs"]
mod elections;

// Partition reassignment, in a file of its own.
#[path = "controller_reassign_tests.rs"]
mod reassignments;

// Users, ACLs and client quotas, and a cluster node's first users, in a file of their own.
#[path = "controller_security_tests.rs"]
mod security;
