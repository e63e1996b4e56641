//! The runbook document's data: [`context`] turns a validated runbook and its drill records
//! into the JSON that `runbook.md.j2` arranges. Every string arrives ready to print as
//! Markdown: templates shown as placeholders (`<target_time>`, `$NEON_PROJECT_ID`), URL
//! passwords masked, text drillbook writes escaped, and every heading unique. Environment
//! variables are named, never read: a document can be rendered and published anywhere.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde_json::{json, Value};

use crate::checks::compare::{Compare, Direction, RowCounts, Samples, Selection, Tables};
use crate::engine::record::{DrillRecord, Verdict};
use crate::engine::redact::{is_secret_name, mask_url_passwords};
use crate::runbook::raw::{AlertEvent, AlertKind, TargetKind};
use crate::runbook::{ParamValue, Procedure, ProcedureKind, RtoMark, Runbook, Step};
use crate::steps::StepKind;

/// The document's sections (its H2 headings) in order, by their key in the context's
/// `section` map.
pub const SECTIONS: &[(&str, &str)] = &[
    ("overview", "Overview and owner"),
    ("objectives", "Recovery objectives"),
    ("backups", "Backup schedule and retention"),
    ("storage", "Encryption and location"),
    ("targets", "Targets"),
    ("procedures", "Recovery procedures"),
    ("verification", "Backup verification"),
    ("scenarios", "Disaster scenarios"),
    ("testing", "Testing schedule"),
    ("checklist", "Restoration validation checklist"),
    ("alerts", "Monitoring and alerts"),
    ("console", "Where to manage backups"),
    ("results", "Latest drill results"),
];

/// The heading of the table of contents.
pub const CONTENTS: &str = "Contents";

/// Everything `runbook.md.j2` needs. `as_of` is the moment the testing schedule's next
/// dates are computed from, and `as_of_source` says where it came from (printed beside it);
/// without one (no run recorded, no `--as-of`) no dates are printed, so the document does
/// not change with the clock.
pub fn context(
    runbook: &Runbook,
    records: &[DrillRecord],
    as_of: Option<DateTime<Utc>>,
    as_of_source: &str,
) -> Value {
    let mut headings = Headings::default();
    let title = headings.claim(&runbook.title);
    let contents = headings.claim(CONTENTS);
    let mut section = serde_json::Map::new();
    let mut sections = Vec::new();
    for (key, text) in SECTIONS {
        let text = headings.claim(text);
        section.insert((*key).into(), text.clone().into());
        sections.push(json!({ "key": key, "title": text }));
    }
    // Procedure headings first: the objectives and the scenarios link to them.
    let procedures: Vec<ProcedureDoc> = runbook
        .procedures
        .values()
        .map(|p| ProcedureDoc::new(runbook, p, &mut headings))
        .collect();
    let objectives = objectives(runbook, &procedures, &mut headings);
    let scenarios = scenarios(runbook, &procedures, &mut headings);
    let mut ctx = json!({
        "generated": {
            "source": runbook.path,
            "command": format!("drillbook render {}", runbook.path),
            "sha256": runbook.sha256.chars().take(12).collect::<String>(),
        },
        "runbook": {
            "name": runbook.name,
            "title": title,
            "owner": runbook.owner.as_deref().map(prose),
            "description": runbook.description.as_deref().map(prose),
            "path": runbook.path,
        },
        "contents": contents,
        "section": section,
        "sections": sections,
        "objectives": objectives,
        "backups": backups(runbook),
        "storage": storage(runbook),
        "targets": targets(runbook),
        "procedures": procedures.iter().map(|p| p.json.clone()).collect::<Vec<_>>(),
        "checks": checks(runbook),
        "scenarios": scenarios,
        "testing": testing(runbook, &procedures, as_of, as_of_source),
        "checklist": checklist(runbook),
        "alerts": alerts(runbook),
        "console": console(runbook),
        "results": results(runbook, &procedures, records),
    });
    mask_strings(&mut ctx);
    ctx
}

/// Heading texts already used, by anchor: a document with two headings that share an
/// anchor has a link that goes to the wrong place (and fails markdownlint's MD024).
#[derive(Default)]
struct Headings(BTreeSet<String>);

impl Headings {
    /// The heading to print for `text`: one line, as Markdown, without trailing punctuation
    /// (markdownlint's MD026), numbered when its anchor is taken.
    fn claim(&mut self, text: &str) -> String {
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
        while !self.0.insert(super::anchor(&candidate)) {
            candidate = format!("{base} ({n})");
            n += 1;
        }
        candidate
    }
}

// ---------------------------------------------------------------------------------------
// Text

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
fn md(text: &str) -> String {
    rewrite(text, true)
}

/// Markdown prose written in the runbook, printed as written, except that templates become
/// placeholders, bare URLs links and URL passwords `***`.
fn prose(text: &str) -> String {
    rewrite(text.trim(), false)
}

