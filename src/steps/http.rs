//! `http`: one HTTP request with an expected status; JSON fields of the response become
//! outputs. Network failures are "could not run" (exit 3), an unexpected status is a failure.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{string_or_map, Outputs, Spec, StepCx, StepError, Text};

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

/// Response bodies kept as the `body` output, at most.
const BODY_BYTES: usize = 16 * 1024;

impl Spec for Http {
    fn summary(&self) -> String {
        match self {
            Http::Get(url) => format!("GET {}", crate::redact::mask_url_passwords(url)),
            Http::Full(s) => format!(
                "{} {}",
                s.method.to_uppercase(),
                crate::redact::mask_url_passwords(&s.url)
            ),
        }
    }

    async fn run<'a>(&'a self, _cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let spec = match self {
            Http::Get(url) => &HttpSpec {
                method: get(),
                url: url.clone(),
                headers: IndexMap::new(),
                json: None,
                body: None,
                expect: None,
                capture: IndexMap::new(),
            },
            Http::Full(s) => s,
        };
        let method = reqwest::Method::from_bytes(spec.method.to_uppercase().as_bytes())
            .map_err(|_| StepError::failed(format!("invalid HTTP method `{}`", spec.method)))?;
        let shown = crate::redact::mask_url_passwords(&spec.url);
        let url = reqwest::Url::parse(&spec.url)
            .map_err(|e| StepError::failed(format!("invalid URL `{shown}`: {e}")))?;
        let mut req = crate::http::client().request(method.clone(), url);
        for (k, v) in &spec.headers {
            req = req.header(k, &v.0);
        }
        if let Some(json) = &spec.json {
            req = req.json(json);
        } else if let Some(body) = &spec.body {
            req = req.body(body.clone());
        }
        let resp = req.send().await.map_err(|e| {
            StepError::unavailable(format!(
                "{method} {shown}: {}",
                crate::diagnostic::error_chain(&e)
            ))
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            StepError::unavailable(format!("reading the response of {method} {shown}: {e}"))
        })?;
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_BYTES)]).into_owned();
        let mut outputs = Outputs::new();
        outputs.insert("status".into(), status.into());
        outputs.insert("body".into(), text.clone().into());
        let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let ok = match &spec.expect {
            Some(codes) => codes.contains(&status),
            None => (200..300).contains(&status),
        };
        if !ok {
            let expected = spec.expect.as_ref().map_or("2xx".to_owned(), |c| {
                c.iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            });
            return Err(StepError::failed(format!(
                "{method} {shown} answered {status}, expected {expected}"
            ))
            .with_outputs(outputs));
        }
        if let Some(json) = &json {
            outputs.insert("json".into(), json.clone());
        }
        for (name, pointer) in &spec.capture {
            let value = json.as_ref().and_then(|j| j.pointer(pointer));
            match value {
                Some(v) => {
                    outputs.insert(name.clone(), v.clone());
                }
                None => {
                    return Err(StepError::failed(format!(
                        "capture `{name}`: the response has no JSON value at `{pointer}`"
                    ))
                    .with_outputs(outputs))
                }
            }
        }
        Ok(outputs)
    }
}
