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

/// What a backup tool the runbook names is configured to keep, beside the declared policy:
/// pgBackRest's `repoN-retention-*` options (the stanza's section over `[global]`), or
/// Barman's `retention_policy`, `minimum_redundancy` and `wal_retention_policy` (the
/// server's section over `[barman]`, in the file or the `configuration_files_directory` it
/// names). Only those options are read out of the files; `render` never runs the tool.
fn configured(b: &crate::runbook::BackupPolicy) -> Option<String> {
    let tool = Tool::of(b)?;
    let Some(name) = tool.name else {
        return Some(format!(
            "What {} is configured to keep is not stated: give {} (and {}).",
            tool.title,
            code(&format!("backup_policy.{}", tool.section)),
            code("backup_policy.config")
        ));
    };
    let Some(path) = b.config.as_deref() else {
        return Some(format!(
            "What {} is configured to keep for {} {} is not read here: give {} (the {} path) for this document to state it beside the policy; {} checks it against the backups.",
            tool.title,
            tool.section,
            code(name),
            code("backup_policy.config"),
            code(tool.file),
            code(tool.check)
        ));
    };
    let kept = match tool.read(path, name) {
        Ok(kept) => kept,
        Err(e) => {
            return Some(format!(
                "What {} is configured to keep could not be read from {}: {e}.",
                tool.title,
                code(path)
            ))
        }
    };
    if kept.is_empty() {
        return Some(format!(
            "{} is configured (in {}) with no {} option for {} {}: it keeps every backup, and expires nothing.",
            tool.title,
            code(path),
            code(tool.options),
            tool.section,
            code(name)
        ));
    }
    let list: Vec<String> = kept
        .iter()
        .map(|(k, v)| code(&format!("{k}={v}")))
        .collect();
    Some(format!(
        "{} is configured (in {}, {} {}) to keep: {}.",
        tool.title,
        code(path),
        tool.section,
        code(name),
        list.join(", ")
    ))
}

/// A backup tool whose configuration the document reads.
struct Tool<'a> {
    title: &'static str,
    /// What the policy names: `stanza` or `server`.
    section: &'static str,
    name: Option<&'a str>,
    /// The configuration file, as people know it.
    file: &'static str,
    /// The options read, as people know them.
    options: &'static str,
    /// The check kind that compares them with the backups.
    check: &'static str,
}

impl<'a> Tool<'a> {
    fn of(b: &'a crate::runbook::BackupPolicy) -> Option<Tool<'a>> {
        Some(match b.provider.as_ref()? {
            Provider::Pgbackrest => Tool {
                title: "pgBackRest",
                section: "stanza",
                name: b.stanza.as_deref(),
                file: "pgbackrest.conf",
                options: "repoN-retention-*",
                check: "pgbackrest.retention",
            },
            Provider::Barman => Tool {
                title: "Barman",
                section: "server",
                name: b.server.as_deref(),
                file: "barman.conf",
                options: "retention_policy",
                check: "barman.check",
            },
            Provider::Described(_) => return None,
        })
    }

    fn read(&self, path: &str, name: &str) -> std::io::Result<Options> {
        let text = std::fs::read_to_string(path)?;
        if self.title == "pgBackRest" {
            return Ok(ini_options(
                &[&text],
                &["global", name],
                is_pgbackrest_retention,
            ));
        }
        // Barman: the main file, then the server files of its configuration directory
        let mut texts = vec![text];
        let global = ini_options(&[&texts[0]], &["barman"], |k| {
            k == "configuration_files_directory"
        });
        if let Some(dir) = global.get("configuration_files_directory") {
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            files.retain(|p| p.extension().is_some_and(|e| e == "conf"));
            files.sort();
            for f in files {
                texts.push(std::fs::read_to_string(f)?);
            }
        }
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(ini_options(&texts, &["barman", name], |k| {
            matches!(
                k,
                "retention_policy" | "minimum_redundancy" | "wal_retention_policy"
            )
        }))
    }
}

type Options = std::collections::BTreeMap<String, String>;

fn is_pgbackrest_retention(key: &str) -> bool {
    key.strip_prefix("repo")
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(n, rest)| {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && rest.starts_with("retention-")
        })
}

/// The options `keep` accepts from the INI `texts`, for `sections` in order of precedence
/// (a later section overrides an earlier one); in name order. Nothing else is read out.
fn ini_options(texts: &[&str], sections: &[&str], keep: impl Fn(&str) -> bool) -> Options {
    let mut by_section: Vec<Options> = vec![Options::new(); sections.len()];
    for text in texts {
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_owned();
                continue;
            }
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let k = k.trim();
            if !keep(k) {
                continue;
            }
            if let Some(i) = sections.iter().position(|s| *s == section) {
                by_section[i].insert(k.to_owned(), v.trim().to_owned());
            }
        }
    }
    by_section.into_iter().fold(Options::new(), |mut all, own| {
        all.extend(own);
        all
    })
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
        let got = ini_options(&[conf], &["global", "main"], is_pgbackrest_retention);
        assert_eq!(got.len(), 2);
        assert_eq!(got["repo1-retention-full"], "4");
        assert_eq!(got["repo1-retention-diff"], "6");
    }

    #[test]
    fn barmans_retention_is_read_from_its_server_section() {
        let conf = "[barman]\nretention_policy = REDUNDANCY 2\nminimum_redundancy = 1\n; retention_policy = x\n[shop]\nretention_policy = RECOVERY WINDOW OF 4 WEEKS\nconninfo = password=secret\n[other]\nretention_policy = REDUNDANCY 9\n";
        let got = ini_options(&[conf], &["barman", "shop"], |k| {
            matches!(k, "retention_policy" | "minimum_redundancy")
        });
        assert_eq!(got.len(), 2);
        assert_eq!(got["retention_policy"], "RECOVERY WINDOW OF 4 WEEKS");
        assert_eq!(got["minimum_redundancy"], "1");
    }
}
