//! What runs that are no longer alive left behind, found and removed: `drillbook gc`.
//!
//! Two sources. The run ledgers on this machine ([`crate::steps::ledger`]): exact — a run
//! whose ledger lock is free is dead, and what its ledger lists as created and not undone is
//! left. And, for the Neon targets of the runbooks given, the branches and snapshots named
//! `drillbook-<run id>-<step>` (the names drillbook gives what it creates): a run on another
//! machine (a CI runner that was killed and is gone) leaves no ledger here, so such a
//! resource counts as left when its expiry has passed or its run started longer ago than
//! `older_than`, unless a live run on this machine is using it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::runbook::{Runbook, TargetKind};
use crate::steps::ledger::{self, DeadRun, Resource};
use crate::steps::Undo;

/// One thing left behind, and where it was found.
#[derive(Debug)]
pub struct Orphan {
    /// The run that created it, as `20261129T203252Z-273e5b0d (runbook/procedure)`.
    pub run: String,
    /// What it is, in words naming its path or resource.
    pub what: String,
    /// How it is removed; an error says why it cannot be from here.
    pub undo: Result<Undo, String>,
}

/// What `gc` found.
#[derive(Debug, Default)]
pub struct Found {
    pub orphans: Vec<Orphan>,
    /// Dead runs' ledgers, removed once their resources are gone.
    pub ledgers: Vec<DeadRun>,
    /// Neon projects that could not be listed, and why.
    pub unreachable: Vec<String>,
}

/// The dead runs of this machine with something left (those with nothing left are only
/// stale ledgers): what `run` and `check` warn about before they start.
pub fn dead_runs_with_leftovers() -> Vec<DeadRun> {
    ledger::dead_runs(&ledger::ledger_dir())
        .into_iter()
        .filter(|r| r.left.iter().any(|l| l.resource.may_exist()))
        .collect()
}

/// The warning `run` and `check` print when earlier runs left something.
pub fn leftovers_warning() -> Option<String> {
    let dead = dead_runs_with_leftovers();
    let count: usize = dead.iter().map(|r| r.left.len()).sum();
    (count > 0).then(|| {
        format!(
            "{count} resource(s) left by {} run(s) that ended without cleanup (killed?); `drillbook gc` lists them, `drillbook gc --yes` removes them",
            dead.len()
        )
    })
}

/// Finds what dead runs left: from the ledgers, and from the Neon targets of `runbooks`
/// (which needs `NEON_API_KEY`).
pub async fn find(runbooks: &[Runbook], older_than: std::time::Duration) -> Found {
    let dir = ledger::ledger_dir();
    let mut found = Found::default();
    // Neon resources a dead run's ledger lists are removed through the ledger
    let mut listed: BTreeSet<(String, String)> = BTreeSet::new();
    for run in ledger::dead_runs(&dir) {
        let who = describe_run(&run);
        for left in &run.left {
            if !left.resource.may_exist() {
                continue;
            }
            if let Resource::NeonBranch { project, name }
            | Resource::NeonSnapshot { project, name } = &left.resource
            {
                listed.insert((project.clone(), name.clone()));
            }
            found.orphans.push(Orphan {
                run: who.clone(),
                what: left.what.clone(),
                undo: left.resource.undo(&left.step, &left.what),
            });
        }
        found.ledgers.push(run);
    }
    let live = live_runs(&dir);
    let now = Utc::now();
    for project in neon_projects(runbooks) {
        match neon_leftovers(&project, &live, &listed, now, older_than).await {
            Ok(mut o) => found.orphans.append(&mut o),
            Err(e) => found
                .unreachable
                .push(format!("Neon project {project}: {e}")),
        }
    }
    found
}

/// Removes each orphan; returns each one's outcome. A dead run's ledger goes once nothing
/// it lists is left.
pub async fn remove(found: Found) -> Vec<(Orphan, Result<(), String>)> {
    let mut out = Vec::new();
    for orphan in found.orphans {
        let result = match &orphan.undo {
            Ok(undo) => undo.run().await.map_err(|e| e.message),
            Err(e) => Err(e.clone()),
        };
        out.push((orphan, result));
    }
    let all_removed = out.iter().all(|(_, r)| r.is_ok());
    for run in &found.ledgers {
        let gone = run.left.iter().all(|l| !l.resource.may_exist());
        if all_removed || gone {
            let _ = ledger::forget(run);
        }
    }
    out
}

