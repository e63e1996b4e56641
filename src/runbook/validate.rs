//! Document -> [`Runbook`], collecting every problem with its place. Structure first (fields,
//! types, ids, kinds), then meaning (references, RTO marks, destructive steps against
//! protected targets). Nothing here stops at the first error.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use indexmap::IndexMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::decode::{backticked, check_id, describe, too_long, MapReader, Sink, MAX_ID};
use super::load::Document;
use super::raw::{
    self, Alert, AlertEvent, AlertKind, ParamType, ProcedureKind, Retries, TargetKind,
};
use super::refs::{self, Form, Reads, Scope};
use super::{Check, Param, ParamValue, Procedure, RtoMark, Runbook, Step, Target, Threshold};
use crate::cron::Cron;
use crate::diagnostic::YamlPath;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::duration::Duration;
use crate::kind::{limits, Form as StepForm, Invalid, StepKind};

pub const RUNBOOK_FIELDS: &[&str] = &[
    "version",
    "name",
    "title",
    "owner",
    "description",
    "objectives",
    "targets",
    "backup_policy",
    "secrets",
    "checks",
    "procedures",
    "scenarios",
    "alerts",
];
pub const PROCEDURE_FIELDS: &[&str] = &[
    "title",
    "description",
    "kind",
    "schedule",
    "params",
    "steps",
    "cleanup",
];
pub const PARAM_FIELDS: &[&str] = &["type", "default", "description", "secret"];
pub const STEP_FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "when",
    "timeout",
    "retries",
    "continue_on_error",
    "rto",
    "destructive",
];
pub const TARGET_FIELDS: &[&str] = &["protected", "description"];
pub const TARGET_KINDS: &[&str] = &["postgres", "neon", "local"];
pub const CHECK_FIELDS: &[&str] = &["id", "title", "warn", "critical", "timeout"];
pub const ALERT_FIELDS: &[&str] = &["on", "repeat"];
pub const ALERT_KINDS: &[&str] = &["slack", "webhook", "betterstack", "pagerduty", "email"];

/// The runbook could not be loaded: every problem found, ready to print.
#[derive(Debug)]
pub struct LoadError {
    pub path: String,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            f.write_str(&d.render(&self.path, &self.source))?;
        }
        let n = self.diagnostics.iter().filter(|d| d.is_error()).count();
        write!(
            f,
            "{}: {n} error{}",
            self.path,
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for LoadError {}

pub fn load_file(path: &str) -> Result<Runbook, LoadError> {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(source) => load_str(path, &source),
            Err(e) => Err(single(
                path,
                format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )),
        },
        Err(e) => Err(single(path, format!("cannot read runbook: {e}"))),
    }
}

/// `source` without a leading UTF-8 byte order mark.
pub fn without_bom(source: &str) -> &str {
    source.strip_prefix('\u{feff}').unwrap_or(source)
}

fn single(path: &str, message: String) -> LoadError {
    LoadError {
        path: path.to_owned(),
        source: String::new(),
        diagnostics: vec![Diagnostic::error(None, message)],
    }
}

pub fn load_str(path: &str, file: &str) -> Result<Runbook, LoadError> {
    // the byte order mark some Windows editors write is not part of the YAML: lines and
    // columns count from the first character after it, as editors show them
    let source = without_bom(file);
    let fail = |diagnostics| LoadError {
        path: path.to_owned(),
        source: source.to_owned(),
        diagnostics,
    };
    let doc = Document::parse(path, source).map_err(fail)?;
    let mut sink = Sink::new(&doc);
    let runbook = read_runbook(&mut sink);
    let (errors, warnings): (Vec<_>, Vec<_>) =
        sink.diags.into_iter().partition(Diagnostic::is_error);
    match runbook {
        Some(mut rb) if errors.is_empty() => {
            rb.warnings = warnings;
            // the fingerprint is of the file as it is, a byte order mark included
            rb.sha256 = crate::hex::encode(&Sha256::digest(file.as_bytes()));
            Ok(rb)
        }
        _ => {
            let mut all = errors;
            all.extend(warnings);
            all.sort_by_key(|d| d.span);
            Err(fail(all))
        }
    }
}

