//! The metadata state machine on its own: entries in, images out, snapshots to disk and back.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use futures::stream;
use openraft::alias::EntryOf;
use openraft::entry::RaftEntry;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::{blank_ent, log_id, membership_ent};
use uuid::Uuid;

use super::metadata_machine::{ImageSink, MetadataStateMachine, QuorumCommand, SNAPSHOT_FILE};
use super::run_in_executor;
use super::QuorumTypes as C;
use crate::metadata::image::{MetadataImage, PartitionAssignment};
use crate::metadata::records::MetadataRecord;
use crate::metadata::MetadataUpdate;
use crate::partition::{BrokerId, NodeId, ShardId};

/// Keeps every update it is given.
#[derive(Default)]
struct Recorder {
    updates: RefCell<Vec<MetadataUpdate>>,
}

impl ImageSink for Recorder {
    fn applied(&self, update: MetadataUpdate) {
        self.updates.borrow_mut().push(update);
    }
}

fn topic_records(name: &str, partitions: usize) -> Vec<MetadataRecord> {
    let id = Uuid::new_v4();
    let leader = BrokerId::of_shard(NodeId(1), ShardId(0));
    vec![
        MetadataRecord::Topic {
            name: name.into(),
            id,
            configs: BTreeMap::new(),
        },
        MetadataRecord::Partitions {
            topic_id: id,
            first: 0,
            assignments: vec![PartitionAssignment::single(leader); partitions],
        },
    ]
}

fn normal(index: u64, records: Vec<MetadataRecord>) -> EntryOf<C> {
    EntryOf::<C>::new_normal(log_id::<C>(1, 1, index), QuorumCommand { records })
}

async fn apply(machine: &mut MetadataStateMachine, entries: Vec<EntryOf<C>>) {
    let entries = entries.into_iter().map(|entry| Ok((entry, None)));
    machine
        .apply(stream::iter(entries))
        .await
        .expect("entries apply");
}

/// Entries 1..=4: membership, blank, cluster id, a topic of 3 partitions.
fn first_entries() -> Vec<EntryOf<C>> {
    vec![
        membership_ent::<C>(1, 1, 1, vec![BTreeSet::from([1, 2, 3])]),
        blank_ent::<C>(1, 1, 2),
        normal(
            3,
            vec![MetadataRecord::ClusterId {
                cluster_id: "spate-test".into(),
            }],
        ),
        normal(4, topic_records("orders", 3)),
    ]
}

#[test]
fn entries_apply_in_order_and_reach_the_sink() {
    run_in_executor(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = Rc::new(Recorder::default());
        let mut machine = MetadataStateMachine::open(dir.path(), sink.clone()).expect("opens");
        apply(&mut machine, first_entries()).await;
        let image = machine.image().clone();
        assert_eq!(image.version, 3, "three records applied");
        assert_eq!(image.cluster_id, "spate-test");
        assert_eq!(image.partition_count(), 3);
        let (applied, membership) = machine.applied_state().await.expect("applied state");
        assert_eq!(applied, Some(log_id::<C>(1, 1, 4)));
        assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![1, 2, 3]);
        let versions: Vec<u64> = sink.updates.borrow().iter().map(|u| u.version()).collect();
        assert_eq!(versions, vec![1, 3], "one update per entry with records");
        assert_eq!(sink.updates.borrow()[1].records.len(), 2);
    });
}

#[test]
fn a_refused_entry_changes_nothing_and_the_next_applies() {
    run_in_executor(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = Rc::new(Recorder::default());
        let mut machine = MetadataStateMachine::open(dir.path(), sink.clone()).expect("opens");
        let mut entries = first_entries();
        // The same topic again: `apply` refuses it; the state machine must not stop.
        let duplicate = match &entries[3].payload {
            openraft::EntryPayload::Normal(command) => command.records.clone(),
            _ => unreachable!(),
        };
        entries.push(normal(5, duplicate));
        entries.push(normal(6, topic_records("payments", 1)));
        apply(&mut machine, entries).await;
        assert_eq!(machine.image().version, 5);
        assert_eq!(machine.image().partition_count(), 4);
        let (applied, _) = machine.applied_state().await.expect("applied state");
        assert_eq!(applied, Some(log_id::<C>(1, 1, 6)));
    });
}

