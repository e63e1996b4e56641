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
}

/// `DRILLBOOK_OPERATOR`, else `user@host`.
pub fn operator() -> String {
    if let Ok(op) = std::env::var("DRILLBOOK_OPERATOR") {
        if !op.trim().is_empty() {
            return op.trim().to_owned();
        }
    }
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
