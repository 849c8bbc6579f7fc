//! Leader hints (KIP-951): a Fetch (v16+) or Produce (v10+) partition refused because this
//! broker does not lead it (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH) names the leader
//! and leader epoch this broker's metadata image holds (`current_leader`), and the response
//! lists where those leaders listen (`node_endpoints`), so that the client goes there at once
//! instead of first asking for Metadata. A partition without a live leader gets no hint:
//! the client then refreshes its metadata as before.

use std::collections::BTreeMap;

use kafka_protocol::messages::{fetch_response, produce_response, BrokerId as WireBrokerId};
use kafka_protocol::messages::{FetchResponse, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::metadata::image::{BrokerRegistration, MetadataImage};

/// The errors that carry a hint.
fn hinted(error_code: i16) -> bool {
    error_code == ResponseError::NotLeaderOrFollower.code()
        || error_code == ResponseError::FencedLeaderEpoch.code()
}

/// The leader of `topic`-`index` in `image` (its id and leader epoch) and its registration,
/// if it has a live one.
fn leader_of<'a>(
    image: &'a MetadataImage,
    topic: &str,
    index: i32,
) -> Option<(i32, i32, &'a BrokerRegistration)> {
    let assignment = image.topic(topic)?.partition(index)?;
    let broker = image
        .broker(assignment.leader)
        .filter(|broker| !broker.fenced)?;
    Some((assignment.leader.0, assignment.leader_epoch.0, broker))
}

/// The body of [`add_to_fetch`] and [`add_to_produce`]: the same walk over two generated
/// message types that share no trait (`$module` holds the response's `LeaderIdAndEpoch` and
/// `NodeEndpoint`; `$partitions`, `$topic` and `$index` name its fields).
macro_rules! add_hints {
    ($image:expr, $listener:expr, $response:expr, $module:ident, $partitions:ident, $topic:ident, $index:ident) => {{
        let mut endpoints: BTreeMap<i32, &BrokerRegistration> = BTreeMap::new();
        for topic in &mut $response.responses {
            for partition in &mut topic.$partitions {
                if !hinted(partition.error_code) {
                    continue;
                }
                if let Some((leader, epoch, broker)) =
                    leader_of($image, &topic.$topic.0, partition.$index)
                {
                    partition.current_leader = $module::LeaderIdAndEpoch::default()
                        .with_leader_id(WireBrokerId(leader))
                        .with_leader_epoch(epoch);
                    endpoints.insert(leader, broker);
                }
            }
        }
        $response.node_endpoints = endpoints
            .into_iter()
            .filter_map(|(id, broker)| {
                let (host, port) = broker.endpoint($listener)?;
                Some(
                    $module::NodeEndpoint::default()
                        .with_node_id(WireBrokerId(id))
                        .with_host(StrBytes::from_string(host.to_string()))
                        .with_port(i32::from(port))
                        .with_rack(broker.rack.clone().map(StrBytes::from_string)),
                )
            })
            .collect();
    }};
}

/// Adds the hints to a Fetch response (its topics named: the handler fills in names at
/// every version).
pub fn add_to_fetch(image: &MetadataImage, listener: &str, response: &mut FetchResponse) {
    add_hints!(
        image,
        listener,
        response,
        fetch_response,
        partitions,
        topic,
        partition_index
    );
}

/// Adds the hints to a Produce response.
pub fn add_to_produce(image: &MetadataImage, listener: &str, response: &mut ProduceResponse) {
    add_hints!(
        image,
        listener,
        response,
        produce_response,
        partition_responses,
        name,
        index
    );
}
