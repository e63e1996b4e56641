//! `http`: one HTTP request with an expected status; JSON fields of the response become
//! outputs.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{output, string_or_map, Effects, Measure, Output, Spec, Text};

/// `http: "https://…"` (a GET expecting 2xx) or the full form.
#[derive(Debug, Clone)]
pub enum Http {
    Get(String),
    Full(Box<HttpSpec>),
}

string_or_map!(
    Http,
    Get,
    Full(Box<HttpSpec>),
    "An HTTP request: a URL to GET, or `{method, url, headers, json, body, expect, capture}`."
);

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `GET` (default), `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`.
    #[serde(default = "get")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: IndexMap<String, Text>,
    /// A JSON body (sets `Content-Type: application/json`).
    pub json: Option<serde_json::Value>,
    /// A raw text body.
    pub body: Option<String>,
    /// Statuses that count as success; default any 2xx.
    pub expect: Option<Vec<u16>>,
    /// Outputs taken from the JSON response by JSON Pointer, e.g. `{id: /branch/id}`.
    #[serde(default)]
    pub capture: IndexMap<String, String>,
}

fn get() -> String {
    "GET".into()
}

impl HttpSpec {
    /// `http: URL`: a GET expecting any 2xx.
    pub fn get(url: &str) -> HttpSpec {
        HttpSpec {
            method: get(),
            url: url.to_owned(),
            headers: IndexMap::new(),
            json: None,
            body: None,
            expect: None,
            capture: IndexMap::new(),
        }
    }
}

impl Spec for Http {
    const OUTPUTS: &'static [Output] = &[
        output("status", "the HTTP status code"),
        output("body", "the response body as text (the first 16 KiB)"),
        output("json", "the response body parsed as JSON, when it is JSON"),
    ];
    const MEASURE: Option<Measure<'static>> = None;
    const PAYLOAD_OUTPUTS: Option<&'static str> =
        Some("each name in `capture`, the JSON value at its pointer");

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    /// Each `capture` name is an output.
    fn payload_outputs(&self) -> Vec<&str> {
        match self {
            Http::Get(_) => Vec::new(),
            Http::Full(s) => s.capture.keys().map(String::as_str).collect(),
        }
    }

    fn summary(&self) -> String {
        match self {
            Http::Get(url) => format!("GET {}", crate::redact::mask_passwords(url)),
            Http::Full(s) => format!(
                "{} {}",
                s.method.to_uppercase(),
                crate::redact::mask_passwords(&s.url)
            ),
        }
    }
}
