//! The testing schedule (each scheduled procedure's next dates and crontab line, and where
//! to look: the status command, the daemon's endpoints, the calendar file) and the
//! restoration validation checklist.

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde_json::{json, Value};

use super::checks::{compare_items, freshness_check, validation};
use super::procedures::ProcedureDoc;
use super::text::{capitalized, code, codes, date, md, wrap};
use crate::kind::{Scratch, StepKind, Verifies};
use crate::runbook::Runbook;

pub(super) fn schedule_text(cron: &crate::cron::Cron) -> String {
    let words = cron.describe();
    if words.starts_with("at cron") {
        words
    } else {
        format!("{words} (cron {})", code(cron.as_str()))
    }
}

pub(super) fn testing(
    runbook: &Runbook,
    procedures: &[ProcedureDoc],
    as_of: Option<DateTime<Utc>>,
    as_of_source: &str,
) -> Value {
    let mut scheduled = Vec::new();
    let mut unscheduled = Vec::new();
    for (p, doc) in runbook.procedures.values().zip(procedures) {
        let Some(cron) = &p.schedule else {
            unscheduled.push(p.id.clone());
            continue;
        };
        let mut next = Vec::new();
        if let Some(mut t) = as_of {
            for _ in 0..3 {
                t = cron.next_after(t);
                next.push(date(t));
            }
        }
        scheduled.push(json!({
            "procedure": p.id,
            "procedure_heading": doc.heading,
            "when": md(&cron.describe()),
            "cron": cron.as_str(),
            "next": next,
            // inside a code block: as written, not Markdown
            "crontab": format!("{} drillbook run {} {}", cron.as_str(), runbook.path, p.id),
        }));
    }
    json!({
        "as_of": as_of.map(crate::timestamp::rfc3339),
        "as_of_source": md(as_of_source),
        "scheduled": scheduled,
        "unscheduled": (!unscheduled.is_empty()).then(|| md(&codes(&unscheduled))),
        // the file `drillbook schedule --emit ics` is saved to, as the document suggests it
        "calendar": format!("drillbook-{}.ics", crate::render::anchor(&runbook.name)),
    })
}

pub(super) fn checklist(runbook: &Runbook) -> Vec<Value> {
    // item text -> the procedures it comes from, in first-seen order
    let mut items: IndexMap<String, Vec<String>> = IndexMap::new();
    let mut add = |text: String, procedure: &str| {
        let from = items.entry(text).or_default();
        if !from.iter().any(|p| p == procedure) {
            from.push(procedure.to_owned());
        }
    };
    let mut leaves_branches = false;
    let mut leaves_clusters = false;
    for p in runbook.procedures.values() {
        for s in &p.steps {
            let effects = s.kind.effects();
            match effects.scratch {
                Some(Scratch::NeonBranch) => leaves_branches = true,
                Some(Scratch::LocalCluster | Scratch::Directory) => leaves_clusters = true,
                None => {}
            }
            if !matches!(
                effects.verifies,
                Some(Verifies::Data | Verifies::RecoveryPoint)
            ) {
                continue;
            }
            // what the item says, for the kinds that verify a restored copy
            match &s.kind {
                StepKind::Compare(c) => {
                    for item in compare_items(runbook, c) {
                        add(capitalized(&item), &p.id);
                    }
                }
                StepKind::Freshness(f) => add(capitalized(&freshness_check(runbook, f)), &p.id),
                StepKind::NeonSchemaDiff(_) => add(s.display_title().to_owned(), &p.id),
                _ => {
                    if let Some(check) = validation(runbook, &s.kind) {
                        add(format!("{}: {check}", s.display_title()), &p.id);
                    }
                }
            }
        }
    }
    let mut out: Vec<Value> = items
        .into_iter()
        .map(|(text, from)| json!({ "text": md(&format!("{text} ({})", codes(&from))) }))
        .collect();
    let o = &runbook.objectives;
    if let Some(rto) = o.rto {
        out.push(json!({ "text": md(&format!(
            "RTO under {rto}: from the step that starts the RTO clock to the one that stops it"
        )) }));
    }
    if let Some(rpo) = o.rpo {
        out.push(json!({ "text": md(&format!(
            "RPO under {rpo}: the newest restored data is at most {rpo} older than the \
             recovery point"
        )) }));
    }
    let mut cleanup = Vec::new();
    if leaves_branches {
        cleanup.push(
            "no drill branch or snapshot is left in the Neon project (Branches, Backup & restore)",
        );
    }
    if leaves_clusters {
        cleanup.push("no scratch PostgreSQL instance is left running or on disk");
    }
    if runbook.procedures.values().any(|p| !p.cleanup.is_empty()) {
        cleanup.push("every cleanup step passed");
    }
    if !cleanup.is_empty() {
        out.push(json!({ "text": md(&format!("Cleanup done: {}", cleanup.join("; "))) }));
    }
    out.push(json!({ "text": md(&format!(
        "The run is recorded in the drill history ({})",
        code("drillbook history list")
    )) }));
    for item in &mut out {
        if let Some(Value::String(text)) = item.get_mut("text") {
            *text = wrap(text, 92);
        }
    }
    out
}
