//! `drillbook history`: reads the drill history — lists runs, shows one record, verifies the
//! hash chain, summarizes each procedure (RTO percentiles and trend, overdue drills) and
//! repairs a torn last line. Store errors are could-not-run (exit 3).

mod show;
mod stats;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use super::{exit, out, out_json, Format};
use crate::duration::human;
use crate::history::typed::{self, Brief};
use crate::history::{Entry, Store};
use crate::record::{DrillRecord, Verdict};
use crate::timestamp::{rfc3339, TimeSpec};

/// Read the drill history: list runs, show one, verify the chain, stats per procedure.
///
/// The history is a JSON Lines file or a PostgreSQL table where `run` appends every record;
/// each entry carries the hash of the one before, so an edit, deletion or reordering is found
/// by `history verify`.
///
/// Exit codes: 0 · 1 `verify` found a break, `stats` an overdue procedure · 2 usage, `show`
/// of an unknown or ambiguous id, `stats --runbook` with an invalid runbook · 3 the history
/// cannot be read (unreachable database, permissions).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook history list --since now-30d\n  drillbook history show 20261129T23\n  drillbook history verify --history postgres://drillbook@db/ops\n  drillbook history stats --runbook runbooks/hello.yaml"
)]
pub struct Args {
    /// The history: a JSON Lines file or a `postgres://` URL (default: `DRILLBOOK_HISTORY`,
    /// else `drills/history.jsonl`).
    #[arg(long, global = true, value_name = "PATH|URL")]
    history: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    List(ListArgs),
    Show(ShowArgs),
    Verify(VerifyArgs),
    Stats(StatsArgs),
    Repair(RepairArgs),
}

/// List recorded runs, newest first: date, procedure, verdict, RTO, RPO, operator, id.
///
/// Exit codes: 0 · 2 usage · 3 the history cannot be read.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook history list --procedure drill --since now-30d\n  drillbook history list --verdict failed --limit 5 --format json"
)]
pub struct ListArgs {
    /// Only this procedure (`ID`, or `RUNBOOK/ID`).
    #[arg(long, value_name = "ID")]
    procedure: Option<String>,
    /// Only runs with this verdict.
    #[arg(long, value_enum)]
    verdict: Option<VerdictArg>,
    /// Only runs started at or after this time: RFC 3339 or `now-30d`.
    #[arg(long, value_name = "TIME")]
    since: Option<TimeSpec>,
    /// At most this many runs (the newest).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// `text` prints a table; `json` an array of summaries.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Show one record: steps, durations, errors, RTO and RPO against the objectives, approvals.
///
/// A unique prefix of the id is enough.
///
/// Exit codes: 0 · 2 no such record, or the prefix matches several (they are listed) · 3 the
/// history cannot be read, or the record or its drill log cannot be shown.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook history show 20261129T23\n  drillbook history show 20261129T2328 --format md > drill-report.md"
)]
pub struct ShowArgs {
    /// Record id, or a unique prefix of it.
    id: String,
    /// `json` prints the record as stored, with its `seq` and `hash`; `md` the drill log
    /// (`drill-log.md.j2`), as `run` writes it.
    #[arg(long, value_enum, default_value_t = ShowFormat::Text)]
    format: ShowFormat,
    /// Templates overriding the built-in ones, file by file (for `--format md`).
    #[arg(long, value_name = "DIR")]
    templates: Option<std::path::PathBuf>,
}

