//! `drillbook schedule`: ready-to-install definitions for every scheduled procedure and the
//! health checks, for cron, systemd timers, GitHub Actions or Kubernetes CronJobs, and the
//! drills as iCalendar events (`ics.rs`). Times are UTC. The environment variables each job needs are named, never filled in.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{load, out};
use crate::cron::Cron;
use crate::engine::jobs::{jobs, Job};
use crate::runbook::Runbook;

mod ics;

/// Write schedule definitions for the runbook's procedures (`schedule:`) and checks.
///
/// Exit codes: 0 written · 2 invalid runbook or usage (e.g. a schedule systemd or an
/// iCalendar RRULE cannot express, or, for `ics`, no scheduled procedure).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook schedule runbooks/neon-production.yaml --emit crontab\n  drillbook schedule runbooks/neon-production.yaml --emit kubernetes --image ghcr.io/acme/drillbook:0.1.0 > cronjobs.yaml"
)]
pub struct Args {
    /// The runbook (YAML).
    runbook: String,
    /// What to write.
    #[arg(long, value_enum)]
    emit: Emit,
    /// When the health checks run (cron, UTC); daily at midnight by default.
    #[arg(long, default_value = "0 0 * * *", value_name = "CRON")]
    checks: String,
    /// The drillbook executable on the machine that runs the jobs (crontab and systemd);
    /// default: this one's absolute path.
    #[arg(long, value_name = "PATH")]
    drillbook: Option<String>,
    /// The directory the jobs run in (crontab and systemd): the runbook path is read from
    /// there, and the history and drill logs go to its `drills/`; default: the current
    /// directory.
    #[arg(long, value_name = "DIR")]
    workdir: Option<std::path::PathBuf>,
    /// Where the rendered runbook document is published (a URL), for `ics`: each event links
    /// to its procedure's section there.
    #[arg(long, value_name = "URL")]
    doc: Option<String>,
    /// Container image for Kubernetes (with drillbook and the runbook's repository).
    #[arg(long, default_value = "drillbook:latest", value_name = "IMAGE")]
    image: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    Crontab,
    Systemd,
    GithubActions,
    Kubernetes,
    /// An iCalendar file (RFC 5545) with the scheduled drills, for the team calendar.
    Ics,
}

/// A name usable as a unit, job or Kubernetes object name.
fn slug(text: &str) -> String {
    let s: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.trim_matches('-')
        .chars()
        .take(52)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// An argument for a shell (or systemd) command line: as is when it needs no quoting.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+-".contains(c));
    if plain {
        arg.to_owned()
    } else {
        crate::pg::cluster::shell_quote(arg)
    }
}

