//! What the history says about the runbooks' backup health now: each check's latest recorded
//! result (current, stale or missing), each procedure's last run and pass against its
//! objectives and schedule (the overdue rule is `history::stats`'s), and whether the history
//! verifies. One pure computation ([`report`]) over the records and `now`, behind `drillbook
//! status`, the daemon's `/healthz` and its `/status`; [`Report`]'s JSON Schema is `drillbook
//! schema --status`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::checks::{judge, Status};
use crate::cron::Cron;
use crate::duration::Duration;
use crate::history::stats::{self, ProcedureStats};
use crate::history::{HistoryError, Store};
use crate::record::{DrillRecord, RunKind, StepRecord, Verdict};
use crate::runbook::Runbook;

/// How long past the checks' next scheduled run a result still counts, by default (`--grace`):
/// time for the run itself, and for a run that starts a little late.
pub const DEFAULT_GRACE: &str = "1h";

/// What decides when a check result is too old.
#[derive(Debug, Clone)]
pub struct Freshness {
    /// When the checks run (`--checks`): a result stays current until the next run after it.
    pub checks: Cron,
    /// How long past that next run it still counts (`--grace`).
    pub grace: Duration,
    /// A check with no result yet is not counted until this time (the daemon: its start's
    /// next check run plus the grace); None: it is UNKNOWN at once (`drillbook status`).
    pub pending_until: Option<DateTime<Utc>>,
}

impl Freshness {
    /// For a daemon started at `start`: a check with no result yet is pending until the
    /// first check run after the start, plus the grace.
    pub fn since_start(checks: Cron, grace: Duration, start: DateTime<Utc>) -> Freshness {
        let mut f = Freshness {
            checks,
            grace,
            pending_until: None,
        };
        f.pending_until = Some(f.expires(start));
        f
    }

    /// When a result taken at `at` stops counting: the checks' next run after it, plus the
    /// grace.
    fn expires(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        self.checks
            .next_after(at)
            .checked_add_signed(self.grace.chrono())
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// The backup health of every runbook, from the history.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Report {
    /// The most severe status below: CRITICAL (a check CRITICAL, a scheduled procedure
    /// overdue, the history failing verification) over UNKNOWN (a check result missing or
    /// stale, the history unreadable) over WARNING (a check WARNING, a procedure's last run
    /// failed or missed an objective) over OK.
    pub status: Status,
    /// `/healthz` answers 200: the status is OK or WARNING.
    pub healthy: bool,
    /// Why it is not OK, on one line (the most severe problem first); null when OK.
    pub reason: Option<String>,
    /// Every problem, the most severe first.
    pub problems: Vec<String>,
    /// The time the report is for (RFC 3339, UTC).
    pub generated_at: DateTime<Utc>,
    pub history: HistoryStatus,
    pub runbooks: Vec<RunbookStatus>,
}

/// The history the report is read from.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HistoryStatus {
    /// The file path, or the PostgreSQL URL with its password masked.
    pub store: String,
    pub entries: usize,
    /// The hash of the newest entry (anchor it elsewhere to detect a rewritten history).
    pub head: Option<String>,
    /// The hash chain verifies. When false, nothing below is read from it.
    pub verified: bool,
    /// Why it does not verify, or cannot be read.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunbookStatus {
    pub name: String,
    pub path: String,
    /// The most severe status of its checks and procedures.
    pub status: Status,
    pub checks: Vec<CheckStatus>,
    pub procedures: Vec<ProcedureStatus>,
}

/// A check's latest recorded result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CheckStatus {
    pub id: String,
    pub title: String,
    pub kind: String,
    /// null only in the daemon, for a check with no result yet within its grace period.
    pub status: Option<Status>,
    /// `current`, `stale` (older than the checks' next run plus the grace), `missing` (never
    /// recorded) or `pending` (not yet run, within the grace period).
    pub result: ResultState,
    /// One line: what the check found, or why its status is not known.
    pub message: String,
    pub measure: Option<MeasureValue>,
    /// When the result was taken.
    pub checked_at: Option<DateTime<Utc>>,
    /// Seconds from `checked_at` to `generated_at`.
    pub age_seconds: Option<i64>,
    /// The record of the check run.
    pub record: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultState {
    Current,
    Stale,
    Missing,
    Pending,
}

