//! Secrets never leave the process: every text that reaches output, logs or records passes
//! through a [`Redactor`] first. It knows the secret values of this run (secret-looking env
//! vars, secret params) and always masks passwords in URLs.

/// Env var names that hold secrets, by the words they contain.
const SECRET_WORDS: &[&str] = &[
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

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// True when an env var of this name should be treated as a secret. Over-matching is safe:
/// a masked project id costs less than a leaked key.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|word| upper.contains(word))
}

impl Redactor {
    /// Adds a secret value. Very short values are ignored: masking `1` everywhere would
    /// destroy the output and protect nothing.
    pub fn add(&mut self, secret: &str) {
        if secret.chars().count() >= 4 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
            // longest first, so a secret containing another is masked whole
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        self.add_url_password(secret);
    }

    /// Adds only the password of a URL value (a non-secret env var such as `DATABASE_URL`).
    pub fn add_url_password(&mut self, value: &str) {
        if let Some(password) = url_password(value) {
            if password.chars().count() >= 2 && !self.secrets.iter().any(|s| s == password) {
                self.secrets.push(password.to_owned());
                self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
            }
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = mask_url_passwords(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
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

/// The password of `scheme://user:password@host…`, if any.
fn url_password(text: &str) -> Option<&str> {
    let start = text.find("://")? + 3;
    let rest = &text[start..];
    let at = rest.find('@')?;
    let userinfo = &rest[..at];
    if userinfo.contains('/') {
        return None;
    }
    let colon = userinfo.find(':')?;
    Some(&userinfo[colon + 1..])
}

/// Masks the password of every URL in `text` and of a `password=` pair (a key/value
/// connection string).
pub fn mask_passwords(text: &str) -> String {
    let masked = mask_url_passwords(text);
    let mut out = Vec::new();
    for part in masked.split(' ') {
        match part.split_once('=') {
            Some((k, _)) if k.trim() == "password" => out.push(format!("{k}=***")),
            _ => out.push(part.to_owned()),
        }
    }
    out.join(" ")
}

/// Replaces the password of every URL in `text` with `***`.
pub fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_passwords_and_known_secrets() {
        let mut r = Redactor::default();
        r.add("sk-live-abcdef");
        r.add("postgres://app:hunter2@db:5432/x");
        let text = "key sk-live-abcdef url postgresql://u:p4ss@h/db and hunter2 again";
        assert_eq!(
            r.redact(text),
            "key *** url postgresql://u:***@h/db and *** again"
        );
        assert_eq!(
            mask_url_passwords("https://host/path?x=1"),
            "https://host/path?x=1"
        );
        assert_eq!(
            mask_url_passwords("postgres://user@host/db"),
            "postgres://user@host/db"
        );
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
