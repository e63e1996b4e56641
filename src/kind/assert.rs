//! `assert`: what must hold. Either expressions over earlier outputs and params
//! (`steps.count.rows > 0`), or named SQL invariants run on a database ("every order has a
//! customer").

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    db_target, one_of_forms, output, string_or_map, Effects, Invalid, Measure, Output, Spec,
    Verifies,
};

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

#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

one_of_forms!(OneOrMany, "an expression or a list of expressions", {
    str => One(String),
    seq => Many(Vec<String>),
});

impl Spec for Assert {
    const OUTPUTS: &'static [Output] = &[
        output("checked", "how many expressions or invariants were checked"),
        output("violated", "how many invariants did not hold (`sql` form)"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    const EXPRESSIONS: &'static [&'static str] = &["", "that"];
    const LITERAL: &'static [&'static str] = &["sql"];
    const LITERAL_HELP: &'static str =
        "invariants are literal SQL: they read the database, not the run's values";
    const TARGET_KINDS: &'static [&'static str] = &["postgres", "neon", "local"];

    fn effects(&self) -> Effects<'_> {
        Effects::verifies(Verifies::Data)
    }

    fn target(&self) -> Option<&str> {
        match self {
            Assert::Full(AssertSpec { db: Some(d), .. }) => db_target(d),
            _ => None,
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        match self {
            Assert::One(_) => Ok(()),
            Assert::Full(s) => match (&s.that, s.sql.is_empty(), &s.db) {
                (Some(_), true, None) => Ok(()),
                (None, false, Some(_)) => Ok(()),
                (None, false, None) => Err(Invalid::at(
                    "sql",
                    "`sql` invariants need `db`: the database they run on",
                )),
                (Some(_), false, _) => Err(Invalid::at(
                    "sql",
                    "give `that` (expressions) or `sql` (invariants), not both",
                )),
                (None, true, _) => Err(Invalid::whole(
                    "give `that` (expressions) or `db` with `sql` (invariants)",
                )),
                (Some(_), true, Some(_)) => Err(Invalid::at(
                    "db",
                    "`db` is for `sql` invariants; `that` reads the run's values",
                )),
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
}

impl Assert {
    /// The expressions of `that` (or the bare string), in order.
    pub fn expressions(&self) -> Vec<&str> {
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