/// Verify the hash chain: the first edited, deleted, reordered, inserted or torn entry.
///
/// Prints the head hash: keep it elsewhere to detect a history rewritten from scratch.
///
/// Exit codes: 0 intact · 1 broken · 3 the history cannot be read.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook history verify\n  drillbook history verify --history drills/history.jsonl --format json"
)]
pub struct VerifyArgs {
    /// `json` prints the entry count, the head hash and the break, if any.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Stats per procedure: runs, pass rate, last pass, RTO median/p95/max and trend, RPO,
/// schedule and whether the drill is overdue.
///
/// A scheduled procedure is overdue (for monitoring) when it has never passed, or
/// has not passed by its first scheduled time after the last pass plus a seventh of the
/// schedule's period (about four days for a monthly drill). Schedules come from `--runbook`,
/// else from the runbook files the records name, when they still load.
///
/// Exit codes: 0 nothing overdue · 1 a scheduled procedure is overdue · 2 usage, or a
/// `--runbook` that cannot be read or does not validate · 3 the history cannot be read, or
/// its hash chain is broken (nothing is concluded from it).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook history stats\n  drillbook history stats --runbook runbooks/hello.yaml --last 20 --format json"
)]
pub struct StatsArgs {
    /// Runbook whose schedules to check (repeatable).
    #[arg(long = "runbook", value_name = "FILE")]
    runbooks: Vec<String>,
    /// The RTO trend compares the newer half of the last N passed runs with the older half.
    #[arg(long = "last", value_name = "N", default_value_t = 10)]
    last: usize,
    /// `json` prints an array of per-procedure stats.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Move a last line cut short by a crash aside (to `<file>.torn`) so appends can continue.
///
/// Exit codes: 0 (also when there was nothing to repair) · 3 the history cannot be read or
/// written.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  drillbook history repair --history drills/history.jsonl")]
pub struct RepairArgs {
    /// `json` prints what was repaired (`null` for nothing).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShowFormat {
    Text,
    Json,
    Md,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum VerdictArg {
    Passed,
    Failed,
    Error,
    Interrupted,
}

impl VerdictArg {
    fn verdict(self) -> Verdict {
        match self {
            VerdictArg::Passed => Verdict::Passed,
            VerdictArg::Failed => Verdict::Failed,
            VerdictArg::Error => Verdict::Error,
            VerdictArg::Interrupted => Verdict::Interrupted,
        }
    }
}

pub async fn run(args: &Args) -> anyhow::Result<u8> {
    let store = Store::from_arg(args.history.as_deref());
    match &args.command {
        Command::List(a) => list(&store, a).await,
        Command::Show(a) => show::run(&store, &a.id, a.format, a.templates.as_deref()).await,
        Command::Verify(a) => verify(&store, a).await,
        Command::Stats(a) => stats::run(&store, &a.runbooks, a.last, a.format).await,
        Command::Repair(a) => repair(&store, a).await,
    }
}

/// A store error (exit 3 through `cli::run`); its text already names the store.
fn store_error(doing: &str, e: &crate::history::HistoryError) -> anyhow::Error {
    anyhow!("cannot {doing} the history: {e}")
}

/// How a command reads a history whose chain may be broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// It draws conclusions (`stats`): a break is an error.
    Required,
    /// It shows what is stored (`list`, `show`): a break is a warning.
    Warn,
}

/// The stored lines, in store order, read as `trust` says.
async fn stored(store: &Store, trust: Trust) -> anyhow::Result<Vec<String>> {
    Ok(match (store.trusted_lines().await, trust) {
        (Ok(l), _) => l.lines,
        (Err(e @ crate::history::HistoryError::Broken { .. }), Trust::Warn) => {
            say!("drillbook: warning: {e}");
            store
                .lines()
                .await
                .map_err(|e| store_error("read", &e))?
                .lines
        }
        (Err(e @ crate::history::HistoryError::Broken { .. }), Trust::Required) => {
            return Err(anyhow!("{e}"))
        }
        (Err(e), _) => return Err(store_error("read", &e)),
    })
}

/// The readable entries, in store order, read as `trust` says.
async fn entries(store: &Store, trust: Trust) -> anyhow::Result<Vec<Entry>> {
    Ok(stored(store, trust)
        .await?
        .iter()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .collect())
}

/// The entry's `seq` and typed record read by `parse`; None with a warning for a record
/// this version cannot read, and silently for a line that is no entry at all (`verify`
/// reports it).
fn record_of(
    store: &Store,
    line: &str,
    parse: fn(&str) -> Result<(u64, DrillRecord), String>,
) -> Option<(u64, DrillRecord)> {
    match parse(line) {
        Ok(r) => Some(r),
        Err(e) => {
            let entry = serde_json::from_str::<Entry>(line).ok()?;
            say!(
                "drillbook: warning: history {}: entry {} (record {}) skipped, not a readable record: {e}",
                store.display(),
                entry.seq,
                entry.id()
            );
            None
        }
    }
}

/// The readable entries' `seq` and records in [outline](typed::outline) (without their
/// steps), in store order; a record this version cannot read is skipped with a warning.
async fn records(store: &Store, trust: Trust) -> anyhow::Result<Vec<(u64, DrillRecord)>> {
    Ok(stored(store, trust)
        .await?
        .iter()
        .filter_map(|l| record_of(store, l, typed::outline))
        .collect())
}

fn ms(v: u64) -> String {
    human(std::time::Duration::from_millis(v))
}

/// `4m05s met`, `4m05s missed`, `4m05s`, `—`.
pub(super) fn measured(value: Option<u64>, met: Option<bool>) -> String {
    let v = value.map_or("—".to_owned(), ms);
    match met {
        Some(true) => format!("{v} met"),
        Some(false) => format!("{v} missed"),
        None => v,
    }
}

/// `cell` followed by spaces up to `width` characters. Not `{:width$}`: a record may hold a
/// name of any length, and the formatter's widths end at 65,535.
pub(super) fn padded(cell: &str, width: usize) -> String {
    let fill = width.saturating_sub(cell.chars().count());
    format!("{cell}{}", " ".repeat(fill))
}

/// Columns padded to their widest cell, two spaces apart; the last one unpadded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    let head = header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
    for row in std::iter::once(&head).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&padded(cell, *w));
                s.push_str("  ");
            }
        }
        s.push('\n');
    }
    s
}

