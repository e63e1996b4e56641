//! Alerts and heartbeats: after a run or a check, each `alerts:` destination whose `on:`
//! events match gets one message — Slack (Block Kit), a generic JSON webhook, a Better Stack
//! heartbeat (ping on success, `/fail` on failure), PagerDuty Events v2 (trigger on failure,
//! resolve on recovery, one dedup key per runbook and subject), email through SMTP (lettre;
//! STARTTLS required except to a loopback server).
//!
//! A notifier that fails is retried (3 attempts), then reported — it never changes the exit
//! code of what it reports on. The state of each subject (failing since when, when it was last
//! sent) is kept in `alerts.json` beside the history, for `recovered` and `repeat:`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::record::Notification;
use crate::runbook::raw::AlertKind;
use crate::runbook::{Alert, AlertEvent, Runbook};

/// The default PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
const ATTEMPTS: u32 = 3;

/// What happened, for the messages.
#[derive(Debug, Clone)]
pub struct Notice {
    pub runbook: String,
    /// The procedure id, or `checks` for a health-check run.
    pub subject: String,
    /// `drill`, `recovery` or `check`.
    pub kind: String,
    /// true when it passed (OK), false when it failed (CRITICAL/UNKNOWN, or a failed run).
    pub ok: bool,
    /// A WARNING (checks): reported as `warning`, not as failure.
    pub warning: bool,
    /// One line: the verdict or status and why.
    pub summary: String,
    /// Details, one per line (failing steps or checks).
    pub details: Vec<String>,
    /// The run id, when a run.
    pub run_id: Option<String>,
    /// Failing since (filled in from the alert state; None when not failing).
    pub since: Option<DateTime<Utc>>,
    /// Where the drill log is (a path), when one was written.
    pub log: Option<String>,
    pub operator: String,
}

/// Per subject: failing since, last sent per event.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SubjectState {
    /// Since when it has not been OK (a failure or a warning); None while OK.
    failing_since: Option<DateTime<Utc>>,
    /// When each destination (`<kind>#<index>`) last got a failure message.
    #[serde(default)]
    last_sent: BTreeMap<String, DateTime<Utc>>,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("alerts.json")
}

fn load_state(dir: &Path) -> BTreeMap<String, SubjectState> {
    std::fs::read_to_string(state_path(dir))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn save_state(dir: &Path, state: &BTreeMap<String, SubjectState>) {
    let _ = std::fs::create_dir_all(dir);
    let tmp = dir.join("alerts.json.tmp");
    if let Ok(text) = serde_json::to_string_pretty(state) {
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, state_path(dir));
        }
    }
}

/// Renders an alert field (`{{ env.SLACK_WEBHOOK_URL }}`) with the process environment.
fn render(text: &str) -> Result<String, String> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let tpl = crate::template::environment();
    crate::template::render(
        &tpl,
        text,
        &minijinja::Value::from_serialize(json!({ "env": env })),
    )
    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    .map_err(|e| crate::template::describe_error(&e))
}

fn destination(kind: &AlertKind) -> &'static str {
    match kind {
        AlertKind::Slack(_) => "slack",
        AlertKind::Webhook(_) => "webhook",
        AlertKind::Betterstack(_) => "betterstack",
        AlertKind::Pagerduty(_) => "pagerduty",
        AlertKind::Email(_) => "email",
    }
}

fn event_name(e: AlertEvent) -> &'static str {
    match e {
        AlertEvent::Failure => "failure",
        AlertEvent::Success => "success",
        AlertEvent::Warning => "warning",
        AlertEvent::Recovered => "recovered",
    }
}

