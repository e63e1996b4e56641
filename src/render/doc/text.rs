//! Markdown helpers shared by the sections: templates shown as placeholders, text escaped
//! or kept as written prose, code spans and blocks, values and secrets named by where they
//! come from, paragraphs wrapped, and headings kept unique by anchor.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::redact::mask_passwords;
use crate::runbook::Runbook;

/// Heading texts already used, by anchor: a document with two headings that share an
/// anchor has a link that goes to the wrong place (and fails markdownlint's MD024).
#[derive(Default)]
pub(super) struct Headings(BTreeSet<String>);

impl Headings {
    /// The heading to print for `text`: one line, as Markdown, without trailing punctuation
    /// (markdownlint's MD026), numbered when its anchor is taken.
    pub(super) fn claim(&mut self, text: &str) -> String {
        let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let base = prose(
            line.trim_start_matches('#')
                .trim_end_matches(['.', ',', ';', ':', '!', '。', '，', '；', '：', '！'])
                .trim(),
        );
        let base = if base.is_empty() {
            "Untitled".into()
        } else {
            base
        };
        let mut candidate = base.clone();
        let mut n = 2;
        while !self.0.insert(crate::render::anchor(&candidate)) {
            candidate = format!("{base} ({n})");
            n += 1;
        }
        candidate
    }
}

/// How a template expression reads in the document: `{{ params.x }}` is `<x>`,
/// `{{ env.X }}` is `$X`, `{{ steps.a.b }}` is `<b of step a>`.
fn placeholder(expr: &str) -> String {
    let e = expr.trim();
    let parts: Vec<&str> = e.split('.').collect();
    let simple = parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
    if !simple {
        return format!("<{e}>");
    }
    match parts.as_slice() {
        ["env", name] => format!("${name}"),
        ["params", name] => format!("<{name}>"),
        ["steps", step, output] => format!("<{output} of step {step}>"),
        ["run", "id"] => "<run id>".into(),
        ["run", field] => format!("<run {field}>"),
        _ => format!("<{e}>"),
    }
}

/// Text written by drillbook (it may quote runbook values) as Markdown: templates become
/// placeholders, bare URLs links, and outside code spans the characters Markdown would
/// read as emphasis, links or HTML are escaped.
pub(super) fn md(text: &str) -> String {
    rewrite(text, true)
}

/// Markdown prose written in the runbook, printed as written, except that templates become
/// placeholders, bare URLs links and URL passwords `***`.
pub(super) fn prose(text: &str) -> String {
    rewrite(text.trim(), false)
}

fn rewrite(text: &str, escape: bool) -> String {
    let text = mask_passwords(&text.replace('\t', "    "));
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_code: Option<usize> = None;
    let mut prev: Option<char> = None;
    let mut rest = text.as_str();
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            let n = rest.len() - rest.trim_start_matches('`').len();
            in_code = match in_code {
                // a run opens a code span only when the text closes it; else it is a
                // backtick to show, which must not pair with one the template writes later
                None if closes(&rest[n..], n) => Some(n),
                None => {
                    out.push_str(&"\\`".repeat(n));
                    rest = &rest[n..];
                    prev = Some('`');
                    continue;
                }
                Some(open) if open == n => None,
                other => other,
            };
            out.push_str(&rest[..n]);
            rest = &rest[n..];
            prev = Some('`');
            continue;
        }
        if let Some(end) = rest.strip_prefix("{{").and_then(|r| r.find("}}")) {
            let shown = placeholder(&rest[2..end + 2]);
            if in_code.is_some() {
                out.push_str(&shown);
            } else {
                out.push_str(&escape_markdown(&shown));
            }
            rest = &rest[end + 4..];
            prev = Some('}');
            continue;
        }
        if in_code.is_none()
            && (rest.starts_with("https://") || rest.starts_with("http://"))
            && prev.is_none_or(char::is_whitespace)
        {
            let url = rest[..url_end(rest)]
                .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '\'', '"']);
            let shown = if url.contains("{{") {
                // not a working link: shown as what it is built from
                Some(code(&code_block(url)))
            } else if url.contains(['<', '>', '`']) {
                None
            } else {
                Some(format!("<{url}>"))
            };
            if let Some(shown) = shown {
                out.push_str(&shown);
                rest = &rest[url.len()..];
                prev = Some('>');
                continue;
            }
        }
        // in prose, what would read as an HTML tag (an autolink has a `:` or `@`)
        if !escape && in_code.is_none() && c == '<' && looks_like_tag(rest) {
            out.push('\\');
        }
        let next = rest[c.len_utf8()..].chars().next();
        if escape && in_code.is_none() && needs_escape(c, prev, next) {
            out.push('\\');
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        prev = Some(c);
    }
    out
}

/// Whether `rest` holds a run of exactly `n` backticks, closing a code span opened by `n`.
fn closes(rest: &str, n: usize) -> bool {
    let mut t = rest;
    while let Some(i) = t.find('`') {
        let len = t[i..].len() - t[i..].trim_start_matches('`').len();
        if len == n {
            return true;
        }
        t = &t[i + len..];
    }
    false
}

/// Where a URL starting `text` ends: at whitespace outside `{{ … }}`.
fn url_end(text: &str) -> usize {
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if let Some(close) = rest.strip_prefix("{{").and_then(|r| r.find("}}")) {
            i += close + 4;
            continue;
        }
        match rest.chars().next() {
            Some(c) if c.is_whitespace() => break,
            Some(c) => i += c.len_utf8(),
            None => break,
        }
    }
    i.min(text.len())
}

