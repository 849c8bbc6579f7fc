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

/// A table of broker ME over a temporary data directory whose image has topic "t" with one
/// partition assigned so; the directory, the table, the image and the topic's id.
fn table_with(
    assignment: &PartitionAssignment,
) -> (tempfile::TempDir, PartitionTable, MetadataImage, Uuid) {
    let dir = tempfile::tempdir().unwrap();
    let config = Harness::parse_from(["spate", "--data-dir", dir.path().to_str().unwrap()])
        .serve
        .resolve()
        .unwrap();
    let topic_id = Uuid::new_v4();
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
                assignments: vec![assignment.clone()],
            },
        ])
        .unwrap();
    let table = PartitionTable::new(ME, config, Arc::new(image.clone()));
    (dir, table, image, topic_id)
}

/// A restarted node opens a follower's log from its last image while the controller's newer
/// images arrive. An image applied during the open used to find no open replica to change,
/// and the replica then kept the older leader epoch until the next change of its partition;
/// the fetcher drops every answer whose epoch is not the replica's, so that follower never
/// caught up and never rejoined the ISR (found with `failover-stall.py`).
#[test]
fn a_replica_opened_while_an_image_arrives_takes_the_newer_assignment() {
    run(async {
        let before = PartitionAssignment {
            replicas: vec![OTHER, ME],
            isr: vec![OTHER],
            leader: OTHER,
            leader_epoch: LeaderEpoch(3),
            partition_epoch: 5,
            adding: Vec::new(),
            removing: Vec::new(),
        };
        let (_dir, table, image, topic_id) = table_with(&before);

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

/// A reassignment takes a replica off this broker and gives it back moments later (found by
/// the chaos run's reassignments). The first change hands the open replica back for
/// deletion, which runs in the background; the follower's fetcher, seeing the second,
/// opened the partition again before the deletion ran, found the old directory (the same
/// topic id), reused it, and then lost it to the deletion's rename: every later write of
/// that follower failed, and it never rejoined the ISR. The replica given back must open
/// only once the old one is gone, on a fresh directory.
#[test]
fn a_replica_given_back_while_its_old_copy_is_being_deleted_opens_a_fresh_log() {
    run(async {
        let hosted = PartitionAssignment::replicated(vec![OTHER, ME]);
        let (_dir, table, image, topic_id) = table_with(&hosted);
        let old = table.replica_of("t", 0).await.unwrap();
        let old_dir = old.log().dir().to_path_buf();
        drop(old);

        // Off this broker, then back.
        let apply = |image: &MetadataImage, replicas: Vec<BrokerId>| {
            let mut assignment = hosted.changed(OTHER, vec![OTHER]);
            assignment.replicas = replicas;
            let change = MetadataRecord::PartitionChange {
                topic_id,
                partition: 0,
                assignment,
            };
            let next = image.apply_all([&change]).unwrap();
            let retired = table.apply(&MetadataUpdate {
                image: Arc::new(next.clone()),
                records: Arc::new(vec![change]),
            });
            (next, retired)
        };
        let (without, retired) = apply(&image, vec![OTHER]);
        assert_eq!(retired.len(), 1, "the dropped replica is handed back");
        let (_, none) = apply(&without, vec![OTHER, ME]);
        assert!(none.is_empty());

        // The fetcher opens it again while the deletion runs (started first, as the shard's
        // background task would be).
        let (replica, ()) = futures::join!(table.replica_of("t", 0), table.retire(retired));
        let replica = replica.unwrap();
        assert_eq!(replica.log().dir(), old_dir, "the same directory name");
        assert!(
            old_dir.join("partition.metadata").exists(),
            "the new replica's directory was taken away by the old one's deletion"
        );
        assert_eq!(replica.log_end_offset(), spate_storage::Offset(0));
    });
}
