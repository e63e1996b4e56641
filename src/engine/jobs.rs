//! The runbook as scheduled jobs, for `drillbook schedule` and the daemon: each job is the
//! `drillbook` command line to run, its cron (UTC) and the environment variables it needs.

use std::collections::BTreeSet;

use crate::cron::Cron;
use crate::runbook::Runbook;

/// One scheduled job.
#[derive(Debug, Clone)]
pub struct Job {
    /// `pitr-drill` or `checks`.
    pub name: String,
    pub cron: Cron,
    /// Arguments after `drillbook`.
    pub args: Vec<String>,
    /// The environment variables it needs (names only).
    pub env: BTreeSet<String>,
    /// What it does, in a few words.
    pub what: String,
}

/// The runbook as jobs: one per procedure with a `schedule` (`run RUNBOOK PROCEDURE`) and
/// one for the checks, when it has any, on `checks` (`check RUNBOOK`).
pub fn jobs(rb: &Runbook, checks: &Cron) -> Vec<Job> {
    let alert_env = alert_env(rb);
    let mut out: Vec<Job> = rb
        .procedures
        .values()
        .filter_map(|p| {
            let cron = p.schedule.clone()?;
            let mut env = super::needed_env(rb, p);
            env.extend(alert_env.iter().cloned());
            Some(Job {
                name: p.id.clone(),
                cron,
                args: vec!["run".into(), rb.path.clone(), p.id.clone()],
                env,
                what: p.title.clone(),
            })
        })
        .collect();
    if !rb.checks.is_empty() {
        let mut env = super::checks::needed_env(rb);
        env.extend(alert_env);
        out.push(Job {
            name: "checks".into(),
            cron: checks.clone(),
            args: vec!["check".into(), rb.path.clone()],
            env,
            what: format!("{} health checks", rb.checks.len()),
        });
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
