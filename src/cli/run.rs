//! `drillbook run`: runs a procedure, prints the outcome, exits with the verdict's code.
//! SIGINT/SIGTERM cancel the running step and let cleanup run; a second one aborts cleanup.

use std::fmt::Write as _;

use super::terminal::Terminal;
use super::{exit, load, out, out_json, Format, ProcedureArgs};
use crate::cancel::Cancel;
use crate::duration::human;
use crate::engine::{operator, RunOptions};
use crate::record::{DrillRecord, StepRecord};

/// Run a procedure: steps in order, cleanup always, a DrillRecord at the end.
///
/// Exit codes: 0 passed · 1 a step, cleanup step, objective or preflight check failed · 2
/// invalid runbook, unknown procedure, bad params or usage · 3 could not run (a missing
/// environment variable, something unreachable or refusing, no operator), or it passed but
/// its record or drill log could not be kept · 130 interrupted (cleanup still ran).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook run runbooks/hello.yaml smoke\n  drillbook run runbooks/hello.yaml smoke --param greeting=hi --yes --format json"
)]
pub struct Args {
    #[command(flatten)]
    target: ProcedureArgs,
    /// Approve manual and destructive steps in advance (for unattended runs).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Check params and environment and show the steps, without running any.
    #[arg(long)]
    dry_run: bool,
    /// `text` prints a summary; `json` prints the DrillRecord.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Where the record is appended: a JSON Lines file or a `postgres://` URL (default:
    /// `DRILLBOOK_HISTORY`, else `drills/history.jsonl`). Dry runs are not recorded.
    #[arg(long, value_name = "PATH|URL")]
    history: Option<String>,
    /// Where the run's test-result log goes (`<date>-<runbook>-<procedure>-<id>.md`, `.json`, `.xml`):
    /// default next to a history file, else `drills/`.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<std::path::PathBuf>,
    /// Templates overriding the built-in ones, file by file (`drill-log.md.j2`).
    #[arg(long, value_name = "DIR")]
    templates: Option<std::path::PathBuf>,
}

pub async fn run(args: &Args) -> anyhow::Result<u8> {
    let Some(rb) = load(&args.target.runbook) else {
        return Ok(exit::INVALID);
    };
    let opts = RunOptions {
        params: args.target.params.clone(),
        yes: args.yes,
        dry_run: args.dry_run,
        operator: operator()?,
        history: args.history.clone(),
        shared: None,
    };
    let terminal = Terminal::new(args.yes).with_progress(matches!(args.format, Format::Text));
    if let Some(w) = crate::engine::gc::leftovers_warning() {
        say!("drillbook: warning: {w}");
    }
    let cancel = Cancel::new();
    // listen before anything runs, so an early interrupt still gets cleanup
    let signals = tokio::spawn(watch_signals(cancel.clone(), listen()));
    let result = crate::engine::run(
        &rb,
        &args.target.procedure,
        &opts,
        &terminal,
        &terminal,
        &cancel,
    )
    .await;
    signals.abort();
    let record = match result {
        Ok(r) => r,
        Err(e) => {
            say!("drillbook: error: {e}");
            return Ok(e.exit_code());
        }
    };
    match args.format {
        Format::Json => out_json(&record)?,
        Format::Text => out(&summary(&record)),
    }
    // what was left running on purpose is said on the terminal whatever the format
    let kept = kept(&record);
    if !kept.is_empty() {
        say!("{}", kept.trim_end());
    }
    if record.dry_run {
        return Ok(record.verdict.exit_code());
    }
    let store = crate::history::Store::from_arg(args.history.as_deref());
    let dir = crate::render::log::dir(args.log_dir.as_deref(), &store);
    let mut record = record;
    // an interrupt while the alerts go out skips the rest of them; the record is still kept
    // and the exit code stays the run's
    let stop = Cancel::new();
    let signals = tokio::spawn(watch_alert_signals(stop.clone(), listen()));
    let kept = crate::engine::keep(
        &rb,
        &mut record,
        &store,
        &dir,
        args.templates.as_deref(),
        &stop,
    )
    .await;
    signals.abort();
    match &kept.entry {
        Ok(entry) => say!(
            "drillbook: recorded as entry {} of {}",
            entry.seq,
            store.display()
        ),
        Err(e) => say!(
            "drillbook: error: the record could not be appended to the history {}: {e}",
            store.display()
        ),
    }
    match &kept.log {
        Some(Ok(files)) => {
            if let Some(md) = files.first() {
                say!("drillbook: drill log {} (.json, .xml)", md.display());
            }
        }
        Some(Err(e)) => say!("drillbook: error: the drill log could not be written: {e}"),
        None => {}
    }
    Ok(kept.exit_code(record.verdict))
}

/// SIGINT, SIGTERM and SIGHUP (a closed terminal or ssh session).
type Signals = Option<(
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
)>;

