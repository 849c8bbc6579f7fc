//! DescribeLogDirs and the KIP-714 telemetry APIs against a real two-shard broker.

use crate::harness;

use std::collections::BTreeMap;

use harness::{batch, create_topic, produce, topic_name, Broker};
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{
    DescribeLogDirsRequest, GetTelemetrySubscriptionsRequest, PushTelemetryRequest,
};
use spate_engine::metadata::placement::default_shard;

const PARTITIONS: i32 = 4;

#[test]
fn each_shard_reports_the_bytes_of_the_partitions_it_hosts() {
    let broker = Broker::start(2);
    create_topic(&mut broker.client(0), "sized", PARTITIONS);
    for partition in 0..PARTITIONS {
        let owner = default_shard("sized", partition, 2).0 as usize;
        let values: Vec<String> = (0..=partition).map(|n| format!("value-{n}")).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        produce(
            &mut broker.client(owner),
            "sized",
            partition,
            batch(&values, None),
            -1,
        );
    }
    // partition -> (shard, size)
    let mut seen: BTreeMap<i32, (usize, i64)> = BTreeMap::new();
    for shard in 0..2 {
        let response = broker
            .client(shard)
            .send(4, &DescribeLogDirsRequest::default().with_topics(None))
            .expect("describe log dirs");
        assert_eq!(response.results.len(), 1, "one log dir");
        let dir = &response.results[0];
        assert_eq!(dir.error_code, 0);
        assert!(dir.log_dir.ends_with("data"), "{:?}", dir.log_dir);
        assert!(dir.total_bytes > 0 && (0..=dir.total_bytes).contains(&dir.usable_bytes));
        for topic in dir
            .topics
            .iter()
            .filter(|topic| topic.name.0.as_str() == "sized")
        {
            for partition in &topic.partitions {
                let previous =
                    seen.insert(partition.partition_index, (shard, partition.partition_size));
                assert!(previous.is_none(), "partition reported twice");
            }
        }
    }
    assert_eq!(seen.len(), PARTITIONS as usize);
    for (partition, (shard, size)) in &seen {
        assert_eq!(*shard, default_shard("sized", *partition, 2).0 as usize);
        assert!(*size > 0, "partition {partition} has bytes on disk");
    }

    // Only what was asked for.
    let asked =
        DescribeLogDirsRequest::default()
            .with_topics(Some(vec![DescribableLogDirTopic::default()
                .with_topic(topic_name("sized"))
                .with_partitions(vec![0, 1, 2, 3])]));
    let owner_of_0 = default_shard("sized", 0, 2).0 as usize;
    let response = broker.client(owner_of_0).send(1, &asked).expect("v1");
    let partitions: Vec<i32> = response.results[0]
        .topics
        .iter()
        .flat_map(|topic| topic.partitions.iter().map(|p| p.partition_index))
        .collect();
    assert!(partitions.contains(&0), "{partitions:?}");
    assert!(partitions
        .iter()
        .all(|&p| default_shard("sized", p, 2).0 as usize == owner_of_0));
}

#[test]
fn telemetry_subscriptions_are_empty_and_pushes_accepted() {
    let broker = Broker::start(1);
    let mut client = broker.client(0);
    let subscription = client
        .send(0, &GetTelemetrySubscriptionsRequest::default())
        .expect("subscriptions");
    assert_eq!(subscription.error_code, 0);
    assert!(!subscription.client_instance_id.is_nil());
    assert!(subscription.requested_metrics.is_empty());
    let pushed = client
        .send(
            0,
            &PushTelemetryRequest::default()
                .with_client_instance_id(subscription.client_instance_id),
        )
        .expect("push");
    assert_eq!(pushed.error_code, 0);
}