/// The value a check's thresholds compare (its kind's declared measure).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MeasureValue {
    pub name: String,
    pub value: f64,
    /// `seconds`, `bytes`, `count`, …
    pub unit: String,
}

/// A procedure's recorded runs against its objectives and schedule.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProcedureStatus {
    pub id: String,
    pub title: String,
    /// OK; WARNING when its last run did not pass or missed an objective; CRITICAL when
    /// overdue.
    pub status: Status,
    /// Its cron schedule (UTC), when it has one.
    pub schedule: Option<String>,
    /// When the latest run started, and its verdict.
    pub last_run: Option<DateTime<Utc>>,
    pub last_verdict: Option<String>,
    pub last_record: Option<String>,
    /// When the latest passed run finished.
    pub last_pass: Option<DateTime<Utc>>,
    /// The latest run's recovery time against the objective.
    pub rto: Objective,
    /// The latest run's data loss window against the objective.
    pub rpo: Objective,
    /// The schedule's next fire.
    pub next_due: Option<DateTime<Utc>>,
    /// When it becomes overdue without a new pass (`drillbook history stats`' rule).
    pub due_by: Option<DateTime<Utc>>,
    pub overdue: bool,
}

/// A measured time against its objective.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Objective {
    pub measured_ms: Option<u64>,
    /// As written in the runbook (`15m`).
    pub objective: Option<String>,
    pub met: Option<bool>,
}

/// Reads the history and reports on `runbooks` at `now`.
pub async fn read(
    runbooks: &[Runbook],
    store: &Store,
    freshness: &Freshness,
    now: DateTime<Utc>,
) -> Report {
    let mut history = HistoryStatus {
        store: store.display(),
        entries: 0,
        head: None,
        verified: false,
        problem: None,
    };
    // asked on every request of the daemon: verified as every routine reader does, past
    // the checkpoint only
    let records = match store.checked_lines().await {
        Err(e) => {
            history.problem = Some(format!("cannot read the history {}: {e}", store.display()));
            Err(Status::Unknown)
        }
        Ok((lines, v)) => {
            history.entries = v.entries;
            history.head = v.head;
            match v.broken {
                Some(at) => {
                    let broken = HistoryError::Broken {
                        store: store.display(),
                        at,
                    };
                    history.problem = Some(broken.to_string());
                    Err(Status::Critical)
                }
                None => {
                    history.verified = true;
                    Ok(lines
                        .lines
                        .iter()
                        .filter_map(|l| serde_json::from_str::<crate::history::Entry>(l).ok())
                        .filter_map(|e| e.drill().ok())
                        .collect::<Vec<_>>())
                }
            }
        }
    };
    report(runbooks, records, history, freshness, now)
}

/// The report from the records (or, when the history cannot be trusted, the status that
/// says so).
pub fn report(
    runbooks: &[Runbook],
    records: Result<Vec<DrillRecord>, Status>,
    history: HistoryStatus,
    freshness: &Freshness,
    now: DateTime<Utc>,
) -> Report {
    let mut problems: Vec<(Status, String)> = Vec::new();
    if let (Err(status), Some(p)) = (&records, &history.problem) {
        problems.push((*status, p.clone()));
    }
    let runbooks: Vec<RunbookStatus> = match &records {
        Ok(records) => runbooks
            .iter()
            .map(|rb| runbook_status(rb, records, freshness, now, &mut problems))
            .collect(),
        // nothing can be concluded from a history that cannot be read or trusted: the
        // runbooks are listed with what they declare, and the history's status
        Err(status) => runbooks
            .iter()
            .map(|rb| RunbookStatus {
                status: *status,
                ..runbook_status(rb, &[], freshness, now, &mut Vec::new())
            })
            .collect(),
    };
    problems.sort_by_key(|(s, _)| std::cmp::Reverse(s.severity()));
    let status = problems
        .first()
        .map_or(Status::Ok, |(s, _)| *s)
        .max_by_severity(history_floor(&history));
    let reason = match problems.as_slice() {
        [] => None,
        [(_, one)] => Some(one.clone()),
        [(_, first), rest @ ..] => Some(format!("{first} (and {} more)", rest.len())),
    };
    Report {
        status,
        healthy: matches!(status, Status::Ok | Status::Warning),
        reason,
        problems: problems.into_iter().map(|(_, p)| p).collect(),
        generated_at: now,
        history,
        runbooks,
    }
}

