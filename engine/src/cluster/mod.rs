//! The replicated cluster (issue 15), in progress: [`raft`] is the controller quorum's
//! consensus. See `README.md` here for the plan.

pub mod config;
pub mod forwarding;
pub mod member;
pub mod publisher;
pub mod raft;
pub mod status;
