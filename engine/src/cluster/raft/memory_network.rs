//! In-memory network: RPCs call the target's `Raft` handle directly. A node marked partitioned
//! can neither send nor receive (the sender gets `Unreachable`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};

use super::{ControllerConfig as C, ControllerRaft};

type NodeId = u64;

#[derive(Default)]
struct RouterInner {
    nodes: BTreeMap<NodeId, ControllerRaft>,
    partitioned: BTreeSet<NodeId>,
}

/// Connects the Raft nodes of one executor; cheap to clone.
#[derive(Clone, Default)]
pub struct Router {
    inner: Rc<RefCell<RouterInner>>,
}

impl Router {
    /// Makes `raft` reachable as `node_id`.
    pub fn add(&self, node_id: NodeId, raft: ControllerRaft) {
        self.inner.borrow_mut().nodes.insert(node_id, raft);
    }

    /// Cuts `node_id` off from every peer, or heals it.
    pub fn set_partitioned(&self, node_id: NodeId, partitioned: bool) {
        let mut inner = self.inner.borrow_mut();
        if partitioned {
            inner.partitioned.insert(node_id);
        } else {
            inner.partitioned.remove(&node_id);
        }
    }

    /// The target handle, or `Unreachable` if either end is partitioned.
    fn route(&self, source: NodeId, target: NodeId) -> Result<ControllerRaft, Unreachable<C>> {
        let inner = self.inner.borrow();
        let cut = inner.partitioned.contains(&source) || inner.partitioned.contains(&target);
        match inner.nodes.get(&target) {
            Some(raft) if !cut => Ok(raft.clone()),
            _ => Err(Unreachable::from_string(format!(
                "{source} -> {target} partitioned or unknown"
            ))),
        }
    }
}

/// Network factory of one node.
pub struct NodeNetwork {
    /// The node that sends.
    pub source: NodeId,
    /// Shared router.
    pub router: Router,
}

/// Connection from `source` to `target`.
pub struct PeerConnection {
    source: NodeId,
    target: NodeId,
    router: Router,
}

impl RaftNetworkFactory<C> for NodeNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> PeerConnection {
        PeerConnection {
            source: self.source,
            target,
            router: self.router.clone(),
        }
    }
}

fn unreachable(error: Unreachable<C>) -> RPCError<C> {
    RPCError::Unreachable(error)
}

impl RaftNetworkV2<C> for PeerConnection {
    type SnapshotData = Vec<String>;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let raft = self
            .router
            .route(self.source, self.target)
            .map_err(unreachable)?;
        let response = raft.append_entries(request).await;
        // A response is lost too if the partition started while the call was in flight.
        self.router
            .route(self.source, self.target)
            .map_err(unreachable)?;
        response.map_err(|error| RPCError::Unreachable(Unreachable::new(&error)))
    }

    async fn vote(
        &mut self,
        request: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        let raft = self
            .router
            .route(self.source, self.target)
            .map_err(unreachable)?;
        let response = raft.vote(request).await;
        self.router
            .route(self.source, self.target)
            .map_err(unreachable)?;
        response.map_err(|error| RPCError::Unreachable(Unreachable::new(&error)))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Vec<String>>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let raft = self
            .router
            .route(self.source, self.target)
            .map_err(StreamingError::Unreachable)?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|error| StreamingError::Unreachable(Unreachable::new(&error)))
    }
}
