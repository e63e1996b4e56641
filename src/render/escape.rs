//! Text as Markdown that reads as written, and documents that hold nothing active. Values
//! from records and runbooks (a step's output, an error, a param's value, a title) are data:
//! written into a drill log or the runbook document, nothing in them may become a heading, a
//! link, raw HTML, emphasis, the end of a code span or a table cell. [`literal`] and [`inline`]
//! escape them, [`code`] and [`fence`] quote them as code; [`inert`] goes over a whole
//! rendered document, whatever its template wrote, and leaves no raw HTML, no link to a
//! scheme other than http, https or mailto, and no control character.

use pulldown_cmark::{Event, Parser, Tag};

use super::lint::options;

/// Whether a link's or image's destination is safe to follow: http, https, mailto, or no
/// scheme at all (a relative path, a `#fragment`). Browsers ignore whitespace and control
/// characters inside a scheme (`java\tscript:`), so they are ignored here too.
pub fn safe_url(url: &str) -> bool {
    let url: String = url
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    // a scheme is what comes before the first `:`, when no `/`, `?` or `#` comes earlier
    match url.find([':', '/', '?', '#']) {
        Some(i) if url[i..].starts_with(':') => {
            matches!(
                url[..i].to_ascii_lowercase().as_str(),
                "http" | "https" | "mailto"
            )
        }
        _ => true,
    }
}

