//! The `local` provider: self-hosted PostgreSQL point-in-time recovery. `local.cluster`
//! starts a throwaway archiving cluster (demos and tests), `local.base_backup` takes a
//! `pg_basebackup`, `local.restore_point` names a point in the WAL, `local.restore` restores
//! a base backup plus the WAL archive into a scratch instance at a target (`restore.rs`, with
//! `local.start`, which starts a data directory any tool filled), and `local.archiver` and
//! `local.backup_age` check the backups' health.

mod restore;

pub(crate) use restore::started_outputs;
pub use restore::{LocalRestore, LocalStart};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    db_target, output, Effects, Invalid, Measure, Metric, Output, Scratch, Spec, Text, Verifies,
    Worse,
};

/// `local.cluster`: a throwaway PostgreSQL cluster with WAL archiving, reachable only
/// through a private Unix socket.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalCluster {
    /// Directory for the cluster (`data/`, `archive/`, `socket/`, `server.log`); must be new
    /// or empty. Default: a new directory under the system's temporary directory.
    pub dir: Option<String>,
    /// Database to create (default `app`).
    pub database: Option<String>,
    /// Extra `postgresql.conf` settings, by name (`[A-Za-z_][A-Za-z0-9_.]*`); each value is
    /// written quoted and may not hold a line break.
    #[serde(default)]
    pub settings: indexmap::IndexMap<String, Text>,
}

impl Spec for LocalCluster {
    const HOST_NEEDS: Option<&'static str> =
        Some("the PostgreSQL server binaries (`initdb`, `postgres`)");
    const OUTPUTS: &'static [Output] = &[
        output("connection_uri", "the new database's URL (local socket)"),
        output("admin_uri", "the `postgres` database's URL"),
        output("port", "the port it listens on (loopback)"),
        output("dir", "the cluster's directory"),
        output("data_dir", "its data directory"),
        output(
            "archive_dir",
            "the WAL archive its `archive_command` copies into",
        ),
        output("version", "the PostgreSQL major version"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects {
            scratch: Some(Scratch::LocalCluster),
            ..Effects::NONE
        }
    }

    /// What `pg::cluster::conf_line` refuses when the cluster is created, found already where
    /// the runbook shows it (a templated value is checked again once rendered).
    fn check(&self) -> Result<(), Invalid> {
        for (name, value) in &self.settings {
            let mut chars = name.chars();
            let is_name = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if !is_name {
                return Err(Invalid::at(
                    "settings",
                    format!("{name:?} is not a setting name: letters, digits, `_` and `.`, not starting with a digit"),
                ));
            }
            if value.0.contains(['\n', '\r', '\0']) {
                return Err(Invalid::at(
                    "settings",
                    format!("setting `{name}`: the value holds a line break or a NUL, which a postgresql.conf value cannot hold"),
                ));
            }
        }
        Ok(())
    }

    fn summary(&self) -> String {
        format!(
            "start a throwaway archiving PostgreSQL cluster with database `{}`",
            self.database.as_deref().unwrap_or("app")
        )
    }
}

/// `local.base_backup`: `pg_basebackup` of a running cluster into a new directory (plain
/// format, WAL streamed in, so the backup is self-contained).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalBaseBackup {
    /// The cluster to back up: a target name or a connection string (a replication-capable
    /// role, e.g. the superuser).
    pub db: String,
    /// Directory for the backup; must be new or empty. Default: a new scratch directory,
    /// removed at the end of the run unless `keep` is true.
    pub dir: Option<String>,
    /// Keep a default-located backup after the run (default false).
    #[serde(default)]
    pub keep: bool,
}

impl Spec for LocalBaseBackup {
    const HOST_NEEDS: Option<&'static str> = Some("`pg_basebackup` and room for the backup");
    const OUTPUTS: &'static [Output] = &[
        output("dir", "the backup's directory"),
        output("start_lsn", "the WAL position the backup starts at"),
        output("end_lsn", "the WAL position it ends at"),
        output("started_at", "when it started, RFC 3339 UTC"),
        output("finished_at", "when it finished, RFC 3339 UTC"),
        output("label", "its backup label"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    /// A backup in a default location is removed after the run unless `keep`.
    fn effects(&self) -> Effects<'_> {
        Effects {
            scratch: (self.dir.is_none() && !self.keep).then_some(Scratch::Directory),
            ..Effects::NONE
        }
    }