pub async fn run(args: &Args) -> anyhow::Result<u8> {
    let Some(rb) = load(&args.runbook) else {
        return Ok(super::exit::INVALID);
    };
    let checks = match Cron::parse(&args.checks) {
        Ok(c) => c,
        Err(e) => {
            say!("drillbook: error: --checks `{}`: {e}", args.checks);
            return Ok(super::exit::INVALID);
        }
    };
    let jobs = jobs(&rb, &checks);
    if jobs.is_empty() {
        say!(
            "drillbook: error: {} has no scheduled procedure and no checks",
            rb.path
        );
        return Ok(super::exit::INVALID);
    }
    // cron and systemd start jobs elsewhere, with a bare PATH: absolute paths throughout
    let bin = match &args.drillbook {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .and_then(std::fs::canonicalize)
            .map_or_else(|_| "drillbook".to_owned(), |p| p.display().to_string()),
    };
    let workdir = match &args.workdir {
        Some(d) => std::path::absolute(d),
        None => std::env::current_dir(),
    };
    let workdir = match workdir {
        Ok(d) => d.display().to_string(),
        Err(e) => {
            say!("drillbook: error: cannot tell the working directory: {e}");
            return Ok(super::exit::INVALID);
        }
    };
    // the runbook as the jobs see it from their working directory
    let runbook = std::path::absolute(&rb.path)
        .ok()
        .and_then(|p| {
            p.strip_prefix(&workdir)
                .ok()
                .map(|r| r.display().to_string())
                .or_else(|| Some(p.display().to_string()))
        })
        .unwrap_or_else(|| rb.path.clone());
    let mut jobs = jobs;
    for j in &mut jobs {
        if let Some(arg) = j.args.get_mut(1) {
            arg.clone_from(&runbook);
        }
    }
    for j in &jobs {
        if let (Emit::GithubActions | Emit::Kubernetes, Some((kind, need))) =
            (args.emit, j.host_needs.first())
        {
            say!(
                "drillbook: warning: job `{}` runs `{kind}`, which needs {need} on the machine that runs it",
                j.name
            );
        }
    }
    let text = match args.emit {
        Emit::Crontab => crontab(&rb, &jobs, &bin, &workdir),
        Emit::Systemd => match systemd(&rb, &jobs, &bin, &workdir) {
            Ok(t) => t,
            Err(e) => {
                say!("drillbook: error: {e}");
                return Ok(super::exit::INVALID);
            }
        },
        Emit::GithubActions => github(&rb, &jobs),
        Emit::Kubernetes => kubernetes(&rb, &jobs, &args.image),
        Emit::Ics => {
            let command = |j: &Job| command_line(j, &bin, &workdir);
            match ics::calendar(&rb, &jobs, &command, args.doc.as_deref(), start()) {
                // CRLF line ends, which `out` would show as escapes; the calendar's text
                // values carry no other control character (`ics::text` drops them)
                Ok(t) => {
                    super::write_out(&t);
                    return Ok(super::exit::OK);
                }
                Err(e) => {
                    say!("drillbook: error: {e}");
                    return Ok(super::exit::INVALID);
                }
            }
        }
    };
    out(&text);
    Ok(super::exit::OK)
}

fn env_names(jobs: &[Job]) -> BTreeSet<String> {
    jobs.iter().flat_map(|j| j.env.iter().cloned()).collect()
}

/// The variables as comment lines: the needed ones, then the optional ones.
fn env_comments(jobs: &[Job], s: &mut String) {
    let needed = env_names(jobs);
    let optional: BTreeSet<String> = jobs
        .iter()
        .flat_map(|j| j.optional_env.iter().cloned())
        .filter(|e| !needed.contains(e))
        .collect();
    for e in &needed {
        let _ = writeln!(s, "#   {e}=…");
    }
    for e in &optional {
        let _ = writeln!(s, "#   {e}=…   (optional: read by an alert)");
    }
}

fn crontab(rb: &Runbook, jobs: &[Job], bin: &str, workdir: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# drillbook schedules for runbook `{}` ({}).",
        rb.name, rb.path
    );
    let _ = writeln!(
        s,
        "# Times are UTC: install where cron runs in UTC (or keep CRON_TZ, which cronie honours)."
    );
    let _ = writeln!(
        s,
        "# Each job runs in {workdir}: the history, the drill logs and cron.log go to its drills/."
    );
    if jobs
        .iter()
        .any(|j| !j.env.is_empty() || !j.optional_env.is_empty())
    {
        let _ = writeln!(
            s,
            "# The jobs read these environment variables; set them as NAME=value lines above the jobs:"
        );
        env_comments(jobs, &mut s);
    }
    s.push_str("CRON_TZ=UTC\n");
    for j in jobs {
        let line = format!("{} >> drills/cron.log 2>&1", command_line(j, bin, workdir));
        let _ = writeln!(s, "# {}: {}", j.name, one_line(&j.what));
        // cron turns an unescaped % into a newline
        let _ = writeln!(s, "{} {}", j.cron.as_str(), line.replace('%', "\\%"));
    }
    s
}

/// The job as one shell command line, run from anywhere: into its working directory, then
/// drillbook with its arguments.
fn command_line(j: &Job, bin: &str, workdir: &str) -> String {
    let cmd: Vec<String> = j.args.iter().map(|a| quote(a)).collect();
    format!(
        "cd {} && mkdir -p drills && {} {}",
        quote(workdir),
        quote(bin),
        cmd.join(" ")
    )
}

