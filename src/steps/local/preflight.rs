//! What can be known about a `local.restore` before anything runs: the base backup that fits
//! the target exists, the target is after it started and not in the future, and the WAL
//! archive reaches the target — so an hour of restore is not spent to learn it.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::backups::{self, segment, Reach};
use super::recovery::{parse_target, Target};
use crate::kind::local::LocalRestore;
use crate::steps::StepError;
use crate::timestamp::rfc3339;

/// The preflight findings of a `local.restore` whose fields are known before the run:
/// `(check, Ok(detail) | Err(why))`.
pub fn restore(
    step: &LocalRestore,
    runbook: &crate::runbook::Runbook,
    templates: &minijinja::Environment<'static>,
    vars: &minijinja::Value,
    now: DateTime<Utc>,
) -> Vec<(&'static str, Result<String, StepError>)> {
    let (base_backup, wal_archive) =
        match super::restore::backup_paths_in(step, runbook, templates, vars) {
            Ok(p) => p,
            Err(e) => return vec![("base backup", Err(e))],
        };
    let target = parse_target(&step.target);
    if let Target::Time(t) = target {
        if t > now {
            return vec![(
                "target",
                Err(StepError::failed(format!(
                    "the target {} is in the future",
                    rfc3339(t)
                ))),
            )];
        }
    }
    let reach = match &target {
        Target::Time(t) => Reach::Time(*t),
        Target::Lsn(l) => backups::parse_lsn(l).map_or(Reach::Newest, Reach::Lsn),
        Target::Latest | Target::Name(_) => Reach::Newest,
    };
    let chosen = match backups::choose(Path::new(&base_backup), &reach) {
        Ok(c) => c,
        Err(e) => return vec![("base backup", Err(e))],
    };
    let mut out = Vec::new();
    let started = chosen.started();
    match (&target, started) {
        (Target::Time(t), Some(s)) if *t < s => out.push((
            "base backup",
            Err(StepError::failed(format!(
                "target {} is before the base backup {} started ({}): recovery cannot go back past its backup",
                rfc3339(*t),
                chosen.path.display(),
                rfc3339(s)
            ))),
        )),
        _ => out.push((
            "base backup",
            Ok(format!(
                "{} fits the target{}",
                chosen.path.display(),
                started
                    .map(|s| format!(" (started {})", rfc3339(s)))
                    .unwrap_or_default()
            )),
        )),
    }
    out.push((
        "WAL archive",
        archive_reaches(Path::new(&wal_archive), &target),
    ));
    out
}

/// The archive's newest segment was archived at or after a time target (archiving copies a
/// segment once it is full or `archive_timeout` passed, so one archived earlier cannot hold
/// a transaction after the target); for other targets, that the archive has segments.
fn archive_reaches(archive: &Path, target: &Target) -> Result<String, StepError> {
    let entries = std::fs::read_dir(archive).map_err(|e| {
        StepError::failed(format!(
            "cannot read the WAL archive {}: {e}",
            archive.display()
        ))
    })?;
    let newest = entries
        .flatten()
        .filter(|e| e.file_name().to_str().and_then(segment).is_some())
        .filter_map(|e| {
            let at: DateTime<Utc> = e.metadata().ok()?.modified().ok()?.into();
            Some((at, e.file_name().to_string_lossy().into_owned()))
        })
        .max();
    let Some((at, name)) = newest else {
        return Err(StepError::failed(format!(
            "the WAL archive {} holds no WAL segment",
            archive.display()
        )));
    };
    match target {
        Target::Time(t) if at < *t => Err(StepError::failed(format!(
            "the WAL archive {} ends before the target: its newest segment {name} was archived at {}, before {}; recovery would stop short (is archiving failing? set `archive_timeout` so an idle server still archives)",
            archive.display(),
            rfc3339(at),
            rfc3339(*t)
        ))),
        _ => Ok(format!(
            "its newest segment {name} was archived at {}",
            rfc3339(at)
        )),
    }
}
