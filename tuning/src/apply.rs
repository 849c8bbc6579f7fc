//! `apply` and `restore`: carrying out the tuners' planned writes, and undoing them.
//!
//! Every successful write is recorded in a state file (JSON) with the value it
//! replaced, before the next write is made, so `restore` can always put back
//! what was there before the first `apply`. A second `apply` keeps the oldest
//! recorded value for a path. A write that fails is reported against its tuner
//! and the other tuners go on.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TuneError;
use crate::finding::{Finding, PlannedWrite};
use crate::host::Host;
use crate::tuners;

/// Default state file, as a host path under the root.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/spate-tune/state.json";

/// What `apply` changed, so that `restore` can undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version of this file.
    pub version: u32,
    /// The `--root` the changes were made under.
    pub root: String,
    /// Changes in the order they were made; `restore` undoes them in reverse.
    pub changes: Vec<Change>,
}

/// One write `apply` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The tuner that asked for it.
    pub tuner: String,
    /// The host path written.
    pub path: String,
    /// The value before the first `apply`; `None` when `apply` created the file.
    pub previous: Option<String>,
    /// The value `apply` wrote last.
    pub written: String,
    /// An ordinary file written whole rather than a kernel tunable.
    #[serde(default)]
    pub creates_file: bool,
}

/// The findings whose writes `apply` makes: those with writes, narrowed to `only` if given.
pub fn plan(findings: Vec<Finding>, only: &[String]) -> Result<Vec<Finding>, TuneError> {
    if let Some(unknown) = only.iter().find(|name| tuners::find(name).is_none()) {
        let names: Vec<&str> = tuners::TUNERS.iter().map(|tuner| tuner.name).collect();
        return Err(TuneError::Usage(format!(
            "unknown tuner {unknown:?}; tuners are: {}",
            names.join(", ")
        )));
    }
    Ok(findings
        .into_iter()
        .filter(|finding| !finding.writes.is_empty())
        .filter(|finding| only.is_empty() || only.iter().any(|name| name == finding.name))
        .collect())
}

/// One line per write, exactly as `apply` would make them.
pub fn describe_writes(plan: &[Finding]) -> Vec<String> {
    let mut lines = Vec::new();
    for finding in plan {
        for write in &finding.writes {
            lines.push(describe_write(finding.name, write));
        }
    }
    lines
}

fn describe_write(tuner: &str, write: &PlannedWrite) -> String {
    let verb = if write.creates_file {
        "create"
    } else {
        "write"
    };
    let before = match &write.previous {
        Some(previous) => format!("(now {previous:?})"),
        None => "(new file)".to_string(),
    };
    format!(
        "{tuner}: {verb} {} = {:?} {before}",
        write.path, write.value
    )
}

/// How one tuner's writes went.
#[derive(Debug)]
pub struct TunerOutcome {
    /// The tuner.
    pub tuner: &'static str,
    /// Number of writes made, or the first error (the tuner's later writes are skipped).
    pub result: Result<usize, TuneError>,
}

/// Makes the planned writes, recording each in the state file before the next.
///
/// Fails before writing anything if the state file cannot be written.
pub fn apply(
    host: &Host,
    plan: &[Finding],
    state_path: &Path,
) -> Result<Vec<TunerOutcome>, TuneError> {
    let mut state = load_state(state_path)?.unwrap_or_else(|| State {
        version: 1,
        root: host.root().display().to_string(),
        changes: Vec::new(),
    });
    check_root(&state, host, state_path)?;
    save_state(state_path, &state)?;
    let mut outcomes = Vec::new();
    for finding in plan {
        let mut made = 0;
        let mut failure = None;
        for write in &finding.writes {
            let written = if write.creates_file {
                host.write_file(&write.path, &write.value)
            } else {
                host.write(&write.path, &write.value)
            };
            if let Err(error) = written {
                failure = Some(error);
                break;
            }
            record(&mut state, finding.name, write);
            save_state(state_path, &state)?;
            made += 1;
        }
        outcomes.push(TunerOutcome {
            tuner: finding.name,
            result: failure.map_or(Ok(made), Err),
        });
    }
    if state.changes.is_empty() {
        // Nothing to restore: leave no state file behind.
        fs::remove_file(state_path)
            .map_err(|error| state_error(state_path, format!("cannot remove: {error}")))?;
    }
    Ok(outcomes)
}

/// Adds a change, keeping the oldest `previous` when the path was written before.
fn record(state: &mut State, tuner: &str, write: &PlannedWrite) {
    if let Some(change) = state
        .changes
        .iter_mut()
        .find(|change| change.path == write.path)
    {
        change.written = write.value.clone();
        return;
    }
    state.changes.push(Change {
        tuner: tuner.to_string(),
        path: write.path.clone(),
        previous: write.previous.clone(),
        written: write.value.clone(),
        creates_file: write.creates_file,
    });
}

