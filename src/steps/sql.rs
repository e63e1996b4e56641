//! `sql`: runs a statement on a database. Values are bound as parameters (`$1`), never put
//! into the SQL text, which is literal. Read-only unless `write: true` (a READ ONLY
//! transaction, so a drill cannot change data by accident). `expect` asserts on the result;
//! the first row's columns become outputs.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{db, Outputs, Spec, StepCx, StepError, Text};
use crate::pg::connect::describe;
use crate::pg::value::{row_to_json, TextParam};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sql {
    /// A target name, or a connection string (e.g. `"{{ steps.branch.connection_uri }}"`).
    pub db: String,
    /// The statement. Not a template: pass values in `params` and write `$1`, `$2`, ….
    pub query: String,
    /// Values for `$1`, `$2`, …; templates allowed. Sent as text and parsed by the server
    /// as the type it infers for each placeholder.
    #[serde(default)]
    pub params: Vec<Option<Text>>,
    /// Allow changes (default false: the statement runs in a READ ONLY transaction).
    #[serde(default)]
    pub write: bool,
    /// Assertions on the result.
    pub expect: Option<Expect>,
}

/// What the result must look like. A comparison is a value (`5`, `"ok"`), meaning `==`, or a
/// string starting with an operator: `"> 0"`, `"<= 100"`, `"!= 'x'"`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The number of rows returned.
    pub rows: Option<Comparison>,
    /// The first column of the first row.
    pub value: Option<Comparison>,
    /// The exact set of rows, in any order: a list of rows, each a list of values.
    pub equals: Option<Vec<Vec<Value>>>,
}

/// `5`, `"ok"`, `"> 0"`, `"!= 'done'"`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Comparison {
    Number(f64),
    Bool(bool),
    Text(String),
}

const OPS: [&str; 6] = ["==", "!=", "<=", ">=", "<", ">"];

impl Comparison {
    /// The operator and the expected value.
    fn parts(&self) -> (&'static str, Value) {
        match self {
            Comparison::Number(n) => ("==", Value::from(*n)),
            Comparison::Bool(b) => ("==", Value::from(*b)),
            Comparison::Text(t) => {
                let t = t.trim();
                for op in OPS {
                    if let Some(rest) = t.strip_prefix(op) {
                        let rest = rest.trim();
                        let unquoted = rest
                            .strip_prefix('\'')
                            .and_then(|r| r.strip_suffix('\''))
                            .map(str::to_owned);
                        let value = match (unquoted, rest.parse::<f64>()) {
                            (Some(s), _) => Value::from(s),
                            (None, Ok(n)) => Value::from(n),
                            (None, Err(_)) => Value::from(rest),
                        };
                        return (op, value);
                    }
                }
                ("==", Value::from(t))
            }
        }
    }

    /// Whether `actual` satisfies the comparison, and the comparison as text for messages.
    pub fn check(&self, actual: &Value) -> (bool, String) {
        let (op, expected) = self.parts();
        let shown = format!("{op} {}", show(&expected));
        let as_num = |v: &Value| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse::<f64>().ok(),
            _ => None,
        };
        let ordering = match (as_num(actual), as_num(&expected)) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => Some(show(actual).cmp(&show(&expected))),
        };
        let ok = match (op, ordering) {
            (_, None) => false,
            ("==", Some(o)) => o.is_eq(),
            ("!=", Some(o)) => o.is_ne(),
            ("<", Some(o)) => o.is_lt(),
            ("<=", Some(o)) => o.is_le(),
            (">", Some(o)) => o.is_gt(),
            (_, Some(o)) => o.is_ge(),
        };
        (ok, shown)
    }
}

/// A value as people read it: strings bare, everything else as JSON.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

impl Spec for Sql {
    const LITERAL: &'static [&'static str] = &["query"];
    const LITERAL_HELP: &'static str =
        "bind values instead: `params: [\"{{ steps.x.y }}\"]` and `$1` in the query";
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "neon", "local"];

    fn target(&self) -> Option<&str> {
        db::target_name(&self.db)
    }

    fn summary(&self) -> String {
        let q: String = self.query.split_whitespace().collect::<Vec<_>>().join(" ");
        let q = if q.chars().count() > 80 {
            format!("{}…", q.chars().take(80).collect::<String>())
        } else {
            q
        };
        format!(
            "{}sql on {}: {q}",
            if self.write { "write " } else { "" },
            crate::redact::mask_passwords(&self.db)
        )
    }

    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let spec = db::resolve(cx, &self.db).await?;
        let client = crate::pg::connect(&spec).await?;
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
        // failed prepare inside it would abort it) and run them as one batch (no rows)
        let batch = refs.is_empty()
            && self.expect.is_none()
            && matches!(client.prepare(self.query.as_str()).await, Err(ref e) if describe(e).contains("multiple commands"));
        let mut client = client;
        let tx = client
            .build_transaction()
            .read_only(!self.write)
            .start()
            .await
            .map_err(failed)?;
        let rows = if batch {
            tx.batch_execute(&self.query).await.map_err(failed)?;
            Vec::new()
        } else {
            tx.query(self.query.as_str(), &refs).await.map_err(failed)?
        };
        tx.commit().await.map_err(failed)?;

        let mut out = Outputs::new();
        if let Some(first) = rows.first() {
            out = row_to_json(first).map_err(StepError::failed)?;
        }
        out.insert("row_count".into(), rows.len().into());
        if let Some(expect) = &self.expect {
            check_expect(expect, &rows)
                .map_err(|m| StepError::failed(m).with_outputs(out.clone()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons() {
        let c = |s: &str| Comparison::Text(s.into());
        assert!(c("> 0").check(&Value::from(3)).0);
        assert!(!c("> 0").check(&Value::from(0)).0);
        assert!(c("<= 10").check(&Value::from("10")).0);
        assert!(c("!= 'done'").check(&Value::from("running")).0);
        assert!(c("ok").check(&Value::from("ok")).0);
        assert!(Comparison::Number(5.0).check(&Value::from(5)).0);
        assert_eq!(c(">= 2").check(&Value::from(1)).1, ">= 2");
        assert!(Comparison::Bool(true).check(&Value::from(true)).0);
    }
}
