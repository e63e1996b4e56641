//! Summaries of the history per procedure: how often it ran and passed, how long recovery
//! took (median, p95, max and the trend of the RTO), how much data a recovery lost, and
//! whether a scheduled drill is overdue. Pure functions of the records, the schedules and
//! `now`, so the command, alerts and tests share one computation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cron::Cron;
use crate::duration::Duration;
use crate::record::{DrillRecord, RunKind, Verdict};

/// A change of the mean RTO within this many percent reads as steady.
const STEADY_PERCENT: f64 = 10.0;
/// Fewer runs than this give no trend: two halves of one run each are noise.
const TREND_MIN_RUNS: usize = 4;

/// What the history says about one procedure of one runbook.
#[derive(Debug, Clone, Serialize)]
pub struct ProcedureStats {
    pub runbook: String,
    pub procedure: String,
    /// From the latest record; None for a scheduled procedure that never ran.
    pub kind: Option<RunKind>,
    /// Recorded runs (every verdict).
    pub runs: usize,
    pub passed: usize,
    /// `passed / runs`, from 0 to 1; None without runs.
    pub pass_rate: Option<f64>,
    /// When the latest run started.
    pub last_run: Option<DateTime<Utc>>,
    pub last_verdict: Option<Verdict>,
    /// When the latest passed run finished: the moment the procedure was last proven.
    pub last_pass: Option<DateTime<Utc>>,
    /// Whole days from `last_pass` to now.
    pub days_since_last_pass: Option<i64>,
    pub rto: RtoStats,
    pub rpo: RpoStats,
    /// The procedure's cron schedule, from its runbook.
    pub schedule: Option<String>,
    /// When a scheduled procedure that passed becomes overdue: the first fire after the last
    /// pass plus a seventh of the schedule's period.
    pub due_by: Option<DateTime<Utc>>,
    /// Scheduled, and not passed by `due_by` (or never passed).
    pub overdue: bool,
}

/// Measured RTOs of the passed runs.
#[derive(Debug, Clone, Serialize)]
pub struct RtoStats {
    /// Passed runs with a measured RTO.
    pub measured: usize,
    pub median_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub max_ms: Option<u64>,
    /// The objective of the latest run that recorded one.
    pub objective: Option<Duration>,
    pub trend: Trend,
}

/// Observed data loss windows (every verdict: a run that missed its RPO is the one to see).
#[derive(Debug, Clone, Serialize)]
pub struct RpoStats {
    /// Runs with a measured data loss window.
    pub measured: usize,
    /// The window of the latest run that measured one.
    pub last_ms: Option<u64>,
    pub max_ms: Option<u64>,
    /// The objective of the latest run that recorded one.
    pub objective: Option<Duration>,
}

/// How the RTO moves: the mean of the newer half of the last runs against the older half.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub direction: Direction,
    /// Runs compared.
    pub runs: usize,
    /// Change of the mean from the older half to the newer half, in percent (negative is
    /// faster); None with too few runs.
    pub change_percent: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Faster,
    Slower,
    /// Within ±10%.
    Steady,
    /// Fewer than 4 runs.
    Unknown,
}

impl fmt::Display for Trend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = self.change_percent.unwrap_or_default().abs().round();
        match self.direction {
            Direction::Faster => write!(f, "faster by {pct}%"),
            Direction::Slower => write!(f, "slower by {pct}%"),
            Direction::Steady => f.write_str("steady"),
            Direction::Unknown => f.write_str("—"),
        }
    }
}

/// The `q` quantile (0 to 1) of sorted values, interpolating linearly between ranks (the
/// median of an even count is the mean of the middle two); None when empty.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = q.clamp(0.0, 1.0) * last as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
    Some((a + (b - a) * (rank - lo as f64)).round() as u64)
}