fn looks_like_tag(text: &str) -> bool {
    let after = text[1..].chars().next();
    let Some(close) = text.find('>') else {
        return false;
    };
    after.is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?'))
        && !text[..close].contains([':', '@'])
}

fn needs_escape(c: char, prev: Option<char>, next: Option<char>) -> bool {
    match c {
        '\\' | '*' | '<' | '>' | '[' | ']' => true,
        // inside a word an underscore cannot start or end emphasis
        '_' => {
            !(prev.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric))
        }
        _ => false,
    }
}

fn escape_markdown(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| chars[j]);
        if needs_escape(c, prev, chars.get(i + 1).copied()) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A code span holding `text` (one line), whatever backticks it holds.
pub(super) fn code(text: &str) -> String {
    crate::render::escape::code(text)
}

/// The body of a fenced code block: templates as placeholders, passwords masked, no tabs
/// and no trailing spaces.
pub(super) fn code_block(text: &str) -> String {
    let text = mask_passwords(&text.replace('\t', "    "));
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&placeholder(&rest[start + 2..start + end]));
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_matches('\n')
        .to_owned()
}

/// `{{ env.X }}` alone: the variable's name.
fn env_only(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let name = inner.strip_prefix("env.")?;
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(name)
}

/// A configured value as people should see it: where it comes from when it is an
/// environment variable, else the value as written (passwords masked).
pub(super) fn value_text(text: &str) -> String {
    match env_only(text) {
        Some(var) => format!("from the environment variable {}", code(var)),
        None => code(&mask_passwords(text.trim())),
    }
}

/// Where a secret (webhook URL, routing key, SMTP URL) comes from, never its value.
pub(super) fn secret_source(text: &str) -> String {
    match env_only(text) {
        Some(var) => format!("from {}", code(var)),
        None if text.contains("{{") => "(built from a template)".into(),
        None => "(written in the runbook; not shown)".into(),
    }
}

/// A database a step uses: a target by name, or a connection string.
pub(super) fn db_label(runbook: &Runbook, db: &str) -> String {
    if runbook.targets.contains_key(db.trim()) {
        format!("the target {}", code(db.trim()))
    } else {
        code(&mask_passwords(db.trim()))
    }
}

/// Breaks one paragraph of Markdown into lines of about `width` characters, at spaces
/// outside code spans, and never before a word that would start a block (`- `, `#`, `>`,
/// `1.`) on its line.
pub(super) fn wrap(text: &str, width: usize) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_code: Option<usize> = None;
    for piece in text.split(' ') {
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(piece);
        let mut rest = piece;
        while let Some(i) = rest.find('`') {
            let run = rest[i..].len() - rest[i..].trim_start_matches('`').len();
            in_code = match in_code {
                // an escaped backtick (`md` writes one that closes nothing) opens nothing
                None if rest[..i].ends_with('\\') => None,
                None => Some(run),
                Some(open) if open == run => None,
                other => other,
            };
            rest = &rest[i + run..];
        }
        if in_code.is_none() {
            words.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    let starts_block = |w: &str| {
        matches!(w, "-" | "+" | "*" | "=" | "|" | ">")
            || w.starts_with('#')
            || w.starts_with('>')
            || w.starts_with("```")
            || w.trim_end_matches(['.', ')']).len() < w.len()
                && w.trim_end_matches(['.', ')'])
                    .chars()
                    .all(|c| c.is_ascii_digit())
    };
    let mut out = String::with_capacity(text.len() + 8);
    let mut line = 0;
    for word in words {
        let len = word.chars().count();
        if line > 0 && line + 1 + len > width && !starts_block(&word) {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(&word);
        line += len;
    }
    out
}

pub(super) fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

pub(super) fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(super) fn human_ms(ms: u64) -> String {
    crate::duration::human(std::time::Duration::from_millis(ms))
}

pub(super) fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

pub(super) fn codes(items: &[String]) -> String {
    list(&items.iter().map(|s| code(s)).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_read_as_placeholders_and_markdown_is_escaped() {
        assert_eq!(
            md("at {{ params.target_time }} as <name>_before_<time> in `{{ env.X }}`"),
            "at \\<target_time\\> as \\<name\\>\\_before\\_\\<time\\> in `$X`"
        );
        assert_eq!(prose("see https://neon.com."), "see <https://neon.com>.");
        assert_eq!(
            prose("[docs](https://neon.com)"),
            "[docs](https://neon.com)"
        );
    }

    /// A backtick the text does not close is shown, escaped: it cannot open a code span that
    /// swallows the rest of the line, or one the template writes after it.
    #[test]
    fn a_lone_backtick_is_shown_not_opened() {
        assert_eq!(md("it`s <b> *x*"), "it\\`s \\<b\\> \\*x\\*");
        // as CommonMark pairs them: the first two runs make a span, the third is alone
        assert_eq!(prose("it`s `code` here"), "it`s `code\\` here");
        assert_eq!(md("`a` and ``b``"), "`a` and ``b``");
    }

    #[test]
    fn headings_are_unique_by_anchor() {
        let mut h = Headings::default();
        assert_eq!(h.claim("Targets"), "Targets");
        assert_eq!(h.claim("Targets."), "Targets (2)");
        assert_eq!(h.claim("targets"), "targets (3)");
    }

    #[test]
    fn wrapping_keeps_code_spans_whole_and_starts_no_block() {
        assert_eq!(wrap("aaa `b c d` eee", 6), "aaa\n`b c d`\neee");
        assert_eq!(wrap("aaaa - b", 5), "aaaa -\nb");
        assert_eq!(wrap("aaaa 1. b", 5), "aaaa 1.\nb");
    }
}