fn read_runbook(sink: &mut Sink<'_>) -> Option<Runbook> {
    let doc = sink.doc;
    let root = YamlPath::default();
    if doc.value.is_null() {
        sink.push(Diagnostic::error(
            None,
            "empty runbook: expected a mapping with `version: 1`, `name` and `procedures`",
        ));
        return None;
    }
    let r = MapReader::new(sink, &doc.value, root.clone(), "a runbook", RUNBOOK_FIELDS);
    if !r.is_valid() {
        return None;
    }
    let version: Option<u32> = r.required(sink, "version");
    if let Some(v) = version.filter(|v| *v != 1) {
        sink.at_value(
            &root.key("version"),
            format!("unsupported runbook version {v}: this drillbook reads version 1"),
        );
    }
    let name: Option<String> = r.required(sink, "name");
    if let Some(n) = &name {
        if let Some(msg) = check_id(
            n,
            is_slug_char,
            "runbook name",
            "use lowercase letters, digits and `-`",
        ) {
            sink.at_value(&root.key("name"), msg);
        }
    }
    let title: Option<String> = r.optional(sink, "title");
    let owner = r.optional(sink, "owner");
    let description = r.optional(sink, "description");
    let objectives = r.optional(sink, "objectives").unwrap_or_default();
    let targets = read_targets(sink, r.get("targets"), &root.key("targets"));
    let backup_policy: Option<raw::BackupPolicy> = r.optional(sink, "backup_policy");
    if let Some(p) = &backup_policy {
        let at = root.key("backup_policy");
        parse_cron(sink, &at.key("schedule"), &p.schedule);
        let barman = p.provider == Some(raw::Provider::Barman);
        let pgbackrest = p.provider == Some(raw::Provider::Pgbackrest);
        if barman && p.server.is_none() {
            sink.at_key(
                &at.key("provider"),
                "`provider: barman` needs `server`: the Barman server that backs the database up",
            );
        }
        if !barman && p.server.is_some() {
            sink.at_key(
                &at.key("server"),
                "`server` names a Barman server: set `provider: barman`",
            );
        }
        if p.stanza.is_some() && !pgbackrest {
            sink.at_key(
                &at.key("stanza"),
                "`stanza` is pgBackRest's: set `provider: pgbackrest`",
            );
        }
        if p.config.is_some() && !pgbackrest && !barman {
            sink.at_key(
                &at.key("config"),
                "`config` is a backup tool's configuration file: set `provider: pgbackrest` or `provider: barman`",
            );
        }
    }
    let secrets: Vec<String> = r.optional(sink, "secrets").unwrap_or_default();
    for (i, name) in secrets.iter().enumerate() {
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            sink.at_value(
                &root.key("secrets").index(i),
                format!("`{name}` is not an environment variable name: letters, digits and `_`"),
            );
        }
    }
    let procedures = read_procedures(sink, r.get("procedures"), &root.key("procedures"), &targets);
    let checks = read_checks(sink, r.get("checks"), &root.key("checks"), &targets);
    let scenarios: Vec<raw::Scenario> = r.optional(sink, "scenarios").unwrap_or_default();
    // every procedure the runbook declares, read or not: one with an error of its own is
    // still there for a scenario to name
    let declared: Vec<String> = match r.get("procedures") {
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    for (i, s) in scenarios.iter().enumerate() {
        if !declared.contains(&s.procedure) {
            sink.at_value(
                &root.key("scenarios").index(i).key("procedure"),
                format!("no procedure `{}`", s.procedure),
            )
            .help = did_you_mean(&s.procedure, declared.iter().map(String::as_str))
                .map(|b| format!("did you mean `{b}`?"));
        }
    }
    let alerts = read_alerts(sink, r.get("alerts"), &root.key("alerts"));
    r.finish(sink, "the runbook");

    Some(Runbook {
        path: doc.path.clone(),
        // set by `load_str`, from the file's bytes
        sha256: String::new(),
        title: title.or_else(|| name.clone()).unwrap_or_default(),
        name: name?,
        owner,
        description,
        objectives,
        targets,
        backup_policy,
        secrets,
        checks,
        procedures,
        scenarios,
        alerts,
        warnings: Vec::new(),
    })
}

fn is_slug_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

fn parse_cron(sink: &mut Sink<'_>, path: &YamlPath, text: &str) -> Option<Cron> {
    match Cron::parse(text) {
        Ok(c) => Some(c),
        Err(e) => {
            let col = text[..e.offset.min(text.len())].chars().count() + 1;
            let span = sink.doc.span_in_string(path, 1, col, e.len.max(1));
            sink.push(Diagnostic::error(span, format!("invalid cron schedule `{text}`: {}", e.message)).with_help(
                "five fields in UTC: minute hour day-of-month month day-of-week, e.g. `0 9 1 * *`",
            ));
            None
        }
    }
}

/// Entries of a mapping in order, reporting a non-mapping. Keys are strings.
fn entries<'v>(
    sink: &mut Sink<'_>,
    value: Option<&'v Value>,
    path: &YamlPath,
    what: &str,
) -> Vec<(String, &'v Value)> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Some(other) => {
            sink.at_value(
                path,
                format!("{what} must be a mapping, found {}", describe(other)),
            );
            Vec::new()
        }
    }
}

