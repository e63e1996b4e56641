//! The Neon provider's kinds: branches at a point in time (`create_branch`, `restore_branch`,
//! `delete_branch`, `set_default_branch`, `connection_uri`), snapshots (`create_snapshot`,
//! `restore_snapshot`, `finalize_restore`, `delete_snapshot`), `schema_diff`, and the checks
//! `retention`, `backup_schedule`, `snapshot_age` and `project`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    output, Effects, Invalid, Measure, Metric, Output, PointInTime, Restore, Scratch, Spec,
    Verifies, Worse,
};
use crate::duration::Duration;

/// The outputs every kind that ends with a branch has (its id, name, parent, state), then
/// the kind's own.
macro_rules! branch_outputs {
    ($($own:expr),* $(,)?) => {
        &[
            output("id", "the branch's id"),
            output("name", "its name"),
            output("parent_id", "its parent branch's id"),
            output("parent_lsn", "the parent's LSN it starts from"),
            output("parent_timestamp", "the parent's time it starts from"),
            output("current_state", "its state (`ready`, `init`, …)"),
            $($own),*
        ]
    };
}

/// `neon.create_branch`: a new branch from the target's branch (or `from`) as of `at`, with
/// a read-write compute, deleted at the end of the run unless `keep: true`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonCreateBranch {
    /// A `neon` target.
    pub target: String,
    /// The parent branch (name or `br-…` id); default: the target's branch, else the
    /// project's default branch.
    pub from: Option<String>,
    /// The point in the parent's history: a timestamp (RFC 3339 or `now-24h`) or an LSN
    /// (`0/1DE2850`); default: the parent's head.
    pub at: Option<String>,
    /// Branch name; default `drillbook-<run id>-<step id>`.
    pub name: Option<String>,
    /// Sets the branch's `expires_at` this far ahead, so Neon deletes it even if drillbook
    /// cannot (default `1d` for branches drillbook deletes itself; none with `keep`). At most
    /// 30 days.
    pub expires_in: Option<Duration>,
    /// Database named in `connection_uri` (default: the target's, else `neondb`).
    pub database: Option<String>,
    /// Role named in `connection_uri` (default: the target's, else the database's owner).
    pub role: Option<String>,
    /// Keep the branch after the run (default false: it is deleted on every path).
    #[serde(default)]
    pub keep: bool,
}

impl Spec for NeonCreateBranch {
    const OUTPUTS: &'static [Output] = branch_outputs![
        output("project_id", "the Neon project"),
        output("endpoint_id", "its read-write compute endpoint"),
        output("endpoint_host", "that endpoint's host"),
        output(
            "connection_uri",
            "a connection string to the branch (contains a password: masked in records)",
        ),
        output(
            "recovery_point",
            "the timestamp or LSN it was created at (`head` when none)",
        ),
        output(
            "target_time",
            "the point in time asked for, when a timestamp",
        ),
        output(
            "created_in_ms",
            "how long creating it took, in milliseconds",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects {
            restores: self.at.as_ref().map(|_| Restore::PointInTime),
            scratch: (!self.keep).then_some(Scratch::NeonBranch),
            verifies: None,
            at: point(&self.target, self.at.as_deref()),
        }
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn check(&self) -> Result<(), Invalid> {
        if let Some(e) = self.expires_in {
            if e.0 > std::time::Duration::from_secs(30 * 86_400) || e.0.as_secs() < 60 {
                return Err(Invalid::at(
                    "expires_in",
                    format!("`expires_in: {e}`: Neon accepts 1 minute to 30 days"),
                ));
            }
        }
        Ok(())
    }

    fn summary(&self) -> String {
        format!(
            "create Neon branch {} from {} at {}{}",
            self.name.as_deref().unwrap_or("drillbook-<run>"),
            self.from.as_deref().unwrap_or(&self.target),
            self.at.as_deref().unwrap_or("its head"),
            if self.keep {
                " (kept)"
            } else {
                " (deleted at the end of the run)"
            }
        )
    }
}

/// `neon.restore_branch`: overwrite a branch (typically production) with its own past
/// (`at`) or another branch's data (`from`), keeping the pre-restore state as a branch.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonRestoreBranch {
    /// A `neon` target.
    pub target: String,
    /// The branch to overwrite (name or id); default: the target's branch.
    pub branch: Option<String>,
    /// The source branch (name or id); default: the branch itself (restore to its past).
    pub from: Option<String>,
    /// The point in the source's history (timestamp or LSN); required when restoring a
    /// branch to its own past; default: the source's head.
    pub at: Option<String>,
    /// Name of the branch that keeps the pre-restore state (default
    /// `<name>_before_<UTC timestamp>`).
    pub preserve_under_name: Option<String>,
}

