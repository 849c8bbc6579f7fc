//! A replicated partition's high watermark across a restart: it starts from the checkpoint in
//! the partition's directory, not from the log start. Without it, a restarted leader showed
//! consumers an end offset that went back and served them nothing until every in-sync
//! replica had fetched again, which a frozen one never does before its session ends.

use super::*;

/// The high watermark in `node`'s checkpoint of `partition`, if one was written.
fn checkpointed(node: &harness::Broker, partition: i32) -> Option<i64> {
    let path = node
        .data_dir()
        .join("data")
        .join(format!("{TOPIC}-{partition}"))
        .join("high-watermark-checkpoint");
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().nth(1)?.split(' ').next()?.parse().ok()
}

#[test]
fn a_restarted_leader_keeps_its_high_watermark_while_a_frozen_replica_stays_in_the_isr() {
    // Sessions and ISR lag far longer than the test: the frozen node stays registered,
    // unfenced and in every ISR, so no high watermark can advance without it.
    let mut cluster = start_cluster_with(&[
        "--broker-session-timeout-ms",
        "120000",
        "--broker-heartbeat-interval-ms",
        "300",
        "--replica-lag-time-max-ms",
        "120000",
        "--replica-high-watermark-checkpoint-interval-ms",
        "100",
    ]);
    let mut producer = Producer::new(&cluster);
    producer.send_many(&cluster, "before", 30);
    let ends: Vec<i64> = (0..PARTITIONS)
        .map(|partition| producer.acked[&partition].last().unwrap().offset + 1)
        .collect();
    harness::wait_for("every replica's checkpoint", WAIT, || {
        cluster
            .nodes
            .iter()
            .all(|node| (0..PARTITIONS).all(|p| checkpointed(node, p) == Some(ends[p as usize])))
    });

    // Node 3 freezes (it neither answers nor refuses: it stays in every ISR), the other
    // two crash and come back.
    let pid = cluster.node(3).pid().expect("running") as i32;
    // SAFETY: signals to a child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for node in [1, 2] {
            cluster.node(node).kill9();
        }
        for node in [1, 2] {
            cluster.node(node).start_again();
        }
        let mut checked = 0;
        for partition in 0..PARTITIONS {
            let deadline = Instant::now() + WAIT;
            let leader = loop {
                if let Some((_, leader, isr)) = partition_state(&cluster, partition) {
                    if leader > 0 {
                        assert_eq!(isr.len(), 3, "partition {partition}: the ISR shrank");
                        break leader / 1024;
                    }
                }
                assert!(Instant::now() < deadline, "no leader\n{}", cluster.logs());
                std::thread::sleep(Duration::from_millis(50));
            };
            if leader == 3 {
                continue;
            }
            let address = cluster.nodes[leader as usize - 1].address(0);
            let mut client = Client::connect(address, Duration::from_secs(5)).expect("connects");
            let response = fetch(&mut client, TOPIC, partition, 0, 0);
            let data = &response.responses[0].partitions[0];
            assert_eq!(data.error_code, 0, "partition {partition}");
            assert_eq!(
                data.high_watermark,
                ends[partition as usize],
                "partition {partition}: the restarted leader (node {leader}) lost its high watermark"
            );
            let records = decode_values(&data.records.clone().unwrap_or_default());
            assert!(
                !records.is_empty(),
                "partition {partition}: nothing readable"
            );
            checked += 1;
        }
        checked
    }));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let checked = checked.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(checked > 0, "every partition was led by the frozen node");
    wait_for_full_isr(&cluster);
    producer.send_many(&cluster, "after", 30);
    verify(&cluster, &producer);
}
