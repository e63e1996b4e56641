//! Checks made before a procedure changes anything, so that an hour of restore is not spent
//! to learn what could be known at once: every PostgreSQL target a step will connect to
//! answers (a wrong password is found first); a `local.restore` has a base backup that fits
//! its target and an archive that reaches it; a `pgbackrest.restore`'s stanza or a
//! `barman.recover`'s server can be read and has a backup that reaches its target; and every
//! point in time a step declares it
//! acts at (`Effects::at`: a Neon branch, restore, snapshot or schema diff) lies inside its
//! project's restore window. What depends on an earlier step's output is decided when that
//! step has run (and checked by the step itself before it mutates anything).

use chrono::{DateTime, Utc};

use crate::kind::PointInTime;
use crate::kind::StepKind;
use crate::record::{ErrorClass, PreflightItem};
use crate::runbook::{Procedure, Runbook, Step, TargetKind};
use crate::steps::neon::{place_in, within_window, Point};

/// True when the procedure has anything to check before it runs: a step that declares it
/// acts at a point in time, a PostgreSQL target a step connects to, or a `local.restore`.
pub fn needed(runbook: &Runbook, procedure: &Procedure) -> bool {
    procedure.steps.iter().any(|s| {
        s.kind.effects().at.is_some()
            || matches!(
                s.kind,
                StepKind::LocalRestore(_)
                    | StepKind::PgbackrestRestore(_)
                    | StepKind::BarmanRecover(_)
            )
            || !connected_targets(runbook, s).is_empty()
    })
}

/// The `postgres` targets, and `local` targets with a `url`, that a step connects to.
fn connected_targets<'a>(runbook: &Runbook, step: &'a Step) -> Vec<&'a str> {
    step.kind
        .connects()
        .into_iter()
        .filter(|name| match runbook.targets.get(*name).map(|t| &t.kind) {
            Some(TargetKind::Postgres(_)) => true,
            Some(TargetKind::Local(l)) => l.url.is_some(),
            _ => false,
        })
        .collect()
}

/// Connects once to every PostgreSQL target the procedure's steps will connect to.
async fn connections(
    runbook: &Runbook,
    procedure: &Procedure,
    templates: &minijinja::Environment<'static>,
    vars: &minijinja::Value,
) -> Vec<PreflightItem> {
    let mut seen = std::collections::HashSet::new();
    let mut items = Vec::new();
    for step in &procedure.steps {
        for name in connected_targets(runbook, step) {
            if !seen.insert(name) {
                continue;
            }
            let outcome = crate::steps::db::answers(runbook, templates, vars, name).await;
            items.push(finding(&step.id, "connect", outcome));
        }
    }
    items
}

/// A preflight item from a check's outcome.
fn finding(
    step: &str,
    check: &str,
    outcome: Result<String, crate::steps::StepError>,
) -> PreflightItem {
    match outcome {
        Ok(detail) => PreflightItem {
            step: step.to_owned(),
            check: check.to_owned(),
            ok: true,
            detail,
            error_class: None,
        },
        Err(e) => PreflightItem {
            step: step.to_owned(),
            check: check.to_owned(),
            ok: false,
            detail: e.message,
            error_class: Some(e.class),
        },
    }
}

/// What each `local.restore` whose fields are known before the run can check.
fn local_restores(
    runbook: &Runbook,
    procedure: &Procedure,
    templates: &minijinja::Environment<'static>,
    vars: &minijinja::Value,
    now: DateTime<Utc>,
) -> Vec<PreflightItem> {
    let mut items = Vec::new();
    for step in &procedure.steps {
        if !matches!(step.kind, StepKind::LocalRestore(_)) {
            continue;
        }
        // fields read from earlier steps' outputs are known only when the step runs, which
        // checks them itself before it restores anything
        let Ok(StepKind::LocalRestore(r)) =
            super::executor::render_kind(step, templates, vars, false)
        else {
            continue;
        };
        for (check, outcome) in
            crate::steps::local::preflight::restore(&r, runbook, templates, vars, now)
        {
            items.push(finding(&step.id, check, outcome));
        }
    }
    items
}

