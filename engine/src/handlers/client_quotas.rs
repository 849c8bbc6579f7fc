//! DescribeClientQuotas (key 48) and AlterClientQuotas (key 49), KIP-546: the client quotas
//! (`crate::quota`), which live in the metadata image and change through the controller, so
//! that every shard and node enforces the same ones. Describing needs the cluster's
//! DESCRIBE_CONFIGS, altering its ALTER_CONFIGS, as in Kafka.

use std::collections::HashSet;
use std::rc::Rc;

use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use spate_net::error_code::{
    CLUSTER_AUTHORIZATION_FAILED, INVALID_REQUEST, NONE, UNSUPPORTED_VERSION,
};

use super::errors::controller_error_code;
use super::{ApiSpec, RequestContext};
use crate::metadata::controller::{ControllerError, ControllerReply, ControllerRequest};
use crate::quota::store::{EntityName, QuotaEntity, QuotaKey, QuotaValue, CLIENT_ID, IP, USER};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Access, AUTHORIZATION_FAILED};
use crate::shard::Shard;

/// Served versions (Kafka 4 serves 0..=1).
pub const DESCRIBE_SPEC: ApiSpec = ApiSpec::new(ApiKey::DescribeClientQuotas, 0, 1);
/// Served versions.
pub const ALTER_SPEC: ApiSpec = ApiSpec::new(ApiKey::AlterClientQuotas, 0, 1);

/// Kafka's filter match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

/// How one entity type of a filter must match.
#[derive(Debug, PartialEq)]
enum Match {
    /// This name (or the default).
    Exactly(EntityName),
    /// Any name, the default included (Kafka's MATCH_TYPE_SPECIFIED).
    Any,
}

/// A DescribeClientQuotas filter: per entity type (user, client id), how it must match.
#[derive(Debug, Default)]
struct Filter {
    user: Option<Match>,
    client_id: Option<Match>,
    strict: bool,
}

impl Filter {
    /// Kafka's `ClientQuotasImage.describe` checks, with its errors.
    fn parse(request: &DescribeClientQuotasRequest) -> Result<Filter, (i16, String)> {
        let invalid = |message: String| (INVALID_REQUEST, message);
        let mut filter = Filter {
            strict: request.strict,
            ..Filter::default()
        };
        for component in &request.components {
            let entity_type: &str = &component.entity_type;
            let slot = match entity_type {
                "" => return Err(invalid("Invalid empty entity type.".to_string())),
                USER => &mut filter.user,
                CLIENT_ID => &mut filter.client_id,
                IP => {
                    return Err(invalid(
                        "Spate does not enforce ip quotas, so it has none to describe.".to_string(),
                    ))
                }
                other => {
                    return Err((
                        UNSUPPORTED_VERSION,
                        format!("Unsupported entity type {other}"),
                    ))
                }
            };
            if slot.is_some() {
                return Err(invalid(format!(
                    "Entity type {entity_type} cannot appear more than once in the filter."
                )));
            }
            let name = component._match.as_deref();
            *slot = Some(match (component.match_type, name) {
                (MATCH_EXACT, Some(name)) => Match::Exactly(EntityName::Name(name.to_string())),
                (MATCH_EXACT, None) => {
                    return Err(invalid(
                        "Request specified MATCH_TYPE_EXACT, but set match string to null."
                            .to_string(),
                    ))
                }
                (MATCH_DEFAULT, None) => Match::Exactly(EntityName::Default),
                (MATCH_SPECIFIED, None) => Match::Any,
                (MATCH_DEFAULT | MATCH_SPECIFIED, Some(_)) => {
                    return Err(invalid(format!(
                        "Request specified match type {}, but also specified a match string.",
                        component.match_type
                    )))
                }
                (other, _) => {
                    return Err((UNSUPPORTED_VERSION, format!("Unknown match type {other}")))
                }
            });
        }
        Ok(filter)
    }

    fn matches(&self, entity: &QuotaEntity) -> bool {
        let one = |wanted: &Option<Match>, name: &Option<EntityName>| match (wanted, name) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(Match::Any), Some(_)) => true,
            (Some(Match::Exactly(wanted)), Some(name)) => wanted == name,
        };
        let named = |wanted: &Option<Match>| usize::from(wanted.is_some());
        one(&self.user, &entity.user)
            && one(&self.client_id, &entity.client_id)
            && (!self.strict
                || entity.components().count() == named(&self.user) + named(&self.client_id))
    }
}

