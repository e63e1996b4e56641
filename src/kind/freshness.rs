//! `freshness`: the recovery point of a restored database — the newest timestamp in its data
//! — against the time the restore was asked for; the run's RPO comes from it.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{db_target, output, Effects, Invalid, Measure, Output, Spec, Verifies};
use crate::duration::Duration;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    /// The restored database: a target name or a connection string.
    pub db: String,
    /// Table holding the timestamps, `schema.table` or `table`.
    pub table: Option<String>,
    /// Timestamp column of `table` (`timestamptz`, or `timestamp` read as UTC).
    pub column: Option<String>,
    /// Instead of `table`/`column`: a query returning one timestamp (literal SQL).
    pub sql: Option<String>,
    /// The recovery target time: RFC 3339 or relative (`now-24h`); usually
    /// `"{{ params.target_time }}"`.
    pub target: String,
    /// Largest acceptable gap between the target and the recovery point; the runbook's
    /// `objectives.rpo` applies too.
    pub max_lag: Option<Duration>,
    /// Slack for clock skew before data newer than the target counts as a wrong restore;
    /// default `0s`.
    pub tolerance: Option<Duration>,
}

impl Spec for Freshness {
    const OUTPUTS: &'static [Output] = &[
        output(
            "recovery_point",
            "the newest timestamp in the restored data, RFC 3339 UTC",
        ),
        output("target", "the recovery target time, resolved, RFC 3339 UTC"),
        output(
            "data_loss_window_ms",
            "the target minus the recovery point, in milliseconds",
        ),
        output("data_loss_window", "the same, as a duration (`2m 5s`)"),
        output(
            "ahead_ms",
            "how far past the target the data reaches, when it does (a failure)",
        ),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    const LITERAL: &'static [&'static str] = &["sql"];
    const LITERAL_HELP: &'static str =
        "the query is literal SQL: read the target from `target`, not from the query";
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "neon", "local"];

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::RecoveryPoint)
    }

    fn target(&self) -> Option<&str> {
        db_target(&self.db)
    }

    fn check(&self) -> Result<(), Invalid> {
        match (&self.table, &self.column, &self.sql) {
            (Some(_), Some(_), None) | (None, None, Some(_)) => Ok(()),
            (_, _, Some(_)) => Err(Invalid::at(
                "sql",
                "give either `sql` or `table` and `column`, not both",
            )),
            (Some(_), None, None) => Err(Invalid::at(
                "table",
                "give `table` and `column` (or `sql` returning one timestamp)",
            )),
            (None, Some(_), None) => Err(Invalid::at(
                "column",
                "give `table` and `column` (or `sql` returning one timestamp)",
            )),
            (None, None, None) => Err(Invalid::whole(
                "give `table` and `column` (or `sql` returning one timestamp)",
            )),
        }
    }

    fn summary(&self) -> String {
        let of = match (&self.table, &self.column) {
            (Some(t), Some(c)) => format!("max({t}.{c})"),
            _ => "the query's timestamp".into(),
        };
        let lag = self
            .max_lag
            .map(|l| format!(", at most {l} behind"))
            .unwrap_or_default();
        format!(
            "{of} on {} is at or before {}{lag}",
            crate::redact::mask_passwords(&self.db),
            self.target
        )
    }
}
