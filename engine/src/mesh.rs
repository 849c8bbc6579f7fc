//! Typed control messages between the shards of a node, over glommio's channel mesh.
//!
//! Only control traffic crosses shards: calls to the controller and its answers, metadata
//! updates and their acknowledgements. Produce and fetch never do (the `cross_shard` counters
//! of `stats` show it). Each shard joins the mesh once at start and runs one receiving task
//! per peer (`Shard::receive_from`); channels are FIFO per pair of shards, so a shard sees the
//! controller's updates in order, and an update before the answer that followed it.
//!
//! Concurrency contract: a [`Mesh`] belongs to its shard (`!Send`); what travels in a
//! [`ShardMessage`] is `Send` (owned data and `Arc`s of immutable images).

use glommio::channels::channel_mesh::{FullMesh, Senders};
use glommio::channels::shared_channel::ConnectedReceiver;

use crate::metadata::controller::ControllerRequest;
use crate::metadata::controller_task::ControllerResult;
use crate::metadata::MetadataUpdate;
use crate::partition::ShardId;

/// Messages queued per pair of shards before a sender waits.
pub const CHANNEL_CAPACITY: usize = 1024;

/// One message between two shards of a node.
pub enum ShardMessage {
    /// A shard asks the controller (sent to the controller's shard only).
    ControllerCall {
        /// The caller's id for the call, echoed in the answer.
        call: u64,
        /// What it asks.
        request: ControllerRequest,
    },
    /// The controller's answer to a call.
    ControllerReply {
        /// The caller's id for the call.
        call: u64,
        /// The answer.
        result: ControllerResult,
    },
    /// A new metadata image, from the controller's shard to every other.
    MetadataUpdate(MetadataUpdate),
    /// A shard has applied the image of this version (back to the controller's shard).
    MetadataApplied {
        /// The image's version.
        version: u64,
    },
}

/// This shard's end of the mesh: senders to every other shard.
pub struct Mesh {
    shard: ShardId,
    senders: Senders<ShardMessage>,
}

/// Receivers of messages from each other shard.
pub type Receivers = Vec<(ShardId, ConnectedReceiver<ShardMessage>)>;

impl Mesh {
    /// Joins the node's mesh (every shard must, before any can send) and returns this shard's
    /// senders and one receiver per other shard.
    pub async fn join(
        builder: FullMesh<ShardMessage>,
        shard: ShardId,
    ) -> anyhow::Result<(Mesh, Receivers)> {
        let (senders, mut receivers) = builder
            .join()
            .await
            .map_err(|error| anyhow::anyhow!("cannot join the shards' channel mesh: {error}"))?;
        // Peers are ordered by executor id, and shards' executors are created in shard order.
        anyhow::ensure!(
            senders.peer_id() == shard.0 as usize,
            "shard {} joined the channel mesh as peer {}",
            shard.0,
            senders.peer_id()
        );
        let receivers = receivers
            .streams()
            .into_iter()
            .map(|(peer, receiver)| (ShardId(peer as u32), receiver))
            .collect();
        Ok((Mesh { shard, senders }, receivers))
    }

    /// This shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Sends a message to another shard, waiting while its queue is full. Returns false if that
    /// shard is gone (the node is stopping).
    pub async fn send(&self, to: ShardId, message: ShardMessage) -> bool {
        assert_ne!(
            to, self.shard,
            "a shard's messages to itself do not cross the mesh"
        );
        match self.senders.send_to(to.0 as usize, message).await {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(to = to.0, %error, "cannot send to a shard; it is stopping");
                false
            }
        }
    }
}

/// Builds the mesh every shard of a node joins.
pub fn builder(shard_count: usize) -> FullMesh<ShardMessage> {
    FullMesh::full(shard_count, CHANNEL_CAPACITY)
}
