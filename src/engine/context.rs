//! What templates see during a run (`params`, `env`, `steps`, `run`, `now`), and the
//! redactor built from the same inputs.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::redact::Redactor;
use crate::runbook::{Procedure, Runbook};
use crate::timestamp::rfc3339;

/// Options of one run, from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--param k=v`, in order given.
    pub params: Vec<(String, String)>,
    /// `--yes`: grant confirmations without asking.
    pub yes: bool,
    pub dry_run: bool,
    pub operator: String,
    /// The history store (`--history`) that `history.*` checks read; None for the default.
    pub history: Option<String>,
    /// What the checks of one check run share (a tool's answer, asked once); None in a
    /// drill, whose steps change what they read.
    pub shared: Option<crate::steps::shared::Shared>,
}

/// The longest operator name, in characters: it is a column of `history list` and a line
/// of every record, drill log and alert.
pub const MAX_OPERATOR: usize = 200;

/// An operator name that cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the operator name from {source_name} {problem}: set DRILLBOOK_OPERATOR to a name on one line of at most {MAX_OPERATOR} characters")]
pub struct OperatorError {
    source_name: &'static str,
    problem: String,
}

/// `DRILLBOOK_OPERATOR`, else `user@host`; refused when longer than [`MAX_OPERATOR`] or
/// not on one line.
pub fn operator() -> Result<String, OperatorError> {
    let (name, source_name) = match std::env::var("DRILLBOOK_OPERATOR") {
        Ok(op) if !op.trim().is_empty() => (op.trim().to_owned(), "DRILLBOOK_OPERATOR"),
        _ => (user_at_host(), "USER@hostname"),
    };
    let chars = name.chars().count();
    let problem = if chars > MAX_OPERATOR {
        format!("is {chars} characters long")
    } else if name.chars().any(char::is_control) {
        "holds a control character (a line break, a tab)".to_owned()
    } else {
        return Ok(name);
    };
    Err(OperatorError {
        source_name,
        problem,
    })
}

/// `user@host`, from the environment, /proc and /etc.
fn user_at_host() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_uid)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// The login name of this process's uid, from /proc and /etc/passwd (no libc calls).
fn user_from_uid() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_owned())
    })
}

/// The mutable state templates read, growing as steps finish.
#[derive(Debug)]
pub struct Vars {
    pub params: Map<String, Value>,
    pub env: Map<String, Value>,
    pub steps: Map<String, Value>,
    pub run: Map<String, Value>,
}

impl Vars {
    pub fn new(
        runbook: &Runbook,
        procedure: &Procedure,
        params: Map<String, Value>,
        env: Map<String, Value>,
        id: &str,
        started: DateTime<Utc>,
        opts: &RunOptions,
    ) -> Vars {
        let run = json!({
            "id": id,
            "started_at": rfc3339(started),
            "operator": opts.operator,
            "procedure": procedure.id,
            "runbook": runbook.name,
            "kind": procedure.kind,
            "dry_run": opts.dry_run,
        });
        Vars {
            params,
            env,
            steps: Map::new(),
            run: run.as_object().cloned().unwrap_or_default(),
        }
    }

    /// The template context as of now; `extra` adds roots such as `result`.
    pub fn context(&self, extra: Option<(&str, Value)>) -> minijinja::Value {
        let mut root = json!({
            "params": self.params,
            "env": self.env,
            "steps": self.steps,
            "run": self.run,
            "now": rfc3339(Utc::now()),
        });
        if let (Some((k, v)), Some(obj)) = (extra, root.as_object_mut()) {
            obj.insert(k.to_owned(), v);
        }
        minijinja::Value::from_serialize(&root)
    }
}

/// Builds the redactor for a run: every secret of drillbook's environment (a `shell` step
/// inherits it all, whatever the runbook reads), the variables the runbook declares secret,
/// secret params, and the password of every connection string.
pub fn redactor(runbook: &Runbook, procedure: &Procedure, params: &Map<String, Value>) -> Redactor {
    let mut r = Redactor::from_process_env(&runbook.secrets);
    for (name, p) in &procedure.params {
        if p.secret {
            if let Some(v) = params.get(name) {
                r.add(&v.as_str().map_or_else(|| v.to_string(), str::to_owned));
            }
        }
    }
    r
}
