//! Template checks inside a runbook: syntax, and that every variable a template reads exists
//! at that point — declared params, earlier steps, known `run` fields — with suggestions.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::decode::Sink;
use crate::diagnostic::Diagnostic;
use crate::diagnostic::YamlPath;
use crate::template::{self, SyntaxError, ROOTS, RUN_FIELDS};

/// Globals minijinja provides; reading them is not a reference to runbook data.
const BUILTINS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "true",
    "false",
    "none",
];

/// What a template at some place may read.
#[derive(Debug, Default)]
pub struct Scope<'a> {
    /// Declared params, when params are readable here.
    pub params: Option<Vec<&'a str>>,
    /// Steps that run before this point (readable).
    pub earlier: Vec<&'a str>,
    /// Steps of the procedure that run at or after this point (named in errors).
    pub later: Vec<&'a str>,
    pub steps: bool,
    pub run: bool,
    /// Extra roots, e.g. `result` inside `wait.until`.
    pub extra: &'a [&'a str],
    /// What each earlier step declares it outputs (by step id), when steps are readable.
    pub outputs: Option<&'a HashMap<String, Vec<String>>>,
}

/// What the templates of one step (or target, or alert) read.
#[derive(Debug, Default)]
pub struct Reads {
    pub steps: BTreeSet<String>,
    pub env: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Template,
    Expression,
}

/// Checks one template or expression at `path` whose text is `text`.
pub fn check(
    sink: &mut Sink<'_>,
    path: &YamlPath,
    text: &str,
    form: Form,
    scope: &Scope<'_>,
    reads: &mut Reads,
) {
    let env = template::environment();
    let found = match form {
        Form::Template if !template::is_template(text) => return,
        Form::Template => template::references(&env, text),
        Form::Expression => template::expression_references(&env, text),
    };
    let refs = match found {
        Ok(mut refs) => {
            // `steps['make-dir'].x` and `env['X']` are references too
            for root in ["steps", "env", "params"] {
                refs.extend(
                    subscripts(text, root)
                        .into_iter()
                        .map(|k| format!("{root}.{k}")),
                );
            }
            refs
        }
        Err(SyntaxError {
            message,
            line,
            col,
            len,
        }) => {
            let span = sink.doc.span_in_string(path, line, col, len);
            sink.push(Diagnostic::error(span, message));
            return;
        }
    };
    for r in refs {
        let parts: Vec<&str> = r.split('.').collect();
        let root = parts[0];
        let problem = match root {
            "env" => {
                if let Some(name) = parts.get(1) {
                    reads.env.insert((*name).to_owned());
                }
                None
            }
            "now" => None,
            "params" => match (&scope.params, parts.get(1)) {
                (None, _) => Some(here_only(root, "procedure steps")),
                (Some(_), None) => None,
                (Some(declared), Some(name)) if declared.contains(name) => None,
                (Some(declared), Some(name)) => Some(
                    Diagnostic::error(None, format!("unknown param `{name}`")).suggest(name, declared.iter().copied()).or_help(|| {
                        if declared.is_empty() {
                            "this procedure declares no params".to_owned()
                        } else {
                            format!("declared params: {}", super::decode::backticked(declared))
                        }
                    }),
                ),
            },
            "steps" if !scope.steps => Some(here_only(root, "procedure steps")),
            "steps" => match parts.get(1) {
                None => None,
                Some(id) if scope.earlier.contains(id) => {
                    reads.steps.insert((*id).to_owned());
                    undeclared_output(scope, id, parts.get(2).copied())
                }
                Some(id) if scope.later.contains(id) => Some(Diagnostic::error(
                    None,
                    format!("step `{id}` runs later: a step can only read the outputs of steps before it"),
                )),
                Some(id) => Some(
                    Diagnostic::error(None, format!("no step `{id}` in this procedure"))
                        .suggest(id, scope.earlier.iter().chain(&scope.later).copied()),
                ),
            },
            "run" if !scope.run => Some(here_only(root, "procedures")),
            "run" => match parts.get(1) {
                Some(field) if !RUN_FIELDS.contains(field) => Some(
                    Diagnostic::error(None, format!("unknown field `run.{field}`")).suggest(field, RUN_FIELDS.iter().copied()),
                ),
                _ => None,
            },
            _ if scope.extra.contains(&root) || BUILTINS.contains(&root) => None,
            "result" => Some(Diagnostic::error(None, "`result` is only readable in `wait.until` and `wait.fail_when`, where it holds the polled step's outputs")),
            _ => {
                let roots: Vec<&str> = ROOTS.iter().chain(scope.extra).copied().collect();
                Some(Diagnostic::error(None, format!("unknown variable `{root}`")).suggest(root, roots.iter().copied()).or_help(|| {
                    format!("templates read {}", super::decode::backticked(&roots))
                }))
            }
        };
        if let Some(mut d) = problem {
            let needle = match parts.as_slice() {
                // an undeclared output: the whole reference
                ["steps", id, field, ..] if scope.earlier.contains(id) => {
                    format!("steps.{id}.{field}")
                }
                [root, key, ..] => format!("{root}.{key}"),
                _ => root.to_owned(),
            };
            d.span = place_of(sink, path, text, &needle);
            sink.push(d);
        }
    }
}