/// The start of the calendar's recurrences and its time stamp: `SOURCE_DATE_EPOCH` when set
/// (a reproducible file), else now.
fn start() -> chrono::DateTime<chrono::Utc> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|e| e.trim().parse::<i64>().ok())
        .and_then(|e| chrono::DateTime::from_timestamp(e, 0))
        .unwrap_or_else(chrono::Utc::now)
}

/// A procedure's title on one line: in a crontab comment or a unit's `Description=`, a line
/// break would start a line of its own (a cron job, an `ExecStart=`).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A value for a systemd unit file: `%` starts a specifier there.
fn unit_value(text: &str) -> String {
    text.replace('%', "%%")
}

fn systemd(rb: &Runbook, jobs: &[Job], bin: &str, workdir: &str) -> Result<String, String> {
    let mut s = String::new();
    let env_file = format!("/etc/drillbook/{}.env", slug(&rb.name));
    let needs_env = jobs
        .iter()
        .any(|j| !j.env.is_empty() || !j.optional_env.is_empty());
    let _ = writeln!(
        s,
        "# drillbook systemd units for runbook `{}` ({}): one .service and one .timer per job.",
        rb.name, rb.path
    );
    let _ = writeln!(s, "# Save each file under /etc/systemd/system/, then: systemctl daemon-reload && systemctl enable --now <name>.timer");
    if needs_env {
        let _ = writeln!(
            s,
            "# Write these variables into {env_file} (NAME=value lines, readable by root only):"
        );
        env_comments(jobs, &mut s);
    }
    for j in jobs {
        let unit = format!("drillbook-{}-{}", slug(&rb.name), slug(&j.name));
        let calendar = j.cron.on_calendar().ok_or_else(|| {
            format!(
                "the schedule `{}` of `{}` restricts both the day of month and the day of week, which a systemd calendar cannot express",
                j.cron.as_str(),
                j.name
            )
        })?;
        let cmd: Vec<String> = j.args.iter().map(|a| quote(a)).collect();
        let _ = writeln!(s, "\n# ---- {unit}.service");
        let _ = writeln!(s, "[Unit]\nDescription=drillbook {}: {}\nWants=network-online.target\nAfter=network-online.target\n", j.name, unit_value(&one_line(&j.what)));
        let _ = writeln!(
            s,
            "[Service]\nType=oneshot\nWorkingDirectory={}",
            unit_value(workdir)
        );
        if needs_env {
            let _ = writeln!(s, "EnvironmentFile={env_file}");
        }
        let _ = writeln!(
            s,
            "ExecStart={} {}",
            unit_value(&quote(bin)),
            unit_value(&cmd.join(" "))
        );
        let _ = writeln!(s, "\n# ---- {unit}.timer");
        let _ = writeln!(
            s,
            "[Unit]\nDescription=Schedule of {unit} ({} in cron, UTC)\n",
            j.cron.as_str()
        );
        let _ = writeln!(
            s,
            "[Timer]\nOnCalendar={calendar}\nPersistent=false\nUnit={unit}.service\n"
        );
        let _ = writeln!(s, "[Install]\nWantedBy=timers.target");
    }
    Ok(s)
}

/// Every variable a job reads, plus where the history lives on a runner or in a container
/// that does not keep files: `DRILLBOOK_HISTORY` (e.g. a `postgres://` store).
fn with_history(j: &Job) -> BTreeSet<String> {
    let mut env = j.env.clone();
    env.extend(j.optional_env.iter().cloned());
    env.insert("DRILLBOOK_HISTORY".into());
    env
}

