//! The only place that touches the YAML parsers. `serde_yaml` gives the values (and places
//! syntax errors); a second pass over `yaml-rust2`'s events builds a side index from each YAML
//! path to where its key and value start, because a parsed value carries no position. The
//! values leave this module as plain data (`serde_json::Value`): swapping the YAML crate
//! changes this file only.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diagnostic::{Diagnostic, Seg, Span, YamlPath};

/// Where a node sits in the source.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// The mapping key that leads to the node, when the node is a mapping value.
    key: Option<Span>,
    value: Span,
    /// Block scalars (`|`, `>`) start their text on the next line.
    block: bool,
    /// Quoted scalars have their text one column right of the node start.
    quoted: bool,
}

/// A parsed YAML document with positions.
#[derive(Debug)]
pub struct Document {
    pub path: String,
    pub source: String,
    /// The document as plain data: mapping keys as text, YAML tags refused.
    pub value: serde_json::Value,
    places: HashMap<YamlPath, Place>,
}

impl Document {
    /// Parses `source`. A syntax error is returned as a diagnostic with its place.
    /// Duplicate mapping keys are all reported at once.
    pub fn parse(path: &str, source: &str) -> Result<Document, Vec<Diagnostic>> {
        let mut index = Indexer {
            source: source.as_bytes(),
            ..Indexer::default()
        };
        let scanned = Parser::new_from_str(source).load(&mut index, true);
        if !index.duplicates.is_empty() {
            return Err(index.duplicates);
        }
        let value: serde_yaml::Value =
            serde_yaml::from_str(source).map_err(|e| vec![syntax_error(&e)])?;
        scanned.map_err(|e| {
            let m = e.marker();
            vec![Diagnostic::error(
                Some(Span::new(m.line(), m.col() + 1, 1)),
                format!("invalid YAML: {}", e.info()),
            )]
        })?;
        if index.documents > 1 {
            return Err(vec![Diagnostic::error(
                index.second_document,
                "a runbook file holds one YAML document; found a second `---`",
            )]);
        }
        let mut doc = Document {
            path: path.to_owned(),
            source: source.to_owned(),
            value: serde_json::Value::Null,
            places: index.places,
        };
        let mut problems = Vec::new();
        doc.value = plain(value, &YamlPath::default(), &mut problems);
        if !problems.is_empty() {
            return Err(problems
                .into_iter()
                .map(|(path, message)| Diagnostic::error(doc.value_span(&path), message))
                .collect());
        }
        Ok(doc)
    }

    /// The place of the value at `path`, or of its closest ancestor that has one.
    pub fn value_span(&self, path: &YamlPath) -> Option<Span> {
        self.nearest(path).map(|p| p.value)
    }

    /// The place of the key leading to `path` (falls back to the value).
    pub fn key_span(&self, path: &YamlPath) -> Option<Span> {
        self.nearest(path).map(|p| p.key.unwrap_or(p.value))
    }

    /// The key span of exactly `path`, when the document has that key.
    pub fn exact_key_span(&self, path: &YamlPath) -> Option<Span> {
        self.places.get(path).and_then(|p| p.key)
    }

    /// Where character `offset` of the string scalar at `path` is, for pointing inside
    /// templates. `line` is 1-based within the string.
    pub fn span_in_string(
        &self,
        path: &YamlPath,
        line: usize,
        col: usize,
        len: usize,
    ) -> Option<Span> {
        let place = self.places.get(path)?;
        if place.block {
            // the text of a block scalar starts on the line after the indicator; its
            // indentation is that of the first content line
            let first = place.value.line + line;
            let indent = self
                .source
                .lines()
                .nth(first - 1)
                .map(|l| l.chars().take_while(|c| *c == ' ').count())
                .unwrap_or(0);
            return Some(Span::new(first, indent + col, len));
        }
        if line > 1 {
            return Some(place.value);
        }
        Some(
            place
                .value
                .shifted(col - 1 + usize::from(place.quoted), len),
        )
    }

    fn nearest(&self, path: &YamlPath) -> Option<&Place> {
        let mut segs = path.0.as_slice();
        loop {
            if let Some(p) = self.places.get(&YamlPath(segs.to_vec())) {
                return Some(p);
            }
            if segs.is_empty() {
                return None;
            }
            segs = &segs[..segs.len() - 1];
        }
    }
}

