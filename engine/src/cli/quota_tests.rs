//! The command line's entities and changes, their wire form, and the output, without a
//! broker.

use kafka_protocol::messages::describe_client_quotas_response::{
    EntityData as AnsweredEntity, EntryData as AnsweredEntry, ValueData,
};
use serde_json::json;

use super::*;

fn user(name: &str) -> EntityArgs {
    EntityArgs {
        user: Some(name.to_string()),
        ..EntityArgs::default()
    }
}

fn set(key: &str, value: f64) -> Change {
    Change::Set {
        key: key.to_string(),
        value,
    }
}

fn removal(key: &str) -> Change {
    Change::Remove {
        key: key.to_string(),
    }
}

/// A DescribeClientQuotas entry as a broker answers it.
fn answered(components: &[(&str, Option<&str>)], values: &[(&str, f64)]) -> AnsweredEntry {
    AnsweredEntry::default()
        .with_entity(
            components
                .iter()
                .map(|(entity_type, name)| {
                    AnsweredEntity::default()
                        .with_entity_type(str_bytes(entity_type))
                        .with_entity_name(name.map(str_bytes))
                })
                .collect(),
        )
        .with_values(
            values
                .iter()
                .map(|(key, value)| {
                    ValueData::default()
                        .with_key(str_bytes(key))
                        .with_value(*value)
                })
                .collect(),
        )
}

#[test]
fn entities_read_user_first_with_kafkas_default_name() {
    let entity = EntityArgs {
        default_user: true,
        client_id: Some("app".to_string()),
        ..EntityArgs::default()
    }
    .required()
    .unwrap();
    assert_eq!(entity.describe(), "user=<default>,client-id=app");
    assert_eq!(entity.json(), json!({"user": null, "client-id": "app"}));
    let wire = entity.wire();
    assert_eq!(wire.len(), 2);
    assert_eq!(wire[0].entity_type.as_str(), USER);
    assert_eq!(wire[0].entity_name, None);
    assert_eq!(wire[1].entity_type.as_str(), CLIENT_ID);
    assert_eq!(wire[1].entity_name.as_deref(), Some("app"));
    // A broker's answer in the other order reads the same.
    let reversed = Entity::new(vec![
        Component::new(CLIENT_ID, Some("app")),
        Component::new(USER, None),
    ]);
    assert_eq!(reversed, entity);
}

#[test]
fn set_and_remove_need_an_entity_with_names() {
    let error = EntityArgs::default().required().unwrap_err().to_string();
    assert!(error.contains("name an entity"), "{error}");
    let error = user("").required().unwrap_err().to_string();
    assert!(error.contains("--user needs a name"), "{error}");
}

#[test]
fn changes_follow_the_flags_and_refuse_a_key_twice() {
    let changes = ChangeArgs {
        producer_byte_rate: Some(1_048_576),
        request_percentage: Some(12.5),
        additions: vec![("future_key".to_string(), 3.0)],
        deletions: vec![CONSUMER_BYTE_RATE.to_string()],
        ..ChangeArgs::default()
    }
    .changes()
    .unwrap();
    assert_eq!(
        changes,
        [
            set(PRODUCER_BYTE_RATE, 1_048_576.0),
            set(REQUEST_PERCENTAGE, 12.5),
            set("future_key", 3.0),
            removal(CONSUMER_BYTE_RATE),
        ]
    );

    let none = ChangeArgs::default().changes().unwrap_err().to_string();
    assert!(none.contains("name a change"), "{none}");
    let twice = ChangeArgs {
        producer_byte_rate: Some(1),
        deletions: vec![PRODUCER_BYTE_RATE.to_string()],
        ..ChangeArgs::default()
    }
    .changes()
    .unwrap_err()
    .to_string();
    assert_eq!(twice, "producer_byte_rate is changed twice");
}

#[test]
fn added_values_are_finite_numbers() {
    assert_eq!(
        parse_addition("producer_byte_rate=1024"),
        Ok(("producer_byte_rate".to_string(), 1024.0))
    );
    assert_eq!(parse_addition("k=0.5"), Ok(("k".to_string(), 0.5)));
    assert!(parse_addition("k=fast").is_err());
    assert!(parse_addition("k=inf").is_err());
    assert!(parse_addition("k").is_err());
}