#[test]
fn a_snapshot_is_stored_and_a_restarted_member_starts_from_it() {
    run_in_executor(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = Rc::new(Recorder::default());
        let mut machine = MetadataStateMachine::open(dir.path(), sink.clone()).expect("opens");
        apply(&mut machine, first_entries()).await;
        let mut builder = machine.get_snapshot_builder().await;
        let snapshot = builder.build_snapshot().await.expect("snapshot builds");
        assert_eq!(snapshot.meta.last_log_id, Some(log_id::<C>(1, 1, 4)));
        assert!(dir.path().join(SNAPSHOT_FILE).exists());

        let mut reopened =
            MetadataStateMachine::open(dir.path(), Rc::new(Recorder::default())).expect("reopens");
        assert_eq!(reopened.image().version, machine.image().version);
        assert_eq!(reopened.image().to_records(), machine.image().to_records());
        let (applied, membership) = reopened.applied_state().await.expect("applied state");
        assert_eq!(applied, Some(log_id::<C>(1, 1, 4)));
        assert_eq!(membership.voter_ids().count(), 3);
        let current = reopened
            .get_current_snapshot()
            .await
            .expect("snapshot reads")
            .expect("a snapshot is there");
        assert_eq!(current.meta, snapshot.meta);
        assert_eq!(current.snapshot, snapshot.snapshot);
        // Later entries apply on top of the snapshot's image.
        apply(&mut reopened, vec![normal(5, topic_records("payments", 2))]).await;
        assert_eq!(reopened.image().partition_count(), 5);
        assert_eq!(reopened.image().version, 5);
    });
}

#[test]
fn a_member_installs_the_leaders_snapshot_and_a_bad_one_changes_nothing() {
    run_in_executor(|| async {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let mut leader =
            MetadataStateMachine::open(leader_dir.path(), Rc::new(Recorder::default()))
                .expect("opens");
        apply(&mut leader, first_entries()).await;
        let snapshot = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot builds");

        let dir = tempfile::tempdir().expect("tempdir");
        let sink = Rc::new(Recorder::default());
        let mut member = MetadataStateMachine::open(dir.path(), sink.clone()).expect("opens");
        apply(&mut member, vec![normal(1, topic_records("stale", 1))]).await;
        let before = member.image().clone();
        let error = member
            .install_snapshot(&snapshot.meta, b"{not json".to_vec())
            .await
            .expect_err("garbage is refused");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(Arc::ptr_eq(member.image(), &before), "nothing changed");
        assert!(!dir.path().join(SNAPSHOT_FILE).exists());

        member
            .install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
            .await
            .expect("installs");
        assert_eq!(member.image().to_records(), leader.image().to_records());
        assert_eq!(member.image().version, leader.image().version);
        assert!(member.image().topic("stale").is_none());
        assert_eq!(
            sink.updates.borrow().last().map(|u| u.version()),
            Some(leader.image().version)
        );
        let reopened =
            MetadataStateMachine::open(dir.path(), Rc::new(Recorder::default())).expect("reopens");
        assert_eq!(reopened.image().to_records(), leader.image().to_records());
    });
}

#[test]
fn a_damaged_snapshot_file_stops_the_start() {
    run_in_executor(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut machine =
            MetadataStateMachine::open(dir.path(), Rc::new(Recorder::default())).expect("opens");
        apply(&mut machine, first_entries()).await;
        machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot builds");
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).expect("reads");
        let last = bytes.len() - 2;
        bytes[last] ^= 0x20;
        std::fs::write(&path, &bytes).expect("writes");
        let error = MetadataStateMachine::open(dir.path(), Rc::new(Recorder::default()))
            .err()
            .expect("a damaged snapshot is refused");
        assert!(error.to_string().contains("checksum"), "{error}");
        std::fs::write(&path, b"short").expect("writes");
        assert!(MetadataStateMachine::open(dir.path(), Rc::new(Recorder::default())).is_err());
    });
}

#[test]
fn every_image_survives_its_snapshot() {
    // The empty image too: a member snapshotting before any record must restore to empty.
    let empty = MetadataImage::default();
    let copy = MetadataImage::from_snapshot(0, &empty.to_records()).expect("applies");
    assert_eq!(copy.version, 0);
    assert!(copy.to_records().is_empty());
}