/// What each `pgbackrest.restore` and `barman.recover` whose fields are known before the
/// run can check: the stanza or server can be read and a backup reaches the target (one
/// tool invocation each).
async fn tool_restores(
    procedure: &Procedure,
    templates: &minijinja::Environment<'static>,
    vars: &minijinja::Value,
    now: DateTime<Utc>,
) -> Vec<PreflightItem> {
    let mut items = Vec::new();
    for step in &procedure.steps {
        if !matches!(
            step.kind,
            StepKind::PgbackrestRestore(_) | StepKind::BarmanRecover(_)
        ) {
            continue;
        }
        // fields from earlier steps' outputs: the step checks them itself before restoring
        let found = match super::executor::render_kind(step, templates, vars, false) {
            Ok(StepKind::PgbackrestRestore(r)) => {
                crate::steps::local::pgbackrest::preflight(&r, now).await
            }
            Ok(StepKind::BarmanRecover(r)) => crate::steps::barman::preflight(&r, now).await,
            _ => continue,
        };
        for (check, outcome) in found {
            items.push(finding(&step.id, check, outcome));
        }
    }
    items
}

/// Checks every point in time the procedure's steps name, with the template context of the
/// run's start (`params`, `env`, `run`).
pub async fn check(
    runbook: &Runbook,
    procedure: &Procedure,
    templates: &minijinja::Environment<'static>,
    vars: &minijinja::Value,
    now: DateTime<Utc>,
) -> Vec<PreflightItem> {
    let mut items = connections(runbook, procedure, templates, vars).await;
    items.extend(local_restores(runbook, procedure, templates, vars, now));
    items.extend(tool_restores(procedure, templates, vars, now).await);
    let mut projects: std::collections::HashMap<
        String,
        Result<crate::neon::Project, crate::steps::StepError>,
    > = std::collections::HashMap::new();
    for step in &procedure.steps {
        let Some(PointInTime { target, at }) = step.kind.effects().at else {
            continue;
        };
        let item = |ok: bool, detail: String, class: Option<ErrorClass>| PreflightItem {
            step: step.id.clone(),
            check: "restore window".into(),
            ok,
            detail,
            error_class: class,
        };
        // a point taken from an earlier step's output is checked when the step runs
        let Ok(rendered) = crate::template::render(templates, at, vars) else {
            items.push(item(
                true,
                format!(
                    "`{at}` is known only at run time; the step checks it before changing anything"
                ),
                None,
            ));
            continue;
        };
        let text = rendered
            .as_str()
            .map_or_else(|| rendered.to_string(), str::to_owned);
        let point = match Point::parse(&text, now) {
            Ok(p) => p,
            Err(e) => {
                items.push(item(false, e, Some(ErrorClass::Failed)));
                continue;
            }
        };
        let place = match place_in(runbook, templates, vars, target) {
            Ok(p) => p,
            Err(e) => {
                items.push(item(false, e.message, Some(e.class)));
                continue;
            }
        };
        if !projects.contains_key(&place.project) {
            let fetched = match crate::steps::neon::client() {
                Ok(c) => c.project(&place.project).await.map_err(Into::into),
                Err(e) => Err(e),
            };
            projects.insert(place.project.clone(), fetched);
        }
        match &projects[&place.project] {
            Ok(project) => match within_window(project, &point, now) {
                Ok(d) => items.push(item(true, d, None)),
                Err(d) => items.push(item(false, d, Some(ErrorClass::Failed))),
            },
            Err(e) => items.push(item(
                false,
                format!("cannot check {}: {}", point.describe(), e.message),
                Some(e.class),
            )),
        }
    }
    items
}
