//! `history.last_pass` and `history.overdue`: they read the history given on the command
//! line (`--history`), else `DRILLBOOK_HISTORY`, else `drills/history.jsonl`.

use chrono::{DateTime, Utc};

use super::{Run, StepCx, StepError};
use crate::history::typed::{self, Brief};
use crate::history::Store;
use crate::kind::history::{HistoryLastPass, HistoryOverdue};
use crate::record::{DrillRecord, Outputs, Verdict};

/// The runbook's records of `procedure`, oldest first. In a check run, the checks on one
/// procedure share one read of the history (each would verify it and parse every line).
async fn records(cx: &StepCx<'_>, procedure: &str) -> Result<Vec<DrillRecord>, StepError> {
    let store = Store::from_arg(cx.history);
    let key = format!(
        "history {} {}/{procedure}",
        store.display(),
        cx.runbook.name
    );
    let lines = super::shared::once(cx.shared, &key, || async {
        // a tampered history proves nothing: the check fails (CRITICAL), naming the break
        let stored = store.trusted_lines().await.map_err(|e| match e {
            crate::history::HistoryError::Broken { .. } => StepError::failed(e.to_string()),
            e => {
                StepError::unavailable(format!("cannot read the history {}: {e}", store.display()))
            }
        })?;
        let mine = stored.lines.iter().filter(|l| {
            Brief::read(l).is_some_and(|b| {
                b.record.runbook.name == cx.runbook.name
                    && b.record.procedure.name == procedure
                    && !b.record.dry_run
            })
        });
        Ok(mine.map(String::as_str).collect::<Vec<_>>().join("\n"))
    })
    .await?;
    // only the procedure's records are read in full
    Ok(lines
        .lines()
        .filter_map(|l| typed::record(l).ok())
        .map(|(_, r)| r)
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

impl Run for HistoryLastPass {
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

impl Run for HistoryOverdue {
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
