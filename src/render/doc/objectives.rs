//! The recovery objectives: the RTO clock of each procedure (the steps it covers and what
//! their timeouts add up to) and the steps that measure the RPO.

use serde_json::{json, Value};

use super::checks::freshness_check;
use super::procedures::ProcedureDoc;
use super::text::{code, codes, md, prose, wrap, Headings};
use crate::kind::StepKind;
use crate::runbook::{RtoMark, Runbook};

pub(super) fn objectives(
    runbook: &Runbook,
    procedures: &[ProcedureDoc],
    headings: &mut Headings,
) -> Value {
    let o = &runbook.objectives;
    let mut clocks = Vec::new();
    let mut rpo_steps = Vec::new();
    for (p, doc) in runbook.procedures.values().zip(procedures) {
        for s in &p.steps {
            if let StepKind::Freshness(f) = &s.kind {
                rpo_steps.push(wrap(
                    &format!(
                        "{} of [{}](#{}): {}",
                        md(&code(&s.id)),
                        md(&code(&p.id)),
                        crate::render::anchor(&doc.heading),
                        md(&freshness_check(runbook, f))
                    ),
                    96,
                ));
            }
        }
        if p.steps.is_empty() {
            continue;
        }
        let marked_start = p.steps.iter().position(|s| s.rto == Some(RtoMark::Start));
        let marked_end = p.steps.iter().position(|s| s.rto == Some(RtoMark::End));
        let from = marked_start.unwrap_or(0);
        let to = marked_end.unwrap_or(p.steps.len() - 1).max(from);
        let window = &p.steps[from..=to];
        let mut total = std::time::Duration::ZERO;
        let mut unbounded = Vec::new();
        let steps: Vec<Value> = window
            .iter()
            .enumerate()
            .map(|(i, s)| {
                match s.timeout {
                    Some(t) => total += t.std(),
                    None => unbounded.push(s.id.clone()),
                }
                json!({
                    "number": from + i + 1,
                    "id": s.id,
                    "title": prose(s.display_title()),
                    "timeout": s.timeout.map_or("none".to_owned(), |t| t.to_string()),
                })
            })
            .collect();
        let how = match (marked_start, marked_end) {
            (Some(_), Some(_)) => "Both ends are marked in the runbook (`rto: start`, `rto: end`)",
            (Some(_), None) => {
                "The runbook marks the start (`rto: start`); the end is the last step"
            }
            (None, Some(_)) => {
                "The start is the first step; the runbook marks the end (`rto: end`)"
            }
            (None, None) => {
                "No step is marked with `rto:`, so the clock covers the whole procedure"
            }
        };
        let total_d = crate::duration::Duration(total);
        let mut sum = if total.is_zero() {
            "No step in the window has a timeout".to_owned()
        } else {
            format!("The timeouts of these steps add up to {total_d}")
        };
        if !unbounded.is_empty() && !total.is_zero() {
            sum.push_str(&format!(
                " (steps without a timeout: {})",
                codes(&unbounded)
            ));
        }
        match o.rto {
            Some(rto) if total > rto.std() => sum.push_str(&format!(
                ", more than the RTO of {rto}: a run that needs every timeout misses it"
            )),
            Some(rto) if unbounded.is_empty() => {
                sum.push_str(&format!(", within the RTO of {rto}"));
            }
            _ => {}
        }
        sum.push('.');
        clocks.push(json!({
            "heading": headings.claim(&format!("RTO clock of {}", p.id)),
            "procedure": p.id,
            "procedure_heading": doc.heading,
            "from": window.first().map(|s| s.id.clone()),
            "to": window.last().map(|s| s.id.clone()),
            "how": md(how),
            "steps": steps,
            "total": wrap(&md(&sum), 100),
        }));
    }
    json!({
        "rto": o.rto.map(|d| d.to_string()),
        "rpo": o.rpo.map(|d| d.to_string()),
        "clocks": clocks,
        "rpo_steps": rpo_steps,
    })
}
