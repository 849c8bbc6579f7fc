//! The table's replicas follow every image the shard applies, also one that arrives while a
//! replica's log is being opened (recovery awaits the disk).

use super::*;
use crate::config::tests::Harness;
use crate::metadata::image::{MetadataImage, PartitionAssignment};
use crate::metadata::records::MetadataRecord;
use crate::metadata::MetadataUpdate;
use crate::partition::test_support::{run, ME, OTHER};
use crate::partition::LeaderEpoch;
use clap::Parser;

/// A restarted node opens a follower's log from its last image while the controller's newer
/// images arrive. An image applied during the open used to find no open replica to change,
/// and the replica then kept the older leader epoch until the next change of its partition;
/// the fetcher drops every answer whose epoch is not the replica's, so that follower never
/// caught up and never rejoined the ISR (found with `failover-stall.py`).
#[test]
fn a_replica_opened_while_an_image_arrives_takes_the_newer_assignment() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let config = Harness::parse_from(["spate", "--data-dir", dir.path().to_str().unwrap()])
            .serve
            .resolve()
            .unwrap();
        let topic_id = Uuid::new_v4();
        let before = PartitionAssignment {
            replicas: vec![OTHER, ME],
            isr: vec![OTHER],
            leader: OTHER,
            leader_epoch: LeaderEpoch(3),
            partition_epoch: 5,
            adding: Vec::new(),
            removing: Vec::new(),
        };
        let image = MetadataImage::default()
            .apply_all(&[
                MetadataRecord::Topic {
                    name: "t".into(),
                    id: topic_id,
                    configs: Default::default(),
                },
                MetadataRecord::Partitions {
                    topic_id,
                    first: 0,
                    assignments: vec![before.clone()],
                },
            ])
            .unwrap();
        let table = PartitionTable::new(ME, config, Arc::new(image.clone()));

        let opening = table.replica_of("t", 0);
        futures::pin_mut!(opening);
        assert!(
            futures::poll!(opening.as_mut()).is_pending(),
            "the open did not wait for the disk: this test shows nothing"
        );
        // The leader moves on while the log opens.
        let change = MetadataRecord::PartitionChange {
            topic_id,
            partition: 0,
            assignment: before.changed(ME, vec![ME]),
        };
        let next = image.apply_all([&change]).unwrap();
        let retired = table.apply(&MetadataUpdate {
            image: Arc::new(next),
            records: Arc::new(vec![change]),
        });
        assert!(retired.is_empty());

        let replica = opening.await.unwrap();
        assert_eq!(replica.leader_epoch(), LeaderEpoch(4));
        assert!(replica.is_leader(), "the replica kept its older role");
    });
}
