use super::*;

fn entity(user: Option<Option<&str>>, client_id: Option<Option<&str>>) -> QuotaEntity {
    QuotaEntity {
        user: user.map(EntityName::from_wire),
        client_id: client_id.map(EntityName::from_wire),
    }
}

const PRODUCE: QuotaKey = QuotaKey::ProducerByteRate;

/// Kafka's eight levels, each shadowing the ones after it.
#[test]
fn the_most_specific_entity_wins_in_kafkas_order() {
    let levels = [
        (entity(Some(Some("alice")), Some(Some("app"))), true, true),
        (entity(Some(Some("alice")), Some(None)), true, true),
        (entity(Some(Some("alice")), None), true, false),
        (entity(Some(None), Some(Some("app"))), true, true),
        (entity(Some(None), Some(None)), true, true),
        (entity(Some(None), None), true, false),
        (entity(None, Some(Some("app"))), false, true),
        (entity(None, Some(None)), false, true),
    ];
    let mut store = QuotaStore::default();
    for (bound, (entity, ..)) in levels.iter().enumerate() {
        store.set(entity, PRODUCE, Some(bound as f64 + 1.0));
    }
    // Remove the levels one by one, most specific first: the next one takes over.
    for (bound, (entity, by_user, by_client_id)) in levels.iter().enumerate() {
        let resolved = store.resolve(PRODUCE, "alice", "app").unwrap();
        assert_eq!(resolved.bound, bound as f64 + 1.0, "level {}", bound + 1);
        assert_eq!(
            resolved.sensor,
            SensorScope {
                by_user: *by_user,
                by_client_id: *by_client_id
            }
        );
        store.set(entity, PRODUCE, None);
    }
    assert_eq!(store.resolve(PRODUCE, "alice", "app"), None);
    assert!(!store.any(PRODUCE));
    assert_eq!(store.iter().len(), 0);
}

#[test]
fn other_users_and_keys_are_not_bound() {
    let mut store = QuotaStore::default();
    store.set(&entity(Some(Some("alice")), None), PRODUCE, Some(1024.0));
    assert_eq!(store.resolve(PRODUCE, "bob", "app"), None);
    assert_eq!(
        store.resolve(QuotaKey::ConsumerByteRate, "alice", "app"),
        None
    );
    assert!(!store.any(QuotaKey::ConsumerByteRate));
    // A user's quota for another client id does not bind this one.
    store.set(
        &entity(Some(Some("bob")), Some(Some("other"))),
        PRODUCE,
        Some(1.0),
    );
    assert_eq!(store.resolve(PRODUCE, "bob", "app"), None);
}

#[test]
fn removing_a_key_keeps_the_entitys_others_and_empties_the_index() {
    let mut store = QuotaStore::default();
    let alice = entity(Some(Some("alice")), Some(Some("app")));
    store.set(&alice, PRODUCE, Some(1024.0));
    store.set(&alice, QuotaKey::RequestPercentage, Some(12.5));
    store.set(&alice, PRODUCE, None);
    let values = store.get(&alice).unwrap();
    assert_eq!(
        values.iter().collect::<Vec<_>>(),
        vec![(QuotaKey::RequestPercentage, 12.5)]
    );
    store.set(&alice, QuotaKey::RequestPercentage, None);
    assert!(store.get(&alice).is_none());
    assert!(store.users.is_empty(), "{:?}", store.users);
}

#[test]
fn entities_and_values_are_validated_as_kafka_does() {
    let parse = |components: &[(&str, Option<&str>)]| {
        QuotaEntity::from_components(components.iter().copied())
    };
    assert_eq!(
        parse(&[("client-id", Some("app")), ("user", None)])
            .unwrap()
            .describe(),
        "user=<default>,client-id=app"
    );
    assert!(parse(&[]).is_err());
    assert!(parse(&[("user", Some("a")), ("user", Some("b"))]).is_err());
    assert!(parse(&[("ip", Some("127.0.0.1"))]).is_err());
    assert!(parse(&[("group", Some("g"))]).is_err());
    assert!(
        parse(&[("client-id", Some(""))]).is_err(),
        "Kafka refuses empty names"
    );
    assert!(QuotaKey::parse("producer_byte_rate").is_ok());
    assert!(QuotaKey::parse("controller_mutation_rate")
        .unwrap_err()
        .contains("does not enforce"));
    assert!(QuotaKey::parse("bogus").is_err());
    assert!(PRODUCE.validate(1024.0).is_ok());
    assert!(PRODUCE.validate(1024.5).is_err());
    assert!(PRODUCE.validate(0.0).is_err());
    assert!(PRODUCE.validate(f64::NAN).is_err());
    assert!(QuotaKey::RequestPercentage.validate(0.5).is_ok());
}

#[test]
fn entities_round_trip_through_json() {
    let alice = entity(Some(Some("alice")), Some(None));
    let json = serde_json::to_string(&alice).unwrap();
    assert_eq!(json, r#"{"user":{"name":"alice"},"client_id":"default"}"#);
    assert_eq!(serde_json::from_str::<QuotaEntity>(&json).unwrap(), alice);
}

#[test]
fn a_stored_bound_that_is_not_positive_binds_nothing() {
    // Only a damaged journal could hold one: the handler and the controller refuse them.
    let mut store = QuotaStore::default();
    store.set(&entity(Some(Some("alice")), None), PRODUCE, Some(-1.0));
    store.set(&entity(None, Some(None)), PRODUCE, Some(f64::NAN));
    assert_eq!(store.resolve(PRODUCE, "alice", "app"), None);
}
