//! `shell`: runs a command in its own process group, so a timeout or an interrupt stops the
//! whole tree it started. Values reach it only as environment variables.

use std::process::Stdio;

use indexmap::IndexMap;
use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Run, StepCx, StepError, Undo};
use crate::kind::shell::{JsonOutputs, Shell, ShellSpec};
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
            outputs: None,
            measure: None,
            nagios: false,
            undo: None,
        };
        let (spec, script) = match self {
            Shell::Script(s) => (&empty, Some(s.as_str())),
            Shell::Full(s) => (&**s, s.run.as_deref()),
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
        // the command's environment on top of drillbook's, in this order (later wins)
        let mut env: Vec<(String, String)> = Vec::new();
        if let Some(name) = &spec.target {
            match cx.runbook.targets.get(name).map(|t| &t.kind) {
                Some(TargetKind::Postgres(pg)) => {
                    let url = crate::template::render(cx.templates, &pg.url, cx.vars)
                        .map_err(|e| StepError::failed(format!("cannot render target `{name}`: {}", crate::template::describe_error(&e))))?;
                    env.push(("DATABASE_URL".into(), url.to_string()));
                }
                Some(_) => return Err(StepError::failed(format!("target `{name}` is not a postgres target: a shell step can only be given a postgres URL"))),
                None => return Err(StepError::failed(format!("no target `{name}`"))),
            }
        }
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.0.clone())));
        env.push(("DRILLBOOK_RUN_ID".into(), cx.run_id()));
        env.push(("DRILLBOOK_STEP".into(), cx.step_id.to_owned()));
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &spec.dir {
            cmd.current_dir(dir);
        }
        if let Some(undo) = &spec.undo {
            register_undo(cx, undo, &env, spec.dir.as_deref());
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
        // parsed stdout is read whole (up to a bound), not only its tail
        let keep = if spec.outputs.is_some() || spec.nagios {
            PARSED_BYTES
        } else {
            TAIL_BYTES
        };
        let (status, out, err) = tokio::join!(
            child.wait(),
            capture(stdout, keep),
            capture(stderr, TAIL_BYTES)
        );
        group.disarm();
        let status =
            status.map_err(|e| StepError::unavailable(format!("waiting for `{program}`: {e}")))?;
        let code = status.code();
        let err = tail_text(&err.bytes);
        let mut outputs = Outputs::new();
        outputs.insert(
            "exit_code".into(),
            code.map_or(serde_json::Value::Null, Into::into),
        );
        outputs.insert("stdout".into(), tail_text(&out.bytes).into());
        outputs.insert("stderr".into(), err.clone().into());
        if spec.nagios {
            return nagios(cx, spec, code, &out, outputs);
        }
        let ok_codes = spec.success_codes.clone().unwrap_or_else(|| vec![0]);
        match code {
            Some(c) if ok_codes.contains(&c) => parsed(cx, spec, &out, outputs),
            Some(c) => {
                let out = tail_text(&out.bytes);
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

/// Registers a step's `undo:` before its command starts, once per step (not again on a
/// retry or the next poll of a `wait`).
fn register_undo(
    cx: &StepCx<'_>,
    undo: &crate::kind::shell::ShellUndo,
    env: &[(String, String)],
    dir: Option<&str>,
) {
    let step = cx.step_id;
    if cx
        .undo
        .any(|u| matches!(u, Undo::Shell { step: s, .. } if s == step))
    {
        return;
    }
    // a value the run masks, or under a secret-looking name, never reaches the ledger
    let secret = env
        .iter()
        .filter(|(k, v)| crate::redact::is_secret_name(k) || cx.redactor.redact(v) != *v)
        .map(|(k, _)| k.clone())
        .collect();
    cx.created(Undo::Shell {
        step: step.to_owned(),
        what: format!("undo of step `{step}`: {}", undo.summary()),
        command: UndoCommand {
            argv: undo.argv(),
            env: env.to_vec(),
            secret,
            dir: dir.map(std::path::PathBuf::from),
        },
    });
}

/// A shell step's `undo:`, as registered when the step started: what the run, a last
/// resort after a second interrupt, and `gc` run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UndoCommand {
    /// The program and its arguments (`sh -c script` for a script).
    pub argv: Vec<String>,
    /// Its environment on top of drillbook's: the step's `DATABASE_URL`, `env`,
    /// `DRILLBOOK_RUN_ID` and `DRILLBOOK_STEP`.
    pub env: Vec<(String, String)>,
    /// The names in `env` whose values are secrets: never written to the ledger (`gc` takes
    /// them from its own environment).
    #[serde(default)]
    pub secret: Vec<String>,
    pub dir: Option<std::path::PathBuf>,
}

/// How long an undo command may run after cleanup before it is stopped.
pub const UNDO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// How long an undo command may run as the last resort, after a second interrupt.
pub const LAST_RESORT: std::time::Duration = std::time::Duration::from_secs(15);

impl UndoCommand {
    /// Runs it in its own process group, stdin `/dev/null`; stopped (SIGTERM, then SIGKILL
    /// through [`end_stopped`]) when it runs past `bound`. Exit 0 is success.
    pub async fn run(&self, bound: std::time::Duration) -> Result<(), StepError> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(StepError::failed("the undo has no command"));
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| StepError::unavailable(format!("cannot start `{program}`: {e}")))?;
        let group = ProcessGroup(child.id());
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let finished = tokio::time::timeout(bound, async {
            tokio::join!(
                child.wait(),
                capture(stdout, TAIL_BYTES),
                capture(stderr, TAIL_BYTES)
            )
        })
        .await;
        let Ok((status, out, err)) = finished else {
            // dropping `group` stops the command's processes
            return Err(StepError::failed(format!(
                "`{program}` did not finish within {}",
                crate::duration::human(bound)
            )));
        };
        group.disarm();
        let status =
            status.map_err(|e| StepError::unavailable(format!("waiting for `{program}`: {e}")))?;
        match status.code() {
            Some(0) => Ok(()),
            code => {
                let (out, err) = (tail_text(&out.bytes), tail_text(&err.bytes));
                let last = err
                    .lines()
                    .rev()
                    .chain(out.lines().rev())
                    .find(|l| !l.trim().is_empty())
                    .map(|l| format!(": {}", l.trim()))
                    .unwrap_or_default();
                Err(StepError::failed(match code {
                    Some(c) => format!("`{program}` exited with code {c}{last}"),
                    None => format!("`{program}` was killed by a signal{last}"),
                }))
            }
        }
    }

    /// The command as one line a person can run (without its secrets).
    pub fn by_hand(&self) -> String {
        let quote = |s: &str| {
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                s.to_owned()
            } else {
                format!("'{}'", s.replace('\'', "'\\''"))
            }
        };
        let env = self
            .env
            .iter()
            .filter(|(k, _)| !self.secret.contains(k))
            .map(|(k, v)| format!("{k}={}", quote(v)));
        let dir = self
            .dir
            .as_ref()
            .map(|d| format!("cd {} && ", quote(&d.display().to_string())))
            .unwrap_or_default();
        let words: Vec<String> = env.chain(self.argv.iter().map(|a| quote(a))).collect();
        format!("{dir}{}", words.join(" "))
    }
}

