//! DescribeAcls (key 29), CreateAcls (key 30) and DeleteAcls (key 31): the ACLs of the
//! authorizer (`crate::security::acl`), which live in the metadata image and change through
//! the controller, so that every shard and node checks the same ones. Each needs the
//! cluster's DESCRIBE (describe) or ALTER (create, delete), and an authorizer
//! (`--authorizer acl`): without one they answer SECURITY_DISABLED, as Kafka does.

use std::rc::Rc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use spate_net::error_code::{
    CLUSTER_AUTHORIZATION_FAILED, INVALID_REQUEST, NONE, SECURITY_DISABLED,
};

use super::errors::controller_error_code;
use super::{ApiSpec, RequestContext};
use crate::metadata::controller::{ControllerError, ControllerReply, ControllerRequest};
use crate::security::acl::{
    AclBinding, AclFilter, AclOperation, AclPermission, PatternType, ResourceType,
};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions (Kafka 4 serves 1..=3).
pub const DESCRIBE_SPEC: ApiSpec = ApiSpec::new(ApiKey::DescribeAcls, 1, 3);
/// Served versions.
pub const CREATE_SPEC: ApiSpec = ApiSpec::new(ApiKey::CreateAcls, 1, 3);
/// Served versions.
pub const DELETE_SPEC: ApiSpec = ApiSpec::new(ApiKey::DeleteAcls, 1, 3);

const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

/// The error of a request that may not run: no authorizer, or no permission on the cluster.
fn refusal(shard: &Shard, context: &RequestContext, operation: AclOperation) -> Option<i16> {
    if !shard.node.config.authorizer.enabled {
        return Some(SECURITY_DISABLED);
    }
    (!Access::new(shard, context).cluster(operation)).then_some(CLUSTER_AUTHORIZATION_FAILED)
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// The ACLs a filter matches, grouped by resource pattern.
pub fn describe(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let response = DescribeAclsResponse::default();
    if let Some(code) = refusal(shard, context, AclOperation::Describe) {
        let message = (code == SECURITY_DISABLED).then(|| StrBytes::from_static_str(NO_AUTHORIZER));
        return response.with_error_code(code).with_error_message(message);
    }
    let filter = match AclFilter::from_wire(
        request.resource_type_filter,
        request.resource_name_filter.as_deref(),
        request.pattern_type_filter,
        request.principal_filter.as_deref(),
        request.host_filter.as_deref(),
        request.operation,
        request.permission_type,
    ) {
        Ok(filter) => filter,
        Err(message) => {
            return response
                .with_error_code(INVALID_REQUEST)
                .with_error_message(Some(StrBytes::from_string(message)))
        }
    };
    let image = shard.image();
    // Bindings are ordered by resource type, name and pattern first, so each resource's
    // ACLs are adjacent.
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for binding in image.acls().matching(&filter) {
        let same = resources.last().is_some_and(|last| {
            last.resource_type == binding.resource_type.code()
                && last.resource_name.as_str() == binding.resource_name
                && last.pattern_type == binding.pattern_type.code()
        });
        if !same {
            resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(binding.resource_type.code())
                    .with_resource_name(text(&binding.resource_name))
                    .with_pattern_type(binding.pattern_type.code()),
            );
        }
        if let Some(resource) = resources.last_mut() {
            resource.acls.push(
                AclDescription::default()
                    .with_principal(text(&binding.principal))
                    .with_host(text(&binding.host))
                    .with_operation(binding.operation.code())
                    .with_permission_type(binding.permission.code()),
            );
        }
    }
    response.with_error_code(NONE).with_resources(resources)
}

/// A creation as the wire gives it, checked as Kafka checks it.
fn binding(
    creation: &kafka_protocol::messages::create_acls_request::AclCreation,
) -> Result<AclBinding, String> {
    let binding = AclBinding {
        resource_type: ResourceType::from_code(creation.resource_type)
            .ok_or_else(|| format!("Invalid resourceType {}", creation.resource_type))?,
        resource_name: creation.resource_name.to_string(),
        pattern_type: PatternType::from_code(creation.resource_pattern_type)
            .ok_or_else(|| format!("Invalid patternType {}", creation.resource_pattern_type))?,
        principal: creation.principal.to_string(),
        host: creation.host.to_string(),
        operation: AclOperation::from_code(creation.operation)
            .ok_or_else(|| format!("Invalid operation {}", creation.operation))?,
        permission: AclPermission::from_code(creation.permission_type)
            .ok_or_else(|| format!("Invalid permission type {}", creation.permission_type))?,
    };
    match binding.invalid() {
        Some(message) => Err(message),
        None => Ok(binding),
    }
}

