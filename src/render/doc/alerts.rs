//! Monitoring and alerts: where each alert goes (secrets named by where they come from,
//! never shown), on which events, and how often it repeats.

use serde_json::{json, Value};

use super::text::{code, codes, md, secret_source};
use crate::runbook::raw::{AlertEvent, AlertKind};
use crate::runbook::Runbook;

pub(super) fn alerts(runbook: &Runbook) -> Vec<Value> {
    runbook
        .alerts
        .iter()
        .map(|a| {
            let destination = match &a.kind {
                AlertKind::Slack(s) => {
                    format!("Slack incoming webhook {}", secret_source(&s.webhook))
                }
                AlertKind::Webhook(w) => {
                    let mut text = format!("JSON webhook, URL {}", secret_source(&w.url));
                    if !w.headers.is_empty() {
                        let names: Vec<String> = w.headers.keys().cloned().collect();
                        text.push_str(&format!(", headers {}", codes(&names)));
                    }
                    text
                }
                AlertKind::Betterstack(b) => {
                    format!(
                        "Better Stack heartbeat, URL {}",
                        secret_source(&b.heartbeat)
                    )
                }
                AlertKind::Pagerduty(p) => format!(
                    "PagerDuty Events v2, routing key {}",
                    secret_source(&p.routing_key)
                ),
                AlertKind::Email(e) => format!(
                    "email from {} to {}, SMTP server {}",
                    code(&e.from),
                    codes(&e.to),
                    secret_source(&e.smtp)
                ),
            };
            let events: Vec<&str> =
                a.on.iter()
                    .map(|e| match e {
                        AlertEvent::Failure => "failure",
                        AlertEvent::Success => "success",
                        AlertEvent::Warning => "warning",
                        AlertEvent::Recovered => "recovered",
                    })
                    .collect();
            json!({
                "destination": md(&destination),
                "events": events.join(", "),
                "repeat": a.repeat.map_or("no".to_owned(), |d| format!("every {d}")),
            })
        })
        .collect()
}