impl Report {
    /// One line, for `/healthz`: `ok` when OK, else the status and the reason (`CRITICAL:
    /// shop: check backup-age CRITICAL: …`). Line breaks in a message become spaces.
    pub fn summary(&self) -> String {
        match (&self.status, &self.reason) {
            (Status::Ok, _) | (_, None) => "ok".to_owned(),
            (status, Some(reason)) => {
                let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
                format!("{}: {reason}", status.label())
            }
        }
    }
}

/// An unverified history is never better than UNKNOWN, even with nothing else to report.
fn history_floor(history: &HistoryStatus) -> Status {
    if history.verified {
        Status::Ok
    } else {
        Status::Unknown
    }
}

fn runbook_status(
    rb: &Runbook,
    records: &[DrillRecord],
    freshness: &Freshness,
    now: DateTime<Utc>,
    problems: &mut Vec<(Status, String)>,
) -> RunbookStatus {
    let mine: Vec<&DrillRecord> = records
        .iter()
        .filter(|r| r.runbook.name == rb.name && !r.dry_run)
        .collect();
    let checks: Vec<CheckStatus> = rb
        .checks
        .iter()
        .map(|c| {
            let st = check_status(c, &mine, freshness, now);
            if let Some(status) = st.status.filter(|s| *s != Status::Ok) {
                problems.push((
                    status,
                    format!(
                        "{}: check {} {}: {}",
                        rb.name,
                        c.id,
                        status.label(),
                        st.message
                    ),
                ));
            }
            st
        })
        .collect();
    let owned: Vec<DrillRecord> = mine
        .iter()
        .filter(|r| r.procedure.kind != RunKind::Check)
        .map(|r| (*r).clone())
        .collect();
    let schedules: HashMap<(String, String), String> = rb
        .procedures
        .values()
        .filter_map(|p| {
            Some((
                (rb.name.clone(), p.id.clone()),
                p.schedule.as_ref()?.as_str().trim().to_owned(),
            ))
        })
        .collect();
    let all = stats::compute(&owned, &schedules, 1, now);
    let procedures: Vec<ProcedureStatus> = rb
        .procedures
        .values()
        .map(|p| {
            let st = all
                .iter()
                .find(|s| s.runbook == rb.name && s.procedure == p.id);
            let latest = owned
                .iter()
                .filter(|r| r.procedure.id == p.id)
                .max_by_key(|r| r.started_at);
            let ps = procedure_status(p, st, latest, now);
            match ps.status {
                Status::Critical => problems.push((
                    Status::Critical,
                    match ps.last_pass {
                        Some(at) => format!(
                            "{}: drill {} overdue: last passed {}, due by {}",
                            rb.name,
                            p.id,
                            crate::timestamp::rfc3339(at),
                            ps.due_by.map(crate::timestamp::rfc3339).unwrap_or_default()
                        ),
                        None => format!("{}: drill {} overdue: it never passed", rb.name, p.id),
                    },
                )),
                Status::Warning => problems.push((
                    Status::Warning,
                    format!(
                        "{}: procedure {}: its last run {}",
                        rb.name,
                        p.id,
                        last_run_problem(latest).unwrap_or_default()
                    ),
                )),
                _ => {}
            }
            ps
        })
        .collect();
    let status = checks
        .iter()
        .filter_map(|c| c.status)
        .chain(procedures.iter().map(|p| p.status))
        .fold(Status::Ok, Status::max_by_severity);
    RunbookStatus {
        name: rb.name.clone(),
        path: rb.path.clone(),
        status,
        checks,
        procedures,
    }
}

