//! The template language of runbooks: minijinja with strict undefined. One environment serves
//! validation (syntax and the variables a template reads) and the engine (rendering).
//!
//! A string that is exactly one expression (`"{{ steps.count.rows }}"`) renders to the value's
//! own type, so numbers and lists survive templating; anything else renders to text.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior, Value};

/// The variables every template may read, besides the builtins.
pub const ROOTS: &[&str] = &["params", "env", "steps", "run", "now"];
/// The fields of `run`.
pub const RUN_FIELDS: &[&str] = &[
    "id",
    "started_at",
    "operator",
    "procedure",
    "runbook",
    "kind",
    "dry_run",
];

/// A template that failed to parse, with a place inside its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    /// 1-based line and column inside the template text, and the length of the fault.
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_filter("pgtime", pgtime);
    env.add_filter("epoch", epoch);
    env
}

/// The instant a filter's value names: a timestamp in any form runbooks accept (RFC 3339,
/// psql's form, `now-1h`), a relative one resolved from the template's `now` (the run's
/// start) so it agrees with the params.
fn instant(
    state: &minijinja::State<'_, '_>,
    value: &Value,
    filter: &str,
) -> Result<chrono::DateTime<chrono::Utc>, minijinja::Error> {
    let invalid = |why: String| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("`{filter}`: {why}"),
        )
    };
    let Some(text) = value.as_str() else {
        return Err(invalid(format!(
            "expected a timestamp, got {} `{value}`",
            value.kind()
        )));
    };
    let spec: crate::timestamp::TimeSpec = text
        .parse()
        .map_err(|e: crate::timestamp::TimestampError| invalid(e.to_string()))?;
    let now = state
        .lookup("now")
        .and_then(|n| {
            n.as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        })
        .map_or_else(chrono::Utc::now, |t| t.with_timezone(&chrono::Utc));
    Ok(spec.resolve(now))
}

/// `{{ t | pgtime }}`: the timestamp as PostgreSQL prints a `timestamptz` in UTC —
/// `2026-11-28 09:00:00+00`, or `2026-11-28 09:00:00.123456+00` with a fraction (to the
/// microsecond, PostgreSQL's precision) — which PostgreSQL (`recovery_target_time`),
/// pgBackRest (`--target`) and Barman (`--target-time`, written verbatim into the recovery
/// settings) all read.
fn pgtime(state: &minijinja::State<'_, '_>, value: &Value) -> Result<String, minijinja::Error> {
    Ok(pg_timestamp(instant(state, value, "pgtime")?))
}

/// The PostgreSQL form of an instant (see [`pgtime`]).
pub fn pg_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Timelike;
    let micros = t.nanosecond() / 1000;
    if micros == 0 {
        t.format("%Y-%m-%d %H:%M:%S+00").to_string()
    } else {
        format!("{}.{micros:06}+00", t.format("%Y-%m-%d %H:%M:%S"))
    }
}

/// `{{ t | epoch }}`: the timestamp as whole seconds since 1970-01-01 UTC.
fn epoch(state: &minijinja::State<'_, '_>, value: &Value) -> Result<i64, minijinja::Error> {
    Ok(instant(state, value, "epoch")?.timestamp())
}

/// True when `s` contains template syntax. `{#` (a comment) alone does not count: shell's
/// `${#VAR}` is far more common in runbooks than a template comment.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// The variable paths a template reads (`steps.branch.id`, `params.when`), or its syntax error.
pub fn references(env: &Environment<'_>, source: &str) -> Result<BTreeSet<String>, SyntaxError> {
    let tmpl = env
        .template_from_str(source)
        .map_err(|e| syntax_error(source, &e))?;
    Ok(tmpl.undeclared_variables(true).into_iter().collect())
}

/// The environment variables (`env.NAME`) the templates anywhere in `value` read.
pub fn env_references(value: &serde_json::Value) -> BTreeSet<String> {
    fn walk(v: &serde_json::Value, env: &Environment<'_>, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::String(s) if is_template(s) => {
                for r in references(env, s).unwrap_or_default() {
                    if let Some(name) = r.strip_prefix("env.") {
                        out.insert(name.split('.').next().unwrap_or(name).to_owned());
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, env, out)),
            serde_json::Value::Object(m) => m.values().for_each(|i| walk(i, env, out)),
            _ => {}
        }
    }
    let env = environment();
    let mut out = BTreeSet::new();
    walk(value, &env, &mut out);
    out
}