fn items<'v>(
    sink: &mut Sink<'_>,
    value: Option<&'v Value>,
    path: &YamlPath,
    what: &str,
) -> &'v [Value] {
    match value {
        None | Some(Value::Null) => &[],
        Some(Value::Array(s)) => s,
        Some(other) => {
            sink.at_value(
                path,
                format!("{what} must be a list, found {}", describe(other)),
            );
            &[]
        }
    }
}

/// `{name: payload}`: the form a kind is decoded from.
fn tagged(name: &str, payload: Value) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(name.to_owned(), payload);
    Value::Object(m)
}

/// Finds the one kind key of a mapping among `kinds`; the other keys are `common`.
fn kind_key(
    sink: &mut Sink<'_>,
    r: &mut MapReader<'_>,
    kinds: &[&'static str],
    what: &str,
) -> Option<(&'static str, Value)> {
    let mut found: Option<(&'static str, Value)> = None;
    let mut misspelt = false;
    for (key, value) in r.unknown_keys() {
        let path = r.path.key(&key);
        if let Some(kind) = kinds.iter().find(|k| **k == key) {
            r.claim(&key);
            match &found {
                Some((first, _)) => {
                    sink.at_key(
                        &path,
                        format!("{what} has more than one kind: `{first}` and `{key}`"),
                    )
                    .help = Some(format!("split it into two {what}s"));
                }
                None => found = Some((kind, value.clone())),
            }
            continue;
        }
        // an unknown key is a misspelt field when it is close to one, else a misspelt kind
        r.claim(&key);
        misspelt = true;
        let field_hint = did_you_mean(&key, r.known());
        let d = match field_hint {
            Some(best) => Diagnostic::error(
                None,
                format!(
                    "unknown field `{key}` in {} {what}",
                    if what.starts_with('a') { "an" } else { "a" }
                ),
            )
            .with_help(format!("did you mean `{best}`?")),
            None => Diagnostic::error(None, format!("unknown {what} kind `{key}`"))
                .suggest(&key, kinds.iter().copied()),
        };
        let d = if d.help.is_none() {
            d.with_help(format!("{what} kinds: {}", backticked(kinds)))
        } else {
            d
        };
        sink.push(Diagnostic {
            span: sink.doc.key_span(&path),
            ..d
        });
    }
    if found.is_none() && r.is_valid() && !misspelt {
        sink.at_value(&r.path, format!("{what} has no kind")).help =
            Some(format!("add one of {}", backticked(kinds)));
    }
    found
}

fn read_targets(
    sink: &mut Sink<'_>,
    value: Option<&Value>,
    path: &YamlPath,
) -> IndexMap<String, Target> {
    let mut out = IndexMap::new();
    for (name, v) in entries(sink, value, path, "targets") {
        let p = path.key(&name);
        if let Some(msg) = check_id(
            &name,
            is_ident_char,
            "target name",
            "use lowercase letters, digits, `_` and `-`",
        ) {
            sink.at_key(&p, msg);
        }
        let mut r = MapReader::new(sink, v, p.clone(), "a target", TARGET_FIELDS);
        let protected = r.optional(sink, "protected").unwrap_or(false);
        let description = r.optional(sink, "description");
        let mut env = BTreeSet::new();
        let kind = kind_key(sink, &mut r, TARGET_KINDS, "target").and_then(|(k, payload)| {
            let kind: Option<TargetKind> = sink.decode(&tagged(k, payload.clone()), &p);
            env = check_strings(sink, &payload, &p.key(k), &Scope::default()).env;
            kind
        });
        r.finish(sink, "a target");
        if let Some(kind) = kind {
            out.insert(
                name.clone(),
                Target {
                    name,
                    kind,
                    protected,
                    description,
                    env,
                },
            );
        }
    }
    out
}

/// Template-checks every string of a step payload by its form: templates and expressions
/// are checked against the scope; literal fields holding template syntax are reported.
fn check_payload(
    sink: &mut Sink<'_>,
    payload: &Value,
    path: &YamlPath,
    kind: &str,
    scope: &Scope<'_>,
) -> Reads {
    let mut reads = Reads::default();
    let _ = crate::kind::map_strings::<()>(kind, payload, path, &mut |p, text, form| {
        match form {
            StepForm::Literal if crate::template::is_template(text) => {
                let shown = p.to_string();
                let field = shown
                    .rsplit_once(&format!(".{kind}"))
                    .map_or_else(|| kind.to_owned(), |(_, rest)| format!("{kind}{rest}"));
                sink.at_value(p, format!("templates are not expanded in `{field}`"))
                    .help = StepKind::info(kind).map(|i| i.literal_help.to_owned());
            }
            StepForm::Literal => {}
            // only `wait.until` and `wait.fail_when` see the polled step's outputs as `result`
            StepForm::Expression
                if p.0.last() == Some(&crate::diagnostic::Seg::Key("until".into()))
                    || p.0.last() == Some(&crate::diagnostic::Seg::Key("fail_when".into())) =>
            {
                refs::check(
                    sink,
                    p,
                    text,
                    Form::Expression,
                    &with_result(scope),
                    &mut reads,
                );
            }
            StepForm::Expression => refs::check(sink, p, text, Form::Expression, scope, &mut reads),
            StepForm::Template => refs::check(sink, p, text, Form::Template, scope, &mut reads),
        }
        Ok(Value::Null)
    });
    reads
}

/// In `wait.until` and `wait.fail_when`, the polled step's outputs are readable as `result`.
fn with_result<'a>(scope: &Scope<'a>) -> Scope<'a> {
    Scope {
        params: scope.params.clone(),
        earlier: scope.earlier.clone(),
        later: scope.later.clone(),
        steps: scope.steps,
        run: scope.run,
        extra: &["result"],
        outputs: scope.outputs,
    }
}

