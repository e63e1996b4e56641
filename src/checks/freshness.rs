//! `freshness`: the recovery point of a restored database — the newest timestamp in its data
//! — against the time the restore was asked for. Fails when the restored data is newer than
//! the target (a restore to the wrong point), and when the data-loss window exceeds
//! `max_lag` or the runbook's RPO.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;

use super::quote_table;
use crate::duration::{human, Duration};
use crate::pg::connect::describe;
use crate::steps::{db, Outputs, Spec, StepCx, StepError};
use crate::timestamp::{rfc3339_precise, TimeSpec};

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
    const LITERAL: &'static [&'static str] = &["sql"];
    const LITERAL_HELP: &'static str =
        "the query is literal SQL: read the target from `target`, not from the query";
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "neon", "local"];

    fn target(&self) -> Option<&str> {
        db::target_name(&self.db)
    }

    fn check(&self) -> Result<(), String> {
        match (&self.table, &self.column, &self.sql) {
            (Some(_), Some(_), None) | (None, None, Some(_)) => Ok(()),
            (_, _, Some(_)) => Err("give either `sql` or `table` and `column`, not both".into()),
            _ => Err("give `table` and `column` (or `sql` returning one timestamp)".into()),
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

    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let target: TimeSpec = self
            .target
            .parse()
            .map_err(|e: crate::timestamp::TimestampError| StepError::failed(e.to_string()))?;
        let target = target.resolve(Utc::now());
        let spec = db::resolve(cx, &self.db).await?;
        let client = crate::pg::connect(&spec).await?;
        let query = match (&self.table, &self.column, &self.sql) {
            (Some(t), Some(c), _) => format!(
                "SELECT max({})::timestamptz FROM {}",
                super::quote_ident(c),
                quote_table(t)
            ),
            (_, _, Some(sql)) => {
                format!("SELECT ({})::timestamptz", sql.trim().trim_end_matches(';'))
            }
            _ => {
                return Err(StepError::failed(
                    "freshness needs `table` and `column`, or `sql`",
                ))
            }
        };
        client
            .batch_execute("SET TIME ZONE 'UTC'")
            .await
            .map_err(|e| StepError::failed(describe(&e)))?;
        let row = client.query_one(query.as_str(), &[]).await.map_err(|e| {
            StepError::failed(format!(
                "freshness query on {}: {}",
                spec.display,
                describe(&e)
            ))
        })?;
        let newest: Option<DateTime<Utc>> = row
            .try_get(0)
            .map_err(|e| StepError::failed(format!("freshness query: {e}")))?;
        let Some(point) = newest else {
            return Err(StepError::failed(
                "no rows with a timestamp: the restored database has no recovery point to measure",
            ));
        };
        let mut out = Outputs::new();
        out.insert("recovery_point".into(), rfc3339_precise(point).into());
        out.insert("target".into(), rfc3339_precise(target).into());
        let tolerance = self.tolerance.unwrap_or_default().chrono();
        if point > target + tolerance {
            let ahead = (point - target).to_std().unwrap_or_default();
            out.insert(
                "ahead_ms".into(),
                u64::try_from(ahead.as_millis()).unwrap_or(u64::MAX).into(),
            );
            return Err(StepError::failed(format!(
                "restored data is newer than the target: newest value {} is {} after the target {} — the restore went past the requested point",
                rfc3339_precise(point),
                human(ahead),
                rfc3339_precise(target)
            ))
            .with_outputs(out));
        }
        let lag = (target - point).to_std().unwrap_or_default();
        out.insert(
            "data_loss_window_ms".into(),
            u64::try_from(lag.as_millis()).unwrap_or(u64::MAX).into(),
        );
        out.insert("data_loss_window".into(), human(lag).into());
        let limits = [
            ("max_lag", self.max_lag),
            ("the RPO objective", cx.runbook.objectives.rpo),
        ];
        for (what, limit) in limits {
            if let Some(limit) = limit {
                if lag > limit.std() {
                    return Err(StepError::failed(format!(
                        "data-loss window {} (newest value {}, target {}) exceeds {what} of {limit}",
                        human(lag),
                        rfc3339_precise(point),
                        rfc3339_precise(target)
                    ))
                    .with_outputs(out));
                }
            }
        }
        Ok(out)
    }
}
