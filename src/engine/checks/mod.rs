//! Health checks (`drillbook check`): every `checks:` entry runs as a one-step procedure
//! through the same engine as drills (templates, secrets, error classes, timeouts), all at
//! once, each under its own timeout. The outcome maps to monitoring codes: the step passed →
//! OK, unless a `warn`/`critical` threshold on its measure is crossed; it failed →
//! CRITICAL; it could not run (unreachable, auth, missing env, timeout) → UNKNOWN.

mod metrics;
mod record;

use std::collections::BTreeSet;

pub use metrics::prometheus;
pub use record::{notice, record};
use serde::Serialize;
use serde_json::Value;

use super::RunOptions;
use crate::cancel::BoxFuture;
use crate::cancel::Cancel;
use crate::kind::{Metric, StepKind, Worse};
use crate::record::ErrorClass;
use crate::record::{StepRecord, StepStatus};
use crate::runbook::{Check, Procedure, ProcedureKind, Runbook, Step};
use crate::steps::Interaction;

/// A check's outcome, as monitoring systems count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    /// Nagios/monitoring-plugin exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    /// `OK`, `WARNING`, `CRITICAL` or `UNKNOWN`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// Which status wins when several checks report: CRITICAL over UNKNOWN over WARNING over
    /// OK (a broken backup must page even when another check could not run).
    pub fn severity(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Unknown => 2,
            Status::Critical => 3,
        }
    }

    /// The more severe of the two.
    pub fn max_by_severity(self, other: Status) -> Status {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub status: Status,
    /// One line: what was found.
    pub message: String,
    pub duration_ms: u64,
    /// The kind's measure, when it has one and the check produced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measure: Option<Measure>,
    pub outputs: serde_json::Map<String, Value>,
    /// The check's sub-results, when its kind has them (`barman.check`: a line each).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
}

/// One sub-result of a check: a line of the tool's own report.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

/// The sub-results a step's outputs hold, in the kind's declared output: a list of
/// `{name, status, detail}`; a tool's `FAILED` is CRITICAL, a status not known UNKNOWN.
fn parts(check: &Check, outputs: &serde_json::Map<String, Value>) -> Vec<Part> {
    let Some(field) = check.kind.declared().parts else {
        return Vec::new();
    };
    outputs
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| Part {
            name: p["name"].as_str().unwrap_or("").to_owned(),
            status: match p["status"].as_str().unwrap_or("") {
                "OK" => Status::Ok,
                "WARNING" => Status::Warning,
                "CRITICAL" | "FAILED" => Status::Critical,
                _ => Status::Unknown,
            },
            detail: p["detail"].as_str().unwrap_or("").to_owned(),
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// The metric family it feeds (from the kind's declaration).
    #[serde(skip)]
    pub metric: Option<Metric>,
}

fn crossed(value: f64, limit: f64, worse: Worse) -> bool {
    match worse {
        Worse::Higher => value > limit,
        Worse::Lower => value < limit,
    }
}

/// Nobody answers during a check; nothing asks.
struct Unattended;

impl Interaction for Unattended {
    fn assume_yes(&self) -> bool {
        false
    }
    fn is_interactive(&self) -> bool {
        false
    }
    fn show(&self, _: &str) {}
    fn confirm(&self, _: String) -> BoxFuture<'static, std::io::Result<bool>> {
        Box::pin(async { Ok(false) })
    }
}

impl super::Observer for Unattended {
    fn started(&self, _: &crate::record::DrillRecord, _: usize, _: usize) {}
    fn step_started(&self, _: bool, _: usize, _: &Step) {}
    fn step_finished(&self, _: bool, _: usize, _: &StepRecord) {}
}

/// The one-step procedure that runs `check`.
fn as_procedure(check: &Check, default_timeout: crate::duration::Duration) -> Procedure {
    let step = Step {
        id: check.id.clone(),
        title: check.title.clone(),
        description: None,
        kind: check.kind.clone(),
        payload: check.payload.clone(),
        when: None,
        timeout: Some(check.timeout.unwrap_or(default_timeout)),
        retries: None,
        continue_on_error: false,
        rto: None,
        destructive: false,
        needs: BTreeSet::new(),
        env: crate::template::env_references(&check.payload),
    };
    Procedure {
        id: format!("check:{}", check.id),
        title: check.title.clone().unwrap_or_else(|| check.id.clone()),
        description: None,
        kind: ProcedureKind::Drill,
        schedule: None,
        params: indexmap::IndexMap::new(),
        steps: vec![step],
        cleanup: Vec::new(),
    }
}