/// The quotas of every entity the filter matches.
pub fn describe(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let error = |code: i16, message: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_entries(None)
    };
    if !Access::new(shard, context).cluster(AclOperation::DescribeConfigs) {
        return error(
            CLUSTER_AUTHORIZATION_FAILED,
            AUTHORIZATION_FAILED.to_string(),
        );
    }
    let filter = match Filter::parse(&request) {
        Ok(filter) => filter,
        Err((code, message)) => return error(code, message),
    };
    let image = shard.image();
    let entries = image
        .quotas()
        .iter()
        .filter(|(entity, _)| filter.matches(entity))
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity
                        .components()
                        .map(|(entity_type, name)| {
                            EntityData::default()
                                .with_entity_type(StrBytes::from_static_str(entity_type))
                                .with_entity_name(
                                    name.as_wire()
                                        .map(|name| StrBytes::from_string(name.into())),
                                )
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(key, value)| {
                            ValueData::default()
                                .with_key(StrBytes::from_static_str(key.name()))
                                .with_value(value)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default()
        .with_error_code(NONE)
        .with_error_message(None)
        .with_entries(Some(entries))
}

/// One entry's changes, or why the entry is refused.
type Changes = Result<Vec<(QuotaEntity, QuotaKey, Option<QuotaValue>)>, String>;

/// Checks one entry as Kafka's ClientQuotaControlManager does.
fn check(entry: &kafka_protocol::messages::alter_client_quotas_request::EntryData) -> Changes {
    let entity = QuotaEntity::from_components(
        entry
            .entity
            .iter()
            .map(|component| (&*component.entity_type, component.entity_name.as_deref())),
    )?;
    let mut keys = HashSet::new();
    entry
        .ops
        .iter()
        .map(|op| {
            let key = QuotaKey::parse(&op.key)?;
            if !keys.insert(key) {
                return Err(format!("quota key {} appears twice", key.name()));
            }
            if op.remove {
                return Ok((entity.clone(), key, None));
            }
            key.validate(op.value)?;
            Ok((entity.clone(), key, Some(QuotaValue(op.value))))
        })
        .collect()
}

/// Sets and removes quotas: the valid entries in one controller call, each invalid one
/// refused with INVALID_REQUEST.
pub async fn alter(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let allowed = Access::new(shard, context).cluster(AclOperation::AlterConfigs);
    let checked: Vec<Changes> = request
        .entries
        .iter()
        .map(|entry| {
            if allowed {
                check(entry)
            } else {
                Err(String::new())
            }
        })
        .collect();
    let changes: Vec<_> = checked
        .iter()
        .filter_map(|checked| checked.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let failure = if request.validate_only || changes.is_empty() {
        None
    } else {
        match shard
            .controller_call(ControllerRequest::AlterClientQuotas { changes })
            .await
        {
            Ok(ControllerReply::ClientQuotasAltered) => None,
            Ok(_) => Some(ControllerError::Unavailable),
            Err(error) => Some(error),
        }
    };
    let entries = request
        .entries
        .into_iter()
        .zip(checked)
        .map(|(entry, checked)| {
            let (code, message) = match (checked, &failure) {
                (Err(_), _) if !allowed => (
                    CLUSTER_AUTHORIZATION_FAILED,
                    Some(AUTHORIZATION_FAILED.to_string()),
                ),
                (Err(message), _) => (INVALID_REQUEST, Some(message)),
                (Ok(_), Some(error)) => (controller_error_code(error), Some(error.to_string())),
                (Ok(_), None) => (NONE, None),
            };
            AlteredEntry::default()
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string))
                .with_entity(
                    entry
                        .entity
                        .into_iter()
                        .map(|component| {
                            AlteredEntity::default()
                                .with_entity_type(component.entity_type)
                                .with_entity_name(component.entity_name)
                        })
                        .collect(),
                )
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;

    fn component(
        entity_type: &'static str,
        match_type: i8,
        name: Option<&'static str>,
    ) -> ComponentData {
        ComponentData::default()
            .with_entity_type(StrBytes::from_static_str(entity_type))
            .with_match_type(match_type)
            .with_match(name.map(StrBytes::from_static_str))
    }

    fn filter(components: Vec<ComponentData>, strict: bool) -> Result<Filter, (i16, String)> {
        Filter::parse(
            &DescribeClientQuotasRequest::default()
                .with_components(components)
                .with_strict(strict),
        )
    }

    fn entity(user: Option<EntityName>, client_id: Option<EntityName>) -> QuotaEntity {
        QuotaEntity { user, client_id }
    }

    #[test]
    fn filters_match_as_kafkas_do() {
        let alice = EntityName::Name("alice".into());
        let app = EntityName::Name("app".into());
        let alice_only = entity(Some(alice.clone()), None);
        let alice_app = entity(Some(alice.clone()), Some(app.clone()));
        let default_user = entity(Some(EntityName::Default), None);
        let app_only = entity(None, Some(app));

        let all = filter(vec![], false).unwrap();
        assert!([&alice_only, &alice_app, &default_user, &app_only]
            .iter()
            .all(|entity| all.matches(entity)));

        let exact = filter(vec![component(USER, MATCH_EXACT, Some("alice"))], false).unwrap();
        assert!(exact.matches(&alice_only) && exact.matches(&alice_app));
        assert!(!exact.matches(&default_user) && !exact.matches(&app_only));

        let strict = filter(vec![component(USER, MATCH_EXACT, Some("alice"))], true).unwrap();
        assert!(strict.matches(&alice_only) && !strict.matches(&alice_app));

        let default = filter(vec![component(USER, MATCH_DEFAULT, None)], false).unwrap();
        assert!(default.matches(&default_user) && !default.matches(&alice_only));

        let any_user = filter(vec![component(USER, MATCH_SPECIFIED, None)], false).unwrap();
        assert!(any_user.matches(&default_user) && any_user.matches(&alice_app));
        assert!(!any_user.matches(&app_only));
    }

    #[test]
    fn bad_filters_are_refused_with_kafkas_errors() {
        let code = |components, strict| filter(components, strict).unwrap_err().0;
        assert_eq!(
            code(vec![component(USER, MATCH_EXACT, None)], false),
            INVALID_REQUEST
        );
        assert_eq!(
            code(vec![component(USER, MATCH_DEFAULT, Some("x"))], false),
            INVALID_REQUEST
        );
        assert_eq!(
            code(
                vec![
                    component(USER, MATCH_SPECIFIED, None),
                    component(USER, MATCH_DEFAULT, None)
                ],
                false
            ),
            INVALID_REQUEST
        );
        assert_eq!(
            code(vec![component("", MATCH_SPECIFIED, None)], false),
            INVALID_REQUEST
        );
        assert_eq!(
            code(vec![component("group", MATCH_SPECIFIED, None)], false),
            UNSUPPORTED_VERSION
        );
        assert_eq!(
            code(vec![component(USER, 7, None)], false),
            UNSUPPORTED_VERSION
        );
    }
}
