//! Decoding YAML values into typed parts while collecting every problem with its place.
//! Composite nodes (runbook, procedure, step, target, check, alert) are read key by key with
//! [`MapReader`], so one bad field never hides another; leaf parts go through serde with
//! `deny_unknown_fields`, and serde's error is mapped back to the key or value at fault.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::load::Document;
use crate::diagnostic::YamlPath;
use crate::diagnostic::{did_you_mean, Diagnostic};

/// Collects diagnostics against one document.
#[derive(Debug)]
pub struct Sink<'d> {
    pub doc: &'d Document,
    pub diags: Vec<Diagnostic>,
}

impl<'d> Sink<'d> {
    pub fn new(doc: &'d Document) -> Sink<'d> {
        Sink {
            doc,
            diags: Vec::new(),
        }
    }

    /// An error pointing at the value at `path`.
    pub fn at_value(&mut self, path: &YamlPath, message: impl Into<String>) -> &mut Diagnostic {
        let span = self.doc.value_span(path);
        self.diags.push(Diagnostic::error(span, message));
        self.diags.last_mut().expect("just pushed")
    }

    /// An error pointing at the key leading to `path`.
    pub fn at_key(&mut self, path: &YamlPath, message: impl Into<String>) -> &mut Diagnostic {
        let span = self.doc.key_span(path);
        self.diags.push(Diagnostic::error(span, message));
        self.diags.last_mut().expect("just pushed")
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Deserializes a leaf value; on failure records where and why, and returns None.
    pub fn decode<T: DeserializeOwned>(&mut self, value: &Value, path: &YamlPath) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut at = path.clone();
                for seg in e.path().iter() {
                    match seg {
                        serde_path_to_error::Segment::Seq { index } => at = at.index(*index),
                        serde_path_to_error::Segment::Map { key } => at = at.key(key),
                        serde_path_to_error::Segment::Enum { variant } => at = at.key(variant),
                        serde_path_to_error::Segment::Unknown => {}
                    }
                }
                let d = serde_diagnostic(self.doc, &at, &e.into_inner().to_string());
                self.diags.push(d);
                None
            }
        }
    }
}

/// Turns one of serde's standard messages into a diagnostic at the right place, with a
/// suggestion where serde listed the alternatives.
fn serde_diagnostic(doc: &Document, at: &YamlPath, message: &str) -> Diagnostic {
    let message = message.split(" at line ").next().unwrap_or(message);
    if let Some((field, expected)) = parse_unknown(message, "unknown field `") {
        let span = doc.key_span(&at.key(&field));
        let d = Diagnostic::error(span, format!("unknown field `{field}`"));
        return suggest_or_list(d, &field, &expected);
    }
    if let Some((variant, expected)) = parse_unknown(message, "unknown variant `") {
        // a kind written as a mapping key (`poll: {htp: …}`): point at the key
        let d = match doc.exact_key_span(&at.key(&variant)) {
            Some(span) => Diagnostic::error(Some(span), format!("unknown kind `{variant}`")),
            None => Diagnostic::error(doc.value_span(at), format!("unknown value `{variant}`")),
        };
        return suggest_or_list(d, &variant, &expected);
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        // at the key naming the mapping that lacks it (`local.backup_age:`), not at the
        // mapping's first key
        let field = rest.trim_end_matches('`');
        return Diagnostic::error(
            doc.key_span(at),
            format!("missing required field `{field}`"),
        );
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let d = Diagnostic::error(
            doc.value_span(at),
            format!("wrong type at `{at}`: found {}", plain_types(rest)),
        );
        if rest.contains("{{") {
            return d.with_help(
                "templates are expanded in text values only; this field takes a literal value",
            );
        }
        return d;
    }
    Diagnostic::error(
        doc.value_span(at),
        format!("invalid value at `{at}`: {message}"),
    )
}

/// serde names Rust types; runbook authors think in YAML.
fn plain_types(text: &str) -> String {
    let mut out = text
        .replace("found map", "found a mapping")
        .replacen("map,", "a mapping,", 1);
    for ty in [
        "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "usize",
    ] {
        out = out.replace(&format!("expected {ty}"), "expected a whole number");
    }
    if let Some(i) = out.find("expected struct ") {
        out.replace_range(i.., "expected a mapping");
    }
    if let Some(stem) = out.strip_suffix("expected a map") {
        out = format!("{stem}expected a mapping");
    }
    out.replace("expected a sequence", "expected a list")
}

