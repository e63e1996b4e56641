//! The runbook document's data: [`context`] turns a validated runbook and its drill records
//! into the JSON that `runbook.md.j2` arranges. Every string arrives ready to print as
//! Markdown: templates shown as placeholders (`<target_time>`, `$NEON_PROJECT_ID`), URL
//! passwords masked, text drillbook writes escaped, and every heading unique. Environment
//! variables are named, never read: a document can be rendered and published anywhere.
//!
//! The sections are built by the submodules, on the Markdown helpers of `text`.

mod alerts;
mod backups;
mod by_hand;
mod checks;
mod objectives;
mod procedures;
mod results;
mod schedule;
mod targets;
mod text;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::record::DrillRecord;
use crate::redact::mask_passwords;
use crate::runbook::Runbook;

use self::alerts::alerts;
use self::backups::{backups, storage};
use self::checks::checks;
use self::objectives::objectives;
use self::procedures::{scenarios, ProcedureDoc};
use self::results::results;
use self::schedule::{checklist, testing};
use self::targets::{console, targets};
use self::text::{prose, Headings};

/// The document's sections (its H2 headings) in order, by their key in the context's
/// `section` map.
pub const SECTIONS: &[(&str, &str)] = &[
    ("overview", "Overview and owner"),
    ("objectives", "Recovery objectives"),
    ("backups", "Backup schedule and retention"),
    ("storage", "Encryption and location"),
    ("targets", "Targets"),
    ("procedures", "Recovery procedures"),
    ("verification", "Backup verification"),
    ("scenarios", "Disaster scenarios"),
    ("testing", "Testing schedule"),
    ("checklist", "Restoration validation checklist"),
    ("alerts", "Monitoring and alerts"),
    ("console", "Where to manage backups"),
    ("results", "Latest drill results"),
];

/// The heading of the table of contents.
pub const CONTENTS: &str = "Contents";

/// Everything `runbook.md.j2` needs. `as_of` is the moment the testing schedule's next
/// dates are computed from, and `as_of_source` says where it came from (printed beside it);
/// without one (no run recorded, no `--as-of`) no dates are printed, so the document does
/// not change with the clock.
pub fn context(
    runbook: &Runbook,
    records: &[DrillRecord],
    as_of: Option<DateTime<Utc>>,
    as_of_source: &str,
    output: Option<&str>,
) -> Value {
    let mut headings = Headings::default();
    let title = headings.claim(&runbook.title);
    let contents = headings.claim(CONTENTS);
    let mut section = serde_json::Map::new();
    let mut sections = Vec::new();
    for (key, text) in SECTIONS {
        let text = headings.claim(text);
        section.insert((*key).into(), text.clone().into());
        sections.push(json!({ "key": key, "title": text }));
    }
    // Procedure headings first: the objectives and the scenarios link to them.
    let procedures: Vec<ProcedureDoc> = runbook
        .procedures
        .values()
        .map(|p| ProcedureDoc::new(runbook, p, &mut headings))
        .collect();
    let objectives = objectives(runbook, &procedures, &mut headings);
    let scenarios = scenarios(runbook, &procedures, &mut headings);
    let mut ctx = json!({
        "generated": {
            "source": runbook.path,
            // the command that regenerates this very file
            "command": format!(
                "drillbook render {} -o {}",
                runbook.path,
                output.unwrap_or("<this file>")
            ),
            "sha256": runbook.sha256.chars().take(12).collect::<String>(),
        },
        // where a person does by hand what drillbook does
        "by_hand_where": if runbook
            .targets
            .values()
            .any(|t| matches!(t.kind, crate::runbook::TargetKind::Neon(_)))
        {
            "in the Neon Console or on the command line"
        } else {
            "on the command line"
        },
        "runbook": {
            "name": runbook.name,
            "title": title,
            "owner": runbook.owner.as_deref().map(prose),
            "description": runbook.description.as_deref().map(prose),
            "path": runbook.path,
        },
        "contents": contents,
        "section": section,
        "sections": sections,
        "objectives": objectives,
        "backups": backups(runbook),
        "storage": storage(runbook),
        "targets": targets(runbook),
        "procedures": procedures.iter().map(|p| p.json.clone()).collect::<Vec<_>>(),
        "checks": checks(runbook),
        "scenarios": scenarios,
        "testing": testing(runbook, &procedures, as_of, as_of_source),
        "checklist": checklist(runbook),
        "alerts": alerts(runbook),
        "console": console(runbook),
        "results": results(runbook, &procedures, records),
    });
    mask_strings(&mut ctx);
    ctx
}

