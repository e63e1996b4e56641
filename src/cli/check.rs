//! `drillbook check`: the runbook's health checks, at once, with monitoring exit codes and
//! text, JSON or Prometheus output.

use std::fmt::Write as _;

use super::{load, out};
use crate::cancel::Cancel;
use crate::engine::checks::{self, CheckResult, Status};
use crate::engine::{operator, RunOptions};
use crate::history::Store;
use crate::kind::Metric;

/// Run the runbook's health checks (`checks:`) concurrently, each under a timeout.
///
/// Exit codes (monitoring plugins): 0 OK · 1 WARNING · 2 CRITICAL · 3 UNKNOWN (a check could
/// not run, or the runbook is invalid).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook check runbooks/neon-production.yaml\n  drillbook check runbooks/neon-production.yaml --format prometheus > drillbook.prom.tmp; mv drillbook.prom.tmp /var/lib/node_exporter/textfile/drillbook.prom"
)]
pub struct Args {
    /// The runbook (YAML).
    runbook: String,
    /// Only these checks (by id; repeatable).
    #[arg(long = "only", value_name = "ID")]
    only: Vec<String>,
    /// `text` (a table), `json`, or `prometheus` (text exposition format for node_exporter's
    /// textfile collector).
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    format: CheckFormat,
    /// The history `history.*` checks and the drill metrics read (default:
    /// `DRILLBOOK_HISTORY`, else `drills/history.jsonl`).
    #[arg(long, value_name = "PATH|URL")]
    history: Option<String>,
    /// Neither append this run's results to the history nor send alerts (for a frequent
    /// metrics scrape; the daily check records and alerts).
    #[arg(long)]
    no_record: bool,
    /// Timeout of a check without its own `timeout:`.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    timeout: crate::duration::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
    Prometheus,
}

pub async fn run(args: &Args) -> anyhow::Result<u8> {
    let Some(rb) = load(&args.runbook) else {
        return Ok(Status::Unknown.code());
    };
    if let Some(bad) = args
        .only
        .iter()
        .find(|id| !rb.checks.iter().any(|c| &c.id == *id))
    {
        eprintln!("drillbook: error: no check `{bad}` in {}", rb.path);
        return Ok(Status::Unknown.code());
    }
    let opts = RunOptions {
        operator: operator(),
        history: args.history.clone(),
        ..RunOptions::default()
    };
    let started = chrono::Utc::now();
    let results = checks::run(&rb, &args.only, &opts, args.timeout, &Cancel::new()).await;
    let status = checks::overall(&results);
    let store = Store::from_arg(args.history.as_deref());
    if !args.no_record {
        let sent = notify(&rb, &results, status, &store).await;
        let mut rec = record(&rb, &results, status, started, &opts.operator);
        rec.notifications = sent;
        if let Err(e) = store.append(&rec).await {
            eprintln!(
                "drillbook: warning: the check results could not be appended to the history {}: {e}",
                store.display()
            );
        }
    }
    match args.format {
        CheckFormat::Text => out(&text(&rb.name, &results, status)),
        CheckFormat::Json => out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({
                "runbook": rb.name,
                "status": status,
                "checks": results,
            }))?
        )),
        CheckFormat::Prometheus => {
            let records: Vec<_> = store
                .entries()
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(|e| e.drill().ok())
                .filter(|r| r.runbook.name == rb.name && !r.dry_run)
                .collect();
            out(&prometheus(&rb.name, &results, &records));
        }
    }
    Ok(status.code())
}

