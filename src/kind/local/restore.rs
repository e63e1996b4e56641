//! `local.restore` and `local.start`: a data directory recovered to a target in a scratch
//! instance on a private socket. `local.restore` fills it from a base backup; `local.start`
//! adopts one another tool filled (pgBackRest, Barman, WAL-G, a script). Both declare the
//! same outputs for the started instance.

use schemars::JsonSchema;
use serde::Deserialize;

use super::super::{db_target, output, Effects, Invalid, Measure, Output, Restore, Scratch, Spec};
use crate::timestamp::TimeSpec;

/// The outputs of an instance recovered and started, then `extra`.
macro_rules! started_outputs {
    ($($extra:expr),* $(,)?) => {
        &[
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
                "kept",
                "with `keep`: true, the instance is left running after the run",
            ),
            output("psql_command", "with `keep`: how to connect to it"),
            output("stop_command", "with `keep`: how to stop and remove it when done"),
            $($extra),*
        ]
    };
}
pub(crate) use started_outputs;

/// Where the recovered instance runs, as summaries say it.
fn instance(keep: bool) -> &'static str {
    if keep {
        "an instance kept after the run"
    } else {
        "a scratch instance"
    }
}

/// A recovery target that starts like a date but does not parse is a typo, not a restore
/// point name (recovery would wait for a point that never comes).
fn check_target(target: &str) -> Result<(), Invalid> {
    let t = target.trim();
    let looks_like_date =
        t.len() >= 8 && t.as_bytes()[..4].iter().all(u8::is_ascii_digit) && t.as_bytes()[4] == b'-';
    if looks_like_date && !crate::template::is_template(t) && t.parse::<TimeSpec>().is_err() {
        return Err(Invalid::at("target", format!("target `{t}` looks like a timestamp but is not one: write RFC 3339, e.g. `2026-11-28T09:00:00Z`")));
    }
    Ok(())
}

/// Everything to the latest state, or to a point in time.
fn restores(target: Option<&str>, full: &'static str) -> Restore {
    match target.map(str::trim) {
        Some("latest") => Restore::Full(full),
        _ => Restore::PointInTime,
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
    /// directory. It is stopped and removed at the end of the run, unless `keep`.
    pub dir: Option<String>,
    /// Leave the recovered instance running after the run (a real recovery: rows to copy
    /// back, a server to replace): its connection and stop commands are printed and
    /// recorded, and neither cleanup nor `drillbook gc` removes it.
    #[serde(default)]
    pub keep: bool,
}

fn latest() -> String {
    "latest".into()
}

impl Spec for LocalRestore {
    const HOST_NEEDS: Option<&'static str> =
        Some("the PostgreSQL server binaries, the base backups and the WAL archive");
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "local"];
    const OUTPUTS: &'static [Output] = started_outputs![
        output(
            "archive_gap",
            "the first WAL segment missing from the archive, when one is",
        ),
        output(
            "base_backup",
            "the base backup restored (chosen from a directory of them)",
        ),
        output(
            "base_backup_started_at",
            "when that backup started, RFC 3339 UTC"
        ),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    /// Everything to the latest state, or to a point in time.
    fn effects(&self) -> Effects<'_> {
        Effects {
            restores: Some(restores(
                Some(&self.target),
                "full restore from a base backup and the WAL archive",
            )),
            scratch: (!self.keep).then_some(Scratch::LocalCluster),
            ..Effects::NONE
        }
    }

    /// Nothing is connected to: `source` gives only its database's name.
    fn connects(&self) -> Vec<&str> {
        Vec::new()
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
        check_target(&self.target)
    }

    fn summary(&self) -> String {
        match (&self.backups, &self.base_backup, &self.wal_archive) {
            (None, Some(b), Some(w)) => format!(
                "restore {b} + WAL from {w} to {} in {}",
                self.target,
                instance(self.keep)
            ),
            _ => format!(
                "restore the backups of `{}` to {} in {}",
                self.backups.as_deref().unwrap_or("?"),
                self.target,
                instance(self.keep)
            ),
        }
    }
}

/// `local.start`: a data directory another tool filled (pgBackRest, Barman, WAL-G, a script)
/// taken over and started as `local.restore` starts its own: registered for undo before
/// anything changes, handed to the server's account, archiving off, a private socket and its
/// own `pg_hba.conf`, recovery to the target, and promotion.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalStart {
    /// The data directory the tool filled. It is moved into the step's scratch directory
    /// (so it must be on the same file system) and removed with it at the end of the run.
    pub data_dir: String,
    /// Recover from this WAL archive directory (`cp`), instead of the tool's own
    /// `restore_command`.
    pub wal_archive: Option<String>,
    /// Recover with this command (`%f` the segment, `%p` where it goes), e.g.
    /// `wal-g wal-fetch %f %p`, instead of the tool's own `restore_command`.
    pub restore_command: Option<String>,
    /// Recover to this target, written in PostgreSQL's own settings (replacing the tool's):
    /// `latest`, a timestamp, an LSN or a restore point name. Default: the target the tool
    /// wrote, if any, else the end of the WAL.
    pub target: Option<String>,
    /// The database the data is of (a target name or a connection string): its database is
    /// named in `connection_uri`. Nothing connects to it.
    pub source: Option<String>,
    /// Database named in `connection_uri` (default: `source`'s, else `postgres`).
    pub database: Option<String>,
    /// Role named in `connection_uri` (default: the bootstrap superuser).
    pub user: Option<String>,
    /// Scratch directory for the instance; must be new or empty. Default: a new one.
    pub dir: Option<String>,
    /// Leave the started instance running after the run (see `local.restore`'s `keep`).
    #[serde(default)]
    pub keep: bool,
}

impl Spec for LocalStart {
    const HOST_NEEDS: Option<&'static str> =
        Some("the PostgreSQL server binaries and the data directory the tool filled");
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "local"];
    const OUTPUTS: &'static [Output] = started_outputs![];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects {
            restores: Some(restores(
                self.target.as_deref(),
                "full restore of a data directory another tool filled",
            )),
            scratch: (!self.keep).then_some(Scratch::LocalCluster),
            ..Effects::NONE
        }
    }

    fn targets(&self) -> Vec<&str> {
        self.source
            .as_deref()
            .and_then(db_target)
            .into_iter()
            .collect()
    }

    /// Nothing is connected to: `source` gives only its database's name.
    fn connects(&self) -> Vec<&str> {
        Vec::new()
    }

    fn check(&self) -> Result<(), Invalid> {
        if self.wal_archive.is_some() && self.restore_command.is_some() {
            return Err(Invalid::at(
                "restore_command",
                "give `wal_archive` or `restore_command`, not both",
            ));
        }
        match &self.target {
            Some(t) => check_target(t),
            None => Ok(()),
        }
    }

    fn summary(&self) -> String {
        format!(
            "start the data directory {} in {}, recovered to {}",
            self.data_dir,
            instance(self.keep),
            self.target.as_deref().unwrap_or("the tool's target")
        )
    }
}