/// One line of `history list --format json`.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    seq: u64,
    id: &'a str,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    duration_ms: u64,
    runbook: &'a str,
    procedure: &'a str,
    kind: crate::record::RunKind,
    verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    rto_ms: Option<u64>,
    rto_met: Option<bool>,
    rpo_ms: Option<u64>,
    rpo_met: Option<bool>,
    operator: &'a str,
}

fn summary(seq: u64, r: &DrillRecord) -> Summary<'_> {
    Summary {
        seq,
        id: &r.id,
        started_at: r.started_at,
        finished_at: r.finished_at,
        duration_ms: r.duration_ms,
        runbook: &r.runbook.name,
        procedure: &r.procedure.id,
        kind: r.procedure.kind,
        verdict: r.verdict,
        reason: r.reason.as_deref(),
        rto_ms: r.rto.as_ref().and_then(|x| x.measured_ms),
        rto_met: r.rto.as_ref().and_then(|x| x.met),
        rpo_ms: r.rpo.as_ref().and_then(|x| x.data_loss_window_ms),
        rpo_met: r.rpo.as_ref().and_then(|x| x.met),
        operator: &r.operator,
    }
}

async fn list(store: &Store, args: &ListArgs) -> anyhow::Result<u8> {
    let lines = stored(store, Trust::Warn).await?;
    // filtered and sorted on what each line briefly says; only the rows shown are read in full
    let all: Vec<(&String, Brief)> = lines
        .iter()
        .filter_map(|l| Some((l, Brief::read(l)?)))
        .collect();
    let since = args.since.map(|s| s.resolve(Utc::now()));
    let wanted = |b: &Brief| {
        let (runbook, procedure) = (&b.record.runbook.name, &b.record.procedure.name);
        args.procedure
            .as_deref()
            .is_none_or(|p| p == procedure || p == format!("{runbook}/{procedure}"))
            && args.verdict.is_none_or(|v| v.verdict() == b.record.verdict)
            && since.is_none_or(|t| b.record.started_at >= t)
    };
    let mut order: Vec<&(&String, Brief)> = all.iter().filter(|(_, b)| wanted(b)).collect();
    order.sort_by_key(|(_, b)| std::cmp::Reverse((b.record.started_at, b.seq)));
    order.truncate(args.limit.unwrap_or(usize::MAX));
    let picked: Vec<(u64, DrillRecord)> = order
        .iter()
        .filter_map(|(l, _)| record_of(store, l, typed::record))
        .collect();
    match args.format {
        Format::Json => {
            let rows: Vec<Summary> = picked.iter().map(|(seq, r)| summary(*seq, r)).collect();
            out_json(&rows)?;
        }
        Format::Text if all.is_empty() => {
            out(&format!("no records in history {}\n", store.display()));
        }
        Format::Text if picked.is_empty() => out(&format!(
            "no matching records in history {} ({} in all)\n",
            store.display(),
            all.len()
        )),
        Format::Text => {
            let rows: Vec<Vec<String>> = picked
                .iter()
                .map(|(_, r)| {
                    vec![
                        rfc3339(r.started_at),
                        format!("{}/{}", r.runbook.name, r.procedure.id),
                        r.procedure.kind.as_str().to_owned(),
                        r.verdict.as_str().to_owned(),
                        r.rto
                            .as_ref()
                            .map_or("—".into(), |x| measured(x.measured_ms, x.met)),
                        r.rpo
                            .as_ref()
                            .map_or("—".into(), |x| measured(x.data_loss_window_ms, x.met)),
                        r.operator.clone(),
                        r.id.clone(),
                    ]
                })
                .collect();
            let header = [
                "STARTED",
                "PROCEDURE",
                "KIND",
                "VERDICT",
                "RTO",
                "RPO",
                "OPERATOR",
                "ID",
            ];
            out(&table(&header, &rows));
        }
    }
    Ok(exit::OK)
}

