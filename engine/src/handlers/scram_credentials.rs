//! DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key 51), KIP-554:
//! users' SCRAM credentials, which live in the metadata image and are changed through the
//! controller (so every node checks the same ones). A client sends a salted password, never
//! the password; the broker keeps only the keys derived from it.

use std::rc::Rc;

use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use spate_net::error_code::{
    CLUSTER_AUTHORIZATION_FAILED, DUPLICATE_RESOURCE, NONE, RESOURCE_NOT_FOUND,
    UNACCEPTABLE_CREDENTIAL, UNSUPPORTED_SASL_MECHANISM,
};

use super::errors::controller_error_code;
use super::{ApiSpec, RequestContext};
use crate::metadata::controller::{ControllerReply, ControllerRequest};
use crate::security::acl::AclOperation;
use crate::security::authorizer::{Access, AUTHORIZATION_FAILED};
use crate::security::scram::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::shard::Shard;

/// Served versions.
pub const DESCRIBE_SPEC: ApiSpec = ApiSpec::new(ApiKey::DescribeUserScramCredentials, 0, 0);
/// Served versions.
pub const ALTER_SPEC: ApiSpec = ApiSpec::new(ApiKey::AlterUserScramCredentials, 0, 0);

/// The users asked for (all when none are named), each with its mechanisms and iterations.
pub fn describe(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !Access::new(shard, context).cluster(AclOperation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
            .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)));
    }
    let image = shard.image();
    let infos = |user: &str| -> Vec<CredentialInfo> {
        Mechanism::ALL
            .into_iter()
            .filter_map(|mechanism| {
                let credential = image.scram_credential(user, mechanism)?;
                Some(
                    CredentialInfo::default()
                        .with_mechanism(mechanism.code())
                        .with_iterations(credential.iterations as i32),
                )
            })
            .collect()
    };
    let result = |user: &str, error_code: i16, message: Option<&'static str>| {
        DescribeUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.to_string()))
            .with_error_code(error_code)
            .with_error_message(message.map(StrBytes::from_static_str))
    };
    // Linear in the request and the stored users: a request may name millions of users.
    let results = match request.users.filter(|users| !users.is_empty()) {
        None => {
            // Credentials are ordered by user, so equal names are adjacent.
            let mut users: Vec<&str> = image.scram_credentials().map(|(user, _, _)| user).collect();
            users.dedup();
            users
                .into_iter()
                .map(|user| result(user, NONE, None).with_credential_infos(infos(user)))
                .collect()
        }
        Some(users) => {
            let mut mentions: HashMap<&str, usize> = HashMap::new();
            for user in &users {
                *mentions.entry(user.name.as_str()).or_default() += 1;
            }
            let mut answered: HashSet<&str> = HashSet::new();
            let mut results = Vec::new();
            for name in users.iter().map(|user| user.name.as_str()) {
                if !answered.insert(name) {
                    continue;
                }
                if mentions[name] > 1 {
                    results.push(result(
                        name,
                        DUPLICATE_RESOURCE,
                        Some("Cannot describe SCRAM credentials for the same user twice in a single request"),
                    ));
                    continue;
                }
                let credential_infos = infos(name);
                if credential_infos.is_empty() {
                    results.push(result(
                        name,
                        RESOURCE_NOT_FOUND,
                        Some("Attempt to describe a user credential that does not exist"),
                    ));
                } else {
                    results.push(result(name, NONE, None).with_credential_infos(credential_infos));
                }
            }
            results
        }
    };
    DescribeUserScramCredentialsResponse::default()
        .with_error_code(NONE)
        .with_results(results)
}

