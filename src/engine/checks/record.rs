//! A check run as data for the history and the alerts: one record with a step per check
//! (OK and WARNING pass, CRITICAL fails, UNKNOWN could not run), and one alert naming every
//! check that is not OK.

use chrono::{DateTime, Utc};

use super::{overall, CheckResult, Status};
use crate::notify::Notice;
use crate::record::{
    DrillRecord, ErrorClass, ProcedureRef, RunKind, RunbookRef, StepRecord, StepStatus, Verdict,
};
use crate::runbook::Runbook;

/// The check run as a history record (procedure `checks`, kind `check`).
pub fn record(
    rb: &Runbook,
    results: &[CheckResult],
    started: DateTime<Utc>,
    operator: &str,
) -> DrillRecord {
    let status = overall(results);
    let finished = Utc::now();
    let steps = results
        .iter()
        .map(|r| {
            let mut st = StepRecord::new(r.id.clone(), r.title.clone(), r.kind.clone(), false);
            st.started_at = Some(started);
            st.duration_ms = Some(r.duration_ms);
            st.attempts = 1;
            st.outputs = r.outputs.clone();
            let label = r.status.label();
            match r.status {
                Status::Ok => st.status = StepStatus::Passed,
                Status::Warning => {
                    st.status = StepStatus::Passed;
                    st.note = Some(format!("{label}: {}", r.message));
                }
                Status::Critical | Status::Unknown => {
                    st.status = StepStatus::Failed;
                    st.error = Some(format!("{label}: {}", r.message));
                    st.error_class = Some(if r.status == Status::Critical {
                        ErrorClass::Failed
                    } else {
                        ErrorClass::Unavailable
                    });
                }
            }
            st
        })
        .collect();
    let bad: Vec<&CheckResult> = results.iter().filter(|r| r.status != Status::Ok).collect();
    let mut record = DrillRecord::start(
        crate::engine::new_run_id(started),
        RunbookRef::of(rb),
        ProcedureRef {
            id: "checks".into(),
            title: "Health checks".into(),
            kind: RunKind::Check,
        },
        operator.to_owned(),
        started,
    );
    record.finished_at = finished;
    record.duration_ms = u64::try_from((finished - started).num_milliseconds()).unwrap_or(0);
    record.verdict = match status {
        Status::Ok | Status::Warning => Verdict::Passed,
        Status::Critical => Verdict::Failed,
        Status::Unknown => Verdict::Error,
    };
    record.reason = (!bad.is_empty()).then(|| {
        bad.iter()
            .map(|r| format!("{} {}", r.id, r.status.label()))
            .collect::<Vec<_>>()
            .join(", ")
    });
    record.steps = steps;
    record
}

/// The alert about a whole check run: one message per destination, naming every check that
/// is not OK.
pub fn notice(rb: &Runbook, results: &[CheckResult], operator: &str) -> Notice {
    let status = overall(results);
    let bad: Vec<&CheckResult> = results.iter().filter(|r| r.status != Status::Ok).collect();
    Notice {
        runbook: rb.name.clone(),
        subject: "checks".into(),
        kind: "check".into(),
        ok: status == Status::Ok,
        warning: status == Status::Warning,
        summary: if bad.is_empty() {
            format!("OK: all {} checks passed", results.len())
        } else {
            format!(
                "{}: {} of {} checks are not OK",
                status.label(),
                bad.len(),
                results.len()
            )
        },
        details: bad
            .iter()
            .map(|r| format!("{} ({}): {}", r.id, r.status.label(), r.message))
            .collect(),
        run_id: None,
        since: None,
        log: None,
        operator: operator.to_owned(),
    }
}
