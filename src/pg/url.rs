//! Connection strings: `postgres://` / `postgresql://` URLs and `key=value` strings, with the
//! libpq TLS modes tokio-postgres does not parse itself (`verify-ca`, `verify-full`,
//! `sslrootcert`), a connect timeout, `application_name=drillbook` by default, and a redacted
//! form for every message and record.

use std::path::PathBuf;
use std::time::Duration;

use crate::redact::mask_passwords;

/// libpq's `sslmode`, all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it (libpq's default).
    Prefer,
    /// TLS, certificate not checked.
    Require,
    /// TLS, certificate chain checked against the roots, host name not.
    VerifyCa,
    /// TLS, chain and host name checked (what Neon should get).
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A parsed connection string.
#[derive(Debug, Clone)]
pub struct ConnSpec {
    pub config: tokio_postgres::Config,
    pub ssl: SslMode,
    /// PEM file of trusted roots (`sslrootcert`); the system roots otherwise.
    pub root_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// The string with its password masked: safe for messages and records.
    pub display: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid connection string `{shown}`: {reason}")]
pub struct UrlError {
    pub shown: String,
    pub reason: String,
}

/// The longest `connect_timeout`, in seconds: a server that has not answered in an hour
/// will not.
const MAX_CONNECT_TIMEOUT: u64 = 3600;

/// Parameters drillbook handles itself rather than passing to tokio-postgres.
const OURS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "sslcert",
    "sslkey",
];

pub fn parse(text: &str) -> Result<ConnSpec, UrlError> {
    let shown = mask_passwords(text);
    let err = |reason: String| UrlError {
        shown: shown.clone(),
        reason,
    };
    let text = text.trim();
    let is_url = text.starts_with("postgres://") || text.starts_with("postgresql://");
    // another scheme: a URL of something that is not PostgreSQL
    if let Some((scheme, _)) = text.split_once("://").filter(|_| !is_url) {
        return Err(err(format!(
            "`{scheme}://` is not PostgreSQL: give a `postgres://user@host/db` URL or `key=value` pairs"
        )));
    }
    let (rest, ours) = if is_url {
        split_url(text)
    } else {
        split_kv(text).map_err(err)?
    };
    let mut ssl = SslMode::Prefer;
    let mut root_cert = None;
    let mut connect_timeout = Duration::from_secs(10);
    for (k, v) in ours {
        match k.as_str() {
            "sslmode" => {
                ssl = SslMode::parse(&v).ok_or_else(|| {
                    err(format!(
                        "unknown sslmode `{v}` (disable, prefer, require, verify-ca, verify-full)"
                    ))
                })?
            }
            "sslrootcert" if v == "system" => root_cert = None,
            "sslrootcert" => root_cert = Some(PathBuf::from(v)),
            "connect_timeout" => {
                let secs: u64 = v.parse().map_err(|_| {
                    err(format!("connect_timeout `{v}` is not a number of seconds"))
                })?;
                if secs > MAX_CONNECT_TIMEOUT {
                    return Err(err(format!(
                        "connect_timeout `{v}` is more than {MAX_CONNECT_TIMEOUT} seconds"
                    )));
                }
                connect_timeout = Duration::from_secs(secs.max(1));
            }
            other => {
                return Err(err(format!(
                    "`{other}` (client certificates) is not supported"
                )))
            }
        }
    }
    if !is_url && rest.trim().is_empty() {
        return Err(err("empty connection string".into()));
    }
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| err(e.to_string()))?;
    if config.get_application_name().is_none() {
        config.application_name("drillbook");
    }
    if config.get_user().is_none() {
        if let Ok(user) = std::env::var("PGUSER").or_else(|_| std::env::var("USER")) {
            config.user(&user);
        }
    }
    if config.get_hosts().is_empty() {
        config.host(std::env::var("PGHOST").unwrap_or_else(|_| "localhost".into()));
    }
    config.connect_timeout(connect_timeout);
    Ok(ConnSpec {
        config,
        ssl,
        root_cert,
        connect_timeout,
        display: shown,
    })
}

/// Removes our parameters from a URL's query string.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), Vec::new());
    };
    let mut keep = Vec::new();
    let mut ours = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if OURS.contains(&k) {
            ours.push((k.to_owned(), percent_decode(v)));
        } else {
            keep.push(pair);
        }
    }
    let rest = if keep.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", keep.join("&"))
    };
    (rest, ours)
}

