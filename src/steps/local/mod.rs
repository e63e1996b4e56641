//! The `local` provider's steps. Every directory and server they create is registered for
//! undo the moment it exists, so it is stopped and removed on every path; nothing else is
//! touched.

mod backups;
mod copy;
pub mod pgbackrest;
pub mod preflight;
pub(crate) mod recovery;
mod restore;
mod start;
mod wal_ahead;

use std::path::PathBuf;

use super::{db, Run, StepCx, StepError, Undo};
use crate::kind::local::{
    LocalArchiver, LocalBackupAge, LocalBaseBackup, LocalCluster, LocalRestorePoint,
};
use crate::pg::cluster::{find_binaries, Cluster, ClusterError, ClusterHandle, InitOptions};
use crate::record::Outputs;

pub use recovery::Lifetime;
pub use restore::{restore_into, Restored};

/// A scratch directory for a step: `dir` when given (must be new or empty), else a new
/// directory in the system's temporary directory named after the run and step.
pub(crate) fn scratch_dir(cx: &StepCx<'_>, dir: Option<&str>) -> PathBuf {
    match dir {
        Some(d) => PathBuf::from(d),
        // a retry gets its own directory: the failed attempt's is undone at the end of the run
        None if cx.attempt > 1 => std::env::temp_dir().join(format!(
            "drillbook-{}-{}-{}",
            cx.run_id(),
            cx.step_id,
            cx.attempt
        )),
        None => std::env::temp_dir().join(format!("drillbook-{}-{}", cx.run_id(), cx.step_id)),
    }
}

/// Registers the undo of a new instance at `root` (stop its server, remove the directory)
/// before anything exists there, so an interrupt at any point leaves nothing behind; `what`
/// names it in the cleanup ("stop and remove the restored instance in …"). A `root` that
/// exists is refused.
pub(crate) fn register_instance(
    cx: &StepCx<'_>,
    bin: &crate::pg::cluster::Binaries,
    root: &std::path::Path,
    what: &str,
) -> Result<(), StepError> {
    let handle = ClusterHandle::for_root(bin, root).map_err(cluster_error)?;
    if root.exists() {
        return Err(cluster_error(ClusterError::Exists(root.to_owned())));
    }
    cx.created(Undo::Cluster {
        step: cx.step_id.into(),
        what: format!("stop and remove the {what} in {}", root.display()),
        handle,
    });
    Ok(())
}

pub(crate) fn cluster_error(e: ClusterError) -> StepError {
    match e {
        ClusterError::NoBinaries | ClusterError::NoAccount => StepError::unavailable(e.to_string()),
        other => StepError::failed(other.to_string()),
    }
}

impl Run for LocalCluster {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let bin = find_binaries().map_err(cluster_error)?;
        let root = scratch_dir(cx, self.dir.as_deref());
        let archive = root.join("archive");
        let settings = self
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        // a demo cluster is reachable only through its own socket, never over TCP
        let opts = InitOptions {
            archive_dir: Some(archive.clone()),
            unsafe_fast: false,
            settings,
            private: true,
            superuser: None,
        };
        // registered before anything exists, so an interrupted initdb leaves nothing behind
        register_instance(cx, &bin, &root, "cluster")?;
        let mut cluster = Cluster::create(bin, &root, &opts)
            .await
            .map_err(cluster_error)?;
        cluster.start().await.map_err(cluster_error)?;
        let database = self.database.clone().unwrap_or_else(|| "app".into());
        let admin = crate::pg::connect(
            &crate::pg::url::parse(&cluster.url("postgres"))
                .map_err(|e| StepError::failed(e.to_string()))?,
        )
        .await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {}",
                crate::pg::quote_ident(&database)
            ))
            .await
            .map_err(|e| {
                StepError::failed(format!(
                    "creating database {database}: {}",
                    crate::pg::connect::describe(&e)
                ))
            })?;
        let mut out = Outputs::new();
        out.insert("connection_uri".into(), cluster.url(&database).into());
        out.insert("admin_uri".into(), cluster.url("postgres").into());
        out.insert("port".into(), cluster.port.into());
        out.insert("dir".into(), root.display().to_string().into());
        out.insert(
            "data_dir".into(),
            cluster.data_dir().display().to_string().into(),
        );
        out.insert("archive_dir".into(), archive.display().to_string().into());
        out.insert("version".into(), cluster.bin.major.into());
        // the undo registered above stops it; the value must not stop it when dropped here
        let _ = cluster.detach();
        Ok(out)
    }
}

