//! The backup policy: its schedule and retention, and where the backups are kept and how
//! they are encrypted.

use serde_json::{json, Value};

use super::schedule::schedule_text;
use super::text::{code, md, prose};
use crate::runbook::raw::Provider;
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
        "provider": provider(b),
        "retention": retention,
        "configured": configured(b).map(|t| md(&t)),
        "notes": b.notes.as_deref().map(prose),
    })
}

fn is_pgbackrest(b: &crate::runbook::BackupPolicy) -> bool {
    b.provider == Some(Provider::Pgbackrest)
}

/// Who takes the backups, as the document says it: a tool drillbook knows with what it
/// backs up (pgBackRest and its stanza, Barman and its server), or the words written.
fn provider(b: &crate::runbook::BackupPolicy) -> Option<String> {
    let named = |tool: &str, what: &str, name: Option<&str>| {
        let name = name
            .map(|s| format!(" ({what} {})", code(s)))
            .unwrap_or_default();
        md(&format!("{tool}{name}"))
    };
    Some(match b.provider.as_ref()? {
        Provider::Pgbackrest => named("pgBackRest", "stanza", b.stanza.as_deref()),
        Provider::Barman => named("Barman", "server", b.server.as_deref()),
        Provider::Described(words) => prose(words),
    })
}

/// With `provider: pgbackrest`: what pgBackRest is configured to keep, from the
/// `repoN-retention-*` options of its config file (the stanza's section over `[global]`),
/// beside the declared policy. Only those options are read out of the file.
fn configured(b: &crate::runbook::BackupPolicy) -> Option<String> {
    if !is_pgbackrest(b) {
        return None;
    }
    let Some(stanza) = b.stanza.as_deref() else {
        return Some(format!(
            "What pgBackRest is configured to keep is not stated: give {} (and {}).",
            code("backup_policy.stanza"),
            code("backup_policy.config")
        ));
    };
    let Some(path) = b.config.as_deref() else {
        return Some(format!(
            "What pgBackRest is configured to keep for stanza {} is not read here: give {} (the {} path) for this document to state it beside the policy; {} checks it against the repository.",
            code(stanza),
            code("backup_policy.config"),
            code("pgbackrest.conf"),
            code("pgbackrest.retention")
        ));
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Some(format!(
                "What pgBackRest is configured to keep could not be read from {}: {e}.",
                code(path)
            ))
        }
    };
    let kept = retention_options(&text, stanza);
    if kept.is_empty() {
        return Some(format!(
            "pgBackRest is configured (in {}) with no {} option for stanza {}: it keeps every backup, and expires nothing.",
            code(path),
            code("repoN-retention-*"),
            code(stanza)
        ));
    }
    let list: Vec<String> = kept
        .iter()
        .map(|(k, v)| code(&format!("{k}={v}")))
        .collect();
    Some(format!(
        "pgBackRest is configured (in {}, stanza {}) to keep: {}.",
        code(path),
        code(stanza),
        list.join(", ")
    ))
}

/// The `repoN-retention-*` options that apply to `stanza`: `[global]`'s, overridden by the
/// stanza's own section; in name order.
fn retention_options(text: &str, stanza: &str) -> std::collections::BTreeMap<String, String> {
    let mut global = std::collections::BTreeMap::new();
    let mut own = std::collections::BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim();
        let is_retention = k
            .strip_prefix("repo")
            .and_then(|r| r.split_once('-'))
            .is_some_and(|(n, rest)| {
                !n.is_empty()
                    && n.chars().all(|c| c.is_ascii_digit())
                    && rest.starts_with("retention-")
            });
        if !is_retention {
            continue;
        }
        let into = match section.as_str() {
            "global" => &mut global,
            s if s == stanza => &mut own,
            _ => continue,
        };
        into.insert(k.to_owned(), v.trim().to_owned());
    }
    global.extend(own);
    global
}

pub(super) fn storage(runbook: &Runbook) -> Value {
    let b = runbook.backup_policy.as_ref();
    let field = |v: Option<&String>| v.map(|s| prose(s));
    json!({
        "encryption": field(b.and_then(|b| b.encryption.as_ref())),
        "location": field(b.and_then(|b| b.location.as_ref())),
        "provider": b.and_then(provider),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_retention_options_are_read_the_stanza_winning() {
        let conf = "[global]\nrepo1-cipher-pass=secret\nrepo1-retention-full=2\nrepo1-retention-diff=6\n[main]\nrepo1-retention-full=4\n[other]\nrepo1-retention-full=9\n";
        let got = retention_options(conf, "main");
        assert_eq!(got.len(), 2);
        assert_eq!(got["repo1-retention-full"], "4");
        assert_eq!(got["repo1-retention-diff"], "6");
    }
}
