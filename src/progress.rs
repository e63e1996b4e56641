//! Progress of long work at the operator's terminal: a restore's bytes and WAL, a compare's
//! tables and rows, a Neon operation's status, a backup tool's own lines. A step asks
//! [`crate::steps::Interaction::progress`] for a [`Progress`] and reports to it; only the
//! terminal of `drillbook run` in text format, with stderr a terminal, draws it (through
//! indicatif, on stderr). Everywhere else — `--format json`, a pipe, the daemon, a check
//! run, the tests — the `Progress` is hidden and reporting to it costs nothing. A bar is
//! cleared when it is dropped, so the step's own result line follows it cleanly.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// What a bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes, shown as `1.2 GiB/3.4 GiB` with a rate and an ETA.
    Bytes,
    /// Items (tables, segments), shown as `3/12` with an ETA.
    Items,
    /// Nothing to count: a spinner with the elapsed time and a message.
    None,
}

/// A progress indicator: drawn, or hidden. Cloning shares it (workers of one step report
/// to the same bar). A bar appears on the first report, so asking for one costs nothing
/// when the work turns out to be quick.
#[derive(Debug, Clone)]
pub struct Progress(Option<Bar>);

#[derive(Debug, Clone)]
struct Bar {
    bar: ProgressBar,
    shown: std::sync::Arc<std::sync::Once>,
    /// Drawn on stderr from the first report (false: only counted).
    draw: bool,
}

impl Progress {
    /// Draws nothing.
    pub fn hidden() -> Progress {
        Progress(None)
    }

    /// The bar, drawn from now on.
    fn bar(&self) -> Option<&ProgressBar> {
        let b = self.0.as_ref()?;
        if b.draw {
            b.shown.call_once(|| {
                b.bar.set_draw_target(ProgressDrawTarget::stderr());
                b.bar.enable_steady_tick(Duration::from_millis(200));
            });
        }
        Some(&b.bar)
    }

    /// A bar on stderr, titled `what`.
    pub fn stderr(what: &str, unit: Unit) -> Progress {
        let template = match unit {
            Unit::Bytes => {
                "      {spinner} {prefix} [{bar:24}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left {msg}"
            }
            Unit::Items => "      {spinner} {prefix} [{bar:24}] {pos}/{len}, {eta} left {msg}",
            Unit::None => "      {spinner} {prefix} {elapsed} {msg}",
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
            .with_style(style)
            .with_prefix(crate::controls::visible(what).into_owned())
            // the last clone to go clears it
            .with_finish(ProgressFinish::AndClear);
        Progress(Some(Bar {
            bar,
            shown: std::sync::Arc::new(std::sync::Once::new()),
            draw: true,
        }))
    }

    /// A bar that counts like a drawn one but draws nowhere: for an operator seam that
    /// records what a step reported (the tests).
    pub fn counting() -> Progress {
        Progress(Some(Bar {
            bar: ProgressBar::hidden(),
            shown: std::sync::Arc::new(std::sync::Once::new()),
            draw: false,
        }))
    }

    /// How much was reported done, and of how much (None when hidden, or the length was
    /// never set).
    pub fn counts(&self) -> Option<(u64, Option<u64>)> {
        let b = &self.0.as_ref()?.bar;
        Some((b.position(), b.length()))
    }

    pub fn is_hidden(&self) -> bool {
        self.0.is_none()
    }

    /// How much there is to do (unknown until set: the bar shows a spinner). It does not
    /// show the bar: only work done does.
    pub fn set_length(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.bar.set_length(n);
        }
    }

    /// How much is done.
    pub fn set_position(&self, n: u64) {
        if let Some(b) = self.bar() {
            b.set_position(n);
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = self.bar() {
            b.inc(n);
        }
    }

    /// The text after the bar (a status, a tool's last line), made safe to print.
    pub fn message(&self, text: &str) {
        if let Some(b) = self.bar() {
            let line = text.lines().last().unwrap_or_default().trim();
            b.set_message(crate::controls::visible(line).into_owned());
        }
    }
}