impl Run for LocalBaseBackup {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let bin = find_binaries().map_err(cluster_error)?;
        let spec = db::resolve(cx, &self.db).await?;
        let dir = scratch_dir(cx, self.dir.as_deref());
        if dir.exists() {
            return Err(StepError::failed(format!(
                "refusing to write a backup into {}: it already exists (give a new directory)",
                dir.display()
            )));
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StepError::failed(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        std::fs::create_dir(&dir)
            .map_err(|e| StepError::failed(format!("cannot create {}: {e}", dir.display())))?;
        if self.dir.is_none() && !self.keep {
            cx.created(Undo::Dir {
                step: cx.step_id.into(),
                what: format!("remove the base backup {}", dir.display()),
                path: dir.clone(),
            });
        }
        // a failed or interrupted backup is removed on the spot; a finished one is kept
        let partial = RemoveUnlessKept(Some(dir.clone()));
        let c = &spec.config;
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432).to_string();
        let user = c.get_user().unwrap_or("postgres").to_owned();
        let mut cmd = tokio::process::Command::new(bin.dir.join("pg_basebackup"));
        cmd.args(["-h", &host, "-p", &port, "-U", &user, "-D"])
            .arg(&dir)
            .args([
                "-Fp",
                "-X",
                "stream",
                "-c",
                "fast",
                "--verbose",
                "--no-password",
            ]);
        if let Some(pw) = c.get_password() {
            cmd.env("PGPASSWORD", String::from_utf8_lossy(pw).into_owned());
        }
        // the same TLS expectations as drillbook's own connections
        let mode = match spec.ssl {
            crate::pg::url::SslMode::Disable => "disable",
            crate::pg::url::SslMode::Prefer => "prefer",
            crate::pg::url::SslMode::Require => "require",
            crate::pg::url::SslMode::VerifyCa => "verify-ca",
            crate::pg::url::SslMode::VerifyFull => "verify-full",
        };
        cmd.env("PGSSLMODE", mode);
        if let Some(root) = &spec.root_cert {
            cmd.env("PGSSLROOTCERT", root);
        }
        let started = chrono::Utc::now();
        let out = cmd
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| StepError::unavailable(format!("cannot run pg_basebackup: {e}")))?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            let last = log
                .lines()
                .rfind(|l| l.contains("error") || l.contains("FATAL"))
                .unwrap_or("failed")
                .trim()
                .to_owned();
            return Err(StepError::failed(format!(
                "pg_basebackup of {}: {}",
                spec.display,
                cx.redactor.redact(&last)
            )));
        }
        let point = |what: &str| {
            log.lines()
                .find_map(|l| l.split(what).nth(1))
                .map(|r| r.split_whitespace().next().unwrap_or("").to_owned())
        };
        let label = std::fs::read_to_string(dir.join("backup_label")).unwrap_or_default();
        partial.keep();
        let mut o = Outputs::new();
        o.insert("dir".into(), dir.display().to_string().into());
        o.insert(
            "start_lsn".into(),
            point("write-ahead log start point: ")
                .unwrap_or_default()
                .into(),
        );
        o.insert(
            "end_lsn".into(),
            point("write-ahead log end point: ")
                .unwrap_or_default()
                .into(),
        );
        o.insert(
            "started_at".into(),
            crate::timestamp::rfc3339(started).into(),
        );
        o.insert(
            "finished_at".into(),
            crate::timestamp::rfc3339(chrono::Utc::now()).into(),
        );
        o.insert(
            "label".into(),
            label
                .lines()
                .find_map(|l| l.strip_prefix("LABEL: "))
                .unwrap_or("")
                .into(),
        );
        Ok(o)
    }
}

/// Removes a directory when dropped, unless told to keep it.
struct RemoveUnlessKept(Option<PathBuf>);

