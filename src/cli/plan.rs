//! `drillbook plan`: what a run would do — resolved params, each step with its kind, timeout
//! and destructive flag, and the cleanup that will run — without doing any of it.

use std::fmt::Write as _;

use chrono::Utc;
use serde_json::json;

use super::{exit, load, out, out_json, Format};
use crate::engine::{find_procedure, plan_params};
use crate::runbook::{Procedure, RtoMark, Runbook, Step};

/// Show what `run` would do: params, steps, timeouts, destructive steps, cleanup. Without a
/// procedure, list the runbook's procedures.
///
/// Templates whose values are known before a run (params, environment variables that are
/// set and do not look secret, `now`) are shown rendered.
///
/// Exit codes: 0 · 1 a preflight check failed · 2 invalid runbook, unknown procedure or bad
/// params · 3 the preflight could not run (missing env, Neon unreachable or key refused).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook plan runbooks/hello.yaml\n  drillbook plan runbooks/hello.yaml smoke --param greeting=hi --format json"
)]
pub struct Args {
    /// Runbook file.
    runbook: String,
    /// Procedure id; without it, the procedures are listed.
    procedure: Option<String>,
    /// Set a param: `--param target_time=now-2h` (repeatable).
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE", value_parser = super::parse_kv)]
    params: Vec<(String, String)>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also check, read-only, what can be checked before a run: every point in time a Neon
    /// step will use lies inside its project's restore window (needs NEON_API_KEY). Exits 1
    /// when a check fails, 3 when it could not be made.
    #[arg(long)]
    preflight: bool,
}

pub async fn run(args: &Args) -> anyhow::Result<u8> {
    let Some(rb) = load(&args.runbook) else {
        return Ok(exit::INVALID);
    };
    let Some(id) = &args.procedure else {
        match args.format {
            Format::Json => out_json(&procedures_json(&rb))?,
            Format::Text => out(&procedures_text(&rb)),
        }
        return Ok(exit::OK);
    };
    let procedure = match find_procedure(&rb, id) {
        Ok(p) => p,
        Err(e) => {
            say!("drillbook: error: {e}");
            return Ok(e.exit_code());
        }
    };
    let params = match plan_params(procedure, &args.params) {
        Ok(p) => p,
        Err(e) => {
            say!("drillbook: error: {e}");
            return Ok(e.exit_code());
        }
    };
    let now = Utc::now();
    let redact = |name: &str, v: serde_json::Value| {
        if procedure.params.get(name).is_some_and(|p| p.secret) {
            json!("***")
        } else {
            v
        }
    };
    let resolved: Vec<(String, String, serde_json::Value)> = params
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::to_value(v)
                    .map(|x| redact(k, x))
                    .unwrap_or_default()
                    .to_string()
                    .trim_matches('"')
                    .to_owned(),
                redact(k, v.resolve(now)),
            )
        })
        .collect();
    let preflight = if args.preflight {
        match crate::engine::preflight(&rb, procedure, &args.params).await {
            Ok(items) => Some(items),
            Err(e) => {
                say!("drillbook: error: {e}");
                return Ok(e.exit_code());
            }
        }
    } else {
        None
    };
    let values: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), v.resolve(now)))
        .collect();
    let does = |step: &Step| crate::engine::preview(&rb, procedure, step, &values, now);
    match args.format {
        Format::Json => {
            let steps = |steps: &[Step]| {
                steps
                    .iter()
                    .map(|s| step_json(s, &does(s)))
                    .collect::<Vec<_>>()
            };
            let plan = json!({
                "runbook": {"name": rb.name, "path": rb.path, "sha256": rb.sha256},
                "procedure": {"id": procedure.id, "title": procedure.title, "kind": procedure.kind},
                "params": resolved.iter().map(|(k, given, v)| (k.clone(), json!({"value": v, "given": given}))).collect::<serde_json::Map<_, _>>(),
                "env": env_status(&rb, procedure),
                "steps": steps(&procedure.steps),
                "cleanup": steps(&procedure.cleanup),
                "objectives": rb.objectives,
                "preflight": preflight,
            });
            out_json(&plan)?;
        }
        Format::Text => {
            let mut t = text(&rb, procedure, &resolved, &does);
            if let Some(items) = &preflight {
                t.push_str(&preflight_text(items));
            }
            out(&t);
        }
    }
    Ok(preflight.map_or(exit::OK, |items| preflight_exit(&items)))
}

fn preflight_text(items: &[crate::record::PreflightItem]) -> String {
    let mut s = String::from("\npreflight\n");
    if items.is_empty() {
        s.push_str("  nothing to check before the run\n");
    }
    for i in items {
        let mark = if i.ok { "ok  " } else { "FAIL" };
        let _ = writeln!(s, "  {mark} {}: {} — {}", i.step, i.check, i.detail);
    }
    s
}

fn preflight_exit(items: &[crate::record::PreflightItem]) -> u8 {
    use crate::record::ErrorClass;
    if items
        .iter()
        .any(|i| !i.ok && i.error_class == Some(ErrorClass::Unavailable))
    {
        exit::UNAVAILABLE
    } else if items.iter().any(|i| !i.ok) {
        exit::FAILED
    } else {
        exit::OK
    }
}