/// The newest recorded result of `check`: the step of that id in the newest check run that
/// ran it (`check --only` runs record some checks only).
fn check_status(
    check: &crate::runbook::Check,
    records: &[&DrillRecord],
    freshness: &Freshness,
    now: DateTime<Utc>,
) -> CheckStatus {
    let latest: Option<(&DrillRecord, &StepRecord)> = records
        .iter()
        .filter(|r| r.procedure.kind == RunKind::Check)
        .filter_map(|r| Some((*r, r.steps.iter().find(|s| s.id == check.id)?)))
        .max_by_key(|(r, _)| r.started_at);
    let mut st = CheckStatus {
        id: check.id.clone(),
        title: check.title.clone().unwrap_or_else(|| check.id.clone()),
        kind: check.kind.name().to_owned(),
        status: Some(Status::Unknown),
        result: ResultState::Missing,
        message: "no recorded result".into(),
        measure: None,
        checked_at: None,
        age_seconds: None,
        record: None,
    };
    let Some((record, step)) = latest else {
        if freshness.pending_until.is_some_and(|until| now <= until) {
            st.status = None;
            st.result = ResultState::Pending;
            st.message = "not run yet".into();
        } else if let Some(until) = freshness.pending_until {
            st.message = format!(
                "no recorded result, and the checks were due by {}",
                crate::timestamp::rfc3339(until)
            );
        }
        return st;
    };
    let (status, message, measure) = judge(check, step);
    let at = step.started_at.unwrap_or(record.started_at);
    st.measure = measure.map(|m| MeasureValue {
        name: m.name,
        value: m.value,
        unit: m.unit,
    });
    st.checked_at = Some(at);
    st.age_seconds = Some((now - at).num_seconds());
    st.record = Some(record.id.clone());
    let expires = freshness.expires(at);
    if now > expires {
        // a stale CRITICAL stays CRITICAL: the last thing known is a broken backup
        st.status = Some(status.max_by_severity(Status::Unknown));
        st.result = ResultState::Stale;
        st.message = format!(
            "last result {} ({}) is older than the checks' next run plus {}",
            crate::timestamp::rfc3339(at),
            status.label(),
            freshness.grace
        );
    } else {
        st.status = Some(status);
        st.result = ResultState::Current;
        st.message = message;
    }
    st
}

fn procedure_status(
    p: &crate::runbook::Procedure,
    stats: Option<&ProcedureStats>,
    latest: Option<&DrillRecord>,
    now: DateTime<Utc>,
) -> ProcedureStatus {
    let overdue = stats.is_some_and(|s| s.overdue);
    let status = if overdue {
        Status::Critical
    } else if last_run_problem(latest).is_some() {
        Status::Warning
    } else {
        Status::Ok
    };
    ProcedureStatus {
        id: p.id.clone(),
        title: p.title.clone(),
        status,
        schedule: p.schedule.as_ref().map(|c| c.as_str().trim().to_owned()),
        last_run: latest.map(|r| r.started_at),
        last_verdict: latest.map(|r| r.verdict.as_str().to_owned()),
        last_record: latest.map(|r| r.id.clone()),
        last_pass: stats.and_then(|s| s.last_pass),
        rto: latest
            .and_then(|r| r.rto.as_ref())
            .map(|r| Objective {
                measured_ms: r.measured_ms,
                objective: r.objective.map(|o| o.to_string()),
                met: r.met,
            })
            .unwrap_or_default(),
        rpo: latest
            .and_then(|r| r.rpo.as_ref())
            .map(|r| Objective {
                measured_ms: r.data_loss_window_ms,
                objective: r.objective.map(|o| o.to_string()),
                met: r.met,
            })
            .unwrap_or_default(),
        next_due: p.schedule.as_ref().map(|c| c.next_after(now)),
        due_by: stats.and_then(|s| s.due_by),
        overdue,
    }
}

/// What is wrong with the latest run, when something is: it did not pass, or missed its RTO
/// or RPO.
fn last_run_problem(latest: Option<&DrillRecord>) -> Option<String> {
    let r = latest?;
    if r.verdict != Verdict::Passed {
        return Some(format!("{} ({})", r.verdict.as_str(), r.id));
    }
    if r.rto.as_ref().and_then(|x| x.met) == Some(false) {
        return Some(format!("missed its RTO ({})", r.id));
    }
    if r.rpo.as_ref().and_then(|x| x.met) == Some(false) {
        return Some(format!("missed its RPO ({})", r.id));
    }
    None
}