fn listen() -> Signals {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(int), Ok(term), Ok(hup)) => Some((int, term, hup)),
        _ => {
            say!(
                "drillbook: warning: cannot listen for signals; an interrupt will not run cleanup"
            );
            None
        }
    }
}

/// Turns SIGINT and SIGTERM into interrupt levels.
async fn watch_signals(cancel: Cancel, signals: Signals) {
    let Some((mut int, mut term, mut hup)) = signals else {
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        // say it before acting on it: once the level rises the run may finish and exit
        match cancel.level() {
            0 => say!("\ndrillbook: interrupted: stopping the running step; cleanup will run (interrupt again to abort cleanup)"),
            _ => say!("\ndrillbook: second interrupt: aborting cleanup; resources created by this run may be left behind"),
        }
        cancel.interrupt();
    }
}

/// After the run: an interrupt stops the alerts still being sent.
async fn watch_alert_signals(stop: Cancel, signals: Signals) {
    let Some((mut int, mut term, mut hup)) = signals else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    say!("\ndrillbook: interrupted: the alerts not sent yet are skipped; the record is kept");
    stop.interrupt();
}

/// " (objective 1h: met)" and its variants.
fn objective_text(objective: Option<crate::duration::Duration>, met: Option<bool>) -> String {
    match (objective, met) {
        (Some(o), Some(true)) => format!(" (objective {o}: met)"),
        (Some(o), Some(false)) => format!(" (objective {o}: NOT met)"),
        (Some(o), None) => format!(" (objective {o})"),
        (None, _) => String::new(),
    }
}

/// What a run left running on purpose (`keep: true`): how to reach it and stop it.
fn kept(r: &DrillRecord) -> String {
    let mut s = String::new();
    for st in r
        .steps
        .iter()
        .filter(|st| st.outputs.get("kept") == Some(&true.into()))
    {
        let text = |k: &str| {
            st.outputs
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let _ = writeln!(
            s,
            "kept: step `{}` left its instance running in {}\n  connect: {}\n  stop:    {}",
            st.id,
            text("dir"),
            text("psql_command"),
            text("stop_command")
        );
    }
    s
}

fn summary(r: &DrillRecord) -> String {
    let mut s = String::new();
    let verdict = if r.dry_run {
        "DRY RUN (nothing was run)".to_owned()
    } else {
        format!("{:?}", r.verdict).to_uppercase()
    };
    let _ = writeln!(
        s,
        "{} / {}: {verdict}{}",
        r.runbook.name,
        r.procedure.id,
        r.reason
            .as_deref()
            .map(|x| format!(" — {x}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "run {} by {} at {}, took {}",
        r.id,
        r.operator,
        crate::timestamp::rfc3339(r.started_at),
        human(std::time::Duration::from_millis(r.duration_ms))
    );
    if let Some(rto) = &r.rto {
        let measured = rto.measured_ms.map_or("not measured".to_owned(), |ms| {
            human(std::time::Duration::from_millis(ms))
        });
        let objective = objective_text(rto.objective, rto.met);
        let _ = writeln!(
            s,
            "RTO {measured}{objective}, from `{}` to `{}`",
            rto.from_step, rto.to_step
        );
    }
    if let Some(rpo) = &r.rpo {
        let window = rpo
            .data_loss_window_ms
            .map_or("not measured".to_owned(), |ms| {
                human(std::time::Duration::from_millis(ms))
            });
        let point = rpo
            .recovery_point
            .map(crate::timestamp::rfc3339)
            .unwrap_or_default();
        let objective = objective_text(rpo.objective, rpo.met);
        let _ = writeln!(s, "RPO {window}{objective}, recovery point {point}");
    }
    let table = |s: &mut String, title: &str, steps: &[StepRecord]| {
        if steps.is_empty() {
            return;
        }
        let _ = writeln!(s, "{title}");
        let width = steps.iter().map(|x| x.id.len()).max().unwrap_or(0);
        for st in steps {
            let took = st
                .duration_ms
                .map(|ms| human(std::time::Duration::from_millis(ms)))
                .unwrap_or_default();
            let detail = st
                .error
                .as_deref()
                .or(st.note.as_deref())
                .map(|d| format!("  {d}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {:width$}  {:9}  {took:>7}{detail}",
                st.id,
                st.status.symbol()
            );
        }
    };
    table(&mut s, "steps", &r.steps);
    table(&mut s, "cleanup", &r.cleanup);
    // checks that produce a readable report (compare) show it under the summary
    for st in &r.steps {
        if let Some(report) = st.outputs.get("report").and_then(serde_json::Value::as_str) {
            let _ = writeln!(s, "\n{} ({}):", st.id, st.kind);
            for line in report.lines() {
                let _ = writeln!(s, "  {line}");
            }
        }
    }
    s
}