impl Spec for NeonRestoreBranch {
    const OUTPUTS: &'static [Output] = branch_outputs![
        output(
            "preserved_id",
            "the branch holding the state before the restore",
        ),
        output("preserved_name", "its name"),
        output("source_id", "the branch restored from"),
        output(
            "restored_to",
            "the timestamp or LSN restored to (`head` when none)",
        ),
        output("last_reset_at", "when Neon reset the branch"),
        output(
            "restored_in_ms",
            "how long the restore took, in milliseconds",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects {
            restores: self.at.as_ref().map(|_| Restore::PointInTime),
            at: point(&self.target, self.at.as_deref()),
            ..Effects::NONE
        }
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];
    const DESTRUCTIVE: bool = true;

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn check(&self) -> Result<(), Invalid> {
        if self.from.is_none() && self.at.is_none() {
            return Err(Invalid::whole("restoring a branch to its own past needs `at` (a timestamp or LSN), or `from` another branch"));
        }
        Ok(())
    }

    fn summary(&self) -> String {
        format!(
            "RESTORE Neon branch {} from {} at {} (pre-restore state kept as {})",
            self.branch.as_deref().unwrap_or(&self.target),
            self.from.as_deref().unwrap_or("its own history"),
            self.at.as_deref().unwrap_or("head"),
            self.preserve_under_name
                .as_deref()
                .unwrap_or("<name>_before_<time>")
        )
    }
}

/// `neon.delete_branch`: deletes a branch (never the target's own branch or the default).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonDeleteBranch {
    /// A `neon` target.
    pub target: String,
    /// Branch name or id, e.g. `"{{ steps.branch.id }}"`.
    pub branch: String,
}

impl Spec for NeonDeleteBranch {
    const OUTPUTS: &'static [Output] = &[
        output(
            "deleted",
            "true when it was deleted; false when it was already gone",
        ),
        output("id", "the deleted branch's id"),
        output("name", "its name"),
        output("note", "`already gone` when there was nothing to delete"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        format!("delete Neon branch {}", self.branch)
    }
}

/// `neon.set_default_branch`: makes a branch the project's default (where the project's
/// default connection string points).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonSetDefaultBranch {
    /// A `neon` target.
    pub target: String,
    /// Branch name or id.
    pub branch: String,
}

impl Spec for NeonSetDefaultBranch {
    const OUTPUTS: &'static [Output] = &[
        output(
            "previous_default_id",
            "the branch that was the default before",
        ),
        output("previous_default_name", "its name"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];
    /// It moves production traffic.
    const DESTRUCTIVE: bool = true;

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        format!("make Neon branch {} the project's default", self.branch)
    }
}

/// `neon.connection_uri`: the connection string of a branch's compute.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonConnectionUri {
    /// A `neon` target.
    pub target: String,
    /// Branch name or id; default: the target's branch.
    pub branch: Option<String>,
    /// Default: the target's database, else `neondb`.
    pub database: Option<String>,
    /// Default: the target's role, else the database's owner.
    pub role: Option<String>,
    /// The pooled (PgBouncer) host.
    #[serde(default)]
    pub pooled: bool,
}

impl Spec for NeonConnectionUri {
    const OUTPUTS: &'static [Output] = &[
        output(
            "connection_uri",
            "the connection string (contains a password: masked in records)",
        ),
        output("branch_id", "the branch"),
        output("database", "the database it names"),
        output("role", "the role it connects as"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        format!(
            "look up the connection string of {}",
            self.branch.as_deref().unwrap_or(&self.target)
        )
    }
}

/// `neon.create_snapshot`: a snapshot of a root branch, now or at a point in its history.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonCreateSnapshot {
    /// A `neon` target.
    pub target: String,
    /// A root branch (name or id); default: the target's branch.
    pub branch: Option<String>,
    /// A timestamp or LSN inside the restore window; default: now.
    pub at: Option<String>,
    /// Snapshot name; default `drillbook-<run id>-<step id>`.
    pub name: Option<String>,
    /// Sets the snapshot's `expires_at` this far ahead.
    pub expires_in: Option<Duration>,
    /// Keep the snapshot after the run (default false: it is deleted on every path).
    #[serde(default)]
    pub keep: bool,
}

impl Spec for NeonCreateSnapshot {
    const OUTPUTS: &'static [Output] = &[
        output("id", "the snapshot's id"),
        output("name", "its name"),
        output("branch_id", "the branch it was taken of"),
        output("timestamp", "the point in time it holds"),
        output("lsn", "the LSN it holds"),
        output("created_in_ms", "how long taking it took, in milliseconds"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects {
            scratch: (!self.keep).then_some(Scratch::NeonBranch),
            at: point(&self.target, self.at.as_deref()),
            ..Effects::NONE
        }
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        format!(
            "snapshot {} at {}{}",
            self.branch.as_deref().unwrap_or(&self.target),
            self.at.as_deref().unwrap_or("now"),
            if self.keep {
                " (kept)"
            } else {
                " (deleted at the end of the run)"
            }
        )
    }
}

