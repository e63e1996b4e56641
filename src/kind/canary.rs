//! Canaries: rows drillbook writes into production (`canary.write`, daily) and finds again
//! in a restored copy (`canary.verify`). What a restore provably recovered is the newest
//! canary in it: the truthful recovery point, not the newest row of one table.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{db_target, output, Effects, Measure, Output, Spec, Verifies};
use crate::duration::Duration;

/// The table canaries live in, in the connection's default schema.
pub const TABLE: &str = "drillbook_canary";

/// `canary.write`: inserts one canary into `db`, creating the table on first use.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryWrite {
    /// The production database: a target name or a connection string.
    pub db: String,
}

impl Spec for CanaryWrite {
    const OUTPUTS: &'static [Output] = &[
        output("id", "the canary's id in `drillbook_canary`"),
        output(
            "written_at",
            "when it was written (the server's clock), RFC 3339 UTC",
        ),
        output("lsn", "the WAL insert position when it was written"),
    ];
    const MEASURE: Option<Measure<'static>> = None;
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "neon", "local"];

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    fn target(&self) -> Option<&str> {
        db_target(&self.db)
    }

    fn summary(&self) -> String {
        format!("write a canary row into `{TABLE}` on {}", self.db)
    }
}

/// `canary.verify`: the restored copy holds the canaries written up to the target and none
/// after it; the newest one is the run's recovery point.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryVerify {
    /// The restored database: a target name or a connection string.
    pub db: String,
    /// The recovery target time: RFC 3339 or relative; usually `"{{ params.target_time }}"`.
    pub target: String,
    /// Production (a target name or a connection string): with it, the newest canary
    /// written at or before the target must be the one restored, exactly.
    pub source: Option<String>,
    /// Largest acceptable gap between the target and the newest restored canary; the
    /// runbook's `objectives.rpo` applies too.
    pub max_lag: Option<Duration>,
}

impl Spec for CanaryVerify {
    const OUTPUTS: &'static [Output] = &[
        output(
            "recovery_point",
            "when the newest restored canary was written, RFC 3339 UTC",
        ),
        output("target", "the recovery target time, resolved, RFC 3339 UTC"),
        output(
            "data_loss_window_ms",
            "the target minus the recovery point, in milliseconds",
        ),
        output("data_loss_window", "the same, as a duration (`2m 5s`)"),
        output("canary_id", "the id of the newest restored canary"),
        output("canary_lsn", "its WAL position when written"),
        output(
            "expected_canary_id",
            "with `source`: the newest canary production wrote at or before the target",
        ),
        output(
            "after_target",
            "restored canaries written after the target (0 unless the restore went past it)",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = None;
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "neon", "local"];

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::RecoveryPoint)
    }

    fn target(&self) -> Option<&str> {
        db_target(&self.db)
    }

    fn targets(&self) -> Vec<&str> {
        let source = self.source.as_deref().and_then(db_target);
        self.target().into_iter().chain(source).collect()
    }

    fn summary(&self) -> String {
        format!(
            "find the canaries written up to {} in {}, and none after",
            self.target, self.db
        )
    }
}
