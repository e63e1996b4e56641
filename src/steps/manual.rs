//! `manual`: shows the instructions and waits for a confirmation. Unattended it fails
//! clearly unless `--yes` approved it in advance. The confirmation is recorded as an
//! approval through [`StepCx::confirm`], the only way an approval enters a record.

use super::{Answer, Run, StepCx, StepError};
use crate::kind::manual::Manual;
use crate::record::Outputs;

impl Run for Manual {
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
        let prompt = format!("step `{}`: done?", cx.step_id);
        let recorded = format!("manual step `{}`: {}", cx.step_id, cx.step_title);
        let via = match cx.confirm(prompt, &what, recorded).await? {
            Answer::Yes(via) => via,
            Answer::No => {
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
