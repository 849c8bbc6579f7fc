//! io_uring availability and the locked-memory limit glommio's buffers need.

use io_uring::opcode;

use super::{cannot_check, format_bytes, Context};
use crate::finding::{Finding, PlannedWrite, Status};
use crate::host::{Reading, UringProbe};

const IO_URING_WHY: &str =
    "every shard does all its disk and network I/O through io_uring (glommio); \
     without it `spate serve` cannot start";

const DISABLED_PATH: &str = "/proc/sys/kernel/io_uring_disabled";

/// Features the shards rely on: no dropped completions, stable submissions, fast poll for sockets.
const REQUIRED_FEATURES: [&str; 3] = ["nodrop", "submit_stable", "fast_poll"];

/// The opcodes glommio 0.9 refuses to start without (its `GLOMMIO_URING_OPS`),
/// plus SPLICE, which the zero-copy fetch path drives itself.
const REQUIRED_OPCODES: [(u8, &str); 24] = [
    (opcode::Nop::CODE, "NOP"),
    (opcode::Readv::CODE, "READV"),
    (opcode::Writev::CODE, "WRITEV"),
    (opcode::Fsync::CODE, "FSYNC"),
    (opcode::ReadFixed::CODE, "READ_FIXED"),
    (opcode::WriteFixed::CODE, "WRITE_FIXED"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::PollRemove::CODE, "POLL_REMOVE"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::RecvMsg::CODE, "RECVMSG"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::TimeoutRemove::CODE, "TIMEOUT_REMOVE"),
    (opcode::Accept::CODE, "ACCEPT"),
    (opcode::LinkTimeout::CODE, "LINK_TIMEOUT"),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::Fallocate::CODE, "FALLOCATE"),
    (opcode::OpenAt::CODE, "OPENAT"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::Statx::CODE, "STATX"),
    (opcode::Read::CODE, "READ"),
    (opcode::Write::CODE, "WRITE"),
    (opcode::Send::CODE, "SEND"),
    (opcode::Recv::CODE, "RECV"),
    (opcode::Splice::CODE, "SPLICE"),
];

/// `kernel.io_uring_disabled` must be 0 and a probe ring must offer the features and opcodes.
pub fn check_io_uring(context: &Context) -> Finding {
    let name = "io_uring";
    let disabled = match context.host.read(DISABLED_PATH) {
        Reading::Value(text) => Some(text.trim().to_string()),
        // Kernels before 6.6 have no such sysctl; the probe alone decides.
        Reading::Absent => None,
        Reading::Unreadable(error) => {
            return cannot_check(name, DISABLED_PATH, &error, IO_URING_WHY)
        }
    };
    if let Some(value) = disabled.as_deref().filter(|value| *value != "0") {
        let meaning = if value == "1" {
            "io_uring limited to CAP_SYS_ADMIN and kernel.io_uring_group"
        } else {
            "io_uring disabled for everyone"
        };
        return Finding::new(
            name,
            Status::WouldChange,
            format!("io_uring_disabled={value} ({meaning})"),
            "io_uring_disabled=0",
            IO_URING_WHY,
        )
        .with_writes(vec![PlannedWrite::tunable(DISABLED_PATH, "0", value)]);
    }
    let sysctl = match disabled {
        Some(_) => "io_uring_disabled=0",
        None => "no io_uring_disabled sysctl",
    };
    match context.host.system().io_uring_probe() {
        Ok(probe) => judge_probe(&probe, sysctl),
        Err(error) => Finding::new(
            name,
            Status::WouldChange,
            format!("{sysctl}; a probe ring failed: {error}"),
            "a kernel >= 5.8 with io_uring, and no seccomp filter blocking io_uring_setup (containers)",
            IO_URING_WHY,
        ),
    }
}

