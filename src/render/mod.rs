//! Rendering: the runbook document and each run's test-result log come from the same data
//! through minijinja templates (strict undefined). The default templates in `templates/` are
//! compiled into the binary; `--templates DIR` overrides them file by file. What a template
//! renders is made inert ([`escape::inert`]: no raw HTML, no link to a scheme that runs
//! code, no control character), then parsed with pulldown-cmark and refused when its
//! structure is broken ([`lint`]); [`html`] makes a standalone page of it.

pub mod doc;
pub mod escape;
pub mod html;
pub mod junit;
pub mod kinds;
pub mod lint;
pub mod log;
pub mod prometheus;

use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};

/// The default templates, by name.
pub const DEFAULTS: &[(&str, &str)] = &[
    (
        "runbook.md.j2",
        include_str!("../../templates/runbook.md.j2"),
    ),
    (
        "drill-log.md.j2",
        include_str!("../../templates/drill-log.md.j2"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Template(String),
    #[error("{0}")]
    Lint(String),
    #[error("{0}")]
    Io(String),
}

/// The template environment: defaults, overridden by files of the same name in a directory.
#[derive(Debug)]
pub struct Renderer {
    env: Environment<'static>,
    /// Where each template came from (for messages).
    origins: Vec<(String, String)>,
}

impl Renderer {
    pub fn new(overrides: Option<&Path>) -> Result<Renderer, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_filter("anchor", |s: String| anchor(&s));
        env.add_filter("cell", |s: String| cell(&s));
        env.add_filter("code", |s: String| escape::code(&s));
        env.add_filter("text", |s: String| escape::literal(&s));
        let mut origins = Vec::new();
        if let Some(dir) = overrides {
            if !dir.is_dir() {
                return Err(RenderError::Io(format!(
                    "--templates {}: not a directory",
                    dir.display()
                )));
            }
        }
        for (name, text) in DEFAULTS {
            let file: Option<PathBuf> = overrides.map(|d| d.join(name)).filter(|p| p.is_file());
            let (source, origin) = match file {
                Some(p) => (
                    std::fs::read_to_string(&p).map_err(|e| {
                        RenderError::Io(format!("cannot read {}: {e}", p.display()))
                    })?,
                    p.display().to_string(),
                ),
                None => ((*text).to_owned(), format!("built-in {name}")),
            };
            env.add_template_owned((*name).to_owned(), source)
                .map_err(|e| RenderError::Template(format!("{origin}: {}", describe(&e))))?;
            origins.push(((*name).to_owned(), origin));
        }
        Ok(Renderer { env, origins })
    }

    /// Renders template `name` with `context`, made inert ([`escape::inert`]) whatever the
    /// template and the values wrote.
    pub fn render(&self, name: &str, context: &serde_json::Value) -> Result<String, RenderError> {
        let origin = self
            .origins
            .iter()
            .find(|(n, _)| n == name)
            .map_or(name, |(_, o)| o.as_str());
        let tmpl = self
            .env
            .get_template(name)
            .map_err(|e| RenderError::Template(format!("{origin}: {}", describe(&e))))?;
        tmpl.render(minijinja::Value::from_serialize(context))
            .map(|markdown| escape::inert(&markdown))
            .map_err(|e| RenderError::Template(format!("{origin}: {}", describe(&e))))
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut s = crate::template::describe_error(e);
    if let Some(line) = e.line() {
        s = format!("line {line}: {s}");
    }
    s
}

/// The anchor GitHub (and markdownlint) give a heading: lowercase, spaces to `-`, only
/// letters, digits, `-` and `_` kept.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                Some(c)
            } else if c == ' ' {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// Text safe inside a Markdown table cell: one line, pipes escaped (one already escaped, as
/// [`escape::literal`] writes it, is left as it is).
pub fn cell(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(line.len() + 4);
    for (i, c) in line.char_indices() {
        if c == '|' && !line[..i].ends_with('\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_github() {
        assert_eq!(
            anchor("Point-in-time recovery (PITR) drill"),
            "point-in-time-recovery-pitr-drill"
        );
        assert_eq!(anchor("RTO & RPO"), "rto--rpo");
    }

    #[test]
    fn cells_are_one_line_with_pipes_escaped() {
        assert_eq!(cell("a | b\n c"), "a \\| b c");
        assert_eq!(cell(&escape::literal("a | b")), "a \\| b");
    }
}