/// A last line of defence: no string of the context carries a password written in a
/// connection string, in any form.
fn mask_strings(value: &mut Value) {
    match value {
        Value::String(s) => *s = mask_passwords(s),
        Value::Array(items) => items.iter_mut().for_each(mask_strings),
        Value::Object(map) => map.values_mut().for_each(mask_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::render::Renderer;

    const RUNBOOKS: &[&str] = &[
        "runbooks/neon-production.yaml",
        "runbooks/local-pitr-drill.yaml",
        "runbooks/hello.yaml",
        "runbooks/postgres-pitr-drill.yaml",
    ];

    pub(super) fn load(path: &str) -> Runbook {
        let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
        let source = std::fs::read_to_string(&full).expect("shipped runbook is readable");
        crate::runbook::load_str(path, &source).expect("shipped runbook is valid")
    }

    fn as_of() -> DateTime<Utc> {
        "2026-11-30T12:00:00Z".parse().expect("valid timestamp")
    }

    pub(super) fn render(runbook: &Runbook, records: &[DrillRecord]) -> String {
        let ctx = context(runbook, records, Some(as_of()), "test clock", None);
        Renderer::new(None)
            .expect("templates compile")
            .render("runbook.md.j2", &ctx)
            .expect("runbook.md.j2 renders")
    }

    fn headings(doc: &str) -> Vec<(usize, String)> {
        let mut fenced = false;
        doc.lines()
            .filter_map(|line| {
                if line.trim_start().starts_with("```") {
                    fenced = !fenced;
                }
                let level = line.len() - line.trim_start_matches('#').len();
                (!fenced && level > 0 && line[level..].starts_with(' '))
                    .then(|| (level, line[level + 1..].to_owned()))
            })
            .collect()
    }

    #[test]
    fn every_shipped_runbook_renders_a_well_formed_document() {
        for path in RUNBOOKS {
            let runbook = load(path);
            let doc = render(&runbook, &[]);
            let hs = headings(&doc);
            assert!(doc.starts_with(&format!("# {}\n", runbook.title)), "{path}");
            assert_eq!(
                hs.iter().filter(|(l, _)| *l == 1).count(),
                1,
                "{path}: one H1"
            );
            for (_, title) in SECTIONS {
                assert!(
                    hs.contains(&(2, (*title).to_owned())),
                    "{path}: no section {title}"
                );
            }
            let mut seen = BTreeSet::new();
            for (_, text) in &hs {
                assert!(
                    seen.insert(text.clone()),
                    "{path}: heading `{text}` repeats"
                );
            }
            for pair in hs.windows(2) {
                assert!(
                    pair[1].0 <= pair[0].0 + 1,
                    "{path}: skipped level at {}",
                    pair[1].1
                );
            }
            let anchors: BTreeSet<String> =
                hs.iter().map(|(_, t)| crate::render::anchor(t)).collect();
            for link in doc.split("](#").skip(1) {
                let target = &link[..link.find(')').expect("closed link")];
                assert!(
                    anchors.contains(target),
                    "{path}: link to missing #{target}"
                );
            }
            assert!(
                doc.ends_with('\n') && !doc.ends_with("\n\n"),
                "{path}: final newline"
            );
            assert!(!doc.contains("\n\n\n"), "{path}: consecutive blank lines");
            assert!(
                doc.lines().all(|l| l == l.trim_end()),
                "{path}: trailing spaces"
            );
            assert!(doc.contains("No drill has been recorded yet in"), "{path}");
            assert!(
                !doc.contains("{{"),
                "{path}: a template was printed as written"
            );
            let problems = crate::render::lint::problems(&doc);
            assert!(problems.is_empty(), "{path}: {problems:#?}");
        }
    }

    #[test]
    fn neon_document_names_environment_variables_and_never_reads_them() {
        let doc = render(&load("runbooks/neon-production.yaml"), &[]);
        assert!(doc.contains("from the environment variable `NEON_PROJECT_ID`"));
        assert!(doc.contains("Slack incoming webhook from `SLACK_WEBHOOK_URL`"));
        assert!(doc.contains("--project-id $NEON_PROJECT_ID"));
        assert!(doc.contains("Settings → Instant restore"));
        assert!(doc.contains("- [ ] RTO under 1h"));
        // the drill's next dates, from the as-of time
        assert!(doc.contains("2026-12-01 09:00 UTC, 2027-01-01 09:00 UTC, 2027-02-01 09:00 UTC"));
        assert!(doc.contains("computed from 2026-11-30T12:00:00Z (test clock)"));
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        let yaml = r#"
version: 1
name: pw
title: Passwords
objectives: { rto: 1h }
targets:
  db:
    postgres: { url: "postgres://app:hunter2@db.internal/shop" }
procedures:
  drill:
    title: Drill
    kind: drill
    steps:
      - id: q
        sql: { db: "postgres://app:hunter2@db.internal/shop", query: "select 1", expect: { value: 1 } }
"#;
        let runbook = crate::runbook::load_str("pw.yaml", yaml).expect("valid runbook");
        let doc = render(&runbook, &[]);
        assert!(!doc.contains("hunter2"), "{doc}");
        assert!(doc.contains("postgres://app:***@db.internal/shop"));
    }
}
