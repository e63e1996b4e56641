//! `assert`: evaluates the expressions, or runs the invariants in one read-only
//! transaction. Every false one is named in the failure.

use indexmap::IndexMap;

use super::{db, Run, StepCx, StepError};
use crate::kind::assert::{Assert, AssertSpec};
use crate::pg::connect::describe;
use crate::record::Outputs;

impl Run for Assert {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        if let Assert::Full(AssertSpec {
            db: Some(db), sql, ..
        }) = self
        {
            return invariants(cx, db, sql).await;
        }
        let exprs = self.expressions();
        for expr in &exprs {
            let value = crate::template::eval(cx.templates, expr, cx.vars).map_err(|e| {
                StepError::failed(format!(
                    "cannot evaluate `{expr}`: {}",
                    crate::template::describe_error(&e)
                ))
            })?;
            if !value.is_true() {
                let message = match self {
                    Assert::Full(AssertSpec {
                        message: Some(m), ..
                    }) => format!("{m} (`{expr}` is false)"),
                    _ => format!("assertion failed: `{expr}`"),
                };
                return Err(StepError::failed(message));
            }
        }
        let mut out = Outputs::new();
        out.insert("checked".into(), exprs.len().into());
        Ok(out)
    }
}

/// Runs every invariant in one READ ONLY transaction; fails naming each that does not hold.
async fn invariants(
    cx: &StepCx<'_>,
    db: &str,
    sql: &IndexMap<String, String>,
) -> Result<Outputs, StepError> {
    let spec = db::resolve(cx, db).await?;
    let mut client = crate::pg::connect(&spec).await?;
    crate::pg::read_only_session(&client)
        .await
        .map_err(|e| StepError::unavailable(format!("{}: {}", spec.display, describe(&e))))?;
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| StepError::unavailable(format!("{}: {}", spec.display, describe(&e))))?;
    let mut broken = Vec::new();
    let mut before: Option<&str> = None;
    for (name, query) in sql {
        // each invariant in its own savepoint, so one failing query does not hide the rest
        let sp = tx.savepoint("invariant").await.map_err(|e| match before {
            // the transaction is gone: the invariant before ended it
            Some(prev) => StepError::failed(format!(
                "invariant `{prev}` ended the read-only transaction (a COMMIT or ROLLBACK?): an invariant is one query that returns rows; `{name}` and those after it were not run"
            )),
            None => StepError::unavailable(describe(&e)),
        })?;
        before = Some(name);
        let outcome = match sp.query(query.as_str(), &[]).await {
            Err(e) => Some(format!("{name}: query failed: {}", describe(&e))),
            Ok(rows) => judge(name, &rows),
        };
        let _ = sp.rollback().await;
        broken.extend(outcome);
    }
    let _ = tx.rollback().await;
    let mut out = Outputs::new();
    out.insert("checked".into(), sql.len().into());
    out.insert("violated".into(), broken.len().into());
    if broken.is_empty() {
        Ok(out)
    } else {
        let n = broken.len();
        Err(StepError::failed(format!(
            "{n} invariant{} violated: {}",
            if n == 1 { "" } else { "s" },
            broken.join(" | ")
        ))
        .with_outputs(out))
    }
}

/// One row with a boolean first column decides; otherwise any row is a violation.
fn judge(name: &str, rows: &[tokio_postgres::Row]) -> Option<String> {
    if let [row] = rows {
        if row
            .columns()
            .first()
            .is_some_and(|c| *c.type_() == postgres_types::Type::BOOL)
        {
            return match row.try_get::<_, Option<bool>>(0) {
                Ok(Some(true)) => None,
                _ => Some(format!("{name}: false")),
            };
        }
    }
    if rows.is_empty() {
        return None;
    }
    let examples: Vec<String> = rows
        .iter()
        .take(3)
        .map(|r| {
            crate::pg::value::row_to_json(r)
                .map(|o| serde_json::Value::Object(o).to_string())
                .unwrap_or_else(|e| e)
        })
        .collect();
    Some(format!(
        "{name}: {} violating row{}, e.g. {}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        examples.join(", ")
    ))
}