/// The variable paths an expression (`when:`, `assert:`) reads, or its syntax error.
pub fn expression_references(
    env: &Environment<'_>,
    source: &str,
) -> Result<BTreeSet<String>, SyntaxError> {
    let expr = compile_expression(env, source).map_err(|e| match e {
        Compile::Delimiter(offset) => delimiter_error(source, offset),
        Compile::Minijinja(e) => syntax_error(source, &e),
    })?;
    Ok(expr.undeclared_variables(true).into_iter().collect())
}

enum Compile {
    /// A block delimiter at this byte offset.
    Delimiter(usize),
    Minijinja(minijinja::Error),
}

/// Compiles an expression. A block delimiter (`}}`, `%}`, `#}`) outside a string literal is
/// refused here: minijinja's expression compiler panics on one instead of reporting it.
fn compile_expression<'s>(
    env: &'s Environment<'_>,
    source: &'s str,
) -> Result<minijinja::Expression<'s, 's>, Compile> {
    if let Some(offset) = stray_delimiter(source) {
        return Err(Compile::Delimiter(offset));
    }
    env.compile_expression(source).map_err(Compile::Minijinja)
}

/// The byte offset of `}}`, `%}` or `#}` outside quotes, if any.
fn stray_delimiter(source: &str) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if matches!(b, b'}' | b'%' | b'#') && bytes.get(i + 1) == Some(&b'}') => {
                return Some(i)
            }
            None => {}
        }
        i += 1;
    }
    None
}

fn delimiter_error(source: &str, offset: usize) -> SyntaxError {
    let before = &source[..offset];
    SyntaxError {
        message: format!("template syntax error: unexpected `{}` in an expression (expressions are written without braces)", &source[offset..offset + 2]),
        line: before.matches('\n').count() + 1,
        col: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
        len: 2,
    }
}

fn syntax_error(source: &str, e: &minijinja::Error) -> SyntaxError {
    let message = match e.detail() {
        Some(detail) => format!("template syntax error: {detail}"),
        None => format!("template syntax error: {}", e.kind()),
    };
    let (line, col, len) = match e.range() {
        Some(r) => {
            let before = &source[..r.start.min(source.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, col, r.len().max(1))
        }
        None => (e.line().unwrap_or(1), 1, 1),
    };
    SyntaxError {
        message,
        line,
        col,
        len,
    }
}

/// Renders a string. A string that is a single `{{ expr }}` keeps the expression's type.
pub fn render(env: &Environment<'_>, source: &str, ctx: &Value) -> Result<Value, minijinja::Error> {
    if let Some(expr) = single_expression(source) {
        if compile_expression(env, expr).is_ok() {
            return eval(env, expr, ctx);
        }
    }
    env.render_str(source, ctx).map(Value::from)
}

/// Renders each `{{ … }}` of `source` that `ctx` can render and keeps the others as written
/// (for showing a template before a run: the values known then, the rest as placeholders).
/// A template with block tags (`{% … %}`) is rendered whole, or kept whole.
pub fn render_known(env: &Environment<'_>, source: &str, ctx: &Value) -> String {
    let as_text = |v: Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    if source.contains("{%") {
        return render(env, source, ctx).map_or_else(|_| source.to_owned(), as_text);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}").map(|e| e + 2) else {
            break;
        };
        out.push_str(&rest[..start]);
        let piece = &rest[start..start + len];
        match render(env, piece, ctx) {
            Ok(v) => out.push_str(&as_text(v)),
            Err(_) => out.push_str(piece),
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

/// Evaluates an expression such as `when:`. Strict: an expression that reads something
/// undefined is an error, not a silent false.
pub fn eval(env: &Environment<'_>, expr: &str, ctx: &Value) -> Result<Value, minijinja::Error> {
    let compiled = compile_expression(env, expr).map_err(|e| match e {
        Compile::Delimiter(offset) => minijinja::Error::new(
            minijinja::ErrorKind::SyntaxError,
            delimiter_error(expr, offset).message,
        ),
        Compile::Minijinja(e) => e,
    })?;
    let value = compiled.eval(ctx)?;
    if value.is_undefined() {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::UndefinedError,
            format!("`{expr}` is undefined"),
        ));
    }
    Ok(value)
}

/// minijinja's error as one line: its detail without the debug dump.
pub fn describe_error(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => d.to_owned(),
        None => e.kind().to_string(),
    }
}

