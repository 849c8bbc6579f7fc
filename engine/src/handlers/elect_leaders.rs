//! ElectLeaders (key 43, KIP-460): moves leadership back to each partition's preferred
//! replica (the first; `kafka-leader-election.sh --election-type preferred`, AdminClient
//! `electLeaders`), or gives a leaderless partition an out-of-sync replica as leader (the
//! unclean election an operator asks for when nothing in sync will come back). One call to
//! the controller, whichever node it was sent to.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::controller_error_code;
use super::{ApiSpec, RequestContext};
use crate::metadata::controller::{ControllerError, ControllerReply, ControllerRequest};
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::ElectLeaders, 0, 2);

/// ElectionType: 0 preferred, 1 unclean (v0 has no field and means preferred).
const UNCLEAN: i8 = 1;

/// See the module docs.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    if !Access::new(shard, context).cluster(AclOperation::Alter) {
        return ElectLeadersResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let preferred = context.version == 0 || request.election_type != UNCLEAN;
    if context.version > 0 && !matches!(request.election_type, 0 | UNCLEAN) {
        return ElectLeadersResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    let asked: Option<Vec<(String, i32)>> = request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|topic| {
                let name = topic.topic.0.to_string();
                topic
                    .partitions
                    .iter()
                    .map(move |partition| (name.clone(), *partition))
            })
            .collect()
    });
    let call = ControllerRequest::ElectLeaders {
        preferred,
        partitions: asked.clone(),
    };
    let results = match shard.controller_call(call).await {
        Ok(ControllerReply::ElectLeaders(results)) => results,
        Ok(_) => return failed(ControllerError::Unavailable),
        Err(error) => return failed(error),
    };
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for ((topic, partition), result) in results {
        let answer = PartitionResult::default().with_partition_id(partition);
        let answer = match result {
            Ok(()) => {
                tracing::info!(%topic, partition, preferred, "leader elected on request");
                answer
            }
            Err(error) => answer
                .with_error_code(controller_error_code(&error))
                .with_error_message(Some(StrBytes::from_string(error.to_string()))),
        };
        by_topic.entry(topic).or_default().push(answer);
    }
    let results = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(StrBytes::from_string(topic)))
                .with_partition_result(partitions)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// The whole request refused (the controller is not reachable): a top-level error, as
/// Kafka answers NOT_CONTROLLER or REQUEST_TIMED_OUT.
fn failed(error: ControllerError) -> ElectLeadersResponse {
    ElectLeadersResponse::default().with_error_code(controller_error_code(&error))
}
