//! The open-files limit, and the partition and connection budgets the broker derives from it.

use super::{cannot_check, Context};
use crate::finding::{Finding, Status};
use crate::host::Reading;

const OPEN_FILES_WHY: &str =
    "every open partition holds a descriptor per segment and every connection two; the broker \
     derives its defaults for max.broker.partitions (half the hard limit) and max.connections (a \
     quarter) from this limit, and refuses what would exceed them instead of running out";

/// A hard limit below this keeps a node under 32768 partitions.
const OPEN_FILES_RECOMMENDED: u64 = 65_536;

/// The broker's default `max.broker.partitions` for a hard limit (as `engine/src/host.rs`
/// computes it; the two crates share no code, by design).
pub fn partitions_budget(hard_limit: u64) -> u64 {
    (hard_limit / 2).max(1000)
}

/// The broker's default `max.connections` for a hard limit (as `engine/src/host.rs`).
pub fn connections_budget(hard_limit: u64) -> u64 {
    (hard_limit / 4).max(64)
}

/// `RLIMIT_NOFILE` of this session (from `/proc/self/limits`) and the budgets it gives.
pub fn check_open_files(context: &Context) -> Finding {
    let name = "open_files";
    let path = "/proc/self/limits";
    let text = match context.host.read(path) {
        Reading::Value(text) => text,
        Reading::Absent => {
            return super::not_applicable(name, format!("{path} absent"), OPEN_FILES_WHY)
        }
        Reading::Unreadable(error) => return cannot_check(name, path, &error, OPEN_FILES_WHY),
    };
    let Some(hard) = parse_hard_open_files(&text) else {
        return cannot_check(name, path, "no \"Max open files\" line", OPEN_FILES_WHY);
    };
    let current = match hard {
        None => "hard limit unlimited".to_string(),
        Some(hard) => format!(
            "hard limit {hard}: up to {} partitions (max.broker.partitions) and {} connections (max.connections) on this node",
            partitions_budget(hard),
            connections_budget(hard)
        ),
    };
    let recommended = format!(">= {OPEN_FILES_RECOMMENDED}");
    if hard.is_none_or(|hard| hard >= OPEN_FILES_RECOMMENDED) {
        return Finding::new(name, Status::Ok, current, recommended, OPEN_FILES_WHY);
    }
    let recommended = format!(
        "{recommended} for more partitions or connections: LimitNOFILE=1048576 in spate's systemd unit, or `ulimit -Hn` where it is started"
    );
    Finding::new(
        name,
        Status::WouldChange,
        current,
        recommended,
        OPEN_FILES_WHY,
    )
}

/// The hard `Max open files` limit; `Some(None)` means unlimited.
fn parse_hard_open_files(limits: &str) -> Option<Option<u64>> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let hard = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .nth(1)?;
    if hard == "unlimited" {
        Some(None)
    } else {
        hard.parse().ok().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;

    fn limits(tree: &FakeTree, hard: &str) {
        tree.file(
            "/proc/self/limits",
            &format!(
                "Limit                     Soft Limit           Hard Limit           Units     \n\
                 Max open files            1024                 {hard}                files     \n"
            ),
        );
    }

    #[test]
    fn the_hard_limit_gives_the_brokers_budgets() {
        let tree = FakeTree::reference_vm();
        limits(&tree, "20000");
        let context = Context::new(tree.host(), None, "/data".into()).unwrap();
        let finding = check_open_files(&context);
        assert_eq!(finding.status, Status::WouldChange);
        assert!(
            finding.current.contains("10000 partitions"),
            "{}",
            finding.current
        );
        assert!(
            finding.current.contains("5000 connections"),
            "{}",
            finding.current
        );
        limits(&tree, "1048576");
        assert_eq!(check_open_files(&context).status, Status::Ok);
        limits(&tree, "unlimited");
        assert_eq!(check_open_files(&context).status, Status::Ok);
        tree.file("/proc/self/limits", "nothing here\n");
        assert_eq!(check_open_files(&context).status, Status::CannotCheck);
    }
}
