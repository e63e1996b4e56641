//! The check run in the Prometheus text format (node_exporter's textfile collector reads
//! it): per-check status, duration, and the measures that feed a family of their own; and,
//! from the history, the last passing run's RTO and time per procedure.

use std::collections::BTreeMap;

use super::CheckResult;
use crate::kind::Metric;
use crate::record::{DrillRecord, Verdict};
use crate::render::prometheus::{Exposition, Labels};

/// The exposition for `runbook`'s check `results` and its recorded runs.
/// The exposition of a check run. `records` are the runbook's records from the history, and
/// `intact` whether its chain verified (`None`: it could not be read). A broken history
/// gives no figures, only `drillbook_history_intact 0`: nothing read from it is trusted.
pub fn prometheus(
    runbook: &str,
    results: &[CheckResult],
    records: &[DrillRecord],
    intact: Option<bool>,
) -> String {
    let records = if intact == Some(false) { &[] } else { records };
    let per_check = |r| per_check(runbook, r);
    let mut out = Exposition::new();
    out.gauge(
        "drillbook_check_status",
        "Check status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        results
            .iter()
            .map(|r| (per_check(r), f64::from(r.status.code()))),
    );
    out.gauge(
        "drillbook_check_duration_seconds",
        "How long the check took.",
        results
            .iter()
            .map(|r| (per_check(r), r.duration_ms as f64 / 1000.0)),
    );
    out.gauge(
        "drillbook_check_part_status",
        "A check's sub-result (a line of the tool's report): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        results.iter().flat_map(|r| {
            r.parts.iter().map(move |p| {
                let mut labels = self::per_check(runbook, r);
                labels.push(("part", p.name.as_str()));
                (labels, f64::from(p.status.code()))
            })
        }),
    );
    let by_metric = |metric: Metric| {
        results.iter().filter_map(move |r| {
            let m = r.measure.as_ref()?;
            (m.metric == Some(metric)).then(|| (per_check(r), m.value))
        })
    };
    out.gauge(
        "drillbook_backup_age_seconds",
        "Age of the newest backup: snapshot, base backup or archived WAL segment.",
        by_metric(Metric::BackupAge),
    );
    out.gauge(
        "drillbook_restore_window_seconds",
        "The point-in-time restore window (history retention).",
        by_metric(Metric::RestoreWindow),
    );
    out.gauge(
        "drillbook_check_measure",
        "The measure a check's thresholds compare, in the unit its label names.",
        results.iter().filter_map(|r| {
            let m = r.measure.as_ref()?;
            let mut labels = per_check(r);
            labels.extend([("measure", m.name.as_str()), ("unit", m.unit.as_str())]);
            Some((labels, m.value))
        }),
    );
    // from the history: the last passing run of each procedure
    let mut last: BTreeMap<&str, &DrillRecord> = BTreeMap::new();
    for r in records.iter().filter(|r| r.verdict == Verdict::Passed) {
        let e = last.entry(r.procedure.id.as_str()).or_insert(r);
        if r.finished_at > e.finished_at {
            *e = r;
        }
    }
    let per_proc = |p| vec![("runbook", runbook), ("procedure", p)];
    out.gauge(
        "drillbook_last_drill_rto_seconds",
        "Measured RTO of the last passing run of the procedure.",
        last.iter().filter_map(|(p, r)| {
            let ms = r.rto.as_ref()?.measured_ms?;
            Some((per_proc(p), ms as f64 / 1000.0))
        }),
    );
    out.gauge(
        "drillbook_last_pass_timestamp_seconds",
        "When the procedure last passed (Unix time).",
        last.iter()
            .map(|(p, r)| (per_proc(p), r.finished_at.timestamp() as f64)),
    );
    out.gauge(
        "drillbook_history_intact",
        "1 when the history's hash chain verifies, 0 when it is broken (its figures are then left out).",
        intact.map(|ok| (vec![("runbook", runbook)], if ok { 1.0 } else { 0.0 })),
    );
    out.finish()
}

fn per_check<'a>(runbook: &'a str, r: &'a CheckResult) -> Labels<'a> {
    vec![
        ("runbook", runbook),
        ("check", r.id.as_str()),
        ("kind", r.kind.as_str()),
    ]
}
