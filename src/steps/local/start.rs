//! `local.start`: a data directory another tool filled (pgBackRest, Barman, WAL-G, a
//! script), taken over into a scratch instance and started as `local.restore` starts its
//! own. Registered for undo before anything changes; the directory is moved (not copied)
//! into the instance, so it goes with it at the end of the run.

use std::path::{Path, PathBuf};

use super::recovery::{self, parse_target, Lifetime, WalSource};
use super::{cluster_error, scratch_dir};
use crate::kind::local::LocalStart;
use crate::pg::cluster::{find_binaries, Cluster};
use crate::record::Outputs;
use crate::steps::{Run, StepCx, StepError};

impl Run for LocalStart {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let root = scratch_dir(cx, self.dir.as_deref());
        let filled = PathBuf::from(&self.data_dir);
        let bin = find_binaries().map_err(cluster_error)?;
        check_filled(&filled, bin.major)?;
        let target = self.target.as_deref().map(parse_target);
        // registered before anything exists, so an interrupt at any point leaves nothing
        super::register_instance(cx, &bin, &root, "started instance")?;
        let mut cluster = Cluster::prepare(bin, &root).map_err(cluster_error)?;
        let data = cluster.data_dir();
        take_over(&filled, &data)?;
        cluster.hand_over_tree(&data).map_err(cluster_error)?;
        let wal = match (&self.wal_archive, &self.restore_command) {
            (Some(archive), _) => WalSource::Archive(Path::new(archive)),
            (None, Some(command)) => WalSource::Command(command),
            (None, None) => WalSource::Kept,
        };
        let started = recovery::start(
            &mut cluster,
            wal,
            target.as_ref(),
            None,
            Lifetime::of(self.keep),
            &cx.interaction
                .progress("WAL replayed", crate::progress::Unit::Items),
        )
        .await?;
        let uri = recovery::connection_uri(
            cx,
            &cluster,
            self.source.as_deref(),
            self.database.as_deref(),
            self.user.as_deref(),
        )
        .await?;
        let target_text = match (&target, &self.target) {
            (Some(t), Some(written)) => recovery::target_text(t, written),
            _ => "as the tool wrote it".to_owned(),
        };
        let mut out = recovery::outputs(&cluster, uri, target_text, &started);
        if self.keep {
            recovery::keep(cx, &cluster, &mut out);
        }
        // the undo registered above stops it (unless kept); dropping the value must not
        let _ = cluster.detach();
        Ok(out)
    }
}

/// The directory must be a PostgreSQL data directory of the binaries' major version, not one
/// a server is running from.
fn check_filled(dir: &Path, major: u32) -> Result<(), StepError> {
    let version = std::fs::read_to_string(dir.join("PG_VERSION")).map_err(|e| {
        StepError::failed(format!(
            "{} is not a PostgreSQL data directory (no readable PG_VERSION: {e}): did the tool fill it?",
            dir.display()
        ))
    })?;
    let version: u32 = version.trim().parse().unwrap_or(0);
    if version != major {
        return Err(StepError::failed(format!(
            "{} is PostgreSQL {version}, but the server binaries found are {major} (set PG_BIN)",
            dir.display()
        )));
    }
    if dir.join("postmaster.pid").exists() {
        let pid = std::fs::read_to_string(dir.join("postmaster.pid")).unwrap_or_default();
        let pid = pid.lines().next().unwrap_or("").trim();
        if !pid.is_empty() && Path::new(&format!("/proc/{pid}")).exists() {
            return Err(StepError::failed(format!(
                "a server (pid {pid}) is running from {}: local.start takes over a directory nothing runs from",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Moves the filled directory into the instance (a rename: nothing is copied, and the
/// tool's directory is now the run's, removed with the instance).
fn take_over(filled: &Path, data: &Path) -> Result<(), StepError> {
    std::fs::rename(filled, data).map_err(|e| {
        let hint = if e.raw_os_error() == Some(18) {
            ": it is on another file system than the scratch directory; fill it under the same one (e.g. under $TMPDIR) or give `dir` on its file system"
        } else {
            ""
        };
        StepError::failed(format!(
            "cannot take over {} into {}: {e}{hint}",
            filled.display(),
            data.display()
        ))
    })?;
    for stale in ["postmaster.pid", "postmaster.opts"] {
        let _ = std::fs::remove_file(data.join(stale));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        StepError::failed(format!("cannot set permissions on {}: {e}", data.display()))
    })
}
