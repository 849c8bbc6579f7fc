//! Nodes that are brokers only (not among `--controller-quorum-voters`): learners of the
//! controller quorum that receive the metadata log, register, host replicas and forward
//! admin requests like any node. An operator adds one to a running cluster and moves
//! partitions onto it (`spate cluster reassign`); it survives its own kill -9, after which
//! it registers as a node that did not stop cleanly, and a SIGTERM restart.

use super::*;
use cluster_harness::spate_until;

/// The quorum's observers (learners) as `spate cluster info --json` on `node` says.
fn observers(cluster: &Cluster, node: i32) -> Vec<i64> {
    let info: serde_json::Value =
        serde_json::from_str(&spate(cluster, node, &["cluster", "info", "--json"])).expect("json");
    info["quorum"]["observers"]
        .as_array()
        .map(|observers| {
            observers
                .iter()
                .filter_map(|observer| observer["id"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_broker_only_node_joins_a_running_cluster_and_takes_partitions_moved_onto_it() {
    // Node 1 is the quorum (one voter); node 2 is a broker only from the start.
    let mut cluster = Cluster::start_mixed(1, 1, &NODE_ARGS);
    for node in [1, 2] {
        wait_for_brokers(&cluster, node, &[1024, 2048]);
    }
    // Created through the broker-only node: it forwards to the controller.
    create_topic(&cluster, 2, 2, &[]);
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "two-nodes", 60);

    // Node 3 joins the running cluster as a broker only.
    let added = cluster.start_node(1, &NODE_ARGS);
    for node in [1, 2, 3] {
        wait_for_brokers(&cluster, node, &[1024, 2048, 3072]);
    }
    spate_until(&cluster, 1, &["cluster", "info", "--json"], |_| {
        observers(&cluster, 1) == [2, 3]
    });
    // Every partition gains a replica on it, first in its list (its preferred leader).
    for partition in 0..PARTITIONS {
        let (_, _, isr) = partition_state(&cluster, partition).expect("metadata");
        let target: Vec<i32> = std::iter::once(added * 1024).chain(isr).collect();
        reassign_and_wait(&cluster, 2, TOPIC, partition, &target);
    }
    wait_for_full_isr(&cluster);
    producer.send_many(&cluster, "three-nodes", 60);
    spate(&cluster, 1, &["cluster", "elect-leaders", "--topic", TOPIC]);
    wait_for_leader(&cluster, 0, added * 1024);

    // Killed and back, it joins again, catches up and leads again once elected.
    cluster.node(added).kill9();
    producer.send_many(&cluster, "node-3-down", 60);
    cluster.node(added).start_again();
    wait_for_full_isr(&cluster);
    // It registered saying that it had not stopped cleanly, and the controller said so.
    assert!(
        cluster.nodes[added as usize - 1]
            .log()
            .contains("did not stop cleanly"),
        "{}",
        cluster.logs()
    );
    assert!(
        cluster.nodes[0]
            .log()
            .contains("node registered after an unclean stop"),
        "{}",
        cluster.logs()
    );
    producer.send_many(&cluster, "node-3-back", 30);
    // After a SIGTERM it comes back as after a clean stop.
    cluster.node(added).restart();
    wait_for_full_isr(&cluster);
    assert!(
        !cluster.nodes[added as usize - 1]
            .log()
            .contains("did not stop cleanly"),
        "{}",
        cluster.logs()
    );
    producer.send_many(&cluster, "restarted", 30);
    verify(&cluster, &producer);
}
