//! `local.restore`: a base backup plus the WAL archive, restored into a scratch instance on a
//! free port and recovered to a target (`latest`, a timestamp, an LSN or a restore point
//! name), then promoted. Before anything starts it reads the backup label and checks the
//! archive for gaps, so a missing WAL segment is named rather than silently cutting the
//! recovery short.

use std::path::{Path, PathBuf};

use super::backups::{self, parse_lsn, segment, Reach};
use super::copy;
use super::recovery::{self, parse_target, Lifetime, Target, WalSource};
use super::{cluster_error, scratch_dir};
use crate::kind::local::LocalRestore;
use crate::pg::cluster::{find_binaries, Cluster, ClusterHandle};
use crate::progress::{Progress, Unit};
use crate::record::Outputs;
use crate::runbook::TargetKind;
use crate::steps::{db, Run, StepCx, StepError, Undo};
use crate::timestamp::rfc3339_precise;

fn segment_name(tli: u32, n: u64) -> String {
    format!("{tli:08X}{:08X}{:08X}", n / 0x100, n % 0x100)
}

/// A plain base backup of a cluster with tablespaces (or a separate WAL directory) holds
/// symlinks to the source's own directories; recovery would write through them, outside
/// the scratch directory. Such backups are refused until they can be relocated.
fn refuse_links(backup: &Path) -> Result<(), StepError> {
    let mut links: Vec<PathBuf> = std::fs::read_dir(backup.join("pg_tblspc"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    links.push(backup.join("pg_wal"));
    for l in links {
        if std::fs::symlink_metadata(&l)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            let to = std::fs::read_link(&l)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            return Err(StepError::failed(format!(
                "the base backup links {} to {to}: restoring it would write outside the scratch directory (backups with tablespaces or a separate pg_wal are not supported yet)",
                l.display()
            )));
        }
    }
    Ok(())
}

/// The first segment missing from the archive between the backup's start and the newest
/// archived segment of its timeline, if any.
fn archive_gap(archive: &Path, start: &str) -> Result<Option<String>, StepError> {
    let (tli, first) =
        segment(start).ok_or_else(|| StepError::failed(format!("bad start segment {start}")))?;
    let entries = std::fs::read_dir(archive).map_err(|e| {
        StepError::failed(format!(
            "cannot read the WAL archive {}: {e}",
            archive.display()
        ))
    })?;
    let mut have: Vec<u64> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(segment))
        .filter(|(t, n)| *t == tli && *n >= first)
        .map(|(_, n)| n)
        .collect();
    have.sort_unstable();
    // segments from the backup's start may be inside the backup (streamed), so only holes
    // between archived segments count
    Ok(have
        .windows(2)
        .find(|w| w[1] != w[0] + 1)
        .map(|w| segment_name(tli, w[0] + 1)))
}

impl Run for LocalRestore {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let root = scratch_dir(cx, self.dir.as_deref());
        let (base_backup, wal_archive) = backup_paths(self, cx)?;
        let restored = restore_into(
            Path::new(&base_backup),
            Path::new(&wal_archive),
            &self.target,
            &root,
            Lifetime::of(self.keep),
            &|what, unit| cx.interaction.progress(what, unit),
            |handle| {
                cx.created(Undo::Cluster {
                    step: cx.step_id.into(),
                    what: format!(
                        "stop and remove the restored instance in {}",
                        root.display()
                    ),
                    handle,
                });
            },
        )
        .await?;
        let uri = recovery::connection_uri(
            cx,
            &restored.cluster,
            self.source.as_deref(),
            self.database.as_deref(),
            self.user.as_deref(),
        )
        .await?;
        let mut out = recovery::outputs(
            &restored.cluster,
            uri,
            restored.target.clone(),
            &restored.started,
        );
        out.insert("base_backup".into(), restored.base_backup.clone().into());
        if let Some(t) = &restored.base_backup_started_at {
            out.insert("base_backup_started_at".into(), t.clone().into());
        }
        if let Some(g) = &restored.archive_gap {
            out.insert("archive_gap".into(), g.clone().into());
        }
        if self.keep {
            recovery::keep(cx, &restored.cluster, &mut out);
        }
        // the undo registered above stops it (unless kept); dropping the value must not
        let _ = restored.cluster.detach();
        Ok(out)
    }
}

/// Where the base backups and the WAL archive are: the step's own fields, or those of the
/// `local` target its `backups` names (rendered, so they may come from the environment).
fn backup_paths(step: &LocalRestore, cx: &StepCx<'_>) -> Result<(String, String), StepError> {
    backup_paths_in(step, cx.runbook, cx.templates, cx.vars)
}