    const TARGET_KINDS: &'static [&'static str] = &["postgres", "local"];

    fn target(&self) -> Option<&str> {
        db_target(&self.db)
    }

    fn summary(&self) -> String {
        format!(
            "pg_basebackup of {}",
            crate::redact::mask_passwords(&self.db)
        )
    }
}

/// `local.restore_point`: `pg_create_restore_point(name)` on a cluster, and a WAL switch so
/// the point reaches the archive.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalRestorePoint {
    /// The cluster: a target name or a connection string (a superuser).
    pub db: String,
    /// The restore point's name (template), e.g. `"drill-{{ run.id }}"`.
    pub name: String,
}

impl Spec for LocalRestorePoint {
    const OUTPUTS: &'static [Output] = &[
        output("name", "the restore point's name"),
        output("lsn", "its WAL position"),
        output("at", "when it was created, RFC 3339 UTC with microseconds"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    const TARGET_KINDS: &'static [&'static str] = &["postgres", "local"];

    fn target(&self) -> Option<&str> {
        db_target(&self.db)
    }

    fn summary(&self) -> String {
        format!(
            "create restore point `{}` on {}",
            self.name,
            crate::redact::mask_passwords(&self.db)
        )
    }
}

/// `local.archiver`: WAL archiving health from `pg_stat_archiver`: fails when archiving has
/// failed since its last success, or when the last archived segment is older than `max_age`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalArchiver {
    /// The cluster: a target name or a connection string.
    pub db: String,
    /// The oldest acceptable last archived segment, e.g. `1h` (set `archive_timeout` on
    /// the server so an idle database still archives).
    pub max_age: Option<crate::duration::Duration>,
}

impl Spec for LocalArchiver {
    const OUTPUTS: &'static [Output] = &[
        output("archive_mode", "the server's `archive_mode`"),
        output(
            "archived_count",
            "WAL segments archived since the statistics were reset",
        ),
        output("failed_count", "failed attempts to archive"),
        output("last_archived_wal", "the last segment archived"),
        output(
            "last_archived_age_seconds",
            "seconds since the last segment was archived",
        ),
        output(
            "failing",
            "true when the last attempt failed and nothing was archived since",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = Some(Measure::seconds(
        "last_archived_age_seconds",
        Worse::Higher,
        Some(Metric::BackupAge),
    ));

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Backups)
    }

    const TARGET_KINDS: &'static [&'static str] = &["postgres", "local"];

    fn target(&self) -> Option<&str> {
        db_target(&self.db)
    }

    fn summary(&self) -> String {
        let age = self
            .max_age
            .map(|a| format!(", last segment younger than {a}"))
            .unwrap_or_default();
        format!(
            "WAL archiving on {} works{age}",
            crate::redact::mask_passwords(&self.db)
        )
    }
}

/// `local.backup_age`: the newest base backup in a directory of backups (each a directory
/// with a `backup_label`) is younger than `max_age`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalBackupAge {
    /// A directory holding base backups, one per subdirectory (or a single backup).
    pub dir: String,
    /// The oldest acceptable newest backup, e.g. `25h`.
    pub max_age: crate::duration::Duration,
}

impl Spec for LocalBackupAge {
    const HOST_NEEDS: Option<&'static str> = Some("the directory of base backups");
    const OUTPUTS: &'static [Output] = &[
        output("backups", "how many base backups the directory holds"),
        output("newest", "the newest one's directory"),
        output("newest_at", "when it was taken, RFC 3339 UTC"),
        output("age_seconds", "the newest base backup's age, in seconds"),
    ];
    const MEASURE: Option<Measure<'static>> = Some(Measure::seconds(
        "age_seconds",
        Worse::Higher,
        Some(Metric::BackupAge),
    ));

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Backups)
    }

    fn summary(&self) -> String {
        format!(
            "the newest base backup in {} is younger than {}",
            self.dir, self.max_age
        )
    }
}
