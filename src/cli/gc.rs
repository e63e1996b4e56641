//! `drillbook gc [RUNBOOK...]`: what runs that are no longer alive left behind (killed,
//! timed out in CI, cleanup aborted), listed, and removed with `--yes`.

use std::fmt::Write as _;

use super::{exit, load, out};
use crate::engine::gc;

/// Find (and with --yes remove) what runs that are no longer alive left behind.
///
/// Local servers and scratch directories of dead runs come from the run ledgers on this
/// machine (exact: a live run's resources are never touched). With runbooks, their Neon
/// targets' projects are also searched for branches and snapshots named `drillbook-<run>-…`
/// whose expiry passed or whose run started longer ago than --older-than (needs
/// NEON_API_KEY). In CI, run `drillbook gc --yes` in a step that always runs.
///
/// Exit codes: 0 nothing left behind, or everything removed with --yes · 1 something is
/// left (without --yes) · 2 usage, or a runbook that does not validate · 3 something could
/// not be removed or searched (a Neon project unreachable, no NEON_API_KEY).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  drillbook gc\n  drillbook gc --yes\n  drillbook gc runbooks/neon-production.yaml --yes --older-than 6h"
)]
pub struct Args {
    /// Runbooks whose Neon targets are searched too.
    runbooks: Vec<String>,
    /// Remove what was found (default: only list it).
    #[arg(long)]
    yes: bool,
    /// A drillbook-named Neon branch or snapshot without a ledger here counts as left once
    /// its run started this long ago (or its expiry passed).
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    older_than: crate::duration::Duration,
}

pub async fn run(args: &Args) -> anyhow::Result<u8> {
    let mut runbooks = Vec::new();
    for path in &args.runbooks {
        match load(path) {
            Some(rb) => runbooks.push(rb),
            None => return Ok(exit::INVALID),
        }
    }
    let found = gc::find(&runbooks, args.older_than.std()).await;
    let mut code = exit::OK;
    for u in &found.unreachable {
        say!("drillbook: error: cannot search {u}");
        code = exit::UNAVAILABLE;
    }
    if found.orphans.is_empty() {
        out("nothing left behind by runs that ended\n");
        if args.yes {
            let _ = gc::remove(found).await;
        }
        return Ok(code);
    }
    if !args.yes {
        let mut s = String::new();
        let _ = writeln!(s, "left behind by runs that ended without cleanup:");
        for o in &found.orphans {
            let _ = writeln!(s, "  {}: {}", o.run, o.what);
            if let Err(e) = &o.undo {
                let _ = writeln!(s, "    (cannot be removed from here: {e})");
            }
        }
        let _ = writeln!(s, "remove them with `drillbook gc --yes`");
        out(&s);
        return Ok(if code == exit::OK { exit::FAILED } else { code });
    }
    let mut s = String::new();
    for (o, result) in gc::remove(found).await {
        match result {
            Ok(()) => {
                let _ = writeln!(s, "removed  {}: {}", o.run, o.what);
            }
            Err(e) => {
                let _ = writeln!(s, "FAILED   {}: {}: {e}", o.run, o.what);
                code = exit::UNAVAILABLE;
            }
        }
    }
    out(&s);
    Ok(code)
}
