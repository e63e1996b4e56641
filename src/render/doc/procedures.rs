//! The recovery procedures: each procedure's heading, purpose, parameters, steps (what
//! drillbook does and what a person does instead) and validations, and the disaster
//! scenarios that link to them.

use serde_json::{json, Value};

use super::by_hand::by_hand;
use super::checks::{a_summary, has_sql, short, validation};
use super::schedule::schedule_text;
use super::text::{capitalized, code, codes, db_label, md, prose, wrap, Headings};
use crate::kind::{Restore, Scratch, StepKind};
use crate::runbook::{ParamValue, Procedure, ProcedureKind, RtoMark, Runbook, Step};

/// What a procedure restores, for the procedures table: a full restore when any step does
/// one, else a point-in-time restore when any step does that.
fn restores(p: &Procedure) -> &'static str {
    let declared: Vec<Restore> = p
        .steps
        .iter()
        .filter_map(|s| s.kind.effects().restores)
        .collect();
    let full = declared.iter().rev().find_map(|r| match r {
        Restore::Full(what) => Some(*what),
        Restore::PointInTime => None,
    });
    match (full, declared.is_empty()) {
        (Some(f), _) => f,
        (None, false) => "point-in-time restore",
        (None, true) => "no restore step",
    }
}

/// What the procedure's steps create that drillbook removes afterwards, in words (from each
/// kind's declared scratch resources); None when they create nothing.
fn creates(p: &Procedure) -> Option<String> {
    let mut what: Vec<&str> = Vec::new();
    for s in p.steps.iter().chain(&p.cleanup) {
        let words = match s.kind.effects().scratch {
            Some(Scratch::LocalCluster) => "scratch PostgreSQL instances",
            Some(Scratch::Directory) => "scratch base backups",
            Some(Scratch::NeonBranch) => "Neon branches and snapshots",
            None => continue,
        };
        if !what.contains(&words) {
            what.push(words);
        }
    }
    (!what.is_empty()).then(|| what.join(", "))
}

pub(super) struct ProcedureDoc {
    pub(super) id: String,
    pub(super) heading: String,
    pub(super) json: Value,
}

impl ProcedureDoc {
    pub(super) fn new(runbook: &Runbook, p: &Procedure, headings: &mut Headings) -> ProcedureDoc {
        let heading = headings.claim(&p.title);
        let restores = restores(p);
        let kind = match p.kind {
            ProcedureKind::Drill => "drill",
            ProcedureKind::Recovery => "recovery",
        };
        let purpose = match (p.kind, restores) {
            (ProcedureKind::Drill, "no restore step") => {
                "A drill: it runs on scratch resources and never changes a protected target."
                    .to_owned()
            }
            (ProcedureKind::Drill, r) => format!(
                "A drill: it rehearses a {r} on scratch resources and never changes a \
                 protected target."
            ),
            (ProcedureKind::Recovery, "no restore step") => "A recovery for incidents.".into(),
            (ProcedureKind::Recovery, r) => format!("A recovery for incidents: {r}."),
        };
        let long = p.steps.len() + p.cleanup.len() >= 10;
        let steps: Vec<Value> = p
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| step_json(runbook, s, i + 1))
            .collect();
        let cleanup: Vec<Value> = p
            .cleanup
            .iter()
            .enumerate()
            .map(|(i, s)| step_json(runbook, s, i + 1))
            .collect();
        let validations: Vec<Value> = p
            .steps
            .iter()
            .filter_map(|s| {
                let checks = validation(runbook, &s.kind)?;
                Some(json!({
                    "id": s.id,
                    "title": prose(s.display_title()),
                    "kind": s.kind.name(),
                    "checks": md(&checks),
                    "line": wrap(&format!(
                        "**{}** ({}, {}): {}",
                        prose(s.display_title()),
                        code(&s.id),
                        s.kind.name(),
                        md(&checks)
                    ), 96),
                }))
            })
            .collect();
        let params: Vec<Value> = p
            .params
            .values()
            .map(|param| {
                let default = match (&param.default, param.secret) {
                    (None, _) => "required".to_owned(),
                    (Some(_), true) => code("***"),
                    (Some(v), false) => code(&param_text(v)),
                };
                json!({
                    "name": param.name,
                    "type": serde_json::to_value(param.ty).unwrap_or(Value::Null),
                    "default": md(&default),
                    "description": param.description.as_deref().map(prose).unwrap_or_else(|| "—".into()),
                    "secret": param.secret,
                })
            })
            .collect();
        let env: Vec<String> = runbook.needed_env(p).into_iter().collect();
        let json = json!({
            "id": p.id,
            "title": prose(&p.title),
            "heading": heading,
            "kind": kind,
            "restores": restores,
            "purpose": wrap(&purpose, 100),
            "description": p.description.as_deref().map(prose),
            "schedule": p.schedule.as_ref().map(|c| md(&schedule_text(c))),
            "run": md(&code(&format!("drillbook run {} {}", runbook.path, p.id))),
            "plan": md(&code(&format!("drillbook plan {} {}", runbook.path, p.id))),
            "env": (!env.is_empty()).then(|| md(&codes(&env))),
            // Continuation lines of a list item are indented past its marker ("10. ").
            "indent": if long { 4 } else { 3 },
            "pad": if long { "    " } else { "   " },
            "params_heading": headings.claim(&format!("Parameters of {}", p.id)),
            "params": params,
            "steps_heading": headings.claim(&format!("Steps of {}", p.id)),
            "steps": steps,
            "cleanup_heading": headings.claim(&format!("Cleanup of {}", p.id)),
            "cleanup": cleanup,
            "validations_heading": headings.claim(&format!("Validations of {}", p.id)),
            "validations": validations,
            "creates": creates(p),
        });
        ProcedureDoc {
            id: p.id.clone(),
            heading,
            json,
        }
    }
}