/// [`backup_paths`] outside a running step (the preflight).
pub(super) fn backup_paths_in(
    step: &LocalRestore,
    runbook: &crate::runbook::Runbook,
    templates: &minijinja::Environment<'static>,
    vars: &minijinja::Value,
) -> Result<(String, String), StepError> {
    let Some(name) = &step.backups else {
        // `check` guarantees both are given when `backups` is not
        return Ok((
            step.base_backup.clone().unwrap_or_default(),
            step.wal_archive.clone().unwrap_or_default(),
        ));
    };
    let local = match runbook.targets.get(name).map(|t| &t.kind) {
        Some(TargetKind::Local(l)) => l,
        Some(_) => {
            return Err(StepError::failed(format!(
                "`backups: {name}` must name a local target (with `base_backup` and `wal_archive`)"
            )))
        }
        None => return Err(StepError::failed(format!("no target `{name}`"))),
    };
    let field = |value: &Option<String>, what: &str| {
        let text = value.as_deref().ok_or_else(|| {
            StepError::failed(format!(
                "target `{name}` has no `{what}`: `local.restore` needs it to restore"
            ))
        })?;
        db::render_with(
            templates,
            vars,
            text,
            &format!("the `{what}` of target `{name}`"),
        )
    };
    Ok((
        field(&local.base_backup, "base_backup")?,
        field(&local.wal_archive, "wal_archive")?,
    ))
}

/// A base backup restored and promoted: the running instance and what recovery reported.
#[derive(Debug)]
pub struct Restored {
    /// The running instance; dropping it stops the server (detach it to keep it running).
    pub cluster: Cluster,
    /// The target as resolved (a relative time made absolute, RFC 3339).
    pub target: String,
    started: recovery::Started,
    /// The first segment missing from the archive, when recovery could stop before it.
    pub archive_gap: Option<String>,
    /// The base backup restored (chosen when given a directory of them).
    pub base_backup: String,
    /// When it started, RFC 3339, when its label says.
    pub base_backup_started_at: Option<String>,
}

impl Restored {
    /// The last transaction's commit time recovery reached, when the log says.
    pub fn recovered_to(&self) -> Option<&str> {
        self.started.recovered_to.as_deref()
    }
}

/// Restores a base backup plus the WAL in `archive` into a new instance under `root` (new or
/// empty), recovered to `target` (`latest`, a timestamp, an LSN or a restore point name) and
/// promoted (a throwaway's settings unless `lifetime` keeps it), its copy and replay shown
/// through `progress`. `backups` is one base backup or a directory of them, of which the one that fits
/// the target is chosen (see [`backups::choose`]). `created` receives the instance's handle before anything exists on disk, so the
/// caller can undo it on every path. Shared by `local.restore` and the test suite's fake Neon
/// (whose branches are real point-in-time restores).
pub async fn restore_into(
    backups: &Path,
    archive: &Path,
    target_text: &str,
    root: &Path,
    lifetime: Lifetime,
    progress: &(dyn Fn(&str, Unit) -> Progress + Sync),
    created: impl FnOnce(ClusterHandle),
) -> Result<Restored, StepError> {
    let bin = find_binaries().map_err(cluster_error)?;
    let target = parse_target(target_text);
    let reach = match &target {
        Target::Time(t) => Reach::Time(*t),
        Target::Lsn(l) => parse_lsn(l).map_or(Reach::Newest, Reach::Lsn),
        Target::Latest | Target::Name(_) => Reach::Newest,
    };
    let chosen = backups::choose(backups, &reach)?;
    let backup = chosen.path.as_path();
    let label = &chosen.label;
    refuse_links(backup)?;
    let version: u32 = std::fs::read_to_string(backup.join("PG_VERSION"))
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if version != bin.major {
        return Err(StepError::failed(format!("the base backup is PostgreSQL {version}, but the server binaries found are {} (set PG_BIN)", bin.major)));
    }
    if let (Target::Time(t), Some(start)) = (&target, label.start_time) {
        if *t < start {
            return Err(StepError::failed(format!(
                "target {} is before the base backup started ({}): recovery cannot go back past its backup; choose a later target or an older backup",
                rfc3339_precise(*t),
                rfc3339_precise(start)
            )));
        }
    }
    let gap = archive_gap(archive, &label.start_segment)?;
    if let (Some(missing), Target::Latest) = (&gap, &target) {
        return Err(StepError::failed(format!(
            "WAL segment {missing} is missing from the archive {}: recovery to `latest` would stop there and lose everything after it",
            archive.display()
        )));
    }

    // registered before anything exists, so an interrupt at any point leaves nothing
    let handle = ClusterHandle::for_root(&bin, root).map_err(cluster_error)?;
    if root.exists() {
        return Err(cluster_error(crate::pg::cluster::ClusterError::Exists(
            root.to_owned(),
        )));
    }
    created(handle);
    let mut cluster = Cluster::prepare(bin, root).map_err(cluster_error)?;
    let data = cluster.data_dir();
    copy::copy_tree(backup, &data, progress("base backup copied", Unit::Bytes)).await?;
    cluster.hand_over_tree(&data).map_err(cluster_error)?;
    let started = recovery::start(
        &mut cluster,
        WalSource::Archive(archive),
        Some(&target),
        gap.as_deref(),
        lifetime,
        &progress("WAL replayed", Unit::Items),
    )
    .await?;
    Ok(Restored {
        target: recovery::target_text(&target, target_text),
        started,
        archive_gap: gap,
        base_backup: chosen.path.display().to_string(),
        base_backup_started_at: chosen.started().map(rfc3339_precise),
        cluster,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(segment_name(1, 0x100), "000000010000000100000000");
    }
}
