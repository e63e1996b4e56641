//! Checks on the drill history: `history.last_pass` (a procedure passed recently enough) and
//! `history.overdue` (a scheduled procedure is not overdue).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{output, Effects, Invalid, Measure, Output, Spec, Verifies, Worse};
use crate::duration::Duration;

/// `history.last_pass`: the procedure passed within `max_age`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryLastPass {
    /// A procedure of this runbook, e.g. `pitr-drill`.
    pub procedure: String,
    /// How long ago its last pass may be, e.g. `35d`.
    pub max_age: Duration,
}

impl Spec for HistoryLastPass {
    const OUTPUTS: &'static [Output] = &[
        output("runs", "how many runs of the procedure the history holds"),
        output("last_pass", "when the procedure last passed, RFC 3339 UTC"),
        output("last_pass_id", "the run id of that pass"),
        output("age_seconds", "seconds since the procedure last passed"),
        output("rto_seconds", "the RTO that pass measured, in seconds"),
    ];
    const MEASURE: Option<Measure<'static>> =
        Some(Measure::seconds("age_seconds", Worse::Higher, None));

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Drills)
    }

    fn check(&self) -> Result<(), Invalid> {
        if self.procedure.trim().is_empty() {
            return Err(Invalid::at("procedure", "`procedure` is empty"));
        }
        Ok(())
    }

    fn summary(&self) -> String {
        format!(
            "`{}` passed within the last {}",
            self.procedure, self.max_age
        )
    }
}

/// `history.overdue`: a scheduled procedure has passed since its schedule last came due (a
/// grace of one seventh of the period: a monthly drill is overdue after ~35 days).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryOverdue {
    /// A procedure of this runbook with a `schedule`.
    pub procedure: String,
}

impl Spec for HistoryOverdue {
    const OUTPUTS: &'static [Output] = &[
        output("last_pass", "when the procedure last passed, RFC 3339 UTC"),
        output("last_pass_id", "the run id of that pass"),
        output("age_seconds", "seconds since the procedure last passed"),
        output("rto_seconds", "the RTO that pass measured, in seconds"),
        output("schedule", "the procedure's schedule (cron, UTC)"),
        output("due_by", "when the next pass is due, RFC 3339 UTC"),
    ];
    const MEASURE: Option<Measure<'static>> =
        Some(Measure::seconds("age_seconds", Worse::Higher, None));

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Drills)
    }

    fn summary(&self) -> String {
        format!("`{}` is not overdue for its schedule", self.procedure)
    }
}
