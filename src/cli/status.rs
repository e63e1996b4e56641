//! `drillbook status RUNBOOK...`: the backup health the daemon's `/status` reports, read from
//! the history without a daemon (`engine::status`), as text or JSON, with monitoring exit
//! codes.

use std::fmt::Write as _;

use chrono::Utc;

use super::{exit, load, out, out_json, Format};
use crate::cron::Cron;
use crate::engine::status::{self, Freshness, Report, ResultState};
use crate::timestamp::rfc3339;

/// Print the backup health of one or more runbooks from the history: each check's latest
/// result and its age, each procedure's last run and pass against its objectives and
/// schedule, and whether the history verifies. What the daemon's `/status` serves.
///
/// A check result counts until the checks' next run after it (`--checks`) plus `--grace`;
/// older, or never recorded, it is UNKNOWN.
///
/// Exit codes: 0 OK · 1 WARNING · 2 CRITICAL (a check CRITICAL, a scheduled drill overdue,
/// the history failing verification) · 3 UNKNOWN (a check result missing or stale, the
/// history unreadable, an invalid runbook or `--checks`).
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  drillbook status runbooks/neon-production.yaml --format json")]
pub struct Args {
    /// The runbooks (YAML).
    #[arg(required = true)]
    runbooks: Vec<String>,
    /// When the health checks run (cron, UTC), as given to `schedule` or `daemon`.
    #[arg(long, default_value = "0 0 * * *", value_name = "CRON")]
    checks: String,
    /// How long past the checks' next run a result still counts.
    #[arg(long, default_value = status::DEFAULT_GRACE, value_name = "DURATION")]
    grace: crate::duration::Duration,
    /// The history (default: `DRILLBOOK_HISTORY`, else `drills/history.jsonl`).
    #[arg(long, value_name = "PATH|URL")]
    history: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub async fn run(args: &Args) -> anyhow::Result<u8> {
    let checks = match Cron::parse(&args.checks) {
        Ok(c) => c,
        Err(e) => {
            say!("drillbook: error: --checks `{}`: {e}", args.checks);
            return Ok(exit::UNAVAILABLE);
        }
    };
    let mut runbooks = Vec::new();
    for path in &args.runbooks {
        let Some(rb) = load(path) else {
            return Ok(exit::UNAVAILABLE);
        };
        runbooks.push(rb);
    }
    let store = crate::history::Store::from_arg(args.history.as_deref());
    let freshness = Freshness {
        checks,
        grace: args.grace,
        pending_until: None,
    };
    let report = status::read(&runbooks, &store, &freshness, Utc::now()).await;
    match args.format {
        Format::Json => out_json(&report)?,
        Format::Text => out(&text(&report)),
    }
    Ok(report.status.code())
}

/// `3m ago`, `2d ago`.
fn ago(seconds: i64) -> String {
    let d = crate::duration::Duration::from_secs(u64::try_from(seconds.max(0)).unwrap_or(0));
    // whole seconds read better than `1h0m12s` for an age: drop what is below the largest
    // two units by rounding to minutes from an hour up
    let d = if seconds >= 3600 {
        crate::duration::Duration::from_secs(d.std().as_secs() / 60 * 60)
    } else {
        d
    };
    format!("{d} ago")
}

/// The report as people read it: the verdict and reason first, then each runbook.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}{}",
        r.status.label(),
        r.reason
            .as_deref()
            .map(|x| format!(": {x}"))
            .unwrap_or_default()
    );
    let h = &r.history;
    let state = match (&h.problem, h.verified) {
        (Some(p), _) => format!("NOT VERIFIED: {p}"),
        (None, true) => "verifies".to_owned(),
        (None, false) => "not verified".to_owned(),
    };
    let head = h
        .head
        .as_deref()
        .map(|x| format!(", head {}", &x[..x.len().min(12)]))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "history {}: {} entries{head}; {state}",
        h.store, h.entries
    );
    for rb in &r.runbooks {
        let _ = writeln!(s, "\n{} ({}): {}", rb.name, rb.path, rb.status.label());
        for c in &rb.checks {
            let label = c.status.map_or("PENDING", |x| x.label());
            let when = match (c.checked_at, c.age_seconds) {
                (Some(at), Some(age)) => format!(" · {} ({})", rfc3339(at), ago(age)),
                _ => String::new(),
            };
            let stale = if c.result == ResultState::Stale {
                " · stale"
            } else {
                ""
            };
            let _ = writeln!(s, "  check {} {label}: {}{when}{stale}", c.id, c.message);
        }
        for p in &rb.procedures {
            let _ = writeln!(s, "  procedure {} {}", p.id, p.status.label());
            let last = match (p.last_run, &p.last_verdict) {
                (Some(at), Some(v)) => format!("{} {v}", rfc3339(at)),
                _ => "never".to_owned(),
            };
            let pass = p.last_pass.map_or("never".to_owned(), rfc3339);
            let _ = writeln!(s, "    last run {last} · last pass {pass}");
            let objective = |o: &status::Objective| {
                let m = super::history::measured(o.measured_ms, o.met);
                match &o.objective {
                    Some(obj) => format!("{m} (objective {obj})"),
                    None => m,
                }
            };
            let _ = writeln!(
                s,
                "    RTO {} · RPO {}",
                objective(&p.rto),
                objective(&p.rpo)
            );
            if let Some(cron) = &p.schedule {
                let next = p.next_due.map(rfc3339).unwrap_or_default();
                let due = p
                    .due_by
                    .map(|d| format!(" · due by {}", rfc3339(d)))
                    .unwrap_or_default();
                let overdue = if p.overdue { " · OVERDUE" } else { "" };
                let _ = writeln!(s, "    schedule `{cron}` · next {next}{due}{overdue}");
            }
        }
    }
    s
}
