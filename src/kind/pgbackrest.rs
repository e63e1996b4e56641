//! The `pgbackrest` provider: a point-in-time restore from a pgBackRest repository into a
//! scratch instance (`pgbackrest.restore`, started as `local.start` starts its own), and the
//! health checks that read the repository (`stanza`, `backup_age`, `retention`, `archive`,
//! `encryption`, `verify`). Every check of one check run shares one `pgbackrest info`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    db_target, output, Effects, Invalid, Measure, Metric, Output, Restore, Scratch, Spec, Unit,
    Verifies, Worse,
};
use crate::duration::Duration;

const HOST_NEEDS: Option<&str> =
    Some("`pgbackrest` with access to the repository (its config and cipher pass)");

/// `pgbackrest.restore`: `pgbackrest restore` of a stanza into a scratch directory, as the
/// server's account, recovered to `target` and started on a private socket.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgbackrestRestore {
    /// The stanza to restore, e.g. `main`.
    pub stanza: String,
    /// pgBackRest's configuration file (`--config`); default: pgBackRest's own
    /// (`PGBACKREST_CONFIG`, else `/etc/pgbackrest/pgbackrest.conf`). The cipher pass comes
    /// from it or from `PGBACKREST_REPO1_CIPHER_PASS`, never from the runbook.
    pub config: Option<String>,
    /// The repository to restore from (`--repo`), e.g. `1`; default: pgBackRest's choice.
    pub repo: Option<u32>,
    /// The backup set: `latest`, or a label (`20261128-010000F`); default: the set pgBackRest
    /// chooses for the target.
    pub set: Option<String>,
    /// `latest` (default), a timestamp (RFC 3339 or `now-1h`), an LSN (`0/5000028`),
    /// `xid:<n>`, or the name of a restore point.
    #[serde(default = "latest")]
    pub target: String,
    /// Stop just before the target instead of just after it (`--target-exclusive`).
    #[serde(default)]
    pub target_exclusive: bool,
    /// Restore only these databases (`--db-include`); the others are left empty.
    #[serde(default)]
    pub db_include: Vec<String>,
    /// Parallel processes for the restore (`--process-max`).
    pub process_max: Option<u32>,
    /// Database named in the `connection_uri` output (default `postgres`).
    pub database: Option<String>,
    /// Directory for the restored instance; must be new or empty. Default: a new scratch
    /// directory. It is stopped and removed at the end of the run, unless `keep`.
    pub dir: Option<String>,
    /// Leave the recovered instance running after the run (a real recovery): its connection
    /// and stop commands are recorded, and neither cleanup nor `drillbook gc` removes it.
    #[serde(default)]
    pub keep: bool,
}

fn latest() -> String {
    "latest".into()
}