/// A YAML value as plain data. Keys that are not text (`1:`, `true:`) become their text;
/// tags and numbers JSON cannot hold (`.inf`, `.nan`) are reported.
fn plain(
    value: serde_yaml::Value,
    path: &YamlPath,
    problems: &mut Vec<(YamlPath, String)>,
) -> serde_json::Value {
    use serde_yaml::Value as Y;
    match value {
        Y::Null => serde_json::Value::Null,
        Y::Bool(b) => b.into(),
        Y::String(s) => s.into(),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                match n.as_f64().and_then(serde_json::Number::from_f64) {
                    Some(f) => serde_json::Value::Number(f),
                    None => {
                        problems.push((path.clone(), format!("`{n}` is not a finite number")));
                        serde_json::Value::Null
                    }
                }
            }
        }
        Y::Sequence(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| plain(v, &path.index(i), problems))
            .collect(),
        Y::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let key = key_text(&k);
                let value = plain(v, &path.key(&key), problems);
                out.insert(key, value);
            }
            serde_json::Value::Object(out)
        }
        Y::Tagged(t) => {
            problems.push((
                path.clone(),
                format!(
                    "YAML tags are not supported (found `{}`): write the value without it",
                    t.tag
                ),
            ));
            plain(t.value, path, problems)
        }
    }
}