fn check_strings(sink: &mut Sink<'_>, value: &Value, path: &YamlPath, scope: &Scope<'_>) -> Reads {
    let mut reads = Reads::default();
    refs::strings(value, path, &mut |p, text, _| {
        refs::check(sink, p, text, Form::Template, scope, &mut reads)
    });
    reads
}

fn read_procedures(
    sink: &mut Sink<'_>,
    value: Option<&Value>,
    path: &YamlPath,
    targets: &IndexMap<String, Target>,
) -> IndexMap<String, Procedure> {
    let mut out = IndexMap::new();
    for (id, v) in entries(sink, value, path, "procedures") {
        let p = path.key(&id);
        if let Some(msg) = check_id(
            &id,
            is_slug_char,
            "procedure id",
            "use lowercase letters, digits and `-`",
        ) {
            sink.at_key(&p, msg);
        }
        if let Some(proc_) = read_procedure(sink, &id, v, &p, targets) {
            out.insert(id, proc_);
        }
    }
    out
}

fn read_procedure(
    sink: &mut Sink<'_>,
    id: &str,
    v: &Value,
    p: &YamlPath,
    targets: &IndexMap<String, Target>,
) -> Option<Procedure> {
    let r = MapReader::new(sink, v, p.clone(), "a procedure", PROCEDURE_FIELDS);
    if !r.is_valid() {
        return None;
    }
    let title: Option<String> = r.required(sink, "title");
    let description = r.optional(sink, "description");
    let kind: Option<ProcedureKind> = r.required(sink, "kind");
    let schedule = r
        .optional::<String>(sink, "schedule")
        .and_then(|s| parse_cron(sink, &p.key("schedule"), &s));
    let params = read_params(sink, r.get("params"), &p.key("params"));

    let step_values = items(sink, r.get("steps"), &p.key("steps"), "`steps`");
    if r.get("steps").is_none() {
        sink.at_value(p, "missing required field `steps`");
    } else if step_values.is_empty() && matches!(r.get("steps"), Some(Value::Array(_))) {
        sink.at_value(&p.key("steps"), "a procedure needs at least one step");
    }
    let cleanup_values = items(sink, r.get("cleanup"), &p.key("cleanup"), "`cleanup`");
    r.finish(sink, "a procedure");

    // ids first, so references can name steps that come later
    let main_ids: Vec<String> = step_values
        .iter()
        .enumerate()
        .map(|(i, s)| step_id(s, "step", i))
        .collect();
    let cleanup_ids: Vec<String> = cleanup_values
        .iter()
        .enumerate()
        .map(|(i, s)| step_id(s, "cleanup", i))
        .collect();
    let all_ids: Vec<&str> = main_ids
        .iter()
        .chain(&cleanup_ids)
        .map(String::as_str)
        .collect();
    let param_names: Vec<&str> = params.keys().map(String::as_str).collect();

    // what each step read so far declares it outputs, for the references after it
    let mut outputs: HashMap<String, Vec<String>> = HashMap::new();
    let mut read = |sink: &mut Sink<'_>, value: &Value, path: YamlPath, id: &str, n: usize| {
        let scope = Scope {
            params: Some(param_names.clone()),
            earlier: all_ids[..n].to_vec(),
            later: all_ids[n..].to_vec(),
            steps: true,
            run: true,
            extra: &[],
            outputs: Some(&outputs),
        };
        let step = read_step(sink, value, &path, id, &scope);
        if let Some(step) = &step {
            let declared = step.kind.outputs().into_iter().map(str::to_owned);
            outputs.insert(id.to_owned(), declared.collect());
        }
        step
    };
    let steps: Vec<Option<Step>> = step_values
        .iter()
        .enumerate()
        .map(|(i, s)| read(sink, s, p.key("steps").index(i), &main_ids[i], i))
        .collect();
    let cleanup: Vec<Option<Step>> = cleanup_values
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = main_ids.len() + i;
            read(sink, s, p.key("cleanup").index(i), &cleanup_ids[i], n)
        })
        .collect();
    check_step_ids(sink, p, step_values.len(), &all_ids);
    // the steps that could be read are checked together even when another could not, so
    // every problem shows at once
    check_rto_marks(sink, p, &steps, &cleanup);
    check_fingerprints(sink, p, &steps);
    if let Some(kind) = kind {
        check_targets(sink, p, kind, &steps, &cleanup, targets);
    }
    let kind = kind?;
    let steps: Vec<Step> = steps.into_iter().collect::<Option<_>>()?;
    let cleanup: Vec<Step> = cleanup.into_iter().collect::<Option<_>>()?;
    Some(Procedure {
        id: id.to_owned(),
        title: title?,
        description,
        kind,
        schedule,
        params,
        steps,
        cleanup,
    })
}

