//! The Barman kinds: `barman.recover` (a backup of a Barman server recovered to a target in a
//! scratch instance, started as `local.start` starts one) and the checks `barman.check` (every
//! line of `barman check`, each a sub-result) and `barman.backup_age` (the newest DONE
//! backup's age).

use schemars::JsonSchema;
use serde::Deserialize;

use super::local::started_outputs;
use super::{
    output, Effects, Invalid, Measure, Metric, Output, Restore, Scratch, Spec, Verifies, Worse,
};
use crate::timestamp::TimeSpec;

/// What `barman recover` should stop at, as a runbook writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarmanTarget {
    /// The end of the archived WAL.
    Latest,
    /// A timestamp (RFC 3339 or relative, e.g. `now-1h`), as written.
    Time(String),
    /// A transaction id (`xid:1234`).
    Xid(u64),
    /// A WAL position (`0/5000028`).
    Lsn(String),
    /// A restore point's name.
    Name(String),
}

impl BarmanTarget {
    /// Reads a target: `latest`, `xid:<n>`, an LSN, a timestamp, else a restore point name.
    pub fn parse(text: &str) -> Result<BarmanTarget, String> {
        let t = text.trim();
        if t == "latest" {
            return Ok(BarmanTarget::Latest);
        }
        if let Some(n) = t.strip_prefix("xid:") {
            return n.trim().parse().map(BarmanTarget::Xid).map_err(|_| {
                format!("target `{t}`: a transaction id is `xid:` and digits, e.g. `xid:1234`")
            });
        }
        if let Some((a, b)) = t.split_once('/') {
            if !a.is_empty()
                && !b.is_empty()
                && a.len() <= 8
                && b.len() <= 8
                && a.chars().chain(b.chars()).all(|c| c.is_ascii_hexdigit())
            {
                return Ok(BarmanTarget::Lsn(t.to_owned()));
            }
        }
        if t.parse::<TimeSpec>().is_ok() {
            return Ok(BarmanTarget::Time(t.to_owned()));
        }
        let looks_like_date = t.len() >= 8
            && t.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && t.as_bytes()[4] == b'-';
        if looks_like_date || t.starts_with("now") {
            return Err(format!("target `{t}` looks like a timestamp but is not one: write RFC 3339, e.g. `2026-11-28T09:00:00Z`, or `now-1h`"));
        }
        // Barman writes the name into postgresql.auto.conf as it is, between quotes
        if t.is_empty() || t.contains(['\'', '\\', '\n', '\r', '\0']) {
            return Err(format!("target `{t}` is not a restore point name PostgreSQL can be given: no quotes, backslashes or line breaks"));
        }
        Ok(BarmanTarget::Name(t.to_owned()))
    }
}

/// `barman.recover`: `barman recover` of a backup into a scratch directory, as Barman's
/// account, to a target; then the instance is started as `local.start` starts one.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BarmanRecover {
    /// The Barman server (its section in Barman's configuration), e.g. `shop`.
    pub server: String,
    /// The backup to recover: `latest`, `oldest` or a backup id (`20261204T172215`).
    /// Default: for a time target, the newest DONE backup that ended before it; otherwise
    /// the latest.
    pub backup_id: Option<String>,
    /// `latest` (default: the end of the archived WAL), a timestamp (RFC 3339 or `now-1h`),
    /// an LSN (`0/5000028`), a transaction id (`xid:1234`) or a restore point name.
    #[serde(default = "latest")]
    pub target: String,
    /// Barman's configuration file (`barman -c`). Default: Barman's own
    /// (`/etc/barman.conf`, `~/.barman.conf`).
    pub config: Option<String>,
    /// Scratch directory for the recovered instance; must be new. Default: a new one under
    /// the system's temporary directory. Barman's account must be able to enter its parent.
    pub dir: Option<String>,
    /// Database named in `connection_uri` (default `postgres`).
    pub database: Option<String>,
    /// Leave the recovered instance running after the run (default false): neither cleanup
    /// nor `gc` removes it, and the outputs `psql_command` and `stop_command` say how to
    /// connect to it and how to stop and remove it.
    #[serde(default)]
    pub keep: bool,
}

fn latest() -> String {
    "latest".into()
}

