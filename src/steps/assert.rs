//! `assert`: what must hold. Either expressions over earlier outputs and params
//! (`steps.count.rows > 0`), or named SQL invariants run on a database ("every order has a
//! customer"). Every false one is named in the failure.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{db, string_or_map, Outputs, Spec, StepCx, StepError};
use crate::pg::connect::describe;

/// `assert: "expression"`, `{that: [expressions], message}`, or `{db, sql: {name: query}}`.
#[derive(Debug, Clone)]
pub enum Assert {
    One(String),
    Full(AssertSpec),
}

string_or_map!(
    Assert,
    One,
    Full(AssertSpec),
    "Expressions that must hold (`steps.count.rows > 0`), or named SQL invariants on a database."
);

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertSpec {
    /// One expression or a list; all must be true.
    pub that: Option<OneOrMany>,
    /// Shown when an expression is false (template).
    pub message: Option<String>,
    /// The database the `sql` invariants run on: a target name or a connection string.
    pub db: Option<String>,
    /// Named invariants, each a query (literal SQL, run read-only). It holds when it returns
    /// one row whose first column is true, or no rows at all (a query listing violations).
    #[serde(default)]
    pub sql: IndexMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Spec for Assert {
    const EXPRESSIONS: &'static [&'static str] = &["", "that"];
    const LITERAL: &'static [&'static str] = &["sql"];
    const LITERAL_HELP: &'static str =
        "invariants are literal SQL: they read the database, not the run's values";
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "neon", "local"];

    fn target(&self) -> Option<&str> {
        match self {
            Assert::Full(AssertSpec { db: Some(d), .. }) => db::target_name(d),
            _ => None,
        }
    }

    fn check(&self) -> Result<(), String> {
        match self {
            Assert::One(_) => Ok(()),
            Assert::Full(s) => match (&s.that, s.sql.is_empty(), &s.db) {
                (Some(_), true, None) => Ok(()),
                (None, false, Some(_)) => Ok(()),
                (None, false, None) => {
                    Err("`sql` invariants need `db`: the database they run on".into())
                }
                (Some(_), false, _) => {
                    Err("give `that` (expressions) or `sql` (invariants), not both".into())
                }
                (None, true, _) => {
                    Err("give `that` (expressions) or `db` with `sql` (invariants)".into())
                }
                (Some(_), true, Some(_)) => {
                    Err("`db` is for `sql` invariants; `that` reads the run's values".into())
                }
            },
        }
    }

    fn summary(&self) -> String {
        match self {
            Assert::Full(AssertSpec {
                db: Some(d), sql, ..
            }) if !sql.is_empty() => {
                format!(
                    "on {}: {}",
                    crate::redact::mask_passwords(d),
                    sql.keys().cloned().collect::<Vec<_>>().join("; ")
                )
            }
            _ => self.expressions().join(" and "),
        }
    }

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

impl Assert {
    fn expressions(&self) -> Vec<&str> {
        match self {
            Assert::One(e) => vec![e],
            Assert::Full(AssertSpec {
                that: Some(OneOrMany::One(e)),
                ..
            }) => vec![e],
            Assert::Full(AssertSpec {
                that: Some(OneOrMany::Many(v)),
                ..
            }) => v.iter().map(String::as_str).collect(),
            Assert::Full(AssertSpec { that: None, .. }) => Vec::new(),
        }
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
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| StepError::unavailable(format!("{}: {}", spec.display, describe(&e))))?;
    let mut broken = Vec::new();
    for (name, query) in sql {
        // each invariant in its own savepoint, so one failing query does not hide the rest
        let sp = tx
            .savepoint("invariant")
            .await
            .map_err(|e| StepError::unavailable(describe(&e)))?;
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
