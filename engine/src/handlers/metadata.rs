//! Metadata (key 3): the brokers of the cluster and topics with their partition leaders, from
//! the shard's metadata image.
//!
//! Every shard is advertised as its own broker on its own port, and each partition's leader
//! is the broker (shard) the controller placed it on, so clients send produce and fetch
//! straight to the right thread. Unknown topics are created in one controller call when
//! automatic creation is allowed.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{ApiSpec, RequestContext};
use crate::metadata::controller::validate_topic_name;
use crate::metadata::controller::INTERNAL_TOPICS;
use crate::metadata::image::{MetadataImage, TopicImage};
use crate::security::acl::{self, AclOperation, ResourceType};
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions: v13 adds only a top-level error code (KIP-1102's REBOOTSTRAP_REQUIRED),
/// which Spate never sets. Topics carry their ids from v10, which clients need before they
/// fetch by id (Fetch v13+).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::Metadata, 0, 13);

/// Describes the requested topics (all of them when the list is null, or empty at v0).
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: MetadataRequest,
) -> MetadataResponse {
    // v10+: a topic may be asked for by id alone (name null), as KIP-848 consumers resolve
    // the topic ids of their assignment.
    let requested: Option<Vec<Wanted>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && context.version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .filter_map(|topic| match topic.name {
                    Some(name) => Some(Wanted::Name(name.0.to_string())),
                    None if !topic.topic_id.is_nil() => Some(Wanted::Id(topic.topic_id)),
                    None => None,
                })
                .collect(),
        ),
    };
    // Before v4 there is no flag and brokers create topics when configured to.
    let allow_create = context.version < 4 || request.allow_auto_topic_creation;
    // Topics the principal may not DESCRIBE are left out of an all-topics answer and refused
    // by name (their existence not disclosed); an unknown one is created only with CREATE,
    // else refused too when creation was asked, as Kafka answers.
    let access = Access::new(shard, context);
    let operations = |topic: &TopicImage| {
        acl::if_requested(request.include_topic_authorized_operations, || {
            access.operations(ResourceType::Topic, &topic.name)
        })
    };
    let image = shard.image();
    let fenced = fenced_node(shard);
    let topics = match requested {
        None => image
            .topics()
            .filter(|topic| {
                access.allows_quietly(ResourceType::Topic, &topic.name, AclOperation::Describe)
            })
            .map(|topic| describe_topic(&image, topic, operations(topic), fenced))
            .collect(),
        Some(wanted) => {
            let refusals: Vec<Option<ResponseError>> = wanted
                .iter()
                .map(|wanted| match wanted {
                    Wanted::Name(name) => {
                        if validate_topic_name(name).is_err() {
                            Some(ResponseError::InvalidTopicException)
                        } else if !access.enabled() {
                            None
                        } else if !access.topic(name, AclOperation::Describe)
                            || (allow_create
                                && image.topic(name).is_none()
                                && !access.may_create_topic(name))
                        {
                            Some(ResponseError::TopicAuthorizationFailed)
                        } else {
                            None
                        }
                    }
                    Wanted::Id(_) => None,
                })
                .collect();
            let looked_up: Vec<&str> = wanted
                .iter()
                .zip(&refusals)
                .filter_map(|(wanted, refusal)| match (wanted, refusal) {
                    (Wanted::Name(name), None) => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            let mut found = shard
                .topics_or_create(&looked_up, allow_create)
                .await
                .into_iter();
            let image = shard.image();
            wanted
                .iter()
                .zip(refusals)
                .map(|(wanted, refusal)| match wanted {
                    Wanted::Name(name) => match refusal {
                        Some(error) => topic_error(name, error),
                        None => match found.next().flatten() {
                            Some(topic) => {
                                describe_topic(&image, &topic, operations(&topic), fenced)
                            }
                            None => topic_error(name, ResponseError::UnknownTopicOrPartition),
                        },
                    },
                    Wanted::Id(id) => match image.topic_by_id(*id) {
                        Some(topic) if access.topic(&topic.name, AclOperation::Describe) => {
                            describe_topic(&image, topic, operations(topic), fenced)
                        }
                        // The name is nullable from v12 (Kafka answers null there).
                        found => MetadataResponseTopic::default()
                            .with_error_code(match found {
                                Some(_) => ResponseError::TopicAuthorizationFailed.code(),
                                None => ResponseError::UnknownTopicId.code(),
                            })
                            .with_name(
                                (context.version < 12).then(|| TopicName(StrBytes::default())),
                            )
                            .with_topic_id(*id)
                            .with_topic_authorized_operations(acl::NOT_REQUESTED),
                    },
                })
                .collect()
        }
    };
    let image = shard.image();
    let brokers = brokers(&image, context.listener);
    let controller = controller_for_clients(&image, &brokers, shard.broker_id());
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(image.cluster_id.clone())))
        .with_controller_id(controller)
        .with_topics(topics)
        .with_cluster_authorized_operations(super::describe_cluster::cluster_operations(
            shard,
            context,
            request.include_cluster_authorized_operations,
        ))
}

