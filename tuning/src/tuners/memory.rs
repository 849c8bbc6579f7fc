//! Memory: swap, transparent huge pages, memory per core, and the AIO context pool.

use super::{cannot_check, format_bytes, not_applicable, read_number, Context};
use crate::finding::{Finding, PlannedWrite, Status};
use crate::host::{selected_choice, Reading};

const AIO_WHY: &str =
    "Spate's own I/O goes through io_uring and does not use this pool; the check \
     only guards against a host where it was lowered below the kernel default, which starves \
     libaio users sharing the machine (fio --ioengine=libaio, databases)";

/// The kernel's default `fs.aio-max-nr`.
const AIO_MAX_NR_DEFAULT: i64 = 65_536;

/// `fs.aio-max-nr` at least the kernel default.
pub fn check_aio_max_nr(context: &Context) -> Finding {
    super::sysctl_at_least(
        context,
        "aio_max_nr",
        "/proc/sys/fs/aio-max-nr",
        AIO_MAX_NR_DEFAULT,
        AIO_WHY,
    )
}

const SWAPPINESS_WHY: &str =
    "a swapped-out page of a shard's tail cache or index turns a microsecond \
     lookup into a disk read on the shard's core; with swap on, swappiness 1 keeps anonymous \
     memory in RAM and lets the page cache shrink first";

const SWAPPINESS_PATH: &str = "/proc/sys/vm/swappiness";

/// `vm.swappiness` 1 when swap is on; any value is fine without swap.
pub fn check_swappiness(context: &Context) -> Finding {
    let name = "swappiness";
    let swappiness = match read_number(&context.host, name, SWAPPINESS_PATH, SWAPPINESS_WHY) {
        Ok(value) => value,
        Err(finding) => return finding,
    };
    let swap_devices = match context.host.read("/proc/swaps") {
        // The first line is a header.
        Reading::Value(text) => Some(
            text.lines()
                .skip(1)
                .filter(|line| !line.trim().is_empty())
                .count(),
        ),
        _ => None,
    };
    let current = match swap_devices {
        Some(0) => format!("{swappiness}, no swap"),
        Some(count) => format!("{swappiness}, {count} swap device(s)"),
        None => format!("{swappiness}, swap unknown (/proc/swaps unreadable)"),
    };
    if swap_devices == Some(0) {
        return Finding::new(
            name,
            Status::Ok,
            current,
            "any while there is no swap (1 if swap is added)",
            SWAPPINESS_WHY,
        );
    }
    if swappiness <= 1 {
        return Finding::new(name, Status::Ok, current, "1", SWAPPINESS_WHY);
    }
    Finding::new(name, Status::WouldChange, current, "1", SWAPPINESS_WHY).with_writes(vec![
        PlannedWrite::tunable(SWAPPINESS_PATH, "1", swappiness.to_string()),
    ])
}

const THP_WHY: &str =
    "`always` makes khugepaged and `defrag=always` make page faults stall on compaction, \
     which shows up as multi-millisecond latency outliers in processes on the host; the \
     broker itself turns huge pages off for its own memory (first-touch faults of 2 MiB \
     stalled a shard)";

const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";

/// THP `enabled` should be `madvise` or `always`, and `defrag` anything but `always`.
pub fn check_transparent_hugepages(context: &Context) -> Finding {
    let name = "transparent_hugepages";
    let mut settings = Vec::new();
    for file in ["enabled", "defrag"] {
        let path = format!("{THP_DIR}/{file}");
        match context.host.read(&path) {
            Reading::Value(text) => settings.push((file, path, selected_choice(&text))),
            Reading::Absent => {
                return not_applicable(name, format!("{path} absent (kernel without THP)"), THP_WHY)
            }
            Reading::Unreadable(error) => return cannot_check(name, &path, &error, THP_WHY),
        }
    }
    let current: Vec<String> = settings
        .iter()
        .map(|(file, _, value)| format!("{file}={value}"))
        .collect();
    let mut writes = Vec::new();
    for (file, path, value) in &settings {
        let fine = match *file {
            "enabled" => value == "madvise" || value == "always",
            _ => value != "always",
        };
        if !fine {
            writes.push(PlannedWrite::tunable(
                path.clone(),
                "madvise",
                value.clone(),
            ));
        }
    }
    let recommended = "enabled=madvise (or always), defrag=madvise (anything but always)";
    let status = if writes.is_empty() {
        Status::Ok
    } else {
        Status::WouldChange
    };
    Finding::new(name, status, current.join(" "), recommended, THP_WHY).with_writes(writes)
}

const MEMORY_WHY: &str =
    "each shard keeps its partitions' tail cache, indexes, producer state and \
     socket buffers in its own memory; under 2 GiB per core the tail cache is too small to serve \
     consumers that are a few seconds behind without going to disk";

/// Memory each shard core should have.
const MEMORY_PER_CORE_MIN_BYTES: u64 = 2 << 30;

