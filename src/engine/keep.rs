//! After a run: the alerts about it, then its record appended to the history and its drill
//! log written. A drill nobody can show later did not happen: a pass whose record or drill
//! log cannot be kept turns into "could not run"; a failure keeps its own code. The alerts go
//! first so the record keeps what they did, and whatever they do, the exit code stays.

use std::path::{Path, PathBuf};

use crate::duration::human;
use crate::history::{Entry, HistoryError, Store};
use crate::notify::Notice;
use crate::record::{DrillRecord, Verdict};
use crate::render::{log, RenderError, Renderer};
use crate::runbook::Runbook;

/// What became of a run's record.
#[derive(Debug)]
pub struct Kept {
    /// The history entry it was appended as.
    pub entry: Result<Entry, HistoryError>,
    /// The drill log's files (`.md` first); None when the record was not appended.
    pub log: Option<Result<Vec<PathBuf>, RenderError>>,
}

impl Kept {
    /// The run's exit code: its verdict's, except that a pass not kept is "could not run".
    pub fn exit_code(&self, verdict: Verdict) -> u8 {
        let code = verdict.exit_code();
        let kept = self.entry.is_ok() && matches!(self.log, Some(Ok(_)));
        if code == Verdict::Passed.exit_code() && !kept {
            Verdict::Error.exit_code()
        } else {
            code
        }
    }
}

/// The alert about a run: its verdict, the reason or how long it took, and each step that
/// failed.
pub fn notice(record: &DrillRecord, log: Option<String>) -> Notice {
    Notice {
        runbook: record.runbook.name.clone(),
        subject: record.procedure.id.clone(),
        kind: record.procedure.kind.as_str().to_owned(),
        ok: record.verdict == Verdict::Passed,
        warning: false,
        summary: match &record.reason {
            Some(r) => format!("{}: {r}", record.verdict.as_str().to_uppercase()),
            None => format!(
                "PASSED in {}",
                human(std::time::Duration::from_millis(record.duration_ms))
            ),
        },
        details: record
            .steps
            .iter()
            .chain(&record.cleanup)
            .filter(|s| s.error.is_some())
            .map(|s| format!("{}: {}", s.id, s.error.as_deref().unwrap_or("")))
            .collect(),
        run_id: Some(record.id.clone()),
        since: None,
        log,
        operator: record.operator.clone(),
    }
}

/// Sends the alerts about `record` (kept in its `notifications`; those not sent when `stop`
/// fires are recorded so), appends it to `store` and writes its drill log into `dir` through
/// the templates in `templates` (the built-in ones when None). Dry runs are not kept.
pub async fn keep(
    runbook: &Runbook,
    record: &mut DrillRecord,
    store: &Store,
    dir: &Path,
    templates: Option<&Path>,
    stop: &crate::cancel::Cancel,
) -> Kept {
    let log_md = dir.join(format!("{}.md", log::base_name(record)));
    let notice = notice(record, Some(log_md.display().to_string()));
    record.notifications = crate::notify::notify(runbook, &notice, dir, stop).await;
    let entry = store.append(record).await;
    let log = entry.as_ref().ok().map(|entry| {
        Renderer::new(templates).and_then(|r| log::write(dir, &r, record, Some(entry)))
    });
    Kept { entry, log }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(appended: bool, logged: bool) -> Kept {
        Kept {
            entry: if appended {
                Ok(Entry {
                    seq: 1,
                    prev: String::new(),
                    hash: String::new(),
                    anchored: true,
                    record: serde_json::Value::Null,
                })
            } else {
                Err(HistoryError::Io("disk full".into()))
            },
            log: appended.then(|| {
                if logged {
                    Ok(Vec::new())
                } else {
                    Err(RenderError::Io("read-only".into()))
                }
            }),
        }
    }

    #[test]
    fn a_pass_that_cannot_be_kept_could_not_run() {
        assert_eq!(kept(true, true).exit_code(Verdict::Passed), 0);
        assert_eq!(kept(false, false).exit_code(Verdict::Passed), 3);
        assert_eq!(kept(true, false).exit_code(Verdict::Passed), 3);
        // a failure keeps its own code
        assert_eq!(kept(false, false).exit_code(Verdict::Failed), 1);
        assert_eq!(kept(true, false).exit_code(Verdict::Interrupted), 130);
    }
}
