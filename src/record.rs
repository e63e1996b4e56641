//! The DrillRecord: everything a run did, as data — the persisted contract. One serializable
//! model feeds the text summary, `--format json`, the history, drill logs, JUnit and metrics.
//! Versioned: readers check `record_version`. Built only through [`DrillRecord::start`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::runbook::{ProcedureKind, Runbook};

pub const RECORD_VERSION: u32 = 1;

/// The `kind` of the cleanup records that undo what a step created (`<step>:undo`).
pub const UNDO_KIND: &str = "undo";

/// What a step produced, readable by later steps as `steps.<id>.<name>`.
pub type Outputs = serde_json::Map<String, serde_json::Value>;

/// Why a step did not pass. The class decides the run's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The step ran and its expectation did not hold (exit 1).
    Failed,
    /// Something it needs could not be reached or refused us: network, auth, missing program
    /// (exit 3).
    Unavailable,
    /// It ran out of time.
    Timeout,
    /// The run was interrupted.
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillRecord {
    pub record_version: u32,
    pub id: String,
    pub runbook: RunbookRef,
    pub procedure: ProcedureRef,
    /// Resolved params (timestamps absolute); secret ones masked.
    pub params: serde_json::Map<String, serde_json::Value>,
    pub operator: String,
    pub tool_version: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub dry_run: bool,
    pub verdict: Verdict,
    /// Why the verdict is not `passed`, in one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub steps: Vec<StepRecord>,
    pub cleanup: Vec<StepRecord>,
    pub rto: Option<RtoRecord>,
    /// Filled by recovery-point checks (`freshness`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<RpoRecord>,
    pub approvals: Vec<Approval>,
    /// What was checked before anything changed (restore windows of Neon points in time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preflight: Vec<PreflightItem>,
    /// The alerts and heartbeats sent about this run, and how each went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Notification>,
}

