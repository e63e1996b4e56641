//! A client for Neon's control-plane API v2 (`NEON_API_URL`, default
//! `https://console.neon.tech/api/v2`; `Authorization: Bearer $NEON_API_KEY`).
//!
//! What it promises, from Neon's own rules:
//! - `423 Locked` and `503` are retried for every method, with exponential backoff; `429`
//!   waits for `Retry-After` (seconds or an HTTP date) when sent, else backs off.
//! - GETs are retried on network errors and other 5xx. A POST/PATCH/PUT/DELETE whose
//!   response was lost is never sent again blindly: [`NeonError::Uncertain`] tells the caller
//!   to re-read state first (the step kinds do: a branch is looked up by its unique name).
//! - Every mutating call waits until the operations it started have finished; a `failed`,
//!   `error` or `cancelled` operation is an error naming it. Mutations on one project are
//!   serialized within the process (Neon refuses overlapping ones with 423 anyway).
//! - The API key is never part of any message, log or record.

pub mod types;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

pub use types::*;

/// The default API base.
pub const DEFAULT_URL: &str = "https://console.neon.tech/api/v2";

/// How long the operations of one call may run before drillbook gives up on them.
const OPERATIONS_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// The first pause before polling an operation, and the step it grows by each poll.
const POLL_STEP: Duration = Duration::from_millis(100);
/// The pause the ramp stops at: an operation's end is noticed about half of it plus one
/// round trip later, at no more than 2.5 polls a second (Neon allows 700 requests a minute
/// per account).
const POLL_CAP: Duration = Duration::from_millis(400);
/// Past `POLL_CAP`, the pause is this fraction of the time waited: a long operation is
/// noticed within about 1% of its running time, and asked about less and less often.
const POLL_FRACTION: u32 = 50;
/// The longest pause between two polls.
const POLL_MAX: Duration = Duration::from_secs(10);
/// How long responses Neon says are always safe to retry (423, 503) and 429 are retried
/// (a branch's own operations may hold the project locked for a while).
const RETRY_DEADLINE: Duration = Duration::from_secs(5 * 60);
/// Attempts for a create refused with 503 (each after re-reading that nothing was created).
const RESEND_ATTEMPTS: u32 = 8;
/// Pages read from one list before giving up (a cursor that cycles must not loop forever).
const MAX_PAGES: usize = 1000;
/// Attempts for GETs after a network error or another 5xx.
const GET_ATTEMPTS: u32 = 4;
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(8);
/// The longest `Retry-After` honoured; longer asks are capped (the step timeout governs).
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
/// One request, response included (a hung connection is a network error, retried per the rules).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, thiserror::Error)]
pub enum NeonError {
    /// Configuration missing (no API key, bad URL).
    #[error("{0}")]
    Config(String),
    /// Neon answered with an error.
    #[error("Neon API {method} {path} → HTTP {status}: {message}{}", detail(.code, .request_id))]
    Api {
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// Neon could not be reached (nothing was sent, or a GET failed every attempt).
    #[error("cannot reach the Neon API at {} ({method} {path}): {reason}", crate::redact::mask_passwords(.base))]
    Network {
        base: String,
        method: String,
        path: String,
        reason: String,
    },
    /// A mutating request was sent but its response was lost: whether Neon acted is unknown.
    #[error("Neon API {method} {path}: the request was sent but no response came back ({reason}); not resent blindly")]
    Uncertain {
        method: String,
        path: String,
        reason: String,
    },
    /// An operation a call started ended badly, or never ended.
    #[error("Neon operation {id} ({action}) {status}{}", .error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Operation {
        id: String,
        action: String,
        status: String,
        error: Option<String>,
    },
    /// A response that is not what the API documents.
    #[error("Neon API {path}: unexpected response: {message}")]
    Decode { path: String, message: String },
}