fn github(rb: &Runbook, jobs: &[Job]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# .github/workflows/drillbook-{}.yml — drillbook schedules for runbook `{}` (GitHub cron is UTC).", slug(&rb.name), rb.name);
    let _ = writeln!(
        s,
        "# Add the environment variables below as repository secrets."
    );
    let _ = writeln!(s, "name: drillbook {}\non:\n  schedule:", rb.name);
    for j in jobs {
        let _ = writeln!(s, "    - cron: '{}'  # {}", j.cron.as_str(), j.name);
    }
    s.push_str("  workflow_dispatch:\n    inputs:\n      job:\n        description: Which job to run now\n        required: true\n        type: choice\n        options:\n");
    for j in jobs {
        let _ = writeln!(s, "          - {}", j.name);
    }
    s.push_str("jobs:\n");
    for j in jobs {
        let _ = writeln!(s, "  {}:", slug(&j.name));
        let _ = writeln!(
            s,
            "    if: github.event.schedule == '{c}' || inputs.job == '{n}'",
            c = j.cron.as_str(),
            n = j.name
        );
        match j.host_needs.first() {
            Some((kind, need)) => {
                let _ = writeln!(s, "    # `{kind}` needs {need}: a hosted runner has none of it, so this job runs on a self-hosted runner that has");
                s.push_str("    runs-on: self-hosted\n");
            }
            None => s.push_str("    runs-on: ubuntu-latest\n"),
        }
        s.push_str("    timeout-minutes: 120\n");
        {
            s.push_str("    env:\n");
            for e in &with_history(j) {
                let _ = writeln!(s, "      {e}: ${{{{ secrets.{e} }}}}");
            }
        }
        s.push_str("    steps:\n      - uses: actions/checkout@v4\n      - name: Install drillbook\n        run: cargo install --locked --path .\n");
        let _ = writeln!(
            s,
            "      - name: drillbook {}\n        run: drillbook {}",
            j.name,
            j.args.join(" ")
        );
        // a job killed by its timeout leaves its scratch servers (a self-hosted runner keeps
        // them) and Neon branches: removed whatever happened
        let _ = writeln!(
            s,
            "      - name: Remove what a killed run left\n        if: always()\n        run: drillbook gc --yes {}",
            rb.path
        );
        s.push_str("      - name: Keep the drill logs\n        if: always()\n        uses: actions/upload-artifact@v4\n        with:\n");
        let _ = writeln!(s, "          name: drillbook-{}\n          path: drills/\n          if-no-files-found: ignore", slug(&j.name));
    }
    s
}

fn kubernetes(rb: &Runbook, jobs: &[Job], image: &str) -> String {
    let secret = format!("drillbook-{}", slug(&rb.name));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# drillbook CronJobs for runbook `{}` ({}). Times are UTC (spec.timeZone).",
        rb.name, rb.path
    );
    let _ = writeln!(s, "# Create the Secret `{secret}` with the keys named under env; the image must hold drillbook and the runbook.");
    for j in jobs {
        let name: String = format!("drillbook-{}-{}", slug(&rb.name), slug(&j.name))
            .chars()
            .take(52)
            .collect();
        s.push_str("---\n");
        if let Some((kind, need)) = j.host_needs.first() {
            let _ = writeln!(
                s,
                "# `{kind}` needs {need}: put them in the image or mount them as volumes"
            );
        }
        let _ = writeln!(s, "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {}\n  labels:\n    app.kubernetes.io/name: drillbook", name.trim_end_matches('-'));
        let _ = writeln!(s, "spec:\n  schedule: \"{}\"\n  timeZone: Etc/UTC\n  concurrencyPolicy: Forbid\n  startingDeadlineSeconds: 3600\n  successfulJobsHistoryLimit: 3\n  failedJobsHistoryLimit: 3", j.cron.as_str());
        s.push_str("  jobTemplate:\n    spec:\n      backoffLimit: 0\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n            - name: drillbook\n");
        let _ = writeln!(s, "              image: {image}");
        let args: Vec<String> = j
            .args
            .iter()
            .map(|a| format!("\"{}\"", a.replace('"', "\\\"")))
            .collect();
        let _ = writeln!(s, "              args: [{}]", args.join(", "));
        {
            s.push_str("              env:\n");
            for e in with_history(j) {
                let optional = if j.env.contains(&e) {
                    ""
                } else {
                    "\n                      optional: true"
                };
                let _ = writeln!(s, "                - name: {e}\n                  valueFrom:\n                    secretKeyRef:\n                      name: {secret}\n                      key: {e}{optional}");
            }
        }
    }
    s
}
