//! What a tuner says about the host: a [`Finding`] and the writes that would fix it.

use serde::{Deserialize, Serialize};

/// How the host compares with what Spate wants. The words are a stable contract
/// (they appear in `check` output and its JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The host already matches the recommendation (or the tuner only reports).
    #[serde(rename = "ok")]
    Ok,
    /// The host differs from the recommendation; `apply` changes it when the
    /// finding carries writes, otherwise the recommendation says what to do by hand.
    #[serde(rename = "would change")]
    WouldChange,
    /// The feature is absent here (VM, container, old kernel): nothing to tune.
    #[serde(rename = "not applicable")]
    NotApplicable,
    /// The files exist but could not be read or understood (often: not root).
    #[serde(rename = "cannot check")]
    CannotCheck,
}

impl Status {
    /// The status word as printed.
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::WouldChange => "would change",
            Status::NotApplicable => "not applicable",
            Status::CannotCheck => "cannot check",
        }
    }
}

/// One write `apply` makes, with the value `restore` puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedWrite {
    /// The host path, e.g. `/proc/sys/vm/swappiness`.
    pub path: String,
    /// What `apply` writes.
    pub value: String,
    /// What `restore` writes back, in a form the kernel accepts (the selected
    /// word of a choice list). `None`: the file did not exist and `restore` removes it.
    pub previous: Option<String>,
    /// The file is an ordinary configuration file that `apply` creates or
    /// replaces whole, not a kernel tunable.
    #[serde(default)]
    pub creates_file: bool,
}

impl PlannedWrite {
    /// A write to an existing kernel tunable.
    pub fn tunable(
        path: impl Into<String>,
        value: impl Into<String>,
        previous: impl Into<String>,
    ) -> Self {
        PlannedWrite {
            path: path.into(),
            value: value.into(),
            previous: Some(previous.into()),
            creates_file: false,
        }
    }
}

/// One tuner's verdict on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The tuner's name (stable; used by `apply --only`).
    pub name: &'static str,
    /// How the host compares.
    pub status: Status,
    /// What the host has now, in words an operator recognises.
    pub current: String,
    /// What Spate wants, or what to do by hand.
    pub recommended: String,
    /// Why it matters for a broker.
    pub why: String,
    /// The writes `apply` would make; empty when nothing is changed automatically.
    pub writes: Vec<PlannedWrite>,
}

impl Finding {
    /// A finding with no writes.
    pub fn new(
        name: &'static str,
        status: Status,
        current: impl Into<String>,
        recommended: impl Into<String>,
        why: impl Into<String>,
    ) -> Finding {
        Finding {
            name,
            status,
            current: current.into(),
            recommended: recommended.into(),
            why: why.into(),
            writes: Vec::new(),
        }
    }

    /// Adds the writes that bring the host to the recommendation.
    pub fn with_writes(mut self, writes: Vec<PlannedWrite>) -> Finding {
        self.writes = writes;
        self
    }
}