impl Spec for PgbackrestRestore {
    const HOST_NEEDS: Option<&'static str> =
        Some("`pgbackrest` with access to the repository, and the PostgreSQL server binaries");
    const OUTPUTS: &'static [Output] = &[
        output(
            "connection_uri",
            "the restored instance's URL: its private socket, `database` (else `postgres`), the bootstrap superuser",
        ),
        output("port", "the port it listens on"),
        output("dir", "its directory"),
        output("data_dir", "its data directory"),
        output("target", "the recovery target as pgBackRest was given it"),
        output(
            "recovered_to",
            "the last transaction recovery replayed, as the server logged it",
        ),
        output("wal_replayed_bytes", "how much WAL recovery replayed, in bytes"),
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
        output("backup_set", "the label of the backup set pgBackRest restored"),
        output("backup_type", "its type: `full`, `diff` or `incr`"),
        output("backup_started_at", "when that backup started, RFC 3339 UTC"),
        output("backup_finished_at", "when it finished, RFC 3339 UTC"),
        output("backup_lsn_stop", "the WAL position it ends at"),
        output(
            "backup_reference",
            "the sets it depends on (comma-separated labels), empty for a full set",
        ),
        output("restore_size_bytes", "the database size of the set, in bytes"),
        output("repo_size_bytes", "the set's size in the repository, in bytes"),
        output("repo", "the repository it came from (its key, e.g. `1`)"),
        output("cipher", "the repository's cipher, e.g. `aes-256-cbc`"),
        output("pgbackrest_version", "the version of pgBackRest that restored it"),
        output("restore_ms", "how long `pgbackrest restore` took, in milliseconds"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects {
            restores: Some(match self.target.trim() {
                "latest" => Restore::Full("full restore from a pgBackRest repository"),
                _ => Restore::PointInTime,
            }),
            scratch: (!self.keep).then_some(Scratch::LocalCluster),
            ..Effects::NONE
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        check_stanza(&self.stanza)?;
        let t = self.target.trim();
        if let Some(xid) = t.strip_prefix("xid:") {
            if xid.trim().parse::<u64>().is_err() && !crate::template::is_template(xid) {
                return Err(Invalid::at(
                    "target",
                    format!(
                        "`{t}`: a transaction id target is `xid:` and a number, e.g. `xid:1234`"
                    ),
                ));
            }
            return Ok(());
        }
        let looks_like_date = t.len() >= 8
            && t.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && t.as_bytes()[4] == b'-';
        if looks_like_date
            && !crate::template::is_template(t)
            && t.parse::<crate::timestamp::TimeSpec>().is_err()
        {
            return Err(Invalid::at("target", format!("target `{t}` looks like a timestamp but is not one: write RFC 3339, e.g. `2026-11-28T09:00:00Z`")));
        }
        if self.process_max == Some(0) {
            return Err(Invalid::at("process_max", "`process_max` is at least 1"));
        }
        Ok(())
    }

    fn summary(&self) -> String {
        format!(
            "pgbackrest restore of stanza `{}` to {} in {}",
            self.stanza,
            self.target,
            if self.keep {
                "an instance kept after the run"
            } else {
                "a scratch instance"
            }
        )
    }
}

fn check_stanza(stanza: &str) -> Result<(), Invalid> {
    let ok = !stanza.is_empty()
        && (crate::template::is_template(stanza)
            || stanza
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')));
    if ok {
        Ok(())
    } else {
        Err(Invalid::at(
            "stanza",
            format!("{stanza:?} is not a stanza name: letters, digits, `_`, `-` and `.`"),
        ))
    }
}

/// The repository every pgBackRest check reads.
macro_rules! repository_fields {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The stanza, e.g. `main`.
            pub stanza: String,
            /// pgBackRest's configuration file (`--config`); default: pgBackRest's own.
            pub config: Option<String>,
            /// Only this repository (`--repo`), e.g. `1`; default: all of them.
            pub repo: Option<u32>,
            $($(#[$fm])* pub $f: $t),*
        }
    };
}

repository_fields! {
    /// `pgbackrest.stanza`: the stanza's and every repository's status code is 0 (`ok`), and
    /// no backup has held its lock longer than `lock_max`.
    pub struct PgbackrestStanza {
        /// The longest a backup (or expire) may hold the stanza's lock, e.g. `6h`.
        pub lock_max: Option<Duration>,
    }
}

impl Spec for PgbackrestStanza {
    const HOST_NEEDS: Option<&'static str> = HOST_NEEDS;
    const OUTPUTS: &'static [Output] = &[
        output("status_code", "the stanza's status code (0 ok … 6, 99)"),
        output("status_message", "pgBackRest's message for it"),
        output(
            "repo_status",
            "each repository's status, e.g. `repo1: 0 ok`",
        ),
        output("backups", "how many backup sets the repositories hold"),
        output(
            "lock_held",
            "true when a backup or expire holds the stanza's lock",
        ),
        output(
            "lock_held_seconds",
            "how long the lock has been held, when it is and its lock file is readable",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Backups)
    }

    fn check(&self) -> Result<(), Invalid> {
        check_stanza(&self.stanza)
    }

    fn summary(&self) -> String {
        format!("pgBackRest stanza `{}` is healthy", self.stanza)
    }
}

/// Which backups `pgbackrest.backup_age` considers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    Full,
    Diff,
    Incr,
    #[default]
    Any,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
            BackupType::Any => "any",
        }
    }
}

