//! A run as JUnit XML, for CI systems and test dashboards: one `testsuite` per run, one
//! `testcase` per step (cleanup included) and per objective (RTO, RPO). It keeps to the
//! strictest common schema (Ant/windyroad `JUnit.xsd`): required `properties`,
//! `system-out` and `system-err`, `package` and `id` on the suite, a timestamp without a
//! zone (UTC), no attributes on `testsuites`, and no `skipped` element — a skipped or not-run step is a plain test case whose
//! reason is listed in `system-out`.

use std::fmt::Write as _;

use crate::record::ErrorClass;
use crate::record::{DrillRecord, StepRecord, StepStatus};

fn esc(text: &str) -> String {
    text.chars()
        .filter(|c| matches!(c, '\t' | '\n' | '\r') || !c.is_control())
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn secs(ms: Option<u64>) -> String {
    format!("{:.3}", ms.unwrap_or(0) as f64 / 1000.0)
}

struct Case {
    name: String,
    classname: String,
    time: String,
    /// (element, type, message, body)
    outcome: Option<(&'static str, String, String, String)>,
}

fn step_case(suite: &str, part: &str, s: &StepRecord, notes: &mut Vec<String>) -> Case {
    let outcome = match s.status {
        StepStatus::Passed => None,
        StepStatus::Skipped | StepStatus::NotRun => {
            notes.push(format!(
                "{part} step {} {}: {}",
                s.id,
                s.status.symbol(),
                s.note.as_deref().unwrap_or("")
            ));
            None
        }
        status => {
            let message = s
                .error
                .clone()
                .unwrap_or_else(|| status.symbol().to_owned());
            // could not run (unreachable, auth) is an error; a check that did not hold, a failure
            let element = if s.error_class == Some(ErrorClass::Failed) {
                "failure"
            } else {
                "error"
            };
            let kind = match s.error_class {
                Some(ErrorClass::Failed) => "failed",
                Some(ErrorClass::Unavailable) => "unavailable",
                Some(ErrorClass::Timeout) => "timeout",
                Some(ErrorClass::Cancelled) => "cancelled",
                None => "failed",
            };
            Some((element, kind.to_owned(), message.clone(), message))
        }
    };
    // the name stays the same from run to run, so CI keeps one history per test: the step's
    // id and title as the runbook writes them; an undo's title names paths of this run, and a
    // skip is told in the suite's output
    let name = if s.kind == crate::record::UNDO_KIND {
        format!("{} — undo what the step created", s.id)
    } else {
        format!("{} — {}", s.id, s.title)
    };
    Case {
        name,
        classname: format!("{suite}.{part}"),
        time: secs(s.duration_ms),
        outcome,
    }
}

/// The JUnit XML of a run.
pub fn xml(record: &DrillRecord) -> String {
    let suite = format!("{}.{}", record.runbook.name, record.procedure.id);
    let mut notes = Vec::new();
    let mut cases: Vec<Case> = Vec::new();
    for s in &record.steps {
        cases.push(step_case(&suite, "steps", s, &mut notes));
    }
    for s in &record.cleanup {
        cases.push(step_case(&suite, "cleanup", s, &mut notes));
    }
    if let Some(rto) = &record.rto {
        if let Some(obj) = rto.objective {
            let measured = rto.measured_ms.map_or_else(
                || "not measured".into(),
                |ms| crate::duration::human(std::time::Duration::from_millis(ms)),
            );
            cases.push(Case {
                name: format!("objective — RTO under {obj}"),
                classname: format!("{suite}.objectives"),
                time: secs(rto.measured_ms),
                outcome: (rto.met != Some(true)).then(|| {
                    let m = format!(
                        "RTO {measured}, objective {obj} (from {} to {})",
                        rto.from_step, rto.to_step
                    );
                    ("failure", "objective".to_owned(), m.clone(), m)
                }),
            });
        }
    }
    // the RPO is a test when the run observed a recovery point (a run without a `freshness`
    // step, or stopped before it, holds only the objective)
    if let Some(rpo) = record.rpo.as_ref().filter(|r| r.recovery_point.is_some()) {
        if let Some(obj) = rpo.objective {
            let lag = rpo.data_loss_window_ms.map_or_else(
                || "not measured".into(),
                |ms| crate::duration::human(std::time::Duration::from_millis(ms)),
            );
            cases.push(Case {
                name: format!("objective — RPO under {obj}"),
                classname: format!("{suite}.objectives"),
                time: "0.000".into(),
                outcome: (rpo.met != Some(true)).then(|| {
                    let m = format!("data loss window {lag}, objective {obj}");
                    ("failure", "objective".to_owned(), m.clone(), m)
                }),
            });
        }
    }
    let failures = cases
        .iter()
        .filter(|c| c.outcome.as_ref().is_some_and(|o| o.0 == "failure"))
        .count();
    let errors = cases
        .iter()
        .filter(|c| c.outcome.as_ref().is_some_and(|o| o.0 == "error"))
        .count();
    let time = secs(Some(record.duration_ms));
    let host = record
        .operator
        .rsplit('@')
        .next()
        .filter(|h| !h.is_empty())
        .unwrap_or("localhost");
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // no attributes on the root: the strictest schema allows none (the totals are on the suite)
    x.push_str("<testsuites>\n");
    let _ = writeln!(
        x,
        "  <testsuite package=\"{}\" id=\"0\" name=\"{}\" timestamp=\"{}\" hostname=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time}\">",
        esc(&record.runbook.name),
        esc(&suite),
        record.started_at.format("%Y-%m-%dT%H:%M:%S"),
        esc(host),
        cases.len()
    );
    x.push_str("    <properties>\n");
    let mut props = vec![
        ("run_id", record.id.clone()),
        ("verdict", record.verdict.as_str().to_owned()),
        (
            "procedure_kind",
            format!("{:?}", record.procedure.kind).to_lowercase(),
        ),
        ("operator", record.operator.clone()),
        ("runbook_path", record.runbook.path.clone()),
        ("runbook_sha256", record.runbook.sha256.clone()),
        ("tool_version", record.tool_version.clone()),
    ];
    if let Some(g) = &record.runbook.git {
        props.push(("runbook_git_commit", g.commit.clone()));
    }
    for (k, v) in props {
        let _ = writeln!(x, "      <property name=\"{k}\" value=\"{}\"/>", esc(&v));
    }
    x.push_str("    </properties>\n");
    for c in &cases {
        let _ = write!(
            x,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
            esc(&c.name),
            esc(&c.classname),
            c.time
        );
        match &c.outcome {
            None => x.push_str("/>\n"),
            Some((element, kind, message, body)) => {
                let _ = writeln!(
                    x,
                    ">\n      <{element} type=\"{}\" message=\"{}\">{}</{element}>\n    </testcase>",
                    esc(kind),
                    esc(message),
                    esc(body)
                );
            }
        }
    }
    let mut out = format!(
        "run {} — {}: {}",
        record.id,
        record.verdict.as_str(),
        record.reason.as_deref().unwrap_or("all steps passed")
    );
    for n in &notes {
        out.push('\n');
        out.push_str(n);
    }
    let _ = writeln!(x, "    <system-out>{}</system-out>", esc(&out));
    x.push_str("    <system-err></system-err>\n  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ProcedureRef, RunKind, RunbookRef};

    fn record(scratch: &str, skipped: bool) -> DrillRecord {
        let mut r = DrillRecord::start(
            "20261204T000000Z-00000000".into(),
            RunbookRef {
                name: "shop".into(),
                path: "shop.yaml".into(),
                sha256: String::new(),
                git: None,
            },
            ProcedureRef {
                id: "drill".into(),
                title: "Drill".into(),
                kind: RunKind::Drill,
            },
            "ops".into(),
            chrono::Utc::now(),
        );
        let mut step = StepRecord::new(
            "restore".into(),
            "Restore".into(),
            "local.restore".into(),
            false,
        );
        step.status = if skipped {
            StepStatus::Skipped
        } else {
            StepStatus::Passed
        };
        r.steps.push(step);
        let mut undo = StepRecord::new(
            "restore:undo".into(),
            format!("stop and remove the restored instance in {scratch}"),
            crate::record::UNDO_KIND.into(),
            false,
        );
        undo.status = StepStatus::Passed;
        r.cleanup.push(undo);
        r
    }

    fn names(xml: &str) -> Vec<&str> {
        xml.split("<testcase name=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect()
    }

    /// CI keeps a history per test name: a run's scratch paths and what it skipped must not
    /// change the names.
    #[test]
    fn test_names_are_the_same_in_every_run() {
        let one = xml(&record("/tmp/drillbook-1-restore", false));
        let two = xml(&record("/tmp/drillbook-2-restore", true));
        assert_eq!(names(&one), names(&two));
        assert_eq!(
            names(&one),
            [
                "restore — Restore",
                "restore:undo — undo what the step created"
            ]
        );
    }
}
