//! DescribeCluster (key 60): the cluster's brokers, its id and controller, from the image.
//! v2 (KIP-1073) lists the fenced brokers too when asked (`include_fenced_brokers`), each
//! marked `is_fenced`: how an operator sees a node that stopped heartbeating.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{ApiSpec, RequestContext};
use crate::security::acl::{AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions.
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DescribeCluster, 0, 2);

/// endpoint_type for brokers (v1); controllers (2) are not separately addressable here.
const ENDPOINT_BROKERS: i8 = 1;

/// The cluster's authorized-operations bitfield when asked (KIP-430): 0 for a principal that
/// may not DESCRIBE the cluster, as Kafka answers (DescribeCluster itself needs no
/// permission).
pub fn cluster_operations(shard: &Shard, context: &RequestContext, requested: bool) -> i32 {
    crate::security::acl::if_requested(requested, || {
        let access = Access::new(shard, context);
        if access.cluster(AclOperation::Describe) {
            access.operations(ResourceType::Cluster, crate::security::acl::CLUSTER_NAME)
        } else {
            0
        }
    })
}

/// Describes the node.
pub fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(ENDPOINT_BROKERS)
        .with_cluster_authorized_operations(cluster_operations(
            shard,
            context,
            request.include_cluster_authorized_operations,
        ));
    if context.version >= 1 && request.endpoint_type != ENDPOINT_BROKERS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "Only broker endpoints are served",
            )));
    }
    let image = shard.image();
    let listed = super::metadata::brokers(&image, context.listener);
    let controller = super::metadata::controller_for_clients(&image, &listed, shard.broker_id());
    let include_fenced = context.version >= 2 && request.include_fenced_brokers;
    let brokers = image
        .brokers()
        .filter(|broker| include_fenced || !broker.fenced)
        .filter_map(|broker| {
            let (host, port) = broker.endpoint(context.listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(kafka_protocol::messages::BrokerId(broker.id.0))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(i32::from(port))
                    .with_rack(broker.rack.clone().map(StrBytes::from_string))
                    .with_is_fenced(include_fenced && broker.fenced),
            )
        })
        .collect();
    response
        .with_cluster_id(StrBytes::from_string(image.cluster_id.clone()))
        .with_controller_id(controller)
        .with_brokers(brokers)
}
