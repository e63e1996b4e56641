//! `drillbook render`: the runbook document from the YAML runbook (and the latest drill
//! results from the history), through `runbook.md.j2`; `--check` for CI, `--html` for a
//! standalone page.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{exit, load, out};
use crate::history::{HistoryError, Store};
use crate::render::{doc, html, lint, Renderer};

/// Render the runbook document (Markdown) from a runbook and its drill history.
///
/// Exit codes: 0 written (or up to date with `--check`) · 1 `--check` found the file
/// out of date · 2 invalid runbook, template or usage, or the document failed the structure
/// checks · 3 the history cannot be read or its chain is broken (see
/// `--allow-broken-history`), or the file cannot be written.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook render runbooks/neon-production.yaml -o docs/database-backup-recovery-runbook.md\n  drillbook render runbooks/neon-production.yaml -o docs/database-backup-recovery-runbook.md --check\n  drillbook render runbooks/neon-production.yaml -o runbook.md --html"
)]
pub struct Args {
    /// The runbook (YAML).
    runbook: String,
    /// Write the document here (default: standard output).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Do not write: exit 1 when FILE differs from what would be rendered (for CI).
    #[arg(long, requires = "output")]
    check: bool,
    /// Also write a standalone HTML page (FILE with `.html`; to standard output without -o).
    #[arg(long)]
    html: bool,
    /// Templates overriding the built-in ones, file by file (`runbook.md.j2`).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// The history the latest drill results come from (default: `DRILLBOOK_HISTORY`, else
    /// `drills/history.jsonl`).
    #[arg(long, value_name = "PATH|URL")]
    history: Option<String>,
    /// The moment the schedule's next dates are computed from (RFC 3339 or `now`). Default:
    /// `SOURCE_DATE_EPOCH`, else the newest recorded run of the runbook; with neither, no
    /// dates are printed — so a re-render gives the same document until something it shows
    /// changes.
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
    /// Render even when the history's hash chain is broken (exit 3 otherwise); the document
    /// then says so above its results, which cannot be trusted.
    #[arg(long)]
    allow_broken_history: bool,
}

/// The moment the next dates are computed from, and where it came from; None when nothing
/// fixes it (then the document prints no dates, so it does not change with the clock).
fn as_of(
    arg: Option<&str>,
    newest: Option<DateTime<Utc>>,
) -> Result<(Option<DateTime<Utc>>, String), String> {
    if let Some(a) = arg {
        let spec: crate::timestamp::TimeSpec = a.parse().map_err(|e| format!("--as-of: {e}"))?;
        return Ok((Some(spec.resolve(Utc::now())), "--as-of".into()));
    }
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        let secs: i64 = epoch
            .trim()
            .parse()
            .map_err(|_| format!("SOURCE_DATE_EPOCH `{epoch}` is not a number of seconds"))?;
        let t = DateTime::from_timestamp(secs, 0)
            .ok_or_else(|| format!("SOURCE_DATE_EPOCH `{epoch}` is out of range"))?;
        return Ok((Some(t), "SOURCE_DATE_EPOCH".into()));
    }
    Ok(match newest {
        Some(t) => (Some(t), "the newest recorded run".into()),
        None => (None, String::new()),
    })
}

pub async fn run(args: &Args) -> anyhow::Result<u8> {
    let Some(rb) = load(&args.runbook) else {
        return Ok(exit::INVALID);
    };
    let store = Store::from_arg(args.history.as_deref());
    // the results come from a history that verifies, or the document says they do not
    let (stored, broken) = match store.trusted_lines().await {
        Ok(e) => (e, None),
        Err(e @ HistoryError::Broken { .. }) if args.allow_broken_history => {
            say!("drillbook: warning: {e}");
            match store.lines().await {
                Ok(all) => (all, Some(e.to_string())),
                Err(e) => {
                    say!("drillbook: error: cannot read the history: {e}");
                    return Ok(exit::UNAVAILABLE);
                }
            }
        }
        Err(e @ HistoryError::Broken { .. }) => {
            say!("drillbook: error: {e}. Render anyway with --allow-broken-history, which says so in the document");
            return Ok(exit::UNAVAILABLE);
        }
        Err(e) => {
            say!("drillbook: error: cannot read the history: {e}");
            return Ok(exit::UNAVAILABLE);
        }
    };
    let records = crate::history::typed::of_runbook(&stored.lines, &rb.name);
    let newest = records.iter().map(|r| r.finished_at).max();
    let (when, source) = match as_of(args.as_of.as_deref(), newest) {
        Ok(w) => w,
        Err(e) => {
            say!("drillbook: error: {e}");
            return Ok(exit::INVALID);
        }
    };
    let renderer = match Renderer::new(args.templates.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            say!("drillbook: error: {e}");
            return Ok(exit::INVALID);
        }
    };
    let output = args.output.as_ref().map(|p| p.display().to_string());
    let mut context = doc::context(&rb, &records, when, &source, output.as_deref());
    if let Some(obj) = context.as_object_mut() {
        obj.insert("history_store".into(), store.display().into());
        if let Some(b) = broken {
            obj.insert("history_broken".into(), b.into());
        }
    }
    let markdown = match renderer.render("runbook.md.j2", &context) {
        Ok(m) => m,
        Err(e) => {
            say!("drillbook: error: {e}");
            return Ok(exit::INVALID);
        }
    };
    let problems = lint::problems(&markdown);
    if !problems.is_empty() {
        say!(
            "drillbook: error: the rendered document is not sound Markdown:\n  {}",
            problems.join("\n  ")
        );
        return Ok(exit::INVALID);
    }
    let Some(path) = &args.output else {
        out(&if args.html {
            html::page(&markdown)
        } else {
            markdown
        });
        return Ok(exit::OK);
    };
    let html_path = path.with_extension("html");
    if args.check {
        let mut stale = Vec::new();
        if std::fs::read_to_string(path).ok().as_deref() != Some(markdown.as_str()) {
            stale.push(path.clone());
        }
        if args.html && std::fs::read_to_string(&html_path).ok() != Some(html::page(&markdown)) {
            stale.push(html_path);
        }
        if stale.is_empty() {
            say!("drillbook: {} is up to date", path.display());
            return Ok(exit::OK);
        }
        for p in stale {
            say!(
                "drillbook: {} is out of date: run `drillbook render {} -o {}`{}",
                p.display(),
                args.runbook,
                path.display(),
                if args.html { " --html" } else { "" }
            );
        }
        return Ok(exit::FAILED);
    }
    write(path, &markdown)?;
    say!("drillbook: wrote {}", path.display());
    if args.html {
        write(&html_path, &html::page(&markdown))?;
        say!("drillbook: wrote {}", html_path.display());
    }
    Ok(exit::OK)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}
