//! `spate_net::async_client` against a real `spate serve`, on a glommio executor as a shard
//! would run it: versions negotiated, calls routed to each partition's leader (shard), the
//! answers a follower relies on, and a broker that goes away and comes back.

use crate::harness;

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use harness::{batch, create_topic, decode_values, produce, Broker};
use spate_engine::metadata::placement::default_shard;
use spate_net::async_client::{ClientError, ClientOptions, ClusterClient, Connect, FetchPosition};
use spate_net::error_code::{FENCED_LEADER_EPOCH, NONE, OFFSET_OUT_OF_RANGE, UNKNOWN_LEADER_EPOCH};

const TOPIC: &str = "followed";
const PARTITIONS: i32 = 4;

fn connect() -> Connect<glommio::net::TcpStream> {
    Rc::new(|address: String| {
        Box::pin(async move { Ok(glommio::net::TcpStream::connect(address.as_str()).await?) })
    })
}

fn options() -> ClientOptions {
    ClientOptions {
        client_id: "async-client-test".into(),
        request_timeout: Duration::from_secs(10),
        max_response_bytes: 8 << 20,
        sleep: Rc::new(|duration| Box::pin(glommio::timer::sleep(duration))),
    }
}

fn position(offset: i64, current_leader_epoch: i32) -> FetchPosition {
    FetchPosition {
        offset,
        current_leader_epoch,
        last_fetched_epoch: -1,
    }
}

fn run<T: 'static>(future: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default()
        .make()
        .expect("executor")
        .run(spate_storage::wakeup::guarded(future))
}

#[test]
fn a_shard_side_client_routes_to_leaders_and_reads_what_a_follower_needs() {
    let broker = Broker::start(2);
    create_topic(&mut broker.client(0), TOPIC, PARTITIONS);
    let owners: BTreeSet<u32> = (0..PARTITIONS)
        .map(|partition| default_shard(TOPIC, partition, 2).0)
        .collect();
    assert_eq!(
        owners.len(),
        2,
        "both shards lead a partition: routing is tested"
    );
    for partition in 0..PARTITIONS {
        let owner = default_shard(TOPIC, partition, 2).0 as usize;
        let mut client = broker.client(owner);
        let values = [format!("{partition}-a"), format!("{partition}-b")];
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        produce(&mut client, TOPIC, partition, batch(&values, None), -1);
        produce(&mut client, TOPIC, partition, batch(&["last"], None), -1);
    }
    let bootstrap = broker.address(0).to_string();
    run(async move {
        let mut client = ClusterClient::new(vec![bootstrap], connect(), options());
        for partition in 0..PARTITIONS {
            let (_, epoch) = client.leader(TOPIC, partition).await.unwrap();
            let fetched = client
                .fetch(
                    TOPIC,
                    partition,
                    position(0, epoch),
                    1 << 20,
                    Duration::ZERO,
                )
                .await
                .unwrap();
            assert_eq!((fetched.error_code, fetched.high_watermark), (NONE, 3));
            assert_eq!(
                decode_values(&fetched.records),
                vec![
                    (0, format!("{partition}-a")),
                    (1, format!("{partition}-b")),
                    (2, "last".to_string())
                ]
            );
            // At the end: a long poll that ends empty.
            let at_end = client
                .fetch(
                    TOPIC,
                    partition,
                    position(3, epoch),
                    1 << 20,
                    Duration::from_millis(50),
                )
                .await
                .unwrap();
            assert_eq!((at_end.error_code, at_end.records.len()), (NONE, 0));
            let beyond = client
                .fetch(
                    TOPIC,
                    partition,
                    position(100, epoch),
                    1 << 20,
                    Duration::ZERO,
                )
                .await
                .unwrap();
            assert_eq!(beyond.error_code, OFFSET_OUT_OF_RANGE);

            let earliest = client.list_offsets(TOPIC, partition, -2).await.unwrap();
            let latest = client.list_offsets(TOPIC, partition, -1).await.unwrap();
            assert_eq!((earliest.error_code, earliest.offset), (NONE, 0));
            assert_eq!((latest.error_code, latest.offset), (NONE, 3));

            let ended = client
                .offset_for_leader_epoch(TOPIC, partition, epoch, epoch)
                .await
                .unwrap();
            assert_eq!(
                (ended.error_code, ended.leader_epoch, ended.end_offset),
                (NONE, epoch, 3)
            );
            let ahead = client
                .fetch(
                    TOPIC,
                    partition,
                    position(0, epoch + 1),
                    1 << 20,
                    Duration::ZERO,
                )
                .await
                .unwrap();
            assert_eq!(ahead.error_code, UNKNOWN_LEADER_EPOCH);
            if epoch > 0 {
                let behind = client
                    .fetch(
                        TOPIC,
                        partition,
                        position(0, epoch - 1),
                        1 << 20,
                        Duration::ZERO,
                    )
                    .await
                    .unwrap();
                assert_eq!(behind.error_code, FENCED_LEADER_EPOCH);
            }
        }
        let unknown = client.leader("no-such-topic", 0).await;
        assert!(
            matches!(unknown, Err(ClientError::NoLeader { .. })),
            "{unknown:?}"
        );
    });
}

#[test]
fn a_broker_that_goes_away_is_an_error_and_is_reconnected_when_back() {
    let mut broker = Broker::start(1);
    create_topic(&mut broker.client(0), TOPIC, 1);
    produce(&mut broker.client(0), TOPIC, 0, batch(&["kept"], None), -1);
    let bootstrap = broker.address(0).to_string();
    run(async move {
        let mut client = ClusterClient::new(vec![bootstrap], connect(), options());
        let (_, epoch) = client.leader(TOPIC, 0).await.unwrap();
        let before = client
            .fetch(TOPIC, 0, position(0, epoch), 1 << 20, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(decode_values(&before.records).len(), 1);

        assert_eq!(broker.stop(), Some(0), "clean shutdown:\n{}", broker.log());
        let gone = client
            .fetch(TOPIC, 0, position(0, epoch), 1 << 20, Duration::ZERO)
            .await;
        assert!(
            matches!(
                gone,
                Err(ClientError::Io { .. } | ClientError::Protocol { .. })
            ),
            "{gone:?}"
        );

        broker.restart();
        // The broken connection is replaced by a new one on the next call.
        let after = client
            .fetch(TOPIC, 0, position(0, epoch), 1 << 20, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(decode_values(&after.records), vec![(0, "kept".to_string())]);
        drop(broker);
    });
}