/// Text from a run (a step's output, an error, a runbook's or operator's name) as Slack
/// message text: `&`, `<` and `>` escaped, as Slack's formatting rules ask, so nothing in it
/// is read as a mention (`<!channel>`), a link (`<https://…|label>`) or an entity.
fn slack_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Block Kit message about `n`; every text from the run is escaped ([`slack_text`]), and
/// only drillbook's own markup (`*Runbook*`, the run id's code span) is mrkdwn.
fn slack_body(n: &Notice, event: AlertEvent) -> Value {
    let icon = match event {
        AlertEvent::Failure => ":red_circle:",
        AlertEvent::Warning => ":warning:",
        AlertEvent::Recovered => ":large_green_circle:",
        AlertEvent::Success => ":white_check_mark:",
    };
    let title = slack_text(&format!(
        "{icon} {} {}: {} / {}",
        n.kind,
        event_name(event),
        n.runbook,
        n.subject
    ));
    let summary = slack_text(&n.summary);
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Runbook*\n{}", slack_text(&n.runbook))}),
        json!({"type": "mrkdwn", "text": format!("*{}*\n{}", if n.kind == "check" { "Checks" } else { "Procedure" }, slack_text(&n.subject))}),
    ];
    if let Some(id) = &n.run_id {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Run*\n`{}`", slack_text(id))}));
    }
    if let Some(since) = n.since {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Failing since*\n{}", crate::timestamp::rfc3339(since))}));
    }
    fields.push(
        json!({"type": "mrkdwn", "text": format!("*Operator*\n{}", slack_text(&n.operator))}),
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title.chars().take(150).collect::<String>()}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": summary}, "fields": fields}),
    ];
    if !n.details.is_empty() {
        let list: Vec<String> = n
            .details
            .iter()
            .take(10)
            .map(|d| format!("• {}", slack_text(d)))
            .collect();
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": list.join("\n")}}));
    }
    if let Some(log) = &n.log {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Drill log: `{}`", slack_text(log))}]}));
    }
    json!({ "text": format!("{title}: {summary}"), "blocks": blocks })
}

fn webhook_body(n: &Notice, event: AlertEvent) -> Value {
    json!({
        "source": "drillbook",
        "event": event_name(event),
        "runbook": n.runbook,
        "subject": n.subject,
        "kind": n.kind,
        "ok": n.ok,
        "summary": n.summary,
        "details": n.details,
        "run_id": n.run_id,
        "log": n.log,
        "operator": n.operator,
        "failing_since": n.since.map(crate::timestamp::rfc3339),
        "at": crate::timestamp::rfc3339(Utc::now()),
    })
}

fn pagerduty_body(key: &str, n: &Notice, event: AlertEvent) -> Value {
    let dedup = format!("drillbook:{}:{}", n.runbook, n.subject);
    if event == AlertEvent::Recovered {
        return json!({ "routing_key": key, "event_action": "resolve", "dedup_key": dedup });
    }
    json!({
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {
            "summary": format!("drillbook {} failed: {} / {}: {}", n.kind, n.runbook, n.subject, n.summary).chars().take(1024).collect::<String>(),
            "source": n.operator,
            "severity": if event == AlertEvent::Warning { "warning" } else { "critical" },
            "component": n.runbook,
            "group": n.subject,
            "class": n.kind,
            "custom_details": { "details": n.details, "run_id": n.run_id, "log": n.log },
        },
    })
}

/// How long one delivery may take: `DRILLBOOK_NOTIFY_TIMEOUT` seconds, default 10. Like a
/// value that is not a number, one past an hour (`1e300` is no Duration) is not used.
fn timeout() -> Duration {
    timeout_from(std::env::var("DRILLBOOK_NOTIFY_TIMEOUT").ok().as_deref())
}

fn timeout_from(setting: Option<&str>) -> Duration {
    setting
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0 && *s <= 3600.0)
        .map_or(Duration::from_secs(10), Duration::from_secs_f64)
}

/// One request with retries; Ok(()) on a 2xx.
async fn deliver(req: impl Fn() -> reqwest::RequestBuilder) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        match req().timeout(timeout()).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) if e.is_timeout() => last = "timed out".into(),
            Err(e) if e.is_connect() => last = "connection failed".into(),
            Err(_) => last = "request failed".into(),
        }
    }
    Err(format!("{last} after {ATTEMPTS} attempts"))
}

