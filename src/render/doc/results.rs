//! The latest drill results: for each procedure, its last run and last pass with the
//! measured RTO and RPO, and the trend of its recent runs.

use serde_json::{json, Value};

use super::procedures::ProcedureDoc;
use super::text::{code, date, human_ms, md, wrap};
use crate::record::{DrillRecord, Verdict};
use crate::redact::mask_passwords;
use crate::render::escape;
use crate::runbook::Runbook;

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "passed",
        Verdict::Failed => "failed",
        Verdict::Error => "could not run",
        Verdict::Interrupted => "interrupted",
    }
}

pub(super) fn results(
    runbook: &Runbook,
    procedures: &[ProcedureDoc],
    records: &[DrillRecord],
) -> Value {
    let mut mine: Vec<&DrillRecord> = records
        .iter()
        // drills and recoveries; health-check runs have their own place (`drillbook check`)
        .filter(|r| {
            r.runbook.name == runbook.name
                && !r.dry_run
                && r.procedure.kind != crate::record::RunKind::Check
        })
        .collect();
    mine.sort_by_key(|r| r.started_at);
    // Procedures in runbook order, then any that the runbook no longer has.
    let mut ids: Vec<String> = procedures.iter().map(|p| p.id.clone()).collect();
    for r in &mine {
        if !ids.contains(&r.procedure.id) {
            ids.push(r.procedure.id.clone());
        }
    }
    let mut rows = Vec::new();
    let mut trends = Vec::new();
    for id in ids {
        let runs: Vec<&DrillRecord> = mine
            .iter()
            .copied()
            .filter(|r| r.procedure.id == id)
            .collect();
        let Some(last) = runs.last() else {
            continue;
        };
        let link = match procedures.iter().find(|p| p.id == id) {
            Some(p) => format!("[{}](#{})", code(&id), crate::render::anchor(&p.heading)),
            None => format!("{} (no longer in the runbook)", code(&id)),
        };
        let pass = runs.iter().rev().find(|r| r.verdict == Verdict::Passed);
        // the reason quotes step output and errors: text, escaped, whatever it holds
        let mut last_verdict = verdict(last.verdict).to_owned();
        if let Some(reason) = &last.reason {
            last_verdict.push_str(&format!(
                ": {}",
                escape::inline(&mask_passwords(&short_reason(reason)))
            ));
        }
        let rto = pass.and_then(|r| r.rto.as_ref());
        let rpo = pass.and_then(|r| r.rpo.as_ref());
        let objective = |o: Option<crate::duration::Duration>| {
            o.map_or(String::new(), |o| format!(" (objective {o})"))
        };
        rows.push(json!({
            "procedure": link,
            "runs": runs.len(),
            "last_run": date(last.finished_at),
            "verdict": last_verdict,
            "last_pass": pass.map_or("never".to_owned(), |r| date(r.finished_at)),
            "rto": match rto {
                Some(r) => match r.measured_ms {
                    Some(ms) => format!("{}{}", human_ms(ms), objective(r.objective)),
                    None => "not measured".into(),
                },
                None => "—".into(),
            },
            "rpo": match rpo {
                Some(r) => match r.data_loss_window_ms {
                    Some(ms) => format!("{}{}", human_ms(ms), objective(r.objective)),
                    None => "not measured".into(),
                },
                None => "—".into(),
            },
        }));
        if runs.len() >= 2 {
            let recent = &runs[runs.len().saturating_sub(5)..];
            let steps: Vec<String> = recent
                .iter()
                .map(|r| {
                    let rto = r
                        .rto
                        .as_ref()
                        .and_then(|x| x.measured_ms)
                        .map(|ms| format!(" in {}", human_ms(ms)))
                        .unwrap_or_default();
                    format!(
                        "{} {}{rto}",
                        r.started_at.format("%Y-%m-%d"),
                        verdict(r.verdict)
                    )
                })
                .collect();
            let passed = recent
                .iter()
                .filter(|r| r.verdict == Verdict::Passed)
                .count();
            trends.push(wrap(
                &md(&format!(
                    "{}: {passed} of the last {} runs passed (oldest first: {})",
                    code(&id),
                    recent.len(),
                    steps.join(" → ")
                )),
                96,
            ));
        }
    }
    let history = code(crate::history::DEFAULT_PATH);
    json!({
        "history": md(&history),
        "none": md(&format!("No drill has been recorded yet in {history}.")),
        "count": mine.len(),
        "rows": rows,
        "trends": trends,
    })
}

fn short_reason(reason: &str) -> String {
    let r = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    if r.chars().count() > 120 {
        format!("{}…", r.chars().take(120).collect::<String>())
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::render::doc::tests::{load, render};
    #[test]
    fn latest_results_come_from_the_records() {
        let runbook = load("runbooks/hello.yaml");
        let record = |id: &str, day: u32, verdict: Verdict, ms: u64| -> DrillRecord {
            let started: DateTime<Utc> = format!("2026-11-{day:02}T09:00:00Z")
                .parse()
                .expect("valid timestamp");
            serde_json::from_value(json!({
                "record_version": 1, "id": id,
                "runbook": { "name": "hello", "path": "runbooks/hello.yaml", "sha256": "x" },
                "procedure": { "id": "smoke", "title": "Smoke", "kind": "drill" },
                "params": {}, "operator": "t", "tool_version": "0",
                "started_at": started, "finished_at": started + chrono::Duration::milliseconds(ms as i64),
                "duration_ms": ms, "dry_run": false, "verdict": verdict,
                "steps": [], "cleanup": [],
                "rto": { "measured_ms": ms, "objective": "5m", "met": true, "from_step": "scratch", "to_step": "validate" },
                "approvals": []
            }))
            .expect("a record")
        };
        let records = [
            record("a", 1, Verdict::Passed, 1200),
            record("b", 2, Verdict::Failed, 900),
        ];
        let doc = render(&runbook, &records);
        assert!(!doc.contains("No drill has been recorded yet"));
        assert!(doc.contains("| 2 | 2026-11-02 09:00 UTC | failed | 2026-11-01 09:00 UTC | 1.2s (objective 5m) |"), "{doc}");
        assert!(doc.contains("1 of the last 2 runs passed"));
    }
}