/// `neon.restore_snapshot`: a snapshot's data as a new branch (to inspect, then delete), or
/// with `finalize: true` in place of the target branch (its computes move to the restored
/// data; the old branch is kept as `<name> (old)`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonRestoreSnapshot {
    /// A `neon` target.
    pub target: String,
    /// Snapshot id (`snap-…`) or name, or `latest` for the newest snapshot of the target's
    /// branch.
    pub snapshot: String,
    /// The branch the snapshot restores onto (name or id); default: the target's branch.
    pub into: Option<String>,
    /// Name of the new branch.
    pub name: Option<String>,
    /// Replace the target branch with the restored data (destructive: needs approval).
    #[serde(default)]
    pub finalize: bool,
    /// Without `finalize`: keep the restored branch after the run (default false).
    #[serde(default)]
    pub keep: bool,
    /// Database named in `connection_uri` (default: the target's, else `neondb`).
    pub database: Option<String>,
    /// Role named in `connection_uri` (default: the target's, else the database's owner).
    pub role: Option<String>,
}

impl Spec for NeonRestoreSnapshot {
    const OUTPUTS: &'static [Output] = branch_outputs![
        output("snapshot_id", "the snapshot restored"),
        output("snapshot_time", "the point in time it holds"),
        output("restore_status", "Neon's status of the restore"),
        output(
            "endpoint_created",
            "true when a compute endpoint was created for the branch",
        ),
        output(
            "connection_uri",
            "a connection string to the restored branch (masked in records)",
        ),
        output(
            "restored_in_ms",
            "how long the restore took, in milliseconds",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects {
            restores: Some(Restore::Full("full restore from a snapshot")),
            scratch: (!self.keep && !self.finalize).then_some(Scratch::NeonBranch),
            ..Effects::NONE
        }
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];

    fn destructive(&self) -> bool {
        self.finalize
    }

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        if self.finalize {
            format!(
                "RESTORE snapshot {} in place of {}",
                self.snapshot,
                self.into.as_deref().unwrap_or(&self.target)
            )
        } else {
            format!("restore snapshot {} into a new branch", self.snapshot)
        }
    }
}

/// `neon.finalize_restore`: completes a multi-step snapshot restore: the restored branch
/// (from `neon.restore_snapshot` without `finalize`) takes the place of the branch it was
/// restored onto — its computes, name and connection string; the replaced branch is kept
/// (as `name`, default `<name> (old)`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonFinalizeRestore {
    /// A `neon` target.
    pub target: String,
    /// The restored branch (name or id), e.g. `"{{ steps.restore.id }}"`.
    pub branch: String,
    /// New name for the replaced branch.
    pub name: Option<String>,
}

impl Spec for NeonFinalizeRestore {
    const OUTPUTS: &'static [Output] = branch_outputs![
        output("restore_status", "Neon's status of the restore"),
        output("replaced_id", "the branch the restored one replaced"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];
    /// It replaces a branch (typically production).
    const DESTRUCTIVE: bool = true;

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        format!(
            "FINALIZE the snapshot restore {}: it replaces the branch it was restored onto",
            self.branch
        )
    }
}

/// `neon.delete_snapshot`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonDeleteSnapshot {
    /// A `neon` target.
    pub target: String,
    /// Snapshot id (`snap-…`) or name.
    pub snapshot: String,
}

impl Spec for NeonDeleteSnapshot {
    const OUTPUTS: &'static [Output] = &[
        output(
            "deleted",
            "true when it was deleted; false when it was already gone",
        ),
        output("id", "the deleted snapshot's id"),
        output("note", "`already gone` when there was nothing to delete"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        format!("delete Neon snapshot {}", self.snapshot)
    }
}

/// `neon.schema_diff`: Neon's schema comparison of a branch (optionally at a point in time)
/// against a base branch; fails when they differ unless `allow_changes: true`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonSchemaDiff {
    /// A `neon` target.
    pub target: String,
    /// The branch compared (name or id), e.g. `"{{ steps.branch.id }}"`; default: the
    /// target's branch.
    pub branch: Option<String>,
    /// The point in `branch`'s history to compare (timestamp or LSN); default: its head.
    pub at: Option<String>,
    /// The base branch (name or id); default: the target's branch.
    pub base: Option<String>,
    /// Database (default: the target's, else `neondb`).
    pub database: Option<String>,
    /// Report differences without failing.
    #[serde(default)]
    pub allow_changes: bool,
}

