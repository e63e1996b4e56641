//! `manual`: an instruction for the operator, confirmed at the terminal or approved in
//! advance by `--yes`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{output, string_or_map, Effects, Measure, Output, Spec};

/// `manual: "instructions"` or `{instructions, confirm}`.
#[derive(Debug, Clone)]
pub enum Manual {
    Text(String),
    Full(ManualSpec),
}

string_or_map!(
    Manual,
    Text,
    Full(ManualSpec),
    "Instructions for the operator, confirmed at the terminal (or by --yes)."
);

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualSpec {
    /// What the operator must do (Markdown; templates allowed).
    pub instructions: String,
    /// Ask for a confirmation (default true); `false` only shows the instructions.
    #[serde(default = "yes")]
    pub confirm: bool,
}

fn yes() -> bool {
    true
}

impl Spec for Manual {
    const OUTPUTS: &'static [Output] = &[
        output(
            "confirmed",
            "true once the operator confirmed; false when `confirm: false`",
        ),
        output("by", "who confirmed (the operator's name)"),
        output("via", "how: `terminal` (answered at the prompt) or `--yes`"),
        output("at", "when, RFC 3339 UTC"),
    ];
    const MEASURE: Option<Measure<'static>> = None;

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    fn summary(&self) -> String {
        let text = match self {
            Manual::Text(t) => t,
            Manual::Full(s) => &s.instructions,
        };
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        format!("operator: {first}")
    }
}