fn detail(code: &str, request_id: &Option<String>) -> String {
    let mut parts = Vec::new();
    if !code.is_empty() {
        parts.push(format!("code {code}"));
    }
    if let Some(r) = request_id {
        parts.push(format!("request_id {r}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

impl NeonError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            NeonError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the run could not be carried out (auth, unreachable, Neon's own failure)
    /// rather than having found something wrong.
    pub fn is_unavailable(&self) -> bool {
        match self {
            NeonError::Config(_) | NeonError::Network { .. } | NeonError::Uncertain { .. } => true,
            // a plan limit stops the run before it could prove anything
            NeonError::Api { status, code, .. } => {
                matches!(status, 401 | 403 | 423 | 429)
                    || *status >= 500
                    || code.ends_with("BRANCHES_LIMIT_EXCEEDED")
            }
            // a response not as documented, or an operation that never ended
            NeonError::Decode { .. } => true,
            NeonError::Operation { status, .. } => status.starts_with("still "),
        }
    }
}

/// A Neon API client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    base: String,
    key: String,
    /// Where waiting for operations shows their status (hidden unless a terminal draws it).
    progress: crate::progress::Progress,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Per-project locks serializing this process's mutations.
fn project_lock(project: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(project.to_owned())
        .or_default()
        .clone()
}

fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1 << attempt.min(10));
    let capped = exp.min(BACKOFF_CAP);
    // a little jitter so parallel drills do not retry in lockstep
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    capped + Duration::from_millis(u64::from(nanos % 100))
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!(
        "drillbook-{}-{t:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The longest id accepted in a path (Neon's are about 20 to 40 characters).
const MAX_ID: usize = 100;

/// `http://` to this machine: 127.0.0.0/8, ::1 or `localhost`.
fn is_loopback(url: &reqwest::Url) -> bool {
    url.host_str().is_some_and(crate::http::is_loopback_host)
}

/// Percent-encodes a path segment or query value.
fn enc(text: &str) -> String {
    crate::http::percent_encode(text)
}

impl Client {
    /// From `NEON_API_KEY` and `NEON_API_URL`.
    pub fn from_env() -> Result<Client, NeonError> {
        let key = std::env::var("NEON_API_KEY").unwrap_or_default();
        if key.trim().is_empty() {
            return Err(NeonError::Config(
                "NEON_API_KEY is not set: create an API key in the Neon Console (Account settings → API keys) and export it".into(),
            ));
        }
        let base = std::env::var("NEON_API_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        Client::new(&base, key.trim())
    }

    /// A client of the API at `base`: `https://`, or `http://` on this machine only (a local
    /// fake or proxy), since the API key travels in every request.
    pub fn new(base: &str, key: &str) -> Result<Client, NeonError> {
        let base = base.trim().trim_end_matches('/').to_owned();
        let bad = |why: &str| {
            NeonError::Config(format!(
                "NEON_API_URL {why}, got `{}`",
                crate::redact::mask_passwords(&base)
            ))
        };
        let url = reqwest::Url::parse(&base)
            .map_err(|_| bad("must be an http(s) URL including /api/v2"))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(bad(
                    "must be https: plain http would send the API key in the clear (http is accepted for 127.0.0.1, ::1 and localhost only)",
                ))
            }
            _ => return Err(bad("must be an http(s) URL including /api/v2")),
        }
        Ok(Client {
            base,
            key: key.to_owned(),
            progress: crate::progress::Progress::hidden(),
        })
    }

    /// Shows the status of the operations it waits for on `progress`.
    pub fn with_progress(mut self, progress: crate::progress::Progress) -> Client {
        self.progress = progress;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// One call with Neon's retry rules. `path` is relative to the base and already encoded.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, NeonError> {
        self.call_retrying(method, path, query, body, true).await
    }

    /// [`Client::call`]; with `resend_on_503` false a 503 is returned to the caller instead of
    /// retried, for creates that must look before they send again (a proxy may answer 503
    /// after the request was carried out).
    async fn call_retrying(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        resend_on_503: bool,
    ) -> Result<Value, NeonError> {
        let safe = method == Method::GET;
        let mut attempt = 0u32;
        let mut get_failures = 0u32;
        let began = tokio::time::Instant::now();
        loop {
            let mut url = format!("{}{path}", self.base);
            if !query.is_empty() {
                let q: Vec<String> = query
                    .iter()
                    .map(|(k, v)| format!("{k}={}", enc(v)))
                    .collect();
                url.push('?');
                url.push_str(&q.join("&"));
            }
            let mut req = crate::http::client()
                .request(method.clone(), &url)
                .timeout(REQUEST_TIMEOUT)
                .bearer_auth(&self.key)
                .header(reqwest::header::ACCEPT, "application/json")
                .header("X-Request-ID", request_id());
            if let Some(b) = body {
                req = req.json(b);
            }
            let response = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    // never reached the server: safe to send again, whatever the method
                    let unsent = e.is_connect();
                    let reason = describe_reqwest(&e);
                    if (safe || unsent) && get_failures + 1 < GET_ATTEMPTS {
                        get_failures += 1;
                        tokio::time::sleep(backoff(get_failures)).await;
                        continue;
                    }
                    return Err(if safe || unsent {
                        NeonError::Network {
                            base: self.base.clone(),
                            method: method.to_string(),
                            path: path.to_owned(),
                            reason,
                        }
                    } else {
                        NeonError::Uncertain {
                            method: method.to_string(),
                            path: path.to_owned(),
                            reason,
                        }
                    });
                }
            };
            let status = response.status().as_u16();
            let wait = retry_after(response.headers());
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) if !safe => {
                    return Err(NeonError::Uncertain {
                        method: method.to_string(),
                        path: path.to_owned(),
                        reason: describe_reqwest(&e),
                    })
                }
                Err(e) => {
                    get_failures += 1;
                    if get_failures < GET_ATTEMPTS {
                        tokio::time::sleep(backoff(get_failures)).await;
                        continue;
                    }
                    return Err(NeonError::Network {
                        base: self.base.clone(),
                        method: method.to_string(),
                        path: path.to_owned(),
                        reason: describe_reqwest(&e),
                    });
                }
            };
            if (200..300).contains(&status) {
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_str(&text).map_err(|e| NeonError::Decode {
                    path: path.to_owned(),
                    message: format!("not JSON ({e})"),
                });
            }
            let always_retryable =
                matches!(status, 423 | 429) || (status == 503 && (safe || resend_on_503));
            if always_retryable && began.elapsed() < RETRY_DEADLINE {
                let delay = wait.map_or_else(|| backoff(attempt), |w| w.min(RETRY_AFTER_CAP));
                attempt += 1;
                tracing_note(&format!(
                    "Neon API {method} {path} → {status}; retrying in {}",
                    crate::duration::Duration(delay)
                ));
                tokio::time::sleep(delay).await;
                continue;
            }
            if safe && status >= 500 && get_failures + 1 < GET_ATTEMPTS {
                get_failures += 1;
                tokio::time::sleep(backoff(get_failures)).await;
                continue;
            }
            let err: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let field = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_owned);
            return Err(NeonError::Api {
                method: method.to_string(),
                path: path.to_owned(),
                status,
                code: field("code").unwrap_or_default(),
                message: field("message").unwrap_or_else(|| {
                    let t = text.trim();
                    if t.is_empty() {
                        reqwest::StatusCode::from_u16(status)
                            .ok()
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("error")
                            .to_owned()
                    } else {
                        t.chars().take(300).collect()
                    }
                }),
                request_id: field("request_id"),
            });
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, NeonError> {
        self.call(Method::GET, path, query, None).await
    }

    /// A mutating call on `project`, serialized with this process's other mutations there,
    /// that returns once every operation it started has finished.
    pub async fn mutate(
        &self,
        project: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, NeonError> {
        self.mutate_retrying(project, method, path, query, body, true)
            .await
    }

    async fn mutate_retrying(
        &self,
        project: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        resend_on_503: bool,
    ) -> Result<Value, NeonError> {
        let lock = project_lock(project);
        let _guard = lock.lock().await;
        let value = self
            .call_retrying(method, path, query, body, resend_on_503)
            .await?;
        let ops: Vec<Operation> = value
            .get("operations")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| NeonError::Decode {
                path: path.to_owned(),
                message: format!("operations: {e}"),
            })?
            .unwrap_or_default();
        self.wait_operations(project, &ops).await?;
        Ok(value)
    }

    /// A mutation that must not happen twice (a create, a restore). Neon's retryable answers
    /// (423, 429) are retried as always; after a 503, another server error or a lost
    /// response, `happened` re-reads state first: `Ok(None)` when the change turns out to
    /// have been made (the caller reads the result back), a resend when a 503 left nothing
    /// behind, the error otherwise.
    pub async fn mutate_checked<F, Fut>(
        &self,
        project: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        happened: F,
    ) -> Result<Option<Value>, NeonError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool, NeonError>>,
    {
        let mut attempt = 0;
        loop {
            match self
                .mutate_retrying(project, method.clone(), path, query, body, false)
                .await
            {
                Ok(v) => return Ok(Some(v)),
                Err(e)
                    if matches!(e, NeonError::Uncertain { .. })
                        || e.status().is_some_and(|s| s >= 500) =>
                {
                    if happened().await? {
                        return Ok(None);
                    }
                    if e.status() != Some(503) || attempt + 1 >= RESEND_ATTEMPTS {
                        return Err(e);
                    }
                    tracing_note(&format!(
                        "Neon API {method} {path} → 503; nothing was changed, sending it again"
                    ));
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Polls each operation until it has finished; a failed one is an error naming it. The
    /// first operation is asked about after [`poll_pause`]; each later one at once (its
    /// status in the response is as old as the wait for the ones before it), then after
    /// [`poll_pause`] again.
    pub async fn wait_operations(&self, project: &str, ops: &[Operation]) -> Result<(), NeonError> {
        let started = tokio::time::Instant::now();
        for (i, op) in ops.iter().enumerate() {
            let mut current = op.clone();
            let mut pauses = 0u32;
            let mut asked = false;
            let waiting = tokio::time::Instant::now();
            loop {
                if current.status.is_done() {
                    break;
                }
                if current.status.is_failure() {
                    return Err(NeonError::Operation {
                        id: current.id,
                        action: current.action,
                        status: current.status.as_str().to_owned(),
                        error: current.error,
                    });
                }
                if started.elapsed() > OPERATIONS_DEADLINE {
                    return Err(NeonError::Operation {
                        id: current.id,
                        action: current.action,
                        status: format!(
                            "still {} after {}",
                            current.status.as_str(),
                            crate::duration::human(OPERATIONS_DEADLINE)
                        ),
                        error: None,
                    });
                }
                self.progress.message(&format!(
                    "operation {} {}",
                    current.action,
                    current.status.as_str()
                ));
                if i == 0 || asked {
                    tokio::time::sleep(poll_pause(pauses, waiting.elapsed())).await;
                    pauses += 1;
                }
                asked = true;
                let v = self
                    .get(
                        &Client::project_path(project, &["operations", &op.id])?,
                        &[],
                    )
                    .await?;
                current = decode(&v, "operation", "operation")?;
            }
        }
        Ok(())
    }

    pub async fn project(&self, project: &str) -> Result<Project, NeonError> {
        let v = self.get(&Client::project_path(project, &[])?, &[]).await?;
        decode(&v, "project", "project")
    }

    /// Every branch (following `pagination.next`), optionally filtered by Neon's `search`.
    /// Read oldest first: paging by `updated_at` (the default) can skip a branch that changes
    /// while the list is read.
    pub async fn branches(
        &self,
        project: &str,
        search: Option<&str>,
    ) -> Result<Vec<Branch>, NeonError> {
        let mut q = vec![
            ("sort_by", "created_at".to_owned()),
            ("sort_order", "asc".to_owned()),
        ];
        if let Some(s) = search {
            q.push(("search", s.to_owned()));
        }
        let path = Client::project_path(project, &["branches"])?;
        self.pages(&path, q, 100, "branches", "/pagination/next")
            .await
    }

    /// Every operation of the project (following `pagination.cursor`), newest first.
    pub async fn operations(&self, project: &str) -> Result<Vec<Operation>, NeonError> {
        let path = Client::project_path(project, &["operations"])?;
        self.pages(&path, Vec::new(), 1000, "operations", "/pagination/cursor")
            .await
    }

    /// A paginated list: `items` of each page, the next cursor at `next` (sent back as
    /// `cursor`), until a short page, no cursor, a cursor seen before, or [`MAX_PAGES`].
    async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: Vec<(&str, String)>,
        limit: usize,
        items: &str,
        next: &str,
    ) -> Result<Vec<T>, NeonError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let mut q = query.clone();
            q.push(("limit", limit.to_string()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let v = self.get(path, &q).await?;
            let page: Vec<T> = decode(&v, items, path)?;
            let n = page.len();
            out.extend(page);
            let following = v
                .pointer(next)
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            match following {
                Some(c) if n == limit && seen.len() < MAX_PAGES && seen.insert(c.clone()) => {
                    cursor = Some(c);
                }
                _ => return Ok(out),
            }
        }
    }

    /// A branch by id (`br-…`) or exact name; the project's default branch for `None`.
    pub async fn find_branch(
        &self,
        project: &str,
        branch: Option<&str>,
    ) -> Result<Branch, NeonError> {
        let not_found = |what: String| NeonError::Api {
            method: "GET".into(),
            path: format!("/projects/{project}/branches"),
            status: 404,
            code: String::new(),
            message: what,
            request_id: None,
        };
        match branch {
            None => self
                .branches(project, None)
                .await?
                .into_iter()
                .find(|b| b.default)
                .ok_or_else(|| not_found("the project has no default branch".into())),
            Some(b) if b.starts_with("br-") => {
                let v = self
                    .get(&Client::project_path(project, &["branches", b])?, &[])
                    .await?;
                decode(&v, "branch", "branch")
            }
            Some(name) => self
                .branches(project, Some(name))
                .await?
                .into_iter()
                .find(|b| b.name == name)
                .ok_or_else(|| not_found(format!("no branch named `{name}` in project {project}"))),
        }
    }

    /// The branch with exactly this name, if any (for re-reading state after a lost
    /// response).
    pub async fn branch_named(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<Branch>, NeonError> {
        Ok(self
            .branches(project, Some(name))
            .await?
            .into_iter()
            .find(|b| b.name == name))
    }

    pub async fn branch_endpoints(
        &self,
        project: &str,
        branch_id: &str,
    ) -> Result<Vec<Endpoint>, NeonError> {
        let path = Client::project_path(project, &["branches", branch_id, "endpoints"])?;
        let v = self.get(&path, &[]).await?;
        decode(&v, "endpoints", &path)
    }

    /// Creates a branch (body as in `createProjectBranch`) and waits for its operations. A
    /// 503 is resent only after re-reading that no branch of that name exists; if one does,
    /// the 503 is returned and the caller adopts the branch.
    pub async fn create_branch(
        &self,
        project: &str,
        body: &Value,
    ) -> Result<BranchResponse, NeonError> {
        let path = Client::project_path(project, &["branches"])?;
        let name = body
            .pointer("/branch/name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let exists = || async {
            match &name {
                Some(n) => self.branch_named(project, n).await.map(|b| b.is_some()),
                None => Ok(false),
            }
        };
        let Some(v) = self
            .mutate_checked(project, Method::POST, &path, &[], Some(body), exists)
            .await?
        else {
            return Err(NeonError::Uncertain {
                method: "POST".into(),
                path,
                reason: "Neon answered with an error, but the branch exists".into(),
            });
        };
        serde_json::from_value(v).map_err(|e| NeonError::Decode {
            path,
            message: e.to_string(),
        })
    }

    /// Deletes a branch and waits for its operations; a branch already gone is fine.
    pub async fn delete_branch(&self, project: &str, branch_id: &str) -> Result<(), NeonError> {
        let path = Client::project_path(project, &["branches", branch_id])?;
        match self.mutate(project, Method::DELETE, &path, &[], None).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(NeonError::Uncertain { .. }) => {
                // re-read: gone means done; otherwise ask once more (deleting is idempotent)
                match self.get(&path, &[]).await {
                    Err(e) if e.status() == Some(404) => Ok(()),
                    _ => self
                        .mutate(project, Method::DELETE, &path, &[], None)
                        .await
                        .map(|_| ()),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub async fn connection_uri(
        &self,
        project: &str,
        branch_id: &str,
        database: &str,
        role: &str,
        pooled: bool,
    ) -> Result<String, NeonError> {
        let mut q = vec![
            ("branch_id", branch_id.to_owned()),
            ("database_name", database.to_owned()),
            ("role_name", role.to_owned()),
        ];
        if pooled {
            q.push(("pooled", "true".into()));
        }
        let path = Client::project_path(project, &["connection_uri"])?;
        let v = self.get(&path, &q).await?;
        v.get("uri")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| NeonError::Decode {
                path,
                message: "no `uri`".into(),
            })
    }

    /// The owner of `database` on a branch (the role to connect as when none is named).
    pub async fn database_owner(
        &self,
        project: &str,
        branch_id: &str,
        database: &str,
    ) -> Result<Option<String>, NeonError> {
        let path = Client::project_path(project, &["branches", branch_id, "databases"])?;
        let v = self.get(&path, &[]).await?;
        Ok(v.get("databases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|d| d.get("name").and_then(Value::as_str) == Some(database))
            .and_then(|d| d.get("owner_name").and_then(Value::as_str))
            .map(str::to_owned))
    }

    pub async fn snapshots(&self, project: &str) -> Result<Vec<Snapshot>, NeonError> {
        let path = Client::project_path(project, &["snapshots"])?;
        let v = self.get(&path, &[]).await?;
        decode(&v, "snapshots", &path)
    }

    pub async fn backup_schedule(
        &self,
        project: &str,
        branch_id: &str,
    ) -> Result<Vec<ScheduleItem>, NeonError> {
        let path = Client::project_path(project, &["branches", branch_id, "backup_schedule"])?;
        let v = self.get(&path, &[]).await?;
        if v.is_null() {
            return Ok(Vec::new());
        }
        decode(&v, "schedule", &path)
    }

    /// Builds `/projects/{p}/…`. Every segment must be an id as Neon writes them (letters,
    /// digits, `-`, `_`): a project id of `..` or one holding `/` would address another
    /// resource of the API, with the key's rights.
    pub fn project_path(project: &str, rest: &[&str]) -> Result<String, NeonError> {
        let mut p = String::from("/projects");
        for (i, segment) in std::iter::once(&project).chain(rest).enumerate() {
            let fits = !segment.is_empty()
                && segment.len() <= MAX_ID
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !fits {
                let what = if i == 0 { "project id" } else { "id" };
                let shown: String = segment.chars().take(MAX_ID).collect();
                return Err(NeonError::Config(format!(
                    "invalid Neon {what} `{shown}`: Neon ids hold letters, digits, `-` and `_` only (e.g. `shiny-wind-028834`)"
                )));
            }
            p.push('/');
            p.push_str(segment);
        }
        Ok(p)
    }
}

/// The pause before the next poll of an operation, `polls` polls and `waited` into waiting
/// for it: 100 ms, then 100 ms longer each poll up to 400 ms (most operations take
/// seconds), then a fiftieth of the time waited, at most 10 s.
pub fn poll_pause(polls: u32, waited: Duration) -> Duration {
    let ramp = POLL_STEP
        .saturating_mul(polls.saturating_add(1))
        .min(POLL_CAP);
    ramp.max(waited / POLL_FRACTION).min(POLL_MAX)
}

/// `value[key]` decoded as `T`.
pub fn decode<T: serde::de::DeserializeOwned>(
    value: &Value,
    key: &str,
    path: &str,
) -> Result<T, NeonError> {
    let inner = value.get(key).cloned().unwrap_or(Value::Null);
    serde_json::from_value(inner).map_err(|e| NeonError::Decode {
        path: path.to_owned(),
        message: format!("`{key}`: {e}"),
    })
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Retry notices go to stderr, where the operator sees progress.
fn tracing_note(text: &str) {
    eprintln!("  … {}", crate::controls::visible(text));
}

/// An empty JSON object (for calls whose body is optional).
pub fn empty() -> Value {
    json!({})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_ramp_to_400_ms_then_ease_off_with_the_time_waited() {
        let ms = |polls, waited_ms| poll_pause(polls, Duration::from_millis(waited_ms)).as_millis();
        let ramp: Vec<u128> = (0..7).map(|p| ms(p, 0)).collect();
        assert_eq!(ramp, [100, 200, 300, 400, 400, 400, 400]);
        // 400 ms until 20 s of waiting, then 2% of the time waited, at most 10 s
        assert_eq!(ms(40, 20_000), 400);
        assert_eq!(ms(60, 60_000), 1200);
        assert_eq!(ms(200, 15 * 60_000), 10_000);
        // the polls of a whole 15-minute wait stay well inside Neon's 700 requests a minute
        let (mut waited, mut polls) = (Duration::ZERO, 0u32);
        while waited < OPERATIONS_DEADLINE {
            waited += poll_pause(polls, waited);
            polls += 1;
        }
        assert!(polls < 300, "{polls} polls in 15 minutes");
        let first_minute = (0u32..)
            .scan(Duration::ZERO, |t, p| {
                *t += poll_pause(p, *t);
                (*t <= Duration::from_secs(60)).then_some(())
            })
            .count();
        assert!(
            first_minute <= 120,
            "{first_minute} polls in the first minute"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let at = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(reqwest::header::RETRY_AFTER, at.parse().expect("header"));
        let w = retry_after(&h).expect("date");
        assert!(
            w > Duration::from_secs(25) && w <= Duration::from_secs(30),
            "{w:?}"
        );
    }

    #[test]
    fn errors_name_status_code_and_request_id_but_never_the_key() {
        let e = NeonError::Api {
            method: "POST".into(),
            path: "/projects/p/branches".into(),
            status: 422,
            code: "BRANCHES_LIMIT_EXCEEDED".into(),
            message: "branches limit exceeded".into(),
            request_id: Some("r-1".into()),
        };
        assert_eq!(
            e.to_string(),
            "Neon API POST /projects/p/branches → HTTP 422: branches limit exceeded (code BRANCHES_LIMIT_EXCEEDED, request_id r-1)"
        );
        // a plan limit: the run could not be carried out
        assert!(e.is_unavailable());
        let out_of_window = NeonError::Api {
            method: "POST".into(),
            path: "/projects/p/branches".into(),
            status: 400,
            code: String::new(),
            message: "timestamp is outside the restore window".into(),
            request_id: None,
        };
        assert!(!out_of_window.is_unavailable());
        assert_eq!(
            out_of_window.to_string(),
            "Neon API POST /projects/p/branches → HTTP 400: timestamp is outside the restore window"
        );
        let c = Client::new("http://127.0.0.1:1/api/v2", "secret-key").expect("client");
        assert!(!format!("{c:?}").contains("secret-key"));
    }

    #[test]
    fn plain_http_reaches_this_machine_only() {
        for ok in [
            "https://console.neon.tech/api/v2",
            "https://neon.internal.example:8443/api/v2/",
            "http://127.0.0.1:9/api/v2",
            "http://127.8.9.10/api/v2",
            "http://[::1]:8080/api/v2",
            "http://localhost:3000/api/v2",
            "HTTP://LocalHost/api/v2",
        ] {
            assert!(Client::new(ok, "k").is_ok(), "{ok}");
        }
        for bad in [
            "http://console.neon.tech/api/v2",
            "http://127.0.0.1.nip.io/api/v2",
            "http://localhost.example.com/api/v2",
            "http://0.0.0.0:9/api/v2",
            "http://10.1.2.3/api/v2",
            "http://[::ffff:127.0.0.1]/api/v2",
            "http://user:hunter2@neon.example.com/api/v2",
        ] {
            let e = Client::new(bad, "k").expect_err(bad).to_string();
            assert!(e.contains("NEON_API_URL must be https"), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        for bad in [
            "ftp://neon.example.com/api/v2",
            "console.neon.tech/api/v2",
            "http://",
            "",
        ] {
            let e = Client::new(bad, "k").expect_err(bad).to_string();
            assert!(e.contains("must be an http(s) URL"), "{bad}: {e}");
        }
    }

    #[test]
    fn path_segments_are_ids_or_refused() {
        assert_eq!(
            Client::project_path("shiny-wind-028834", &["branches", "br-a_1", "restore"])
                .expect("ids"),
            "/projects/shiny-wind-028834/branches/br-a_1/restore"
        );
        for bad in [
            "..", ".", "", "a/b", "../other", "%2e%2e", "p?x=1", "p#x", "é", "p q",
        ] {
            let e = Client::project_path(bad, &["branches"]).expect_err(bad);
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid Neon project id `{bad}`")),
                "{e}"
            );
            assert!(
                Client::project_path("p", &["branches", bad]).is_err(),
                "{bad}"
            );
        }
        let long = "a".repeat(MAX_ID + 1);
        assert!(Client::project_path(&long, &[]).is_err());
    }
}
