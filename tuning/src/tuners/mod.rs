//! The tuners: one table lists them all, each file holds one group.
//!
//! A tuner reads files under the root through [`Host`] and returns a
//! [`Finding`]. It never fails: an absent file means `not applicable`, an
//! unreadable or unparsable one means `cannot check`. The writes it plans are
//! carried out by [`crate::apply`], never by the tuner itself.

mod cpu;
pub mod descriptors;
pub mod disk;
mod io_uring;
pub(crate) mod irq;
mod memory;
mod network;
mod time_sync;

use std::path::PathBuf;

use crate::cpus::CpuSet;
use crate::error::TuneError;
use crate::finding::{Finding, PlannedWrite, Status};
use crate::host::{Host, Reading};

/// What every tuner needs to know: the host and what the broker will use of it.
pub struct Context {
    /// The machine, seen through `--root`.
    pub host: Host,
    /// CPUs the kernel has online.
    pub online_cpus: CpuSet,
    /// CPUs the broker's shards will run on (`--cpus`, default all online).
    pub shard_cpus: CpuSet,
    /// The broker's data directory as a host path (it need not exist yet).
    pub data_dir: PathBuf,
}

impl Context {
    /// Builds the context; `shard_cpus` defaults to every online CPU.
    pub fn new(
        host: Host,
        shard_cpus: Option<CpuSet>,
        data_dir: PathBuf,
    ) -> Result<Context, TuneError> {
        let online_cpus = online_cpus(&host);
        let shard_cpus = match shard_cpus {
            None => online_cpus.clone(),
            Some(cpus) if cpus.is_empty() => {
                return Err(TuneError::Usage("--cpus is empty".into()))
            }
            Some(cpus) if !online_cpus.is_empty() && !cpus.is_subset(&online_cpus) => {
                return Err(TuneError::Usage(format!(
                    "--cpus {cpus} is not within the online CPUs {online_cpus}"
                )))
            }
            Some(cpus) => cpus,
        };
        Ok(Context {
            host,
            online_cpus,
            shard_cpus,
            data_dir,
        })
    }
}

/// CPUs online, from `/sys/devices/system/cpu/online`, else counted in `/proc/cpuinfo`.
fn online_cpus(host: &Host) -> CpuSet {
    if let Some(cpus) = host
        .read("/sys/devices/system/cpu/online")
        .value()
        .and_then(|text| CpuSet::parse(text).ok())
    {
        return cpus;
    }
    let count = host
        .read("/proc/cpuinfo")
        .value()
        .map(|text| {
            text.lines()
                .filter(|line| line.starts_with("processor"))
                .count()
        })
        .unwrap_or(1)
        .max(1);
    CpuSet::parse(&format!("0-{}", count - 1)).unwrap_or_default()
}

/// One tuner: a stable name and the function that checks it.
pub struct Tuner {
    /// Stable name, used by `apply --only` and in the JSON output.
    pub name: &'static str,
    /// One line on what it looks at.
    pub summary: &'static str,
    check: fn(&Context) -> Finding,
}

impl Tuner {
    /// Runs the check.
    pub fn check(&self, context: &Context) -> Finding {
        (self.check)(context)
    }
}

/// Every tuner, in the order `check` prints them. The only list of them.
pub const TUNERS: &[Tuner] = &[
    Tuner {
        name: "io_uring",
        summary: "io_uring enabled and has what glommio needs",
        check: io_uring::check_io_uring,
    },
    Tuner {
        name: "memlock",
        summary: "locked-memory limit for glommio's registered buffers",
        check: io_uring::check_memlock,
    },
    Tuner {
        name: "open_files",
        summary: "open-files limit, and the partitions and connections it allows",
        check: descriptors::check_open_files,
    },
    Tuner {
        name: "cpu_governor",
        summary: "CPU frequency governor of the shard cores",
        check: cpu::check_governor,
    },
    Tuner {
        name: "cpu_idle",
        summary: "CPU idle states of the shard cores (report only)",
        check: cpu::check_idle,
    },
    Tuner {
        name: "irq_affinity",
        summary: "NIC and disk interrupts vs the shard cores",
        check: irq::check_irq_affinity,
    },
    Tuner {
        name: "disk_scheduler",
        summary: "I/O scheduler of the data directory's disk",
        check: disk::check_scheduler,
    },
    Tuner {
        name: "disk_nomerges",
        summary: "request merging on the data directory's disk",
        check: disk::check_nomerges,
    },
    Tuner {
        name: "aio_max_nr",
        summary: "fs.aio-max-nr",
        check: memory::check_aio_max_nr,
    },
    Tuner {
        name: "swappiness",
        summary: "vm.swappiness and swap devices",
        check: memory::check_swappiness,
    },
    Tuner {
        name: "transparent_hugepages",
        summary: "transparent huge pages and their defrag mode",
        check: memory::check_transparent_hugepages,
    },
    Tuner {
        name: "clocksource",
        summary: "kernel clocksource",
        check: cpu::check_clocksource,
    },
    Tuner {
        name: "somaxconn",
        summary: "net.core.somaxconn",
        check: network::check_somaxconn,
    },
    Tuner {
        name: "tcp_max_syn_backlog",
        summary: "net.ipv4.tcp_max_syn_backlog",
        check: network::check_syn_backlog,
    },
    Tuner {
        name: "filesystem",
        summary: "filesystem type of the data directory",
        check: disk::check_filesystem,
    },
    Tuner {
        name: "disk_free",
        summary: "free space in the data directory",
        check: disk::check_free_space,
    },
    Tuner {
        name: "memory_per_core",
        summary: "memory per shard core",
        check: memory::check_memory_per_core,
    },
    Tuner {
        name: "time_sync",
        summary: "clock synchronized by a time daemon",
        check: time_sync::check_time_sync,
    },
];

