//! CreatePartitions (key 37): raises a topic's partition count.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::errors::catalog_error_code;
use super::{ApiSpec, RequestContext};
use crate::catalog::CatalogError;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::CreatePartitions, 0, 3);

/// Grows each topic to its requested count.
pub fn handle(
    shard: &Rc<Shard>,
    _context: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|topic| {
            let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            match shard.node.catalog.add_partitions(
                &topic.name.0,
                topic.count,
                request.validate_only,
            ) {
                Ok(()) => {
                    tracing::info!(topic = %topic.name.0, count = topic.count, "added partitions");
                    result
                }
                Err(error) => {
                    if let CatalogError::Persist(reason) = &error {
                        crate::fatal(reason);
                    }
                    result
                        .with_error_code(catalog_error_code(&error))
                        .with_error_message(Some(StrBytes::from_string(error.to_string())))
                }
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
