//! Records read straight from stored lines into their typed form. A reader of a long
//! history pays for the JSON it parses: going through the generic tree of [`super::Entry`]
//! and then [`super::Entry::drill`] builds every record twice. [`record`] parses it once;
//! [`Brief`] reads only what readers filter and sort on, so a reader that needs a few
//! records (`history list --limit 20`, the `history.*` checks) fully parses only those.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::record::{DrillRecord, ProcedureRef, RpoRecord, RtoRecord, RunbookRef, Verdict};

#[derive(Deserialize)]
struct Typed {
    seq: u64,
    record: DrillRecord,
}

/// The entry's `seq` and its record; why not, when the line holds no record this version
/// can read.
pub fn record(line: &str) -> Result<(u64, DrillRecord), String> {
    serde_json::from_str::<Typed>(line)
        .map(|t| (t.seq, t.record))
        .map_err(|e| e.to_string())
}

/// A record whose lists are skipped unread: most of a record's bytes are its steps'
/// outputs.
#[derive(Deserialize)]
struct Outlined {
    seq: u64,
    record: OutlinedRecord,
}

#[derive(Deserialize)]
struct OutlinedRecord {
    record_version: u32,
    id: String,
    runbook: RunbookRef,
    procedure: ProcedureRef,
    params: IgnoredAny,
    operator: String,
    tool_version: String,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    duration_ms: u64,
    dry_run: bool,
    verdict: Verdict,
    reason: Option<String>,
    steps: IgnoredAny,
    cleanup: IgnoredAny,
    rto: Option<RtoRecord>,
    #[serde(default)]
    rpo: Option<RpoRecord>,
    approvals: IgnoredAny,
}

/// The entry's `seq` and its record without `params`, `steps`, `cleanup`, `approvals`,
/// `preflight` and `notifications` (left empty, and not checked): for readers of the runs'
/// outcomes over a whole history (`history stats`).
pub fn outline(line: &str) -> Result<(u64, DrillRecord), String> {
    let o: Outlined = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let r = o.record;
    let _ = (r.params, r.steps, r.cleanup, r.approvals);
    let record = DrillRecord {
        record_version: r.record_version,
        id: r.id,
        runbook: r.runbook,
        procedure: r.procedure,
        params: serde_json::Map::new(),
        operator: r.operator,
        tool_version: r.tool_version,
        started_at: r.started_at,
        finished_at: r.finished_at,
        duration_ms: r.duration_ms,
        dry_run: r.dry_run,
        verdict: r.verdict,
        reason: r.reason,
        steps: Vec::new(),
        cleanup: Vec::new(),
        rto: r.rto,
        rpo: r.rpo,
        approvals: Vec::new(),
        preflight: Vec::new(),
        notifications: Vec::new(),
    };
    Ok((o.seq, record))
}

/// What readers filter and sort records on, borrowed from the line.
#[derive(Debug, Deserialize)]
pub struct Brief<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub record: BriefRecord<'a>,
}

#[derive(Debug, Deserialize)]
pub struct BriefRecord<'a> {
    #[serde(borrow)]
    pub runbook: Named<'a>,
    #[serde(borrow)]
    pub procedure: Named<'a>,
    pub started_at: DateTime<Utc>,
    pub verdict: Verdict,
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
pub struct Named<'a> {
    #[serde(borrow, alias = "id")]
    pub name: Cow<'a, str>,
}

impl<'a> Brief<'a> {
    /// None when the line is not a readable entry (the full read says why).
    pub fn read(line: &'a str) -> Option<Brief<'a>> {
        serde_json::from_str(line).ok()
    }
}

/// The records of `runbook` that are not dry runs, in store order; a line that cannot be
/// read is skipped (`verify` reports it).
pub fn of_runbook(lines: &[String], runbook: &str) -> Vec<DrillRecord> {
    lines
        .iter()
        .filter(|l| {
            Brief::read(l).is_some_and(|b| b.record.runbook.name == runbook && !b.record.dry_run)
        })
        .filter_map(|l| record(l).ok())
        .map(|(_, r)| r)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_record_reads_typed_and_brief() {
        let text = include_str!("../../tests/fixtures/record.json");
        let record: serde_json::Value = serde_json::from_str(text).expect("fixture");
        let line = super::super::Entry::after(None, record).line();
        let (seq, r) = super::record(&line).expect("typed");
        let b = Brief::read(&line).expect("brief");
        assert_eq!(
            (seq, &*b.record.runbook.name, &*b.record.procedure.name),
            (1, r.runbook.name.as_str(), r.procedure.id.as_str())
        );
        assert_eq!(
            (b.record.started_at, b.record.verdict),
            (r.started_at, r.verdict)
        );
        assert!(super::record(r#"{"seq":1,"record":{"id":"x"}}"#).is_err());
        let (_, o) = outline(&line).expect("outline");
        assert_eq!(
            serde_json::to_value(DrillRecord {
                steps: Vec::new(),
                cleanup: Vec::new(),
                params: serde_json::Map::new(),
                approvals: Vec::new(),
                preflight: Vec::new(),
                notifications: Vec::new(),
                ..r
            })
            .expect("json"),
            serde_json::to_value(o).expect("json")
        );
    }
}
