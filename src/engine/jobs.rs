//! The runbook as scheduled jobs, for `drillbook schedule` and the daemon: each job is the
//! `drillbook` command line to run, its cron (UTC), the environment variables it needs or
//! may use, and what it needs from the machine it runs on.

use std::collections::BTreeSet;

use crate::cron::Cron;
use crate::kind::StepKind;
use crate::runbook::Runbook;

/// One scheduled job.
#[derive(Debug, Clone)]
pub struct Job {
    /// `pitr-drill` or `checks`.
    pub name: String,
    pub cron: Cron,
    /// Arguments after `drillbook`.
    pub args: Vec<String>,
    /// The environment variables it needs: without one the run cannot start (exit 3).
    pub env: BTreeSet<String>,
    /// Variables it reads when they are set: the alerts' (an alert whose variable is not set
    /// is reported as not sent; the run goes on).
    pub optional_env: BTreeSet<String>,
    /// What it does, in a few words.
    pub what: String,
    /// What its steps need from the machine they run on (kind and need), beyond network
    /// access: a hosted CI runner has none of it.
    pub host_needs: Vec<(&'static str, &'static str)>,
}

/// The runbook as jobs: one per procedure with a `schedule` (`run RUNBOOK PROCEDURE`) and
/// one for the checks, when it has any, on `checks` (`check RUNBOOK`).
pub fn jobs(rb: &Runbook, checks: &Cron) -> Vec<Job> {
    let alert_env = alert_env(rb);
    let optional = |env: &BTreeSet<String>| -> BTreeSet<String> {
        alert_env.difference(env).cloned().collect()
    };
    let mut out: Vec<Job> = rb
        .procedures
        .values()
        .filter_map(|p| {
            let cron = p.schedule.clone()?;
            let env = rb.needed_env(p);
            Some(Job {
                name: p.id.clone(),
                cron,
                args: vec!["run".into(), rb.path.clone(), p.id.clone()],
                optional_env: optional(&env),
                env,
                what: p.title.clone(),
                host_needs: host_needs(p.steps.iter().chain(&p.cleanup).map(|s| &s.kind)),
            })
        })
        .collect();
    if !rb.checks.is_empty() {
        let env = super::checks::needed_env(rb);
        out.push(Job {
            name: "checks".into(),
            cron: checks.clone(),
            args: vec!["check".into(), rb.path.clone()],
            optional_env: optional(&env),
            env,
            what: format!("{} health checks", rb.checks.len()),
            host_needs: host_needs(rb.checks.iter().map(|c| &c.kind)),
        });
    }
    out
}

/// The kinds among `kinds` that need more of their machine than network access.
fn host_needs<'a>(kinds: impl Iterator<Item = &'a StepKind>) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for kind in kinds {
        let info = kind.declared();
        if let Some(need) = info.host_needs {
            if !out.iter().any(|(k, _)| *k == info.name) {
                out.push((info.name, need));
            }
        }
    }
    out
}

/// The variables the alerts' templates read (`{{ env.SLACK_WEBHOOK_URL }}`).
fn alert_env(rb: &Runbook) -> BTreeSet<String> {
    rb.alerts
        .iter()
        .filter_map(|a| serde_json::to_value(&a.kind).ok())
        .flat_map(|v| crate::template::env_references(&v))
        .collect()
}