/// A topic asked for by name or, from v10, by id.
enum Wanted {
    Name(String),
    Id(uuid::Uuid),
}

/// This node when its controller lease expired: it then names no leader for the replicated
/// partitions it still leads in its image, since the controller has moved them
/// (cluster::member).
pub(super) fn fenced_node(shard: &Shard) -> Option<crate::partition::NodeId> {
    shard
        .node
        .controller_lease
        .expired()
        .then(|| shard.node.node_id())
}

/// The controller id to tell clients: one of `listed`, the brokers of the same answer.
///
/// Clients send admin requests to the broker named here and wait until they know its
/// address: librdkafka's AdminClient, told of a controller that the answer does not list,
/// waited out its whole request timeout ("Failed while waiting for controller") when a node
/// answered Metadata just after the cluster formed, before the controller's own broker had
/// registered or been unfenced in its image. Every broker forwards admin requests to the
/// quorum's leader (as KRaft brokers do, KIP-590, which name a random live broker here), so
/// when the image's controller is not listed this node's own broker is as good an answer.
pub fn controller_for_clients(
    image: &MetadataImage,
    listed: &[MetadataResponseBroker],
    own: crate::partition::BrokerId,
) -> BrokerId {
    let is_listed = |id: i32| listed.iter().any(|broker| broker.node_id.0 == id);
    [image.controller.map(|broker| broker.0), Some(own.0)]
        .into_iter()
        .flatten()
        .find(|id| is_listed(*id))
        .or_else(|| listed.first().map(|broker| broker.node_id.0))
        .map_or(BrokerId(-1), BrokerId)
}

/// Every broker of the cluster that clients of `listener` may be sent to, at its endpoint on
/// that listener (fenced ones, and ones without the listener, are left out, as Kafka does).
pub fn brokers(image: &MetadataImage, listener: &str) -> Vec<MetadataResponseBroker> {
    image
        .brokers()
        .filter(|broker| !broker.fenced)
        .filter_map(|broker| {
            let (host, port) = broker.endpoint(listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(broker.id.0))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(i32::from(port))
                    .with_rack(broker.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect()
}

/// A topic's partitions; one whose leader is fenced has no leader for now
/// (LEADER_NOT_AVAILABLE: the client asks again), and neither has a replicated one led by
/// `fenced_node`, this node when its controller lease expired.
pub(super) fn describe_topic(
    image: &MetadataImage,
    topic: &TopicImage,
    authorized_operations: i32,
    fenced_node: Option<crate::partition::NodeId>,
) -> MetadataResponseTopic {
    let ids = |brokers: &[crate::partition::BrokerId]| -> Vec<BrokerId> {
        brokers.iter().map(|broker| BrokerId(broker.0)).collect()
    };
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, assignment)| {
            let self_fenced = fenced_node.is_some_and(|node| {
                assignment.leader.node() == node && assignment.replicas.len() > 1
            });
            let (leader, error) = if image.is_live(assignment.leader) && !self_fenced {
                (assignment.leader.0, 0)
            } else {
                (-1, ResponseError::LeaderNotAvailable.code())
            };
            MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_error_code(error)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(assignment.leader_epoch.0)
                .with_replica_nodes(ids(&assignment.replicas))
                .with_isr_nodes(ids(&assignment.isr))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(INTERNAL_TOPICS.contains(&topic.name.as_str()))
        .with_partitions(partitions)
        .with_topic_authorized_operations(authorized_operations)
}

fn topic_error(name: &str, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_topic_authorized_operations(acl::NOT_REQUESTED)
}
