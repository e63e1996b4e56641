//! Each run's test-result log, written next to the history: `<date>-<runbook>-<procedure>-<id>.md`
//! (rendered from the DrillRecord through `drill-log.md.j2`), `.json` (the record) and
//! `.xml` (JUnit). `history show ID --format md` renders the same Markdown.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{escape, RenderError, Renderer};
use crate::duration::human;
use crate::history::{Entry, Store};
use crate::record::{DrillRecord, StepRecord};

/// `--log-dir`, else the directory of a file history, else `drills/`.
pub fn dir(log_dir: Option<&Path>, store: &Store) -> PathBuf {
    if let Some(d) = log_dir {
        return d.to_owned();
    }
    match store {
        Store::File(p) => p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_owned),
        Store::Postgres(_) => PathBuf::from("drills"),
    }
}

/// `2026-11-29-neon-production-pitr-drill-20261129T203252Z-273e5b0d`: the runbook's name
/// too, so two runbooks' `drill` procedures are told apart.
pub fn base_name(record: &DrillRecord) -> String {
    format!(
        "{}-{}-{}-{}",
        record.started_at.format("%Y-%m-%d"),
        record.runbook.name,
        record.procedure.id,
        record.id
    )
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(
        || "—".into(),
        |m| human(std::time::Duration::from_millis(m)),
    )
}

/// The longest output value shown inline in the evidence; longer ones are left to the
/// record (`.json`).
const INLINE: usize = 200;

/// One output of a step, as evidence: its name, what it means (as its kind declares), and
/// its value as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub name: String,
    pub meaning: &'static str,
    pub text: String,
}

impl Evidence {
    /// Text of several lines (a comparison's report), shown as a block.
    pub fn is_block(&self) -> bool {
        self.text.contains('\n')
    }

    /// The value as shown inline: too large to read inline (per-table details, diffs) is
    /// named and left to the record.
    pub fn inline(&self) -> Option<&str> {
        if self.text.chars().count() > INLINE {
            None
        } else {
            Some(&self.text)
        }
    }
}

/// What a step's outputs prove, for a reader: each output with its meaning and value, in the
/// order its kind declares them (a record read back from the history has its keys sorted),
/// the payload's own after them by name. Shared by the drill log and `history show`.
pub fn evidence(s: &StepRecord) -> Vec<Evidence> {
    let info = crate::kind::StepKind::info(&s.kind);
    let declared = |name: &str| info.and_then(|i| i.outputs.iter().position(|o| o.name == name));
    let mut outputs: Vec<(&String, &Value)> = s.outputs.iter().collect();
    outputs.sort_by(|(a, _), (b, _)| {
        let at = |n: &str| declared(n).unwrap_or(usize::MAX);
        at(a).cmp(&at(b)).then(a.cmp(b))
    });
    outputs
        .into_iter()
        .map(|(name, value)| Evidence {
            name: name.clone(),
            meaning: declared(name)
                .and_then(|i| info.map(|info| info.outputs[i].meaning))
                .unwrap_or(""),
            text: match value {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            },
        })
        .collect()
}

/// Text from the record as Markdown for a table cell or a line of its own: escaped, so a
/// step's output or an error reads as written and cannot add a cell, a link or HTML; the code
/// spans drillbook's own messages close (`` `sh` exited ``) stay.
fn text(t: &str) -> String {
    super::cell(&escape::inline(t))
}

/// The evidence as the drill log's template reads it: rows, and blocks of several lines (in a
/// fenced block whose `fence` outlasts any backticks in the text).
fn evidence_json(s: &StepRecord) -> Value {
    let mut rows = Vec::new();
    let mut blocks = Vec::new();
    for e in evidence(s) {
        let meaning = super::cell(e.meaning);
        let name = escape::literal(&e.name);
        if e.is_block() {
            let text = crate::controls::visible(&e.text).into_owned();
            blocks.push(json!({"name": name, "meaning": meaning, "fence": escape::fence(&text), "text": text}));
            continue;
        }
        let shown = match e.inline() {
            None => "(in the record)".to_owned(),
            Some("") => "(empty)".to_owned(),
            Some(t) => escape::code(t),
        };
        rows.push(json!({"name": name, "value": super::cell(&shown), "meaning": meaning}));
    }
    json!({"rows": rows, "blocks": blocks})
}