repository_fields! {
    /// `pgbackrest.backup_age`: the newest backup of `type` that did not fail stopped less than
    /// `max_age` ago.
    pub struct PgbackrestBackupAge {
        /// `full`, `diff`, `incr` or `any` (default).
        #[serde(default, rename = "type")]
        pub backup_type: BackupType,
        /// The oldest acceptable newest backup, e.g. `25h`; without it only `warn`/`critical`
        /// judge the age.
        pub max_age: Option<Duration>,
    }
}

impl Spec for PgbackrestBackupAge {
    const HOST_NEEDS: Option<&'static str> = HOST_NEEDS;
    const OUTPUTS: &'static [Output] = &[
        output("label", "the newest such backup's label"),
        output("type", "its type"),
        output("finished_at", "when it stopped, RFC 3339 UTC"),
        output(
            "age_seconds",
            "seconds since the newest such backup stopped",
        ),
        output(
            "backups",
            "how many backups of that type the repository holds",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = Some(Measure::seconds(
        "age_seconds",
        Worse::Higher,
        Some(Metric::BackupAge),
    ));

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Backups)
    }

    fn check(&self) -> Result<(), Invalid> {
        check_stanza(&self.stanza)
    }

    fn summary(&self) -> String {
        let age = self
            .max_age
            .map(|a| format!(" finished less than {a} ago"))
            .unwrap_or_else(|| " is recent".into());
        format!(
            "the newest {} backup of stanza `{}`{age}",
            self.backup_type.as_str(),
            self.stanza
        )
    }
}

repository_fields! {
    /// `pgbackrest.retention`: the repository keeps what the policy promises: a restore window
    /// from the oldest backup of at least `min_window`, a backup on at least `min_days` of the
    /// last `days` days, at least `min_full` full sets, and WAL from the oldest set onwards.
    pub struct PgbackrestRetention {
        /// The days looked at for `min_days` (default: `backup_policy.retention.daily`, else 7).
        pub days: Option<u32>,
        /// Days among them with a backup (default: `days`).
        pub min_days: Option<u32>,
        /// The shortest acceptable restore window (default: `days` days).
        pub min_window: Option<Duration>,
        /// The fewest full sets (default: `backup_policy.retention.weekly`, else 4: one full a
        /// week kept four weeks).
        pub min_full: Option<u32>,
    }
}

impl Spec for PgbackrestRetention {
    const HOST_NEEDS: Option<&'static str> = HOST_NEEDS;
    const OUTPUTS: &'static [Output] = &[
        output(
            "restore_window_seconds",
            "from the oldest backup's stop to now: how far back a restore can go",
        ),
        output("oldest", "the oldest backup's label"),
        output(
            "days_with_backup",
            "distinct days (UTC) of the last `days` with a backup",
        ),
        output("full_sets", "how many full sets the repository holds"),
        output("wal_from", "the oldest WAL segment the archive holds"),
        output("wal_to", "the newest"),
    ];
    const MEASURE: Option<Measure<'static>> = Some(Measure::seconds(
        "restore_window_seconds",
        Worse::Lower,
        Some(Metric::RestoreWindow),
    ));

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Backups)
    }

    fn check(&self) -> Result<(), Invalid> {
        check_stanza(&self.stanza)?;
        if self.days == Some(0) {
            return Err(Invalid::at("days", "`days` is at least 1"));
        }
        Ok(())
    }

    fn summary(&self) -> String {
        format!(
            "pgBackRest stanza `{}` keeps the backup policy's retention",
            self.stanza
        )
    }
}

