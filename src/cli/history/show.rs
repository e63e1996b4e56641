//! `drillbook history show`: one record, found by its id or a unique prefix, as a readable
//! summary, the stored JSON, or Markdown.

use std::fmt::Write as _;

use serde_json::Value;

use super::{ms, padded, ShowFormat};
use crate::cli::{err, exit, out, out_json};
use crate::duration::Duration;
use crate::history::{Entry, Store};
use crate::record::{DrillRecord, GitRef, StepRecord};
use crate::timestamp::rfc3339;

/// At most this many candidates are listed for an ambiguous prefix.
const MAX_CANDIDATES: usize = 20;

pub(super) async fn run(
    store: &Store,
    id: &str,
    format: ShowFormat,
    templates: Option<&std::path::Path>,
) -> anyhow::Result<u8> {
    let entries = super::entries(store, super::Trust::Warn).await?;
    let exact: Vec<&Entry> = entries.iter().filter(|e| e.id() == id).collect();
    let found = if exact.is_empty() {
        entries.iter().filter(|e| e.id().starts_with(id)).collect()
    } else {
        exact
    };
    let entry = match found.as_slice() {
        [one] => *one,
        [] => {
            say!(
                "drillbook: error: no record `{id}` in history {}",
                store.display()
            );
            return Ok(exit::INVALID);
        }
        many => {
            let mut s = format!(
                "drillbook: error: `{id}` matches {} records in history {}; give more of the id:\n",
                many.len(),
                store.display()
            );
            for e in many.iter().take(MAX_CANDIDATES) {
                let _ = writeln!(s, "  {}", candidate(e));
            }
            if many.len() > MAX_CANDIDATES {
                let _ = writeln!(s, "  … and {} more", many.len() - MAX_CANDIDATES);
            }
            err(&s);
            return Ok(exit::INVALID);
        }
    };
    if format == ShowFormat::Json {
        let mut shown = serde_json::Map::new();
        shown.insert("seq".into(), entry.seq.into());
        shown.insert("hash".into(), entry.hash.clone().into());
        if let Value::Object(fields) = &entry.record {
            shown.extend(fields.clone());
        }
        out_json(&shown)?;
        return Ok(exit::OK);
    }
    let record = entry.drill().map_err(|e| {
        anyhow::anyhow!(
            "history {}: record {} cannot be read by this version ({e}); `--format json` shows it as stored",
            store.display(),
            entry.id()
        )
    })?;
    match format {
        ShowFormat::Md => {
            let renderer = crate::render::Renderer::new(templates)?;
            out(&crate::render::log::markdown(
                &renderer,
                &record,
                Some(entry),
            )?);
        }
        _ => out(&text(entry, &record)),
    }
    Ok(exit::OK)
}

/// `id  started  runbook/procedure  verdict` for a list of candidates.
fn candidate(e: &Entry) -> String {
    match e.drill() {
        Ok(r) => format!(
            "{}  {}  {}/{}  {}",
            r.id,
            rfc3339(r.started_at),
            r.runbook.name,
            r.procedure.id,
            r.verdict.as_str()
        ),
        Err(_) => format!("{}  (entry {})", e.id(), e.seq),
    }
}

/// `4m05s, objective 15m: met`.
fn against(value: Option<u64>, objective: Option<Duration>, met: Option<bool>) -> String {
    let v = value.map_or("not measured".to_owned(), ms);
    match (objective, met) {
        (Some(o), Some(true)) => format!("{v}, objective {o}: met"),
        (Some(o), Some(false)) => format!("{v}, objective {o}: NOT met"),
        (Some(o), None) => format!("{v}, objective {o}"),
        (None, _) => v,
    }
}

fn rto_text(r: &DrillRecord) -> Option<String> {
    let x = r.rto.as_ref()?;
    Some(format!(
        "{} (from `{}` to `{}`)",
        against(x.measured_ms, x.objective, x.met),
        x.from_step,
        x.to_step
    ))
}

fn rpo_text(r: &DrillRecord) -> Option<String> {
    let x = r.rpo.as_ref()?;
    let mut s = against(x.data_loss_window_ms, x.objective, x.met);
    if let Some(p) = x.recovery_point {
        let _ = write!(s, ", recovery point {}", rfc3339(p));
    }
    if let Some(t) = x.target {
        let _ = write!(s, ", target {}", rfc3339(t));
    }
    Some(s)
}

/// `commit 1a2b… (with uncommitted changes)`.
fn git_text(git: &GitRef) -> String {
    let dirty = if git.dirty {
        " (with uncommitted changes)"
    } else {
        ""
    };
    format!("commit {}{dirty}", git.commit)
}

