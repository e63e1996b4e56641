//! `canary.write` and `canary.verify`: a row drillbook writes into production, and the
//! proof of what a restore recovered — the newest canary in the copy, none after the target,
//! and (with `source`) exactly the one production wrote last before the target.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::freshness::data_loss_window;
use super::{db, Run, StepCx, StepError};
use crate::kind::canary::{CanaryVerify, CanaryWrite, TABLE};
use crate::pg::connect::describe;
use crate::record::Outputs;
use crate::timestamp::{rfc3339_precise, TimeSpec};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS drillbook_canary (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    lsn pg_lsn,
    run_id text
)";

/// What it takes, said when the server refuses.
const GRANTS: &str = "the role needs INSERT on drillbook_canary (and, to create it on first use, CREATE on the schema): `GRANT INSERT ON drillbook_canary TO <role>`, or create the table once as its owner";

impl Run for CanaryWrite {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let spec = db::resolve(cx, &self.db).await?;
        let client = crate::pg::connect(&spec).await?;
        let refused = |what: &str, e: tokio_postgres::Error| {
            StepError::failed(format!(
                "{what} on {}: {}; {GRANTS}",
                spec.display,
                describe(&e)
            ))
        };
        // CREATE … IF NOT EXISTS needs CREATE on the schema even when the table exists
        let exists: bool = client
            .query_one("SELECT to_regclass('drillbook_canary') IS NOT NULL", &[])
            .await
            .map_err(|e| StepError::failed(describe(&e)))?
            .get(0);
        if !exists {
            client
                .batch_execute(CREATE)
                .await
                .map_err(|e| refused("creating drillbook_canary", e))?;
        }
        let row = client
            .query_one(
                "INSERT INTO drillbook_canary (lsn, run_id) VALUES (pg_current_wal_insert_lsn(), $1)
                 RETURNING id, written_at, lsn::text",
                &[&cx.run_id()],
            )
            .await
            .map_err(|e| refused("writing a canary", e))?;
        let id: i64 = row.get(0);
        let at: DateTime<Utc> = row.get(1);
        let lsn: Option<String> = row.get(2);
        let mut out = Outputs::new();
        out.insert("id".into(), id.into());
        out.insert("written_at".into(), rfc3339_precise(at).into());
        out.insert("lsn".into(), lsn.into());
        Ok(out)
    }
}

/// A canary as read back: id, when it was written, its WAL position.
struct Canary {
    id: i64,
    at: DateTime<Utc>,
    lsn: Option<String>,
}

/// The newest canary written at or before `target` in `client`'s table (None when there is
/// none, or no table).
async fn newest_until(
    client: &Client,
    target: DateTime<Utc>,
    place: &str,
) -> Result<Option<Canary>, StepError> {
    if !has_table(client, place).await? {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT id, written_at, lsn::text FROM drillbook_canary
             WHERE written_at <= $1 ORDER BY written_at DESC, id DESC LIMIT 1",
            &[&target],
        )
        .await
        .map_err(|e| StepError::failed(format!("reading canaries on {place}: {}", describe(&e))))?;
    Ok(row.map(|r| Canary {
        id: r.get(0),
        at: r.get(1),
        lsn: r.get(2),
    }))
}

async fn has_table(client: &Client, place: &str) -> Result<bool, StepError> {
    let row = client
        .query_one("SELECT to_regclass('drillbook_canary') IS NOT NULL", &[])
        .await
        .map_err(|e| StepError::failed(format!("{place}: {}", describe(&e))))?;
    Ok(row.get(0))
}

impl Run for CanaryVerify {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let target: TimeSpec = self
            .target
            .parse()
            .map_err(|e: crate::timestamp::TimestampError| StepError::failed(e.to_string()))?;
        let target = target.resolve(Utc::now());
        let spec = db::resolve(cx, &self.db).await?;
        let restored = crate::pg::connect(&spec).await?;
        let place = format!("the restored copy ({})", spec.display);
        if !has_table(&restored, &place).await? {
            return Err(StepError::failed(format!(
                "{place} has no {TABLE} table: no canary was written before the target, or the restore predates the first one (add a `canary.write` check to the daily checks)"
            )));
        }
        let mut out = Outputs::new();
        out.insert("target".into(), rfc3339_precise(target).into());
        let after = restored
            .query_one(
                "SELECT count(*), min(written_at), min(id) FROM drillbook_canary WHERE written_at > $1",
                &[&target],
            )
            .await
            .map_err(|e| StepError::failed(format!("reading canaries on {place}: {}", describe(&e))))?;
        let after_count: i64 = after.get(0);
        out.insert("after_target".into(), after_count.into());
        let newest = newest_until(&restored, target, &place).await?;
        if let Some(c) = &newest {
            out.insert("canary_id".into(), c.id.into());
            out.insert("canary_lsn".into(), c.lsn.clone().into());
            out.insert("recovery_point".into(), rfc3339_precise(c.at).into());
        }
        if after_count > 0 {
            let first: DateTime<Utc> = after.get(1);
            let id: i64 = after.get(2);
            return Err(StepError::failed(format!(
                "the restore went past the target: {after_count} canar{} written after {} {} in {place}, the first (id {id}) written at {}",
                if after_count == 1 { "y" } else { "ies" },
                rfc3339_precise(target),
                if after_count == 1 { "is" } else { "are" },
                rfc3339_precise(first)
            ))
            .with_outputs(out));
        }
        if let Some(source) = &self.source {
            let spec = db::resolve(cx, source).await?;
            let client = crate::pg::connect(&spec).await?;
            let expected = newest_until(&client, target, &spec.display).await?;
            if let Some(e) = &expected {
                out.insert("expected_canary_id".into(), e.id.into());
                let found = newest.as_ref().is_some_and(|c| c.id == e.id);
                if !found {
                    let restored_newest = newest.as_ref().map_or_else(
                        || "none".to_owned(),
                        |c| format!("id {} written at {}", c.id, rfc3339_precise(c.at)),
                    );
                    return Err(StepError::failed(format!(
                        "the newest canary production wrote at or before the target {} (id {} at {}) is not in {place}; the newest there is {restored_newest}: the restore stopped short of the target",
                        rfc3339_precise(target),
                        e.id,
                        rfc3339_precise(e.at)
                    ))
                    .with_outputs(out));
                }
            }
        }
        let Some(newest) = newest else {
            return Err(StepError::failed(format!(
                "{place} holds no canary written at or before the target {}: nothing proves what it recovered (canaries are written by `canary.write`; the first may be after the target)",
                rfc3339_precise(target)
            ))
            .with_outputs(out));
        };
        data_loss_window(cx, newest.at, target, self.max_lag, out)
    }
}