fn step(s: &StepRecord) -> Value {
    json!({
        "evidence": evidence_json(s),
        "id": escape::literal(&s.id),
        "title": text(&s.title),
        "kind": escape::literal(&s.kind),
        "status": s.status.symbol(),
        "passed": s.status == crate::record::StepStatus::Passed,
        "duration": ms(s.duration_ms),
        "attempts": s.attempts,
        "destructive": s.destructive,
        "detail": text(s.error.as_deref().or(s.note.as_deref()).unwrap_or("")),
    })
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "missed",
        None => "not measured",
    }
}

/// What `drill-log.md.j2` sees.
pub fn context(record: &DrillRecord, entry: Option<&Entry>) -> Value {
    let verdict = record.verdict.as_str().to_uppercase();
    // an objective's observation that did not happen says so
    let observed = |v: Option<u64>| v.map_or_else(|| "not measured".to_owned(), |m| ms(Some(m)));
    let rto = record.rto.as_ref().map(|r| {
        json!({
            "measured": observed(r.measured_ms),
            "objective": r.objective.map(|o| o.to_string()),
            "met": met(r.met),
            "from": r.from_step,
            "to": r.to_step,
        })
    });
    let rpo = record.rpo.as_ref().map(|r| {
        json!({
            "window": observed(r.data_loss_window_ms),
            "objective": r.objective.map(|o| o.to_string()),
            "met": met(r.met),
            "recovery_point": r.recovery_point.map(crate::timestamp::rfc3339),
            "target": r.target.map(crate::timestamp::rfc3339),
        })
    });
    // what the template prints as text is escaped here; what it puts in code spans (ids,
    // paths, hashes) it passes through the `code` filter
    let mut procedure = json!(record.procedure);
    procedure["title"] = text(&record.procedure.title).into();
    json!({
        "title": text(&format!("Drill log: {} / {}", record.runbook.name, record.procedure.id)),
        "id": record.id,
        "runbook": record.runbook,
        "procedure": procedure,
        "kind": record.procedure.kind.as_str(),
        "verdict": verdict,
        "reason": record.reason.as_deref().map(text),
        "operator": text(&record.operator),
        "tool_version": text(&record.tool_version),
        "started": crate::timestamp::rfc3339(record.started_at),
        "finished": crate::timestamp::rfc3339(record.finished_at),
        "duration": ms(Some(record.duration_ms)),
        "dry_run": record.dry_run,
        "steps": record.steps.iter().map(step).collect::<Vec<_>>(),
        "cleanup": record.cleanup.iter().map(step).collect::<Vec<_>>(),
        "rto": rto,
        "rpo": rpo,
        "approvals": record.approvals.iter().map(|a| json!({
            "step": text(&a.step), "by": text(&a.by), "via": text(&a.via),
            "at": crate::timestamp::rfc3339(a.at), "question": text(&a.question),
        })).collect::<Vec<_>>(),
        "params": record.params.iter().map(|(k, v)| json!({
            "name": text(k),
            "value": super::cell(&escape::literal(&v.as_str().map_or_else(|| v.to_string(), str::to_owned))),
        })).collect::<Vec<_>>(),
        "preflight": record.preflight.iter().map(|p| json!({
            "step": text(&p.step), "check": text(&p.check), "ok": p.ok, "detail": text(&p.detail),
        })).collect::<Vec<_>>(),
        "entry": entry.map(|e| json!({ "seq": e.seq, "hash": e.hash })),
    })
}

/// The Markdown log of a run, structure-checked.
pub fn markdown(
    renderer: &Renderer,
    record: &DrillRecord,
    entry: Option<&Entry>,
) -> Result<String, RenderError> {
    let text = renderer.render("drill-log.md.j2", &context(record, entry))?;
    let problems = super::lint::problems(&text);
    if !problems.is_empty() {
        return Err(RenderError::Lint(format!(
            "the drill log of {} is not sound Markdown:\n  {}",
            record.id,
            problems.join("\n  ")
        )));
    }
    Ok(text)
}

/// Writes `<base>.md`, `<base>.json` and `<base>.xml` into `dir`; returns their paths.
pub fn write(
    dir: &Path,
    renderer: &Renderer,
    record: &DrillRecord,
    entry: Option<&Entry>,
) -> Result<Vec<PathBuf>, RenderError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| RenderError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let base = base_name(record);
    let json =
        serde_json::to_string_pretty(record).map_err(|e| RenderError::Io(e.to_string()))? + "\n";
    let files = [
        (format!("{base}.md"), markdown(renderer, record, entry)?),
        (format!("{base}.json"), json),
        (format!("{base}.xml"), super::junit::xml(record)),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| RenderError::Io(format!("cannot write {}: {e}", path.display())))?;
        out.push(path);
    }
    Ok(out)
}