fn param_text(v: &ParamValue) -> String {
    match v {
        ParamValue::String(s) => s.clone(),
        ParamValue::Int(n) => n.to_string(),
        ParamValue::Bool(b) => b.to_string(),
        ParamValue::Duration(d) => d.to_string(),
        ParamValue::Timestamp(t) => t.to_string(),
    }
}

fn step_json(runbook: &Runbook, step: &Step, number: usize) -> Value {
    let hand = by_hand(runbook, &step.kind);
    let does = match &step.kind {
        StepKind::Manual(_) => {
            "shows the operator the instructions below and waits for their confirmation".into()
        }
        StepKind::Shell(_) => {
            let summary = step.kind.summary();
            let command = summary.strip_prefix("sh -c ").unwrap_or(&summary);
            md(&format!("runs {} in a shell", code(command)))
        }
        StepKind::Sql(sql) => md(&format!(
            "runs {} on {}{}",
            code(&short(&sql.query)),
            db_label(runbook, &sql.db),
            if sql.write {
                " (it may write)"
            } else {
                " (read only)"
            }
        )),
        StepKind::Assert(a) if !has_sql(a) => md(&format!("checks that {}", code(&a_summary(a)))),
        kind => md(&kind.summary()),
    };
    let mut bullets = vec![format!("drillbook does: {does}")];
    if let Some(when) = &step.when {
        bullets.push(md(&format!("Runs only when {}", code(when))));
    }
    let mut limits = Vec::new();
    if let Some(t) = step.timeout {
        limits.push(format!("timeout {t}"));
    }
    if let Some(r) = step.retries {
        limits.push(format!(
            "up to {} attempts, {} apart at first (doubling)",
            r.attempts, r.backoff
        ));
    }
    match step.rto {
        Some(RtoMark::Start) => limits.push("starts the RTO clock".into()),
        Some(RtoMark::End) => limits.push("stops the RTO clock".into()),
        None => {}
    }
    if step.continue_on_error {
        limits.push("a failure is recorded but does not stop the procedure".into());
    }
    if !limits.is_empty() {
        bullets.push(md(&capitalized(&limits.join("; "))));
    }
    if step.destructive || step.kind.is_destructive() {
        bullets.push(
            "Destructive: drillbook asks for an explicit approval before it runs (`--yes` \
             gives it in advance), and refuses it against a protected target in a drill"
                .into(),
        );
    }
    // last: the code block or instructions that follow continue it
    bullets.push(format!("By hand: {}", md(&hand.text)));
    json!({
        "number": number,
        "id": step.id,
        "title": prose(step.display_title()),
        "kind": step.kind.name(),
        "description": step.description.as_deref().map(prose),
        "bullets": bullets.iter().map(|b| wrap(b, 92)).collect::<Vec<_>>(),
        "instructions": hand.instructions,
        "code": hand.code.map(|(lang, text)| json!({ "lang": lang, "text": text })),
    })
}

pub(super) fn scenarios(
    runbook: &Runbook,
    procedures: &[ProcedureDoc],
    headings: &mut Headings,
) -> Vec<Value> {
    runbook
        .scenarios
        .iter()
        .map(|s| {
            let answer = procedures.iter().find(|p| p.id == s.procedure);
            json!({
                "heading": headings.claim(&s.title),
                "procedure": s.procedure,
                "procedure_heading": answer.map(|p| p.heading.clone()),
                "notes": s.notes.as_deref().map(prose),
            })
        })
        .collect()
}