/// How much of stdout is read when it is parsed (`outputs: json`, `nagios`).
const PARSED_BYTES: usize = 8 * 1024 * 1024;

/// A monitoring plugin's result: exit 0 OK and 1 WARNING pass (the status is an output), 2
/// CRITICAL fails as *failed*, anything else is UNKNOWN (*unavailable*); the message is the
/// first line of stdout, without its performance data (after `|`).
fn nagios(
    cx: &StepCx<'_>,
    spec: &ShellSpec,
    code: Option<i32>,
    out: &Captured,
    mut outputs: Outputs,
) -> Result<Outputs, StepError> {
    let text = String::from_utf8_lossy(&out.bytes);
    let first = text.lines().next().unwrap_or("");
    let message = first.split('|').next().unwrap_or("").trim().to_owned();
    let status = match code {
        Some(0) => "OK",
        Some(1) => "WARNING",
        Some(2) => "CRITICAL",
        _ => "UNKNOWN",
    };
    outputs.insert("status".into(), status.into());
    outputs.insert("message".into(), message.clone().into());
    let exit = code.map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit {c}"));
    let said = if message.is_empty() {
        "no message on stdout".to_owned()
    } else {
        message
    };
    match status {
        "OK" | "WARNING" => parsed(cx, spec, out, outputs),
        "CRITICAL" => Err(StepError::failed(format!("{said} ({exit})")).with_outputs(outputs)),
        _ => Err(StepError::unavailable(format!("{said} ({exit}: UNKNOWN)")).with_outputs(outputs)),
    }
}