/// `compare: {fingerprint: fp}` names an earlier `fingerprint` step of the procedure.
fn check_fingerprints(sink: &mut Sink<'_>, p: &YamlPath, steps: &[Option<Step>]) {
    for (i, step) in steps.iter().enumerate() {
        let Some(Step {
            kind: StepKind::Compare(c),
            ..
        }) = step
        else {
            continue;
        };
        let Some(fp) = &c.fingerprint else { continue };
        let earlier = steps[..i]
            .iter()
            .flatten()
            .any(|s| s.id == *fp && matches!(s.kind, StepKind::Fingerprint(_)));
        if !earlier {
            let path = p.key("steps").index(i).key("compare").key("fingerprint");
            sink.at_value(
                &path,
                format!("`{fp}` is not a `fingerprint` step before this one"),
            );
        }
    }
}

/// A step's id as written, or `step-N` / `cleanup-N` (1-based) when it has none.
fn step_id(v: &Value, prefix: &str, i: usize) -> String {
    match v.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => scalar_text(other).unwrap_or_else(|| format!("{prefix}-{}", i + 1)),
        None => format!("{prefix}-{}", i + 1),
    }
}

fn check_step_ids(sink: &mut Sink<'_>, p: &YamlPath, n_main: usize, ids: &[&str]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        let path = if i < n_main {
            p.key("steps").index(i)
        } else {
            p.key("cleanup").index(i - n_main)
        };
        if let Some(first) = seen.get(id) {
            let first_path = if *first < n_main {
                p.key("steps").index(*first)
            } else {
                p.key("cleanup").index(first - n_main)
            };
            let line = sink
                .doc
                .value_span(&first_path.key("id"))
                .map_or(0, |s| s.line);
            sink.at_value(
                &path.key("id"),
                format!("duplicate step id `{id}` (first used on line {line})"),
            );
        } else {
            seen.insert(id, i);
        }
    }
}