impl Spec for NeonSchemaDiff {
    const OUTPUTS: &'static [Output] = &[
        output("changed_lines", "how many lines of the schema differ"),
        output("identical", "true when the schemas are the same"),
        output("diff", "the difference, as a unified diff"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects {
            verifies: Some(Verifies::Data),
            at: point(&self.target, self.at.as_deref()),
            ..Effects::NONE
        }
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        format!(
            "compare the schema of {}{} with {}",
            self.branch.as_deref().unwrap_or(&self.target),
            self.at
                .as_deref()
                .map(|a| format!(" at {a}"))
                .unwrap_or_default(),
            self.base.as_deref().unwrap_or(&self.target)
        )
    }
}

/// `neon.retention`: the project's restore window is at least `min`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonRetention {
    /// A `neon` target.
    pub target: String,
    /// The shortest acceptable restore window, e.g. `7d`.
    pub min: Duration,
}

impl Spec for NeonRetention {
    const OUTPUTS: &'static [Output] = &[
        output(
            "restore_window_seconds",
            "the project's history retention, in seconds",
        ),
        output("restore_window", "the same, as a duration (`7d`)"),
        output(
            "oldest_restorable",
            "the oldest point a restore can reach now, RFC 3339 UTC",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = Some(Measure::seconds(
        "restore_window_seconds",
        Worse::Lower,
        Some(Metric::RestoreWindow),
    ));

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Backups)
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        format!(
            "the restore window of {} is at least {}",
            self.target, self.min
        )
    }
}

/// `neon.backup_schedule`: the branch's snapshot schedule keeps what the backup policy
/// declares (by default the runbook's `backup_policy`: daily copies kept N days, weekly kept
/// N weeks, monthly kept N months, taken at the policy's hour).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonBackupSchedule {
    /// A `neon` target.
    pub target: String,
    /// A root branch (name or id); default: the target's branch.
    pub branch: Option<String>,
    /// Daily snapshots kept (days); default `backup_policy.retention.daily`.
    pub daily: Option<u32>,
    /// Weekly snapshots kept (weeks); default `backup_policy.retention.weekly`.
    pub weekly: Option<u32>,
    /// Monthly snapshots kept (months of 30 days); default `backup_policy.retention.monthly`.
    pub monthly: Option<u32>,
    /// UTC hour the daily snapshot is taken; default: the hour of `backup_policy.schedule`.
    pub hour: Option<u32>,
}

impl Spec for NeonBackupSchedule {
    const OUTPUTS: &'static [Output] = &[
        output("branch_id", "the branch whose schedule was read"),
        output("schedule", "its snapshot schedule as Neon returns it"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Backups)
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        format!(
            "the snapshot schedule of {} matches the backup policy",
            self.target
        )
    }
}

/// `neon.snapshot_age`: the newest snapshot of the branch is younger than `max`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonSnapshotAge {
    /// A `neon` target.
    pub target: String,
    /// Branch name or id; default: the target's branch.
    pub branch: Option<String>,
    /// The oldest acceptable newest snapshot, e.g. `25h`.
    pub max: Duration,
}

impl Spec for NeonSnapshotAge {
    const OUTPUTS: &'static [Output] = &[
        output("snapshot_id", "the newest snapshot"),
        output("snapshot_at", "when it was taken, RFC 3339 UTC"),
        output("age_seconds", "the newest snapshot's age, in seconds"),
        output(
            "manual",
            "true when it was taken by hand rather than by the schedule",
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

    const TARGET_KINDS: &'static [&'static str] = &["neon"];

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        format!(
            "the newest snapshot of {} is younger than {}",
            self.target, self.max
        )
    }
}

/// `neon.project`: the project's region, PostgreSQL version and restore window, for the
/// document and the record.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonProject {
    /// A `neon` target.
    pub target: String,
}

impl Spec for NeonProject {
    const OUTPUTS: &'static [Output] = &[
        output("id", "the project's id"),
        output("name", "its name"),
        output("region_id", "its region"),
        output("platform_id", "its platform"),
        output("pg_version", "its PostgreSQL major version"),
        output(
            "restore_window_seconds",
            "its history retention, in seconds",
        ),
        output("branches_limit", "how many branches the plan allows"),
        output("branches", "how many branches it has"),
        output("default_branch", "the default branch's name"),
        output("running_operations", "how many operations are running"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    const TARGET_KINDS: &'static [&'static str] = &["neon"];

    fn target(&self) -> Option<&str> {
        Some(&self.target)
    }

    fn summary(&self) -> String {
        format!("report the Neon project of {}", self.target)
    }
}

/// The point in time a step acts at, unless it is the branch's head.
fn point<'a>(target: &'a str, at: Option<&'a str>) -> Option<PointInTime<'a>> {
    at.filter(|a| a.trim() != "head")
        .map(|at| PointInTime { target, at })
}
