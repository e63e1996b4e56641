//! `shell`: runs a command in its own process group, so a timeout or an interrupt stops the
//! whole tree it started. Values reach it only as environment variables.

use std::process::Stdio;

use indexmap::IndexMap;
use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Run, StepCx, StepError};
use crate::kind::shell::{Shell, ShellSpec};
use crate::record::Outputs;
use crate::runbook::TargetKind;

/// How much of stdout and stderr is kept (the tail).
const TAIL_BYTES: usize = 16 * 1024;

impl Run for Shell {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let empty = ShellSpec {
            run: None,
            argv: None,
            env: IndexMap::new(),
            dir: None,
            target: None,
            success_codes: None,
        };
        let (spec, script) = match self {
            Shell::Script(s) => (&empty, Some(s.as_str())),
            Shell::Full(s) => (s, s.run.as_deref()),
        };
        let mut cmd = match (script, &spec.argv) {
            (Some(script), None) => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(script);
                c
            }
            (None, Some(argv)) if !argv.is_empty() => {
                let mut c = tokio::process::Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            _ => {
                return Err(StepError::failed(
                    "shell step needs exactly one of `run` or a non-empty `argv`",
                ))
            }
        };
        if let Some(name) = &spec.target {
            match cx.runbook.targets.get(name).map(|t| &t.kind) {
                Some(TargetKind::Postgres(pg)) => {
                    let url = crate::template::render(cx.templates, &pg.url, cx.vars)
                        .map_err(|e| StepError::failed(format!("cannot render target `{name}`: {}", crate::template::describe_error(&e))))?;
                    cmd.env("DATABASE_URL", url.to_string());
                }
                Some(_) => return Err(StepError::failed(format!("target `{name}` is not a postgres target: a shell step can only be given a postgres URL"))),
                None => return Err(StepError::failed(format!("no target `{name}`"))),
            }
        }
        cmd.envs(spec.env.iter().map(|(k, v)| (k, &v.0)));
        cmd.env(
            "DRILLBOOK_RUN_ID",
            cx.vars
                .get_attr("run")
                .and_then(|r| r.get_attr("id"))
                .map(|v| v.to_string())
                .unwrap_or_default(),
        );
        cmd.env("DRILLBOOK_STEP", cx.step_id);
        if let Some(dir) = &spec.dir {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let program = match (script, &spec.argv) {
            (Some(_), _) => "sh".to_owned(),
            (None, Some(argv)) => argv[0].clone(),
            _ => String::new(),
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| StepError::unavailable(format!("cannot start `{program}`: {e}")))?;
        let group = ProcessGroup(child.id());
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (status, out, err) = tokio::join!(child.wait(), tail(stdout), tail(stderr));
        group.disarm();
        let status =
            status.map_err(|e| StepError::unavailable(format!("waiting for `{program}`: {e}")))?;
        let code = status.code();
        let mut outputs = Outputs::new();
        outputs.insert(
            "exit_code".into(),
            code.map_or(serde_json::Value::Null, Into::into),
        );
        outputs.insert("stdout".into(), out.clone().into());
        outputs.insert("stderr".into(), err.clone().into());
        let ok_codes = spec.success_codes.clone().unwrap_or_else(|| vec![0]);
        match code {
            Some(c) if ok_codes.contains(&c) => Ok(outputs),
            Some(c) => {
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .or_else(|| out.lines().rev().find(|l| !l.trim().is_empty()));
                let detail = last.map(|l| format!(": {}", l.trim())).unwrap_or_default();
                Err(
                    StepError::failed(format!("`{program}` exited with code {c}{detail}"))
                        .with_outputs(outputs),
                )
            }
            None => Err(
                StepError::failed(format!("`{program}` was killed by a signal"))
                    .with_outputs(outputs),
            ),
        }
    }
}

/// Reads a pipe to the end, keeping the last [`TAIL_BYTES`] as text.
async fn tail<R: AsyncRead + Unpin>(pipe: Option<R>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * TAIL_BYTES {
                    kept.drain(..kept.len() - TAIL_BYTES);
                }
            }
        }
    }
    if kept.len() > TAIL_BYTES {
        kept.drain(..kept.len() - TAIL_BYTES);
    }
    String::from_utf8_lossy(&kept).trim_end().to_owned()
}

/// How long a stopped command's processes have to exit after SIGTERM before they get
/// SIGKILL.
const GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Process groups sent SIGTERM because their step ended early, with when.
static STOPPING: std::sync::Mutex<Vec<(Pid, std::time::Instant)>> =
    std::sync::Mutex::new(Vec::new());

/// Signals the command's whole process group if the step is dropped before the command
/// ended (timeout or interrupt): SIGTERM at once; [`end_stopped`] waits for the group and
/// sends SIGKILL after the grace period.
pub(crate) struct ProcessGroup(pub(crate) Option<u32>);

impl ProcessGroup {
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Some(group) = self.0.and_then(|p| Pid::from_raw(i32::try_from(p).ok()?)) else {
            return;
        };
        signal_group(group, Signal::TERM);
        STOPPING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((group, std::time::Instant::now()));
    }
}

/// Waits until every process of the groups stopped so far has exited: what the engine does
/// before cleanup starts (a cleanup step must not race a command still running), and before
/// drillbook exits. A group still there after [`GRACE`] — or at once when `hurry` fires (a
/// second interrupt) — gets SIGKILL.
pub async fn end_stopped(hurry: &crate::cancel::Cancel) {
    loop {
        let now = std::time::Instant::now();
        let pending: Vec<(Pid, std::time::Instant)> = {
            let mut stopping = STOPPING
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            stopping.retain(|(g, _)| group_alive(*g));
            stopping.clone()
        };
        if pending.is_empty() {
            return;
        }
        let mut killed_all = true;
        for (group, since) in &pending {
            if hurry.is_cancelled() || now.duration_since(*since) >= GRACE {
                signal_group(*group, Signal::KILL);
            } else {
                killed_all = false;
            }
        }
        // SIGKILL cannot be ignored: what is left is only the kernel finishing the job
        let pause = if killed_all { 10 } else { 50 };
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    }
}

/// True while a process of `group` runs. Zombies do not count: a process that has exited
/// but whose parent has not collected it yet (init, in a container without one that reaps)
/// holds nothing.
fn group_alive(group: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // no /proc: ask the kernel, which counts zombies too
        return rustix::process::test_kill_process_group(group).is_ok();
    };
    let want = group.as_raw_nonzero().get();
    entries.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        pgrp == Some(want) && state != "Z" && state != "X"
    })
}

/// The group was created for this command (`process_group(0)`), so it is ours to signal; an
/// error only means every process in it has already exited.
fn signal_group(group: Pid, signal: Signal) {
    let _ = kill_process_group(group, signal);
}
