//! `drillbook validate RUNBOOK...`: every problem of every file, with its place.

use super::{exit, load, out};

/// Check runbooks: syntax, fields, ids, kinds, durations, schedules, templates and references.
///
/// Every problem is printed as `FILE:LINE:COL: error: MESSAGE` with the source line and a
/// caret.
///
/// Exit codes: 0 every file is valid · 2 a file is invalid.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  drillbook validate runbooks/*.yaml")]
pub struct Args {
    /// Runbook files.
    #[arg(required = true)]
    runbooks: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<u8> {
    let mut code = exit::OK;
    for path in &args.runbooks {
        match load(path) {
            Some(rb) => {
                let steps: usize = rb
                    .procedures
                    .values()
                    .map(|p| p.steps.len() + p.cleanup.len())
                    .sum();
                out(&format!(
                    "{path}: ok ({} procedure{}, {steps} step{}, {} check{})\n",
                    rb.procedures.len(),
                    plural(rb.procedures.len()),
                    plural(steps),
                    rb.checks.len(),
                    plural(rb.checks.len())
                ));
            }
            None => code = exit::INVALID,
        }
    }
    Ok(code)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
