//! `drillbook schema`: the JSON Schema of the runbook format, or, with `--status`, of the
//! status report (`drillbook status --format json`, the daemon's `/status`).

use super::{exit, out_json};

/// Print the JSON Schema (draft-07) of the runbook format, for editors and CI; with
/// `--status`, the schema of the status report that `drillbook status --format json` prints
/// and the daemon's `/status` serves.
///
/// With yaml-language-server, put `# yaml-language-server: $schema=runbook.schema.json` at
/// the top of a runbook after `drillbook schema > runbook.schema.json`.
///
/// Exit codes: 0 printed.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook schema > runbook.schema.json\n  drillbook schema --status > status.schema.json"
)]
pub struct Args {
    /// The schema of the status report instead of the runbook format.
    #[arg(long)]
    status: bool,
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    let schema = if args.status {
        crate::engine::status::schema()
    } else {
        crate::runbook::schema::runbook_schema()
    };
    out_json(&schema)?;
    Ok(exit::OK)
}
