//! The `spate-tune` binary against a fake /proc and /sys tree.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn spate_tune(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spate-tune"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run spate-tune")
}

fn write(root: &Path, host_path: &str, contents: &str) {
    let path = root.join(host_path.trim_start_matches('/'));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

fn link(root: &Path, host_path: &str, target: &str) {
    let path = root.join(host_path.trim_start_matches('/'));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// A small untuned host: NVMe data disk with mq-deadline, swap on, THP defrag=always,
/// a powersave governor, NIC and disk interrupts on every CPU.
fn untuned_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "/sys/devices/system/cpu/online", "0-3\n");
    for cpu in 0..4 {
        let cpufreq = format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq");
        write(root, &format!("{cpufreq}/scaling_governor"), "powersave\n");
        write(
            root,
            &format!("{cpufreq}/scaling_available_governors"),
            "performance powersave\n",
        );
    }
    write(root, "/proc/sys/vm/swappiness", "60\n");
    write(
        root,
        "/proc/swaps",
        "Filename Type Size Used Priority\n/swap.img file 4194300 0 -2\n",
    );
    write(
        root,
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    write(
        root,
        "/sys/kernel/mm/transparent_hugepage/defrag",
        "[always] defer defer+madvise madvise never\n",
    );
    write(root, "/proc/sys/net/core/somaxconn", "128\n");
    write(root, "/proc/sys/net/ipv4/tcp_max_syn_backlog", "512\n");
    write(
        root,
        "/proc/self/mountinfo",
        "25 1 259:1 / /data rw - xfs /dev/nvme0n1p1 rw\n",
    );
    let pci = "/sys/devices/pci0000:00/0000:00:04.0";
    let disk = format!("{pci}/nvme/nvme0/nvme0n1");
    write(
        root,
        &format!("{disk}/queue/scheduler"),
        "none [mq-deadline] kyber\n",
    );
    write(root, &format!("{disk}/queue/nomerges"), "0\n");
    write(root, &format!("{disk}/queue/rotational"), "0\n");
    write(root, &format!("{disk}/nvme0n1p1/partition"), "1\n");
    link(
        root,
        "/sys/dev/block/259:1",
        "../../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p1",
    );
    link(root, &format!("{disk}/device"), "../../nvme0");
    for irq in [40, 41, 42] {
        write(root, &format!("{pci}/msi_irqs/{irq}"), "msix\n");
        write(root, &format!("/proc/irq/{irq}/smp_affinity_list"), "0-3\n");
    }
    fs::create_dir_all(root.join("data")).unwrap();
    dir
}

/// Every regular file under `root` with its contents.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let kind = fs::symlink_metadata(&path).unwrap().file_type();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                files.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    fs::read_to_string(&path).unwrap(),
                );
            }
        }
    }
    files
}

const TARGET: [&str; 4] = ["--cpus", "1-3", "--data-dir", "/data/spate"];

#[test]
fn apply_and_restore_round_trip_a_fake_tree_exactly() {
    let tree = untuned_tree();
    let root = tree.path();
    let state = root.join("var/lib/spate-tune/state.json");
    let before = snapshot(root);

    let dry = spate_tune(root, &[&["apply", "--dry-run"][..], &TARGET].concat());
    assert!(dry.status.success());
    let dry_lines = String::from_utf8(dry.stdout).unwrap();
    assert!(dry_lines.contains("cpu_governor: write /sys/devices/system/cpu/cpu1/cpufreq/scaling_governor = \"performance\" (now \"powersave\")"), "{dry_lines}");
    assert!(
        dry_lines
            .contains("irq_affinity: write /proc/irq/40/smp_affinity_list = \"0\" (now \"0-3\")"),
        "{dry_lines}"
    );
    let scheduler_line = "disk_scheduler: write /sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/queue/scheduler = \"none\" (now \"mq-deadline\")";
    assert!(dry_lines.contains(scheduler_line), "{dry_lines}");
    assert_eq!(snapshot(root), before, "a dry run writes nothing");

    let applied = spate_tune(root, &[&["apply"][..], &TARGET].concat());
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stdout)
    );
    assert_eq!(
        fs::read_to_string(root.join("proc/sys/vm/swappiness")).unwrap(),
        "1\n"
    );
    let scheduler =
        root.join("sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/queue/scheduler");
    assert_eq!(
        fs::read_to_string(scheduler).unwrap(),
        "[none] mq-deadline kyber\n"
    );
    assert!(state.exists());
    // Every write the dry run listed was made, and nothing else.
    let after = snapshot(root);
    let changed = after
        .iter()
        .filter(|(path, text)| before.get(*path) != Some(text))
        .count();
    assert_eq!(
        changed,
        dry_lines.lines().count() + 1,
        "the writes plus the state file"
    );

    let recheck = spate_tune(root, &[&["apply", "--dry-run"][..], &TARGET].concat());
    assert_eq!(
        String::from_utf8(recheck.stdout).unwrap(),
        "",
        "nothing left to change"
    );

    let restored = spate_tune(root, &["restore"]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stdout)
    );
    assert!(!state.exists());
    assert_eq!(snapshot(root), before);
}

#[test]
fn apply_only_limits_the_writes_and_rejects_unknown_names() {
    let tree = untuned_tree();
    let root = tree.path();
    let dry = spate_tune(
        root,
        &[
            &["apply", "--dry-run", "--only", "swappiness,somaxconn"][..],
            &TARGET,
        ]
        .concat(),
    );
    let lines = String::from_utf8(dry.stdout).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    let unknown = spate_tune(root, &["apply", "--dry-run", "--only", "swapiness"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown tuner"));
}

#[test]
fn check_exits_0_with_documented_json_even_on_an_empty_root() {
    let empty = tempfile::tempdir().unwrap();
    let output = spate_tune(empty.path(), &["check", "--json"]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let tuners = report["tuners"].as_array().unwrap();
    assert_eq!(tuners.len(), 18);
    for tuner in tuners {
        let status = tuner["status"].as_str().unwrap();
        assert!(
            ["ok", "would change", "not applicable", "cannot check"].contains(&status),
            "{tuner}"
        );
        for key in ["name", "current", "recommended", "why"] {
            assert!(tuner[key].is_string(), "{key} in {tuner}");
        }
    }
    assert!(report["host"]["shard_cpus"].is_string());
}

#[test]
fn strict_check_exits_1_when_something_would_change() {
    let tree = untuned_tree();
    let plain = spate_tune(tree.path(), &[&["check"][..], &TARGET].concat());
    assert_eq!(plain.status.code(), Some(0));
    let text = String::from_utf8(plain.stdout).unwrap();
    assert!(
        text.lines()
            .any(|line| line.starts_with("would change    swappiness")),
        "{text}"
    );
    let strict = spate_tune(tree.path(), &[&["check", "--strict"][..], &TARGET].concat());
    assert_eq!(strict.status.code(), Some(1));
}
