//! `freshness`: reads the newest timestamp of the restored data. Fails when it is newer than
//! the target (a restore to the wrong point), and when the data-loss window exceeds
//! `max_lag` or the runbook's RPO.

use chrono::{DateTime, Utc};

use super::{db, Run, StepCx, StepError};
use crate::duration::human;
use crate::kind::freshness::Freshness;
use crate::pg::connect::describe;
use crate::pg::quote_table;
use crate::record::Outputs;
use crate::timestamp::{rfc3339_precise, TimeSpec};

impl Run for Freshness {
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
                crate::pg::quote_ident(c),
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
        // a target so late that the tolerance takes it past the last representable date
        // has nothing after it
        let latest = target
            .checked_add_signed(tolerance)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if point > latest {
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
        data_loss_window(cx, point, target, self.max_lag, out)
    }
}

/// Records the data-loss window (`target` minus the recovery `point`) in `out` and fails
/// when it exceeds `max_lag` or the runbook's RPO objective.
pub(super) fn data_loss_window(
    cx: &StepCx<'_>,
    point: DateTime<Utc>,
    target: DateTime<Utc>,
    max_lag: Option<crate::duration::Duration>,
    mut out: Outputs,
) -> Result<Outputs, StepError> {
    let lag = (target - point).to_std().unwrap_or_default();
    out.insert(
        "data_loss_window_ms".into(),
        u64::try_from(lag.as_millis()).unwrap_or(u64::MAX).into(),
    );
    out.insert("data_loss_window".into(), human(lag).into());
    let limits = [
        ("max_lag", max_lag),
        ("the RPO objective", cx.runbook.objectives.rpo),
    ];
    for (what, limit) in limits {
        if let Some(limit) = limit {
            if lag > limit.std() {
                return Err(StepError::failed(format!(
                    "data-loss window {} (recovery point {}, target {}) exceeds {what} of {limit}",
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
