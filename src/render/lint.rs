//! Structural checks of a rendered Markdown document, on pulldown-cmark's parse: heading
//! levels never skip, every internal link points at a heading, every table row has the
//! header's number of cells, no section is empty, and there is one top-level heading.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// The parser options every rendering uses (GitHub-flavoured tables and task lists).
pub fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS | Options::ENABLE_STRIKETHROUGH
}

/// A heading: level (1–6), text, anchor (GitHub's, made unique with `-1`, `-2`…), line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    pub level: usize,
    pub text: String,
    pub anchor: String,
    pub line: usize,
}

fn level(l: HeadingLevel) -> usize {
    match l {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Every heading of `text`, in order.
pub fn headings(text: &str) -> Vec<Heading> {
    let mut out: Vec<Heading> = Vec::new();
    let mut current: Option<(usize, usize, String)> = None;
    for (event, range) in Parser::new_ext(text, options()).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level: l, .. }) => {
                current = Some((level(l), line_of(text, range.start), String::new()));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, s)) = &mut current {
                    s.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, line, text)) = current.take() {
                    let base = super::anchor(&text);
                    let mut anchor = base.clone();
                    let mut n = 0;
                    while out.iter().any(|h| h.anchor == anchor) {
                        n += 1;
                        anchor = format!("{base}-{n}");
                    }
                    out.push(Heading {
                        level,
                        text,
                        anchor,
                        line,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Cells of a table row as written (`| a | b \\| c |` has two). As GitHub and pulldown-cmark
/// split a row: at every `|` not right after a backslash, inside backticks too (a code span
/// in a cell writes its pipes as `\\|`).
fn cells(row: &str) -> usize {
    let t = row.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t
        .strip_suffix('|')
        .filter(|_| !t.ends_with("\\|"))
        .unwrap_or(t);
    1 + t
        .char_indices()
        .filter(|&(i, c)| c == '|' && !t[..i].ends_with('\\'))
        .count()
}

/// Every structural problem of `text`, as `line N: …`.
pub fn problems(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let heads = headings(text);
    // one top-level heading, first
    let h1 = heads.iter().filter(|h| h.level == 1).count();
    if h1 != 1 {
        out.push(format!(
            "the document has {h1} top-level headings; it needs exactly one"
        ));
    }
    // heading levels never skip
    let mut prev = 0;
    for h in &heads {
        if prev > 0 && h.level > prev + 1 {
            out.push(format!(
                "line {}: heading `{}` is level {} right after a level {prev} heading (levels must not skip)",
                h.line, h.text, h.level
            ));
        }
        prev = h.level;
    }
    // internal links, tables, and what each section holds
    let mut table_rows: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    let mut table_ranges: Vec<std::ops::Range<usize>> = Vec::new();
    let mut content_after: Vec<bool> = vec![false; heads.len()];
    let mut section: Option<usize> = None;
    let mut depth_in_heading = false;
    let mut heading_index = 0usize;
    for (event, range) in Parser::new_ext(text, options()).into_offset_iter() {
        match &event {
            Event::Start(Tag::Heading { .. }) => {
                depth_in_heading = true;
                section = Some(heading_index);
                heading_index += 1;
            }
            Event::End(TagEnd::Heading(_)) => depth_in_heading = false,
            Event::Start(Tag::Link { dest_url, .. }) => {
                if let Some(frag) = dest_url.strip_prefix('#') {
                    if !heads.iter().any(|h| h.anchor == frag) {
                        out.push(format!(
                            "line {}: the link to `#{frag}` points at no heading",
                            line_of(text, range.start)
                        ));
                    }
                }
            }
            Event::Start(Tag::Table(_)) => table_ranges.push(range.clone()),
            Event::Start(Tag::TableHead) | Event::Start(Tag::TableRow) => {
                table_rows.push((table_ranges.len() - 1, range.clone()));
            }
            _ => {}
        }
        if !depth_in_heading && !matches!(event, Event::End(TagEnd::Heading(_))) {
            if let (Some(i), true) = (section, !matches!(event, Event::Start(Tag::Heading { .. })))
            {
                content_after[i] = true;
            }
        }
    }
    // a section with nothing before the next heading of the same or a higher level
    for (i, h) in heads.iter().enumerate() {
        let next_is_child = heads.get(i + 1).is_some_and(|n| n.level > h.level);
        if !content_after[i] && !next_is_child {
            out.push(format!("line {}: section `{}` is empty", h.line, h.text));
        }
    }
    for (t, range) in table_ranges.iter().enumerate() {
        let rows: Vec<&std::ops::Range<usize>> = table_rows
            .iter()
            .filter(|(i, _)| *i == t)
            .map(|(_, r)| r)
            .collect();
        let Some(head) = rows.first() else { continue };
        let want = cells(&text[(*head).clone()]);
        // the rows as written: pulldown-cmark fills or cuts rows silently
        for (k, r) in rows.iter().enumerate().skip(1) {
            let got = cells(&text[(*r).clone()]);
            if got != want {
                out.push(format!(
                    "line {}: table row {} has {got} cells, the header has {want}",
                    line_of(text, r.start),
                    k
                ));
            }
        }
        let _ = range;
    }
    // a row that did not become part of any table (a missing delimiter row, a blank line)
    let mut offset = 0;
    for (n, l) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += l.len();
        if l.trim_start().starts_with('|') && !table_ranges.iter().any(|r| r.contains(&start)) {
            let in_code = Parser::new_ext(text, options())
                .into_offset_iter()
                .any(|(e, r)| matches!(e, Event::Start(Tag::CodeBlock(_))) && r.contains(&start));
            if !in_code {
                out.push(format!(
                    "line {}: a table row outside any table (is the delimiter row missing?)",
                    n + 1
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sound_document_passes() {
        let doc = "# T\n\nIntro, see [a](#a-b).\n\n## A b\n\n| x | y |\n|---|---|\n| 1 | 2 \\| 3 |\n\n## C\n\n### D\n\nText.\n";
        assert_eq!(problems(doc), Vec::<String>::new());
    }

    #[test]
    fn each_structural_fault_is_named_with_its_line() {
        let doc = "# T\n\n[x](#nowhere)\n\n### Skipped\n\ntext\n\n## Empty\n\n## Table\n\n| a | b |\n|---|---|\n| 1 |\n\n| stray |\n";
        let p = problems(doc);
        assert!(
            p.iter()
                .any(|m| m.contains("line 3: the link to `#nowhere`")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("line 5: heading `Skipped` is level 3")),
            "{p:#?}"
        );
        assert!(
            p.iter().any(|m| m.contains("section `Empty` is empty")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("line 15: table row 1 has 1 cells, the header has 2")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("line 17: a table row outside any table")),
            "{p:#?}"
        );
    }

    /// A row splits where pulldown-cmark splits it: a backtick does not protect a pipe, a
    /// backslash does; so a step's output with a lone backtick cannot hide a cell.
    #[test]
    fn cells_are_counted_as_the_parser_splits_them() {
        assert_eq!(cells("| a `x|y` b | c |"), 3);
        assert_eq!(cells("| a \\| b | c |"), 2);
        assert_eq!(cells("| it`s | b \\| `c\\|d` | e |"), 3);
        assert_eq!(cells("| a | b \\|"), 2);
        let doc = "# T\n\n## S\n\n| a | b |\n|---|---|\n| it`s | x |\n| `y` | `z\\|w` |\n";
        assert_eq!(problems(doc), Vec::<String>::new());
        let cut = "# T\n\n## S\n\n| a | b |\n|---|---|\n| `x|y` | z |\n";
        assert_eq!(
            problems(cut),
            ["line 7: table row 1 has 3 cells, the header has 2"]
        );
    }

    #[test]
    fn duplicate_headings_get_numbered_anchors() {
        let h = headings("# A\n\n## B\n\nx\n\n## B\n\ny\n");
        assert_eq!(h[2].anchor, "b-1");
    }
}