/// One line, with control characters made visible: a value never breaks a table row or
/// starts a block of its own.
fn one_line(text: &str) -> String {
    crate::controls::visible(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Plain text as Markdown that shows it as written, on one line: every character Markdown
/// would read as markup (emphasis, links, HTML, code, table cells, entities, a heading or a
/// list at the start) is backslash-escaped.
pub fn literal(text: &str) -> String {
    escaped(&one_line(text), false)
}

/// Like [`literal`], but a code span the text closes (`` `sh` exited ``) stays a code span:
/// for errors and titles, which quote commands that way. A backtick that closes nothing is
/// escaped, so it cannot swallow what follows.
pub fn inline(text: &str) -> String {
    escaped(&one_line(text), true)
}

/// The length of the run of backticks at the start of `text`.
fn run_at(text: &str) -> usize {
    text.len() - text.trim_start_matches('`').len()
}

/// Where a code span opened by `n` backticks ends in `rest` (the text after them): just past
/// the next run of exactly `n` backticks, as CommonMark reads it.
fn closing(rest: &str, n: usize) -> Option<usize> {
    let mut i = 0;
    while let Some(at) = rest[i..].find('`') {
        let start = i + at;
        let len = run_at(&rest[start..]);
        if len == n {
            return Some(start + len);
        }
        i = start + len;
    }
    None
}

fn escaped(text: &str, keep_code: bool) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut k = 0;
    while k < chars.len() {
        let (i, c) = chars[k];
        if c == '`' {
            let n = run_at(&text[i..]);
            let end = if keep_code {
                closing(&text[i + n..], n).map(|e| i + n + e)
            } else {
                None
            };
            match end {
                Some(end) => out.push_str(&text[i..end]),
                None => out.push_str(&"\\`".repeat(n)),
            }
            let end = end.unwrap_or(i + n);
            while k < chars.len() && chars[k].0 < end {
                k += 1;
            }
            continue;
        }
        let prev = k.checked_sub(1).map(|j| chars[j].1);
        let next = chars.get(k + 1).map(|&(_, c)| c);
        let escape = match c {
            '\\' | '*' | '[' | ']' | '<' | '>' | '|' | '~' => true,
            // inside a word an underscore neither starts nor ends emphasis
            '_' => {
                !(prev.is_some_and(char::is_alphanumeric)
                    && next.is_some_and(char::is_alphanumeric))
            }
            // `&amp;`, `&#60;`: an entity would show as the character it names
            '&' => next.is_some_and(|n| n.is_alphanumeric() || n == '#'),
            // what starts a block when it starts the line: `# heading`, `- item`, `+ item`,
            // `===` (a heading's underline), `1. item`, `1) item`
            '#' | '-' | '+' | '=' => i == 0,
            '.' | ')' => {
                i > 0
                    && text[..i].chars().all(|d| d.is_ascii_digit())
                    && next.is_none_or(char::is_whitespace)
            }
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
        k += 1;
    }
    out
}

/// A code span holding `text` on one line, whatever backticks it holds: the fence is longer
/// than the longest run inside.
pub fn code(text: &str) -> String {
    let text = one_line(text);
    if text.is_empty() {
        return "` `".into();
    }
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    if longest == 0 {
        format!("{fence}{text}{fence}")
    } else {
        // the spaces keep a backtick at either end apart from the fence; CommonMark strips one
        format!("{fence} {text} {fence}")
    }
}

/// The fence for a code block holding `text`: three backticks, or more than the longest run
/// inside, so no line of it can close the block.
pub fn fence(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// A rendered Markdown document with nothing active left in it, whatever its template and
/// values wrote: raw HTML (a tag, a comment, a block) shows as text, a link or image to any
/// scheme but http, https and mailto shows as the text it was written as, and control
/// characters are made visible (line ends kept; `\r\n` read as `\n`).
pub fn inert(markdown: &str) -> String {
    let mut text = crate::controls::visible(&markdown.replace("\r\n", "\n")).into_owned();
    // each pass escapes the first character of what is active; unmaking one construct can
    // reveal another (a link inside a link's text), so repeat until nothing is left
    for _ in 0..16 {
        let at = active(&text);
        if at.is_empty() {
            return text;
        }
        for i in at.into_iter().rev() {
            text.insert(i, '\\');
        }
    }
    // never expected: escape every `<` and `[` rather than keep anything active
    text.replace('<', "\\<").replace('[', "\\[")
}

/// Where to put a backslash so that nothing in `text` is active, in order.
fn active(text: &str) -> Vec<usize> {
    let mut at = Vec::new();
    for (event, range) in Parser::new_ext(text, options()).into_offset_iter() {
        match event {
            Event::Html(_) | Event::InlineHtml(_) => {
                at.extend(
                    text[range.clone()]
                        .match_indices('<')
                        .map(|(i, _)| range.start + i),
                );
            }
            // `[x](…)`, `[x][ref]` or `<…>`: escaping the first character unmakes it
            Event::Start(Tag::Link { dest_url, .. }) if !safe_url(&dest_url) => {
                at.push(range.start);
            }
            // `![x](…)`: the `[` after the `!`
            Event::Start(Tag::Image { dest_url, .. }) if !safe_url(&dest_url) => {
                at.push(range.start + 1);
            }
            _ => {}
        }
    }
    at.sort_unstable();
    at.dedup();
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What pulldown-cmark makes of `markdown` as HTML.
    fn html(markdown: &str) -> String {
        let mut out = String::new();
        pulldown_cmark::html::push_html(&mut out, Parser::new_ext(markdown, options()));
        out
    }

    #[test]
    fn literal_text_reads_as_written() {
        for text in [
            "<img src=x onerror=alert(1)>",
            "[x](javascript:alert(1))",
            "*a* _b_ ~~c~~ `d` \\e | f &amp; g",
            "# heading",
            "- item",
            "1. item",
            "2) item",
            "===",
            "a\nb\tc",
        ] {
            let shown = literal(text);
            let want = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let want = want
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            assert_eq!(
                html(&shown),
                format!("<p>{want}</p>\n"),
                "{text:?} as {shown:?}"
            );
        }
        assert_eq!(literal("snake_case_name"), "snake_case_name");
    }

    #[test]
    fn inline_keeps_closed_code_spans_and_escapes_a_lone_backtick() {
        let shown = inline("step `noisy` failed: it`s <b>bold</b>");
        assert_eq!(shown, "step `noisy` failed: it\\`s \\<b\\>bold\\</b\\>");
        assert_eq!(
            html(&shown),
            "<p>step <code>noisy</code> failed: it`s &lt;b&gt;bold&lt;/b&gt;</p>\n"
        );
        // a code span keeps what it holds, inert
        assert_eq!(
            html(&inline("`<img src=x onerror=alert(1)>`")),
            "<p><code>&lt;img src=x onerror=alert(1)&gt;</code></p>\n"
        );
    }

    #[test]
    fn code_spans_and_fences_outlast_the_backticks_inside() {
        assert_eq!(code("a"), "`a`");
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("``x``"), "``` ``x`` ```");
        for text in ["a`b", "``x``", "`", "a | b"] {
            assert_eq!(
                html(&code(text)),
                format!("<p><code>{text}</code></p>\n"),
                "{text:?}"
            );
        }
        assert_eq!(fence("no ticks"), "```");
        assert_eq!(fence("```\nx\n````"), "`````");
    }

    #[test]
    fn only_safe_schemes_are_links() {
        for safe in [
            "https://a.example/x",
            "http://a",
            "mailto:a@b",
            "#top",
            "docs/a.md",
            "a?b:c",
        ] {
            assert!(safe_url(safe), "{safe}");
        }
        for unsafe_ in [
            "javascript:alert(1)",
            "JavaScript:x",
            " java\tscript:x",
            "data:text/html,x",
            "vbscript:x",
            "file:///etc/passwd",
        ] {
            assert!(!safe_url(unsafe_), "{unsafe_}");
        }
    }

    #[test]
    fn an_inert_document_has_no_raw_html_and_no_unsafe_link() {
        let doc = "# T\n\n<iframe src=\"https://evil.example\"></iframe>\n\ntext <img src=x onerror=alert(1)> [x](javascript:alert(1)) <javascript:alert(2)> ![i](javascript:alert(3)) [ok](https://a.example) <!-- c -->\n\n<div>\nblock\n</div>\n\n\u{1b}[2J\r\n";
        let shown = inert(doc);
        let page = html(&shown);
        for bad in [
            "<iframe",
            "<img",
            "javascript:alert(1)\"",
            "href=\"javascript",
            "src=\"javascript",
            "<div",
            "<!--",
            "\u{1b}",
            "\r",
        ] {
            assert!(!page.contains(bad), "{bad} in {page}");
        }
        assert!(
            page.contains("<a href=\"https://a.example\">ok</a>"),
            "{page}"
        );
        assert!(page.contains("&lt;iframe"), "{page}");
        assert!(page.contains("\\u{1b}[2J"), "{page}");
        // nothing to do: the same text
        let sound = "# T\n\n| a | `b` |\n|---|---|\n| [x](#t) | <https://a.example> |\n";
        assert_eq!(inert(sound), sound);
    }
}
