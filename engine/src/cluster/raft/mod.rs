//! The controller quorum's consensus: openraft (`=0.10.0-alpha.37`, `single-threaded`, no tokio
//! runtime) on glommio. This module is the only one that names openraft (CLUSTER.md: consensus
//! comes from a well-kept Raft library, never from a home-made protocol).
//!
//! What is here:
//! - [`runtime::GlommioRuntime`]: openraft's `AsyncRuntime` on glommio: tasks on the current task
//!   queue, glommio timers, flume/futures/see channels and mutex; openraft's own runtime
//!   conformance suite passes on it.
//! - [`QuorumTypes`]: each log entry is a batch of metadata records.
//! - [`log_store::FileLogStore`]: the log and vote on fdatasync'ed, CRC-framed files, with
//!   torn-tail recovery and compaction; openraft's storage suite passes over it.
//! - [`metadata_machine::MetadataStateMachine`]: every member applies committed entries to its
//!   `MetadataImage` and hands each new image to an `ImageSink`; snapshots are the image as
//!   records, kept in `raft-snapshot`.
//! - [`network`]: openraft's RPCs over TCP on the controller port, forwarded controller calls,
//!   and the [`network::Faults`] table for partition tests.
//! - [`transport`]: the port's mutual TLS (`--controller-security-protocol SSL`).
//! - [`quorum::Quorum`]: the facade the rest of Spate uses.
//! - Under `cfg(test)`: an in-memory log store, state machine and network (`memory_*`), with
//!   which three members in one executor elect, commit, fail over and rejoin (`tests.rs`).

pub mod log_store;
pub mod metadata_machine;
pub mod network;
pub mod quorum;
pub mod runtime;
pub mod transport;

openraft::declare_raft_types!(
    /// Type configuration of the controller quorum: each log entry is one controller round's
    /// metadata records; applying one answers with the image version it produced.
    pub QuorumTypes:
        D = metadata_machine::QuorumCommand,
        R = u64,
        NodeId = u64,
        Node = openraft::BasicNode,
        AsyncRuntime = runtime::GlommioRuntime,
);

/// A controller quorum member's handle.
pub type QuorumRaft = openraft::Raft<QuorumTypes, metadata_machine::MetadataStateMachine>;

#[cfg(test)]
mod memory_network;
#[cfg(test)]
mod memory_store;
#[cfg(test)]
mod metadata_machine_tests;

/// Runs a test scenario on a fresh glommio executor (the stores do their file I/O on its
/// blocking pool).
#[cfg(test)]
fn run_in_executor<Scenario, Run>(scenario: Scenario)
where
    Scenario: FnOnce() -> Run + Send + 'static,
    Run: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(|| spate_storage::wakeup::guarded(scenario()))
        .expect("executor starts")
        .join()
        .expect("scenario finishes");
}
#[cfg(test)]
mod tests;

#[cfg(test)]
openraft::declare_raft_types!(
    /// Type configuration of the quorum in the tests: commands are plain strings.
    pub ControllerConfig:
        D = String,
        R = u64,
        AsyncRuntime = runtime::GlommioRuntime,
);

/// A quorum member handle in the tests.
#[cfg(test)]
pub type ControllerRaft = openraft::Raft<ControllerConfig, memory_store::StateMachine>;