/// How putting one value back went.
#[derive(Debug)]
pub struct RestoreOutcome {
    /// The change being undone.
    pub change: Change,
    /// Whether it was put back.
    pub result: Result<(), TuneError>,
}

/// The lines `restore --dry-run` prints.
pub fn describe_restore(state: &State) -> Vec<String> {
    state
        .changes
        .iter()
        .rev()
        .map(|change| match &change.previous {
            Some(previous) => format!(
                "{}: write {} = {previous:?} (now {:?})",
                change.tuner, change.path, change.written
            ),
            None => format!("{}: remove {}", change.tuner, change.path),
        })
        .collect()
}

/// Puts back every recorded value, newest first. Changes that could not be
/// undone stay in the state file; the file is removed once it is empty.
pub fn restore(host: &Host, state_path: &Path) -> Result<Vec<RestoreOutcome>, TuneError> {
    let mut state = read_state_for_restore(state_path)?;
    check_root(&state, host, state_path)?;
    let mut outcomes = Vec::new();
    let mut remaining = Vec::new();
    for change in state.changes.iter().rev() {
        let result = match (&change.previous, change.creates_file) {
            (None, _) => host.remove(&change.path),
            (Some(previous), true) => host.write_file(&change.path, previous),
            (Some(previous), false) => host.write(&change.path, previous),
        };
        if result.is_err() {
            remaining.push(change.clone());
        }
        outcomes.push(RestoreOutcome {
            change: change.clone(),
            result,
        });
    }
    if remaining.is_empty() {
        fs::remove_file(state_path)
            .map_err(|error| state_error(state_path, format!("cannot remove: {error}")))?;
    } else {
        remaining.reverse();
        state.changes = remaining;
        save_state(state_path, &state)?;
    }
    Ok(outcomes)
}

/// The state file, which must exist for `restore`.
pub fn read_state_for_restore(state_path: &Path) -> Result<State, TuneError> {
    load_state(state_path)?
        .ok_or_else(|| state_error(state_path, "does not exist: nothing to restore".into()))
}

/// Where the state file is: `--state`, else the default under the root.
pub fn state_path(host: &Host, explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| host.path(DEFAULT_STATE_PATH))
}

fn check_root(state: &State, host: &Host, state_path: &Path) -> Result<(), TuneError> {
    let root = host.root().display().to_string();
    if state.root == root {
        return Ok(());
    }
    let reason = format!("records changes under root {}, not {root}", state.root);
    Err(state_error(state_path, reason))
}

fn load_state(state_path: &Path) -> Result<Option<State>, TuneError> {
    let text = match fs::read_to_string(state_path) {
        Ok(text) => text,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(state_error(state_path, format!("cannot read: {error}"))),
    };
    let state: State = serde_json::from_str(&text)
        .map_err(|error| state_error(state_path, format!("not a state file: {error}")))?;
    Ok(Some(state))
}

/// Writes the state atomically: a temporary file renamed over the old one.
fn save_state(state_path: &Path, state: &State) -> Result<(), TuneError> {
    let fail = |what: &str, error: std::io::Error| {
        state_error(state_path, format!("cannot {what}: {error}"))
    };
    if let Some(parent) = state_path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        fs::create_dir_all(parent).map_err(|error| fail("create its directory", error))?;
    }
    let text = serde_json::to_string_pretty(state)
        .map_err(|error| state_error(state_path, error.to_string()))?;
    let temporary = state_path.with_extension("json.tmp");
    fs::write(&temporary, format!("{text}\n")).map_err(|error| fail("write", error))?;
    fs::rename(&temporary, state_path).map_err(|error| fail("rename into place", error))
}

