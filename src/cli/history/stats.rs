//! `drillbook history stats`: the per-procedure summary of `history::stats`, with the
//! schedules read from the runbooks; exit 1 when a scheduled procedure is overdue.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use chrono::Utc;

use super::{ms, records, Trust};
use crate::cli::{exit, load, out, out_json, Format};
use crate::history::stats::{compute, Direction, ProcedureStats};
use crate::history::Store;
use crate::record::DrillRecord;
use crate::timestamp::rfc3339;

/// (runbook name, procedure id) -> cron text, from `--runbook` files (which must load) or,
/// without any, from the runbook files the records name (those that still load).
fn schedules(
    paths: &[String],
    records: &[DrillRecord],
) -> Option<HashMap<(String, String), String>> {
    let runbooks = if paths.is_empty() {
        let named: BTreeSet<&str> = records.iter().map(|r| r.runbook.path.as_str()).collect();
        named
            .into_iter()
            .filter(|p| std::path::Path::new(p).is_file())
            .filter_map(|p| crate::runbook::load_file(p).ok())
            .collect()
    } else {
        paths.iter().map(|p| load(p)).collect::<Option<Vec<_>>>()?
    };
    let mut out = HashMap::new();
    for rb in &runbooks {
        for p in rb.procedures.values() {
            if let Some(cron) = &p.schedule {
                let key = (rb.name.clone(), p.id.clone());
                out.insert(key, cron.as_str().trim().to_owned());
            }
        }
    }
    Some(out)
}

pub(super) async fn run(
    store: &Store,
    runbooks: &[String],
    last_n: usize,
    format: Format,
) -> anyhow::Result<u8> {
    let records: Vec<DrillRecord> = records(store, Trust::Required)
        .await?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let Some(schedules) = schedules(runbooks, &records) else {
        return Ok(exit::INVALID);
    };
    let now = Utc::now();
    let all = compute(&records, &schedules, last_n, now);
    match format {
        Format::Json => out_json(&all)?,
        Format::Text if all.is_empty() => {
            out(&format!("no records in history {}\n", store.display()));
        }
        Format::Text => out(&text(&all, last_n)),
    }
    Ok(if all.iter().any(|s| s.overdue) {
        exit::FAILED
    } else {
        exit::OK
    })
}

fn text(all: &[ProcedureStats], last_n: usize) -> String {
    let mut s = String::new();
    for p in all {
        let kind = p
            .kind
            .map(|k| format!(" ({})", k.as_str()))
            .unwrap_or_default();
        let flag = if p.overdue { "  OVERDUE" } else { "" };
        let _ = writeln!(s, "{}/{}{kind}{flag}", p.runbook, p.procedure);
        let runs = match (p.pass_rate, p.last_run, p.last_verdict) {
            (Some(rate), Some(at), Some(v)) => format!(
                "{}, {} passed ({:.0}%); last {} {}",
                p.runs,
                p.passed,
                rate * 100.0,
                rfc3339(at),
                v.as_str()
            ),
            _ => "never run".to_owned(),
        };
        let _ = writeln!(s, "  runs       {runs}");
        let last_pass = match (p.last_pass, p.days_since_last_pass) {
            (Some(at), Some(days)) => format!(
                "{}, {days} day{} ago",
                rfc3339(at),
                if days == 1 { "" } else { "s" }
            ),
            _ => "never".to_owned(),
        };
        let _ = writeln!(s, "  last pass  {last_pass}");
        let rto = &p.rto;
        let objective = |o: Option<crate::duration::Duration>| {
            o.map(|o| format!(" (objective {o})")).unwrap_or_default()
        };
        if let (Some(median), Some(p95), Some(max)) = (rto.median_ms, rto.p95_ms, rto.max_ms) {
            let _ = writeln!(
                s,
                "  RTO        median {} · p95 {} · max {} over {} passed run{}{}",
                ms(median),
                ms(p95),
                ms(max),
                rto.measured,
                if rto.measured == 1 { "" } else { "s" },
                objective(rto.objective),
            );
            let trend = match rto.trend.direction {
                Direction::Unknown => format!("— (fewer than 4 of the last {last_n} passed runs)"),
                _ => format!("{} over the last {} passed runs", rto.trend, rto.trend.runs),
            };
            let _ = writeln!(s, "  RTO trend  {trend}");
        } else if p.runs > 0 {
            let _ = writeln!(s, "  RTO        not measured in a passed run");
        }
        if let (Some(last), Some(max)) = (p.rpo.last_ms, p.rpo.max_ms) {
            let _ = writeln!(
                s,
                "  RPO        last {} · max {}{}",
                ms(last),
                ms(max),
                objective(p.rpo.objective)
            );
        }
        let described = |c: &String| match crate::cron::Cron::parse(c) {
            Ok(cron) => format!("{c} ({})", cron.describe()),
            Err(_) => c.clone(),
        };
        let schedule = match (p.schedule.as_ref().map(described), p.due_by) {
            (None, _) => "none known (pass --runbook to check for overdue drills)".to_owned(),
            (Some(c), _) if p.last_pass.is_none() => format!("{c}; never passed: overdue"),
            (Some(c), Some(due)) if p.overdue => format!("{c}; overdue since {}", rfc3339(due)),
            (Some(c), Some(due)) => format!("{c}; next pass due by {}", rfc3339(due)),
            (Some(c), None) => c,
        };
        let _ = writeln!(s, "  schedule   {schedule}\n");
    }
    let overdue: Vec<String> = all
        .iter()
        .filter(|p| p.overdue)
        .map(|p| format!("{}/{}", p.runbook, p.procedure))
        .collect();
    let n = all.len();
    let plural = if n == 1 { "" } else { "s" };
    if overdue.is_empty() {
        let _ = writeln!(s, "{n} procedure{plural}, none overdue");
    } else {
        let _ = writeln!(
            s,
            "{n} procedure{plural}, {} overdue: {}",
            overdue.len(),
            overdue.join(", ")
        );
    }
    s
}