/// Stores the valid creations; each invalid one gets INVALID_REQUEST.
pub async fn create(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let result = |code: i16, message: Option<String>| {
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(message.map(StrBytes::from_string))
    };
    if let Some(code) = refusal(shard, context, AclOperation::Alter) {
        let message = (code == SECURITY_DISABLED).then(|| NO_AUTHORIZER.to_string());
        return CreateAclsResponse::default().with_results(
            request
                .creations
                .iter()
                .map(|_| result(code, message.clone()))
                .collect(),
        );
    }
    let checked: Vec<Result<AclBinding, String>> = request.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let failure: Option<ControllerError> = if valid.is_empty() {
        None
    } else {
        match shard
            .controller_call(ControllerRequest::CreateAcls { bindings: valid })
            .await
        {
            Ok(ControllerReply::CreateAcls) => None,
            Ok(_) => Some(ControllerError::Unavailable),
            Err(error) => Some(error),
        }
    };
    CreateAclsResponse::default().with_results(
        checked
            .into_iter()
            .map(|checked| match (checked, &failure) {
                (Err(message), _) => result(INVALID_REQUEST, Some(message)),
                (Ok(_), Some(error)) => {
                    result(controller_error_code(error), Some(error.to_string()))
                }
                (Ok(_), None) => result(NONE, None),
            })
            .collect(),
    )
}

/// Removes what each filter matches, and says what that was.
pub async fn delete(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let filter_result = |code: i16, message: Option<String>| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(message.map(StrBytes::from_string))
    };
    if let Some(code) = refusal(shard, context, AclOperation::Alter) {
        let message = (code == SECURITY_DISABLED).then(|| NO_AUTHORIZER.to_string());
        return DeleteAclsResponse::default().with_filter_results(
            request
                .filters
                .iter()
                .map(|_| filter_result(code, message.clone()))
                .collect(),
        );
    }
    let checked: Vec<Result<AclFilter, String>> = request
        .filters
        .iter()
        .map(|filter| {
            AclFilter::from_wire(
                filter.resource_type_filter,
                filter.resource_name_filter.as_deref(),
                filter.pattern_type_filter,
                filter.principal_filter.as_deref(),
                filter.host_filter.as_deref(),
                filter.operation,
                filter.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let outcome: Result<Vec<Vec<AclBinding>>, ControllerError> = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        match shard
            .controller_call(ControllerRequest::DeleteAcls { filters: valid })
            .await
        {
            Ok(ControllerReply::DeleteAcls(removed)) => Ok(removed),
            Ok(_) => Err(ControllerError::Unavailable),
            Err(error) => Err(error),
        }
    };
    let mut removed = match &outcome {
        Ok(removed) => removed.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let matching = |binding: AclBinding| {
        DeleteAclsMatchingAcl::default()
            .with_error_code(NONE)
            .with_resource_type(binding.resource_type.code())
            .with_resource_name(StrBytes::from_string(binding.resource_name))
            .with_pattern_type(binding.pattern_type.code())
            .with_principal(StrBytes::from_string(binding.principal))
            .with_host(StrBytes::from_string(binding.host))
            .with_operation(binding.operation.code())
            .with_permission_type(binding.permission.code())
    };
    DeleteAclsResponse::default().with_filter_results(
        checked
            .into_iter()
            .map(|checked| match (checked, &outcome) {
                (Err(message), _) => filter_result(INVALID_REQUEST, Some(message)),
                (Ok(_), Err(error)) => {
                    filter_result(controller_error_code(error), Some(error.to_string()))
                }
                (Ok(_), Ok(_)) => filter_result(NONE, None).with_matching_acls(
                    removed
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .map(matching)
                        .collect(),
                ),
            })
            .collect(),
    )
}