/// The trend of chronological values: the mean of the newer half against the older half
/// (with an odd count the middle value belongs to neither).
pub fn trend(values: &[u64]) -> Trend {
    let runs = values.len();
    let unknown = Trend {
        direction: Direction::Unknown,
        runs,
        change_percent: None,
    };
    if runs < TREND_MIN_RUNS {
        return unknown;
    }
    let half = runs / 2;
    let mean = |v: &[u64]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let (older, newer) = (mean(&values[..half]), mean(&values[runs - half..]));
    if older <= 0.0 {
        return unknown;
    }
    let change = (newer - older) * 100.0 / older;
    let direction = if change.abs() <= STEADY_PERCENT {
        Direction::Steady
    } else if change < 0.0 {
        Direction::Faster
    } else {
        Direction::Slower
    };
    Trend {
        direction,
        runs,
        change_percent: Some((change * 10.0).round() / 10.0),
    }
}

/// When a procedure last passed at `last_pass` becomes overdue: the schedule's first fire
/// after it, plus a grace of a seventh of the schedule's period there (the gap to the
/// following fire), so a monthly drill gets about four days and a daily one about 3.4 hours.
pub fn due_by(schedule: &Cron, last_pass: DateTime<Utc>) -> DateTime<Utc> {
    let first = schedule.next_after(last_pass);
    let period = schedule.next_after(first) - first;
    first
        .checked_add_signed(period / 7)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A scheduled procedure is overdue when it never passed, or `now` is past [`due_by`].
pub fn is_overdue(schedule: &Cron, last_pass: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_pass.is_none_or(|t| now > due_by(schedule, t))
}

/// Stats per (runbook name, procedure id), sorted by them: every procedure with records,
/// and every scheduled one (a schedule that never produced a record is overdue). Dry runs
/// are not counted. `schedules` maps (runbook name, procedure id) to a cron expression; one
/// that does not parse counts as no schedule. `last_n` bounds the runs the RTO trend uses.
pub fn compute(
    records: &[DrillRecord],
    schedules: &HashMap<(String, String), String>,
    last_n: usize,
    now: DateTime<Utc>,
) -> Vec<ProcedureStats> {
    let mut groups: BTreeMap<(String, String), Vec<&DrillRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.dry_run) {
        groups
            .entry((r.runbook.name.clone(), r.procedure.id.clone()))
            .or_default()
            .push(r);
    }
    for key in schedules.keys() {
        groups.entry(key.clone()).or_default();
    }
    groups
        .into_iter()
        .map(|(key, mut runs)| {
            runs.sort_by_key(|r| r.started_at);
            let schedule = schedules.get(&key).cloned();
            procedure_stats(key, &runs, schedule, last_n, now)
        })
        .collect()
}