impl Spec for BarmanRecover {
    const HOST_NEEDS: Option<&'static str> =
        Some("Barman with the server's backups and the PostgreSQL server binaries");
    const OUTPUTS: &'static [Output] = started_outputs![
        output("backup_id", "the Barman backup recovered"),
        output(
            "begin_time",
            "when that backup began, RFC 3339 UTC (Barman's `begin_time`)"
        ),
        output("end_time", "when it ended, RFC 3339 UTC"),
        output("end_wal", "the last WAL segment the backup needs"),
        output("timeline", "the backup's timeline"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects {
            restores: Some(match BarmanTarget::parse(&self.target) {
                Ok(BarmanTarget::Latest) => {
                    Restore::Full("full recovery of a Barman backup and its archived WAL")
                }
                _ => Restore::PointInTime,
            }),
            scratch: (!self.keep).then_some(Scratch::LocalCluster),
            ..Effects::NONE
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        if self.server.trim().is_empty() {
            return Err(Invalid::at("server", "`server` is empty"));
        }
        if !crate::template::is_template(&self.target) {
            BarmanTarget::parse(&self.target).map_err(|e| Invalid::at("target", e))?;
        }
        Ok(())
    }

    fn summary(&self) -> String {
        format!(
            "barman recover of server `{}` ({}) to {} in a scratch instance",
            self.server,
            self.backup_id.as_deref().unwrap_or("the backup that fits"),
            self.target
        )
    }
}

/// `barman.check`: `barman check SERVER`; every line is a sub-result, and any line that is
/// not OK fails the check.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BarmanCheck {
    /// The Barman server, e.g. `shop`.
    pub server: String,
    /// Barman's configuration file (`barman -c`). Default: Barman's own.
    pub config: Option<String>,
}

impl Spec for BarmanCheck {
    const HOST_NEEDS: Option<&'static str> = Some("Barman and its configuration");
    const OUTPUTS: &'static [Output] = &[
        output(
            "checks",
            "every line of `barman check`: a list of `{name, status, detail}` (`OK` or `FAILED`)",
        ),
        output("failed", "the names of the lines that are not OK"),
        output("failed_count", "how many lines are not OK"),
    ];
    const MEASURE: Option<Measure<'static>> = None;
    const PARTS: Option<&'static str> = Some("checks");

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Backups)
    }

    fn summary(&self) -> String {
        format!("`barman check {}` passes on every line", self.server)
    }
}

/// `barman.backup_age`: the newest DONE backup of a Barman server ended less than `max_age`
/// ago.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BarmanBackupAge {
    /// The Barman server, e.g. `shop`.
    pub server: String,
    /// Barman's configuration file (`barman -c`). Default: Barman's own.
    pub config: Option<String>,
    /// The oldest acceptable newest backup, e.g. `25h`. Default: none (the check's `warn`
    /// and `critical` on `age_seconds` still apply).
    pub max_age: Option<crate::duration::Duration>,
}

impl Spec for BarmanBackupAge {
    const HOST_NEEDS: Option<&'static str> = Some("Barman and its configuration");
    const OUTPUTS: &'static [Output] = &[
        output("backups", "how many DONE backups the server has"),
        output("newest", "the newest DONE backup's id"),
        output("newest_at", "when it ended, RFC 3339 UTC"),
        output("age_seconds", "seconds since it ended"),
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
        match self.max_age {
            Some(max) => format!(
                "the newest backup of Barman server `{}` is younger than {max}",
                self.server
            ),
            None => format!(
                "the age of the newest backup of Barman server `{}`",
                self.server
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_of_every_form() {
        assert_eq!(BarmanTarget::parse("latest"), Ok(BarmanTarget::Latest));
        assert_eq!(BarmanTarget::parse("xid:1234"), Ok(BarmanTarget::Xid(1234)));
        assert!(BarmanTarget::parse("xid:x").is_err());
        assert_eq!(
            BarmanTarget::parse("0/5000028"),
            Ok(BarmanTarget::Lsn("0/5000028".into()))
        );
        assert!(matches!(
            BarmanTarget::parse("2026-11-28T09:00:00Z"),
            Ok(BarmanTarget::Time(_))
        ));
        assert!(matches!(
            BarmanTarget::parse("now-1h"),
            Ok(BarmanTarget::Time(_))
        ));
        assert!(BarmanTarget::parse("2026-13-28T09:00:00Z").is_err());
        assert_eq!(
            BarmanTarget::parse("before-migration"),
            Ok(BarmanTarget::Name("before-migration".into()))
        );
        assert!(BarmanTarget::parse("it's").is_err());
    }
}