async fn send_one(alert: &Alert, n: &Notice, event: AlertEvent) -> Result<(), String> {
    let http = crate::http::client();
    match &alert.kind {
        AlertKind::Slack(s) => {
            let url = render(&s.webhook)?;
            let body = slack_body(n, event);
            deliver(|| http.post(&url).json(&body)).await
        }
        AlertKind::Webhook(w) => {
            let url = render(&w.url)?;
            let body = webhook_body(n, event);
            let headers: Vec<(String, String)> = w
                .headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), render(v)?)))
                .collect::<Result<_, String>>()?;
            deliver(|| {
                let mut r = http.post(&url).json(&body);
                for (k, v) in &headers {
                    r = r.header(k, v);
                }
                r
            })
            .await
        }
        AlertKind::Betterstack(b) => {
            let base = render(&b.heartbeat)?;
            let url = if n.ok {
                base
            } else {
                format!("{}/fail", base.trim_end_matches('/'))
            };
            deliver(|| http.post(&url)).await
        }
        AlertKind::Pagerduty(p) => {
            let key = render(&p.routing_key)?;
            let url = match &p.url {
                Some(u) => render(u)?,
                None => PAGERDUTY_URL.to_owned(),
            };
            let body = pagerduty_body(&key, n, event);
            deliver(|| http.post(&url).json(&body)).await
        }
        AlertKind::Email(e) => {
            let smtp = render(&e.smtp)?;
            let from = render(&e.from)?;
            let to: Vec<String> = e.to.iter().map(|t| render(t)).collect::<Result<_, _>>()?;
            send_email(&smtp, &from, &to, n, event).await
        }
    }
}

/// The plain-text email about `n`: (subject, body).
fn email_text(n: &Notice, event: AlertEvent) -> (String, String) {
    let subject = format!(
        "[drillbook] {} {}: {} / {}",
        n.kind,
        event_name(event),
        n.runbook,
        n.subject
    );
    let mut body = format!("{}\n\nRunbook: {}\n", n.summary, n.runbook);
    body.push_str(&format!(
        "{}: {}\n",
        if n.kind == "check" {
            "Checks"
        } else {
            "Procedure"
        },
        n.subject
    ));
    if let Some(id) = &n.run_id {
        body.push_str(&format!("Run: {id}\n"));
    }
    if let Some(since) = n.since {
        body.push_str(&format!(
            "Failing since: {}\n",
            crate::timestamp::rfc3339(since)
        ));
    }
    body.push_str(&format!("Operator: {}\n", n.operator));
    if let Some(log) = &n.log {
        body.push_str(&format!("Drill log: {log}\n"));
    }
    if !n.details.is_empty() {
        body.push_str("\nDetails:\n");
        for d in &n.details {
            body.push_str(&format!("- {d}\n"));
        }
    }
    (subject, body)
}

/// `smtp://` with STARTTLS required unless the URL says otherwise or the server is on
/// loopback (a local relay, tests).
fn smtp_url(smtp: &str) -> String {
    let mut url = smtp.to_owned();
    let loopback = url
        .split("://")
        .nth(1)
        .map(|rest| rest.rsplit('@').next().unwrap_or(rest))
        .is_some_and(|host| {
            host.starts_with("127.0.0.1")
                || host.starts_with("localhost")
                || host.starts_with("[::1]")
        });
    if url.starts_with("smtp://") && !url.contains("tls=") && !loopback {
        url.push_str(if url.contains('?') {
            "&tls=required"
        } else {
            "?tls=required"
        });
    }
    url
}

/// Sends the email through `smtp` (`smtp://user:pass@host:587`: STARTTLS is required, except to
/// a loopback server; `smtps://…:465`: TLS from the start).
async fn send_email(
    smtp: &str,
    from: &str,
    to: &[String],
    n: &Notice,
    event: AlertEvent,
) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp_url(smtp))
        .map_err(|_| "the SMTP URL is not valid (smtp://user:password@host:587)".to_owned())?
        .timeout(Some(timeout()))
        .build();
    let (subject, body) = email_text(n, event);
    let mut builder = Message::builder()
        .from(
            from.parse()
                .map_err(|e| format!("`from` is not an address: {e}"))?,
        )
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        builder = builder.to(t
            .parse()
            .map_err(|e| format!("`to` {t} is not an address: {e}"))?);
    }
    let message = builder.body(body).map_err(|e| e.to_string())?;
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        match transport.send(message.clone()).await {
            Ok(_) => return Ok(()),
            // the error text may name the server, never the password (not part of it)
            Err(e) => {
                last = if e.is_permanent() {
                    "rejected by the server".into()
                } else {
                    "SMTP failed".into()
                }
            }
        }
    }
    Err(format!("{last} after {ATTEMPTS} attempts"))
}

