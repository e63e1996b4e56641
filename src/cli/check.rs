//! `drillbook check`: the runbook's health checks, at once, with monitoring exit codes and
//! text, JSON or Prometheus output.

use std::fmt::Write as _;

use super::{load, out, out_json};
use crate::cancel::Cancel;
use crate::engine::checks::{self, CheckResult, Status};
use crate::engine::{operator, RunOptions};
use crate::history::Store;

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
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_timeout)]
    timeout: crate::duration::Duration,
}

/// `--timeout`, within the bounds of a check's own `timeout:`.
fn parse_timeout(text: &str) -> Result<crate::duration::Duration, String> {
    let d = text
        .parse()
        .map_err(|e: crate::duration::DurationError| e.to_string())?;
    crate::kind::limits::timeout(d)?;
    Ok(d)
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
        say!("drillbook: error: no check `{bad}` in {}", rb.path);
        return Ok(Status::Unknown.code());
    }
    let opts = RunOptions {
        operator: operator()?,
        history: args.history.clone(),
        ..RunOptions::default()
    };
    if let Some(w) = crate::engine::gc::leftovers_warning() {
        say!("drillbook: warning: {w}");
    }
    let started = chrono::Utc::now();
    let results = checks::run(&rb, &args.only, &opts, args.timeout, &Cancel::new()).await;
    let status = checks::overall(&results);
    let store = Store::from_arg(args.history.as_deref());
    // a runbook without checks has nothing to record or alert about
    if !args.no_record && !rb.checks.is_empty() {
        // the alerts go first, so the record keeps how they went
        let notice = checks::notice(&rb, &results, &opts.operator);
        let dir = crate::render::log::dir(None, &store);
        let mut rec = checks::record(&rb, &results, started, &opts.operator);
        rec.notifications = crate::notify::notify(&rb, &notice, &dir, &Cancel::new()).await;
        if let Err(e) = store.append(&rec).await {
            say!(
                "drillbook: warning: the check results could not be appended to the history {}: {e}",
                store.display()
            );
        }
    }
    match args.format {
        CheckFormat::Text => out(&text(&rb.name, &results, status)),
        CheckFormat::Json => out_json(&serde_json::json!({
            "runbook": rb.name,
            "status": status,
            "checks": results,
        }))?,
        CheckFormat::Prometheus => {
            let (stored, intact) = match store.trusted_lines().await {
                Ok(l) => (l.lines, Some(true)),
                Err(e) => {
                    say!("drillbook: warning: {e}");
                    let broken = matches!(e, crate::history::HistoryError::Broken { .. });
                    (Vec::new(), if broken { Some(false) } else { None })
                }
            };
            let records = crate::history::typed::of_runbook(&stored, &rb.name);
            out(&checks::prometheus(&rb.name, &results, &records, intact));
        }
    }
    Ok(status.code())
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
        // the sub-results that are not OK, under their check
        for p in r.parts.iter().filter(|p| p.status != Status::Ok) {
            let _ = writeln!(
                s,
                "{:<8}  {:<w$}  {:<k$}  {:>7}  {}{}",
                p.status.label(),
                format!("└ {}", p.name),
                "",
                "",
                p.name,
                if p.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", p.detail)
                }
            );
        }
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