/// The tuner called `name`.
pub fn find(name: &str) -> Option<&'static Tuner> {
    TUNERS.iter().find(|tuner| tuner.name == name)
}

/// Runs every tuner.
pub fn check_all(context: &Context) -> Vec<Finding> {
    TUNERS.iter().map(|tuner| tuner.check(context)).collect()
}

/// The finding for a file that exists but could not be read.
pub(crate) fn cannot_check(name: &'static str, path: &str, error: &str, why: &str) -> Finding {
    Finding::new(
        name,
        Status::CannotCheck,
        format!("cannot read {path}: {error}"),
        "-",
        why,
    )
}

/// The finding for a feature whose file is absent on this host.
pub(crate) fn not_applicable(name: &'static str, current: impl Into<String>, why: &str) -> Finding {
    Finding::new(name, Status::NotApplicable, current, "-", why)
}

/// Reads a one-number tunable, mapping absence and garbage to findings.
pub(crate) fn read_number(
    host: &Host,
    name: &'static str,
    path: &str,
    why: &str,
) -> Result<i64, Finding> {
    match host.read(path) {
        Reading::Value(text) => text
            .trim()
            .parse()
            .map_err(|_| cannot_check(name, path, &format!("not a number: {text:?}"), why)),
        Reading::Absent => Err(not_applicable(name, format!("{path} absent"), why)),
        Reading::Unreadable(error) => Err(cannot_check(name, path, &error, why)),
    }
}

/// A sysctl that should be at least `minimum`; `apply` raises it to `minimum`.
pub(crate) fn sysctl_at_least(
    context: &Context,
    name: &'static str,
    path: &str,
    minimum: i64,
    why: &str,
) -> Finding {
    let current = match read_number(&context.host, name, path, why) {
        Ok(value) => value,
        Err(finding) => return finding,
    };
    if current >= minimum {
        return Finding::new(
            name,
            Status::Ok,
            current.to_string(),
            format!(">= {minimum}"),
            why,
        );
    }
    Finding::new(
        name,
        Status::WouldChange,
        current.to_string(),
        minimum.to_string(),
        why,
    )
    .with_writes(vec![PlannedWrite::tunable(
        path,
        minimum.to_string(),
        current.to_string(),
    )])
}

/// Bytes in binary units, e.g. `8 MiB`, `1.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<&str> = TUNERS.iter().map(|tuner| tuner.name).collect();
        assert!(names
            .iter()
            .all(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TUNERS.len());
    }

    #[test]
    fn shard_cpus_default_to_online_and_must_be_online() {
        let tree = FakeTree::reference_vm();
        let context = Context::new(tree.host(), None, "/data".into()).unwrap();
        assert_eq!(context.shard_cpus.to_string(), "0-1");
        let outside = CpuSet::parse("3").unwrap();
        assert!(Context::new(tree.host(), Some(outside), "/data".into()).is_err());
    }

    #[test]
    fn an_empty_root_gives_no_ok_and_no_panic() {
        let tree = FakeTree::new();
        tree.facts.borrow_mut().probe = Err("Function not implemented".into());
        tree.facts.borrow_mut().clock = None;
        tree.facts.borrow_mut().disk_space = None;
        let context = Context::new(tree.host(), None, "/data".into()).unwrap();
        for finding in check_all(&context) {
            assert!(finding.writes.is_empty(), "{finding:?}");
            assert_ne!(finding.status, Status::Ok, "{finding:?}");
        }
    }

    #[test]
    fn formats_bytes() {
        assert_eq!(format_bytes(8 << 20), "8 MiB");
        assert_eq!(format_bytes(1536 << 20), "1.5 GiB");
        assert_eq!(format_bytes(100), "100 B");
    }
}
