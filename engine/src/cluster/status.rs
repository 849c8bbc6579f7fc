//! What a node knows about the controller quorum, for DescribeQuorum, `spate cluster info`
//! and metrics, in plain types (no openraft names outside `cluster::raft`).
//!
//! Concurrency contract: the quorum member on shard 0 writes the node's [`QuorumStatusCell`]
//! whenever its Raft metrics change; any shard reads a copy. A `std::sync::Mutex` is enough:
//! both sides hold it for a copy of a few hundred bytes.

use std::sync::{Arc, Mutex};

/// A member's role, as Raft names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumRole {
    /// Leads the quorum: this node's controller decides.
    Leader,
    /// Follows the leader.
    Follower,
    /// Standing for election.
    Candidate,
    /// Receives the log but does not vote.
    Learner,
    /// Stopped.
    Shutdown,
}

impl QuorumRole {
    /// The role's name in `spate cluster info` and /stats.
    pub fn name(self) -> &'static str {
        match self {
            QuorumRole::Leader => "leader",
            QuorumRole::Follower => "follower",
            QuorumRole::Candidate => "candidate",
            QuorumRole::Learner => "learner",
            QuorumRole::Shutdown => "shutdown",
        }
    }
}

/// One member as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    /// Its node id.
    pub node_id: i32,
    /// Whether it votes.
    pub voter: bool,
    /// One past the last log index known to be on it (Kafka's log end offset); `None` when
    /// unknown (this node does not lead, or has not heard from it).
    pub log_end: Option<u64>,
    /// Milliseconds since the leader last heard from it, if it has.
    pub last_heard_ms_ago: Option<u64>,
}

/// A node's view of the quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumStatus {
    /// This node.
    pub node_id: i32,
    /// Its role.
    pub role: QuorumRole,
    /// The leader this node knows of.
    pub leader: Option<i32>,
    /// The current term (Kafka's leader epoch of the metadata log).
    pub term: u64,
    /// One past the last committed index (Kafka's high watermark of the metadata log).
    pub committed_end: u64,
    /// One past the last index in this node's log.
    pub log_end: u64,
    /// Every member, voters first; filled in from the leader's replication state when this
    /// node leads.
    pub members: Vec<MemberStatus>,
}

/// The node's latest [`QuorumStatus`]; `None` on a one-node cluster.
#[derive(Clone, Default)]
pub struct QuorumStatusCell {
    status: Arc<Mutex<Option<QuorumStatus>>>,
}

impl QuorumStatusCell {
    /// Replaces the status.
    pub fn set(&self, status: QuorumStatus) {
        *self.lock() = Some(status);
    }

    /// A copy of the status, if a quorum runs here.
    pub fn get(&self) -> Option<QuorumStatus> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<QuorumStatus>> {
        // A panic while holding this lock left a whole status behind (set is one store).
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
