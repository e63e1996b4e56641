//! `drillbook schema`: the JSON Schema of the runbook format.

use super::{exit, out_json};

/// Print the JSON Schema (draft-07) of the runbook format, for editors and CI.
///
/// With yaml-language-server, put `# yaml-language-server: $schema=runbook.schema.json` at
/// the top of a runbook after `drillbook schema > runbook.schema.json`.
///
/// Exit codes: 0 printed.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  drillbook schema > runbook.schema.json")]
pub struct Args {}

pub fn run(_: &Args) -> anyhow::Result<u8> {
    let schema = crate::runbook::schema::runbook_schema();
    out_json(&schema)?;
    Ok(exit::OK)
}