/// `runs` in chronological order.
fn procedure_stats(
    (runbook, procedure): (String, String),
    runs: &[&DrillRecord],
    schedule: Option<String>,
    last_n: usize,
    now: DateTime<Utc>,
) -> ProcedureStats {
    let passes: Vec<&DrillRecord> = runs
        .iter()
        .copied()
        .filter(|r| r.verdict == Verdict::Passed)
        .collect();
    let last = runs.last();
    let last_pass = passes.iter().map(|r| r.finished_at).max();
    let rto_series: Vec<u64> = passes
        .iter()
        .filter_map(|r| r.rto.as_ref()?.measured_ms)
        .collect();
    let mut sorted = rto_series.clone();
    sorted.sort_unstable();
    let rpo_series: Vec<u64> = runs
        .iter()
        .filter_map(|r| r.rpo.as_ref()?.data_loss_window_ms)
        .collect();
    let cron = schedule.as_deref().and_then(|s| Cron::parse(s).ok());
    ProcedureStats {
        runbook,
        procedure,
        kind: last.map(|r| r.procedure.kind),
        runs: runs.len(),
        passed: passes.len(),
        pass_rate: (!runs.is_empty()).then(|| passes.len() as f64 / runs.len() as f64),
        last_run: last.map(|r| r.started_at),
        last_verdict: last.map(|r| r.verdict),
        last_pass,
        days_since_last_pass: last_pass.map(|t| (now - t).num_days()),
        rto: RtoStats {
            measured: sorted.len(),
            median_ms: percentile(&sorted, 0.5),
            p95_ms: percentile(&sorted, 0.95),
            max_ms: sorted.last().copied(),
            objective: runs.iter().rev().find_map(|r| r.rto.as_ref()?.objective),
            trend: trend(&rto_series[rto_series.len().saturating_sub(last_n)..]),
        },
        rpo: RpoStats {
            measured: rpo_series.len(),
            last_ms: rpo_series.last().copied(),
            max_ms: rpo_series.iter().max().copied(),
            objective: runs.iter().rev().find_map(|r| r.rpo.as_ref()?.objective),
        },
        due_by: cron.as_ref().zip(last_pass).map(|(c, t)| due_by(c, t)),
        overdue: cron.as_ref().is_some_and(|c| is_overdue(c, last_pass, now)),
        schedule,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Built from JSON, as records are read: fields added later with defaults need no edit.
    fn record(procedure: &str, at: DateTime<Utc>, verdict: Verdict, rto_ms: u64) -> DrillRecord {
        serde_json::from_value(serde_json::json!({
            "record_version": 1,
            "id": format!("{procedure}-{}", at.timestamp()),
            "runbook": {"name": "shop", "path": "runbooks/shop.yaml", "sha256": ""},
            "procedure": {"id": procedure, "title": procedure, "kind": "drill"},
            "params": {},
            "operator": "ci",
            "tool_version": "0.1.0",
            "started_at": at,
            "finished_at": at + TimeDelta::minutes(5),
            "duration_ms": 300_000,
            "dry_run": false,
            "verdict": verdict,
            "steps": [],
            "cleanup": [],
            "rto": {"measured_ms": rto_ms, "objective": "15m", "met": true, "from_step": "restore", "to_step": "verify"},
            "rpo": {"recovery_point": null, "target": null, "data_loss_window_ms": rto_ms / 100, "objective": null, "met": null},
            "approvals": [],
        }))
        .expect("a valid record")
    }

    fn monthly() -> HashMap<(String, String), String> {
        HashMap::from([(("shop".into(), "drill".into()), "0 9 1 * *".into())])
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.95), Some(7));
        assert_eq!(percentile(&[1, 2, 3, 4], 0.5), Some(3)); // 2.5 rounds half away from zero
        assert_eq!(percentile(&[10, 20, 30], 0.5), Some(20));
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 0.95), Some(95)); // rank 94.05
        assert_eq!(percentile(&hundred, 1.0), Some(100));
        let twenty: Vec<u64> = (1..=20).map(|x| x * 1000).collect();
        assert_eq!(percentile(&twenty, 0.95), Some(19_050));
    }

    #[test]
    fn trend_compares_the_newer_half_with_the_older() {
        let d = |v: &[u64]| trend(v).to_string();
        assert_eq!(d(&[100, 100, 100]), "—");
        assert_eq!(d(&[100, 100, 80, 80]), "faster by 20%");
        assert_eq!(d(&[100, 100, 130, 130]), "slower by 30%");
        assert_eq!(d(&[100, 100, 109, 110]), "steady");
        assert_eq!(d(&[100, 100, 110, 110]), "steady"); // the edge is steady
                                                        // odd: the middle run is in neither half
        assert_eq!(d(&[100, 100, 999, 50, 50]), "faster by 50%");
        let t = trend(&[100, 100, 75, 75]);
        assert_eq!(
            (t.direction, t.runs, t.change_percent),
            (Direction::Faster, 4, Some(-25.0))
        );
    }

    #[test]
    fn trend_uses_the_last_n_passed_runs() {
        let start = t("2026-01-01T09:00:00Z");
        let mut records: Vec<DrillRecord> = (0..8)
            .map(|i| {
                // slow early runs, then fast: only the last 4 (all fast and steady) count
                let ms = if i < 4 { 900_000 } else { 300_000 };
                record("drill", start + TimeDelta::days(i), Verdict::Passed, ms)
            })
            .collect();
        records.push(record(
            "drill",
            start + TimeDelta::days(9),
            Verdict::Failed,
            1,
        ));
        let s = &compute(&records, &HashMap::new(), 4, start + TimeDelta::days(10))[0];
        assert_eq!(s.rto.trend.to_string(), "steady");
        assert_eq!(s.rto.trend.runs, 4);
        let s = &compute(&records, &HashMap::new(), 8, start + TimeDelta::days(10))[0];
        assert_eq!(s.rto.trend.to_string(), "faster by 67%");
        assert_eq!((s.runs, s.passed, s.rto.measured), (9, 8, 8));
        assert_eq!(s.rto.max_ms, Some(900_000)); // the failed run's RTO is not counted
        assert_eq!(s.last_verdict, Some(Verdict::Failed));
        assert_eq!(s.rpo.last_ms, Some(0)); // but its data loss window is
    }

    #[test]
    fn a_monthly_drill_is_overdue_a_seventh_of_a_month_after_its_next_fire() {
        // passed 2026-03-01 09:05; next fire 04-01 09:00; period to 05-01 is 30 days, so
        // the grace is 4d 6h 51m: due 2026-04-05 15:51
        let passed_at = t("2026-03-01T09:00:00Z");
        let records = [record("drill", passed_at, Verdict::Passed, 60_000)];
        let last_pass = passed_at + TimeDelta::minutes(5);
        let at = |days| compute(&records, &monthly(), 10, last_pass + TimeDelta::days(days));
        let s = &at(34)[0];
        assert!(!s.overdue);
        assert_eq!(s.days_since_last_pass, Some(34));
        assert_eq!(
            s.due_by.map(crate::timestamp::rfc3339).as_deref(),
            Some("2026-04-05T15:51:25Z")
        );
        assert!(at(36)[0].overdue);
        // a failed run since does not help
        let mut failed = records.to_vec();
        failed.push(record(
            "drill",
            passed_at + TimeDelta::days(31),
            Verdict::Failed,
            1,
        ));
        assert!(compute(&failed, &monthly(), 10, last_pass + TimeDelta::days(36))[0].overdue);
    }

    #[test]
    fn a_scheduled_procedure_that_never_passed_is_overdue() {
        let now = t("2026-06-01T00:00:00Z");
        // never ran at all: listed from its schedule alone
        let s = &compute(&[], &monthly(), 10, now)[0];
        assert_eq!(
            (s.runs, s.overdue, s.pass_rate, s.due_by),
            (0, true, None, None)
        );
        // ran yesterday and failed
        let records = [record(
            "drill",
            now - TimeDelta::days(1),
            Verdict::Failed,
            1,
        )];
        let s = &compute(&records, &monthly(), 10, now)[0];
        assert!(s.overdue);
        assert_eq!(s.pass_rate, Some(0.0));
        // without a schedule nothing is overdue
        assert!(!compute(&records, &HashMap::new(), 10, now)[0].overdue);
    }

    #[test]
    fn groups_per_procedure_and_skips_dry_runs() {
        let now = t("2026-06-01T00:00:00Z");
        let mut dry = record("drill", now - TimeDelta::days(2), Verdict::Passed, 5);
        dry.dry_run = true;
        let records = [
            record("restore", now - TimeDelta::days(3), Verdict::Passed, 4_000),
            record("drill", now - TimeDelta::days(5), Verdict::Passed, 2_000),
            record("drill", now - TimeDelta::days(4), Verdict::Error, 1),
            dry,
        ];
        let stats = compute(&records, &HashMap::new(), 10, now);
        let names: Vec<&str> = stats.iter().map(|s| s.procedure.as_str()).collect();
        assert_eq!(names, ["drill", "restore"]);
        assert_eq!((stats[0].runs, stats[0].passed), (2, 1));
        assert_eq!(stats[0].pass_rate, Some(0.5));
        assert_eq!(stats[0].last_verdict, Some(Verdict::Error));
        assert_eq!(stats[0].rto.median_ms, Some(2_000));
    }
}
