//! Checks made before a procedure changes anything: every point in time a step declares it
//! acts at (`Effects::at`: a Neon branch, restore, snapshot or schema diff) must lie inside
//! its project's restore window. A point that depends on an earlier step's output is decided
//! when that step has run (and checked by the step itself before it mutates anything).

use chrono::{DateTime, Utc};

use crate::kind::PointInTime;
use crate::record::{ErrorClass, PreflightItem};
use crate::runbook::{Procedure, Runbook};
use crate::steps::neon::{place_in, within_window, Point};

/// True when the procedure has anything to check before it runs: a step that declares it
/// acts at a point in time.
pub fn needed(procedure: &Procedure) -> bool {
    procedure
        .steps
        .iter()
        .any(|s| s.kind.effects().at.is_some())
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
    let mut items = Vec::new();
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