/// A reference to an output the step does not declare (`steps.a.stdoutt`).
fn undeclared_output(scope: &Scope<'_>, id: &str, field: Option<&str>) -> Option<Diagnostic> {
    let field = field?;
    let declared = scope.outputs?.get(id)?;
    if declared
        .iter()
        .any(|o| o == field || o == crate::kind::ANY_OUTPUT)
    {
        return None;
    }
    let names = declared.iter().map(String::as_str);
    Some(
        Diagnostic::error(None, format!("step `{id}` has no output `{field}`"))
            .suggest(field, names.clone())
            .or_help(|| {
                if declared.is_empty() {
                    format!("step `{id}` has no outputs")
                } else {
                    format!("its outputs: {}", super::decode::backticked(declared))
                }
            }),
    )
}

/// Literal keys of `root['key']` / `root["key"]` in a template's text.
fn subscripts(text: &str, root: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(root).map(|i| i + from) {
        from = i + root.len();
        let before_ok = text[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        let rest = text[from..].trim_start();
        let Some(rest) = rest.strip_prefix('[').map(str::trim_start) else {
            continue;
        };
        let Some(quote) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            continue;
        };
        if let Some(end) = rest[1..].find(quote) {
            if before_ok {
                out.push(rest[1..1 + end].to_owned());
            }
        }
    }
    out
}

fn here_only(root: &str, where_: &str) -> Diagnostic {
    Diagnostic::error(
        None,
        format!("`{root}` is not available here: only {where_} can read it"),
    )
}

/// The place of `needle` inside the string at `path`, or of the string itself.
fn place_of(
    sink: &Sink<'_>,
    path: &YamlPath,
    text: &str,
    needle: &str,
) -> Option<crate::diagnostic::Span> {
    // `steps.x` as written, or subscripted: `steps['x']`, `steps["x"]`
    let mut forms = vec![needle.to_owned()];
    if let Some((root, key)) = needle.split_once('.') {
        forms.push(format!("{root}['{key}']"));
        forms.push(format!("{root}[\"{key}\"]"));
    }
    let Some((offset, len)) = forms
        .iter()
        .find_map(|f| text.find(f.as_str()).map(|o| (o, f.chars().count())))
    else {
        return sink.doc.value_span(path);
    };
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    sink.doc.span_in_string(path, line, col, len)
}

/// Calls `f` for every string in `value` with its path and the top-level field it sits under
/// (`""` for a value that is itself a string).
pub fn strings<'v>(
    value: &'v Value,
    path: &YamlPath,
    f: &mut dyn FnMut(&YamlPath, &'v str, Option<&str>),
) {
    fn walk<'v>(
        value: &'v Value,
        path: &YamlPath,
        top: Option<&str>,
        f: &mut dyn FnMut(&YamlPath, &'v str, Option<&str>),
    ) {
        match value {
            Value::String(s) => f(path, s, top),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &path.index(i), top, f);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    walk(v, &path.key(k), top, f);
                }
            }
            _ => {}
        }
    }
    match value {
        Value::String(s) => f(path, s, Some("")),
        Value::Object(map) => {
            for (k, v) in map {
                walk(v, &path.key(k), Some(k), f);
            }
        }
        other => walk(other, path, None, f),
    }
}

trait OrHelp {
    fn or_help(self, f: impl FnOnce() -> String) -> Self;
}

impl OrHelp for Diagnostic {
    fn or_help(self, f: impl FnOnce() -> String) -> Diagnostic {
        if self.help.is_some() {
            self
        } else {
            self.with_help(f())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subscripts;

    #[test]
    fn finds_subscripted_references() {
        assert_eq!(
            subscripts("{{ steps['make-dir'].stdout }} {{ steps[\"b\"] }}", "steps"),
            ["make-dir", "b"]
        );
        assert_eq!(
            subscripts("{{ mysteps['x'] }} {{ env [ 'HOME' ] }}", "steps"),
            Vec::<String>::new()
        );
        assert_eq!(subscripts("{{ env [ 'HOME' ] }}", "env"), ["HOME"]);
    }
}
