//! Listen backlogs for the shards' many client connections.

use super::{sysctl_at_least, Context};
use crate::finding::Finding;

/// Backlog that absorbs a reconnect storm of a few thousand clients.
const BACKLOG_MIN: i64 = 4096;

const SOMAXCONN_WHY: &str =
    "caps every listening socket's accept queue; when thousands of producers \
     reconnect at once (a broker restart, a rebalance) a short queue drops SYNs and clients \
     back off for a second or more";

const SYN_BACKLOG_WHY: &str =
    "half-open connections waiting for their handshake; beyond it the kernel \
     drops SYNs or falls back to SYN cookies, slowing a reconnect storm";

/// `net.core.somaxconn` at least 4096.
pub fn check_somaxconn(context: &Context) -> Finding {
    sysctl_at_least(
        context,
        "somaxconn",
        "/proc/sys/net/core/somaxconn",
        BACKLOG_MIN,
        SOMAXCONN_WHY,
    )
}

/// `net.ipv4.tcp_max_syn_backlog` at least 4096.
pub fn check_syn_backlog(context: &Context) -> Finding {
    let path = "/proc/sys/net/ipv4/tcp_max_syn_backlog";
    sysctl_at_least(
        context,
        "tcp_max_syn_backlog",
        path,
        BACKLOG_MIN,
        SYN_BACKLOG_WHY,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;
    use crate::finding::{PlannedWrite, Status};

    #[test]
    fn backlogs() {
        let tree = FakeTree::reference_vm();
        let context = Context::new(tree.host(), None, "/data".into()).unwrap();
        assert_eq!(check_somaxconn(&context).status, Status::Ok);
        let finding = check_syn_backlog(&context);
        assert_eq!(finding.status, Status::WouldChange);
        let path = "/proc/sys/net/ipv4/tcp_max_syn_backlog";
        assert_eq!(
            finding.writes,
            vec![PlannedWrite::tunable(path, "4096", "2048")]
        );
        let empty = FakeTree::new();
        empty.dir("/proc/sys/net/core/somaxconn");
        let context = Context::new(empty.host(), None, "/data".into()).unwrap();
        assert_eq!(check_somaxconn(&context).status, Status::CannotCheck);
        assert_eq!(check_syn_backlog(&context).status, Status::NotApplicable);
    }
}
