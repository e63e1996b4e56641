//! The `local` provider: self-hosted PostgreSQL point-in-time recovery. `local.cluster`
//! starts a throwaway archiving cluster (demos and tests), `local.base_backup` takes a
//! `pg_basebackup`, `local.restore_point` names a point in the WAL, `local.restore` restores
//! a base backup plus the WAL archive into a scratch instance at a target, and
//! `local.archiver` and `local.backup_age` check the backups' health.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    db_target, output, Effects, Invalid, Measure, Metric, Output, Restore, Scratch, Spec, Text,
    Verifies, Worse,
};
use crate::timestamp::TimeSpec;

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
    const MEASURE: Option<Measure> = None;

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
    const MEASURE: Option<Measure> = None;

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
    const MEASURE: Option<Measure> = None;

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
    const MEASURE: Option<Measure> = Some(Measure::seconds(
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
    const MEASURE: Option<Measure> = Some(Measure::seconds(
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

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalRestore {
    /// A `local` target whose `base_backup` and `wal_archive` to restore, instead of giving
    /// them here.
    pub backups: Option<String>,
    /// A plain-format base backup directory (`pg_basebackup -Fp`), or a directory of them
    /// (one per subdirectory, e.g. dated): then the newest complete one that started before
    /// the target is restored.
    pub base_backup: Option<String>,
    /// The WAL archive directory (what `archive_command` copies into).
    pub wal_archive: Option<String>,
    /// `latest` (default), a timestamp (RFC 3339 or `now-1h`), an LSN (`0/5000028`), or the
    /// name of a restore point.
    #[serde(default = "latest")]
    pub target: String,
    /// The database the backups are of: a target name or a connection string, e.g.
    /// `production`. The `connection_uri` output then names its database, so the restored
    /// copy is compared with the same one. Nothing connects to it.
    pub source: Option<String>,
    /// Database named in the `connection_uri` output (default: `source`'s database, else
    /// `postgres`).
    pub database: Option<String>,
    /// Role named in the `connection_uri` output (default: the restored cluster's bootstrap
    /// superuser, whatever `initdb -U` named it). The restored instance trusts its private
    /// socket, whatever the source's `pg_hba.conf` said; any role of the source exists in it.
    pub user: Option<String>,
    /// Directory for the restored instance; must be new or empty. Default: a new scratch
    /// directory. It is stopped and removed at the end of the run.
    pub dir: Option<String>,
}

fn latest() -> String {
    "latest".into()
}

impl Spec for LocalRestore {
    const HOST_NEEDS: Option<&'static str> =
        Some("the PostgreSQL server binaries, the base backups and the WAL archive");
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "local"];
    const OUTPUTS: &'static [Output] = &[
        output(
            "connection_uri",
            "the restored instance's URL: its private socket, the source's database (else `postgres`), the bootstrap superuser",
        ),
        output("port", "the port it listens on"),
        output("dir", "its directory"),
        output("data_dir", "its data directory"),
        output("target", "the recovery target as PostgreSQL was given it"),
        output(
            "recovered_to",
            "the last transaction recovery replayed, as the server logged it",
        ),
        output(
            "wal_replayed_bytes",
            "how much WAL recovery replayed, in bytes",
        ),
        output(
            "promoted_in_ms",
            "from the server's start to its promotion, in milliseconds",
        ),
        output(
            "archive_gap",
            "the first WAL segment missing from the archive, when one is",
        ),
        output(
            "base_backup",
            "the base backup restored (chosen from a directory of them)",
        ),
        output("base_backup_started_at", "when that backup started, RFC 3339 UTC"),
    ];
    const MEASURE: Option<Measure> = None;

    /// Everything to the latest state, or to a point in time.
    fn effects(&self) -> Effects<'_> {
        let restores = if self.target.trim() == "latest" {
            Restore::Full("full restore from a base backup and the WAL archive")
        } else {
            Restore::PointInTime
        };
        Effects {
            restores: Some(restores),
            scratch: Some(Scratch::LocalCluster),
            ..Effects::NONE
        }
    }

    /// `backups` names the backups; `source` is only read (its database's name).
    fn targets(&self) -> Vec<&str> {
        self.backups
            .as_deref()
            .filter(|b| !crate::template::is_template(b))
            .into_iter()
            .chain(self.source.as_deref().and_then(db_target))
            .collect()
    }

    fn check(&self) -> Result<(), Invalid> {
        match (&self.backups, &self.base_backup, &self.wal_archive) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            (Some(_), _, _) => {
                return Err(Invalid::at(
                    "backups",
                    "give `backups` (a local target) or `base_backup` and `wal_archive`, not both",
                ))
            }
            (None, None, _) => {
                return Err(Invalid::whole(
                    "missing the base backup: give `base_backup` and `wal_archive`, or `backups` naming a local target",
                ))
            }
            (None, Some(_), None) => {
                return Err(Invalid::whole(
                    "missing `wal_archive`: the archive recovery replays to the target",
                ))
            }
        }
        let t = self.target.trim();
        // something that starts like a date but does not parse is a typo, not a restore
        // point name (recovery would wait for a point that never comes)
        let looks_like_date = t.len() >= 8
            && t.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && t.as_bytes()[4] == b'-';
        if looks_like_date && !crate::template::is_template(t) && t.parse::<TimeSpec>().is_err() {
            return Err(Invalid::at("target", format!("target `{t}` looks like a timestamp but is not one: write RFC 3339, e.g. `2026-11-28T09:00:00Z`")));
        }
        Ok(())
    }

    fn summary(&self) -> String {
        match (&self.backups, &self.base_backup, &self.wal_archive) {
            (None, Some(b), Some(w)) => format!(
                "restore {b} + WAL from {w} to {} in a scratch instance",
                self.target
            ),
            _ => format!(
                "restore the backups of `{}` to {} in a scratch instance",
                self.backups.as_deref().unwrap_or("?"),
                self.target
            ),
        }
    }
}
