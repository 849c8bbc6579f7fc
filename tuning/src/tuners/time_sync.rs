//! Whether a time daemon keeps the clock synchronized.

use super::{irq::process_running, Context};
use crate::finding::{Finding, Status};

const WHY: &str = "record timestamps, time-based retention (retention.ms), ListOffsets by time, \
     and transaction and session timeouts all compare clocks across machines; an unsteered \
     clock drifts by seconds a week";

/// Process names (`comm`, 15 characters at most) of time daemons.
const TIME_DAEMONS: [&str; 7] = [
    "chronyd",
    "ntpd",
    "systemd-timesyn",
    "ptp4l",
    "phc2sys",
    "timemaster",
    "ntpd-rs",
];

/// The kernel's `adjtimex` state, and which time daemon runs.
pub fn check_time_sync(context: &Context) -> Finding {
    let name = "time_sync";
    let host = &context.host;
    let Some(clock) = host.system().clock_sync() else {
        return Finding::new(name, Status::CannotCheck, "adjtimex failed", "-", WHY);
    };
    let daemon = TIME_DAEMONS
        .iter()
        .find(|daemon| process_running(host, daemon));
    let by = daemon
        .map(|daemon| format!(", {daemon} running"))
        .unwrap_or_default();
    let recommended = "synchronized by chrony, systemd-timesyncd or ntpd";
    if clock.synchronized {
        let current = format!(
            "synchronized (max error {} ms){by}",
            clock.max_error_us / 1000
        );
        return Finding::new(name, Status::Ok, current, recommended, WHY);
    }
    let current = format!("kernel clock not synchronized{by}");
    let advice = match daemon {
        Some(daemon) => {
            format!("{recommended}: {daemon} runs but has not synchronized yet (check its sources)")
        }
        None if host.exists("/.dockerenv") || host.exists("/run/.containerenv") => {
            format!("{recommended} on the host (this is a container: the clock is the host's)")
        }
        None => format!("{recommended}: install and start one (by hand)"),
    };
    Finding::new(name, Status::WouldChange, current, advice, WHY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;
    use crate::host::ClockSync;

    fn check(tree: &FakeTree) -> Finding {
        check_time_sync(&Context::new(tree.host(), None, "/data".into()).unwrap())
    }

    #[test]
    fn synchronized_is_ok_and_names_the_daemon() {
        let tree = FakeTree::reference_vm();
        tree.file("/proc/812/comm", "chronyd\n");
        let finding = check(&tree);
        assert_eq!(finding.status, Status::Ok);
        assert!(finding.current.contains("chronyd"), "{}", finding.current);
    }

    #[test]
    fn unsynchronized_says_what_to_do() {
        let tree = FakeTree::reference_vm();
        tree.facts.borrow_mut().clock = Some(ClockSync {
            synchronized: false,
            max_error_us: 16_000_000,
        });
        assert!(check(&tree).recommended.contains("install"));
        tree.file("/.dockerenv", "");
        assert!(check(&tree).recommended.contains("container"));
        tree.file("/proc/812/comm", "chronyd\n");
        let finding = check(&tree);
        assert_eq!(finding.status, Status::WouldChange);
        assert!(finding.writes.is_empty());
        tree.facts.borrow_mut().clock = None;
        assert_eq!(check(&tree).status, Status::CannotCheck);
    }
}
