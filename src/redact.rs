//! Secrets never leave the process: every text that reaches output, logs or records passes
//! through a [`Redactor`] first. It knows the secret values of this process — every value of
//! a secret-looking variable in drillbook's environment, whether or not the runbook reads it
//! (a `shell` step inherits them all), the variables a runbook declares secret, secret
//! params, the password of every connection string in the environment — and always masks
//! passwords written in connection strings, in every form libpq accepts.

use std::ops::Range;

/// Env var names that hold secrets, by the words they contain.
pub const SECRET_WORDS: &[&str] = &[
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "WEBHOOK",
    "DSN",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "HEARTBEAT",
    "ROUTING",
];

pub const MASK: &str = "***";

/// Values shorter than this are not masked by value: masking `1` everywhere would destroy
/// the output and protect nothing.
const MIN_SECRET: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// A setting rather than a secret (`AUTH_ENABLED=true`): masking every `true` in the output
/// would protect nothing.
fn is_flag(value: &str) -> bool {
    const FLAGS: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "none", "null", "enabled", "disabled",
    ];
    let v = value.trim();
    FLAGS.iter().any(|f| v.eq_ignore_ascii_case(f))
}

/// True when an env var of this name should be treated as a secret. Over-matching is safe:
/// a masked project id costs less than a leaked key.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|word| upper.contains(word))
}

impl Redactor {
    /// The redactor of a process whose environment is `vars`: the value of every variable
    /// whose name is secret-looking or listed in `secret_names` is a secret, and so is the
    /// password of a connection string in any variable.
    pub fn from_env<I, K, V>(vars: I, secret_names: &[String]) -> Redactor
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut r = Redactor::default();
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            if secret_names.iter().any(|s| s == name) {
                r.add(value);
                r.add(value.trim());
            } else if is_secret_name(name) && !is_flag(value) {
                r.add(value);
                // what a client sends after trimming (e.g. the Neon API key)
                r.add(value.trim());
            } else {
                r.add_passwords_of(value);
            }
        }
        r
    }

    /// The redactor of this process (see [`Redactor::from_env`]). Variables whose name or
    /// value is not UTF-8 are read lossily: a secret is masked as the text it prints as.
    pub fn from_process_env(secret_names: &[String]) -> Redactor {
        Redactor::from_env(
            std::env::vars_os().map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            }),
            secret_names,
        )
    }

    /// Adds a secret value, and the passwords written in it.
    pub fn add(&mut self, secret: &str) {
        self.insert(secret);
        self.add_passwords_of(secret);
    }

    /// Adds only the passwords written in a value (a non-secret variable such as
    /// `DATABASE_URL`), as written and as a client reads them.
    pub fn add_passwords_of(&mut self, value: &str) {
        for p in passwords_in(value) {
            self.insert(&p);
        }
    }

    fn insert(&mut self, secret: &str) {
        if secret.chars().count() >= MIN_SECRET && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
            // longest first, so a secret containing another is masked whole
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        mask_passwords(&out)
    }

    /// Redacts every string inside a JSON value.
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::String(s) => serde_json::Value::String(self.redact(s)),
            serde_json::Value::Array(a) => a.iter().map(|v| self.redact_json(v)).collect(),
            serde_json::Value::Object(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), self.redact_json(v)))
                .collect(),
            other => other.clone(),
        }
    }
}