/// How long all of a run's alerts may take together: `DRILLBOOK_NOTIFY_DEADLINE` seconds,
/// default 60. What is not sent by then is recorded as not sent.
fn deadline() -> Duration {
    std::env::var("DRILLBOOK_NOTIFY_DEADLINE")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0 && s.is_finite() && *s < 86_400.0)
        .map_or(Duration::from_secs(60), Duration::from_secs_f64)
}

/// Sends what the runbook's alerts ask for about `n`; `state_dir` keeps the per-subject
/// state (`recovered`, `repeat:`). Never fails: every outcome is returned (and printed).
/// All of it ends by the [`deadline`], or at once when `stop` fires (an interrupt): the
/// destinations not reached are recorded as not sent.
pub async fn notify(
    runbook: &Runbook,
    n: &Notice,
    state_dir: &Path,
    stop: &crate::cancel::Cancel,
) -> Vec<Notification> {
    if runbook.alerts.is_empty() {
        return Vec::new();
    }
    let until = tokio::time::Instant::now() + deadline();
    let now = Utc::now();
    let key = format!("{}/{}", n.runbook, n.subject);
    let mut state = load_state(state_dir);
    let previous = state.get(&key).cloned().unwrap_or_default();
    let was_failing = previous.failing_since.is_some();
    let mut n = n.clone();
    if !n.ok || n.warning {
        n.since = previous.failing_since.or(Some(now));
    }
    let n = &n;
    // the events this outcome is
    let mut events = Vec::new();
    if n.ok && !n.warning {
        events.push(AlertEvent::Success);
        if was_failing {
            events.push(AlertEvent::Recovered);
        }
    } else if n.warning {
        events.push(AlertEvent::Warning);
    } else {
        events.push(AlertEvent::Failure);
    }
    let mut out = Vec::new();
    let mut last_sent = previous.last_sent.clone();
    for (index, alert) in runbook.alerts.iter().enumerate() {
        let dest = destination(&alert.kind);
        let slot = format!("{dest}#{index}");
        // PagerDuty resolves what it triggered (subscribing to failures implies recoveries)
        // and has nothing to say about a success
        let pagerduty = matches!(alert.kind, AlertKind::Pagerduty(_));
        let subscribed = |e: &AlertEvent| {
            if pagerduty && *e == AlertEvent::Success {
                return false;
            }
            alert.on.contains(e)
                || (*e == AlertEvent::Recovered
                    && pagerduty
                    && (alert.on.contains(&AlertEvent::Failure)
                        || alert.on.contains(&AlertEvent::Warning)))
        };
        // the most specific event the destination wants (recovered before success)
        let Some(event) = events.iter().copied().rev().find(|e| subscribed(e)) else {
            continue;
        };
        // a repeated failure is re-sent to a destination at most every `repeat:` (default
        // 1h); a heartbeat's `/fail` ping is not a message and always goes
        let repeat = alert
            .repeat
            .unwrap_or(crate::duration::Duration::from_secs(3600));
        let repeats = matches!(event, AlertEvent::Failure | AlertEvent::Warning)
            && was_failing
            && !matches!(alert.kind, AlertKind::Betterstack(_));
        if let (true, Some(last)) = (repeats, previous.last_sent.get(&slot)) {
            if now - *last < repeat.chrono() {
                out.push(Notification {
                    destination: dest.into(),
                    event: event_name(event).into(),
                    outcome: format!(
                        "suppressed (sent {} ago; repeat: {repeat})",
                        crate::duration::human((now - *last).to_std().unwrap_or_default())
                    ),
                });
                continue;
            }
        }
        // `Err` here: not tried to the end, and why
        let sent = tokio::select! {
            r = send_one(alert, n, event) => Ok(r),
            () = stop.cancelled() => Err("interrupted".to_owned()),
            () = tokio::time::sleep_until(until) => Err(format!(
                "the alerts ran out of time ({}; DRILLBOOK_NOTIFY_DEADLINE)",
                crate::duration::human(deadline())
            )),
        };
        let outcome = match sent {
            Err(why) => {
                eprintln!("drillbook: warning: the {dest} alert was not sent: {why}");
                format!("not sent: {why}")
            }
            Ok(Ok(())) => {
                if matches!(event, AlertEvent::Failure | AlertEvent::Warning) {
                    last_sent.insert(slot, now);
                }
                "sent".to_owned()
            }
            Ok(Err(e)) => {
                // the URL may hold a secret: the error names the destination, never the URL
                eprintln!("drillbook: warning: the {dest} alert could not be sent: {e}");
                format!("failed: {e}")
            }
        };
        out.push(Notification {
            destination: dest.into(),
            event: event_name(event).into(),
            outcome,
        });
    }
    // a warning is not OK either: only an OK ends the episode (and is what `recovered` means)
    let next = if n.ok && !n.warning {
        SubjectState::default()
    } else {
        SubjectState {
            failing_since: previous.failing_since.or(Some(now)),
            last_sent,
        }
    };
    state.insert(key, next);
    save_state(state_dir, &state);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_timeout_is_a_positive_number_of_seconds_up_to_an_hour() {
        assert_eq!(timeout_from(Some("0.5")), Duration::from_millis(500));
        assert_eq!(timeout_from(Some(" 3600 ")), Duration::from_secs(3600));
        for ignored in [
            None,
            Some("ten"),
            Some("0"),
            Some("-1"),
            Some("NaN"),
            Some("inf"),
            Some("3601"),
            Some("1e300"),
            Some("18446744073709551615"),
        ] {
            assert_eq!(
                timeout_from(ignored),
                Duration::from_secs(10),
                "{ignored:?}"
            );
        }
    }

    fn notice(ok: bool) -> Notice {
        Notice {
            runbook: "prod".into(),
            subject: "checks".into(),
            kind: "check".into(),
            ok,
            warning: false,
            summary: "CRITICAL: 1 of 4 checks failed".into(),
            details: vec!["latest-snapshot: snapshot is 30h old".into()],
            run_id: None,
            since: None,
            log: None,
            operator: "ops@host".into(),
        }
    }

    #[test]
    fn smtp_requires_starttls_except_on_loopback() {
        assert_eq!(
            smtp_url("smtp://u:p@mail.example.com:587"),
            "smtp://u:p@mail.example.com:587?tls=required"
        );
        assert_eq!(smtp_url("smtp://127.0.0.1:2525"), "smtp://127.0.0.1:2525");
        assert_eq!(
            smtp_url("smtps://u:p@mail.example.com:465"),
            "smtps://u:p@mail.example.com:465"
        );
    }

    #[test]
    fn pagerduty_triggers_and_resolves_with_one_dedup_key() {
        let t = pagerduty_body("k", &notice(false), AlertEvent::Failure);
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "drillbook:prod:checks");
        assert_eq!(t["payload"]["severity"], "critical");
        let r = pagerduty_body("k", &notice(true), AlertEvent::Recovered);
        assert_eq!(
            r,
            json!({"routing_key": "k", "event_action": "resolve", "dedup_key": "drillbook:prod:checks"})
        );
    }

    /// A step's output cannot ping a channel or forge a link: every `<`, `>` and `&` from
    /// the run reaches Slack escaped, in every text of the message.
    #[test]
    fn slack_messages_escape_what_the_run_wrote() {
        let mut n = notice(false);
        n.summary = "FAILED: step `x` failed: <!channel> see <https://evil.example|the fix>".into();
        n.details = vec!["x: <!here> & <@U123>".into()];
        n.operator = "<!everyone>".into();
        n.log = Some("drills/<!channel>.md".into());
        let body = slack_body(&n, AlertEvent::Failure);
        let text = body.to_string();
        for active in [
            "<!channel>",
            "<!here>",
            "<!everyone>",
            "<@U123>",
            "<https://",
        ] {
            assert!(!text.contains(active), "{active} in {body:#}");
        }
        assert!(
            body["blocks"][1]["text"]["text"].as_str().is_some_and(
                |t| t.ends_with("&lt;!channel&gt; see &lt;https://evil.example|the fix&gt;")
            ),
            "{body:#}"
        );
        assert_eq!(
            body["blocks"][2]["text"]["text"],
            "• x: &lt;!here&gt; &amp; &lt;@U123&gt;"
        );
    }

    #[test]
    fn slack_messages_have_a_header_and_the_details() {
        let b = slack_body(&notice(false), AlertEvent::Failure);
        assert_eq!(b["blocks"][0]["type"], "header");
        assert!(b["blocks"][2]["text"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("latest-snapshot")));
        assert!(b["text"]
            .as_str()
            .is_some_and(|t| t.contains("check failure: prod / checks")));
    }
}
