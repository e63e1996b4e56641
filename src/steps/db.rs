//! Where a step's `db:` points: a target name (a `postgres` target's URL, rendered; a `neon`
//! target's branch, whose connection string is looked up through Neon's API), or a
//! connection string given directly — typically a step output such as
//! `{{ steps.branch.connection_uri }}`, already rendered by the time the step runs.

use super::{StepCx, StepError};
use crate::pg::url::{self, ConnSpec};
use crate::runbook::TargetKind;

/// Resolves `db` to a parsed connection string.
pub async fn resolve(cx: &StepCx<'_>, db: &str) -> Result<ConnSpec, StepError> {
    let text = if crate::kind::is_target_name(db) {
        let target = cx
            .runbook
            .targets
            .get(db)
            .ok_or_else(|| StepError::failed(format!("no target `{db}`")))?;
        match &target.kind {
            TargetKind::Postgres(pg) => render(cx, &pg.url, &format!("the URL of target `{db}`"))?,
            TargetKind::Local(l) => match &l.url {
                Some(u) => render(cx, u, &format!("the URL of target `{db}`"))?,
                None => {
                    return Err(StepError::failed(format!(
                        "target `{db}` has no `url` to connect to"
                    )))
                }
            },
            TargetKind::Neon(_) => super::neon::branch_uri(cx, db).await?,
        }
    } else {
        db.to_owned()
    };
    // a connection string that does not parse is a misconfiguration, not a finding about
    // the database: the step could not run
    url::parse(&text).map_err(|e| StepError::unavailable(e.to_string()))
}

/// Renders a target's field (`what` names it in an error).
pub(crate) fn render(cx: &StepCx<'_>, template: &str, what: &str) -> Result<String, StepError> {
    crate::template::render(cx.templates, template, cx.vars)
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .map_err(|e| {
            StepError::failed(format!(
                "cannot render {what}: {}",
                crate::template::describe_error(&e)
            ))
        })
}
