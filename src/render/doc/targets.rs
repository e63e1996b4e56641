//! The targets: what and where each one is, and where its backups are managed.

use serde_json::{json, Value};

use super::text::{code, md, prose, value_text, wrap};
use crate::runbook::raw::TargetKind;
use crate::runbook::Runbook;

fn target_where(kind: &TargetKind) -> (&'static str, String) {
    match kind {
        TargetKind::Neon(n) => {
            let mut parts = vec![format!("project {}", value_text(&n.project_id))];
            parts.push(match &n.branch {
                Some(b) => format!("branch {}", value_text(b)),
                None => "the project's default branch".into(),
            });
            if let Some(d) = &n.database {
                parts.push(format!("database {}", value_text(d)));
            }
            if let Some(r) = &n.role {
                parts.push(format!("role {}", value_text(r)));
            }
            ("Neon", parts.join(", "))
        }
        TargetKind::Postgres(p) => ("PostgreSQL", format!("URL {}", value_text(&p.url))),
        TargetKind::Local(l) => {
            let mut parts = Vec::new();
            if let Some(b) = &l.base_backup {
                parts.push(format!("base backups {}", value_text(b)));
            }
            if let Some(w) = &l.wal_archive {
                parts.push(format!("WAL archive {}", value_text(w)));
            }
            if let Some(u) = &l.url {
                parts.push(format!("server URL {}", value_text(u)));
            }
            ("self-hosted backups", parts.join("; "))
        }
    }
}

pub(super) fn targets(runbook: &Runbook) -> Vec<Value> {
    runbook
        .targets
        .values()
        .map(|t| {
            let (kind, place) = target_where(&t.kind);
            json!({
                "name": t.name,
                "kind": kind,
                "protected": if t.protected { "yes" } else { "no" },
                "where": md(&place),
                "description": t.description.as_deref().map_or("—".to_owned(), prose),
            })
        })
        .collect()
}

pub(super) fn console(runbook: &Runbook) -> Vec<Value> {
    runbook
        .targets
        .values()
        .map(|t| {
            let (kind, place) = target_where(&t.kind);
            let items: Vec<String> = match &t.kind {
                TargetKind::Neon(n) => {
                    let branch = n
                        .branch
                        .as_deref()
                        .map_or("the default branch".into(), code);
                    vec![
                        "Restore window (how far back point-in-time restore reaches): Neon \
                         Console → Project → Settings → Instant restore"
                            .into(),
                        format!(
                            "Snapshots and the backup schedule of {branch}: Project → Backup \
                             & restore"
                        ),
                        "Branches (recovery branches, leftover drill branches, the backup \
                         branches in-place restores keep): Project → Branches"
                            .into(),
                        format!(
                            "Restore {branch} in place: Project → Branches → {branch} → Restore"
                        ),
                        format!(
                            "The project id ({}): Project → Settings → General",
                            value_text(&n.project_id)
                        ),
                    ]
                }
                TargetKind::Postgres(p) => vec![
                    format!("The server: URL {}", value_text(&p.url)),
                    format!(
                        "WAL archiving status: {} on the server",
                        code("SELECT * FROM pg_stat_archiver")
                    ),
                ],
                TargetKind::Local(l) => {
                    let mut v = Vec::new();
                    if let Some(b) = &l.base_backup {
                        v.push(format!("Base backups: {}", value_text(b)));
                    }
                    if let Some(w) = &l.wal_archive {
                        v.push(format!("WAL archive: {}", value_text(w)));
                    }
                    if let Some(u) = &l.url {
                        v.push(format!("The server backed up: URL {}", value_text(u)));
                    }
                    v
                }
            };
            json!({
                "name": t.name,
                "kind": kind,
                "lead": wrap(&md(&format!("Target {} ({kind}, {place}):", code(&t.name))), 100),
                "items": items.iter().map(|i| wrap(&md(i), 96)).collect::<Vec<_>>(),
            })
        })
        .filter(|t| t["items"].as_array().is_some_and(|i| !i.is_empty()))
        .collect()
}