/// A check's status, message and measure from its step's record (a run now, or one the
/// history holds).
pub(crate) fn judge(check: &Check, step: &StepRecord) -> (Status, String, Option<Measure>) {
    let m = check.kind.measure().and_then(|declared| {
        step.outputs
            .get(declared.output)
            .and_then(crate::kind::measure_value)
            .map(|v| {
                (
                    Measure {
                        name: declared.output.into(),
                        value: v,
                        unit: declared.unit.as_str().into(),
                        metric: declared.metric,
                    },
                    declared.worse,
                )
            })
    });
    match step.status {
        StepStatus::Passed => {}
        StepStatus::Failed if step.error_class == Some(ErrorClass::Failed) => {
            return (
                Status::Critical,
                step.error.clone().unwrap_or_else(|| "failed".into()),
                m.map(|(m, _)| m),
            )
        }
        _ => {
            return (
                Status::Unknown,
                step.error
                    .clone()
                    .or_else(|| step.note.clone())
                    .unwrap_or_else(|| step.status.symbol().into()),
                m.map(|(m, _)| m),
            )
        }
    }
    // a monitoring plugin's own verdict (`nagios: true`): OK or WARNING when it passed
    let plugin = matches!(&check.kind, StepKind::Shell(s) if s.nagios()).then(|| {
        let said = |key| step.outputs.get(key).and_then(Value::as_str).unwrap_or("");
        let status = if said("status") == "WARNING" {
            Status::Warning
        } else {
            Status::Ok
        };
        (status, said("message").to_owned())
    });
    let Some((measure, worse)) = m else {
        return match plugin {
            Some((status, message)) if !message.is_empty() => (status, message, None),
            Some((status, _)) => (status, status.label().to_owned(), None),
            None => (Status::Ok, "ok".into(), None),
        };
    };
    let shown = |v: f64| match measure.unit.as_str() {
        "seconds" => crate::duration::Duration::from_secs(v.max(0.0) as u64).to_string(),
        "bytes" => format!("{v} bytes"),
        _ => format!("{v}"),
    };
    let level = [
        (Status::Critical, check.critical.as_ref()),
        (Status::Warning, check.warn.as_ref()),
    ]
    .into_iter()
    .find_map(|(status, t)| {
        let limit = t?.value;
        crossed(measure.value, limit, worse).then_some((status, limit))
    });
    let message = match level {
        Some((status, limit)) => format!(
            "{} is {} ({} threshold {})",
            measure.name,
            shown(measure.value),
            if status == Status::Critical {
                "critical"
            } else {
                "warning"
            },
            shown(limit)
        ),
        None => format!("{} is {}", measure.name, shown(measure.value)),
    };
    let level = level.map_or(Status::Ok, |(s, _)| s);
    match plugin {
        Some((status, said)) => {
            let worst = [status, level]
                .into_iter()
                .max_by_key(|s| s.severity())
                .unwrap_or(level);
            let message = if said.is_empty() {
                message
            } else {
                format!("{said}; {message}")
            };
            (worst, message, Some(measure))
        }
        None => (level, message, Some(measure)),
    }
}

/// Runs the runbook's checks (or those in `only`) concurrently; results in runbook order.
pub async fn run(
    runbook: &Runbook,
    only: &[String],
    opts: &RunOptions,
    default_timeout: crate::duration::Duration,
    cancel: &Cancel,
) -> Vec<CheckResult> {
    let chosen: Vec<&Check> = runbook
        .checks
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.id))
        .collect();
    // one answer per tool question (`pgbackrest info`, `barman list-backups`) for the whole
    // run, shared by the checks that ask it
    let mut opts = opts.clone();
    opts.shared = Some(crate::steps::shared::Shared::default());
    let mut set = tokio::task::JoinSet::new();
    for (i, check) in chosen.iter().enumerate() {
        let mut rb = runbook.clone();
        let procedure = as_procedure(check, default_timeout);
        let pid = procedure.id.clone();
        rb.procedures.insert(pid.clone(), procedure);
        let check = (*check).clone();
        let opts = opts.clone();
        let cancel = cancel.clone();
        set.spawn(async move {
            let clock = std::time::Instant::now();
            let result = super::run(&rb, &pid, &opts, &Unattended, &Unattended, &cancel).await;
            let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
            let title = check.title.clone().unwrap_or_else(|| check.id.clone());
            let kind = check.kind.name().to_owned();
            let r = match result {
                Err(e) => CheckResult {
                    id: check.id.clone(),
                    title,
                    kind,
                    status: Status::Unknown,
                    message: e.to_string(),
                    duration_ms,
                    measure: None,
                    outputs: serde_json::Map::new(),
                    parts: Vec::new(),
                },
                Ok(rec) => {
                    let step = rec.steps.first().cloned().unwrap_or_else(|| {
                        StepRecord::new(check.id.clone(), title.clone(), kind.clone(), false)
                    });
                    let (status, message, measure) = judge(&check, &step);
                    CheckResult {
                        id: check.id.clone(),
                        title,
                        kind,
                        status,
                        message,
                        duration_ms,
                        measure,
                        parts: parts(&check, &step.outputs),
                        outputs: step.outputs,
                    }
                }
            };
            (i, r)
        });
    }
    let mut out: Vec<(usize, CheckResult)> = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Ok(pair) = done {
            out.push(pair);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// The environment variables the runbook's checks need (their targets', `NEON_API_KEY`…).
pub fn needed_env(runbook: &Runbook) -> BTreeSet<String> {
    runbook
        .checks
        .iter()
        .flat_map(|c| {
            runbook.needed_env(&as_procedure(c, crate::duration::Duration::from_secs(60)))
        })
        .collect()
}

/// The status of the whole run: the most severe one (OK when there are none).
pub fn overall(results: &[CheckResult]) -> Status {
    results
        .iter()
        .map(|r| r.status)
        .max_by_key(|s| s.severity())
        .unwrap_or(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_cross_the_way_that_is_worse() {
        assert!(crossed(10.0, 5.0, Worse::Higher) && !crossed(10.0, 5.0, Worse::Lower));
    }

    #[test]
    fn statuses_order_by_severity() {
        assert!(Status::Critical.severity() > Status::Unknown.severity());
        assert!(Status::Unknown.severity() > Status::Warning.severity());
        assert_eq!(Status::Warning.code(), 1);
    }
}