fn rewrite(text: &str, escape: bool) -> String {
    let text = mask_url_passwords(&text.replace('\t', "    "));
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_code: Option<usize> = None;
    let mut prev: Option<char> = None;
    let mut rest = text.as_str();
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            let n = rest.len() - rest.trim_start_matches('`').len();
            in_code = match in_code {
                None => Some(n),
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

/// A code span holding `text` (one line).
fn code(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

/// The body of a fenced code block: templates as placeholders, passwords masked, no tabs
/// and no trailing spaces.
fn code_block(text: &str) -> String {
    let text = mask_url_passwords(&text.replace('\t', "    "));
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
fn value_text(text: &str) -> String {
    match env_only(text) {
        Some(var) => format!("from the environment variable {}", code(var)),
        None => code(&mask_url_passwords(text.trim())),
    }
}

/// Where a secret (webhook URL, routing key, SMTP URL) comes from, never its value.
fn secret_source(text: &str) -> String {
    match env_only(text) {
        Some(var) => format!("from {}", code(var)),
        None if text.contains("{{") => "(built from a template)".into(),
        None => "(written in the runbook; not shown)".into(),
    }
}

/// A database a step uses: a target by name, or a connection string.
fn db_label(runbook: &Runbook, db: &str) -> String {
    if runbook.targets.contains_key(db.trim()) {
        format!("the target {}", code(db.trim()))
    } else {
        code(&mask_url_passwords(db.trim()))
    }
}

/// Breaks one paragraph of Markdown into lines of about `width` characters, at spaces
/// outside code spans, and never before a word that would start a block (`- `, `#`, `>`,
/// `1.`) on its line.
fn wrap(text: &str, width: usize) -> String {
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

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn human_ms(ms: u64) -> String {
    crate::duration::human(std::time::Duration::from_millis(ms))
}

fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn codes(items: &[String]) -> String {
    list(&items.iter().map(|s| code(s)).collect::<Vec<_>>())
}

/// A last line of defence: no string of the context carries a URL password.
fn mask_strings(value: &mut Value) {
    match value {
        Value::String(s) if s.contains("://") => *s = mask_url_passwords(s),
        Value::Array(items) => items.iter_mut().for_each(mask_strings),
        Value::Object(map) => map.values_mut().for_each(mask_strings),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Procedures

/// What a procedure restores, for the procedures table.
fn restores(p: &Procedure) -> &'static str {
    let mut point_in_time = false;
    let mut full = None;
    for step in &p.steps {
        match &step.kind {
            StepKind::NeonRestoreSnapshot(_) => full = Some("full restore from a snapshot"),
            StepKind::LocalRestore(r) if r.target.trim() == "latest" => {
                full = Some("full restore from a base backup and the WAL archive");
            }
            StepKind::LocalRestore(_) => point_in_time = true,
            StepKind::NeonCreateBranch(b) if b.at.is_some() => point_in_time = true,
            StepKind::NeonRestoreBranch(b) if b.at.is_some() => point_in_time = true,
            _ => {}
        }
    }
    match (full, point_in_time) {
        (Some(f), _) => f,
        (None, true) => "point-in-time restore",
        (None, false) => "no restore step",
    }
}

struct ProcedureDoc {
    id: String,
    heading: String,
    json: Value,
}

impl ProcedureDoc {
    fn new(runbook: &Runbook, p: &Procedure, headings: &mut Headings) -> ProcedureDoc {
        let heading = headings.claim(&p.title);
        let restores = restores(p);
        let kind = match p.kind {
            ProcedureKind::Drill => "drill",
            ProcedureKind::Recovery => "recovery",
        };
        let purpose = match (p.kind, restores) {
            (ProcedureKind::Drill, "no restore step") => {
                "A drill: it runs on scratch resources and never changes a protected target."
                    .to_owned()
            }
            (ProcedureKind::Drill, r) => format!(
                "A drill: it rehearses a {r} on scratch resources and never changes a \
                 protected target."
            ),
            (ProcedureKind::Recovery, "no restore step") => "A recovery for incidents.".into(),
            (ProcedureKind::Recovery, r) => format!("A recovery for incidents: {r}."),
        };
        let long = p.steps.len() + p.cleanup.len() >= 10;
        let steps: Vec<Value> = p
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| step_json(runbook, s, i + 1))
            .collect();
        let cleanup: Vec<Value> = p
            .cleanup
            .iter()
            .enumerate()
            .map(|(i, s)| step_json(runbook, s, i + 1))
            .collect();
        let validations: Vec<Value> = p
            .steps
            .iter()
            .filter_map(|s| {
                let checks = validation(runbook, &s.kind)?;
                Some(json!({
                    "id": s.id,
                    "title": prose(s.display_title()),
                    "kind": s.kind.name(),
                    "checks": md(&checks),
                    "line": wrap(&format!(
                        "**{}** ({}, {}): {}",
                        prose(s.display_title()),
                        code(&s.id),
                        s.kind.name(),
                        md(&checks)
                    ), 96),
                }))
            })
            .collect();
        let params: Vec<Value> = p
            .params
            .values()
            .map(|param| {
                let default = match (&param.default, param.secret) {
                    (None, _) => "required".to_owned(),
                    (Some(_), true) => code("***"),
                    (Some(v), false) => code(&param_text(v)),
                };
                json!({
                    "name": param.name,
                    "type": serde_json::to_value(param.ty).unwrap_or(Value::Null),
                    "default": md(&default),
                    "description": param.description.as_deref().map(prose).unwrap_or_else(|| "—".into()),
                    "secret": param.secret,
                })
            })
            .collect();
        let env: Vec<String> = p.env_vars().into_iter().collect();
        let json = json!({
            "id": p.id,
            "title": prose(&p.title),
            "heading": heading,
            "kind": kind,
            "restores": restores,
            "purpose": wrap(&purpose, 100),
            "description": p.description.as_deref().map(prose),
            "schedule": p.schedule.as_ref().map(|c| md(&schedule_text(c))),
            "run": md(&code(&format!("drillbook run {} {}", runbook.path, p.id))),
            "plan": md(&code(&format!("drillbook plan {} {}", runbook.path, p.id))),
            "env": (!env.is_empty()).then(|| md(&codes(&env))),
            // Continuation lines of a list item are indented past its marker ("10. ").
            "indent": if long { 4 } else { 3 },
            "pad": if long { "    " } else { "   " },
            "params_heading": headings.claim(&format!("Parameters of {}", p.id)),
            "params": params,
            "steps_heading": headings.claim(&format!("Steps of {}", p.id)),
            "steps": steps,
            "cleanup_heading": headings.claim(&format!("Cleanup of {}", p.id)),
            "cleanup": cleanup,
            "validations_heading": headings.claim(&format!("Validations of {}", p.id)),
            "validations": validations,
        });
        ProcedureDoc {
            id: p.id.clone(),
            heading,
            json,
        }
    }
}

fn param_text(v: &ParamValue) -> String {
    match v {
        ParamValue::String(s) => s.clone(),
        ParamValue::Int(n) => n.to_string(),
        ParamValue::Bool(b) => b.to_string(),
        ParamValue::Duration(d) => d.to_string(),
        ParamValue::Timestamp(t) => t.to_string(),
    }
}

fn schedule_text(cron: &crate::cron::Cron) -> String {
    let words = cron.describe();
    if words.starts_with("at cron") {
        words
    } else {
        format!("{words} (cron {})", code(cron.as_str()))
    }
}

fn step_json(runbook: &Runbook, step: &Step, number: usize) -> Value {
    let hand = by_hand(runbook, &step.kind);
    let does = match &step.kind {
        StepKind::Manual(_) => {
            "shows the operator the instructions below and waits for their confirmation".into()
        }
        StepKind::Shell(_) => {
            let summary = step.kind.summary();
            let command = summary.strip_prefix("sh -c ").unwrap_or(&summary);
            md(&format!("runs {} in a shell", code(command)))
        }
        StepKind::Sql(sql) => md(&format!(
            "runs {} on {}{}",
            code(&short(&sql.query)),
            db_label(runbook, &sql.db),
            if sql.write {
                " (it may write)"
            } else {
                " (read only)"
            }
        )),
        StepKind::Assert(a) if !has_sql(a) => md(&format!("checks that {}", code(&a_summary(a)))),
        kind => md(&kind.summary()),
    };
    let mut bullets = vec![format!("drillbook does: {does}")];
    if let Some(when) = &step.when {
        bullets.push(md(&format!("Runs only when {}", code(when))));
    }
    let mut limits = Vec::new();
    if let Some(t) = step.timeout {
        limits.push(format!("timeout {t}"));
    }
    if let Some(r) = step.retries {
        limits.push(format!(
            "up to {} attempts, {} apart at first (doubling)",
            r.attempts, r.backoff
        ));
    }
    match step.rto {
        Some(RtoMark::Start) => limits.push("starts the RTO clock".into()),
        Some(RtoMark::End) => limits.push("stops the RTO clock".into()),
        None => {}
    }
    if step.continue_on_error {
        limits.push("a failure is recorded but does not stop the procedure".into());
    }
    if !limits.is_empty() {
        bullets.push(md(&capitalized(&limits.join("; "))));
    }
    if step.destructive || step.kind.is_destructive() {
        bullets.push(
            "Destructive: drillbook asks for an explicit approval before it runs (`--yes` \
             gives it in advance), and refuses it against a protected target in a drill"
                .into(),
        );
    }
    // last: the code block or instructions that follow continue it
    bullets.push(format!("By hand: {}", md(&hand.text)));
    json!({
        "number": number,
        "id": step.id,
        "title": prose(step.display_title()),
        "kind": step.kind.name(),
        "description": step.description.as_deref().map(prose),
        "bullets": bullets.iter().map(|b| wrap(b, 92)).collect::<Vec<_>>(),
        "instructions": hand.instructions,
        "code": hand.code.map(|(lang, text)| json!({ "lang": lang, "text": text })),
    })
}

// ---------------------------------------------------------------------------------------
// By hand: what a person does instead of drillbook

struct ByHand {
    /// One line (composed: passed through `md` by the caller).
    text: String,
    /// Prose shown after the step's bullets (a manual step's instructions).
    instructions: Option<String>,
    /// A fenced code block: language and text.
    code: Option<(&'static str, String)>,
}

impl ByHand {
    fn line(text: String) -> ByHand {
        ByHand {
            text,
            instructions: None,
            code: None,
        }
    }

    fn with_code(text: String, lang: &'static str, body: &str) -> ByHand {
        ByHand {
            text,
            instructions: None,
            code: Some((lang, code_block(body))),
        }
    }
}

fn neon_project(runbook: &Runbook, target: &str) -> String {
    match runbook.targets.get(target).map(|t| &t.kind) {
        Some(TargetKind::Neon(n)) => n.project_id.clone(),
        _ => "<project>".into(),
    }
}

fn neon_branch(runbook: &Runbook, target: &str) -> Option<String> {
    match runbook.targets.get(target).map(|t| &t.kind) {
        Some(TargetKind::Neon(n)) => n.branch.clone(),
        _ => None,
    }
}

fn by_hand(runbook: &Runbook, kind: &StepKind) -> ByHand {
    use crate::steps::assert::{Assert, AssertSpec};
    use crate::steps::http::Http;
    use crate::steps::manual::Manual;
    use crate::steps::shell::Shell;
    use crate::steps::wait::Wait;

    let cli = |target: &str, args: String| {
        code(&format!(
            "neon {args} --project-id {}",
            neon_project(runbook, target)
        ))
    };
    match kind {
        StepKind::Shell(shell) => {
            let (command, env, dir) = match shell {
                Shell::Script(s) => (s.clone(), Vec::new(), None),
                Shell::Full(s) => (
                    s.run
                        .clone()
                        .unwrap_or_else(|| s.argv.as_deref().unwrap_or_default().join(" ")),
                    s.env
                        .iter()
                        .map(|(k, v)| {
                            let value = if is_secret_name(k) { "***" } else { &v.0 };
                            format!("export {k}=\"{value}\"")
                        })
                        .collect(),
                    s.dir.clone(),
                ),
            };
            let mut body = env.join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            body.push_str(&command);
            let place = dir.map(|d| format!(" in {}", code(&d))).unwrap_or_default();
            ByHand::with_code(format!("run this in a shell{place}:"), "sh", &body)
        }
        StepKind::Http(http) => {
            let (method, url) = match http {
                Http::Get(url) => ("GET".to_owned(), url.clone()),
                Http::Full(s) => (s.method.to_uppercase(), s.url.clone()),
            };
            ByHand::line(format!(
                "send the request with curl: {}",
                code(&format!("curl -X {method} '{url}'"))
            ))
        }
        StepKind::Manual(m) => {
            let (text, confirm) = match m {
                Manual::Text(t) => (t.as_str(), false),
                Manual::Full(s) => (s.instructions.as_str(), s.confirm),
            };
            ByHand {
                text: if confirm {
                    "follow these instructions, then confirm that they are done:".into()
                } else {
                    "follow these instructions:".into()
                },
                instructions: Some(prose(text)),
                code: None,
            }
        }
        StepKind::Wait(Wait::Fixed(d)) => ByHand::line(format!("wait {d}")),
        StepKind::Wait(Wait::Poll(p)) => {
            let inner = by_hand(runbook, &p.poll);
            let until = p
                .until
                .as_deref()
                .map(|u| format!(" until {}", code(u)))
                .unwrap_or_default();
            ByHand {
                text: format!(
                    "repeat every {}{until}, for at most {}: {}",
                    p.interval, p.deadline, inner.text
                ),
                ..inner
            }
        }
        StepKind::Assert(Assert::Full(AssertSpec {
            db: Some(db), sql, ..
        })) if !sql.is_empty() => {
            let body: Vec<String> = sql
                .iter()
                .map(|(name, q)| format!("-- {name}\n{};", q.trim().trim_end_matches(';')))
                .collect();
            ByHand::with_code(
                format!(
                    "run each query with psql on {}; none may return a row:",
                    db_label(runbook, db)
                ),
                "sql",
                &body.join("\n\n"),
            )
        }
        StepKind::Assert(a) => ByHand::line(format!("check that {}", code(&a_summary(a)))),
        StepKind::Sql(s) => {
            let params = if s.params.is_empty() {
                String::new()
            } else {
                let values: Vec<String> = s
                    .params
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let v = v.as_ref().map_or("NULL", |t| t.0.as_str());
                        code(&format!("${} = {v}", i + 1))
                    })
                    .collect();
                format!(" with {}", list(&values))
            };
            let expect = s
                .expect
                .as_ref()
                .map(|e| format!("; expect {}", expectation(e)))
                .unwrap_or_default();
            ByHand::with_code(
                format!(
                    "run the query with psql on {}{params}{expect}:",
                    db_label(runbook, &s.db)
                ),
                "sql",
                &s.query,
            )
        }
        StepKind::Freshness(f) => {
            let query = match (&f.sql, &f.table, &f.column) {
                (Some(q), _, _) => q.clone(),
                (None, Some(t), Some(c)) => format!("SELECT max({c}) FROM {t};"),
                _ => "SELECT max(<timestamp column>) FROM <table>;".into(),
            };
            let lag = f
                .max_lag
                .map(|l| format!(", and at most {l} before it"))
                .unwrap_or_default();
            ByHand::with_code(
                format!(
                    "run the query with psql on {}: the result must be at or before {}{lag}:",
                    db_label(runbook, &f.db),
                    f.target
                ),
                "sql",
                &query,
            )
        }
        StepKind::Compare(c) => {
            let mut how = Vec::new();
            if c.row_counts != RowCounts::Enabled(false) {
                how.push(format!("{} of each table", code("SELECT count(*)")));
            }
            if c.schema {
                how.push(format!(
                    "the output of {} (diffed)",
                    code("pg_dump --schema-only")
                ));
            }
            if c.checksums != Selection::Every(false) || c.samples != Samples::Rows(0) {
                how.push("rows fetched by primary key".into());
            }
            if how.is_empty() {
                how.push("the tables".into());
            }
            ByHand::line(format!(
                "with psql on {} and on {}, compare {}",
                db_label(runbook, &c.source),
                db_label(runbook, &c.restored),
                list(&how)
            ))
        }
        StepKind::LocalCluster(_) => ByHand::line(format!(
            "create a scratch cluster with {}, set {} and an {} that copies into an archive \
             directory, and start it with {}",
            code("initdb"),
            code("archive_mode = on"),
            code("archive_command"),
            code("pg_ctl")
        )),
        StepKind::LocalBaseBackup(b) => ByHand::line(format!(
            "{} from {}",
            code(&format!(
                "pg_basebackup -D {} -Fp -Xs -c fast",
                b.dir.as_deref().unwrap_or("<dir>")
            )),
            db_label(runbook, &b.db)
        )),
        StepKind::LocalRestorePoint(r) => ByHand::line(format!(
            "run {} with psql on {}",
            code(&format!("SELECT pg_create_restore_point('{}')", r.name)),
            db_label(runbook, &r.db)
        )),
        StepKind::LocalRestore(r) => {
            let target = if r.target.trim() == "latest" {
                "leave the recovery target unset (replay the whole archive)".to_owned()
            } else {
                format!(
                    "set {} and {}",
                    code(&format!("recovery_target_time = '{}'", r.target)),
                    code("recovery_target_action = 'promote'")
                )
            };
            ByHand::line(format!(
                "copy the base backup {} into an empty data directory, set {}, {target}, \
                 create {}, start the server with {} and wait until {} returns false",
                code(&r.base_backup),
                code(&format!("restore_command = 'cp {}/%f %p'", r.wal_archive)),
                code("recovery.signal"),
                code("pg_ctl"),
                code("SELECT pg_is_in_recovery()")
            ))
        }
        StepKind::LocalArchiver(a) => ByHand::line(format!(
            "run {} with psql on {}: {} stays 0 and {} is recent",
            code("SELECT * FROM pg_stat_archiver"),
            db_label(runbook, &a.db),
            code("failed_count"),
            code("last_archived_time")
        )),
        StepKind::LocalBackupAge(b) => ByHand::line(format!(
            "list {}: the newest base backup is younger than {}",
            code(&b.dir),
            b.max_age
        )),
        StepKind::NeonCreateBranch(b) => {
            let parent = b.from.clone().or_else(|| neon_branch(runbook, &b.target));
            let shown_parent = parent
                .as_deref()
                .map_or("the default branch".to_owned(), code);
            let name = b.name.as_deref().unwrap_or("recovery");
            let (console_point, cli_parent) = match (&b.at, &parent) {
                (Some(at), Some(p)) => (
                    format!("\"Specific point in time\" {at}"),
                    format!("{p}@{at}"),
                ),
                (Some(at), None) => (format!("\"Specific point in time\" {at}"), at.clone()),
                (None, Some(p)) => ("\"Current data\"".into(), p.clone()),
                (None, None) => ("\"Current data\"".into(), String::new()),
            };
            let parent_arg = if cli_parent.is_empty() {
                String::new()
            } else {
                format!(" --parent {cli_parent}")
            };
            let delete = if b.keep {
                ""
            } else {
                " Delete the branch when the drill is over."
            };
            ByHand::line(format!(
                "Neon Console: Branches → New branch → parent {shown_parent}, \
                 {console_point}, name {}. CLI: {}.{delete}",
                code(name),
                cli(
                    &b.target,
                    format!("branches create --name {name}{parent_arg}")
                )
            ))
        }
        StepKind::NeonRestoreBranch(r) => {
            let branch = r
                .branch
                .clone()
                .or_else(|| neon_branch(runbook, &r.target))
                .unwrap_or_else(|| "<branch>".into());
            let at = r.at.as_deref().unwrap_or("<time>");
            let source = r.from.as_deref().unwrap_or("^self");
            let keep = r
                .preserve_under_name
                .clone()
                .unwrap_or_else(|| format!("{branch}_before_restore"));
            ByHand::line(format!(
                "Neon Console: Branches → {} → Restore → From history, {at} (the current \
                 state is kept as a backup branch). CLI: {}",
                code(&branch),
                cli(
                    &r.target,
                    format!("branches restore {branch} {source}@{at} --preserve-under-name {keep}")
                )
            ))
        }
        StepKind::NeonDeleteBranch(d) => ByHand::line(format!(
            "Neon Console: Branches → {} → Delete. CLI: {}",
            code(&d.branch),
            cli(&d.target, format!("branches delete {}", d.branch))
        )),
        StepKind::NeonSetDefaultBranch(d) => ByHand::line(format!(
            "Neon Console: Branches → {} → Set as default. CLI: {}",
            code(&d.branch),
            cli(&d.target, format!("branches set-default {}", d.branch))
        )),
        StepKind::NeonConnectionUri(c) => {
            let branch = c
                .branch
                .clone()
                .or_else(|| neon_branch(runbook, &c.target))
                .unwrap_or_default();
            let mut args = format!("connection-string {branch}");
            if let Some(d) = &c.database {
                args.push_str(&format!(" --database-name {d}"));
            }
            if let Some(r) = &c.role {
                args.push_str(&format!(" --role-name {r}"));
            }
            if c.pooled {
                args.push_str(" --pooled");
            }
            ByHand::line(format!(
                "Neon Console: Branches → the branch → Connect. CLI: {}",
                cli(&c.target, args.replace("  ", " "))
            ))
        }
        StepKind::NeonCreateSnapshot(s) => {
            let branch = s
                .branch
                .clone()
                .or_else(|| neon_branch(runbook, &s.target))
                .unwrap_or_else(|| "<branch>".into());
            let mut args = format!("snapshots create --branch {branch}");
            if let Some(n) = &s.name {
                args.push_str(&format!(" --name {n}"));
            }
            if let Some(at) = &s.at {
                args.push_str(&format!(" --timestamp {at}"));
            }
            ByHand::line(format!(
                "Neon Console: Backup & restore → Create snapshot of {}. CLI: {}",
                code(&branch),
                cli(&s.target, args)
            ))
        }
        StepKind::NeonRestoreSnapshot(s) => {
            let mut args = format!("snapshots restore {}", s.snapshot);
            if let Some(n) = &s.name {
                args.push_str(&format!(" --name {n}"));
            }
            if let Some(into) = s.into.clone().or_else(|| neon_branch(runbook, &s.target)) {
                args.push_str(&format!(" --target-branch {into}"));
            }
            if s.finalize {
                args.push_str(" --finalize");
            }
            let which = if s.snapshot.trim() == "latest" {
                "the newest snapshot".to_owned()
            } else {
                format!("the snapshot {}", s.snapshot)
            };
            ByHand::line(format!(
                "Neon Console: Backup & restore → {which} → Restore; keep the current branch \
                 until the restored data is checked. CLI: {}",
                cli(&s.target, args)
            ))
        }
        StepKind::NeonFinalizeRestore(f) => {
            let mut args = format!("snapshots finalize {}", f.branch);
            if let Some(n) = &f.name {
                args.push_str(&format!(" --name {n}"));
            }
            ByHand::line(format!(
                "Neon Console: Branches → the restored branch → Finalize restore. CLI: {}",
                cli(&f.target, args)
            ))
        }
        StepKind::NeonDeleteSnapshot(d) => ByHand::line(format!(
            "Neon Console: Backup & restore → {} → Delete. CLI: {}",
            code(&d.snapshot),
            cli(&d.target, format!("snapshots delete {}", d.snapshot))
        )),
        StepKind::NeonSchemaDiff(d) => {
            let base = d
                .base
                .clone()
                .or_else(|| neon_branch(runbook, &d.target))
                .unwrap_or_else(|| "<base>".into());
            let branch = d.branch.clone().unwrap_or_else(|| base.clone());
            let compared = match &d.at {
                Some(at) => format!("{branch}@{at}"),
                None => branch.clone(),
            };
            ByHand::line(format!(
                "Neon Console: Branches → {} → Schema diff against {}. CLI: {}",
                code(&branch),
                code(&base),
                cli(&d.target, format!("branches schema-diff {base} {compared}"))
            ))
        }
        StepKind::NeonRetention(r) => ByHand::line(format!(
            "Neon Console: Settings → Instant restore: the restore window is at least {}",
            r.min
        )),
        StepKind::NeonBackupSchedule(b) => {
            let branch = b
                .branch
                .clone()
                .or_else(|| neon_branch(runbook, &b.target))
                .unwrap_or_else(|| "<branch>".into());
            ByHand::line(format!(
                "Neon Console: Backup & restore → the schedule of {} matches the backup \
                 policy. CLI: {}",
                code(&branch),
                cli(
                    &b.target,
                    format!("snapshots schedule get --branch {branch}")
                )
            ))
        }
        StepKind::NeonSnapshotAge(s) => ByHand::line(format!(
            "Neon Console: Backup & restore: the newest snapshot is younger than {}. CLI: {}",
            s.max,
            cli(&s.target, "snapshots list".into())
        )),
        StepKind::NeonProject(p) => ByHand::line(format!(
            "Neon Console: Settings → General (region, PostgreSQL version) and Settings → \
             Instant restore (restore window). CLI: {}",
            code(&format!(
                "neon projects get {}",
                neon_project(runbook, &p.target)
            ))
        )),
    }
}

/// An assert with SQL invariants (else it is expressions).
fn has_sql(a: &crate::steps::assert::Assert) -> bool {
    use crate::steps::assert::{Assert, AssertSpec};
    matches!(a, Assert::Full(AssertSpec { db: Some(_), sql, .. }) if !sql.is_empty())
}

fn a_summary(a: &crate::steps::assert::Assert) -> String {
    StepKind::Assert(a.clone()).summary()
}

fn comparison(c: &crate::steps::sql::Comparison) -> String {
    use crate::steps::sql::Comparison;
    match c {
        Comparison::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
        Comparison::Number(n) => n.to_string(),
        Comparison::Bool(b) => b.to_string(),
        Comparison::Text(t) => t.trim().to_owned(),
    }
}

fn is_operator(text: &str) -> bool {
    ["==", "!=", "<=", ">=", "<", ">"]
        .iter()
        .any(|op| text.starts_with(op))
}

fn expectation(e: &crate::steps::sql::Expect) -> String {
    let mut parts = Vec::new();
    if let Some(v) = &e.value {
        let v = comparison(v);
        parts.push(if is_operator(&v) {
            format!("a value {}", code(&v))
        } else {
            format!("the value {}", code(&v))
        });
    }
    if let Some(r) = &e.rows {
        let r = comparison(r);
        parts.push(if is_operator(&r) {
            format!("a row count {}", code(&r))
        } else {
            format!("{r} rows")
        });
    }
    if e.equals.is_some() {
        parts.push("exactly the rows listed in the runbook".into());
    }
    list(&parts)
}

// ---------------------------------------------------------------------------------------
// Validations

/// What a data-checking step verifies, in one composed line; None for other kinds.
fn validation(runbook: &Runbook, kind: &StepKind) -> Option<String> {
    use crate::steps::assert::{Assert, AssertSpec};
    Some(match kind {
        StepKind::Compare(c) => compare_checks(runbook, c).join("; "),
        StepKind::Freshness(f) => freshness_check(runbook, f),
        StepKind::Sql(s) => {
            let e = s.expect.as_ref()?;
            format!(
                "{} on {} returns {}",
                code(&short(&s.query)),
                db_label(runbook, &s.db),
                expectation(e)
            )
        }
        StepKind::Assert(Assert::Full(AssertSpec {
            db: Some(db), sql, ..
        })) if !sql.is_empty() => format!(
            "these invariants hold on {}: {}",
            db_label(runbook, db),
            list(&sql.keys().cloned().collect::<Vec<_>>())
        ),
        StepKind::Assert(a) => format!("{} holds", code(&a_summary(a))),
        StepKind::NeonSchemaDiff(d) => format!(
            "the schema of {} matches {}{}",
            code(d.branch.as_deref().unwrap_or(&d.target)),
            code(
                d.base
                    .as_deref()
                    .or(neon_branch(runbook, &d.target).as_deref())
                    .unwrap_or(&d.target)
            ),
            if d.allow_changes {
                " (differences are reported, not failed)"
            } else {
                ""
            }
        ),
        StepKind::NeonRetention(_)
        | StepKind::NeonBackupSchedule(_)
        | StepKind::NeonSnapshotAge(_)
        | StepKind::LocalArchiver(_)
        | StepKind::LocalBackupAge(_) => kind.summary(),
        _ => return None,
    })
}

fn short(query: &str) -> String {
    let q = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if q.chars().count() > 60 {
        format!("{}…", q.chars().take(60).collect::<String>())
    } else {
        q
    }
}

fn tables_text(c: &Compare) -> String {
    let mut text = match &c.tables {
        Tables::All => "every table".to_owned(),
        Tables::List(l) => format!("the tables {}", codes(l)),
    };
    if !c.exclude.is_empty() {
        text.push_str(&format!(" except {}", codes(&c.exclude)));
    }
    text
}

fn compare_checks(runbook: &Runbook, c: &Compare) -> Vec<String> {
    let source = db_label(runbook, &c.source);
    let mut checks = vec![format!(
        "compares {} of {} with {source}",
        tables_text(c),
        db_label(runbook, &c.restored)
    )];
    checks.extend(compare_items(runbook, c));
    checks
}

/// The comparison's checks as checklist sentences.
fn compare_items(runbook: &Runbook, c: &Compare) -> Vec<String> {
    let source = db_label(runbook, &c.source);
    let mut items = Vec::new();
    let tolerance = |rule: &crate::checks::compare::CountRule| match &rule.tolerance {
        Some(crate::checks::compare::Tolerance::Rows(n)) => format!(" within {n} rows"),
        Some(crate::checks::compare::Tolerance::Percent(p)) => format!(" within {p}"),
        None => String::new(),
    };
    match &c.row_counts {
        RowCounts::Enabled(false) => {}
        RowCounts::Enabled(true) => {
            items.push(format!("row counts of every table equal those of {source}"));
        }
        RowCounts::Rule(rule) => match rule.direction {
            Direction::Equal => items.push(format!(
                "row counts of every table equal those of {source}{}",
                tolerance(rule)
            )),
            Direction::RestoredLeSource => items.push(format!(
                "no restored table has more rows than in {source}{} (a restore to an earlier \
                 time may have fewer)",
                tolerance(rule)
            )),
        },
    }
    if c.schema {
        items.push(format!(
            "the schema matches {source}: columns, types, nullability, keys, indexes, \
             constraints and sequences"
        ));
    }
    match &c.checksums {
        Selection::Every(false) => {}
        Selection::Every(true) => {
            items.push(format!("content checksums of every table match {source}"));
        }
        Selection::Only(tables) => items.push(format!(
            "content checksums of {} match {source}",
            codes(tables)
        )),
    }
    match &c.samples {
        Samples::Rows(0) => {}
        Samples::Rows(n) => items.push(format!(
            "{n} sampled rows per table are identical to {source}"
        )),
        Samples::Rule(rule) => items.push(format!(
            "{} sampled rows of {} are identical to {source}",
            rule.rows,
            rule.tables
                .as_deref()
                .map_or("every table with a primary key".to_owned(), codes)
        )),
    }
    items
}

fn freshness_check(runbook: &Runbook, f: &crate::checks::freshness::Freshness) -> String {
    let of = match (&f.table, &f.column) {
        (Some(t), Some(c)) => format!("the newest {}", code(&format!("{t}.{c}"))),
        _ => "the timestamp the query returns".into(),
    };
    let lag = f
        .max_lag
        .map(|l| format!(" and at most {l} before it"))
        .unwrap_or_default();
    format!(
        "{of} on {} is at or before the recovery point {}{lag}",
        db_label(runbook, &f.db),
        f.target
    )
}

// ---------------------------------------------------------------------------------------
// Sections

fn objectives(runbook: &Runbook, procedures: &[ProcedureDoc], headings: &mut Headings) -> Value {
    let o = &runbook.objectives;
    let mut clocks = Vec::new();
    let mut rpo_steps = Vec::new();
    for (p, doc) in runbook.procedures.values().zip(procedures) {
        for s in &p.steps {
            if let StepKind::Freshness(f) = &s.kind {
                rpo_steps.push(wrap(
                    &format!(
                        "{} of [{}](#{}): {}",
                        md(&code(&s.id)),
                        md(&code(&p.id)),
                        super::anchor(&doc.heading),
                        md(&freshness_check(runbook, f))
                    ),
                    96,
                ));
            }
        }
        if p.steps.is_empty() {
            continue;
        }
        let marked_start = p.steps.iter().position(|s| s.rto == Some(RtoMark::Start));
        let marked_end = p.steps.iter().position(|s| s.rto == Some(RtoMark::End));
        let from = marked_start.unwrap_or(0);
        let to = marked_end.unwrap_or(p.steps.len() - 1).max(from);
        let window = &p.steps[from..=to];
        let mut total = std::time::Duration::ZERO;
        let mut unbounded = Vec::new();
        let steps: Vec<Value> = window
            .iter()
            .enumerate()
            .map(|(i, s)| {
                match s.timeout {
                    Some(t) => total += t.std(),
                    None => unbounded.push(s.id.clone()),
                }
                json!({
                    "number": from + i + 1,
                    "id": s.id,
                    "title": prose(s.display_title()),
                    "timeout": s.timeout.map_or("none".to_owned(), |t| t.to_string()),
                })
            })
            .collect();
        let how = match (marked_start, marked_end) {
            (Some(_), Some(_)) => "Both ends are marked in the runbook (`rto: start`, `rto: end`)",
            (Some(_), None) => {
                "The runbook marks the start (`rto: start`); the end is the last step"
            }
            (None, Some(_)) => {
                "The start is the first step; the runbook marks the end (`rto: end`)"
            }
            (None, None) => {
                "No step is marked with `rto:`, so the clock covers the whole procedure"
            }
        };
        let total_d = crate::duration::Duration(total);
        let mut sum = if total.is_zero() {
            "No step in the window has a timeout".to_owned()
        } else {
            format!("The timeouts of these steps add up to {total_d}")
        };
        if !unbounded.is_empty() && !total.is_zero() {
            sum.push_str(&format!(
                " (steps without a timeout: {})",
                codes(&unbounded)
            ));
        }
        match o.rto {
            Some(rto) if total > rto.std() => sum.push_str(&format!(
                ", more than the RTO of {rto}: a run that needs every timeout misses it"
            )),
            Some(rto) if unbounded.is_empty() => {
                sum.push_str(&format!(", within the RTO of {rto}"));
            }
            _ => {}
        }
        sum.push('.');
        clocks.push(json!({
            "heading": headings.claim(&format!("RTO clock of {}", p.id)),
            "procedure": p.id,
            "procedure_heading": doc.heading,
            "from": window.first().map(|s| s.id.clone()),
            "to": window.last().map(|s| s.id.clone()),
            "how": md(how),
            "steps": steps,
            "total": wrap(&md(&sum), 100),
        }));
    }
    json!({
        "rto": o.rto.map(|d| d.to_string()),
        "rpo": o.rpo.map(|d| d.to_string()),
        "clocks": clocks,
        "rpo_steps": rpo_steps,
    })
}

fn backups(runbook: &Runbook) -> Value {
    let Some(b) = &runbook.backup_policy else {
        return json!({ "declared": false });
    };
    let when = match crate::cron::Cron::parse(&b.schedule) {
        Ok(c) => schedule_text(&c),
        Err(_) => format!("at cron {} (UTC)", code(&b.schedule)),
    };
    let r = &b.retention;
    let retention: Vec<Value> = [
        ("Daily", r.daily, "days"),
        ("Weekly", r.weekly, "weeks"),
        ("Monthly", r.monthly, "months"),
    ]
    .into_iter()
    .map(|(generation, kept, unit)| {
        json!({
            "generation": generation,
            "kept": kept.map_or("not kept".to_owned(), |n| format!("{n} {unit}")),
        })
    })
    .collect();
    json!({
        "declared": true,
        "schedule": md(&when),
        "cron": b.schedule,
        "provider": b.provider.as_deref().map(prose),
        "retention": retention,
        "notes": b.notes.as_deref().map(prose),
    })
}

fn storage(runbook: &Runbook) -> Value {
    let b = runbook.backup_policy.as_ref();
    let field = |v: Option<&String>| v.map(|s| prose(s));
    json!({
        "encryption": field(b.and_then(|b| b.encryption.as_ref())),
        "location": field(b.and_then(|b| b.location.as_ref())),
        "provider": field(b.and_then(|b| b.provider.as_ref())),
    })
}

fn target_where(kind: &TargetKind) -> (&'static str, String) {
    match kind {
        TargetKind::Neon(n) => {
            let mut parts = vec![format!("project {}", value_text(&n.project_id))];
            parts.push(match &n.branch {
                Some(b) => format!("branch {}", value_text(b)),
                None => "the project's default branch".into(),
            });
            if let Some(d) = &n.database {
                parts.push(format!("database {}", value_text(d)));
            }
            if let Some(r) = &n.role {
                parts.push(format!("role {}", value_text(r)));
            }
            ("Neon", parts.join(", "))
        }
        TargetKind::Postgres(p) => ("PostgreSQL", format!("URL {}", value_text(&p.url))),
        TargetKind::Local(l) => {
            let mut parts = Vec::new();
            if let Some(b) = &l.base_backup {
                parts.push(format!("base backups {}", value_text(b)));
            }
            if let Some(w) = &l.wal_archive {
                parts.push(format!("WAL archive {}", value_text(w)));
            }
            if let Some(u) = &l.url {
                parts.push(format!("server URL {}", value_text(u)));
            }
            ("self-hosted backups", parts.join("; "))
        }
    }
}

fn targets(runbook: &Runbook) -> Vec<Value> {
    runbook
        .targets
        .values()
        .map(|t| {
            let (kind, place) = target_where(&t.kind);
            json!({
                "name": t.name,
                "kind": kind,
                "protected": if t.protected { "yes" } else { "no" },
                "where": md(&place),
                "description": t.description.as_deref().map_or("—".to_owned(), prose),
            })
        })
        .collect()
}

fn checks(runbook: &Runbook) -> Vec<Value> {
    runbook
        .checks
        .iter()
        .map(|c| {
            let threshold = |v: &Option<serde_yaml::Value>| {
                v.as_ref().map(|v| match v {
                    serde_yaml::Value::String(s) => code(s),
                    other => code(&serde_json::to_string(other).unwrap_or_default()),
                })
            };
            let thresholds = match (threshold(&c.warn), threshold(&c.critical)) {
                (None, None) => "fails as critical".to_owned(),
                (Some(w), None) => format!("warning at {w}"),
                (None, Some(cr)) => format!("critical at {cr}"),
                (Some(w), Some(cr)) => format!("warning at {w}, critical at {cr}"),
            };
            json!({
                "id": c.id,
                "title": prose(c.title.as_deref().unwrap_or(&c.id)),
                "verifies": md(&c.kind.summary()),
                "hand": wrap(
                    &format!("{}: {}", code(&c.id), md(&by_hand(runbook, &c.kind).text)),
                    96
                ),
                "thresholds": md(&thresholds),
            })
        })
        .collect()
}

fn scenarios(
    runbook: &Runbook,
    procedures: &[ProcedureDoc],
    headings: &mut Headings,
) -> Vec<Value> {
    runbook
        .scenarios
        .iter()
        .map(|s| {
            let answer = procedures.iter().find(|p| p.id == s.procedure);
            json!({
                "heading": headings.claim(&s.title),
                "procedure": s.procedure,
                "procedure_heading": answer.map(|p| p.heading.clone()),
                "notes": s.notes.as_deref().map(prose),
            })
        })
        .collect()
}

fn testing(
    runbook: &Runbook,
    procedures: &[ProcedureDoc],
    as_of: Option<DateTime<Utc>>,
    as_of_source: &str,
) -> Value {
    let mut scheduled = Vec::new();
    let mut unscheduled = Vec::new();
    for (p, doc) in runbook.procedures.values().zip(procedures) {
        let Some(cron) = &p.schedule else {
            unscheduled.push(p.id.clone());
            continue;
        };
        let mut next = Vec::new();
        if let Some(mut t) = as_of {
            for _ in 0..3 {
                t = cron.next_after(t);
                next.push(date(t));
            }
        }
        scheduled.push(json!({
            "procedure": p.id,
            "procedure_heading": doc.heading,
            "when": md(&cron.describe()),
            "cron": cron.as_str(),
            "next": next,
            // inside a code block: as written, not Markdown
            "crontab": format!("{} drillbook run {} {}", cron.as_str(), runbook.path, p.id),
        }));
    }
    json!({
        "as_of": as_of.map(crate::timestamp::rfc3339),
        "as_of_source": md(as_of_source),
        "scheduled": scheduled,
        "unscheduled": (!unscheduled.is_empty()).then(|| md(&codes(&unscheduled))),
    })
}

fn checklist(runbook: &Runbook) -> Vec<Value> {
    // item text -> the procedures it comes from, in first-seen order
    let mut items: IndexMap<String, Vec<String>> = IndexMap::new();
    let mut add = |text: String, procedure: &str| {
        let from = items.entry(text).or_default();
        if !from.iter().any(|p| p == procedure) {
            from.push(procedure.to_owned());
        }
    };
    let mut leaves_branches = false;
    let mut leaves_clusters = false;
    for p in runbook.procedures.values() {
        for s in &p.steps {
            match &s.kind {
                StepKind::Compare(c) => {
                    for item in compare_items(runbook, c) {
                        add(capitalized(&item), &p.id);
                    }
                }
                StepKind::Freshness(f) => add(capitalized(&freshness_check(runbook, f)), &p.id),
                StepKind::Sql(_) => {
                    if let Some(check) = validation(runbook, &s.kind) {
                        add(format!("{}: {check}", s.display_title()), &p.id);
                    }
                }
                StepKind::Assert(_) => {
                    if let Some(check) = validation(runbook, &s.kind) {
                        add(format!("{}: {check}", s.display_title()), &p.id);
                    }
                }
                StepKind::NeonSchemaDiff(_) => add(s.display_title().to_owned(), &p.id),
                StepKind::NeonCreateBranch(b) if !b.keep => leaves_branches = true,
                StepKind::NeonCreateSnapshot(b) if !b.keep => leaves_branches = true,
                StepKind::NeonRestoreSnapshot(b) if !b.keep && !b.finalize => {
                    leaves_branches = true;
                }
                StepKind::LocalCluster(_) | StepKind::LocalRestore(_) => leaves_clusters = true,
                _ => {}
            }
        }
    }
    let mut out: Vec<Value> = items
        .into_iter()
        .map(|(text, from)| json!({ "text": md(&format!("{text} ({})", codes(&from))) }))
        .collect();
    let o = &runbook.objectives;
    if let Some(rto) = o.rto {
        out.push(json!({ "text": md(&format!(
            "RTO under {rto}: from the step that starts the RTO clock to the one that stops it"
        )) }));
    }
    if let Some(rpo) = o.rpo {
        out.push(json!({ "text": md(&format!(
            "RPO under {rpo}: the newest restored data is at most {rpo} older than the \
             recovery point"
        )) }));
    }
    let mut cleanup = Vec::new();
    if leaves_branches {
        cleanup.push(
            "no drill branch or snapshot is left in the Neon project (Branches, Backup & restore)",
        );
    }
    if leaves_clusters {
        cleanup.push("no scratch PostgreSQL instance is left running or on disk");
    }
    if runbook.procedures.values().any(|p| !p.cleanup.is_empty()) {
        cleanup.push("every cleanup step passed");
    }
    if !cleanup.is_empty() {
        out.push(json!({ "text": md(&format!("Cleanup done: {}", cleanup.join("; "))) }));
    }
    out.push(json!({ "text": md(&format!(
        "The run is recorded in the drill history ({})",
        code("drillbook history list")
    )) }));
    for item in &mut out {
        if let Some(Value::String(text)) = item.get_mut("text") {
            *text = wrap(text, 92);
        }
    }
    out
}

fn alerts(runbook: &Runbook) -> Vec<Value> {
    runbook
        .alerts
        .iter()
        .map(|a| {
            let destination = match &a.kind {
                AlertKind::Slack(s) => {
                    format!("Slack incoming webhook {}", secret_source(&s.webhook))
                }
                AlertKind::Webhook(w) => {
                    let mut text = format!("JSON webhook, URL {}", secret_source(&w.url));
                    if !w.headers.is_empty() {
                        let names: Vec<String> = w.headers.keys().cloned().collect();
                        text.push_str(&format!(", headers {}", codes(&names)));
                    }
                    text
                }
                AlertKind::Betterstack(b) => {
                    format!(
                        "Better Stack heartbeat, URL {}",
                        secret_source(&b.heartbeat)
                    )
                }
                AlertKind::Pagerduty(p) => format!(
                    "PagerDuty Events v2, routing key {}",
                    secret_source(&p.routing_key)
                ),
                AlertKind::Email(e) => format!(
                    "email from {} to {}, SMTP server {}",
                    code(&e.from),
                    codes(&e.to),
                    secret_source(&e.smtp)
                ),
            };
            let events: Vec<&str> =
                a.on.iter()
                    .map(|e| match e {
                        AlertEvent::Failure => "failure",
                        AlertEvent::Success => "success",
                        AlertEvent::Warning => "warning",
                        AlertEvent::Recovered => "recovered",
                    })
                    .collect();
            json!({
                "destination": md(&destination),
                "events": events.join(", "),
                "repeat": a.repeat.map_or("no".to_owned(), |d| format!("every {d}")),
            })
        })
        .collect()
}

fn console(runbook: &Runbook) -> Vec<Value> {
    runbook
        .targets
        .values()
        .map(|t| {
            let (kind, place) = target_where(&t.kind);
            let items: Vec<String> = match &t.kind {
                TargetKind::Neon(n) => {
                    let branch = n
                        .branch
                        .as_deref()
                        .map_or("the default branch".into(), code);
                    vec![
                        "Restore window (how far back point-in-time restore reaches): Neon \
                         Console → Project → Settings → Instant restore"
                            .into(),
                        format!(
                            "Snapshots and the backup schedule of {branch}: Project → Backup \
                             & restore"
                        ),
                        "Branches (recovery branches, leftover drill branches, the backup \
                         branches in-place restores keep): Project → Branches"
                            .into(),
                        format!(
                            "Restore {branch} in place: Project → Branches → {branch} → Restore"
                        ),
                        format!(
                            "The project id ({}): Project → Settings → General",
                            value_text(&n.project_id)
                        ),
                    ]
                }
                TargetKind::Postgres(p) => vec![
                    format!("The server: URL {}", value_text(&p.url)),
                    format!(
                        "WAL archiving status: {} on the server",
                        code("SELECT * FROM pg_stat_archiver")
                    ),
                ],
                TargetKind::Local(l) => {
                    let mut v = Vec::new();
                    if let Some(b) = &l.base_backup {
                        v.push(format!("Base backups: {}", value_text(b)));
                    }
                    if let Some(w) = &l.wal_archive {
                        v.push(format!("WAL archive: {}", value_text(w)));
                    }
                    if let Some(u) = &l.url {
                        v.push(format!("The server backed up: URL {}", value_text(u)));
                    }
                    v
                }
            };
            json!({
                "name": t.name,
                "kind": kind,
                "lead": wrap(&md(&format!("Target {} ({kind}, {place}):", code(&t.name))), 100),
                "items": items.iter().map(|i| wrap(&md(i), 96)).collect::<Vec<_>>(),
            })
        })
        .filter(|t| t["items"].as_array().is_some_and(|i| !i.is_empty()))
        .collect()
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "passed",
        Verdict::Failed => "failed",
        Verdict::Error => "could not run",
        Verdict::Interrupted => "interrupted",
    }
}

fn results(runbook: &Runbook, procedures: &[ProcedureDoc], records: &[DrillRecord]) -> Value {
    let mut mine: Vec<&DrillRecord> = records
        .iter()
        .filter(|r| r.runbook.name == runbook.name && !r.dry_run)
        .collect();
    mine.sort_by_key(|r| r.started_at);
    // Procedures in runbook order, then any that the runbook no longer has.
    let mut ids: Vec<String> = procedures.iter().map(|p| p.id.clone()).collect();
    for r in &mine {
        if !ids.contains(&r.procedure.id) {
            ids.push(r.procedure.id.clone());
        }
    }
    let mut rows = Vec::new();
    let mut trends = Vec::new();
    for id in ids {
        let runs: Vec<&DrillRecord> = mine
            .iter()
            .copied()
            .filter(|r| r.procedure.id == id)
            .collect();
        let Some(last) = runs.last() else {
            continue;
        };
        let link = match procedures.iter().find(|p| p.id == id) {
            Some(p) => format!("[{}](#{})", code(&id), super::anchor(&p.heading)),
            None => format!("{} (no longer in the runbook)", code(&id)),
        };
        let pass = runs.iter().rev().find(|r| r.verdict == Verdict::Passed);
        let mut last_verdict = verdict(last.verdict).to_owned();
        if let Some(reason) = &last.reason {
            last_verdict.push_str(&format!(": {}", short_reason(reason)));
        }
        let rto = pass.and_then(|r| r.rto.as_ref());
        let rpo = pass.and_then(|r| r.rpo.as_ref());
        let objective = |o: Option<crate::duration::Duration>| {
            o.map_or(String::new(), |o| format!(" (objective {o})"))
        };
        rows.push(json!({
            "procedure": link,
            "runs": runs.len(),
            "last_run": date(last.finished_at),
            "verdict": md(&last_verdict),
            "last_pass": pass.map_or("never".to_owned(), |r| date(r.finished_at)),
            "rto": match rto {
                Some(r) => match r.measured_ms {
                    Some(ms) => format!("{}{}", human_ms(ms), objective(r.objective)),
                    None => "not measured".into(),
                },
                None => "—".into(),
            },
            "rpo": match rpo {
                Some(r) => match r.data_loss_window_ms {
                    Some(ms) => format!("{}{}", human_ms(ms), objective(r.objective)),
                    None => "not measured".into(),
                },
                None => "—".into(),
            },
        }));
        if runs.len() >= 2 {
            let recent = &runs[runs.len().saturating_sub(5)..];
            let steps: Vec<String> = recent
                .iter()
                .map(|r| {
                    let rto = r
                        .rto
                        .as_ref()
                        .and_then(|x| x.measured_ms)
                        .map(|ms| format!(" in {}", human_ms(ms)))
                        .unwrap_or_default();
                    format!(
                        "{} {}{rto}",
                        r.started_at.format("%Y-%m-%d"),
                        verdict(r.verdict)
                    )
                })
                .collect();
            let passed = recent
                .iter()
                .filter(|r| r.verdict == Verdict::Passed)
                .count();
            trends.push(wrap(
                &md(&format!(
                    "{}: {passed} of the last {} runs passed (oldest first: {})",
                    code(&id),
                    recent.len(),
                    steps.join(" → ")
                )),
                96,
            ));
        }
    }
    let history = code(crate::history::DEFAULT_PATH);
    json!({
        "history": md(&history),
        "none": md(&format!("No drill has been recorded yet in {history}.")),
        "count": mine.len(),
        "rows": rows,
        "trends": trends,
    })
}

fn short_reason(reason: &str) -> String {
    let r = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    if r.chars().count() > 120 {
        format!("{}…", r.chars().take(120).collect::<String>())
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Renderer;

    const RUNBOOKS: &[&str] = &[
        "runbooks/neon-production.yaml",
        "runbooks/local-pitr-drill.yaml",
        "runbooks/hello.yaml",
        "runbooks/postgres-pitr-drill.yaml",
    ];

    fn load(path: &str) -> Runbook {
        let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
        let source = std::fs::read_to_string(&full).expect("shipped runbook is readable");
        crate::runbook::load_str(path, &source).expect("shipped runbook is valid")
    }

    fn as_of() -> DateTime<Utc> {
        "2026-11-30T12:00:00Z".parse().expect("valid timestamp")
    }

    fn render(runbook: &Runbook, records: &[DrillRecord]) -> String {
        let ctx = context(runbook, records, Some(as_of()), "test clock");
        Renderer::new(None)
            .expect("templates compile")
            .render("runbook.md.j2", &ctx)
            .expect("runbook.md.j2 renders")
    }

    fn headings(doc: &str) -> Vec<(usize, String)> {
        let mut fenced = false;
        doc.lines()
            .filter_map(|line| {
                if line.trim_start().starts_with("```") {
                    fenced = !fenced;
                }
                let level = line.len() - line.trim_start_matches('#').len();
                (!fenced && level > 0 && line[level..].starts_with(' '))
                    .then(|| (level, line[level + 1..].to_owned()))
            })
            .collect()
    }

    #[test]
    fn every_shipped_runbook_renders_a_well_formed_document() {
        for path in RUNBOOKS {
            let runbook = load(path);
            let doc = render(&runbook, &[]);
            let hs = headings(&doc);
            assert!(doc.starts_with(&format!("# {}\n", runbook.title)), "{path}");
            assert_eq!(
                hs.iter().filter(|(l, _)| *l == 1).count(),
                1,
                "{path}: one H1"
            );
            for (_, title) in SECTIONS {
                assert!(
                    hs.contains(&(2, (*title).to_owned())),
                    "{path}: no section {title}"
                );
            }
            let mut seen = BTreeSet::new();
            for (_, text) in &hs {
                assert!(
                    seen.insert(text.clone()),
                    "{path}: heading `{text}` repeats"
                );
            }
            for pair in hs.windows(2) {
                assert!(
                    pair[1].0 <= pair[0].0 + 1,
                    "{path}: skipped level at {}",
                    pair[1].1
                );
            }
            let anchors: BTreeSet<String> =
                hs.iter().map(|(_, t)| crate::render::anchor(t)).collect();
            for link in doc.split("](#").skip(1) {
                let target = &link[..link.find(')').expect("closed link")];
                assert!(
                    anchors.contains(target),
                    "{path}: link to missing #{target}"
                );
            }
            assert!(
                doc.ends_with('\n') && !doc.ends_with("\n\n"),
                "{path}: final newline"
            );
            assert!(!doc.contains("\n\n\n"), "{path}: consecutive blank lines");
            assert!(
                doc.lines().all(|l| l == l.trim_end()),
                "{path}: trailing spaces"
            );
            assert!(doc.contains("No drill has been recorded yet in"), "{path}");
            assert!(
                !doc.contains("{{"),
                "{path}: a template was printed as written"
            );
            let problems = crate::render::lint::problems(&doc);
            assert!(problems.is_empty(), "{path}: {problems:#?}");
        }
    }

    #[test]
    fn neon_document_names_environment_variables_and_never_reads_them() {
        let doc = render(&load("runbooks/neon-production.yaml"), &[]);
        assert!(doc.contains("from the environment variable `NEON_PROJECT_ID`"));
        assert!(doc.contains("Slack incoming webhook from `SLACK_WEBHOOK_URL`"));
        assert!(doc.contains("--project-id $NEON_PROJECT_ID"));
        assert!(doc.contains("Settings → Instant restore"));
        assert!(doc.contains("- [ ] RTO under 1h"));
        // the drill's next dates, from the as-of time
        assert!(doc.contains("2026-12-01 09:00 UTC, 2027-01-01 09:00 UTC, 2027-02-01 09:00 UTC"));
        assert!(doc.contains("computed from 2026-11-30T12:00:00Z (test clock)"));
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        let yaml = r#"
version: 1
name: pw
title: Passwords
objectives: { rto: 1h }
targets:
  db:
    postgres: { url: "postgres://app:hunter2@db.internal/shop" }
procedures:
  drill:
    title: Drill
    kind: drill
    steps:
      - id: q
        sql: { db: "postgres://app:hunter2@db.internal/shop", query: "select 1", expect: { value: 1 } }
"#;
        let runbook = crate::runbook::load_str("pw.yaml", yaml).expect("valid runbook");
        let doc = render(&runbook, &[]);
        assert!(!doc.contains("hunter2"), "{doc}");
        assert!(doc.contains("postgres://app:***@db.internal/shop"));
    }

    #[test]
    fn latest_results_come_from_the_records() {
        let runbook = load("runbooks/hello.yaml");
        let record = |id: &str, day: u32, verdict: Verdict, ms: u64| -> DrillRecord {
            let started: DateTime<Utc> = format!("2026-11-{day:02}T09:00:00Z")
                .parse()
                .expect("valid timestamp");
            serde_json::from_value(json!({
                "record_version": 1, "id": id,
                "runbook": { "name": "hello", "path": "runbooks/hello.yaml", "sha256": "x" },
                "procedure": { "id": "smoke", "title": "Smoke", "kind": "drill" },
                "params": {}, "operator": "t", "tool_version": "0",
                "started_at": started, "finished_at": started + chrono::Duration::milliseconds(ms as i64),
                "duration_ms": ms, "dry_run": false, "verdict": verdict,
                "steps": [], "cleanup": [],
                "rto": { "measured_ms": ms, "objective": "5m", "met": true, "from_step": "scratch", "to_step": "validate" },
                "approvals": []
            }))
            .expect("a record")
        };
        let records = [
            record("a", 1, Verdict::Passed, 1200),
            record("b", 2, Verdict::Failed, 900),
        ];
        let doc = render(&runbook, &records);
        assert!(!doc.contains("No drill has been recorded yet"));
        assert!(doc.contains("| 2 | 2026-11-02 09:00 UTC | failed | 2026-11-01 09:00 UTC | 1.2s (objective 5m) |"), "{doc}");
        assert!(doc.contains("1 of the last 2 runs passed"));
    }

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
