//! `drillbook daemon RUNBOOK...`: runs the runbooks' schedules itself (see [`crate::daemon`]).

use std::sync::Arc;

use super::{exit, load};
use crate::cancel::Cancel;
use crate::cron::Cron;
use crate::daemon::{self, Clock, Health, HealthSource, Job, ProcessRunner, SystemClock};
use crate::engine::status::{self, Freshness};

/// Run the scheduled procedures and the checks of one or more runbooks on their schedules
/// (UTC), until SIGTERM or SIGINT (the running drills are cancelled and clean up).
///
/// On a loopback address: `/livez` (the process answers), `/healthz` (200 while every check
/// is OK or WARNING, no scheduled drill is overdue and the history verifies; otherwise 503
/// and one line saying why), `/status` (the JSON of `drillbook status --format json`) and
/// `/metrics`. A check with no result yet counts from the first check run after the start
/// plus `--grace`. Each job's start and end (verdict, duration, record id) is logged on
/// standard error.
///
/// Exit codes: 0 stopped by SIGTERM or SIGINT · 2 invalid runbook or usage (a bad
/// `--checks`, a `--listen` address that is not loopback, nothing to schedule) · 3 cannot
/// listen on the address.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  drillbook daemon runbooks/neon-production.yaml --listen 127.0.0.1:9187"
)]
pub struct Args {
    /// The runbooks (YAML).
    #[arg(required = true)]
    runbooks: Vec<String>,
    /// When the health checks run (cron, UTC).
    #[arg(long, default_value = "0 0 * * *", value_name = "CRON")]
    checks: String,
    /// How long past the checks' next run a check result still counts for `/healthz` (a check
    /// not yet run counts from the first run after the start plus this).
    #[arg(long, default_value = status::DEFAULT_GRACE, value_name = "DURATION")]
    grace: crate::duration::Duration,
    /// Where `/livez`, `/healthz`, `/status` and `/metrics` are served (a loopback address).
    #[arg(long, default_value = "127.0.0.1:9187", value_name = "ADDR")]
    listen: std::net::SocketAddr,
    /// Where the jobs append their records, as for `run` and `check` (default:
    /// `DRILLBOOK_HISTORY`, else `drills/history.jsonl`).
    #[arg(long, value_name = "PATH|URL")]
    history: Option<String>,
    /// Where the drills' logs go, as for `run`.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<std::path::PathBuf>,
}

pub async fn run(args: &Args) -> anyhow::Result<u8> {
    if !args.listen.ip().is_loopback() {
        say!(
            "drillbook: error: --listen {}: the daemon serves its endpoints on a loopback address only",
            args.listen
        );
        return Ok(exit::INVALID);
    }
    let checks = match Cron::parse(&args.checks) {
        Ok(c) => c,
        Err(e) => {
            say!("drillbook: error: --checks `{}`: {e}", args.checks);
            return Ok(exit::INVALID);
        }
    };
    let mut jobs = Vec::new();
    let mut runbooks = Vec::new();
    for path in &args.runbooks {
        let Some(rb) = load(path) else {
            return Ok(exit::INVALID);
        };
        for j in crate::engine::jobs::jobs(&rb, &checks) {
            // the record on standard output, for the daemon's log of the run's end
            let mut job_args = j.args;
            job_args.extend(["--format".to_owned(), "json".to_owned()]);
            if let Some(h) = &args.history {
                job_args.extend(["--history".to_owned(), h.clone()]);
            }
            if let (Some(d), Some("run")) = (&args.log_dir, job_args.first().map(String::as_str)) {
                job_args.extend(["--log-dir".to_owned(), d.display().to_string()]);
            }
            jobs.push(Job {
                name: format!("{}/{}", rb.name, j.name),
                cron: j.cron,
                args: job_args,
            });
        }
        runbooks.push(rb);
    }
    if jobs.is_empty() {
        say!("drillbook: error: no scheduled procedure and no checks to run");
        return Ok(exit::INVALID);
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            say!("drillbook: error: cannot listen on {}: {e}", args.listen);
            return Ok(exit::UNAVAILABLE);
        }
    };
    // the jobs verify the history before they conclude anything from it; a break is said
    // at once too, not only when the first check runs
    let store = crate::history::Store::from_arg(args.history.as_deref());
    if let Err(e @ crate::history::HistoryError::Broken { .. }) = store.trusted_entries().await {
        say!("drillbook daemon: {e}; the history checks will fail until it is restored");
    }
    for j in &jobs {
        say!(
            "drillbook daemon: {} on `{}` ({}), next at {}",
            j.name,
            j.cron.as_str(),
            j.cron.describe(),
            crate::timestamp::rfc3339(j.cron.next_after(chrono::Utc::now()))
        );
    }
    say!(
        "drillbook daemon: /livez, /healthz, /status and /metrics on http://{}",
        args.listen
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let freshness = Freshness::since_start(checks, args.grace, clock.now());
    let health = health_source(runbooks, store, freshness, clock.clone());
    let shutdown = Cancel::new();
    let states = daemon::States::default();
    // SIGTERM, SIGINT and SIGHUP stop it alike: the running jobs are cancelled and clean
    // up; a second signal forces the stop (the jobs abort their cleanup, naming what they
    // leave behind). Listened for before /healthz answers: a supervisor that sees it
    // healthy may stop it at once.
    use tokio::signal::unix::{signal, SignalKind};
    let signals = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(term), Ok(int), Ok(hup)) => Some((term, int, hup)),
        _ => {
            say!("drillbook daemon: warning: cannot listen for signals; a signal will stop it without cleanup");
            None
        }
    };
    let stop = shutdown.clone();
    if let Some((mut term, mut int, mut hup)) = signals {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                    _ = hup.recv() => {}
                }
                // said before acting on it: once stopped, the process may exit at once
                match stop.level() {
                    0 => say!("drillbook daemon: stopping: the running jobs are cancelled and clean up (a second signal forces the stop)"),
                    _ => say!("drillbook daemon: second signal: forcing the stop; the running jobs abort their cleanup"),
                }
                stop.interrupt();
            }
        });
    }
    let server = tokio::spawn(daemon::serve(
        listener,
        states.clone(),
        health,
        shutdown.clone(),
    ));
    daemon::schedule(
        jobs,
        clock,
        Arc::new(ProcessRunner),
        states,
        shutdown,
        daemon::stderr_log(),
    )
    .await;
    server.abort();
    Ok(exit::OK)
}

/// `/healthz` and `/status` from the history, read afresh for each request: a check run or a
/// drill that just ended, or an edit to the history, shows at once.
pub fn health_source(
    runbooks: Vec<crate::runbook::Runbook>,
    store: crate::history::Store,
    freshness: Freshness,
    clock: Arc<dyn Clock>,
) -> HealthSource {
    let watched = Arc::new((runbooks, store, freshness));
    Arc::new(move || {
        let (watched, now) = (watched.clone(), clock.now());
        Box::pin(async move {
            let (runbooks, store, freshness) = &*watched;
            let report = status::read(runbooks, store, freshness, now).await;
            // text from records and runbooks, made inert as everything drillbook prints is
            Health {
                healthy: report.healthy,
                summary: crate::controls::visible(&report.summary()).into_owned(),
                status: crate::controls::visible_json(
                    &serde_json::to_string(&report).unwrap_or_default(),
                )
                .into_owned(),
            }
        })
    })
}
