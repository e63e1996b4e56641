//! The backup policy: its schedule and retention, and where the backups are kept and how
//! they are encrypted.

use serde_json::{json, Value};

use super::schedule::schedule_text;
use super::text::{code, md, prose};
use crate::runbook::Runbook;

pub(super) fn backups(runbook: &Runbook) -> Value {
    let Some(b) = &runbook.backup_policy else {
        return json!({ "declared": false });
    };
    let when = match crate::cron::Cron::parse(&b.schedule) {
        Ok(c) => schedule_text(&c),
        Err(_) => format!("at cron {} (UTC)", code(&b.schedule)),
    };
    let r = &b.retention;
    let retention: Vec<Value> = [
        ("Daily", r.daily, "days"),
        ("Weekly", r.weekly, "weeks"),
        ("Monthly", r.monthly, "months"),
    ]
    .into_iter()
    .map(|(generation, kept, unit)| {
        json!({
            "generation": generation,
            "kept": kept.map_or("not kept".to_owned(), |n| format!("{n} {unit}")),
        })
    })
    .collect();
    json!({
        "declared": true,
        "schedule": md(&when),
        "cron": b.schedule,
        "provider": provider(b).as_deref().map(prose),
        "retention": retention,
        "notes": b.notes.as_deref().map(prose),
    })
}

pub(super) fn storage(runbook: &Runbook) -> Value {
    let b = runbook.backup_policy.as_ref();
    let field = |v: Option<&String>| v.map(|s| prose(s));
    json!({
        "encryption": field(b.and_then(|b| b.encryption.as_ref())),
        "location": field(b.and_then(|b| b.location.as_ref())),
        "provider": b.and_then(provider).as_deref().map(prose),
    })
}

/// The provider in words: a tool drillbook knows, with what it backs up.
fn provider(b: &crate::runbook::raw::BackupPolicy) -> Option<String> {
    Some(match (b.provider.as_ref()?, &b.server) {
        (crate::runbook::raw::Provider::Barman, Some(server)) => {
            format!("Barman, server `{server}`")
        }
        (p, _) => p.as_str().to_owned(),
    })
}
