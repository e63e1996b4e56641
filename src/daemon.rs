//! `drillbook daemon`: runs the runbooks' scheduled procedures and checks itself. Cron in UTC,
//! one run at a time per job (a job still running when it comes due again is skipped and
//! reported), runs missed while the machine was suspended or the daemon paused are reported and
//! run once — never replayed in a burst — and SIGTERM cancels the running drills (their
//! cleanup runs) before the daemon exits. `/livez`, `/healthz`, `/status` and `/metrics` are
//! served on a loopback address ([`serve`]); what `/healthz` and `/status` say about the
//! backups comes from a [`HealthSource`], asked afresh for each request.
//!
//! The wall clock, the job runner and the health source are the seams tests replace
//! ([`Clock`], [`Runner`], [`HealthSource`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rustix::process::{kill_process, Pid, Signal};

use crate::cancel::BoxFuture;
use crate::cancel::Cancel;
use crate::cron::Cron;
use crate::render::prometheus::{Exposition, Labels};

mod endpoints;

pub use endpoints::{serve, HEALTH_TIMEOUT};

/// One scheduled job: `drillbook <args>` on `cron`.
#[derive(Debug, Clone)]
pub struct Job {
    /// `<runbook>/<procedure>` or `<runbook>/checks`.
    pub name: String,
    pub cron: Cron,
    pub args: Vec<String>,
}

/// The wall clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// What `/healthz` and `/status` answer about the backups.
#[derive(Debug, Clone)]
pub struct Health {
    /// `/healthz` answers 200 (every check OK or WARNING, nothing overdue, the history
    /// verified); otherwise 503.
    pub healthy: bool,
    /// One line: the status and, unless OK, why (`CRITICAL: shop: check backup-age …`).
    pub summary: String,
    /// The `/status` document, JSON.
    pub status: String,
}

/// Works out the backups' health now; called for each `/healthz` and `/status` request.
pub type HealthSource = Arc<dyn Fn() -> BoxFuture<'static, Health> + Send + Sync>;

/// How a job's run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    /// The process exit code (-1 when it could not start or was killed by a signal).
    pub code: i32,
    /// The run's verdict (`passed`, `failed`, …) or the check run's status (`OK`, …), when
    /// it said.
    pub outcome: Option<String>,
    /// The id of the run's record, when it said.
    pub record: Option<String>,
}

/// Runs one job to its end. Cancelling asks it to stop.
pub trait Runner: Send + Sync {
    fn run(&self, job: &Job, due: DateTime<Utc>, cancel: Cancel) -> BoxFuture<'static, Finished>;
}

/// Where the daemon says what it does: one line per event.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// The daemon's log on standard error, each line with its UTC time.
pub fn stderr_log() -> Log {
    Arc::new(|line: &str| {
        eprintln!(
            "{} drillbook daemon: {}",
            crate::timestamp::rfc3339(Utc::now()),
            crate::controls::visible(line)
        );
    })
}

/// What a job printed on standard output with `--format json`: a run's record (`verdict`,
/// `id`) or a check run (`status`).
fn finished(code: i32, stdout: &[u8]) -> Finished {
    let json: serde_json::Value = serde_json::from_slice(stdout).unwrap_or_default();
    let text = |k: &str| {
        json.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    Finished {
        code,
        outcome: text("verdict").or_else(|| text("status")),
        record: text("id"),
    }
}

/// Runs `drillbook <args>` as a child process; SIGTERM on cancel (so the drill cleans up).
#[derive(Debug)]
pub struct ProcessRunner;

impl Runner for ProcessRunner {
    fn run(&self, job: &Job, _due: DateTime<Utc>, cancel: Cancel) -> BoxFuture<'static, Finished> {
        let args = job.args.clone();
        Box::pin(async move {
            let exe = std::env::current_exe().unwrap_or_else(|_| "drillbook".into());
            // its own process group: a Ctrl-C at the daemon's terminal reaches the daemon only,
            // which then stops the job once (a second interrupt would abort its cleanup)
            // standard output is the record (`--format json`), read as the job goes; its
            // progress goes to the daemon's standard error
            let mut child = match tokio::process::Command::new(exe)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .process_group(0)
                .spawn()
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!(
                        "drillbook daemon: cannot start `drillbook {}`: {e}",
                        args.join(" ")
                    );
                    return Finished {
                        code: -1,
                        ..Finished::default()
                    };
                }
            };
            let mut stdout = child.stdout.take();
            let read = tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut out = Vec::new();
                if let Some(s) = stdout.as_mut() {
                    let _ = s.read_to_end(&mut out).await;
                }
                out
            });
            // not yet reaped, so the pid is still the child's; an error means it has just
            // exited
            let pid = child
                .id()
                .and_then(|p| Pid::from_raw(i32::try_from(p).ok()?));
            let term = || {
                if let Some(pid) = pid {
                    let _ = kill_process(pid, Signal::TERM);
                }
            };
            let status = tokio::select! {
                status = child.wait() => status,
                () = cancel.cancelled() => {
                    // the job stops and cleans up; a second cancel (a forced stop) makes it
                    // abort its cleanup
                    term();
                    let forced = cancel.for_cleanup();
                    tokio::select! {
                        status = child.wait() => status,
                        () = forced.cancelled() => {
                            term();
                            child.wait().await
                        }
                    }
                }
            };
            let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
            finished(code, &read.await.unwrap_or_default())
        })
    }
}