/// Masks every password written in `text`: of a URL (`scheme://user:password@host`, for
/// PostgreSQL URLs also one holding `/` or `@`), of a `password=` query parameter, and of a
/// `password = value` pair (quoted or not, separated by spaces or tabs, as in a libpq
/// key/value connection string, and `password: value`).
pub fn mask_passwords(text: &str) -> String {
    let spans = password_spans(text);
    if spans.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for s in spans {
        out.push_str(&text[at..s.start]);
        out.push_str(MASK);
        at = s.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The passwords written in `value`, as written and as a client reads them
/// (percent-decoded in a URL, unquoted in a key/value pair).
pub fn passwords_in(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in password_spans(value) {
        let raw = &value[s];
        let unquoted = unquote(raw);
        for p in [raw.to_owned(), percent_decode(&unquoted), unquoted] {
            if !p.is_empty() && p != MASK && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Characters that end a URL in running text.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>')
}

/// Byte ranges of the password values in `text`, sorted and disjoint.
fn password_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = url_password_spans(text);
    spans.extend(pair_password_spans(text));
    spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for s in spans {
        match merged.last_mut() {
            Some(last) if s.start < last.end => last.end = last.end.max(s.end),
            _ => merged.push(s),
        }
    }
    merged
}

/// The `user:password` part of every `scheme://user:password@host` in `text`.
fn url_password_spans(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("://").map(|i| from + i) {
        let scheme_start = text[..i]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(p, c)| p + c.len_utf8());
        let scheme = text[scheme_start..i].to_ascii_lowercase();
        let start = i + 3;
        let end = text[start..]
            .find(ends_url)
            .map_or(text.len(), |e| start + e);
        let token = &text[start..end];
        // a PostgreSQL URL's password may hold `/` or `@` as people write them (libpq
        // splits at the last `@` before the query); elsewhere the host ends at `/`
        let userinfo_end = if scheme == "postgres" || scheme == "postgresql" {
            let before_query = token.find('?').unwrap_or(token.len());
            token[..before_query].rfind('@')
        } else {
            let authority = token.find(['/', '?', '#']).unwrap_or(token.len());
            token[..authority].rfind('@')
        };
        if let Some(at) = userinfo_end {
            if let Some(colon) = token[..at].find(':') {
                if colon + 1 < at {
                    out.push(start + colon + 1..start + at);
                }
            }
        }
        from = end.max(start);
    }
    out
}

/// The value of every `…password = value` (or `…password: value`) in `text`: after `?` or
/// `&` a URL query value (up to `&`), else a key/value connection string's value (quoted with
/// `'` and backslash escapes, or up to whitespace).
fn pair_password_spans(text: &str) -> Vec<Range<usize>> {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(k) = lower[from..].find("password").map(|k| from + k) {
        from = k + "password".len();
        let in_query = k > 0 && matches!(bytes[k - 1], b'?' | b'&');
        let mut i = from;
        // `"password": "x"` (JSON) as well as `password=x`
        if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
        }
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        if i >= bytes.len() || !matches!(bytes[i], b'=' | b':') {
            continue;
        }
        i += 1;
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        let start = i;
        let end = match bytes.get(i) {
            Some(&q @ (b'\'' | b'"')) if !in_query => quoted_end(bytes, i, q),
            _ => {
                let stop = |c: char| {
                    c.is_whitespace() || (in_query && matches!(c, '&' | '#' | '"' | '\''))
                };
                text[start..].find(stop).map_or(text.len(), |e| start + e)
            }
        };
        if end > start {
            out.push(start..end);
            from = end;
        }
    }
    out
}

/// The end (exclusive) of a value quoted with `q` starting at `open`, honouring backslash
/// escapes; the end of the text when it is never closed.
fn quoted_end(bytes: &[u8], open: usize, q: u8) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            c if c == q => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// `'a \'b\''` → `a 'b'`; anything else as it is.
fn unquote(value: &str) -> String {
    let Some(inner) = value
        .strip_prefix(['\'', '"'])
        .map(|v| v.strip_suffix(['\'', '"']).unwrap_or(v))
    else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `p%40ss` → `p@ss`; invalid escapes and non-UTF-8 results are kept as written.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(((hex(h).unwrap_or(0) << 4) | hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_known_secrets_and_written_passwords() {
        let mut r = Redactor::default();
        r.add("sk-live-abcdef");
        r.add("postgres://app:hunter2@db:5432/x");
        let text = "key sk-live-abcdef url postgresql://u:p4ss@h/db and hunter2 again";
        assert_eq!(
            r.redact(text),
            "key *** url postgresql://u:***@h/db and *** again"
        );
        for same in [
            "https://host/path?x=1",
            "postgres://user@host/db",
            "https://host:8080/x?u=a@b",
            "the password is long",
        ] {
            assert_eq!(mask_passwords(same), same);
        }
    }

    #[test]
    fn passwords_in_every_form() {
        for (text, shown) in [
            (
                "host=h password = hunter2 dbname=x",
                "host=h password = *** dbname=x",
            ),
            (
                "host=h\tpassword=hunter2\tdbname=x",
                "host=h\tpassword=***\tdbname=x",
            ),
            (
                r"host=h password='a b\'c' dbname=x",
                "host=h password=*** dbname=x",
            ),
            (
                "postgres://u@h/db?sslmode=require&password=hunter2&x=1",
                "postgres://u@h/db?sslmode=require&password=***&x=1",
            ),
            ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
            (
                "postgresql://u:p@ss@h:5432/db",
                "postgresql://u:***@h:5432/db",
            ),
            (r#"{"password": "hunter2"}"#, r#"{"password": ***}"#),
            ("PGPASSWORD=hunter2 psql", "PGPASSWORD=*** psql"),
            // a scheme after a character wider than a byte
            (
                "\u{202e}postgresql://u:pw@h/db",
                "\u{202e}postgresql://u:***@h/db",
            ),
        ] {
            assert_eq!(mask_passwords(text), shown, "{text}");
        }
        assert_eq!(passwords_in(r"password='a b\'c'"), [r"'a b\'c'", "a b'c"]);
        assert_eq!(passwords_in("postgres://u:p%40ss@h/db"), ["p%40ss", "p@ss"]);
    }

    #[test]
    fn every_secret_of_the_environment_is_masked() {
        let r = Redactor::from_env(
            [
                ("NEON_API_KEY", "napi_0123456789"),
                ("SLACK_WEBHOOK_URL", "https://hooks.slack.example/T0/B0/xyz"),
                ("DATABASE_URL", "host=db user=app password='s3cr et'"),
                ("MY_CONN", "postgres://u:p%40ssw@h/db"),
                ("CUSTOM", "letmein-please"),
                ("AUTH_ENABLED", "true"),
                ("HOME", "/root"),
            ],
            &["CUSTOM".to_owned()],
        );
        let text = "napi_0123456789 https://hooks.slack.example/T0/B0/xyz s3cr et p@ssw letmein-please /root true";
        assert_eq!(r.redact(text), "*** *** *** *** *** /root true");
    }

    #[test]
    fn secret_names() {
        assert!(
            is_secret_name("NEON_API_KEY")
                && is_secret_name("SLACK_WEBHOOK_URL")
                && is_secret_name("PGPASSWORD")
        );
        assert!(!is_secret_name("NEON_PROJECT_ID") && !is_secret_name("DATABASE_URL"));
    }
}
