//! Where a step's `db:` points: a target name (a `postgres` target's URL, rendered; a `neon`
//! target's branch, whose connection string is looked up through Neon's API), or a
//! connection string given directly — typically a step output such as
//! `{{ steps.branch.connection_uri }}`, already rendered by the time the step runs.

use super::{StepCx, StepError};
use crate::pg::url::{self, ConnSpec};
use crate::runbook::TargetKind;

/// Resolves `db` to a parsed connection string.
pub async fn resolve(cx: &StepCx<'_>, db: &str) -> Result<ConnSpec, StepError> {
    let neon = crate::kind::is_target_name(db)
        && matches!(
            cx.runbook.targets.get(db).map(|t| &t.kind),
            Some(TargetKind::Neon(_))
        );
    let text = if neon {
        super::neon::branch_uri(cx, db).await?
    } else if crate::kind::is_target_name(db) {
        target_url(cx.runbook, cx.templates, cx.vars, db)?
    } else {
        db.to_owned()
    };
    // a connection string that does not parse is a misconfiguration, not a finding about
    // the database: the step could not run
    url::parse(&text).map_err(|e| StepError::unavailable(e.to_string()))
}

/// Connects to target `name` and runs `SELECT 1` (the preflight): what answered, or why not.
pub async fn answers(
    runbook: &crate::runbook::Runbook,
    templates: &minijinja::Environment<'static>,
    vars: &minijinja::Value,
    name: &str,
) -> Result<String, StepError> {
    let text = target_url(runbook, templates, vars, name)?;
    let spec = url::parse(&text).map_err(|e| StepError::unavailable(e.to_string()))?;
    let client = crate::pg::connect(&spec).await?;
    client.simple_query("SELECT 1").await.map_err(|e| {
        StepError::unavailable(format!(
            "{}: {}",
            spec.display,
            crate::pg::connect::describe(&e)
        ))
    })?;
    Ok(format!("target `{name}`: {} answers", spec.display))
}

/// The URL of a `postgres` target, or of a `local` target with a `url`, rendered with
/// `vars` (also before any step runs: the preflight connects to them).
pub fn target_url(
    runbook: &crate::runbook::Runbook,
    templates: &minijinja::Environment<'static>,
    vars: &minijinja::Value,
    name: &str,
) -> Result<String, StepError> {
    let target = runbook
        .targets
        .get(name)
        .ok_or_else(|| StepError::failed(format!("no target `{name}`")))?;
    let what = format!("the URL of target `{name}`");
    match &target.kind {
        TargetKind::Postgres(pg) => render_with(templates, vars, &pg.url, &what),
        TargetKind::Local(l) => match &l.url {
            Some(u) => render_with(templates, vars, u, &what),
            None => Err(StepError::failed(format!(
                "target `{name}` has no `url` to connect to"
            ))),
        },
        TargetKind::Neon(_) => Err(StepError::failed(format!(
            "target `{name}` is a Neon target: its branch is reached through Neon's API"
        ))),
    }
}

pub(crate) fn render_with(
    templates: &minijinja::Environment<'static>,
    vars: &minijinja::Value,
    template: &str,
    what: &str,
) -> Result<String, StepError> {
    crate::template::render(templates, template, vars)
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .map_err(|e| {
            StepError::failed(format!(
                "cannot render {what}: {}",
                crate::template::describe_error(&e)
            ))
        })
}
