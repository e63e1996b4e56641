//! Diagnostics with a place: `file:line:col: error: message`, the source line, a caret under
//! the fault, and "did you mean" suggestions; and [`YamlPath`], the path of a value inside
//! a runbook, which validation turns into a place. Every user-facing validation problem is one of
//! these; they are collected, never thrown one at a time.

use std::fmt;
use std::fmt::Write as _;

use strsim::osa_distance;

/// A place in a source file: 1-based line and column (in characters), and how many
/// characters to underline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

impl Span {
    pub fn new(line: usize, col: usize, len: usize) -> Span {
        Span {
            line,
            col,
            len: len.max(1),
        }
    }

    /// The span shifted right by `chars` on the same line, `len` wide.
    pub fn shifted(self, chars: usize, len: usize) -> Span {
        Span::new(self.line, self.col + chars, len)
    }
}

/// One step of a path into the document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root, e.g. `procedures.drill.steps[2].shell`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct YamlPath(pub Vec<Seg>);

impl YamlPath {
    pub fn key(&self, key: &str) -> YamlPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    pub fn index(&self, index: usize) -> YamlPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a runbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub span: Option<Span>,
    /// Extra lines printed after the snippet, e.g. "did you mean `steps.branch`?".
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Option<Span>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds "did you mean `x`?" when one of `candidates` is close to `word`.
    pub fn suggest<'a>(
        self,
        word: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Diagnostic {
        match did_you_mean(word, candidates) {
            Some(best) => self.with_help(format!("did you mean `{best}`?")),
            None => self,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic the way compilers do, with the offending line and a caret.
    pub fn render(&self, file: &str, source: &str) -> String {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = String::new();
        match self.span {
            Some(span) => {
                let _ = writeln!(
                    out,
                    "{file}:{}:{}: {label}: {}",
                    span.line, span.col, self.message
                );
                if let Some(text) = source.lines().nth(span.line.saturating_sub(1)) {
                    let (shown, pad) = excerpt(&text.replace('\t', " "), span.col);
                    let gutter = " ".repeat(span.line.to_string().len());
                    let _ = writeln!(out, "{gutter} |");
                    let _ = writeln!(out, "{} | {shown}", span.line);
                    let width = shown.chars().count().saturating_sub(pad).max(1);
                    let carets = "^".repeat(span.len.min(width));
                    let _ = writeln!(out, "{gutter} | {}{carets}", " ".repeat(pad));
                }
            }
            None => {
                let _ = writeln!(out, "{file}: {label}: {}", self.message);
            }
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

/// The longest source line a diagnostic shows whole; of a longer one (a runbook written
/// on one line, a pasted blob) it shows this many characters around the column.
const SHOWN_CHARS: usize = 160;

/// The part of `line` to show for 1-based column `col`, and how many characters precede
/// the column in it (where the caret goes).
fn excerpt(line: &str, col: usize) -> (String, usize) {
    let len = line.chars().count();
    // a column past the end (the end of the line itself) puts the caret just after it
    let at = col.saturating_sub(1).min(len);
    if len <= SHOWN_CHARS {
        return (line.to_owned(), at);
    }
    // some context before the column, the rest after it, never past the end
    let start = at.saturating_sub(SHOWN_CHARS / 4).min(len - SHOWN_CHARS);
    let end = start + SHOWN_CHARS;
    let mut shown: String = line.chars().skip(start).take(SHOWN_CHARS).collect();
    let mut pad = at - start;
    if start > 0 {
        shown.insert(0, '…');
        pad += 1;
    }
    if end < len {
        shown.push('…');
    }
    (shown, pad)
}

/// An error with its causes on one line ("error sending request: connection refused" is
/// several levels deep in reqwest and tokio-postgres), passwords in URLs masked.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    crate::redact::mask_passwords(&text)
}

/// Picks the candidate closest to `word` by edit distance, if it is close enough to be a
/// plausible typo (a third of the word's length, at least 1, at most 3 edits). The distance
/// is the optimal string alignment one, ignoring case: a swapped pair of letters counts as
/// one edit, which is the commonest typo. The first of equally close candidates wins.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (osa_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let kinds = ["shell", "http", "manual", "wait", "assert"];
        assert_eq!(did_you_mean("shel", kinds), Some("shell"));
        assert_eq!(did_you_mean("htpt", kinds), Some("http"));
        assert_eq!(did_you_mean("database", kinds), None);
        assert_eq!(did_you_mean("SHEL", kinds), Some("shell"));
        // a swap is one edit, so `ba` is as close to `ab` as `ac`, and comes first
        assert_eq!(did_you_mean("ab", ["ba", "ac"]), Some("ba"));
        assert_eq!(did_you_mean("ab", ["ac", "ba"]), Some("ac"));
        assert_eq!(did_you_mean("shell", kinds), None, "not the word itself");
    }

    #[test]
    fn a_long_line_is_shown_around_the_column() {
        let line = format!("{}XYZ{}", "a".repeat(70_000), "b".repeat(70_000));
        let d = Diagnostic::error(Some(Span::new(1, 70_001, 3)), "bad");
        let out = d.render("x.yaml", &line);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "x.yaml:1:70001: error: bad");
        let shown = lines[2].strip_prefix("1 | ").expect("the source line");
        assert_eq!(shown.chars().count(), SHOWN_CHARS + 2, "{shown}");
        assert!(shown.starts_with('…') && shown.ends_with('…'), "{shown}");
        let at = lines[3].find('^').expect("caret") - "  | ".len();
        let under: String = shown.chars().skip(at).take(4).collect();
        assert_eq!(under, "XYZb");
        assert_eq!(lines[3].matches('^').count(), 3);
        // the end of a long line, and a column past its end
        let (shown, pad) = excerpt(&line, 140_003);
        assert!(shown.starts_with('…') && shown.ends_with('b'), "{shown}");
        assert_eq!(pad, SHOWN_CHARS);
        assert_eq!(excerpt("short", usize::MAX), ("short".to_owned(), 5));
        assert_eq!(excerpt("short", 0), ("short".to_owned(), 0));
    }

    #[test]
    fn renders_caret_under_the_span() {
        let src = "a: 1\nbad_key: 2\n";
        let d = Diagnostic::error(Some(Span::new(2, 1, 7)), "unknown field `bad_key`")
            .with_help("did you mean `bar`?");
        assert_eq!(
            d.render("x.yaml", src),
            "x.yaml:2:1: error: unknown field `bad_key`\n  |\n2 | bad_key: 2\n  | ^^^^^^^\n  = help: did you mean `bar`?\n"
        );
    }
}
