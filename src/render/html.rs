//! A standalone HTML page of a rendered Markdown document: the same content, headings with
//! the same anchors as on GitHub (so internal links work), a table of contents, and a small
//! stylesheet; no scripts, no external resources, and nothing active whatever the Markdown
//! holds: raw HTML is shown as text, a link to a scheme other than http, https or mailto is
//! only its text, and an image is a link to it.

use pulldown_cmark::{html, CowStr, Event, LinkType, Parser, Tag, TagEnd};

use super::escape;
use super::lint::{headings, options, Heading};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The table of contents: level-2 and level-3 headings, nested.
fn toc(heads: &[Heading]) -> String {
    let mut s = String::from("<nav id=\"contents\">\n<h2>Contents</h2>\n<ul>\n");
    let mut open_sub = false;
    for h in heads.iter().filter(|h| h.level == 2 || h.level == 3) {
        if h.level == 2 {
            if open_sub {
                s.push_str("</ul></li>\n");
                open_sub = false;
            } else if s.ends_with("</a>") {
                s.push_str("</li>\n");
            }
            s.push_str(&format!(
                "<li><a href=\"#{}\">{}</a>",
                h.anchor,
                escape(&h.text)
            ));
        } else {
            if !open_sub {
                s.push_str("\n<ul>\n");
                open_sub = true;
            }
            s.push_str(&format!(
                "<li><a href=\"#{}\">{}</a></li>\n",
                h.anchor,
                escape(&h.text)
            ));
        }
    }
    if open_sub {
        s.push_str("</ul></li>\n");
    } else if s.ends_with("</a>") {
        s.push_str("</li>\n");
    }
    s.push_str("</ul>\n</nav>\n");
    s
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2328}\
nav#contents{border:1px solid #d0d7de;border-radius:6px;padding:0 1rem;margin-bottom:2rem}\
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}\
code{background:#f6f8fa;padding:.1rem .3rem;border-radius:4px}pre{background:#f6f8fa;padding:1rem;overflow:auto}\
pre code{padding:0}h1,h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem}";

/// A link or image as the page shows it: a link to where it points, when that is a safe
/// scheme (an image would load from elsewhere, or run its `onerror`: its alternative text
/// becomes the link's text); None when it is only its text.
fn safe_link(tag: Tag<'_>) -> Option<Tag<'_>> {
    let (link_type, dest_url, title, id) = match tag {
        Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        } => (link_type, dest_url, title, id),
        Tag::Image {
            dest_url,
            title,
            id,
            ..
        } => (LinkType::Inline, dest_url, title, id),
        _ => return None,
    };
    escape::safe_url(&dest_url).then_some(Tag::Link {
        link_type,
        dest_url,
        title,
        id,
    })
}

/// The page for `markdown`.
pub fn page(markdown: &str) -> String {
    let heads = headings(markdown);
    let title = heads
        .iter()
        .find(|h| h.level == 1)
        .map_or_else(|| "Runbook".to_owned(), |h| h.text.clone());
    // give every heading its anchor as id, in document order
    let mut ids = heads.iter().map(|h| h.anchor.clone());
    // whether each open link or image is kept (its end follows its start, nested)
    let mut kept: Vec<bool> = Vec::new();
    let events = Parser::new_ext(markdown, options()).filter_map(|e| match e {
        Event::Start(Tag::Heading {
            level,
            classes,
            attrs,
            ..
        }) => Some(Event::Start(Tag::Heading {
            level,
            id: ids.next().map(CowStr::from),
            classes,
            attrs,
        })),
        // raw HTML is text: shown, never run
        Event::Html(t) | Event::InlineHtml(t) => Some(Event::Text(t)),
        Event::Start(Tag::HtmlBlock) => Some(Event::Start(Tag::Paragraph)),
        Event::End(TagEnd::HtmlBlock) => Some(Event::End(TagEnd::Paragraph)),
        Event::Start(tag @ (Tag::Link { .. } | Tag::Image { .. })) => {
            let link = safe_link(tag);
            kept.push(link.is_some());
            link.map(Event::Start)
        }
        Event::End(TagEnd::Link | TagEnd::Image) => kept
            .pop()
            .unwrap_or(false)
            .then_some(Event::End(TagEnd::Link)),
        other => Some(other),
    });
    let mut body = String::new();
    html::push_html(&mut body, events);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{}<main>\n{body}</main>\n</body>\n</html>\n",
        escape(&title),
        // a document with its own list of contents (the runbook document) gets no second
        // one, nor a second element with its id
        if heads.iter().any(|h| h.anchor == "contents") {
            String::new()
        } else {
            toc(&heads)
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_the_headings_with_anchors_and_a_contents_list() {
        let p = page("# Runbook & more\n\n## One\n\ntext [two](#two)\n\n## Two\n\n### Two a\n\n| a |\n|---|\n| 1 |\n");
        assert!(p.contains("<title>Runbook &amp; more</title>"), "{p}");
        assert!(p.contains("<h2 id=\"one\">One</h2>"), "{p}");
        assert!(p.contains("<h3 id=\"two-a\">Two a</h3>"), "{p}");
        assert!(p.contains("<a href=\"#two\">two</a>"));
        assert!(p.contains("<li><a href=\"#two\">Two</a>\n<ul>\n<li><a href=\"#two-a\">Two a</a></li>\n</ul></li>"), "{p}");
        assert!(p.contains("<table>"));
    }

    /// Whatever the Markdown holds, the page runs nothing: raw HTML is text, a link to a
    /// scheme that runs code is its text, an image is a link.
    #[test]
    fn the_page_has_nothing_active() {
        let p = page("# T <img src=x onerror=alert(1)>\n\n<iframe src=\"https://evil.example\"></iframe>\n\n<script>alert(1)</script>\n\ntext <img src=x onerror=alert(2)> [x](javascript:alert(3)) [y](JAVASCRIPT:alert(4) \"t\") <javascript:alert(5)> ![pic](https://a.example/p.png) ![z](javascript:alert(6)) [ok](https://a.example) [up](#t)\n");
        for active in [
            "<img",
            "<iframe",
            "<script",
            "href=\"javascript",
            "href=\"JAVASCRIPT",
        ] {
            assert!(!p.contains(active), "{active} in {p}");
        }
        assert!(
            p.contains("&lt;iframe src=\"https://evil.example\"&gt;&lt;/iframe&gt;"),
            "{p}"
        );
        assert!(
            p.contains("<a href=\"https://a.example/p.png\">pic</a>"),
            "{p}"
        );
        assert!(p.contains("<a href=\"https://a.example\">ok</a>"), "{p}");
        assert!(p.contains(" x y javascript:alert(5) "), "{p}");
    }

    /// The runbook document has its own `## Contents`: one list, one `id="contents"`.
    #[test]
    fn a_document_with_its_own_contents_gets_no_second_one() {
        let p = page("# Runbook\n\n## Contents\n\n- [One](#one)\n\n## One\n\ntext\n");
        assert_eq!(p.matches("id=\"contents\"").count(), 1, "{p}");
        assert!(!p.contains("<nav"), "{p}");
    }
}
