//! `sql`: a statement on a database. Values are bound as parameters (`$1`), never put into
//! the SQL text, which is literal. `expect` asserts on the result.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{
    db_target, one_of_forms, output, Effects, Measure, Output, Spec, Text, Verifies, ANY_OUTPUT,
};

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
    /// What the failure says when the result is not as expected (a template), before what
    /// was found, e.g. `"production has no table {{ params.table }}"`.
    pub message: Option<String>,
}

/// `5`, `"ok"`, `"> 0"`, `"!= 'done'"`.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum Comparison {
    Number(f64),
    Bool(bool),
    Text(String),
}

one_of_forms!(Comparison, "a value (`5`, `true`, `ok`) or a comparison (`\"> 0\"`, `\"!= 'done'\"`)", {
    number => Number(f64),
    bool => Bool(bool),
    str => Text(String),
});

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
pub fn show(v: &Value) -> String {
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
    const OUTPUTS: &'static [Output] =
        &[
            output("row_count", "how many rows the statement returned"),
            output(
                "rows_affected",
                "the count of its command tag: rows inserted, updated or deleted (or returned); none for several statements",
            ),
        ];
    const MEASURE: Option<Measure<'static>> = None;
    const PAYLOAD_OUTPUTS: Option<&'static str> =
        Some("the first row's columns, by column name (checked when the step runs)");

    const LITERAL: &'static [&'static str] = &["query"];
    const LITERAL_HELP: &'static str =
        "bind values instead: `params: [\"{{ steps.x.y }}\"]` and `$1` in the query";
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "neon", "local"];

    /// It verifies only with an `expect`.
    fn effects(&self) -> Effects<'_> {
        Effects {
            verifies: self.expect.as_ref().map(|_| Verifies::Data),
            ..Effects::NONE
        }
    }

    /// The first row's columns, by name, are outputs too: a query's columns are not known
    /// before it runs, so references to them are checked at run time.
    fn payload_outputs(&self) -> Vec<&str> {
        vec![ANY_OUTPUT]
    }

    fn target(&self) -> Option<&str> {
        db_target(&self.db)
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
