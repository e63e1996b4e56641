//! The operator's terminal: progress lines on stderr, instructions, and yes/no prompts.

use std::io::{BufRead, IsTerminal, Write};

use crate::cancel::BoxFuture;
use crate::duration::human;
use crate::engine::Observer;
use crate::record::{DrillRecord, StepRecord, StepStatus};
use crate::runbook::Step;
use crate::steps::Interaction;

#[derive(Debug)]
pub struct Terminal {
    pub yes: bool,
    steps: std::sync::atomic::AtomicUsize,
    cleanup: std::sync::atomic::AtomicUsize,
    /// Long work draws progress bars (text output, stderr a terminal).
    bars: bool,
}

impl Terminal {
    pub fn new(yes: bool) -> Terminal {
        Terminal {
            yes,
            steps: 0.into(),
            cleanup: 0.into(),
            bars: false,
        }
    }

    /// Progress bars on stderr while steps run, when stderr is a terminal and the output
    /// is meant for a person (`text`, not `--format json`).
    pub fn with_progress(mut self, for_a_person: bool) -> Terminal {
        self.bars = for_a_person && std::io::stderr().is_terminal();
        self
    }

    /// One line on stderr: step titles, errors and instructions quote runbook text and
    /// step output, whose control characters are made visible here.
    fn line(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", crate::controls::visible(text));
    }

    fn position(&self, cleanup: bool, index: usize) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        if cleanup {
            format!("[cleanup {}/{}]", index + 1, self.cleanup.load(Relaxed))
        } else {
            format!("[{}/{}]", index + 1, self.steps.load(Relaxed))
        }
    }
}

impl Interaction for Terminal {
    fn assume_yes(&self) -> bool {
        self.yes
    }

    fn is_interactive(&self) -> bool {
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }

    fn show(&self, text: &str) {
        for l in text.trim_end().lines() {
            self.line(&format!("      │ {l}"));
        }
    }

    fn confirm(&self, question: String) -> BoxFuture<'static, std::io::Result<bool>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut err = std::io::stderr().lock();
                let question = crate::controls::visible(&question);
                write!(err, "      ? {question} [y/N] ")?;
                err.flush()?;
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
            })
            .await
            .map_err(std::io::Error::other)?
        })
    }

    fn progress(&self, what: &str, unit: crate::progress::Unit) -> crate::progress::Progress {
        if self.bars {
            crate::progress::Progress::stderr(what, unit)
        } else {
            crate::progress::Progress::hidden()
        }
    }
}

impl Observer for Terminal {
    fn started(&self, record: &DrillRecord, steps: usize, cleanup: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.steps.store(steps, Relaxed);
        self.cleanup.store(cleanup, Relaxed);
        let dry = if record.dry_run { " (dry run)" } else { "" };
        self.line(&format!(
            "drillbook: {} / {} — run {}{dry}",
            record.runbook.name, record.procedure.id, record.id
        ));
    }

    fn preflight(&self, items: &[crate::record::PreflightItem]) {
        for i in items {
            let mark = if i.ok { "✓" } else { "✗" };
            self.line(&format!(
                "  preflight {mark} {}: {} — {}",
                i.step, i.check, i.detail
            ));
        }
    }

    fn step_started(&self, cleanup: bool, index: usize, step: &Step) {
        if cleanup && index == 0 {
            self.line("  cleanup (always runs)");
        }
        self.line(&format!(
            "  {} {} — {} …",
            self.position(cleanup, index),
            step.id,
            step.display_title()
        ));
    }

    fn undo_started(&self, rec: &StepRecord) {
        self.line(&format!("  [undo] {} — {} …", rec.id, rec.title));
    }

    fn undo_finished(&self, rec: &StepRecord) {
        self.finished_line("[undo]", rec);
    }

    fn left_behind(&self, what: &[String]) {
        self.line(
            "drillbook: cleanup was aborted; left behind (`drillbook gc --yes` removes them):",
        );
        for w in what {
            self.line(&format!("  - {w}"));
        }
    }

    fn warning(&self, message: &str) {
        self.line(&format!("drillbook: warning: {message}"));
    }

    fn step_finished(&self, cleanup: bool, index: usize, rec: &StepRecord) {
        self.finished_line(&self.position(cleanup, index), rec);
    }
}

impl Terminal {
    /// A finished step's line: its mark, status, time and error or note.
    fn finished_line(&self, position: &str, rec: &StepRecord) {
        let elapsed = rec
            .duration_ms
            .map(|ms| human(std::time::Duration::from_millis(ms)))
            .unwrap_or_default();
        let mark = match rec.status {
            StepStatus::Passed => "✓",
            StepStatus::Skipped | StepStatus::NotRun => "-",
            _ => "✗",
        };
        let detail = rec
            .error
            .as_deref()
            .or(rec.note.as_deref())
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        self.line(&format!(
            "  {position} {mark} {} {} {elapsed}{detail}",
            rec.id,
            rec.status.symbol()
        ));
    }
}