async fn verify(store: &Store, args: &VerifyArgs) -> anyhow::Result<u8> {
    let lines = store.lines().await.map_err(|e| store_error("read", &e))?;
    let v = crate::history::verify(&lines);
    store.remember(&lines, &v);
    let code = if v.broken.is_some() {
        exit::FAILED
    } else {
        exit::OK
    };
    match args.format {
        Format::Json => out_json(&v)?,
        Format::Text => {
            let name = store.display();
            let text = match (&v.broken, &v.head) {
                (Some(b), _) => {
                    let kind = serde_json::to_value(&b.kind)?;
                    let kind = kind.as_str().unwrap_or_default();
                    let what =
                        b.id.as_deref()
                            .map_or(kind.to_owned(), |id| format!("{kind}, record {id}"));
                    format!(
                        "history {name}: broken at entry {} ({what}): {}\n",
                        b.position, b.detail
                    )
                }
                (None, Some(head)) => format!(
                    "history {name}: {} entr{}, chain intact, head {head}\n",
                    v.entries,
                    if v.entries == 1 { "y" } else { "ies" }
                ),
                (None, None) => format!("history {name}: 0 entries, chain intact\n"),
            };
            out(&text);
        }
    }
    Ok(code)
}

async fn repair(store: &Store, args: &RepairArgs) -> anyhow::Result<u8> {
    let done = store
        .repair()
        .await
        .map_err(|e| store_error("repair", &e))?;
    match args.format {
        Format::Json => out_json(&serde_json::json!({
            "history": store.display(),
            "repaired": done,
        }))?,
        Format::Text => out(&format!(
            "history {}: {}\n",
            store.display(),
            done.as_deref().unwrap_or("nothing to repair")
        )),
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_wider_than_the_formatter_allows_are_padded() {
        let huge = "o".repeat(70_000);
        let rows = vec![
            vec!["a".to_owned(), huge.clone(), "x".to_owned()],
            vec!["bb".to_owned(), "c".to_owned(), "y".to_owned()],
        ];
        let text = table(&["K", "OPERATOR", "ID"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], format!("a   {huge}  x"));
        assert_eq!(lines[2], format!("bb  c{}  y", " ".repeat(69_999)));
    }
}