/// The JSON Schema (draft-07) of [`Report`], for `drillbook schema --status`.
pub fn schema() -> serde_json::Value {
    let g = schemars::generate::SchemaSettings::draft07().into_generator();
    g.into_root_schema_for::<Report>().to_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    const RUNBOOK: &str = "version: 1\nname: shop\nchecks:\n  - id: age\n    shell: 'true'\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    schedule: '0 9 1 * *'\n    steps:\n      - shell: 'true'\n";

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    /// A run of `procedure` (kind `drill`, or `check` with one step `age` that `passed` or
    /// failed as `failed`), built from JSON as records are read.
    fn record(
        procedure: &str,
        at: DateTime<Utc>,
        verdict: &str,
        step: Option<&str>,
    ) -> DrillRecord {
        let kind = if procedure == "checks" {
            "check"
        } else {
            "drill"
        };
        let steps = match step {
            Some(status) => serde_json::json!([{
                "id": "age", "title": "age", "kind": "shell", "destructive": false,
                "status": status, "attempts": 1, "started_at": at, "outputs": {},
                "error_class": (status == "failed").then_some("failed"),
                "error": (status == "failed").then_some("CRITICAL: exit 1"),
            }]),
            None => serde_json::json!([]),
        };
        serde_json::from_value(serde_json::json!({
            "record_version": 1,
            "id": format!("{procedure}-{}", at.timestamp()),
            "runbook": {"name": "shop", "path": "shop.yaml", "sha256": ""},
            "procedure": {"id": procedure, "title": procedure, "kind": kind},
            "params": {}, "operator": "ci", "tool_version": "0.1.0",
            "started_at": at, "finished_at": at + TimeDelta::minutes(1), "duration_ms": 60_000,
            "dry_run": false, "verdict": verdict, "steps": steps, "cleanup": [], "approvals": [],
        }))
        .expect("a valid record")
    }

    fn report_at(records: Vec<DrillRecord>, now: DateTime<Utc>) -> Report {
        let rb = crate::runbook::load_str("shop.yaml", RUNBOOK).expect("runbook");
        let history = HistoryStatus {
            store: "h".into(),
            entries: records.len(),
            head: None,
            verified: true,
            problem: None,
        };
        let freshness = Freshness {
            checks: Cron::parse("0 0 * * *").expect("cron"),
            grace: "1h".parse().expect("grace"),
            pending_until: None,
        };
        report(&[rb], Ok(records), history, &freshness, now)
    }

    #[test]
    fn a_result_counts_until_the_next_check_run_plus_the_grace() {
        let ran = t("2026-12-01T00:00:10Z");
        let records = || {
            vec![
                record("drill", t("2026-12-01T09:00:00Z"), "passed", None),
                record("checks", ran, "passed", Some("passed")),
            ]
        };
        let at = |now| report_at(records(), t(now));
        assert_eq!(at("2026-12-02T00:59:00Z").status, Status::Ok);
        let stale = at("2026-12-02T01:01:00Z");
        assert_eq!(stale.status, Status::Unknown);
        assert!(!stale.healthy);
        let check = &stale.runbooks[0].checks[0];
        assert_eq!(check.result, ResultState::Stale);
        assert_eq!(check.age_seconds, Some(90_050));
    }

    #[test]
    fn a_stale_critical_stays_critical_and_comes_first() {
        let records = vec![
            record("drill", t("2026-12-01T09:00:00Z"), "passed", None),
            record(
                "checks",
                t("2026-12-01T00:00:10Z"),
                "failed",
                Some("failed"),
            ),
        ];
        let r = report_at(records, t("2026-12-03T00:00:00Z"));
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.runbooks[0].checks[0].status, Some(Status::Critical));
        assert_eq!(r.runbooks[0].checks[0].result, ResultState::Stale);
        assert!(
            r.summary()
                .starts_with("CRITICAL: shop: check age CRITICAL: "),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn a_failed_last_drill_warns_until_the_drill_is_overdue() {
        let records = || {
            vec![
                record("drill", t("2026-11-01T09:00:00Z"), "passed", None),
                record("drill", t("2026-12-01T09:00:00Z"), "failed", None),
                record(
                    "checks",
                    t("2026-12-02T00:00:10Z"),
                    "passed",
                    Some("passed"),
                ),
            ]
        };
        let r = report_at(records(), t("2026-12-02T01:00:00Z"));
        assert_eq!((r.status, r.healthy), (Status::Warning, true));
        assert_eq!(
            r.summary(),
            "WARNING: shop: procedure drill: its last run failed (drill-1796115600)"
        );
        // due by the December firing plus a seventh of the month to January: 2026-12-05 19:17
        let r = report_at(records(), t("2026-12-06T00:30:00Z"));
        assert_eq!((r.status, r.healthy), (Status::Critical, false));
        assert!(r.runbooks[0].procedures[0].overdue);
    }
}
