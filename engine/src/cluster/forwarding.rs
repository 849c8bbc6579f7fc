//! Controller calls between nodes: a node whose quorum member does not lead forwards its
//! shards' controller calls to the leader's node over the controller port (as Kafka brokers
//! forward admin requests to the active controller, KIP-590), and the leader's node answers
//! them with its own controller.
//!
//! A forwarded answer carries the version of the leader's image after the call, so the
//! forwarding node can wait until its own shards have that image before it answers its
//! client: an answered CreateTopics is then visible on every shard of the node asked, as on a
//! one-node cluster.

use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use super::publisher::ImagePublisher;
use super::raft::network::{ControllerPort, Forwarder};
use crate::metadata::controller::{ControllerError, ControllerRequest};
use crate::metadata::controller_task::ControllerResult;
use crate::shard::Shard;

/// How long a forwarded call may take (a quorum write waits up to 10 s).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// The answer to a forwarded call.
#[derive(Serialize, Deserialize)]
pub struct ForwardedReply {
    /// The leader's image version once the call was answered.
    pub version: u64,
    /// The answer.
    pub result: ControllerResult,
}

/// Answers forwarded calls with this node's controller, and admits members to the controller
/// port by the ACLs of its image.
pub struct ControllerCalls {
    /// The controller's shard.
    pub shard: Rc<Shard>,
    /// The images this node's member applied.
    pub publisher: Rc<ImagePublisher>,
}

impl ControllerPort for ControllerCalls {
    /// A super user, or a principal allowed ClusterAction on the cluster, as Kafka's
    /// controllers require of the brokers and controllers that call them; anyone with a
    /// certificate of the CA when the authorizer is off.
    fn admits(&self, principal: &str, host: &str) -> bool {
        use crate::security::acl::{AclOperation, ResourceType, Subject, CLUSTER_NAME};
        let config = &self.shard.node.config.authorizer;
        !config.enabled
            || self.shard.image().acls().authorize(
                config,
                Subject { principal, host },
                ResourceType::Cluster,
                CLUSTER_NAME,
                AclOperation::ClusterAction,
            )
    }

    fn call(&self, request: Vec<u8>) -> LocalBoxFuture<'static, Vec<u8>> {
        let shard = self.shard.clone();
        let publisher = self.publisher.clone();
        Box::pin(async move {
            let result = match serde_json::from_slice::<ControllerRequest>(&request) {
                Ok(request) => shard.forwarded_controller_call(request).await,
                Err(error) => {
                    tracing::warn!(%error, "a forwarded controller call is not one");
                    Err(ControllerError::Unavailable)
                }
            };
            let reply = ForwardedReply {
                version: publisher.applied_image().version,
                result,
            };
            // Every part of the reply is plain data, so it always serializes.
            serde_json::to_vec(&reply).unwrap_or_default()
        })
    }
}

/// Forwards `request` to `leader` at `address`; the leader's answer and image version.
pub async fn forward(
    forwarder: &Forwarder,
    leader: u64,
    address: &str,
    request: &ControllerRequest,
) -> Result<ForwardedReply, ControllerError> {
    let unavailable = |error: String| {
        tracing::debug!(leader, %error, "cannot forward a controller call");
        ControllerError::NotController {
            leader: i32::try_from(leader).ok(),
        }
    };
    let body = serde_json::to_vec(request).map_err(|error| unavailable(error.to_string()))?;
    let answer = forwarder
        .forward(leader, address, body, FORWARD_TIMEOUT)
        .await
        .map_err(|error| unavailable(error.to_string()))?;
    serde_json::from_slice(&answer).map_err(|error| unavailable(error.to_string()))
}