/// A mapping key as text.
fn key_text(k: &serde_yaml::Value) -> String {
    match k {
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// libyaml's errors (through serde_yaml) read "PROBLEM at line L column C, while CONTEXT at
/// line L2 column C2". The caret goes where the construct at fault started when that is known
/// (an unclosed quote is more useful to point at than the end of the file).
fn syntax_error(e: &serde_yaml::Error) -> Diagnostic {
    let full = e.to_string();
    let (problem, context) = match full.split_once(", while ") {
        Some((p, c)) => (p, Some(c)),
        None => (full.as_str(), None),
    };
    let (problem_text, _) = split_location(problem);
    let problem_span = e.location().map(|l| Span::new(l.line(), l.column(), 1));
    match context.map(split_location) {
        Some((ctx, Some(span))) => Diagnostic::error(
            Some(span),
            format!("invalid YAML: while {ctx}: {problem_text}"),
        )
        .with_help(match problem_span {
            Some(p) => format!("the problem was found at line {} column {}", p.line, p.col),
            None => "the problem was found later in the file".to_owned(),
        }),
        Some((ctx, None)) => Diagnostic::error(
            problem_span,
            format!("invalid YAML: {problem_text} (while {ctx})"),
        ),
        None => Diagnostic::error(problem_span, format!("invalid YAML: {problem_text}")),
    }
}

/// "text at line 3 column 5" -> ("text", Some(3:5)).
fn split_location(s: &str) -> (&str, Option<Span>) {
    let Some(i) = s.rfind(" at line ") else {
        return (s, None);
    };
    let mut nums = s[i + 9..]
        .split(" column ")
        .map(|n| n.trim().parse::<usize>().ok());
    match (nums.next().flatten(), nums.next().flatten()) {
        (Some(line), Some(col)) => (&s[..i], Some(Span::new(line, col, 1))),
        _ => (s, None),
    }
}

/// Builds the path -> place index from parser events.
#[derive(Default)]
struct Indexer<'s> {
    source: &'s [u8],
    places: HashMap<YamlPath, Place>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Span>,
    duplicates: Vec<Diagnostic>,
    documents: usize,
    second_document: Option<Span>,
}

enum Frame {
    /// In a mapping: the path of the mapping, the key just read (awaiting its value), and
    /// whether no key was read yet.
    Map {
        path: YamlPath,
        pending: Option<(String, Span)>,
        first: bool,
    },
    Seq {
        path: YamlPath,
        next: usize,
    },
}

impl Indexer<'_> {
    /// The path and key span for the node that starts now, advancing the parent's state.
    /// Returns None when the node is a mapping key (keys are recorded with their value).
    fn enter(&mut self) -> Option<(YamlPath, Option<Span>)> {
        match self.stack.last_mut() {
            None => Some((YamlPath::default(), None)),
            Some(Frame::Seq { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                Some((p, None))
            }
            Some(Frame::Map { path, pending, .. }) => pending
                .take()
                .map(|(key, span)| (path.key(&key), Some(span))),
        }
    }

    /// A mapping key was read. A block mapping is placed at its first key (the parser marks
    /// it after that key); a repeated key is reported, and its subtree indexed apart so its
    /// children are not reported as repeats too.
    fn key(&mut self, text: String, span: Span) {
        let Some(Frame::Map {
            path,
            pending,
            first,
        }) = self.stack.last_mut()
        else {
            return;
        };
        if std::mem::take(first) {
            if let Some(place) = self.places.get_mut(path) {
                let flow = place_byte(self.source, place.value) == Some(b'{');
                if !flow {
                    place.value = span;
                }
            }
        }
        let mut key = text.clone();
        if let Some(first) = self.places.get(&path.key(&text)) {
            let line = first.key.unwrap_or(first.value).line;
            let what = match path.0.as_slice() {
                [Seg::Key(k)] if k == "procedures" => "procedure id",
                [Seg::Key(k)] if k == "targets" => "target name",
                [.., Seg::Key(k)] if k == "params" => "param name",
                _ => "key",
            };
            self.duplicates.push(Diagnostic::error(
                Some(span),
                format!("duplicate {what} `{text}` (first defined on line {line})"),
            ));
            key = format!("{text}\u{0}{}", self.duplicates.len());
        }
        *pending = Some((key, span));
    }

    fn record(
        &mut self,
        path: YamlPath,
        key: Option<Span>,
        value: Span,
        block: bool,
        quoted: bool,
    ) {
        self.places.insert(
            path,
            Place {
                key,
                value,
                block,
                quoted,
            },
        );
    }
}

/// The source byte at a span's start (line/col are in characters).
fn place_byte(source: &[u8], span: Span) -> Option<u8> {
    let text = std::str::from_utf8(source).ok()?;
    let line = text.lines().nth(span.line.checked_sub(1)?)?;
    line.chars()
        .nth(span.col.checked_sub(1)?)
        .and_then(|c| u8::try_from(c).ok())
}

fn span_at(mark: Marker, len: usize) -> Span {
    Span::new(mark.line(), mark.col() + 1, len)
}

impl MarkedEventReceiver for Indexer<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, style, anchor, _) => {
                let quoted = matches!(
                    style,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                );
                let block = matches!(style, TScalarStyle::Literal | TScalarStyle::Folded);
                let len = if block {
                    1
                } else {
                    text.chars().count() + 2 * usize::from(quoted)
                };
                let span = span_at(mark, len);
                if anchor > 0 {
                    self.anchors.insert(anchor, span);
                }
                match self.enter() {
                    Some((path, key)) => self.record(path, key, span, block, quoted),
                    None => self.key(text, span),
                }
            }
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    self.second_document = Some(span_at(mark, 3));
                }
            }
            Event::Alias(anchor) => {
                let span = self
                    .anchors
                    .get(&anchor)
                    .copied()
                    .unwrap_or_else(|| span_at(mark, 1));
                match self.enter() {
                    Some((path, key)) => self.record(path, key, span_at(mark, 1), false, false),
                    // an aliased mapping key: rare; name it by the anchor
                    None => self.key(format!("*{anchor}"), span),
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let (path, key) = self
                    .enter()
                    .unwrap_or_else(|| (YamlPath(vec![Seg::Key("?".into())]), None));
                self.record(path.clone(), key, span_at(mark, 1), false, false);
                self.stack.push(if is_map {
                    Frame::Map {
                        path,
                        pending: None,
                        first: true,
                    }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &[Seg]) -> YamlPath {
        YamlPath(s.to_vec())
    }

    #[test]
    fn indexes_keys_and_values() {
        let src = "version: 1\nprocedures:\n  drill:\n    steps:\n      - id: one\n        shell: \"echo hi\"\n";
        let doc = Document::parse("x.yaml", src).expect("valid yaml");
        let step = path(&[
            Seg::Key("procedures".into()),
            Seg::Key("drill".into()),
            Seg::Key("steps".into()),
            Seg::Index(0),
        ]);
        assert_eq!(doc.key_span(&step.key("id")), Some(Span::new(5, 9, 2)));
        assert_eq!(doc.value_span(&step.key("id")), Some(Span::new(5, 13, 3)));
        assert_eq!(
            doc.value_span(&step.key("shell")),
            Some(Span::new(6, 16, 9))
        );
        assert_eq!(
            doc.span_in_string(&step.key("shell"), 1, 6, 2),
            Some(Span::new(6, 22, 2))
        );
        // unknown paths fall back to the nearest known ancestor: a block mapping is placed at
        // its first key
        assert_eq!(doc.value_span(&step.key("nope")), Some(Span::new(5, 9, 2)));
    }

    #[test]
    fn syntax_error_has_a_place() {
        let err = Document::parse("x.yaml", "a: [1, 2\nb: 3\n").expect_err("invalid");
        let err = &err[0];
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
        assert!(err.span.is_some());
    }
}
