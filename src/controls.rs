//! Control characters made visible. A step's output, an error or a record can hold bytes a
//! terminal acts on — ESC sequences that clear the screen, retitle the window, move the cursor
//! or rewrite what was printed; a carriage return that overwrites a line; BEL; the C1 controls
//! (U+0080–U+009F, CSI among them) — so every text printed to a terminal, and every document
//! drillbook writes, shows them as `\u{1b}` instead. Line feeds and tabs are kept.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A control character a terminal would act on: Unicode's `Cc` except line feed and tab.
fn hidden(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// `text` with every control character but `\n` and `\t` written as `\u{…}` (ESC is
/// `\u{1b}`): the characters are still there to read, and none of them acts.
pub fn visible(text: &str) -> Cow<'_, str> {
    replaced(text, |out, c| write!(out, "\\u{{{c:x}}}"))
}

/// JSON text (as serde_json writes it, which escapes only U+0000–U+001F) with DEL and the C1
/// controls escaped as `\u00XX` too: the same JSON value, with no byte a terminal acts on.
pub fn visible_json(json: &str) -> Cow<'_, str> {
    replaced(json, |out, c| write!(out, "\\u{c:04x}"))
}

/// `text` with each control character but `\n` and `\t` written by `escape` instead.
fn replaced(text: &str, escape: fn(&mut String, u32) -> std::fmt::Result) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c) {
            let _ = escape(&mut out, u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_become_text_and_lines_stay() {
        assert_eq!(
            visible("a\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nb\tc\u{9b}31m\u{7f}"),
            "a\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{d}\nb\tc\\u{9b}31m\\u{7f}"
        );
        assert!(matches!(visible("plain ✓ text\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_keeps_its_value() {
        let value = serde_json::json!({"out": "\u{1b}[2J \u{9b}1m \u{7f} ✓"});
        let text = serde_json::to_string(&value).expect("json");
        let shown = visible_json(&text);
        assert!(!shown.chars().any(hidden), "{shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(back, value);
    }
}
