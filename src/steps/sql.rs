//! `sql`: runs the statement in a transaction, READ ONLY unless `write: true`, so a drill
//! cannot change data by accident. A read-only step's session is read-only too, and it runs
//! exactly one statement (prepared): text such as `COMMIT; DELETE …` cannot end the
//! read-only transaction and go on writing. The first row's columns become outputs.

use serde_json::Value;

use super::{db, Run, StepCx, StepError};
use crate::kind::sql::{show, Expect, Sql};
use crate::pg::connect::describe;
use crate::pg::value::{row_to_json, TextParam};
use crate::record::Outputs;

impl Run for Sql {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let spec = db::resolve(cx, &self.db).await?;
        let client = crate::pg::connect(&spec).await?;
        if !self.write {
            crate::pg::read_only_session(&client).await.map_err(|e| {
                StepError::unavailable(format!("{}: {}", spec.display, describe(&e)))
            })?;
        }
        let params: Vec<TextParam> = self
            .params
            .iter()
            .map(|p| TextParam(p.as_ref().map(|t| t.0.clone())))
            .collect();
        let refs: Vec<&(dyn postgres_types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres_types::ToSql + Sync))
            .collect();
        let failed = |e: tokio_postgres::Error| {
            if e.as_db_error().is_none() && e.is_closed() {
                StepError::unavailable(format!(
                    "{}: connection lost: {}",
                    spec.display,
                    describe(&e)
                ))
            } else {
                StepError::failed(format!(
                    "query failed on {}: {}",
                    spec.display,
                    describe(&e)
                ))
            }
        };
        // several statements cannot be prepared; find out before the transaction starts (a
        // failed prepare inside it would abort it) and, when the step may write, run them as
        // one batch (no rows). A read-only step may not: one statement of the batch could
        // end the transaction and the next one write.
        let statement = match client.prepare(self.query.as_str()).await {
            Ok(s) => Some(s),
            Err(e) if describe(&e).contains("multiple commands") && !self.write => {
                return Err(StepError::failed(
                    "a read-only `sql` step runs one statement, and this query has several: split it into steps, or give `write: true` if it is meant to change data",
                ))
            }
            Err(e)
                if refs.is_empty()
                    && self.expect.is_none()
                    && describe(&e).contains("multiple commands") =>
            {
                None
            }
            Err(e) => return Err(failed(e)),
        };
        let mut client = client;
        let tx = client
            .build_transaction()
            .read_only(!self.write)
            .start()
            .await
            .map_err(failed)?;
        // rows a statement returns, and the count its command tag gives (rows inserted,
        // updated or deleted by a statement that returns none)
        let (rows, affected) = match &statement {
            None => {
                tx.batch_execute(&self.query).await.map_err(failed)?;
                (Vec::new(), None)
            }
            Some(st) if st.columns().is_empty() => {
                let n = tx.execute(st, &refs).await.map_err(failed)?;
                (Vec::new(), Some(n))
            }
            Some(st) => {
                let rows = tx.query(st, &refs).await.map_err(failed)?;
                let n = rows.len() as u64;
                (rows, Some(n))
            }
        };
        tx.commit().await.map_err(failed)?;

        let mut out = Outputs::new();
        if let Some(first) = rows.first() {
            out = row_to_json(first).map_err(StepError::failed)?;
        }
        out.insert("row_count".into(), rows.len().into());
        if let Some(n) = affected {
            out.insert("rows_affected".into(), n.into());
        }
        if let Some(expect) = &self.expect {
            check_expect(expect, &rows).map_err(|found| {
                let message = match &expect.message {
                    Some(m) => format!("{m} ({found})"),
                    None => found,
                };
                StepError::failed(message).with_outputs(out.clone())
            })?;
        }
        Ok(out)
    }
}

fn check_expect(expect: &Expect, rows: &[tokio_postgres::Row]) -> Result<(), String> {
    if let Some(c) = &expect.rows {
        let (ok, shown) = c.check(&Value::from(rows.len()));
        if !ok {
            return Err(format!("expected rows {shown}, got {}", rows.len()));
        }
    }
    if let Some(c) = &expect.value {
        let actual = match rows.first() {
            Some(r) if !r.is_empty() => crate::pg::value::cell(r, 0, r.columns()[0].type_())?,
            _ => return Err("expected a value, got no rows".into()),
        };
        let (ok, shown) = c.check(&actual);
        if !ok {
            return Err(format!("expected value {shown}, got {}", show(&actual)));
        }
    }
    if let Some(want) = &expect.equals {
        let mut got: Vec<Vec<String>> = Vec::new();
        for r in rows {
            let obj = row_to_json(r)?;
            got.push(obj.values().map(show).collect());
        }
        let mut want: Vec<Vec<String>> =
            want.iter().map(|r| r.iter().map(show).collect()).collect();
        got.sort();
        want.sort();
        if got != want {
            let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(3).collect();
            let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(3).collect();
            return Err(format!(
                "rows differ: missing {missing:?}, unexpected {extra:?} ({} rows, expected {})",
                got.len(),
                want.len()
            ));
        }
    }
    Ok(())
}