fn judge_probe(probe: &UringProbe, sysctl: &str) -> Finding {
    let missing_features: Vec<&str> = REQUIRED_FEATURES
        .iter()
        .filter(|feature| !probe.features.iter().any(|have| have == *feature))
        .copied()
        .collect();
    let missing_opcodes: Vec<&str> = REQUIRED_OPCODES
        .iter()
        .filter(|(code, _)| !probe.opcodes.contains(code))
        .map(|(_, label)| *label)
        .collect();
    let recommended = "io_uring with features nodrop, submit_stable, fast_poll and the 24 opcodes glommio and splice need";
    if missing_features.is_empty() && missing_opcodes.is_empty() {
        let current = format!(
            "{sysctl}; probe ring ok: features {}; all {} opcodes present",
            probe.features.join(","),
            REQUIRED_OPCODES.len()
        );
        return Finding::new("io_uring", Status::Ok, current, recommended, IO_URING_WHY);
    }
    let current = format!(
        "{sysctl}; probe ring lacks features [{}] opcodes [{}] (kernel too old?)",
        missing_features.join(","),
        missing_opcodes.join(",")
    );
    Finding::new(
        "io_uring",
        Status::WouldChange,
        current,
        format!("{recommended}: a kernel >= 5.8"),
        IO_URING_WHY,
    )
}

const MEMLOCK_WHY: &str = "each shard pins 10 MiB of I/O buffers in each of its 3 rings (glommio) \
     so the kernel can DMA without pinning pages per request; below that glommio falls back to \
     unregistered buffers, and below 512 KiB it refuses to start";

/// Locked memory each shard wants: 3 rings × 10 MiB registered, rounded up.
const MEMLOCK_PER_SHARD_BYTES: u64 = 32 << 20;

const LIMITS_FILE: &str = "/etc/security/limits.d/99-spate.conf";
const LIMITS_CONTENTS: &str = "# Written by spate-tune apply; removed by spate-tune restore.\n\
     # Lets Spate's shards register their I/O buffers with io_uring.\n\
     * soft memlock unlimited\n* hard memlock unlimited\n";

/// `RLIMIT_MEMLOCK` of this session (from `/proc/self/limits`) vs what the shards pin.
pub fn check_memlock(context: &Context) -> Finding {
    let name = "memlock";
    let path = "/proc/self/limits";
    let text = match context.host.read(path) {
        Reading::Value(text) => text,
        Reading::Absent => {
            return super::not_applicable(name, format!("{path} absent"), MEMLOCK_WHY)
        }
        Reading::Unreadable(error) => return cannot_check(name, path, &error, MEMLOCK_WHY),
    };
    let Some((soft, hard)) = parse_memlock(&text) else {
        return cannot_check(name, path, "no \"Max locked memory\" line", MEMLOCK_WHY);
    };
    let needed = MEMLOCK_PER_SHARD_BYTES * context.shard_cpus.len().max(1) as u64;
    let current = format!(
        "soft {}, hard {}",
        describe_limit(soft),
        describe_limit(hard)
    );
    let enough = |limit: Option<u64>| limit.is_none_or(|bytes| bytes >= needed);
    if enough(soft) {
        let recommended = format!(
            ">= {} ({} shard cores)",
            format_bytes(needed),
            context.shard_cpus.len()
        );
        return Finding::new(name, Status::Ok, current, recommended, MEMLOCK_WHY);
    }
    let raise = if enough(hard) {
        "`ulimit -l unlimited` (or LimitMEMLOCK=infinity) where spate is started"
    } else {
        "LimitMEMLOCK=infinity in spate's systemd unit or a limits.d entry; raising the hard limit needs root with CAP_SYS_RESOURCE"
    };
    let mut recommended = format!(
        ">= {} for {} shard cores: {raise}",
        format_bytes(needed),
        context.shard_cpus.len()
    );
    let mut writes = Vec::new();
    if !enough(hard) && !can_raise_hard_limit(context) {
        // A container without CAP_SYS_RESOURCE in its bounding set: no process
        // inside it, PAM included, can go past the hard limit.
        recommended = format!(
            ">= {}: this container cannot raise its hard limit (no CAP_SYS_RESOURCE); \
             start it with a higher one (docker run --ulimit memlock=-1:-1)",
            format_bytes(needed)
        );
    } else if context.host.is_dir("/etc/security/limits.d") {
        // Only a host with PAM's limits.d reads this file; elsewhere it would do nothing.
        recommended = format!("{recommended}; apply writes {LIMITS_FILE} (new login sessions)");
        let previous = context
            .host
            .read(LIMITS_FILE)
            .value()
            .map(|text| format!("{text}\n"));
        writes.push(PlannedWrite {
            path: LIMITS_FILE.into(),
            value: LIMITS_CONTENTS.into(),
            previous,
            creates_file: true,
        });
    }
    Finding::new(name, Status::WouldChange, current, recommended, MEMLOCK_WHY).with_writes(writes)
}