/// The check run as a history record: one step per check; OK and WARNING pass, CRITICAL
/// fails, UNKNOWN is "could not run".
fn record(
    rb: &crate::runbook::Runbook,
    results: &[CheckResult],
    status: Status,
    started: chrono::DateTime<chrono::Utc>,
    operator: &str,
) -> crate::record::DrillRecord {
    use crate::record::ErrorClass;
    use crate::record::{DrillRecord, ProcedureRef, RunbookRef, StepRecord, StepStatus, Verdict};
    let finished = chrono::Utc::now();
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
            kind: crate::runbook::ProcedureKind::Check,
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

/// Alerts and heartbeats for the whole check run: one message per destination, naming every
/// check that is not OK.
async fn notify(
    rb: &crate::runbook::Runbook,
    results: &[CheckResult],
    status: Status,
    store: &Store,
) -> Vec<crate::record::Notification> {
    let bad: Vec<&CheckResult> = results.iter().filter(|r| r.status != Status::Ok).collect();
    let name = status.label();
    let notice = crate::notify::Notice {
        runbook: rb.name.clone(),
        subject: "checks".into(),
        kind: "check".into(),
        ok: status == Status::Ok,
        warning: status == Status::Warning,
        summary: if bad.is_empty() {
            format!("OK: all {} checks passed", results.len())
        } else {
            format!(
                "{name}: {} of {} checks are not OK",
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
        operator: operator(),
    };
    let dir = crate::render::log::dir(None, store);
    crate::notify::notify(rb, &notice, &dir).await
}

fn text(runbook: &str, results: &[CheckResult], status: Status) -> String {
    let mut s = String::new();
    if results.is_empty() {
        let _ = writeln!(s, "{runbook}: no checks (`checks:` is empty)");
        return s;
    }
    let w = results.iter().map(|r| r.id.len()).max().unwrap_or(5).max(5);
    let k = results
        .iter()
        .map(|r| r.kind.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        s,
        "{:<8}  {:<w$}  {:<k$}  {:>7}  RESULT",
        "STATUS", "CHECK", "KIND", "TIME"
    );
    for r in results {
        let time = crate::duration::human(std::time::Duration::from_millis(r.duration_ms));
        let _ = writeln!(
            s,
            "{:<8}  {:<w$}  {:<k$}  {time:>7}  {}",
            r.status.label(),
            r.id,
            r.kind,
            r.message.lines().next().unwrap_or("")
        );
    }
    let count = |st: Status| results.iter().filter(|r| r.status == st).count();
    let _ = writeln!(
        s,
        "\n{runbook}: {} ({} ok, {} warning, {} critical, {} unknown)",
        status.label(),
        count(Status::Ok),
        count(Status::Warning),
        count(Status::Critical),
        count(Status::Unknown)
    );
    s
}

/// A label value in the exposition format: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn metric(s: &mut String, name: &str, help: &str, rows: &[(String, f64)]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} gauge");
    for (labels, v) in rows {
        let _ = writeln!(s, "{name}{{{labels}}} {v}");
    }
}

/// The text exposition format (node_exporter's textfile collector reads it).
pub fn prometheus(
    runbook: &str,
    results: &[CheckResult],
    records: &[crate::record::DrillRecord],
) -> String {
    let rb = label(runbook);
    let per_check = |r: &CheckResult| {
        format!(
            "runbook=\"{rb}\",check=\"{}\",kind=\"{}\"",
            label(&r.id),
            label(&r.kind)
        )
    };
    let mut s = String::new();
    let status: Vec<(String, f64)> = results
        .iter()
        .map(|r| (per_check(r), f64::from(r.status.code())))
        .collect();
    metric(
        &mut s,
        "drillbook_check_status",
        "Check status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        &status,
    );
    let took: Vec<(String, f64)> = results
        .iter()
        .map(|r| (per_check(r), r.duration_ms as f64 / 1000.0))
        .collect();
    metric(
        &mut s,
        "drillbook_check_duration_seconds",
        "How long the check took.",
        &took,
    );
    let by_metric = |metric: Metric| -> Vec<(String, f64)> {
        results
            .iter()
            .filter_map(|r| {
                let m = r.measure.as_ref()?;
                (m.metric == Some(metric)).then(|| (per_check(r), m.value))
            })
            .collect()
    };
    metric(
        &mut s,
        "drillbook_backup_age_seconds",
        "Age of the newest backup: snapshot, base backup or archived WAL segment.",
        &by_metric(Metric::BackupAge),
    );
    metric(
        &mut s,
        "drillbook_restore_window_seconds",
        "The point-in-time restore window (history retention).",
        &by_metric(Metric::RestoreWindow),
    );
    // from the history: the last passing run of each procedure
    let mut last: std::collections::BTreeMap<&str, &crate::record::DrillRecord> =
        std::collections::BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.verdict == crate::record::Verdict::Passed)
    {
        let e = last.entry(r.procedure.id.as_str()).or_insert(r);
        if r.finished_at > e.finished_at {
            *e = r;
        }
    }
    let per_proc = |p: &str| format!("runbook=\"{rb}\",procedure=\"{}\"", label(p));
    let rto: Vec<(String, f64)> = last
        .iter()
        .filter_map(|(p, r)| {
            let ms = r.rto.as_ref()?.measured_ms?;
            Some((per_proc(p), ms as f64 / 1000.0))
        })
        .collect();
    metric(
        &mut s,
        "drillbook_last_drill_rto_seconds",
        "Measured RTO of the last passing run of the procedure.",
        &rto,
    );
    let when: Vec<(String, f64)> = last
        .iter()
        .map(|(p, r)| (per_proc(p), r.finished_at.timestamp() as f64))
        .collect();
    metric(
        &mut s,
        "drillbook_last_pass_timestamp_seconds",
        "When the procedure last passed (Unix time).",
        &when,
    );
    s
}