impl RemoveUnlessKept {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveUnlessKept {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Run for LocalRestorePoint {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let spec = db::resolve(cx, &self.db).await?;
        let client = crate::pg::connect(&spec).await?;
        let failed = |e: tokio_postgres::Error| {
            StepError::failed(format!(
                "restore point on {}: {}",
                spec.display,
                crate::pg::connect::describe(&e)
            ))
        };
        let row = client
            .query_one(
                "SELECT pg_create_restore_point($1)::text, clock_timestamp()::timestamptz",
                &[&self.name],
            )
            .await
            .map_err(failed)?;
        client
            .query_one("SELECT pg_switch_wal()::text", &[])
            .await
            .map_err(failed)?;
        let at: chrono::DateTime<chrono::Utc> = row.get(1);
        let mut o = Outputs::new();
        o.insert("name".into(), self.name.clone().into());
        o.insert("lsn".into(), row.get::<_, String>(0).into());
        o.insert("at".into(), crate::timestamp::rfc3339_precise(at).into());
        Ok(o)
    }
}

impl Run for LocalArchiver {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let spec = db::resolve(cx, &self.db).await?;
        let client = crate::pg::connect(&spec).await?;
        let row = client
            .query_one(
                "SELECT current_setting('archive_mode'), archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, last_failed_time, now(), current_setting('archive_command') || coalesce(current_setting('archive_library', true), '') FROM pg_stat_archiver",
                &[],
            )
            .await
            .map_err(|e| StepError::failed(format!("pg_stat_archiver on {}: {}", spec.display, crate::pg::connect::describe(&e))))?;
        let mode: String = row.get(0);
        let archived: i64 = row.get(1);
        let last_wal: Option<String> = row.get(2);
        let last_time: Option<chrono::DateTime<chrono::Utc>> = row.get(3);
        let failed: i64 = row.get(4);
        let failed_wal: Option<String> = row.get(5);
        let failed_time: Option<chrono::DateTime<chrono::Utc>> = row.get(6);
        let now: chrono::DateTime<chrono::Utc> = row.get(7);
        let mut out = Outputs::new();
        out.insert("archive_mode".into(), mode.clone().into());
        out.insert("archived_count".into(), archived.into());
        out.insert("failed_count".into(), failed.into());
        out.insert(
            "last_archived_wal".into(),
            last_wal.clone().unwrap_or_default().into(),
        );
        let age = last_time.map(|t| (now - t).to_std().unwrap_or_default());
        if let Some(a) = age {
            out.insert("last_archived_age_seconds".into(), a.as_secs().into());
        }
        let configured: String = row.get(8);
        if mode != "off" && configured.trim().is_empty() {
            return Err(StepError::failed(format!("archive_mode is on but neither archive_command nor archive_library is set on {}: nothing is archived", spec.display)).with_outputs(out));
        }
        if mode == "off" {
            return Err(StepError::failed(format!("archive_mode is off on {}: no WAL is archived, so point-in-time recovery is impossible", spec.display)).with_outputs(out));
        }
        let failing = match (failed_time, last_time) {
            (Some(f), Some(s)) => f > s,
            (Some(_), None) => true,
            _ => false,
        };
        out.insert("failing".into(), failing.into());
        if failing {
            return Err(StepError::failed(format!(
                "WAL archiving is failing: {} failed at {} and nothing has been archived since (failed {failed} times in all)",
                failed_wal.unwrap_or_default(),
                failed_time.map(crate::timestamp::rfc3339).unwrap_or_default()
            ))
            .with_outputs(out));
        }
        if let (Some(max), Some(a)) = (self.max_age, age) {
            if a > max.std() {
                return Err(StepError::failed(format!(
                    "the last archived WAL segment {} is {} old, more than {max}",
                    last_wal.unwrap_or_default(),
                    crate::duration::human(a)
                ))
                .with_outputs(out));
            }
        }
        if let (Some(max), None) = (self.max_age, age) {
            return Err(StepError::failed(format!(
                "nothing has been archived yet (expected a segment within {max})"
            ))
            .with_outputs(out));
        }
        Ok(out)
    }
}

impl Run for LocalBackupAge {
    async fn run<'a>(&'a self, _cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let dir = PathBuf::from(&self.dir);
        let (found, damaged) = backups::base_backups(&dir)?;
        let skipped = if damaged.is_empty() {
            String::new()
        } else {
            format!(" (skipped: {})", damaged.join("; "))
        };
        let mut out = Outputs::new();
        out.insert("backups".into(), found.len().into());
        // newest by when it started; a label without a time counts from its file's time
        let Some((when, path)) = found
            .iter()
            .filter_map(|b| Some((b.started()?, &b.path)))
            .max()
        else {
            return Err(StepError::failed(format!(
                "no complete base backup (a directory with a backup_label) in {}{skipped}",
                dir.display()
            ))
            .with_outputs(out));
        };
        let age = (chrono::Utc::now() - when).to_std().unwrap_or_default();
        out.insert("newest".into(), path.display().to_string().into());
        out.insert("newest_at".into(), crate::timestamp::rfc3339(when).into());
        out.insert("age_seconds".into(), age.as_secs().into());
        if age > self.max_age.std() {
            return Err(StepError::failed(format!(
                "the newest complete base backup {} is {} old, more than {}{skipped}",
                path.display(),
                crate::duration::human(age),
                self.max_age
            ))
            .with_outputs(out));
        }
        Ok(out)
    }
}
