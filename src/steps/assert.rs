//! `assert`: expressions over earlier outputs and params that must all hold, e.g.
//! `steps.count.rows > 0`. A false one fails the step, naming it.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{string_or_map, Outputs, Spec, StepCx, StepError};

/// `assert: "expression"` or `{that: [expressions], message}`.
#[derive(Debug, Clone)]
pub enum Assert {
    One(String),
    Full(AssertSpec),
}

string_or_map!(
    Assert,
    One,
    Full(AssertSpec),
    "Expressions that must hold, e.g. `steps.count.rows > 0`."
);

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssertSpec {
    /// One expression or a list; all must be true.
    pub that: OneOrMany,
    /// Shown when an expression is false (template).
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Spec for Assert {
    const EXPRESSIONS: &'static [&'static str] = &["", "that"];

    fn summary(&self) -> String {
        self.expressions().join(" and ")
    }

    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
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
                that: OneOrMany::One(e),
                ..
            }) => vec![e],
            Assert::Full(AssertSpec {
                that: OneOrMany::Many(v),
                ..
            }) => v.iter().map(String::as_str).collect(),
        }
    }
}