fn suggest_or_list(d: Diagnostic, word: &str, expected: &[String]) -> Diagnostic {
    match did_you_mean(word, expected.iter().map(String::as_str)) {
        Some(best) => d.with_help(format!("did you mean `{best}`?")),
        None if expected.is_empty() => d,
        None => d.with_help(format!("expected one of {}", backticked(expected))),
    }
}

/// Parses "unknown field `x`, expected one of `a`, `b`" / "expected `a` or `b`".
fn parse_unknown(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    let word = rest[..end].to_owned();
    let expected = rest[end + 1..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((word, expected))
}

pub fn backticked<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| format!("`{}`", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads a mapping key by key. Every key read is marked; [`MapReader::finish`] reports the
/// rest as unknown fields, each with a suggestion from the known ones.
#[derive(Debug)]
pub struct MapReader<'v> {
    pub path: YamlPath,
    map: Option<&'v serde_json::Map<String, Value>>,
    known: &'static [&'static str],
    /// Keys the caller handles itself (e.g. the kind key of a step).
    extra: Vec<String>,
}

impl<'v> MapReader<'v> {
    /// Starts reading the mapping at `path`; a non-mapping is reported and reads as empty.
    pub fn new(
        sink: &mut Sink<'_>,
        value: &'v Value,
        path: YamlPath,
        what: &str,
        known: &'static [&'static str],
    ) -> MapReader<'v> {
        let map = match value {
            Value::Object(m) => Some(m),
            other => {
                sink.at_value(
                    &path,
                    format!("{what} must be a mapping, found {}", describe(other)),
                );
                None
            }
        };
        MapReader {
            path,
            map,
            known,
            extra: Vec::new(),
        }
    }

    pub fn is_valid(&self) -> bool {
        self.map.is_some()
    }

    pub fn get(&self, key: &str) -> Option<&'v Value> {
        self.map?.get(key)
    }

    /// A required field: reports it missing (at the mapping) and returns None.
    pub fn required<T: DeserializeOwned>(&self, sink: &mut Sink<'_>, key: &str) -> Option<T> {
        match self.get(key) {
            Some(v) => sink.decode(v, &self.path.key(key)),
            None => {
                if self.map.is_some() {
                    // point at the key that names the mapping (`drill:`), if it has one
                    sink.at_key(&self.path, format!("missing required field `{key}`"));
                }
                None
            }
        }
    }

    pub fn optional<T: DeserializeOwned>(&self, sink: &mut Sink<'_>, key: &str) -> Option<T> {
        match self.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => sink.decode(v, &self.path.key(key)),
        }
    }

    /// String keys not among the known fields, in document order.
    pub fn unknown_keys(&self) -> Vec<(String, &'v Value)> {
        let Some(map) = self.map else {
            return Vec::new();
        };
        map.iter()
            .filter(|(k, _)| !self.known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v))
            .collect()
    }

    pub fn known(&self) -> impl Iterator<Item = &'static str> {
        self.known.iter().copied()
    }

    /// Marks a key as handled by the caller.
    pub fn claim(&mut self, key: &str) {
        self.extra.push(key.to_owned());
    }

    /// Reports every key neither known nor claimed.
    pub fn finish(self, sink: &mut Sink<'_>, what: &str) {
        for (key, _) in self.unknown_keys() {
            if self.extra.contains(&key) {
                continue;
            }
            let d = sink.at_key(
                &self.path.key(&key),
                format!("unknown field `{key}` in {what}"),
            );
            if let Some(best) = did_you_mean(&key, self.known.iter().copied()) {
                d.help = Some(format!("did you mean `{best}`?"));
            }
        }
    }
}

/// "a string", "a sequence", ... for messages.
pub fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// The longest id or name, in bytes (PostgreSQL's limit on identifiers, too).
pub const MAX_ID: usize = 63;

/// "invalid step id `abc…` (70000 characters): at most 63": the start of the name only,
/// since the caret shows where it is.
pub fn too_long(what: &str, id: &str) -> String {
    let start: String = id.chars().take(20).collect();
    format!(
        "invalid {what} `{start}…` ({} characters): at most {MAX_ID}",
        id.chars().count()
    )
}

/// Checks an identifier against a pattern description; returns a message when it does not fit.
pub fn check_id(id: &str, allow: fn(char) -> bool, what: &str, rule: &str) -> Option<String> {
    let first_ok = id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if id.len() > MAX_ID {
        return Some(too_long(what, id));
    }
    if id.is_empty() || !first_ok || !id.chars().all(allow) {
        return Some(format!("invalid {what} `{id}`: {rule}"));
    }
    None
}