fn step_json(s: &Step, does: &str) -> serde_json::Value {
    json!({
        "id": s.id,
        "title": s.title,
        "kind": s.kind.name(),
        "does": does,
        "target": s.kind.target(),
        "when": s.when,
        "timeout": s.timeout,
        "retries": s.retries,
        "continue_on_error": s.continue_on_error,
        "destructive": s.destructive || s.kind.is_destructive(),
        "rto": s.rto,
        "needs": s.needs,
    })
}

/// Env vars the procedure reads, and whether each is set (values never shown).
fn env_status(rb: &Runbook, procedure: &Procedure) -> serde_json::Map<String, serde_json::Value> {
    rb.needed_env(procedure)
        .into_iter()
        .map(|name| {
            let set = std::env::var_os(&name).is_some();
            (name, json!(if set { "set" } else { "missing" }))
        })
        .collect()
}

/// The runbook's procedures, for `plan RUNBOOK`.
fn procedures_text(rb: &Runbook) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "runbook    {} ({})", rb.name, rb.path);
    let _ = writeln!(s, "\nprocedures");
    let width = rb.procedures.keys().map(String::len).max().unwrap_or(0);
    for p in rb.procedures.values() {
        let schedule = p
            .schedule
            .as_ref()
            .map(|c| format!("  [{}]", c.describe()))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:width$}  {:8}  {}{schedule}",
            p.id,
            p.kind.as_str(),
            p.title
        );
    }
    if !rb.checks.is_empty() {
        let n = rb.checks.len();
        let _ = writeln!(
            s,
            "\n{n} check{} (`drillbook check {}`)",
            if n == 1 { "" } else { "s" },
            rb.path
        );
    }
    let _ = writeln!(s, "\nplan one: drillbook plan {} <procedure>", rb.path);
    s
}

fn procedures_json(rb: &Runbook) -> serde_json::Value {
    json!({
        "runbook": {"name": rb.name, "path": rb.path, "sha256": rb.sha256},
        "procedures": rb.procedures.values().map(|p| json!({
            "id": p.id,
            "title": p.title,
            "kind": p.kind,
            "schedule": p.schedule.as_ref().map(|c| c.as_str()),
            "steps": p.steps.len(),
        })).collect::<Vec<_>>(),
        "checks": rb.checks.len(),
    })
}

fn text(
    rb: &Runbook,
    procedure: &Procedure,
    params: &[(String, String, serde_json::Value)],
    does: &dyn Fn(&Step) -> String,
) -> String {
    let mut s = String::new();
    let kind = procedure.kind.as_str();
    let _ = writeln!(
        s,
        "procedure  {} — {} ({kind})",
        procedure.id, procedure.title
    );
    let _ = writeln!(s, "runbook    {} ({})", rb.name, rb.path);
    if let Some(rto) = rb.objectives.rto {
        let _ = writeln!(
            s,
            "objective  RTO {rto}{}",
            rb.objectives
                .rpo
                .map(|r| format!(", RPO {r}"))
                .unwrap_or_default()
        );
    }
    if !params.is_empty() {
        let _ = writeln!(s, "\nparams");
        let width = params.iter().map(|(k, ..)| k.len()).max().unwrap_or(0);
        for (k, given, v) in params {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            let shown = if *given == v {
                v
            } else {
                format!("{given} → {v}")
            };
            let _ = writeln!(s, "  {k:width$}  {shown}");
        }
    }
    let env = env_status(rb, procedure);
    if !env.is_empty() {
        let _ = writeln!(s, "\nenvironment");
        for (k, v) in &env {
            let _ = writeln!(s, "  {k}  {}", v.as_str().unwrap_or_default());
        }
    }
    let _ = writeln!(s, "\nsteps");
    list(&mut s, &procedure.steps, does);
    if !procedure.cleanup.is_empty() {
        let _ = writeln!(
            s,
            "\ncleanup (always runs: after success, failure, timeout or interrupt)"
        );
        list(&mut s, &procedure.cleanup, does);
    }
    s
}

fn list(s: &mut String, steps: &[Step], does: &dyn Fn(&Step) -> String) {
    for (i, step) in steps.iter().enumerate() {
        let mut flags = Vec::new();
        if let Some(t) = step.timeout {
            flags.push(format!("timeout {t}"));
        }
        if let Some(r) = step.retries {
            flags.push(format!("{} attempts", r.attempts));
        }
        if step.destructive || step.kind.is_destructive() {
            flags.push("DESTRUCTIVE: needs approval".into());
        }
        match step.rto {
            Some(RtoMark::Start) => flags.push("RTO starts".into()),
            Some(RtoMark::End) => flags.push("RTO ends".into()),
            None => {}
        }
        if step.continue_on_error {
            flags.push("continue on error".into());
        }
        if let Some(w) = &step.when {
            flags.push(format!("when {w}"));
        }
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!("  [{}]", flags.join(", "))
        };
        let _ = writeln!(s, "  {}. {}  {}{flags}", i + 1, step.id, step.kind.name());
        if let Some(t) = &step.title {
            let _ = writeln!(s, "     {t}");
        }
        let _ = writeln!(s, "     → {}", does(step));
    }
}
