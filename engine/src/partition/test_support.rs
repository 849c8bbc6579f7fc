//! What the partition module's unit tests share: two brokers and an executor to run on.

use super::BrokerId;

/// The broker the tests' shard belongs to.
pub const ME: BrokerId = BrokerId(1024);
/// Another broker: a leader or follower that is not this shard.
pub const OTHER: BrokerId = BrokerId(2048);

/// Runs `test` on a fresh glommio executor, failing it if a wake-up is lost.
pub fn run(test: impl std::future::Future<Output = ()>) {
    glommio::LocalExecutorBuilder::default()
        .make()
        .expect("executor")
        .run(spate_storage::wakeup::guarded(test));
}