/// `%XX` decoded; a `%` not followed by two hex digits (`%€`, `%2`, `%zz`) is kept as is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // on bytes, not on the text: what follows a `%` may be part of a wider character
        let pair = bytes.get(i + 1..i + 3);
        if let (b'%', Some(&[hi, lo])) = (bytes[i], pair) {
            if let (Some(hi), Some(lo)) = (hex_digit(hi), hex_digit(lo)) {
                out.push((hi << 4) | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Removes our parameters from a `key=value` string (values may be single-quoted).
fn split_kv(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut keep = Vec::new();
    let mut ours = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("expected `=` after `{key}`"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut raw = String::new();
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            raw.push(chars.next().unwrap_or('\''));
            let mut closed = false;
            while let Some(c) = chars.next() {
                raw.push(c);
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            raw.push(n);
                            value.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("unterminated quote in the value of `{key}`"));
            }
        } else {
            raw = std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect();
            value.clone_from(&raw);
        }
        if OURS.contains(&key.as_str()) {
            ours.push((key, value));
        } else {
            keep.push(format!("{key}={raw}"));
        }
    }
    Ok((keep.join(" "), ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_key_values() {
        let s = parse("postgresql://app:s3cret@db.example.com:6543/prod?sslmode=verify-full&channel_binding=require&connect_timeout=3").expect("valid");
        assert_eq!(s.ssl, SslMode::VerifyFull);
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!(s.config.get_dbname(), Some("prod"));
        assert_eq!(s.config.get_ports(), &[6543]);
        assert_eq!(s.config.get_application_name(), Some("drillbook"));
        assert!(!s.display.contains("s3cret"), "{}", s.display);

        let s = parse(
            "host=127.0.0.1 port=5433 user=postgres password='p w\\'x' dbname=x sslmode=disable",
        )
        .expect("valid");
        assert_eq!(s.ssl, SslMode::Disable);
        assert_eq!(s.config.get_password(), Some(&b"p w'x"[..]));
        assert!(!s.display.contains("p w"), "{}", s.display);
    }

    #[test]
    fn bad_strings_are_named_without_their_password() {
        let e =
            parse("postgres://u:hunter2@h/db?sslmode=verify-everything").expect_err("bad sslmode");
        assert!(
            e.to_string()
                .contains("unknown sslmode `verify-everything`"),
            "{e}"
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(parse("host=x password='unterminated").is_err());
        assert!(parse("postgres://u@h/db?sslcert=/x.pem").is_err());
    }

    #[test]
    fn a_percent_sign_without_two_hex_digits_stays_as_written() {
        for (text, decoded) in [
            ("%€", "%€"),
            ("%€2F", "%€2F"),
            ("€%", "€%"),
            ("%", "%"),
            ("%2", "%2"),
            ("%zz", "%zz"),
            ("%+1", "%+1"),
            ("a%2Fb", "a/b"),
            ("%E2%82%AC", "€"),
            ("%e2%82", "\u{FFFD}"),
        ] {
            assert_eq!(percent_decode(text), decoded, "{text}");
        }
        let e = parse("postgres://u@h/db?sslmode=%€").expect_err("no such mode");
        assert!(e.to_string().contains("unknown sslmode `%€`"), "{e}");
        let s = parse("postgres://u@h/db?sslrootcert=%2Ftmp%2F%E2%82%AC.pem").expect("valid");
        assert_eq!(s.root_cert, Some(PathBuf::from("/tmp/€.pem")));
    }

    #[test]
    fn connect_timeout_is_at_most_an_hour() {
        let s = parse("host=h connect_timeout=3600").expect("an hour");
        assert_eq!(s.connect_timeout, Duration::from_secs(3600));
        for huge in ["3601", "18446744073709551615"] {
            let e = parse(&format!("postgres://u@h/db?connect_timeout={huge}")).expect_err(huge);
            assert!(e.to_string().contains("is more than 3600 seconds"), "{e}");
        }
    }
}

#[cfg(test)]
mod socket_tests {
    use super::*;

    #[test]
    fn unix_socket_urls() {
        let s =
            parse("postgresql://postgres@%2Ftmp%2Fdrillbook-x%2Fsocket:54321/shop?sslmode=disable")
                .expect("valid");
        assert_eq!(s.config.get_ports(), &[54321]);
        assert!(
            matches!(&s.config.get_hosts()[0], tokio_postgres::config::Host::Unix(p) if p.display().to_string() == "/tmp/drillbook-x/socket"),
            "{:?}",
            s.config.get_hosts()
        );
    }
}
