//! `manual`: an instruction for the operator. In a terminal it waits for a confirmation;
//! unattended it fails clearly unless `--yes` approved it in advance. Who confirmed, and how,
//! is recorded.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{string_or_map, Outputs, Spec, StepCx, StepError};

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

    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let (instructions, confirm) = match self {
            Manual::Text(t) => (t.as_str(), true),
            Manual::Full(s) => (s.instructions.as_str(), s.confirm),
        };
        cx.interaction.show(&cx.redactor.redact(instructions));
        let mut out = Outputs::new();
        if !confirm {
            out.insert("confirmed".into(), false.into());
            return Ok(out);
        }
        let what = format!("manual step `{}` needs an operator", cx.step_id);
        let question = format!("step `{}`: done?", cx.step_id);
        let via = match super::ask_operator(cx.interaction, question, &what, cx.cancel).await? {
            super::Answer::Yes(via) => via,
            super::Answer::No => {
                return Err(StepError::failed(format!(
                    "operator answered no to manual step `{}`",
                    cx.step_id
                )))
            }
        };
        out.insert("confirmed".into(), true.into());
        out.insert("by".into(), cx.operator.into());
        out.insert("via".into(), via.into());
        out.insert(
            "at".into(),
            crate::timestamp::rfc3339(chrono::Utc::now()).into(),
        );
        Ok(out)
    }
}