/// `MemTotal` divided by the number of shard cores.
pub fn check_memory_per_core(context: &Context) -> Finding {
    let name = "memory_per_core";
    let path = "/proc/meminfo";
    let text = match context.host.read(path) {
        Reading::Value(text) => text,
        Reading::Absent => return not_applicable(name, format!("{path} absent"), MEMORY_WHY),
        Reading::Unreadable(error) => return cannot_check(name, path, &error, MEMORY_WHY),
    };
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find(|line| line.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let Some(total_kib) = kib("MemTotal:") else {
        return cannot_check(name, path, "no MemTotal line", MEMORY_WHY);
    };
    let cores = context.shard_cpus.len().max(1) as u64;
    let per_core = total_kib * 1024 / cores;
    let available = kib("MemAvailable:")
        .map(|kib| format!(", {} available", format_bytes(kib * 1024)))
        .unwrap_or_default();
    let current = format!(
        "{} per core ({} total{available}, {cores} shard cores)",
        format_bytes(per_core),
        format_bytes(total_kib * 1024)
    );
    let recommended = format!(
        ">= {} per shard core",
        format_bytes(MEMORY_PER_CORE_MIN_BYTES)
    );
    if per_core >= MEMORY_PER_CORE_MIN_BYTES {
        return Finding::new(name, Status::Ok, current, recommended, MEMORY_WHY);
    }
    let recommended = format!("{recommended}: add memory or run fewer shards (--cpus)");
    Finding::new(name, Status::WouldChange, current, recommended, MEMORY_WHY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;

    fn context(tree: &FakeTree) -> Context {
        Context::new(tree.host(), None, "/data".into()).unwrap()
    }

    #[test]
    fn aio_max_nr_cases() {
        let tree = FakeTree::reference_vm();
        assert_eq!(check_aio_max_nr(&context(&tree)).status, Status::Ok);
        tree.file("/proc/sys/fs/aio-max-nr", "1024\n");
        let finding = check_aio_max_nr(&context(&tree));
        assert_eq!(finding.status, Status::WouldChange);
        assert_eq!(finding.writes[0].value, "65536");
        tree.file("/proc/sys/fs/aio-max-nr", "lots\n");
        assert_eq!(
            check_aio_max_nr(&context(&tree)).status,
            Status::CannotCheck
        );
        assert_eq!(
            check_aio_max_nr(&context(&FakeTree::new())).status,
            Status::NotApplicable
        );
    }

    #[test]
    fn swappiness_matters_only_with_swap() {
        let tree = FakeTree::reference_vm();
        assert_eq!(check_swappiness(&context(&tree)).status, Status::Ok);
        tree.file(
            "/proc/swaps",
            "Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n",
        );
        let finding = check_swappiness(&context(&tree));
        assert_eq!(finding.status, Status::WouldChange);
        assert_eq!(
            finding.writes,
            vec![PlannedWrite::tunable(SWAPPINESS_PATH, "1", "60")]
        );
        tree.file(SWAPPINESS_PATH, "1\n");
        assert_eq!(check_swappiness(&context(&tree)).status, Status::Ok);
        let empty = FakeTree::new();
        assert_eq!(
            check_swappiness(&context(&empty)).status,
            Status::NotApplicable
        );
        empty.dir(SWAPPINESS_PATH);
        assert_eq!(
            check_swappiness(&context(&empty)).status,
            Status::CannotCheck
        );
    }

    #[test]
    fn transparent_hugepages_cases() {
        let tree = FakeTree::reference_vm();
        assert_eq!(
            check_transparent_hugepages(&context(&tree)).status,
            Status::Ok
        );
        tree.file(
            &format!("{THP_DIR}/defrag"),
            "[always] defer defer+madvise madvise never\n",
        );
        tree.file(&format!("{THP_DIR}/enabled"), "always madvise [never]\n");
        let finding = check_transparent_hugepages(&context(&tree));
        assert_eq!(finding.status, Status::WouldChange);
        assert_eq!(finding.writes.len(), 2);
        assert_eq!(finding.writes[1].previous.as_deref(), Some("always"));
        assert_eq!(
            check_transparent_hugepages(&context(&FakeTree::new())).status,
            Status::NotApplicable
        );
        std::fs::remove_file(
            tree.root()
                .join("sys/kernel/mm/transparent_hugepage/enabled"),
        )
        .unwrap();
        tree.dir(&format!("{THP_DIR}/enabled"));
        assert_eq!(
            check_transparent_hugepages(&context(&tree)).status,
            Status::CannotCheck
        );
    }

    #[test]
    fn memory_per_core_cases() {
        let tree = FakeTree::reference_vm();
        let finding = check_memory_per_core(&context(&tree));
        assert_eq!(finding.status, Status::Ok, "{finding:?}");
        tree.file("/proc/meminfo", "MemTotal:        2000000 kB\n");
        assert_eq!(
            check_memory_per_core(&context(&tree)).status,
            Status::WouldChange
        );
        tree.file("/proc/meminfo", "nothing\n");
        assert_eq!(
            check_memory_per_core(&context(&tree)).status,
            Status::CannotCheck
        );
        assert_eq!(
            check_memory_per_core(&context(&FakeTree::new())).status,
            Status::NotApplicable
        );
    }
}
