//! `check` output: one line per tuner, or the stable JSON document.

use serde::Serialize;

use crate::finding::{Finding, Status};
use crate::tuners::{disk, Context};

/// The JSON document `check --json` prints. Its shape is stable: fields are
/// only ever added, never renamed or removed (see tuning/README.md).
#[derive(Debug, Serialize)]
pub struct Report {
    /// One entry per tuner, in the order of `tuners::TUNERS`.
    pub tuners: Vec<TunerReport>,
    /// What was checked.
    pub host: HostReport,
}

/// One tuner's line.
#[derive(Debug, Serialize)]
pub struct TunerReport {
    /// Stable tuner name.
    pub name: &'static str,
    /// `ok`, `would change`, `not applicable` or `cannot check`.
    pub status: Status,
    /// What the host has now.
    pub current: String,
    /// What Spate wants.
    pub recommended: String,
    /// Why it matters.
    pub why: String,
    /// Whether `apply` would change it (false: by hand, or nothing to do).
    pub apply_changes: bool,
}

/// The host the findings are about.
#[derive(Debug, Serialize)]
pub struct HostReport {
    /// The `--root` files were read under.
    pub root: String,
    /// `/proc/sys/kernel/osrelease`, if readable.
    pub kernel: Option<String>,
    /// Whether `/proc/cpuinfo` shows the `hypervisor` flag (a VM).
    pub virtualized: Option<bool>,
    /// Online CPUs, kernel list notation.
    pub online_cpus: String,
    /// The CPUs the shards will use (`--cpus`).
    pub shard_cpus: String,
    /// The data directory asked about (`--data-dir`).
    pub data_dir: String,
    /// Its block device, e.g. `vda`, if found.
    pub data_device: Option<String>,
    /// Its filesystem type, if found.
    pub data_filesystem: Option<String>,
    /// The effective user id `check` ran as.
    pub euid: u32,
}

impl Report {
    /// Builds the report from the findings.
    pub fn new(context: &Context, findings: &[Finding]) -> Report {
        let tuners = findings
            .iter()
            .map(|finding| TunerReport {
                name: finding.name,
                status: finding.status,
                current: finding.current.clone(),
                recommended: finding.recommended.clone(),
                why: finding.why.clone(),
                apply_changes: !finding.writes.is_empty(),
            })
            .collect();
        Report {
            tuners,
            host: host_report(context),
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|error| format!("{{\"error\":{:?}}}", error.to_string()))
    }

    /// The human-readable form: a header, one line per tuner, a summary.
    pub fn to_text(&self) -> String {
        let host = &self.host;
        let device = match (&host.data_device, &host.data_filesystem) {
            (Some(device), Some(filesystem)) => format!(" ({device}, {filesystem})"),
            (None, Some(filesystem)) => format!(" ({filesystem})"),
            _ => String::new(),
        };
        let mut out = format!(
            "spate-tune check: root {}, kernel {}, CPUs {} (shards on {}), data dir {}{device}, uid {}\n",
            host.root,
            host.kernel.as_deref().unwrap_or("?"),
            host.online_cpus,
            host.shard_cpus,
            host.data_dir,
            host.euid,
        );
        for tuner in &self.tuners {
            let apply = if tuner.apply_changes { " [apply]" } else { "" };
            out.push_str(&format!(
                "{:<14}  {:<21}  current: {} | recommended: {}{apply} | why: {}\n",
                tuner.status.word(),
                tuner.name,
                tuner.current,
                tuner.recommended,
                tuner.why
            ));
        }
        out.push_str(&self.summary());
        out
    }

    fn summary(&self) -> String {
        let count = |status: Status| {
            self.tuners
                .iter()
                .filter(|tuner| tuner.status == status)
                .count()
        };
        let by_apply = self
            .tuners
            .iter()
            .filter(|tuner| tuner.apply_changes)
            .count();
        let mut line = format!(
            "{} tuners: {} ok, {} would change ({by_apply} by `spate-tune apply`, the rest by hand), {} not applicable, {} cannot check\n",
            self.tuners.len(),
            count(Status::Ok),
            count(Status::WouldChange),
            count(Status::NotApplicable),
            count(Status::CannotCheck),
        );
        if self.host.euid != 0 && count(Status::CannotCheck) > 0 {
            line.push_str("note: not running as root; some files may only be readable by root\n");
        }
        line
    }

    /// True when some tuner would change (for `--strict`).
    pub fn any_would_change(&self) -> bool {
        self.tuners
            .iter()
            .any(|tuner| tuner.status == Status::WouldChange)
    }
}

fn host_report(context: &Context) -> HostReport {
    let host = &context.host;
    let virtualized = host.read("/proc/cpuinfo").value().map(|text| {
        text.lines().any(|line| {
            line.starts_with("flags") && line.split_whitespace().any(|flag| flag == "hypervisor")
        })
    });
    let device = disk::locate(host, &context.data_dir).ok();
    HostReport {
        root: host.root().display().to_string(),
        kernel: host
            .read("/proc/sys/kernel/osrelease")
            .value()
            .map(str::to_string),
        virtualized,
        online_cpus: context.online_cpus.to_string(),
        shard_cpus: context.shard_cpus.to_string(),
        data_dir: context.data_dir.display().to_string(),
        data_device: device
            .as_ref()
            .and_then(|device| device.block.as_ref())
            .map(|block| block.name.clone()),
        data_filesystem: device.map(|device| device.filesystem),
        euid: host.system().effective_uid(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;
    use crate::tuners::check_all;

    #[test]
    fn json_has_the_documented_shape() {
        let tree = FakeTree::reference_vm();
        let context = Context::new(tree.host(), None, "/data".into()).unwrap();
        let report = Report::new(&context, &check_all(&context));
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let first = &value["tuners"][0];
        for key in [
            "name",
            "status",
            "current",
            "recommended",
            "why",
            "apply_changes",
        ] {
            assert!(!first[key].is_null(), "missing {key}");
        }
        assert_eq!(value["tuners"][0]["name"], "io_uring");
        assert_eq!(value["host"]["data_device"], "vda");
        let statuses: Vec<&str> = value["tuners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_str().unwrap())
            .collect();
        assert!(statuses.contains(&"would change") && statuses.contains(&"not applicable"));
    }

    #[test]
    fn text_has_one_line_per_tuner_and_a_summary() {
        let tree = FakeTree::reference_vm();
        let context = Context::new(tree.host(), None, "/data".into()).unwrap();
        let findings = check_all(&context);
        let text = Report::new(&context, &findings).to_text();
        assert_eq!(text.lines().count(), findings.len() + 2);
        assert!(
            text.contains(
                "would change    tcp_max_syn_backlog    current: 2048 | recommended: 4096 [apply]"
            ),
            "{text}"
        );
    }
}
