//! `http`: sends the request. Network failures are "could not run" (exit 3), an unexpected
//! status is a failure.

use super::{Run, StepCx, StepError};
use crate::kind::http::{Http, HttpSpec};
use crate::record::Outputs;

/// Response bodies kept as the `body` output, at most.
const BODY_BYTES: usize = 16 * 1024;

impl Run for Http {
    async fn run<'a>(&'a self, _cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let get;
        let spec = match self {
            Http::Get(url) => {
                get = HttpSpec::get(url);
                &get
            }
            Http::Full(s) => s,
        };
        let method = reqwest::Method::from_bytes(spec.method.to_uppercase().as_bytes())
            .map_err(|_| StepError::failed(format!("invalid HTTP method `{}`", spec.method)))?;
        let shown = crate::redact::mask_passwords(&spec.url);
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
