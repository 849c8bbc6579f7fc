use std::collections::BTreeMap;

use super::*;
use crate::metadata::image::PartitionAssignment;
use crate::partition::BrokerId;

fn topic_records(name: &str, partitions: usize) -> Vec<MetadataRecord> {
    let id = Uuid::new_v4();
    vec![
        MetadataRecord::Topic {
            name: name.into(),
            id,
            configs: BTreeMap::new(),
        },
        MetadataRecord::Partitions {
            topic_id: id,
            first: 0,
            assignments: vec![PartitionAssignment::single(BrokerId(0)); partitions],
        },
    ]
}

fn names(image: &MetadataImage) -> Vec<String> {
    image.topics().map(|topic| topic.name.clone()).collect()
}

#[test]
fn batches_survive_a_reopen_and_registrations_are_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, loaded) = MetadataStore::open(dir.path()).unwrap();
    assert_eq!(loaded.image.version, 0);
    let mut batch = topic_records("a", 2);
    batch.push(MetadataRecord::Controller {
        broker: BrokerId(0),
    });
    store.append(&batch).unwrap();
    store.append(&topic_records("b", 1)).unwrap();
    drop(store);
    let (_, loaded) = MetadataStore::open(dir.path()).unwrap();
    assert_eq!(names(&loaded.image), ["a", "b"]);
    assert_eq!(loaded.image.partition_count(), 3);
    assert_eq!(
        loaded.image.controller, None,
        "registrations are made at every start"
    );
}

#[test]
fn a_torn_last_batch_is_cut_off_and_the_journal_continues_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = MetadataStore::open(dir.path()).unwrap();
    store.append(&topic_records("kept", 1)).unwrap();
    let path = journal_path(&dir.path().join(DIRECTORY), 0);
    let whole = fs::read(&path).unwrap();
    // A second batch whose write was cut short by a crash.
    let mut torn = whole.clone();
    torn.extend_from_slice(&whole[..whole.len() / 2]);
    fs::write(&path, &torn).unwrap();
    drop(store);
    let (mut store, loaded) = MetadataStore::open(dir.path()).unwrap();
    assert_eq!(names(&loaded.image), ["kept"]);
    assert_eq!(fs::read(&path).unwrap(), whole, "the torn batch is cut off");
    store.append(&topic_records("after", 1)).unwrap();
    drop(store);
    let (_, loaded) = MetadataStore::open(dir.path()).unwrap();
    assert_eq!(names(&loaded.image), ["after", "kept"]);
}

#[test]
fn a_snapshot_starts_a_new_journal_and_a_crash_at_any_step_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let metadata_dir = dir.path().join(DIRECTORY);
    let (mut store, loaded) = MetadataStore::open(dir.path()).unwrap();
    let mut image = loaded.image;
    for name in ["a", "b"] {
        let batch = topic_records(name, 1);
        store.append(&batch).unwrap();
        image = image.apply_all(&batch).unwrap();
    }
    store.snapshot(&image).unwrap();
    assert!(!journal_path(&metadata_dir, 0).exists());
    store.append(&topic_records("c", 1)).unwrap();
    drop(store);
    let (_, loaded) = MetadataStore::open(dir.path()).unwrap();
    assert_eq!(names(&loaded.image), ["a", "b", "c"]);

    // A crash after the next journal was created but before the snapshot was renamed: the
    // old snapshot and its journal still tell the whole story.
    fs::write(journal_path(&metadata_dir, 2), b"").unwrap();
    let (_, loaded) = MetadataStore::open(dir.path()).unwrap();
    assert_eq!(names(&loaded.image), ["a", "b", "c"]);
    // A crash after the snapshot was renamed but before the old journal was deleted: the old
    // journal's batches are in the snapshot and are not applied again.
    fs::write(
        journal_path(&metadata_dir, 0),
        fs::read(journal_path(&metadata_dir, 1)).unwrap(),
    )
    .unwrap();
    let (_, loaded) = MetadataStore::open(dir.path()).unwrap();
    assert_eq!(names(&loaded.image), ["a", "b", "c"]);
}

#[test]
fn an_old_topic_catalog_is_read_for_migration() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::new_v4();
    fs::write(
        dir.path().join("topics.json"),
        format!(
            r#"{{"cluster_id":"abc","producer_id_limit":2000,"topics":[{{"name":"orders","id":"{id}","partitions":3,"configs":{{"retention.ms":"1000"}}}}]}}"#
        ),
    )
    .unwrap();
    let (_, loaded) = MetadataStore::open(dir.path()).unwrap();
    let legacy = loaded.legacy.unwrap();
    assert_eq!(
        (legacy.cluster_id.as_str(), legacy.producer_id_limit),
        ("abc", 2000)
    );
    assert_eq!(legacy.topics[0].id, id);
    assert_eq!(legacy.topics[0].configs["retention.ms"], "1000");
    MetadataStore::retire_legacy_catalog(dir.path());
    assert!(dir.path().join("topics.json.migrated").exists());
    let (_, loaded) = MetadataStore::open(dir.path()).unwrap();
    assert!(loaded.legacy.is_none());
}
