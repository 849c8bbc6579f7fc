//! DeleteGroups (key 42): removes empty groups and their committed offsets. Each group needs
//! DELETE, else it answers GROUP_AUTHORIZATION_FAILED and is kept.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse};

use super::group_common::check_group;
use super::{ApiSpec, RequestContext};
use crate::security::acl::AclOperation;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DeleteGroups, 0, 2);

/// Deletes each group (NON_EMPTY_GROUP while it has members).
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let error_code = match check_group(shard, context, &group_id, AclOperation::Delete) {
            Err(error_code) => error_code,
            Ok(()) => shard.groups.delete(shard, &group_id).await,
        };
        if error_code == 0 {
            tracing::info!(group = %group_id.0, "deleted consumer group");
        }
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(error_code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