/// Adds the outputs of a successful command's parsed stdout (`outputs: json`), and checks
/// its measure is a number.
fn parsed(
    cx: &StepCx<'_>,
    spec: &ShellSpec,
    out: &Captured,
    mut outputs: Outputs,
) -> Result<Outputs, StepError> {
    let step = cx.step_id;
    if let Some(form) = &spec.outputs {
        let object = match json_object(out) {
            Ok(o) => o,
            Err(why) => {
                return Err(StepError::unavailable(format!(
                    "step `{step}`: `outputs: json` needs a JSON object on stdout, and {why}"
                ))
                .with_outputs(outputs))
            }
        };
        if let JsonOutputs::Named(names) = form {
            let missing: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| !object.contains_key(*n))
                .collect();
            if !missing.is_empty() {
                let keys: Vec<&str> = object.keys().map(String::as_str).take(20).collect();
                return Err(StepError::unavailable(format!(
                    "step `{step}`: stdout's JSON object has no `{}` (named in `outputs`); its keys: {}",
                    missing.join("`, `"),
                    if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
                ))
                .with_outputs(outputs));
            }
        }
        for (key, value) in object {
            if outputs.contains_key(&key) || (spec.nagios && (key == "status" || key == "message"))
            {
                return Err(StepError::unavailable(format!(
                    "step `{step}`: stdout's JSON key `{key}` would replace the step's own output `{key}`"
                ))
                .with_outputs(outputs));
            }
            outputs.insert(key, value);
        }
    }
    if let Some(m) = &spec.measure {
        let value = outputs.get(&m.output);
        if value.and_then(crate::kind::measure_value).is_none() {
            let shown = value.map_or_else(|| "nothing".to_owned(), |v| start_of(&v.to_string()));
            return Err(StepError::unavailable(format!(
                "step `{step}`: the measure `{}` is not a number: {shown}",
                m.output
            ))
            .with_outputs(outputs));
        }
    }
    Ok(outputs)
}

/// Stdout as a JSON object, or why it is not one (quoting its start).
fn json_object(out: &Captured) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    if out.cut {
        return Err(format!(
            "stdout is longer than {} MiB",
            PARSED_BYTES / 1024 / 1024
        ));
    }
    let text = String::from_utf8_lossy(&out.bytes);
    if text.trim().is_empty() {
        return Err("stdout is empty".to_owned());
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(o)) => Ok(o),
        Ok(other) => Err(format!(
            "stdout holds {}: {}",
            match other {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            },
            start_of(&text)
        )),
        Err(e) => Err(format!("stdout is not JSON ({e}): {}", start_of(&text))),
    }
}

/// The start of a text, quoted, for a message: its first 80 characters on one line.
fn start_of(text: &str) -> String {
    let one_line: String = text
        .trim()
        .chars()
        .take(80)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let more = if text.trim().chars().count() > 80 {
        " …"
    } else {
        ""
    };
    format!("`{}`{more}", one_line.replace('`', "'"))
}

/// What was read from a pipe: its last bytes, and whether more came before them.
struct Captured {
    bytes: Vec<u8>,
    cut: bool,
}

/// The last [`TAIL_BYTES`] of `bytes` as text, trailing space trimmed.
fn tail_text(bytes: &[u8]) -> String {
    let from = bytes.len().saturating_sub(TAIL_BYTES);
    String::from_utf8_lossy(&bytes[from..])
        .trim_end()
        .to_owned()
}

/// Reads a pipe to the end, keeping its last `keep` bytes.
async fn capture<R: AsyncRead + Unpin>(pipe: Option<R>, keep: usize) -> Captured {
    let mut kept = Captured {
        bytes: Vec::new(),
        cut: false,
    };
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.bytes.extend_from_slice(&buf[..n]);
                if kept.bytes.len() > 2 * keep {
                    kept.bytes.drain(..kept.bytes.len() - keep);
                    kept.cut = true;
                }
            }
        }
    }
    if kept.bytes.len() > keep {
        kept.bytes.drain(..kept.bytes.len() - keep);
        kept.cut = true;
    }
    kept
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
