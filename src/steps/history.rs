//! Checks on the drill history: `history.last_pass` (a procedure passed recently enough) and
//! `history.overdue` (a scheduled procedure is not overdue). They read the history given on
//! the command line (`--history`), else `DRILLBOOK_HISTORY`, else `drills/history.jsonl`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Outputs, Spec, StepCx, StepError};
use crate::duration::Duration;
use crate::history::Store;
use crate::record::{DrillRecord, Verdict};

/// The runbook's records of `procedure`, oldest first.
async fn records(cx: &StepCx<'_>, procedure: &str) -> Result<Vec<DrillRecord>, StepError> {
    let store = Store::from_arg(cx.history);
    let entries = store.entries().await.map_err(|e| {
        StepError::unavailable(format!("cannot read the history {}: {e}", store.display()))
    })?;
    Ok(entries
        .iter()
        .filter_map(|e| e.drill().ok())
        .filter(|r| r.runbook.name == cx.runbook.name && r.procedure.id == procedure && !r.dry_run)
        .collect())
}

fn last_pass(records: &[DrillRecord]) -> Option<&DrillRecord> {
    records
        .iter()
        .filter(|r| r.verdict == Verdict::Passed)
        .max_by_key(|r| r.finished_at)
}

fn insert_last(out: &mut Outputs, last: Option<&DrillRecord>, now: DateTime<Utc>) {
    if let Some(r) = last {
        out.insert(
            "last_pass".into(),
            crate::timestamp::rfc3339(r.finished_at).into(),
        );
        out.insert("last_pass_id".into(), r.id.clone().into());
        let age = (now - r.finished_at).to_std().unwrap_or_default();
        out.insert("age_seconds".into(), age.as_secs().into());
        if let Some(ms) = r.rto.as_ref().and_then(|t| t.measured_ms) {
            out.insert("rto_seconds".into(), (ms as f64 / 1000.0).into());
        }
    }
}

/// `history.last_pass`: the procedure passed within `max_age`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryLastPass {
    /// A procedure of this runbook, e.g. `pitr-drill`.
    pub procedure: String,
    /// How long ago its last pass may be, e.g. `35d`.
    pub max_age: Duration,
}

impl Spec for HistoryLastPass {
    fn check(&self) -> Result<(), String> {
        if self.procedure.trim().is_empty() {
            return Err("`procedure` is empty".into());
        }
        Ok(())
    }

    fn summary(&self) -> String {
        format!(
            "`{}` passed within the last {}",
            self.procedure, self.max_age
        )
    }

    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let now = Utc::now();
        let recs = records(cx, &self.procedure).await?;
        let last = last_pass(&recs);
        let mut out = Outputs::new();
        out.insert("runs".into(), recs.len().into());
        insert_last(&mut out, last, now);
        let Some(r) = last else {
            return Err(StepError::failed(format!(
                "`{}` has never passed ({} runs recorded)",
                self.procedure,
                recs.len()
            ))
            .with_outputs(out));
        };
        let age = (now - r.finished_at).to_std().unwrap_or_default();
        if age > self.max_age.0 {
            return Err(StepError::failed(format!(
                "`{}` last passed {} ago ({}), more than {}",
                self.procedure,
                crate::duration::human(age),
                crate::timestamp::rfc3339(r.finished_at),
                self.max_age
            ))
            .with_outputs(out));
        }
        Ok(out)
    }
}

/// `history.overdue`: a scheduled procedure has passed since its schedule last came due (a
/// grace of one seventh of the period: a monthly drill is overdue after ~35 days).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryOverdue {
    /// A procedure of this runbook with a `schedule`.
    pub procedure: String,
}

impl Spec for HistoryOverdue {
    fn summary(&self) -> String {
        format!("`{}` is not overdue for its schedule", self.procedure)
    }

    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let Some(schedule) = cx
            .runbook
            .procedures
            .get(&self.procedure)
            .and_then(|p| p.schedule.as_ref())
        else {
            return Err(StepError::failed(format!(
                "procedure `{}` has no `schedule` to be overdue for",
                self.procedure
            )));
        };
        let now = Utc::now();
        let recs = records(cx, &self.procedure).await?;
        let last = last_pass(&recs);
        let mut out = Outputs::new();
        insert_last(&mut out, last, now);
        out.insert("schedule".into(), schedule.as_str().into());
        let last_at = last.map(|r| r.finished_at);
        if let Some(t) = last_at {
            out.insert(
                "due_by".into(),
                crate::timestamp::rfc3339(crate::history::stats::due_by(schedule, t)).into(),
            );
        }
        if crate::history::stats::is_overdue(schedule, last_at, now) {
            let why = match last_at {
                None => "it has never passed".to_owned(),
                Some(t) => format!(
                    "its last pass was {} ({} ago) and it was due again by {}",
                    crate::timestamp::rfc3339(t),
                    crate::duration::human((now - t).to_std().unwrap_or_default()),
                    crate::timestamp::rfc3339(crate::history::stats::due_by(schedule, t))
                ),
            };
            return Err(StepError::failed(format!(
                "`{}` ({}) is overdue: {why}",
                self.procedure,
                schedule.as_str()
            ))
            .with_outputs(out));
        }
        Ok(out)
    }
}