#[test]
fn alter_sends_one_entry_with_its_ops() {
    let entity = user("alice").required().unwrap();
    let changes = [set(PRODUCER_BYTE_RATE, 1024.0), removal(REQUEST_PERCENTAGE)];
    let request = alter_request(&entity, &changes, true);
    assert!(request.validate_only);
    let [entry] = request.entries.as_slice() else {
        panic!("one entry: {request:?}");
    };
    assert_eq!(entry.entity.len(), 1);
    assert_eq!(entry.entity[0].entity_type.as_str(), USER);
    assert_eq!(entry.entity[0].entity_name.as_deref(), Some("alice"));
    let ops: Vec<(&str, f64, bool)> = entry
        .ops
        .iter()
        .map(|op| (op.key.as_str(), op.value, op.remove))
        .collect();
    assert_eq!(
        ops,
        [
            (PRODUCER_BYTE_RATE, 1024.0, false),
            (REQUEST_PERCENTAGE, 0.0, true)
        ]
    );
}

#[test]
fn list_filters_names_exactly_and_defaults_by_the_default_match() {
    let everything = describe_request(&EntityArgs::default().components().unwrap(), false);
    assert!(everything.components.is_empty());
    assert!(!everything.strict);

    let args = EntityArgs {
        user: Some("alice".to_string()),
        default_client_id: true,
        ..EntityArgs::default()
    };
    let request = describe_request(&args.components().unwrap(), true);
    assert!(request.strict);
    let filter: Vec<(&str, i8, Option<&str>)> = request
        .components
        .iter()
        .map(|component| {
            (
                component.entity_type.as_str(),
                component.match_type,
                component._match.as_deref(),
            )
        })
        .collect();
    assert_eq!(filter, [(USER, 0, Some("alice")), (CLIENT_ID, 1, None)]);
}

#[test]
fn listed_quotas_are_sorted_and_printed_with_integral_values() {
    let quotas = decode_entries(&[
        answered(
            &[(USER, Some("alice"))],
            &[
                (REQUEST_PERCENTAGE, 12.5),
                (PRODUCER_BYTE_RATE, 1_048_576.0),
            ],
        ),
        answered(
            &[(CLIENT_ID, Some("app")), (USER, None)],
            &[(CONSUMER_BYTE_RATE, 2048.0)],
        ),
    ]);
    assert_eq!(
        quotas_table(&quotas),
        concat!(
            "ENTITY                        KEY                 VALUE\n",
            "user=<default>,client-id=app  consumer_byte_rate  2048\n",
            "user=alice                    producer_byte_rate  1048576\n",
            "user=alice                    request_percentage  12.5\n",
        )
    );
    assert_eq!(
        quotas_json(&quotas),
        json!([
            {
                "entity": {"user": null, "client-id": "app"},
                "values": {"consumer_byte_rate": 2048}
            },
            {
                "entity": {"user": "alice"},
                "values": {"producer_byte_rate": 1_048_576, "request_percentage": 12.5}
            },
        ])
    );
}

#[test]
fn values_are_integers_when_integral() {
    assert_eq!(format_value(1_048_576.0), "1048576");
    assert_eq!(format_value(0.25), "0.25");
    assert_eq!(value_json(1_048_576.0), json!(1_048_576));
    assert_eq!(value_json(0.25), json!(0.25));
    assert_eq!(value_json(1e300), json!(1e300));
}

#[test]
fn changes_are_reported_in_kafkas_words() {
    let entity = user("alice").required().unwrap();
    assert_eq!(
        set(PRODUCER_BYTE_RATE, 1_048_576.0).describe(&entity),
        "set producer_byte_rate=1048576 for user=alice"
    );
    assert_eq!(
        removal(REQUEST_PERCENTAGE).describe(&entity),
        "removed request_percentage for user=alice"
    );
    assert_eq!(
        changes_json(&entity, &[set("k", 2.0), removal("gone")], false),
        json!({
            "entity": {"user": "alice"},
            "set": {"k": 2},
            "removed": ["gone"],
            "validate_only": false
        })
    );
}

#[test]
fn remove_takes_only_the_keys_of_the_entity_itself() {
    let alice = user("alice").required().unwrap();
    let quotas = decode_entries(&[
        answered(
            &[(USER, Some("alice"))],
            &[(PRODUCER_BYTE_RATE, 1.0), (CONSUMER_BYTE_RATE, 2.0)],
        ),
        answered(
            &[(USER, Some("alice")), (CLIENT_ID, Some("app"))],
            &[(REQUEST_PERCENTAGE, 3.0)],
        ),
    ]);
    assert_eq!(
        held_keys(&quotas, &alice),
        [removal(CONSUMER_BYTE_RATE), removal(PRODUCER_BYTE_RATE)]
    );
    assert!(held_keys(&[], &alice).is_empty());
}