/// What the daemon knows of each job (for `/metrics` and messages).
#[derive(Debug, Clone, Default)]
pub struct JobState {
    pub runs: u64,
    pub missed: u64,
    pub skipped: u64,
    pub running: bool,
    pub last_due: Option<DateTime<Utc>>,
    pub last_exit: Option<i32>,
}

pub type States = Arc<Mutex<BTreeMap<String, JobState>>>;

fn with<T>(states: &States, name: &str, f: impl FnOnce(&mut JobState) -> T) -> T {
    let mut map = states
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(map.entry(name.to_owned()).or_default())
}

/// Runs `jobs` on their schedules until `shutdown` is cancelled, then cancels the running
/// jobs and waits for them.
pub async fn schedule(
    jobs: Vec<Job>,
    clock: Arc<dyn Clock>,
    runner: Arc<dyn Runner>,
    states: States,
    shutdown: Cancel,
    log: Log,
) {
    let mut last_seen = clock.now();
    // the next due time of each job, after the start
    let mut next: Vec<DateTime<Utc>> = jobs.iter().map(|j| j.cron.next_after(last_seen)).collect();
    // the jobs are cancelled by the same signal: once on a graceful stop, twice when forced
    let running = shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let now = clock.now();
        for (i, job) in jobs.iter().enumerate() {
            if next[i] > now {
                continue;
            }
            // every fire time that passed: the newest is run, the others were missed
            let mut due = next[i];
            let mut missed = 0u64;
            while job.cron.next_after(due) <= now {
                due = job.cron.next_after(due);
                missed += 1;
            }
            next[i] = job.cron.next_after(due);
            if missed > 0 {
                log(&format!(
                    "{}: missed {missed} run(s) between {} and {} (the daemon was paused or the machine asleep); running it once now",
                    job.name,
                    crate::timestamp::rfc3339(last_seen),
                    crate::timestamp::rfc3339(now)
                ));
                with(&states, &job.name, |s| s.missed += missed);
            }
            if with(&states, &job.name, |s| s.running) {
                log(&format!(
                    "{}: due at {}, but its previous run is still going; skipped",
                    job.name,
                    crate::timestamp::rfc3339(due)
                ));
                with(&states, &job.name, |s| s.skipped += 1);
                continue;
            }
            with(&states, &job.name, |s| {
                s.running = true;
                s.last_due = Some(due);
            });
            log(&format!(
                "{}: started (due {})",
                job.name,
                crate::timestamp::rfc3339(due)
            ));
            let (job, runner, states, cancel, log) = (
                job.clone(),
                runner.clone(),
                states.clone(),
                running.clone(),
                log.clone(),
            );
            tasks.spawn(async move {
                let clock = tokio::time::Instant::now();
                let done = runner.run(&job, due, cancel).await;
                let outcome = done.outcome.as_deref().unwrap_or("ended");
                let record = done
                    .record
                    .as_deref()
                    .map(|r| format!(", record {r}"))
                    .unwrap_or_default();
                log(&format!(
                    "{}: {outcome} in {}{record} (exit {})",
                    job.name,
                    crate::duration::human(clock.elapsed()),
                    done.code
                ));
                with(&states, &job.name, |s| {
                    s.running = false;
                    s.runs += 1;
                    s.last_exit = Some(done.code);
                });
            });
        }
        last_seen = now;
        // sleep until the next due time, but re-read the wall clock at least every minute (a
        // suspended machine's clock jumps)
        let soonest = next
            .iter()
            .min()
            .copied()
            .unwrap_or(now + chrono::Duration::hours(1));
        let wait = (soonest - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(60))
            .max(Duration::from_millis(10));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            () = shutdown.cancelled() => break,
        }
    }
    // graceful stop: the running drills were cancelled with the shutdown and clean up
    while tasks.join_next().await.is_some() {}
}