fn describe_run(run: &DeadRun) -> String {
    format!(
        "{} ({}/{}, pid {}{})",
        run.run,
        run.runbook,
        run.procedure,
        run.pid,
        run.started_at
            .map(|t| format!(", started {}", crate::timestamp::rfc3339(t)))
            .unwrap_or_default()
    )
}

/// The ids of the runs on this machine that are alive (their ledger is locked).
fn live_runs(dir: &std::path::Path) -> BTreeSet<String> {
    let dead: BTreeSet<String> = ledger::dead_runs(dir).into_iter().map(|r| r.run).collect();
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let run = name.strip_prefix("drillbook-")?.strip_suffix(".ledger")?;
            (!dead.contains(run)).then(|| run.to_owned())
        })
        .collect()
}

/// The Neon projects of the runbooks' targets, rendered with the environment.
fn neon_projects(runbooks: &[Runbook]) -> BTreeSet<String> {
    let env: serde_json::Map<String, serde_json::Value> = std::env::vars()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let vars = minijinja::Value::from_serialize(serde_json::json!({ "env": env }));
    let templates = crate::template::environment();
    runbooks
        .iter()
        .flat_map(|rb| {
            rb.targets.values().filter_map(|t| match &t.kind {
                TargetKind::Neon(n) => crate::template::render(&templates, &n.project_id, &vars)
                    .ok()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
                _ => None,
            })
        })
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// When the run of a drillbook-named resource started, from its name
/// (`drillbook-20261129T203252Z-273e5b0d-<step>`).
fn run_of(name: &str) -> Option<(String, DateTime<Utc>)> {
    let rest = name.strip_prefix("drillbook-")?;
    let mut parts = rest.splitn(3, '-');
    let (stamp, hex) = (parts.next()?, parts.next()?);
    let started = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()?
        .and_utc();
    (hex.len() == 8 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| (format!("{stamp}-{hex}"), started))
}

/// The drillbook-named branches and snapshots of `project` whose run is gone.
async fn neon_leftovers(
    project: &str,
    live: &BTreeSet<String>,
    listed: &BTreeSet<(String, String)>,
    now: DateTime<Utc>,
    older_than: std::time::Duration,
) -> Result<Vec<Orphan>, String> {
    let client = crate::neon::Client::from_env().map_err(|e| e.to_string())?;
    let cutoff = chrono::Duration::from_std(older_than)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let expired = |e: &Option<String>| {
        e.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t <= now)
    };
    // (name, expires_at, is a branch)
    let mut named: Vec<(String, Option<String>, bool)> = client
        .branches(project, Some("drillbook-"))
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|b| !b.default && !b.protected)
        .map(|b| (b.name, b.expires_at, true))
        .collect();
    named.extend(
        client
            .snapshots(project)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|s| (s.name, s.expires_at, false)),
    );
    let mut out = Vec::new();
    for (name, expires_at, branch) in named {
        let Some((run, started)) = run_of(&name) else {
            continue;
        };
        if live.contains(&run) || listed.contains(&(project.to_owned(), name.clone())) {
            continue;
        }
        if !(expired(&expires_at) || started <= cutoff) {
            continue;
        }
        let kind = if branch { "branch" } else { "snapshot" };
        let what = format!("delete Neon {kind} {name} (project {project})");
        let resource = if branch {
            Resource::NeonBranch {
                project: project.to_owned(),
                name: name.clone(),
            }
        } else {
            Resource::NeonSnapshot {
                project: project.to_owned(),
                name: name.clone(),
            }
        };
        out.push(Orphan {
            run: format!("{run} (no ledger on this machine)"),
            undo: resource.undo("gc", &what),
            what,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_of_a_drillbook_name() {
        let (run, started) = run_of("drillbook-20261129T203252Z-273e5b0d-branch").expect("run");
        assert_eq!(run, "20261129T203252Z-273e5b0d");
        assert_eq!(crate::timestamp::rfc3339(started), "2026-11-29T20:32:52Z");
        assert!(run_of("drillbook-nightly").is_none());
        assert!(run_of("main").is_none());
    }
}