/// Why a user's part of an AlterUserScramCredentials is refused before the controller sees
/// it (Kafka's broker-side checks).
fn refusal(user: &str, mechanisms: &[(i8, Option<i32>)]) -> Option<(i16, &'static str)> {
    if user.is_empty() {
        return Some((UNACCEPTABLE_CREDENTIAL, "Username must not be empty"));
    }
    let mut seen = [false; 256];
    for (mechanism, iterations) in mechanisms {
        if std::mem::replace(&mut seen[*mechanism as u8 as usize], true) {
            return Some((
                DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request",
            ));
        }
        if Mechanism::from_code(*mechanism).is_none() {
            return Some((UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"));
        }
        match iterations {
            Some(iterations) if *iterations < MIN_ITERATIONS as i32 => {
                return Some((UNACCEPTABLE_CREDENTIAL, "Too few iterations"))
            }
            Some(iterations) if *iterations > MAX_ITERATIONS as i32 => {
                return Some((UNACCEPTABLE_CREDENTIAL, "Too many iterations"))
            }
            _ => {}
        }
    }
    None
}

/// One user's entries in an AlterUserScramCredentials.
#[derive(Default)]
struct UserPart<'a> {
    user: String,
    /// (mechanism, iterations of an upsertion), in request order, for [`refusal`].
    mechanisms: Vec<(i8, Option<i32>)>,
    deletions: Vec<i8>,
    upsertions: Vec<&'a ScramCredentialUpsertion>,
}

/// The index in `parts` of `name`'s part, added when new.
fn part_index<'a>(
    index: &mut HashMap<&'a str, usize>,
    parts: &mut Vec<UserPart<'a>>,
    name: &'a StrBytes,
) -> usize {
    *index.entry(name.as_str()).or_insert_with(|| {
        parts.push(UserPart {
            user: name.to_string(),
            ..UserPart::default()
        });
        parts.len() - 1
    })
}

/// Sets and removes credentials, per user all or nothing.
pub async fn alter(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    if !Access::new(shard, context).cluster(AclOperation::Alter) {
        // Kafka answers every user named with the refusal.
        let mut users: Vec<&str> = Vec::new();
        let mut seen = HashSet::new();
        let named = request
            .deletions
            .iter()
            .map(|deletion| deletion.name.as_str());
        for user in named.chain(
            request
                .upsertions
                .iter()
                .map(|upsertion| upsertion.name.as_str()),
        ) {
            if seen.insert(user) {
                users.push(user);
            }
        }
        return AlterUserScramCredentialsResponse::default().with_results(
            users
                .into_iter()
                .map(|user| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(StrBytes::from_string(user.to_string()))
                        .with_error_code(CLUSTER_AUTHORIZATION_FAILED)
                        .with_error_message(Some(StrBytes::from_static_str(AUTHORIZATION_FAILED)))
                })
                .collect(),
        );
    }
    // Each user's part, in order of first mention; linear in the request, which may name
    // millions of entries.
    let mut parts: Vec<UserPart> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for deletion in &request.deletions {
        let at = part_index(&mut index, &mut parts, &deletion.name);
        parts[at].mechanisms.push((deletion.mechanism, None));
        parts[at].deletions.push(deletion.mechanism);
    }
    for upsertion in &request.upsertions {
        let at = part_index(&mut index, &mut parts, &upsertion.name);
        parts[at]
            .mechanisms
            .push((upsertion.mechanism, Some(upsertion.iterations)));
        parts[at].upsertions.push(upsertion);
    }
    let mut results: Vec<(String, i16, Option<String>)> = Vec::new();
    let mut upsertions = Vec::new();
    let mut deletions = Vec::new();
    for part in parts {
        if let Some((code, message)) = refusal(&part.user, &part.mechanisms) {
            results.push((part.user, code, Some(message.to_string())));
            continue;
        }
        for mechanism in part
            .deletions
            .iter()
            .copied()
            .filter_map(Mechanism::from_code)
        {
            deletions.push((part.user.clone(), mechanism));
        }
        for upsertion in &part.upsertions {
            if let Some(mechanism) = Mechanism::from_code(upsertion.mechanism) {
                let credential = ScramCredential::from_salted_password(
                    mechanism,
                    &upsertion.salted_password,
                    &upsertion.salt,
                    upsertion.iterations as u32,
                );
                upsertions.push((part.user.clone(), mechanism, credential));
            }
        }
        results.push((part.user, NONE, None));
    }
    if !upsertions.is_empty() || !deletions.is_empty() {
        let outcome = shard
            .controller_call(ControllerRequest::AlterScramCredentials {
                upsertions,
                deletions,
            })
            .await;
        for (user, code, message) in results.iter_mut().filter(|(_, code, _)| *code == NONE) {
            let error = match &outcome {
                Ok(ControllerReply::AlterScramCredentials(answers)) => answers
                    .iter()
                    .find(|(answered, _)| answered == user)
                    .and_then(|(_, result)| result.clone().err()),
                Ok(_) => Some(crate::metadata::controller::ControllerError::Unavailable),
                Err(error) => Some(error.clone()),
            };
            if let Some(error) = error {
                *code = controller_error_code(&error);
                *message = Some(error.to_string());
            }
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(
        results
            .into_iter()
            .map(|(user, code, message)| {
                AlterUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(user))
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_string))
            })
            .collect(),
    )
}