impl DrillRecord {
    /// A record of a run that starts now: no steps yet, verdict `passed` until the run
    /// decides otherwise.
    pub fn start(
        id: String,
        runbook: RunbookRef,
        procedure: ProcedureRef,
        operator: String,
        started_at: DateTime<Utc>,
    ) -> DrillRecord {
        DrillRecord {
            record_version: RECORD_VERSION,
            id,
            runbook,
            procedure,
            params: serde_json::Map::new(),
            operator,
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at,
            finished_at: started_at,
            duration_ms: 0,
            dry_run: false,
            verdict: Verdict::Passed,
            reason: None,
            steps: Vec::new(),
            cleanup: Vec::new(),
            rto: None,
            rpo: None,
            approvals: Vec::new(),
            preflight: Vec::new(),
            notifications: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunbookRef {
    pub name: String,
    pub path: String,
    pub sha256: String,
    /// The git commit the runbook file was at, when it lives in a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitRef>,
}

impl RunbookRef {
    /// The runbook as it is on disk now, with its git commit.
    pub fn of(runbook: &Runbook) -> RunbookRef {
        RunbookRef {
            name: runbook.name.clone(),
            path: runbook.path.clone(),
            sha256: runbook.sha256.clone(),
            git: GitRef::of(&runbook.path),
        }
    }
}

/// Where a runbook stood in git when it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GitRef {
    /// `HEAD` of the repository holding the runbook.
    pub commit: String,
    /// The runbook file had uncommitted changes (what ran is not exactly `commit`).
    pub dirty: bool,
}

impl GitRef {
    /// The commit of the repository holding `path`, if any (and git is installed).
    pub fn of(path: &str) -> Option<GitRef> {
        let file = std::path::Path::new(path);
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let commit = git(&["rev-parse", "HEAD"]).filter(|c| c.len() >= 40)?;
        let name = file.file_name()?.to_string_lossy().into_owned();
        let status = git(&["status", "--porcelain", "--", &name]).unwrap_or_default();
        Some(GitRef {
            commit,
            dirty: !status.is_empty(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcedureRef {
    pub id: String,
    pub title: String,
    pub kind: RunKind,
}

/// What was run: a procedure of either kind, or the health checks (`drillbook check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Drill,
    Recovery,
    /// A `drillbook check` run: procedure `checks`, one step per check.
    Check,
}

impl RunKind {
    /// `drill`, `recovery` or `check`, as records write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Drill => "drill",
            RunKind::Recovery => "recovery",
            RunKind::Check => "check",
        }
    }
}

impl From<ProcedureKind> for RunKind {
    fn from(kind: ProcedureKind) -> RunKind {
        match kind {
            ProcedureKind::Drill => RunKind::Drill,
            ProcedureKind::Recovery => RunKind::Recovery,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    /// A step, check, cleanup or objective failed.
    Failed,
    /// Something needed could not be reached (network, auth, operator).
    Error,
    /// Interrupted by a signal; cleanup ran.
    Interrupted,
}

impl Verdict {
    /// The verdict as records and messages write it: `passed`, `failed`, `error`, `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Error => "error",
            Verdict::Interrupted => "interrupted",
        }
    }

    /// The process exit code for this verdict (the README's table).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::Failed => 1,
            Verdict::Error => 3,
            Verdict::Interrupted => 130,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Passed,
    Failed,
    TimedOut,
    Cancelled,
    /// Its `when` was false, or what it needs never ran.
    Skipped,
    /// An earlier failure or interrupt stopped the procedure first.
    NotRun,
}

impl StepStatus {
    pub fn symbol(self) -> &'static str {
        match self {
            StepStatus::Passed => "ok",
            StepStatus::Failed => "FAILED",
            StepStatus::TimedOut => "TIMED OUT",
            StepStatus::Cancelled => "CANCELLED",
            StepStatus::Skipped => "skipped",
            StepStatus::NotRun => "not run",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub status: StepStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub attempts: u32,
    pub destructive: bool,
    pub outputs: Outputs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// Why the step was skipped or not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl StepRecord {
    /// A record of a step that has not run (yet): no times, no outputs, no error.
    pub fn new(id: String, title: String, kind: String, destructive: bool) -> StepRecord {
        StepRecord {
            id,
            title,
            kind,
            status: StepStatus::NotRun,
            started_at: None,
            duration_ms: None,
            attempts: 0,
            destructive,
            outputs: Outputs::new(),
            error: None,
            error_class: None,
            note: None,
        }
    }

    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        // a record read back may hold anything: no end past the last representable date
        let ms = chrono::Duration::try_milliseconds(i64::try_from(self.duration_ms?).ok()?)?;
        self.started_at?.checked_add_signed(ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RtoRecord {
    /// Measured from the start of `from_step` to the end of `to_step`; None when either did
    /// not complete.
    pub measured_ms: Option<u64>,
    pub objective: Option<Duration>,
    pub met: Option<bool>,
    pub from_step: String,
    pub to_step: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpoRecord {
    pub recovery_point: Option<DateTime<Utc>>,
    pub target: Option<DateTime<Utc>>,
    pub data_loss_window_ms: Option<u64>,
    pub objective: Option<Duration>,
    pub met: Option<bool>,
}

/// A confirmation given during the run: a manual step or a destructive step's approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approval {
    pub step: String,
    pub by: String,
    /// `terminal` (answered at the prompt) or `--yes`.
    pub via: String,
    pub at: DateTime<Utc>,
    pub question: String,
}

/// One preflight finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreflightItem {
    pub step: String,
    pub check: String,
    pub ok: bool,
    pub detail: String,
    /// Set when the check could not be made (Neon unreachable, key refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
}

/// What an alert or heartbeat destination was sent about a run, and how it went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    pub destination: String,
    pub event: String,
    /// `sent`, `suppressed` (repeat window) or `failed: …`.
    pub outcome: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_lasting_past_the_calendar_has_no_end() {
        let mut step = StepRecord::new("a".into(), "A".into(), "shell".into(), false);
        step.started_at = Some(Utc::now());
        step.duration_ms = Some(1_500);
        assert_eq!(
            step.finished_at(),
            step.started_at
                .map(|t| t + chrono::Duration::milliseconds(1_500))
        );
        for ms in [u64::MAX, i64::MAX.unsigned_abs(), 1 << 62] {
            step.duration_ms = Some(ms);
            assert_eq!(step.finished_at(), None, "{ms}");
        }
    }
}