fn state_error(state_path: &Path, reason: String) -> TuneError {
    TuneError::State {
        path: state_path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeTree;
    use crate::tuners::{check_all, Context};
    use std::collections::BTreeMap;

    /// Every file in the tree with its contents, to compare before and after.
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
                    files.insert(path.clone(), fs::read_to_string(&path).unwrap());
                }
            }
        }
        files
    }

    fn untuned_tree() -> FakeTree {
        let tree = FakeTree::reference_vm();
        tree.file(
            "/proc/swaps",
            "Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n",
        );
        tree.file(
            "/sys/kernel/mm/transparent_hugepage/defrag",
            "[always] defer defer+madvise madvise never\n",
        );
        tree.dir("/etc/security/limits.d");
        tree
    }

    #[test]
    fn apply_then_restore_round_trips_the_tree_exactly() {
        let tree = untuned_tree();
        let before = snapshot(tree.root());
        let host = tree.host();
        let state = tree.root().join("state/state.json");
        let context = Context::new(
            tree.host(),
            Some(crate::cpus::CpuSet::parse("1").unwrap()),
            "/data".into(),
        )
        .unwrap();
        let plan = plan(check_all(&context), &[]).unwrap();
        let names: Vec<&str> = plan.iter().map(|finding| finding.name).collect();
        assert_eq!(
            names,
            [
                "memlock",
                "irq_affinity",
                "disk_scheduler",
                "disk_nomerges",
                "swappiness",
                "transparent_hugepages",
                "tcp_max_syn_backlog"
            ]
        );
        let outcomes = apply(&host, &plan, &state).unwrap();
        assert!(
            outcomes.iter().all(|outcome| outcome.result.is_ok()),
            "{outcomes:?}"
        );
        assert_eq!(tree.read("/proc/sys/vm/swappiness"), "1\n");
        assert_eq!(tree.read("/proc/irq/36/smp_affinity_list"), "0\n");
        // The host now checks clean for everything apply could change.
        let after = plan_again(&tree);
        assert!(after.is_empty(), "{after:?}");
        let restored = restore(&host, &state).unwrap();
        assert!(restored.iter().all(|outcome| outcome.result.is_ok()));
        assert!(!state.exists());
        let mut now = snapshot(tree.root());
        now.retain(|path, _| !path.starts_with(tree.root().join("state")));
        assert_eq!(now, before);
    }

    fn plan_again(tree: &FakeTree) -> Vec<String> {
        let context = Context::new(
            tree.host(),
            Some(crate::cpus::CpuSet::parse("1").unwrap()),
            "/data".into(),
        )
        .unwrap();
        let findings = plan(check_all(&context), &[]).unwrap();
        // memlock reads this process's limits, which a limits.d file cannot change.
        findings
            .iter()
            .filter(|finding| finding.name != "memlock")
            .map(|finding| finding.name.to_string())
            .collect()
    }

    #[test]
    fn a_failing_tuner_is_reported_and_the_others_go_on() {
        let tree = untuned_tree();
        // A tunable that exists in check but refuses writes: make it a directory after planning.
        let context = Context::new(tree.host(), None, "/data".into()).unwrap();
        let plan = plan(check_all(&context), &[]).unwrap();
        let swappiness = tree.root().join("proc/sys/vm/swappiness");
        fs::remove_file(&swappiness).unwrap();
        fs::create_dir(&swappiness).unwrap();
        let state = tree.root().join("state.json");
        let outcomes = apply(&tree.host(), &plan, &state).unwrap();
        let failed: Vec<&str> = outcomes
            .iter()
            .filter(|outcome| outcome.result.is_err())
            .map(|outcome| outcome.tuner)
            .collect();
        assert_eq!(failed, ["swappiness"]);
        assert_eq!(
            tree.read("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
            "4096\n"
        );
        let recorded = read_state_for_restore(&state).unwrap();
        assert!(recorded
            .changes
            .iter()
            .all(|change| change.tuner != "swappiness"));
    }

    #[test]
    fn only_narrows_and_rejects_unknown_names() {
        let tree = untuned_tree();
        let context = Context::new(tree.host(), None, "/data".into()).unwrap();
        let only = vec!["swappiness".to_string()];
        let plan = plan(check_all(&context), &only).unwrap();
        assert_eq!(
            describe_writes(&plan),
            ["swappiness: write /proc/sys/vm/swappiness = \"1\" (now \"60\")"]
        );
        let error = super::plan(check_all(&context), &["swapiness".to_string()]).unwrap_err();
        assert!(error.to_string().contains("unknown tuner"));
    }

    #[test]
    fn a_second_apply_keeps_the_first_previous_value() {
        let tree = untuned_tree();
        let host = tree.host();
        let state = tree.root().join("state.json");
        let write = PlannedWrite::tunable("/proc/sys/vm/swappiness", "10", "60");
        let first = Finding::new(
            "swappiness",
            crate::finding::Status::WouldChange,
            "60",
            "1",
            "",
        )
        .with_writes(vec![write]);
        apply(&host, &[first], &state).unwrap();
        let write = PlannedWrite::tunable("/proc/sys/vm/swappiness", "1", "10");
        let second = Finding::new(
            "swappiness",
            crate::finding::Status::WouldChange,
            "10",
            "1",
            "",
        )
        .with_writes(vec![write]);
        apply(&host, &[second], &state).unwrap();
        let recorded = read_state_for_restore(&state).unwrap();
        assert_eq!(recorded.changes.len(), 1);
        assert_eq!(recorded.changes[0].previous.as_deref(), Some("60"));
        restore(&host, &state).unwrap();
        assert_eq!(tree.read("/proc/sys/vm/swappiness"), "60\n");
    }

    #[test]
    fn restore_without_state_and_state_of_another_root_are_errors() {
        let tree = untuned_tree();
        let state = tree.root().join("state.json");
        assert!(restore(&tree.host(), &state).is_err());
        let other = State {
            version: 1,
            root: "/elsewhere".into(),
            changes: Vec::new(),
        };
        save_state(&state, &other).unwrap();
        assert!(restore(&tree.host(), &state).is_err());
        assert!(apply(&tree.host(), &[], &state).is_err());
    }
}
