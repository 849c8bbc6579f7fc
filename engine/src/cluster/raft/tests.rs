//! Three controller nodes in one glommio LocalExecutor: elect, replicate, partition the leader,
//! re-elect with a higher term, heal, and check that every state machine holds the same commands.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::memory_network::{NodeNetwork, Router};
use super::memory_store::{LogStore, StateMachine};
use super::ControllerRaft;
use glommio::LocalExecutorBuilder;
use openraft::rt::WatchReceiver;
use openraft::{BasicNode, Config, ServerState};

const NODE_IDS: [u64; 3] = [1, 2, 3];
const WAIT: Option<Duration> = Some(Duration::from_secs(5));

struct Node {
    raft: ControllerRaft,
    state_machine: StateMachine,
}

async fn start_cluster(router: &Router) -> BTreeMap<u64, Node> {
    let config = Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 150,
            election_timeout_max: 300,
            ..Default::default()
        }
        .validate()
        .expect("valid raft config"),
    );
    let mut nodes = BTreeMap::new();
    for node_id in NODE_IDS {
        let state_machine = StateMachine::default();
        let network = NodeNetwork {
            source: node_id,
            router: router.clone(),
        };
        let raft = ControllerRaft::new(
            node_id,
            config.clone(),
            network,
            LogStore::default(),
            state_machine.clone(),
        )
        .await
        .expect("raft starts");
        router.add(node_id, raft.clone());
        nodes.insert(
            node_id,
            Node {
                raft,
                state_machine,
            },
        );
    }
    nodes
}

/// Waits until `among` agree on one leader and returns (leader id, term).
async fn wait_for_leader(nodes: &BTreeMap<u64, Node>, among: &[u64]) -> (u64, u64) {
    let first = &nodes[&among[0]].raft;
    let metrics = first
        .wait(WAIT)
        .metrics(
            |m| {
                m.current_leader
                    .is_some_and(|leader| among.contains(&leader))
            },
            "leader elected",
        )
        .await
        .expect("a leader is elected");
    let leader = metrics.current_leader.expect("leader known");
    let leader_metrics = nodes[&leader]
        .raft
        .wait(WAIT)
        // A new leader refuses writes (ForwardReason::LeaseExpired) until a quorum has acked it.
        .leader_with_quorum_acked(None, "leader has a quorum-acked lease")
        .await
        .expect("leader reports Leader with a lease");
    (leader, leader_metrics.current_term)
}

async fn write_commands(leader: &ControllerRaft, prefix: &str, count: usize) -> u64 {
    let mut last_index = 0;
    for sequence in 0..count {
        let response = leader
            .client_write(format!("{prefix}-{sequence}"))
            .await
            .expect("write commits");
        last_index = response.log_id.index;
    }
    last_index
}

async fn wait_applied(nodes: &BTreeMap<u64, Node>, which: &[u64], index: u64) {
    for node_id in which {
        nodes[node_id]
            .raft
            .wait(WAIT)
            .applied_index_at_least(Some(index), format!("node {node_id} applies {index}"))
            .await
            .expect("follower catches up");
    }
}

async fn scenario() {
    let router = Router::default();
    let nodes = start_cluster(&router).await;

    let members: BTreeMap<u64, BasicNode> = NODE_IDS
        .iter()
        .map(|id| (*id, BasicNode::new("")))
        .collect();
    nodes[&1]
        .raft
        .initialize(members)
        .await
        .expect("cluster initializes");

    let (first_leader, first_term) = wait_for_leader(&nodes, &NODE_IDS).await;
    println!("leader {first_leader} elected in term {first_term}");

    let index = write_commands(&nodes[&first_leader].raft, "before", 10).await;
    wait_applied(&nodes, &NODE_IDS, index).await;
    println!("10 writes committed and applied on all three (last index {index})");

    router.set_partitioned(first_leader, true);
    let survivors: Vec<u64> = NODE_IDS
        .iter()
        .copied()
        .filter(|id| *id != first_leader)
        .collect();
    let (second_leader, second_term) = loop {
        let (leader, term) = wait_for_leader(&nodes, &survivors).await;
        if term > first_term {
            break (leader, term);
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(second_leader, first_leader);
    println!("leader {first_leader} partitioned; {second_leader} elected in term {second_term}");

    let index = write_commands(&nodes[&second_leader].raft, "after", 10).await;
    wait_applied(&nodes, &survivors, index).await;
    println!("10 more writes committed on the majority (last index {index})");

    router.set_partitioned(first_leader, false);
    wait_applied(&nodes, &[first_leader], index).await;
    let rejoined = nodes[&first_leader].raft.metrics().borrow_watched().clone();
    assert_eq!(rejoined.current_leader, Some(second_leader));
    assert_eq!(rejoined.state, ServerState::Follower);
    println!(
        "old leader {first_leader} rejoined as follower of {second_leader}, term {}",
        rejoined.current_term
    );

    let expected = nodes[&NODE_IDS[0]].state_machine.commands();
    assert_eq!(expected.len(), 20);
    for node_id in NODE_IDS {
        assert_eq!(
            nodes[&node_id].state_machine.commands(),
            expected,
            "node {node_id} diverged"
        );
    }
    println!("all state machines equal: {} commands", expected.len());

    for node in nodes.values() {
        node.raft.shutdown().await.expect("clean shutdown");
    }
}

#[test]
fn three_nodes_elect_replicate_failover_rejoin() {
    LocalExecutorBuilder::default()
        .spawn(|| spate_storage::wakeup::guarded(scenario()))
        .expect("executor starts")
        .join()
        .expect("scenario finishes");
}

#[test]
fn openraft_runtime_conformance_suite() {
    openraft::rt::testing::Suite::<super::runtime::GlommioRuntime>::test_all();
}