fn read_params(
    sink: &mut Sink<'_>,
    value: Option<&Value>,
    path: &YamlPath,
) -> IndexMap<String, Param> {
    let mut out = IndexMap::new();
    for (name, v) in entries(sink, value, path, "params") {
        let p = path.key(&name);
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if name.len() > MAX_ID {
            sink.at_key(&p, too_long("param name", &name));
        } else if !valid_name {
            sink.at_key(&p, format!("invalid param name `{name}`: use lowercase letters, digits and `_` (templates read it as `params.{name}`)"));
        }
        let r = MapReader::new(sink, v, p.clone(), "a param", PARAM_FIELDS);
        let ty: Option<ParamType> = r.required(sink, "type");
        let description = r.optional(sink, "description");
        let secret = r.optional(sink, "secret").unwrap_or(false);
        let default = match (ty, r.get("default")) {
            (Some(ty), Some(v)) if !v.is_null() => {
                let text = scalar_text(v);
                match text.as_deref().map(|t| ParamValue::parse(ty, t)) {
                    Some(Ok(val)) => Some(val),
                    Some(Err(msg)) => {
                        sink.at_value(
                            &p.key("default"),
                            format!("bad default for param `{name}`: {msg}"),
                        );
                        None
                    }
                    None => {
                        sink.at_value(
                            &p.key("default"),
                            format!(
                                "default of param `{name}` must be a single value, found {}",
                                describe(v)
                            ),
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        r.finish(sink, "a param");
        if let Some(ty) = ty {
            out.insert(
                name.clone(),
                Param {
                    name,
                    ty,
                    default,
                    description,
                    secret,
                },
            );
        }
    }
    out
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn read_step(
    sink: &mut Sink<'_>,
    v: &Value,
    p: &YamlPath,
    id: &str,
    scope: &Scope<'_>,
) -> Option<Step> {
    let mut r = MapReader::new(sink, v, p.clone(), "a step", STEP_FIELDS);
    if !r.is_valid() {
        return None;
    }
    if let Some(other) = r.get("id").filter(|v| !v.is_string()) {
        sink.at_value(
            &p.key("id"),
            format!(
                "step id must be text such as `create-branch`, found {}",
                describe(other)
            ),
        );
    } else if r.get("id").is_some() {
        if let Some(msg) = check_id(
            id,
            is_ident_char,
            "step id",
            "use lowercase letters, digits, `_` and `-`, starting with a letter or digit",
        ) {
            sink.at_value(&p.key("id"), msg);
        }
    }
    let title = r.optional(sink, "title");
    let description = r.optional(sink, "description");
    let when: Option<String> = r.optional(sink, "when");
    let timeout: Option<Duration> = r.optional(sink, "timeout");
    if let Some(Err(e)) = timeout.map(limits::timeout) {
        sink.at_value(&p.key("timeout"), e);
    }
    let retries: Option<Retries> = r.optional(sink, "retries");
    if let Some(retries) = retries {
        let at = p.key("retries");
        if retries.attempts == 0 {
            sink.at_value(
                &at.key("attempts"),
                "`attempts` counts the first try too: it must be at least 1",
            );
        }
        if let Err(e) = limits::attempts(retries.attempts) {
            sink.at_value(&at.key("attempts"), e);
        }
        if let Err(e) = limits::at_most("backoff", retries.backoff, limits::LONGEST_BACKOFF) {
            sink.at_value(&at.key("backoff"), e);
        }
    }
    let continue_on_error = r.optional(sink, "continue_on_error").unwrap_or(false);
    let rto = match r.optional::<String>(sink, "rto").as_deref() {
        None => None,
        Some("start") => Some(RtoMark::Start),
        Some("end") => Some(RtoMark::End),
        Some(other) => {
            sink.at_value(
                &p.key("rto"),
                format!("`rto` must be `start` or `end`, found `{other}`"),
            );
            None
        }
    };
    let destructive = r.optional(sink, "destructive").unwrap_or(false);
    let kind = kind_key(sink, &mut r, StepKind::NAMES, "step");
    r.finish(sink, "a step");

    let mut reads = Reads::default();
    if let Some(w) = &when {
        refs::check(sink, &p.key("when"), w, Form::Expression, scope, &mut reads);
    }
    let (name, payload) = kind?;
    let more = check_payload(sink, &payload, &p.key(name), name, scope);
    reads.steps.extend(more.steps);
    reads.env.extend(more.env);
    let kind: StepKind = sink.decode(&tagged(name, payload.clone()), p)?;
    if let Err(invalid) = kind.check() {
        report_invalid(sink, &p.key(name), &payload, invalid);
    }
    Some(Step {
        id: id.to_owned(),
        title,
        description,
        kind,
        payload,
        when,
        timeout,
        retries,
        continue_on_error,
        rto,
        destructive,
        needs: reads.steps,
        env: reads.env,
    })
}

/// A payload that makes no sense: at the field at fault when the payload has it, else at
/// the key naming the kind.
fn report_invalid(sink: &mut Sink<'_>, kind_path: &YamlPath, payload: &Value, invalid: Invalid) {
    match invalid.field.filter(|f| payload.get(f).is_some()) {
        Some(field) => sink.at_value(&kind_path.key(field), invalid.message),
        None => sink.at_key(kind_path, invalid.message),
    };
}

fn check_rto_marks(
    sink: &mut Sink<'_>,
    p: &YamlPath,
    steps: &[Option<Step>],
    cleanup: &[Option<Step>],
) {
    let mark_path = |section: &str, i: usize| p.key(section).index(i).key("rto");
    for (i, s) in cleanup.iter().enumerate() {
        if s.as_ref().is_some_and(|s| s.rto.is_some()) {
            sink.at_value(
                &mark_path("cleanup", i),
                "cleanup steps do not count towards the RTO: remove `rto`",
            );
        }
    }
    let mut start: Option<(usize, &str)> = None;
    let mut end: Option<(usize, &str)> = None;
    for (i, s) in steps.iter().enumerate() {
        let Some(s) = s else {
            continue;
        };
        let slot = match s.rto {
            Some(RtoMark::Start) => &mut start,
            Some(RtoMark::End) => &mut end,
            None => continue,
        };
        if let Some((_, first)) = *slot {
            let what = if s.rto == Some(RtoMark::Start) {
                "start"
            } else {
                "end"
            };
            sink.at_value(
                &mark_path("steps", i),
                format!("`rto: {what}` is already set on step `{first}`"),
            );
        } else {
            *slot = Some((i, &s.id));
        }
    }
    if let (Some((s, start)), Some((e, end))) = (start, end) {
        if e < s {
            sink.at_value(
                &mark_path("steps", e),
                format!("`rto: end` on step `{end}` comes before `rto: start` on step `{start}`"),
            );
        }
    }
}

fn check_targets(
    sink: &mut Sink<'_>,
    p: &YamlPath,
    kind: ProcedureKind,
    steps: &[Option<Step>],
    cleanup: &[Option<Step>],
    targets: &IndexMap<String, Target>,
) {
    let sections = steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((p.key("steps").index(i), s.as_ref()?)));
    let sections = sections.chain(
        cleanup
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((p.key("cleanup").index(i), s.as_ref()?))),
    );
    for (path, step) in sections {
        let kind_path = path.key(step.kind.name());
        let mut acted_on = None;
        for n in step.kind.targets() {
            let t = resolve_target(sink, &step.kind, n, &step.payload, &kind_path, targets);
            if step.kind.target() == Some(n) {
                acted_on = t.map(|t| (n, t));
            }
        }
        let Some((name, target)) = acted_on else {
            continue;
        };
        let destructive = step.destructive || step.kind.is_destructive();
        if destructive && target.protected && kind == ProcedureKind::Drill {
            let at = if step.destructive {
                path.key("destructive")
            } else {
                path.key(step.kind.name())
            };
            sink.at_value(&at, format!("destructive step `{}` acts on protected target `{name}` in a drill", step.id)).help =
                Some("drills must only touch scratch resources: point the step at a restored copy, or make the procedure `kind: recovery`".into());
        }
    }
}

/// The target a step or check names, checked: it exists (else a suggestion), and its kind
/// is one the step can act on. Templated names are resolved at run time.
fn resolve_target<'t>(
    sink: &mut Sink<'_>,
    kind: &StepKind,
    name: &str,
    payload: &Value,
    kind_path: &YamlPath,
    targets: &'t IndexMap<String, Target>,
) -> Option<&'t Target> {
    if crate::template::is_template(name) {
        return None;
    }
    // the field that names it: `target`, `db`, `source`, `restored`, …
    let field = payload
        .as_object()
        .and_then(|m| m.iter().find(|(_, v)| v.as_str() == Some(name)))
        .map_or("target", |(k, _)| k.as_str());
    let at = kind_path.key(field);
    let Some(target) = targets.get(name) else {
        let help = match did_you_mean(name, targets.keys().map(String::as_str)) {
            Some(best) => format!("did you mean `{best}`?"),
            None if targets.is_empty() => "this runbook declares no targets".into(),
            None => format!(
                "targets: {}",
                backticked(&targets.keys().collect::<Vec<_>>())
            ),
        };
        sink.at_value(&at, format!("no target `{name}`")).help = Some(help);
        return None;
    };
    let allowed = kind.target_kinds();
    let target_kind = match target.kind {
        TargetKind::Postgres(_) => "postgres",
        TargetKind::Neon(_) => "neon",
        TargetKind::Local(_) => "local",
    };
    if !allowed.is_empty() && !allowed.contains(&target_kind) {
        sink.at_value(&at, format!("`{}` cannot act on target `{name}`: it is a {target_kind} target, and `{}` takes {}", kind.name(), kind.name(), backticked(allowed)));
    }
    // `backups:` reads a local target's backup locations
    if field == "backups" {
        let problem = match &target.kind {
            TargetKind::Local(l) => {
                let missing: Vec<&str> = [
                    ("base_backup", &l.base_backup),
                    ("wal_archive", &l.wal_archive),
                ]
                .into_iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k)
                .collect();
                (!missing.is_empty()).then(|| format!("`{name}` has no {}", backticked(&missing)))
            }
            _ => Some(format!("`{name}` is a {target_kind} target")),
        };
        if let Some(problem) = problem {
            sink.at_value(&at, format!("`backups` names a local target with `base_backup` and `wal_archive`: {problem}")).help =
                Some("declare one as `local: { base_backup: …, wal_archive: … }`, or give `base_backup` and `wal_archive` on the step".into());
        }
    }
    Some(target)
}

fn read_checks(
    sink: &mut Sink<'_>,
    value: Option<&Value>,
    path: &YamlPath,
    targets: &IndexMap<String, Target>,
) -> Vec<Check> {
    let mut out: Vec<Check> = Vec::new();
    for (i, v) in items(sink, value, path, "`checks`").iter().enumerate() {
        let p = path.index(i);
        let mut r = MapReader::new(sink, v, p.clone(), "a check", CHECK_FIELDS);
        if !r.is_valid() {
            continue;
        }
        let id: Option<String> = r.required(sink, "id");
        if let Some(id) = &id {
            if let Some(msg) = check_id(
                id,
                is_ident_char,
                "check id",
                "use lowercase letters, digits, `_` and `-`",
            ) {
                sink.at_value(&p.key("id"), msg);
            } else if out.iter().any(|c| &c.id == id) {
                sink.at_value(&p.key("id"), format!("duplicate check id `{id}`"));
            }
        }
        let title = r.optional(sink, "title");
        let thresholds = [("warn", r.get("warn")), ("critical", r.get("critical"))];
        let timeout: Option<Duration> = r.optional(sink, "timeout");
        if let Some(Err(e)) = timeout.map(limits::timeout) {
            sink.at_value(&p.key("timeout"), e);
        }
        let kind = kind_key(sink, &mut r, StepKind::NAMES, "check");
        r.finish(sink, "a check");
        let Some((name, payload)) = kind else {
            continue;
        };
        let scope = Scope::default();
        let _reads = check_payload(sink, &payload, &p.key(name), name, &scope);
        let Some(kind) = sink.decode::<StepKind>(&tagged(name, payload.clone()), &p) else {
            continue;
        };
        if let Err(invalid) = kind.check() {
            report_invalid(sink, &p.key(name), &payload, invalid);
        }
        for t in kind.targets() {
            resolve_target(sink, &kind, t, &payload, &p.key(name), targets);
        }
        let [warn, critical] = thresholds
            .map(|(field, value)| read_threshold(sink, &kind, value, &p.key(field), field));
        if let Some(id) = id {
            out.push(Check {
                id,
                title,
                kind,
                payload,
                warn,
                critical,
                timeout,
            });
        }
    }
    out
}

/// A `warn`/`critical` threshold: it needs a kind with a measure, and a value in the
/// measure's unit.
fn read_threshold(
    sink: &mut Sink<'_>,
    kind: &StepKind,
    value: Option<&Value>,
    path: &YamlPath,
    field: &str,
) -> Option<Threshold> {
    let value = value.filter(|v| !v.is_null())?;
    let Some(measure) = kind.measure() else {
        if let StepKind::Shell(_) = kind {
            sink.at_value(
                path,
                format!("`{field}` needs a measure to compare, and this `shell` check declares none"),
            )
            .help = Some("declare it: `outputs: json` and `measure: {output: <a key of the JSON on stdout>, unit: seconds|bytes|count|number, worse: higher|lower}`".into());
            return None;
        }
        let measured: Vec<String> = StepKind::INFO
            .iter()
            .filter_map(|i| Some(format!("`{}` (`{}`)", i.name, i.measure?.output)))
            .collect();
        sink.at_value(
            path,
            format!(
                "`{field}` needs a measure to compare, and `{}` has none: it is OK or CRITICAL",
                kind.name()
            ),
        )
        .help = Some(format!(
            "kinds with a measure: {}, and `shell` with `measure:`",
            measured.join(", ")
        ));
        return None;
    };
    match Threshold::parse(value, measure.unit) {
        Ok(t) => Some(t),
        Err(message) => {
            sink.at_value(path, format!("invalid `{field}`: {message}"))
                .help = Some(format!(
                "the measure of `{}` is `{}`, in {}",
                kind.name(),
                measure.output,
                measure.unit.as_str()
            ));
            None
        }
    }
}

fn read_alerts(sink: &mut Sink<'_>, value: Option<&Value>, path: &YamlPath) -> Vec<Alert> {
    let mut out = Vec::new();
    for (i, v) in items(sink, value, path, "`alerts`").iter().enumerate() {
        let p = path.index(i);
        let mut r = MapReader::new(sink, v, p.clone(), "an alert", ALERT_FIELDS);
        if !r.is_valid() {
            continue;
        }
        let on: Vec<AlertEvent> = r
            .optional(sink, "on")
            .unwrap_or_else(|| vec![AlertEvent::Failure]);
        let repeat = r.optional(sink, "repeat");
        let kind = kind_key(sink, &mut r, ALERT_KINDS, "alert");
        r.finish(sink, "an alert");
        let Some((name, payload)) = kind else {
            continue;
        };
        check_strings(sink, &payload, &p.key(name), &Scope::default());
        if let Some(kind) = sink.decode::<AlertKind>(&tagged(name, payload), &p) {
            out.push(Alert { kind, on, repeat });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        match load_str("t.yaml", src) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .diagnostics
                .iter()
                .map(|d| {
                    format!(
                        "{}:{} {}",
                        d.span.map_or(0, |s| s.line),
                        d.span.map_or(0, |s| s.col),
                        d.message
                    )
                })
                .collect(),
        }
    }

    const OK: &str = "version: 1\nname: t\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: a\n        shell: echo hi\n";

    #[test]
    fn minimal_runbook_is_valid() {
        assert_eq!(errors(OK), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported() {
        let src = "version: 1\nname: t\nbogus: 1\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: a\n        shel: echo hi\n      - id: b\n        shell: echo\n        timeout: 10 minutes\n";
        let errs = errors(src);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("3:1 unknown field `bogus`"), "{errs:?}");
        assert!(
            errs[1].starts_with("10:9 unknown step kind `shel`"),
            "{errs:?}"
        );
        assert!(errs[2].starts_with("13:18 invalid value"), "{errs:?}");
    }
}