fn param_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// `2 attempts, destructive` and the error or note.
fn step_detail(st: &StepRecord) -> String {
    let mut parts = Vec::new();
    if st.attempts > 1 {
        parts.push(format!("{} attempts", st.attempts));
    }
    if st.destructive {
        parts.push("destructive".to_owned());
    }
    if let Some(e) = st.error.as_deref().or(st.note.as_deref()) {
        parts.push(e.to_owned());
    }
    parts.join("; ")
}

/// What each step proved: its outputs by name, text of several lines (a comparison's
/// report) indented below its name, values too large to read here left to `--format json`.
fn evidence_text(s: &mut String, r: &DrillRecord) {
    let steps: Vec<(&StepRecord, Vec<crate::render::log::Evidence>)> = r
        .steps
        .iter()
        .map(|st| (st, crate::render::log::evidence(st)))
        .filter(|(_, e)| !e.is_empty())
        .collect();
    if steps.is_empty() {
        return;
    }
    let _ = writeln!(s, "\nevidence");
    for (st, items) in steps {
        let _ = writeln!(s, "  {} ({})", st.id, st.kind);
        let width = items
            .iter()
            .filter(|e| !e.is_block())
            .map(|e| e.name.chars().count())
            .max()
            .unwrap_or(0);
        for e in items {
            if e.is_block() {
                let _ = writeln!(s, "    {}:", e.name);
                for line in e.text.lines() {
                    let _ = writeln!(s, "      {}", line.trim_end());
                }
                continue;
            }
            let value = e.inline().map_or("(large: see --format json)", |t| {
                if t.is_empty() {
                    "(empty)"
                } else {
                    t
                }
            });
            let _ = writeln!(s, "    {}  {value}", padded(&e.name, width));
        }
    }
}

fn text(entry: &Entry, r: &DrillRecord) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}/{} — {} ({}): {}",
        r.runbook.name,
        r.procedure.id,
        r.procedure.title,
        r.procedure.kind.as_str(),
        r.verdict.as_str().to_uppercase()
    );
    if let Some(reason) = &r.reason {
        let _ = writeln!(s, "  {reason}");
    }
    let mut field = |name: &str, value: String| {
        let _ = writeln!(s, "{name:10} {value}");
    };
    field("record", format!("{} (entry {})", r.id, entry.seq));
    field("hash", entry.hash.clone());
    field(
        "runbook",
        format!("{} ({})", r.runbook.name, r.runbook.path),
    );
    field("sha256", r.runbook.sha256.clone());
    if let Some(git) = &r.runbook.git {
        field("git", git_text(git));
    }
    field("operator", r.operator.clone());
    field("started", rfc3339(r.started_at));
    field(
        "finished",
        format!("{}, took {}", rfc3339(r.finished_at), ms(r.duration_ms)),
    );
    field("tool", format!("drillbook {}", r.tool_version));
    if let Some(rto) = rto_text(r) {
        field("RTO", rto);
    }
    if let Some(rpo) = rpo_text(r) {
        field("RPO", rpo);
    }
    if !r.params.is_empty() {
        let _ = writeln!(s, "\nparams");
        let width = r
            .params
            .keys()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0);
        for (k, v) in &r.params {
            let _ = writeln!(s, "  {}  {}", padded(k, width), param_text(v));
        }
    }
    if !r.preflight.is_empty() {
        let _ = writeln!(s, "\npreflight");
        for i in &r.preflight {
            let mark = if i.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(s, "  {mark} {}: {} — {}", i.step, i.check, i.detail);
        }
    }
    for (title, steps) in [("steps", &r.steps), ("cleanup", &r.cleanup)] {
        if steps.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{title}");
        let rows: Vec<Vec<String>> = steps
            .iter()
            .map(|st| {
                vec![
                    st.id.clone(),
                    st.kind.clone(),
                    st.status.symbol().to_owned(),
                    st.duration_ms.map(ms).unwrap_or_default(),
                    step_detail(st),
                ]
            })
            .collect();
        let table = super::table(&["STEP", "KIND", "STATUS", "TOOK", "DETAIL"], &rows);
        for line in table.lines() {
            let _ = writeln!(s, "  {}", line.trim_end());
        }
    }
    evidence_text(&mut s, r);
    if !r.approvals.is_empty() {
        let _ = writeln!(s, "\napprovals");
        for a in &r.approvals {
            let _ = writeln!(
                s,
                "  {}: {} via {} at {} — {}",
                a.step,
                a.by,
                a.via,
                rfc3339(a.at),
                a.question
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_read_as_met_or_not() {
        let o = Some(Duration::from_secs(900));
        assert_eq!(
            against(Some(245_000), o, Some(true)),
            "4m05s, objective 15m: met"
        );
        assert_eq!(
            against(None, o, Some(false)),
            "not measured, objective 15m: NOT met"
        );
        assert_eq!(against(Some(420), None, None), "420ms");
        assert_eq!(
            super::super::measured(Some(3_200), Some(false)),
            "3.2s missed"
        );
    }
}
