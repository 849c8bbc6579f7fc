//! The controller's security records: SCRAM users, ACLs and client quotas, and the users
//! a cluster node brings to its first start.

use super::*;

#[test]
fn a_one_node_data_directory_is_not_taken_into_a_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = crate::metadata::store::MetadataStore::open(dir.path()).unwrap();
    store
        .append(&[MetadataRecord::ClusterId {
            cluster_id: "one-node".into(),
        }])
        .unwrap();
    drop(store);
    let error = crate::metadata::bootstrap::start_in_quorum(dir.path(), config(1))
        .err()
        .expect("refused");
    assert!(error.to_string().contains("one-node cluster"), "{error}");
    let fresh = tempfile::tempdir().unwrap();
    let started = crate::metadata::bootstrap::start_in_quorum(fresh.path(), config(1)).unwrap();
    assert_eq!(started.image.version, 0);
    assert!(started.first_credentials.is_empty());
}

#[test]
fn users_written_before_a_cluster_nodes_first_start_are_added_once_and_only_where_absent() {
    use crate::security::scram::{Mechanism, ScramCredential};
    let credential = |user: &str, password: &str| MetadataRecord::ScramCredential {
        user: user.into(),
        mechanism: Mechanism::ScramSha512,
        credential: ScramCredential::generate(Mechanism::ScramSha512, password, 4096),
    };
    // `spate user add --data-dir` on a fresh directory: a journal of users only.
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = crate::metadata::store::MetadataStore::open(dir.path()).unwrap();
    store.append(&[credential("admin", "first")]).unwrap();
    drop(store);
    let started = crate::metadata::bootstrap::start_in_quorum(dir.path(), config(1)).unwrap();
    assert_eq!(started.first_credentials.len(), 1);
    // The controller adds a user no one has yet; a user who exists keeps their password.
    let mut controller = started_controller_with_admin(credential("admin", "changed online"));
    let mut start = node_start(2, 1, 20);
    start.credentials = vec![credential("admin", "first"), credential("ops", "ops")];
    let (records, _) = controller.handle(ControllerRequest::StartNode(start));
    let added: Vec<&str> = records
        .iter()
        .filter_map(|record| match record {
            MetadataRecord::ScramCredential { user, .. } => Some(user.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(added, ["ops"]);
    assert!(controller
        .image()
        .scram_credential("admin", Mechanism::ScramSha512)
        .is_some());
    // Once sent, the journal is set aside: the next start sends nothing.
    crate::metadata::bootstrap::first_credentials_sent(dir.path());
    let again = crate::metadata::bootstrap::start_in_quorum(dir.path(), config(1)).unwrap();
    assert!(again.first_credentials.is_empty());
}

/// A started controller whose image holds `credential`.
fn started_controller_with_admin(credential: MetadataRecord) -> ControllerState {
    let mut controller = started(1);
    controller.apply(&[credential]);
    controller
}

#[test]
fn scram_credentials_change_per_user_all_or_nothing() {
    let mut controller = started(1);
    let credential = |password: &str| {
        ScramCredential::from_password(Mechanism::ScramSha256, password, b"salt", 4096)
    };
    let (records, reply) = controller.handle(ControllerRequest::AlterScramCredentials {
        upsertions: vec![
            ("alice".into(), Mechanism::ScramSha256, credential("a")),
            ("bob".into(), Mechanism::ScramSha256, credential("b")),
        ],
        deletions: Vec::new(),
    });
    assert_eq!(records.len(), 2);
    let ControllerReply::AlterScramCredentials(results) = reply else {
        panic!()
    };
    assert_eq!(
        results,
        vec![("alice".into(), Ok(())), ("bob".into(), Ok(()))]
    );
    // Bob's part names a credential he does not have: none of it is made, alice's is.
    let (records, reply) = controller.handle(ControllerRequest::AlterScramCredentials {
        upsertions: vec![
            ("bob".into(), Mechanism::ScramSha256, credential("b2")),
            ("alice".into(), Mechanism::ScramSha256, credential("a2")),
        ],
        deletions: vec![("bob".into(), Mechanism::ScramSha512)],
    });
    let ControllerReply::AlterScramCredentials(results) = reply else {
        panic!()
    };
    assert!(
        matches!(results[0], (ref user, Err(ControllerError::ResourceNotFound(_))) if user == "bob")
    );
    assert_eq!(results[1], ("alice".into(), Ok(())));
    assert_eq!(records.len(), 1);
    assert!(controller.image().verifies_password("alice", "a2"));
    assert!(controller.image().verifies_password("bob", "b"));
    assert!(!controller.image().verifies_password("bob", "b2"));
    let (_, _) = controller.handle(ControllerRequest::AlterScramCredentials {
        upsertions: Vec::new(),
        deletions: vec![("alice".into(), Mechanism::ScramSha256)],
    });
    assert!(!controller.image().verifies_password("alice", "a2"));
}

#[test]
fn acls_are_created_once_and_deleted_by_filter() {
    use crate::security::acl::{
        AclBinding, AclFilter, AclOperation, AclPermission, PatternType, ResourceType,
    };
    let mut controller = started(1);
    let acl = |principal: &str, operation| AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: "orders".into(),
        pattern_type: PatternType::Literal,
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission: AclPermission::Allow,
    };
    let alice_write = acl("User:alice", AclOperation::Write);
    let alice_read = acl("User:alice", AclOperation::Read);
    let bob_read = acl("User:bob", AclOperation::Read);
    let (records, reply) = controller.handle(ControllerRequest::CreateAcls {
        bindings: vec![
            alice_write.clone(),
            alice_write.clone(),
            alice_read,
            bob_read,
        ],
    });
    assert!(matches!(reply, ControllerReply::CreateAcls));
    assert_eq!(records.len(), 3, "the same ACL twice is stored once");
    let (records, _) = controller.handle(ControllerRequest::CreateAcls {
        bindings: vec![alice_write.clone()],
    });
    assert!(records.is_empty(), "an ACL already there makes no record");
    let alice = AclFilter {
        principal: Some("User:alice".into()),
        ..AclFilter::any()
    };
    let (records, reply) = controller.handle(ControllerRequest::DeleteAcls {
        filters: vec![alice, AclFilter::exactly(&alice_write)],
    });
    let ControllerReply::DeleteAcls(removed) = reply else {
        panic!()
    };
    assert_eq!(records.len(), 2);
    assert_eq!(removed[0].len(), 2);
    assert!(
        removed[1].is_empty(),
        "an ACL is reported by the first filter only"
    );
    assert_eq!(controller.image().acls().iter().len(), 1);
}

#[test]
fn client_quotas_write_a_record_per_real_change() {
    use crate::quota::store::{EntityName, QuotaEntity, QuotaKey, QuotaValue};
    let mut controller = started(1);
    let alice = QuotaEntity {
        user: Some(EntityName::Name("alice".into())),
        client_id: None,
    };
    let set = |value: Option<f64>| ControllerRequest::AlterClientQuotas {
        changes: vec![(
            alice.clone(),
            QuotaKey::ProducerByteRate,
            value.map(QuotaValue),
        )],
    };
    let (records, reply) = controller.handle(set(Some(1024.0)));
    assert!(matches!(reply, ControllerReply::ClientQuotasAltered));
    assert_eq!(records.len(), 1);
    let resolved = controller
        .image()
        .quotas()
        .resolve(QuotaKey::ProducerByteRate, "alice", "any")
        .unwrap();
    assert_eq!(resolved.bound, 1024.0);
    let (records, _) = controller.handle(set(Some(1024.0)));
    assert!(records.is_empty(), "the same value again changes nothing");
    let (records, _) = controller.handle(set(None));
    assert_eq!(records.len(), 1);
    let (records, _) = controller.handle(set(None));
    assert!(
        records.is_empty(),
        "removing what is not there changes nothing"
    );
    assert_eq!(controller.image().quotas().iter().len(), 0);
    // What a handler should have refused is left out here too.
    let (records, _) = controller.handle(set(Some(0.0)));
    assert!(records.is_empty(), "a zero rate is not a quota");
    let (records, _) = controller.handle(ControllerRequest::AlterClientQuotas {
        changes: vec![(
            QuotaEntity {
                user: None,
                client_id: None,
            },
            QuotaKey::ProducerByteRate,
            Some(QuotaValue(1.0)),
        )],
    });
    assert!(records.is_empty(), "an entity must name someone");
}