/// CAP_SYS_RESOURCE, which raising a hard resource limit needs.
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether CAP_SYS_RESOURCE is in this process's bounding set (unknown: assume so).
fn can_raise_hard_limit(context: &Context) -> bool {
    let Some(status) = context
        .host
        .read("/proc/self/status")
        .value()
        .map(str::to_string)
    else {
        return true;
    };
    let bounding = status
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    bounding.is_none_or(|mask| mask & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Soft and hard limits in bytes; `None` means unlimited.
fn parse_memlock(limits: &str) -> Option<(Option<u64>, Option<u64>)> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max locked memory"))?;
    let mut fields = line
        .trim_start_matches("Max locked memory")
        .split_whitespace();
    let parse = |field: &str| -> Option<Option<u64>> {
        if field == "unlimited" {
            Some(None)
        } else {
            field.parse().ok().map(Some)
        }
    };
    let soft = parse(fields.next()?)?;
    let hard = parse(fields.next()?)?;
    Some((soft, hard))
}

fn describe_limit(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_string(), format_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;
    use crate::host::UringProbe;

    fn context(tree: &FakeTree) -> Context {
        Context::new(tree.host(), None, "/data".into()).unwrap()
    }

    #[test]
    fn io_uring_present_and_complete_is_ok() {
        let tree = FakeTree::reference_vm();
        let finding = check_io_uring(&context(&tree));
        assert_eq!(finding.status, Status::Ok, "{finding:?}");
    }

    #[test]
    fn io_uring_disabled_would_be_enabled() {
        let tree = FakeTree::reference_vm();
        tree.file(DISABLED_PATH, "2\n");
        let finding = check_io_uring(&context(&tree));
        assert_eq!(finding.status, Status::WouldChange);
        assert_eq!(
            finding.writes,
            vec![PlannedWrite::tunable(DISABLED_PATH, "0", "2")]
        );
    }

    #[test]
    fn io_uring_without_sysctl_relies_on_the_probe() {
        let tree = FakeTree::new();
        let finding = check_io_uring(&context(&tree));
        assert_eq!(finding.status, Status::Ok);
        assert!(finding.current.contains("no io_uring_disabled sysctl"));
        tree.facts.borrow_mut().probe = Ok(UringProbe::default());
        let finding = check_io_uring(&context(&tree));
        assert_eq!(finding.status, Status::WouldChange);
        assert!(finding.current.contains("SPLICE"), "{}", finding.current);
        assert!(finding.writes.is_empty());
    }

    #[test]
    fn io_uring_unreadable_cannot_check() {
        let tree = FakeTree::new();
        tree.dir(DISABLED_PATH);
        assert_eq!(check_io_uring(&context(&tree)).status, Status::CannotCheck);
    }

    #[test]
    fn memlock_of_8_mib_is_too_small_for_two_shards() {
        let tree = FakeTree::reference_vm();
        let finding = check_memlock(&context(&tree));
        assert_eq!(finding.status, Status::WouldChange);
        assert_eq!(finding.current, "soft 8 MiB, hard 8 MiB");
        // No PAM limits.d on this host: nothing to write.
        assert!(finding.writes.is_empty());
        tree.dir("/etc/security/limits.d");
        let finding = check_memlock(&context(&tree));
        assert_eq!(finding.writes.len(), 1);
        assert_eq!(finding.writes[0].previous, None);
        // A container whose bounding set lacks CAP_SYS_RESOURCE: a limits.d entry cannot help.
        tree.file(
            "/proc/self/status",
            "Name:\tspate-tune\nCapBnd:\t000001fffeffffff\n",
        );
        let finding = check_memlock(&context(&tree));
        assert!(finding.writes.is_empty());
        assert!(
            finding.recommended.contains("--ulimit memlock"),
            "{}",
            finding.recommended
        );
    }

    #[test]
    fn memlock_unlimited_is_ok_and_absent_is_not_applicable() {
        let tree = FakeTree::reference_vm();
        tree.file(
            "/proc/self/limits",
            "Max locked memory         unlimited            unlimited            bytes\n",
        );
        assert_eq!(check_memlock(&context(&tree)).status, Status::Ok);
        let empty = FakeTree::new();
        assert_eq!(
            check_memlock(&context(&empty)).status,
            Status::NotApplicable
        );
        empty.file("/proc/self/limits", "garbage\n");
        assert_eq!(check_memlock(&context(&empty)).status, Status::CannotCheck);
    }
}