repository_fields! {
    /// `pgbackrest.archive`: the newest WAL segment in the repository was archived less than
    /// `max_age` ago; with `db`, it is at most `max_lag_segments` behind the server's current
    /// segment (read from the repository, so right with asynchronous archiving too).
    pub struct PgbackrestArchive {
        /// The oldest acceptable newest archived segment, e.g. `1h`.
        pub max_age: Option<Duration>,
        /// The production server (a target name or a connection string): its current WAL
        /// segment is compared with the repository's newest.
        pub db: Option<String>,
        /// How many segments the repository may be behind `db`'s current one (default 2: the
        /// one being written and one on its way).
        pub max_lag_segments: Option<u64>,
    }
}

impl Spec for PgbackrestArchive {
    const HOST_NEEDS: Option<&'static str> = HOST_NEEDS;
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "local"];
    const OUTPUTS: &'static [Output] = &[
        output("newest_wal", "the newest WAL segment in the repository"),
        output(
            "archived_at",
            "when it reached the repository, RFC 3339 UTC",
        ),
        output(
            "age_seconds",
            "seconds since the newest segment reached the repository",
        ),
        output("current_wal", "with `db`: the server's current WAL segment"),
        output(
            "lag_segments",
            "with `db`: how many segments the repository is behind",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = Some(Measure::seconds(
        "age_seconds",
        Worse::Higher,
        Some(Metric::BackupAge),
    ));

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Backups)
    }

    fn target(&self) -> Option<&str> {
        self.db.as_deref().and_then(db_target)
    }

    fn check(&self) -> Result<(), Invalid> {
        check_stanza(&self.stanza)
    }

    fn summary(&self) -> String {
        format!("pgBackRest stanza `{}` archives WAL", self.stanza)
    }
}

repository_fields! {
    /// `pgbackrest.encryption`: every repository of the stanza uses `cipher`, never `none`.
    pub struct PgbackrestEncryption {
        /// The expected cipher (default `aes-256-cbc`).
        pub cipher: Option<String>,
    }
}

impl Spec for PgbackrestEncryption {
    const HOST_NEEDS: Option<&'static str> = HOST_NEEDS;
    const OUTPUTS: &'static [Output] = &[
        output("cipher", "the stanza's cipher"),
        output(
            "repos",
            "each repository's cipher, e.g. `repo1: aes-256-cbc`",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Backups)
    }

    fn check(&self) -> Result<(), Invalid> {
        check_stanza(&self.stanza)?;
        if self.cipher.as_deref().map(str::trim) == Some("none") {
            return Err(Invalid::at(
                "cipher",
                "`none` is no encryption: name the cipher the repositories must use, e.g. `aes-256-cbc`",
            ));
        }
        Ok(())
    }

    fn summary(&self) -> String {
        format!(
            "every repository of stanza `{}` is encrypted with {}",
            self.stanza,
            self.cipher.as_deref().unwrap_or("aes-256-cbc")
        )
    }
}

repository_fields! {
    /// `pgbackrest.verify`: `pgbackrest verify` finds every backup file and WAL segment intact;
    /// judged by its report (it exits 0 when it reports errors).
    pub struct PgbackrestVerify {}
}

impl Spec for PgbackrestVerify {
    const HOST_NEEDS: Option<&'static str> = HOST_NEEDS;
    const OUTPUTS: &'static [Output] = &[
        output(
            "invalid_files",
            "files verify found missing, invalid or unreadable",
        ),
        output("checked_files", "backup files and WAL segments it checked"),
        output(
            "first_problem",
            "the first line of its report that names a problem",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = Some(Measure {
        output: "invalid_files",
        unit: Unit::Count,
        worse: Worse::Higher,
        metric: None,
    });

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Backups)
    }

    fn check(&self) -> Result<(), Invalid> {
        check_stanza(&self.stanza)
    }

    fn summary(&self) -> String {
        format!("pgbackrest verify finds stanza `{}` intact", self.stanza)
    }
}