/// The `/metrics` text.
pub fn metrics(states: &States) -> String {
    let map = states
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Exposition::new();
    out.gauge(
        "drillbook_daemon_up",
        "The daemon is running.",
        [(vec![], 1.0)],
    );
    let per_job = |f: &dyn Fn(&JobState) -> Option<f64>| -> Vec<(Labels<'_>, f64)> {
        map.iter()
            .filter_map(|(job, st)| Some((vec![("job", job.as_str())], f(st)?)))
            .collect()
    };
    out.gauge(
        "drillbook_job_runs",
        "Runs this daemon finished (any exit code).",
        per_job(&|st| Some(st.runs as f64)),
    );
    out.gauge(
        "drillbook_job_missed",
        "Scheduled runs missed while paused.",
        per_job(&|st| Some(st.missed as f64)),
    );
    out.gauge(
        "drillbook_job_skipped",
        "Runs skipped because the previous one was still going.",
        per_job(&|st| Some(st.skipped as f64)),
    );
    out.gauge(
        "drillbook_job_running",
        "1 while the job runs.",
        per_job(&|st| Some(if st.running { 1.0 } else { 0.0 })),
    );
    out.gauge(
        "drillbook_job_last_exit_code",
        "Exit code of the job's last run.",
        per_job(&|st| st.last_exit.map(f64::from)),
    );
    out.gauge(
        "drillbook_job_last_due_timestamp_seconds",
        "When the job's last run was due (Unix time).",
        per_job(&|st| st.last_due.map(|t| t.timestamp() as f64)),
    );
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wall time that follows tokio's (paused) clock, plus jumps the test makes.
    struct TestClock {
        wall: DateTime<Utc>,
        start: tokio::time::Instant,
        jump: Mutex<chrono::Duration>,
    }

    impl Clock for TestClock {
        fn now(&self) -> DateTime<Utc> {
            let jump = *self.jump.lock().expect("jump");
            self.wall + chrono::Duration::from_std(self.start.elapsed()).expect("elapsed") + jump
        }
    }

    type Ran = Arc<Mutex<Vec<(String, String, bool)>>>;

    /// Records each run (job, due, cancelled); a job named `slow` runs for 36 hours.
    struct Recorder(Ran);

    impl Runner for Recorder {
        fn run(
            &self,
            job: &Job,
            due: DateTime<Utc>,
            cancel: Cancel,
        ) -> BoxFuture<'static, Finished> {
            let (ran, name) = (self.0.clone(), job.name.clone());
            Box::pin(async move {
                let slow = name == "slow";
                let cancelled = if slow {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(36 * 3600)) => false,
                        () = cancel.cancelled() => true,
                    }
                } else {
                    false
                };
                let record = Some(format!("run-of-{name}"));
                ran.lock()
                    .expect("ran")
                    .push((name, crate::timestamp::rfc3339(due), cancelled));
                Finished {
                    code: if cancelled { 130 } else { 0 },
                    outcome: Some(if cancelled { "interrupted" } else { "passed" }.into()),
                    record,
                }
            })
        }
    }

    fn job(name: &str, cron: &str) -> Job {
        Job {
            name: name.into(),
            cron: Cron::parse(cron).expect("cron"),
            args: Vec::new(),
        }
    }

    type Lines = Arc<Mutex<Vec<String>>>;

    fn start(
        jobs: Vec<Job>,
    ) -> (
        Arc<TestClock>,
        Ran,
        States,
        Cancel,
        tokio::task::JoinHandle<()>,
        Lines,
    ) {
        let clock = Arc::new(TestClock {
            wall: "2026-11-30T23:59:00Z".parse().expect("time"),
            start: tokio::time::Instant::now(),
            jump: Mutex::new(chrono::Duration::zero()),
        });
        let ran: Ran = Arc::default();
        let states = States::default();
        let stop = Cancel::new();
        let lines: Lines = Arc::default();
        let sink = lines.clone();
        let log: Log = Arc::new(move |l: &str| sink.lock().expect("log").push(l.to_owned()));
        let handle = tokio::spawn(schedule(
            jobs,
            clock.clone(),
            Arc::new(Recorder(ran.clone())),
            states.clone(),
            stop.clone(),
            log,
        ));
        (clock, ran, states, stop, handle, lines)
    }

    fn ran(r: &Ran) -> Vec<(String, String, bool)> {
        r.lock().expect("ran").clone()
    }

    fn entry(name: &str, due: &str, cancelled: bool) -> (String, String, bool) {
        (name.into(), due.into(), cancelled)
    }

    #[tokio::test(start_paused = true)]
    async fn the_monthly_drill_runs_on_the_first_and_the_checks_at_midnight_utc() {
        let (_, r, states, stop, handle, lines) =
            start(vec![job("drill", "0 9 1 * *"), job("checks", "0 0 * * *")]);
        tokio::time::sleep(Duration::from_secs(10 * 3600)).await;
        assert_eq!(
            ran(&r),
            [
                entry("checks", "2026-12-01T00:00:00Z", false),
                entry("drill", "2026-12-01T09:00:00Z", false)
            ]
        );
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        assert_eq!(ran(&r).len(), 3, "the next day's check: {:?}", ran(&r));
        assert!(metrics(&states).contains("drillbook_job_runs{job=\"checks\"} 2"));
        // each start and end is logged, the end with its verdict, duration and record
        let lines = lines.lock().expect("log").clone();
        assert_eq!(
            lines[..4],
            [
                "checks: started (due 2026-12-01T00:00:00Z)",
                "checks: passed in 0ms, record run-of-checks (exit 0)",
                "drill: started (due 2026-12-01T09:00:00Z)",
                "drill: passed in 0ms, record run-of-drill (exit 0)",
            ]
        );
        stop.interrupt();
        handle.await.expect("scheduler");
    }

    #[tokio::test(start_paused = true)]
    async fn runs_missed_while_paused_are_reported_and_run_once() {
        let (clock, r, states, stop, handle, _) = start(vec![job("checks", "0 0 * * *")]);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        // the machine sleeps for three days
        *clock.jump.lock().expect("jump") = chrono::Duration::days(3);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(
            ran(&r),
            [
                entry("checks", "2026-12-01T00:00:00Z", false),
                entry("checks", "2026-12-04T00:00:00Z", false)
            ]
        );
        assert!(metrics(&states).contains("drillbook_job_missed{job=\"checks\"} 2"));
        stop.interrupt();
        handle.await.expect("scheduler");
    }

    #[tokio::test(start_paused = true)]
    async fn one_run_at_a_time_and_shutdown_cancels_the_running_one() {
        let (_, r, states, stop, handle, lines) = start(vec![job("slow", "0 0 * * *")]);
        // due at midnight, runs 36h: the next midnight finds it still running
        tokio::time::sleep(Duration::from_secs(30 * 3600)).await;
        assert!(ran(&r).is_empty());
        assert!(metrics(&states).contains("drillbook_job_skipped{job=\"slow\"} 1"));
        assert!(metrics(&states).contains("drillbook_job_running{job=\"slow\"} 1"));
        stop.interrupt();
        handle.await.expect("scheduler");
        assert_eq!(ran(&r), [entry("slow", "2026-12-01T00:00:00Z", true)]);
        let lines = lines.lock().expect("log").clone();
        assert_eq!(
            lines.last().map(String::as_str),
            Some("slow: interrupted in 29h59m, record run-of-slow (exit 130)")
        );
    }
}