/// `"{{ a.b }}"` -> `Some("a.b")`; strings with text around or several blocks -> None.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%"))
        .then_some(inner.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_filters_write_what_postgresql_pgbackrest_and_barman_read() {
        let env = environment();
        let ctx = minijinja::context! { now => "2026-11-28T10:00:00Z", t => "2026-11-28T09:00:00.123456789Z" };
        let r = |src: &str| render(&env, src, &ctx).map(|v| v.to_string());
        // pgBackRest's HINT: `YYYY-MM-DD HH:MM:SS with optional msec and optional timezone`
        assert_eq!(
            r("{{ t | pgtime }}").unwrap(),
            "2026-11-28 09:00:00.123456+00"
        );
        assert_eq!(
            r("{{ '2026-11-28T09:00:00Z' | pgtime }}").unwrap(),
            "2026-11-28 09:00:00+00"
        );
        assert_eq!(
            r("{{ '2026-11-28 10:00:00+01' | pgtime }}").unwrap(),
            "2026-11-28 09:00:00+00"
        );
        // relative to the run's start, as params are
        assert_eq!(
            r("{{ 'now-1h' | pgtime }}").unwrap(),
            "2026-11-28 09:00:00+00"
        );
        assert_eq!(r("{{ 'now-1h' | epoch }}").unwrap(), "1795856400");
        let e = r("{{ 'yesterday' | pgtime }}").unwrap_err();
        assert!(
            describe_error(&e).contains("invalid timestamp `yesterday`"),
            "{}",
            describe_error(&e)
        );
        let e = r("{{ 3 | pgtime }}").unwrap_err();
        assert!(
            describe_error(&e).contains("expected a timestamp"),
            "{}",
            describe_error(&e)
        );
    }

    #[test]
    fn finds_nested_references() {
        let env = environment();
        let refs = references(
            &env,
            "drill-{{ run.id }} at {{ steps.branch.connection_uri }} {{ params.t }}",
        )
        .expect("valid");
        assert!(refs.contains("steps.branch.connection_uri"), "{refs:?}");
        assert!(
            refs.contains("run.id") && refs.contains("params.t"),
            "{refs:?}"
        );
        let refs = expression_references(&env, "steps.check.exit_code == 0 and params.full")
            .expect("valid");
        assert!(
            refs.contains("steps.check.exit_code") && refs.contains("params.full"),
            "{refs:?}"
        );
    }

    #[test]
    fn syntax_errors_point_into_the_source() {
        let env = environment();
        let e = references(&env, "x {{ steps.a. }}").expect_err("invalid");
        assert!(
            e.message.starts_with("template syntax error"),
            "{}",
            e.message
        );
        assert_eq!(e.line, 1);
        assert!(e.col > 1, "{e:?}");
    }

    #[test]
    fn single_expressions_keep_their_type() {
        let env = environment();
        let ctx = Value::from_serialize(serde_json::json!({"steps": {"a": {"n": 42}}}));
        assert_eq!(
            render(&env, "{{ steps.a.n }}", &ctx).expect("renders"),
            Value::from(42)
        );
        assert_eq!(
            render(&env, "n={{ steps.a.n }}", &ctx).expect("renders"),
            Value::from("n=42")
        );
        assert!(
            render(&env, "{{ steps.a.missing }}", &ctx).is_err(),
            "strict undefined"
        );
    }

    #[test]
    fn stray_delimiters_in_expressions_are_errors_not_panics() {
        let env = environment();
        let e = expression_references(&env, "steps.one.exit_code }}==").expect_err("invalid");
        assert_eq!((e.line, e.col, e.len), (1, 21, 2), "{e:?}");
        assert!(expression_references(&env, "x == '}}' and y == \"%}\"").is_ok());
        assert!(eval(&env, "1 %} 2", &Value::from(())).is_err());
    }

    #[test]
    fn expressions_reading_undefined_values_are_errors_not_false() {
        let env = environment();
        let ctx = Value::from_serialize(serde_json::json!({"steps": {"a": {"n": 42}}}));
        for e in [
            "steps.a.typo != 1",
            "steps.a.typo == 1",
            "not steps.a.typo",
            "steps.a.typo | int > 0",
            "steps.zz.n",
        ] {
            assert!(eval(&env, e, &ctx).is_err(), "`{e}` must not evaluate");
        }
        assert_eq!(
            eval(&env, "steps.a.n > 40", &ctx).expect("valid"),
            Value::from(true)
        );
    }
}
