//! Fencing: a node killed or frozen past its session loses its leaderships and ISR places,
//! the quorum's leader among them; DescribeCluster v2 shows it fenced; it rejoins every ISR
//! once back.

use super::*;
use kafka_protocol::messages::DescribeClusterRequest;

#[test]
fn a_dead_nodes_leaderships_move_without_waiting_for_its_session_to_expire() {
    // A two-minute session: a node fenced within the test's wait (30 s) was fenced because
    // its controller port refused the quorum leader's connections, not because it went
    // quiet. Both cases: a node that does not lead the quorum, then the quorum's leader
    // (whose successor must first be elected, and starts every session clock afresh).
    let mut cluster = start_cluster_with(&[
        "--broker-session-timeout-ms",
        "120000",
        "--broker-heartbeat-interval-ms",
        "300",
    ]);
    let explained = |cluster: &Cluster| -> usize {
        cluster
            .nodes
            .iter()
            .map(|node| {
                node.log()
                    .matches("controller port refuses connections")
                    .count()
            })
            .sum()
    };
    for kill_quorum_leader in [false, true] {
        let (quorum_leader, _) = cluster.wait_for_leader(&[1, 2, 3], &[1, 2, 3], 0);
        let victim = match (kill_quorum_leader, quorum_leader) {
            (true, leader) => leader,
            (false, 1) => 2,
            (false, _) => 1,
        };
        let explained_before = explained(&cluster);
        cluster.node(victim).kill9();
        let took = wait_until_fenced(&cluster, victim);
        eprintln!("node {victim} fenced {took:?} after its kill -9");
        assert!(
            explained(&cluster) > explained_before,
            "the fencing says why: {}",
            cluster.logs()
        );
        // It comes back, registers again (unfenced) and rejoins every ISR.
        cluster.node(victim).start_again();
        wait_for_full_isr(&cluster);
    }
}

/// Waits until DescribeCluster v2 on `asked` lists `fenced`'s broker as fenced when asked to
/// include fenced brokers (KIP-1073), and leaves it out otherwise.
fn wait_for_fenced_in_describe_cluster(cluster: &Cluster, asked: i32, fenced: i32) {
    let address = cluster.nodes[asked as usize - 1].address(0);
    let mut client = Client::connect(address, Duration::from_secs(5)).expect("connects");
    let listed = |client: &mut Client, include_fenced: bool| -> Vec<(i32, bool)> {
        let request = DescribeClusterRequest::default()
            .with_endpoint_type(1)
            .with_include_fenced_brokers(include_fenced);
        let response = client.send(2, &request).expect("describe cluster v2");
        response
            .brokers
            .iter()
            .map(|broker| (broker.broker_id.0, broker.is_fenced))
            .collect()
    };
    let broker = fenced * 1024;
    let deadline = Instant::now() + WAIT;
    while !listed(&mut client, true).contains(&(broker, true)) {
        assert!(
            Instant::now() < deadline,
            "node {asked} never lists broker {broker} as fenced: {:?}",
            listed(&mut client, true)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        listed(&mut client, false)
            .iter()
            .all(|(id, _)| *id != broker),
        "a fenced broker is left out unless asked for"
    );
}

#[test]
fn a_frozen_quorum_leader_wakes_up_as_a_follower_and_rejoins_every_isr() {
    // The node that leads the controller quorum (and some partitions) is frozen past its
    // session: the others elect a new quorum leader, fence it and move its leaderships. Woken,
    // it still believes for a moment that it leads, with every session clock stale; it must
    // step down, heartbeat to the new leader, be unfenced and rejoin every ISR.
    let mut cluster = start_cluster();
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "before", 30);
    let (zombie, _) = cluster.wait_for_leader(&[1, 2, 3], &[1, 2, 3], 0);
    let pid = cluster.node(zombie).pid().expect("running") as i32;
    // SAFETY: signals to a child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let fenced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until_fenced(&cluster, zombie);
        wait_for_fenced_in_describe_cluster(&cluster, if zombie == 1 { 2 } else { 1 }, zombie);
        producer.send_many(&cluster, "during", 30);
    }));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    if let Err(panic) = fenced {
        std::panic::resume_unwind(panic);
    }
    wait_for_full_isr(&cluster);
    producer.send_many(&cluster, "after", 30);
    verify(&cluster, &producer);
}
