//! `compare`: runs the comparison. Checksums are computed in each database, tables are
//! checked concurrently over a bounded number of connections per database, and every
//! finding lands in the step's outputs, per table.

mod as_of;
mod catalog;
mod fingerprint;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Mutex;

use super::{db, Run, StepCx, StepError};
use crate::kind::compare::{
    same_table, Compare, CountRule, Direction, RowCounts, Samples, Tables, Tolerance,
};
use crate::record::Outputs;
use as_of::{Plan, HINT};
use catalog::Table;
use table::{Digest, Hashing, KeyDiff};

/// `public.orders` shows as `orders`.
fn shown(qualified: &str) -> &str {
    qualified.strip_prefix("public.").unwrap_or(qualified)
}

/// The outcome for one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableReport {
    pub table: String,
    pub ok: bool,
    pub rows_source: Option<i64>,
    pub rows_restored: Option<i64>,
    /// `equal`, `different`, or absent when not checksummed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differing_keys: Vec<KeyDiff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    /// As of the target: source rows changed (or added) after it, not compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_after_target: Option<i64>,
    /// As of the target: restored rows the source no longer has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_after_target: Option<u64>,
    /// What production did after the target, said but not failed on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Run for Compare {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        compare(self, cx).await
    }
}

async fn compare(spec: &Compare, cx: &StepCx<'_>) -> Result<Outputs, StepError> {
    if let Some(fp) = &spec.fingerprint {
        return fingerprint::against(spec, cx, fp).await;
    }
    let target = match &spec.as_of {
        Some(a) => Some(as_of_target(a)?),
        None => None,
    };
    let (src_spec, dst_spec) = (
        db::resolve(cx, &spec.source).await?,
        db::resolve(cx, &spec.restored).await?,
    );
    let n = spec.concurrency.unwrap_or(2).clamp(1, 16);
    let mut pairs = Vec::new();
    for _ in 0..n {
        let (a, b) =
            tokio::try_join!(crate::pg::connect(&src_spec), crate::pg::connect(&dst_spec))?;
        pairs.push((a, b));
    }
    let unavailable = |side: &str, e: String| StepError::unavailable(format!("{side}: {e}"));
    let (src, dst) = (&pairs[0].0, &pairs[0].1);
    let (src_tables, dst_tables) = tokio::try_join!(catalog::tables(src), catalog::tables(dst))
        .map_err(|e| unavailable("catalog", e))?;
    let (src_major, dst_major) =
        tokio::try_join!(catalog::major_version(src), catalog::major_version(dst))
            .map_err(|e| unavailable("version", e))?;

    // which tables, and what to do with each
    let mut reports: BTreeMap<String, TableReport> = BTreeMap::new();
    let selected: Vec<&Table> = match &spec.tables {
        Tables::All => src_tables.values().collect(),
        Tables::List(list) => {
            let mut v = Vec::new();
            for want in list {
                match src_tables.values().find(|t| same_table(want, &t.name)) {
                    Some(t) => v.push(t),
                    None => {
                        let r = report(&mut reports, &qualify(want));
                        r.findings.push("not found in source".into());
                    }
                }
            }
            v
        }
    };
    let selected: Vec<&Table> = selected
        .into_iter()
        .filter(|t| !spec.exclude.iter().any(|x| same_table(x, &t.name)))
        .collect();
    if selected.is_empty() && reports.is_empty() {
        // a comparison of nothing would pass and prove nothing
        return Err(StepError::failed(format!(
            "nothing to compare: {} has no user tables{} (drillbook's own `drillbook_*` tables are never compared)",
            src_spec.display,
            if spec.exclude.is_empty() { "" } else { " left after `exclude`" }
        )));
    }
    let mut types = BTreeSet::new();
    for t in &selected {
        types.extend(t.columns.iter().map(|c| c.ty.clone()));
    }
    let hashable = catalog::hashable(src, &types).await;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let workers = table::shared_cores([&src_spec.config, &dst_spec.config], n, cores);
    let mut work = Vec::new();
    for t in selected {
        let plan = match (&spec.as_of, &target) {
            (Some(a), Some(_)) => as_of::plan(a, t),
            _ => Plan::Strict,
        };
        let r = report(&mut reports, &t.name);
        if let Plan::Invalid(why) = &plan {
            r.findings.push(why.clone());
            continue;
        }
        if !dst_tables.contains_key(&t.name) {
            match (&plan, &target) {
                (Plan::Changed(c), Some(target)) => {
                    match as_of::rows_before(src, t, c, target).await {
                        Ok(0) => r.notes.push(
                            "only in source, with no row changed at or before the target: created in production after the target?".into(),
                        ),
                        Ok(n) => r.findings.push(format!(
                            "{MISSING}: {n} rows in source were last changed at or before the target"
                        )),
                        Err(e) => r.findings.push(table::explain(shown(&t.name), &e)),
                    }
                }
                (_, Some(_)) => r
                    .notes
                    .push("only in source: created in production after the target?".into()),
                _ => r.findings.push(MISSING.into()),
            }
            continue;
        }
        let as_of = !matches!(plan, Plan::Strict);
        let hashing = (as_of || spec.checksums.includes(&t.name)).then(|| Hashing {
            workers,
            ..Hashing::for_table(t, &hashable, src_major == dst_major)
        });
        let sample_rows = match &spec.samples {
            Samples::Rows(n) => *n,
            Samples::Rule(rule)
                if rule
                    .tables
                    .as_ref()
                    .is_none_or(|l| l.iter().any(|x| same_table(x, &t.name))) =>
            {
                rule.rows
            }
            Samples::Rule(_) => 0,
        };
        work.push(Job {
            table: t.clone(),
            hashing,
            // the keyed checksum covers every row at or before the target already
            sample_rows: if as_of { 0 } else { sample_rows },
            plan,
        });
    }
    if matches!(spec.tables, Tables::All) {
        for name in dst_tables.keys().filter(|n| {
            !src_tables.contains_key(*n) && !spec.exclude.iter().any(|x| same_table(x, n))
        }) {
            let r = report(&mut reports, name);
            if target.is_some() {
                r.notes
                    .push("only in restored: dropped in production after the target?".into());
            } else {
                r.findings.push("only in restored (not in source)".into());
            }
        }
    }

    // tables concurrently, one connection pair per worker
    let progress = cx
        .interaction
        .progress("compare: tables", crate::progress::Unit::Items);
    progress.set_length(work.len() as u64);
    let hashed = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let queue = Arc::new(Mutex::new(batched(work)));
    let results = Arc::new(Mutex::new(Vec::new()));
    let rule = match &spec.row_counts {
        RowCounts::Enabled(false) => None,
        RowCounts::Enabled(true) => Some(CountRule {
            tolerance: None,
            direction: Direction::Equal,
        }),
        RowCounts::Rule(r) => Some(r.clone()),
    };
    let limit = spec.differing_keys.unwrap_or(10);
    // production's sequences went on after the target
    let direction = match target {
        Some(_) => Direction::RestoredLeSource,
        None => rule.as_ref().map(|r| r.direction).unwrap_or_default(),
    };
    let mut workers = tokio::task::JoinSet::new();
    let schema_pair = if spec.schema { pairs.pop() } else { None };
    let schema_pair = match schema_pair {
        Some(p) if pairs.is_empty() => {
            // one connection pair: the schema is read after the tables, on the same pair
            pairs.push(p);
            None
        }
        other => other,
    };
    for (src, dst) in pairs.drain(..) {
        let queue = queue.clone();
        let results = results.clone();
        let rule = rule.clone();
        let target = target.clone();
        let (progress, hashed) = (progress.clone(), hashed.clone());
        workers.spawn(async move {
            loop {
                let jobs = queue.lock().await.pop();
                let Some(jobs) = jobs else { break };
                // a batch of small tables is digested in one query a side first; where
                // that fails, each table goes its own way (and names its own error)
                let known = match jobs.len() {
                    1 => vec![None],
                    _ => {
                        let tables: Vec<(&str, Option<&Hashing>)> = (jobs.iter())
                            .map(|j| (j.table.name.as_str(), j.hashing.as_ref()))
                            .collect();
                        match tokio::try_join!(
                            table::digests(&src, &tables),
                            table::digests(&dst, &tables)
                        ) {
                            Ok((a, b)) => a.into_iter().zip(b).map(|(a, b)| a.zip(b)).collect(),
                            Err(_) => vec![None; jobs.len()],
                        }
                    }
                };
                for (job, known) in jobs.iter().zip(known) {
                    let r = check_table(
                        &src,
                        &dst,
                        job,
                        rule.as_ref(),
                        limit,
                        target.as_ref(),
                        known,
                    )
                    .await;
                    let rows = r.1 .0.rows_source.unwrap_or(0) + r.1 .0.rows_restored.unwrap_or(0);
                    let total = hashed.fetch_add(rows, std::sync::atomic::Ordering::Relaxed) + rows;
                    progress.inc(1);
                    progress.message(&format!("{total} rows read"));
                    results.lock().await.push(r);
                }
            }
            (src, dst)
        });
    }
    let schema_findings = match schema_pair {
        Some((s, d)) => Some(schema(&s, &d, direction).await),
        None => None,
    };
    let mut last_pair = None;
    while let Some(done) = workers.join_next().await {
        if let Ok(pair) = done {
            last_pair = Some(pair);
        }
    }
    let schema_findings = match (schema_findings, spec.schema, &last_pair) {
        (Some(f), _, _) => f,
        (None, true, Some((s, d))) => schema(s, d, direction).await,
        _ => Ok(Vec::new()),
    };

    let mut lost: Option<String> = None;
    for (name, r) in std::mem::take(&mut *results.lock().await) {
        if let Some(e) = &r.1 {
            lost.get_or_insert_with(|| e.clone());
        }
        reports.insert(name, r.0);
    }
    let schema_findings = match schema_findings {
        Ok(f) => f,
        Err(e) => vec![(String::new(), format!("schema could not be read: {e}"))],
    };
    for (table, finding) in &schema_findings {
        if table.is_empty() {
            continue;
        }
        let r = report(&mut reports, table);
        // a table missing from the restored copy is one finding, not one per column,
        // index and constraint of it
        if r.findings.iter().any(|f| f.starts_with(MISSING))
            || r.rows_restored.is_none() && !r.notes.is_empty()
        {
            continue;
        }
        if target.is_some() {
            r.findings.push(format!("{finding} ({HINT})"));
        } else {
            r.findings.push(finding.clone());
        }
    }
    let mut global = Vec::new();
    let mut notes = Vec::new();
    for (_, f) in schema_findings.iter().filter(|(t, _)| t.is_empty()) {
        match &target {
            // a sequence created after the target, with its table
            Some(_) if f.starts_with("sequence ") && f.contains(" missing in restored") => {
                notes.push(format!("{f}: created in production after the target?"))
            }
            Some(_) if f.starts_with("sequence ") && f.contains(" only in restored") => {
                notes.push(format!("{f}: dropped in production after the target?"))
            }
            Some(_) => global.push(format!("{f} ({HINT})")),
            None => global.push(f.clone()),
        }
    }
    if let Some(a) = &spec.as_of {
        notes.extend(as_of::unknown_tables(a, &src_tables));
    }
    for r in reports.values_mut() {
        r.ok = r.findings.is_empty() && r.differing_keys.is_empty();
    }
    finish(
        reports,
        global,
        notes,
        target.as_ref().map(|b| b.target.as_str()),
        lost,
    )
}

/// The `as_of` target and the end of its in-flight window, or a failure naming the value.
fn as_of_target(a: &crate::kind::compare::AsOf) -> Result<as_of::Bounds, StepError> {
    let given = &a.target;
    let spec: crate::timestamp::TimeSpec =
        given
            .parse()
            .map_err(|e: crate::timestamp::TimestampError| {
                StepError::failed(format!("as_of.target `{given}`: {e}"))
            })?;
    let at = spec.resolve(chrono::Utc::now());
    let window = a.in_flight.map_or(as_of::IN_FLIGHT_DEFAULT, |d| d.std());
    let settled = chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| at.checked_sub_signed(w))
        .ok_or_else(|| {
            StepError::failed(format!(
                "as_of.in_flight reaches before the earliest representable time from the target {given}"
            ))
        })?;
    Ok(as_of::Bounds {
        target: crate::timestamp::rfc3339_precise(at),
        settled: crate::timestamp::rfc3339_precise(settled),
    })
}

/// The finding of a table the restored copy does not have.
const MISSING: &str = "missing in restored";

struct Job {
    table: Table,
    hashing: Option<Hashing>,
    sample_rows: usize,
    plan: Plan,
}

/// Tables per batch of small ones, and the rows the planner expects in a batch at most.
const BATCH_TABLES: usize = 100;
const BATCH_ROWS: f64 = table::SMALL_TABLE_ROWS;

/// The work in the order it is popped: each large table (or one compared as of a target) a
/// unit of its own, small ones together, up to [`BATCH_TABLES`] tables and [`BATCH_ROWS`]
/// estimated rows, so that one query a side digests them all.
fn batched(work: Vec<Job>) -> Vec<Vec<Job>> {
    let mut units = Vec::new();
    let mut batch: Vec<Job> = Vec::new();
    let mut rows = 0.0;
    for job in work {
        if !(table::is_small(&job.table) && matches!(job.plan, Plan::Strict)) {
            units.push(vec![job]);
            continue;
        }
        if !batch.is_empty()
            && (batch.len() == BATCH_TABLES || rows + job.table.estimate > BATCH_ROWS)
        {
            units.push(std::mem::take(&mut batch));
            rows = 0.0;
        }
        rows += job.table.estimate;
        batch.push(job);
    }
    if !batch.is_empty() {
        units.push(batch);
    }
    units
}

fn qualify(name: &str) -> String {
    if name.contains('.') {
        name.to_owned()
    } else {
        format!("public.{name}")
    }
}

fn report<'r>(reports: &'r mut BTreeMap<String, TableReport>, name: &str) -> &'r mut TableReport {
    reports
        .entry(name.to_owned())
        .or_insert_with(|| TableReport {
            table: shown(name).to_owned(),
            ..TableReport::default()
        })
}

/// Checks one table; the second value is set when a connection was lost.
async fn check_table(
    src: &tokio_postgres::Client,
    dst: &tokio_postgres::Client,
    job: &Job,
    rule: Option<&CountRule>,
    limit: usize,
    target: Option<&as_of::Bounds>,
    known: Option<(Digest, Digest)>,
) -> (String, (TableReport, Option<String>)) {
    let t = &job.table;
    let mut r = TableReport {
        table: shown(&t.name).to_owned(),
        ..TableReport::default()
    };
    let lost = |e: &tokio_postgres::Error| {
        (e.is_closed()
            || e.as_db_error()
                .is_some_and(|d| d.code().code().starts_with("57P")))
        .then(|| table::explain(shown(&t.name), e))
    };
    if let (Some(target), Some(h)) = (target, &job.hashing) {
        if !matches!(job.plan, Plan::Strict) {
            if let Err(e) = as_of::check(src, dst, t, h, &job.plan, target, limit, &mut r).await {
                r.findings.push(table::explain(shown(&t.name), &e));
                let l = lost(&e);
                return (t.name.clone(), (r, l));
            }
            return (t.name.clone(), (r, None));
        }
    }
    // a table with a primary key is digested and, where it differs, mapped in one pass
    let mut found = None;
    let digests = match (&job.hashing, known) {
        (Some(h), known) if !t.primary_key.is_empty() => {
            table::digest_and_find(src, dst, t, h, limit, known)
                .await
                .map(|(a, b, f)| {
                    found = Some(f);
                    (a, b)
                })
        }
        (_, Some(both)) => Ok(both),
        _ => tokio::try_join!(
            table::digest(src, &t.name, job.hashing.as_ref(), None, None),
            table::digest(dst, &t.name, job.hashing.as_ref(), None, None)
        )
        .map(|((a, _), (b, _))| (a, b)),
    };
    let (a, b): (Digest, Digest) = match digests {
        Ok(d) => d,
        Err(e) => {
            r.findings.push(table::explain(shown(&t.name), &e));
            let l = lost(&e);
            return (t.name.clone(), (r, l));
        }
    };
    r.rows_source = Some(a.rows);
    r.rows_restored = Some(b.rows);
    if let Some(rule) = rule {
        if let Some(f) = count_finding(a.rows, b.rows, rule) {
            r.findings.push(f);
        }
    }
    if job.hashing.is_some() {
        let equal = a == b;
        r.checksum = Some(if equal { "equal" } else { "different" });
        if !equal {
            r.findings.push("content checksum differs".into());
            if let Some(f) = found.take() {
                r.differing_keys = f.keys;
            }
        }
    }
    if job.sample_rows > 0 && !t.primary_key.is_empty() {
        match table::sample(src, dst, t, job.sample_rows).await {
            Ok((n, findings)) => {
                r.sampled = Some(n);
                r.findings.extend(findings);
            }
            Err(e) => r.findings.push(format!(
                "sampling failed: {}",
                table::explain(shown(&t.name), &e)
            )),
        }
    }
    if target.is_some() {
        // a table compared in full: production changing after the target fails it
        for f in &mut r.findings {
            f.push_str(&format!(
                " ({HINT} name a column every change sets under `as_of.changed`)"
            ));
        }
    }
    (t.name.clone(), (r, None))
}

fn count_finding(source: i64, restored: i64, rule: &CountRule) -> Option<String> {
    if rule.direction == Direction::RestoredLeSource && restored > source {
        return Some(format!(
            "row count {restored} in restored is more than {source} in source"
        ));
    }
    let diff = source.abs_diff(restored);
    let allowed = match &rule.tolerance {
        None if rule.direction == Direction::RestoredLeSource => u64::MAX,
        None => 0,
        Some(Tolerance::Rows(n)) => *n,
        Some(Tolerance::Percent(p)) => {
            let pct: f64 = p.trim().trim_end_matches('%').trim().parse().unwrap_or(0.0);
            ((source.max(0) as f64) * pct / 100.0).floor() as u64
        }
    };
    (diff > allowed)
        .then(|| format!("row count differs: {source} in source, {restored} in restored"))
}

/// Values a sequence may be ahead after recovery (PostgreSQL's SEQ_LOG_VALS).
const SEQUENCE_SLACK: i64 = 32;

/// Schema differences, each with the table it belongs to (empty for sequences).
async fn schema(
    src: &tokio_postgres::Client,
    dst: &tokio_postgres::Client,
    direction: Direction,
) -> Result<Vec<(String, String)>, String> {
    let (a, b) = tokio::try_join!(catalog::objects(src), catalog::objects(dst))?;
    let mut out = Vec::new();
    for ((kind, table, name), def) in &a {
        let what = if kind == "sequence" {
            format!("sequence {name}")
        } else {
            format!("{kind} `{name}`")
        };
        match b.get(&(kind.clone(), table.clone(), name.clone())) {
            None => out.push((table.clone(), format!("{what} missing in restored ({def})"))),
            Some(other) if other != def => out.push((
                table.clone(),
                format!("{what} changed: {def} in source, {other} in restored"),
            )),
            Some(_) => {}
        }
    }
    for ((kind, table, name), def) in &b {
        if !a.contains_key(&(kind.clone(), table.clone(), name.clone())) {
            out.push((
                table.clone(),
                format!("{kind} `{name}` only in restored ({def})"),
            ));
        }
    }
    let (sa, sb) = tokio::try_join!(catalog::sequence_values(src), catalog::sequence_values(dst))?;
    for (seq, (v, increment)) in &sa {
        if let Some((w, _)) = sb.get(seq) {
            // PostgreSQL logs sequences 32 values ahead and outside transactions, so after
            // recovery a sequence may stand up to 32 increments past its last handed-out value
            let slack = SEQUENCE_SLACK.saturating_mul(increment.saturating_abs());
            let (v, w) = (v.unwrap_or(0), w.unwrap_or(0));
            let bad = match direction {
                Direction::Equal => v.abs_diff(w) > slack.unsigned_abs(),
                Direction::RestoredLeSource => w > v.saturating_add(slack),
            };
            if bad {
                out.push((
                    String::new(),
                    format!("sequence {seq} is at {v} in source, {w} in restored"),
                ));
            }
        }
    }
    Ok(out)
}

/// The step's outputs and verdict: a per-table report, a readable table, and a failure
/// naming every table with a problem.
fn finish(
    reports: BTreeMap<String, TableReport>,
    global: Vec<String>,
    mut notes: Vec<String>,
    target: Option<&str>,
    lost: Option<String>,
) -> Result<Outputs, StepError> {
    let tables: Vec<&TableReport> = reports.values().collect();
    let failed: Vec<&TableReport> = tables.iter().copied().filter(|r| !r.ok).collect();
    let mut out = Outputs::new();
    out.insert(
        "tables".into(),
        serde_json::to_value(&tables).unwrap_or_default(),
    );
    out.insert("tables_compared".into(), tables.len().into());
    out.insert("tables_failed".into(), failed.len().into());
    if !global.is_empty() {
        out.insert("schema_findings".into(), global.clone().into());
    }
    if let Some(t) = target {
        out.insert("as_of_target".into(), t.into());
        for r in &tables {
            notes.extend(r.notes.iter().map(|n| format!("{}: {n}", r.table)));
        }
        out.insert("notes".into(), notes.clone().into());
    }
    out.insert("report".into(), render(&tables, &global, &notes).into());
    if let Some(e) = lost {
        return Err(StepError::unavailable(format!(
            "lost a connection during the comparison: {e}"
        ))
        .with_outputs(out));
    }
    if failed.is_empty() && global.is_empty() {
        return Ok(out);
    }
    let mut parts: Vec<String> = failed
        .iter()
        .map(|r| {
            let mut f = r.findings.clone();
            if !r.differing_keys.is_empty() {
                f.push(format!(
                    "differing keys: {}",
                    r.differing_keys
                        .iter()
                        .map(|k| format!("{} ({})", k.key, k.change))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            format!("{}: {}", r.table, f.join("; "))
        })
        .collect();
    parts.extend(global);
    let n = failed.len();
    let what = match n {
        0 => "the schemas differ".to_owned(),
        1 => "1 table differs".to_owned(),
        n => format!("{n} tables differ"),
    };
    Err(StepError::failed(format!("{what}: {}", parts.join(" | "))).with_outputs(out))
}

/// A table a person reads at a glance.
fn render(tables: &[&TableReport], global: &[String], notes: &[String]) -> String {
    let width = tables
        .iter()
        .map(|r| r.table.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut s = format!(
        "{:width$}  {:>12}  {:>12}  {:9}  {}\n",
        "table", "source rows", "restored", "checksum", "result"
    );
    for r in tables {
        let n = |v: Option<i64>| v.map_or("-".to_owned(), |n| n.to_string());
        let result = if r.ok && r.rows_restored.is_none() && !r.notes.is_empty() {
            "note".to_owned()
        } else if r.ok {
            match r.skipped_after_target.filter(|n| *n > 0) {
                Some(n) => format!("ok ({n} source rows after the target skipped)"),
                None => "ok".to_owned(),
            }
        } else {
            r.findings
                .first()
                .cloned()
                .unwrap_or_else(|| "differs".into())
        };
        s.push_str(&format!(
            "{:width$}  {:>12}  {:>12}  {:9}  {result}\n",
            r.table,
            n(r.rows_source),
            n(r.rows_restored),
            r.checksum.unwrap_or("-")
        ));
        for k in r.differing_keys.iter() {
            s.push_str(&format!("{:width$}    key {} {}\n", "", k.key, k.change));
        }
    }
    for g in global {
        s.push_str(&format!("schema: {g}\n"));
    }
    for n in notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tables_are_batched_and_large_ones_go_alone() {
        let job = |name: &str, estimate: f64| Job {
            table: Table {
                name: name.into(),
                columns: vec![],
                primary_key: vec![],
                estimate,
            },
            hashing: None,
            sample_rows: 0,
            plan: Plan::Strict,
        };
        // a large table, one never analyzed (no estimate), 150 tiny ones, two mid-sized
        let mut work = vec![job("big", 5e6), job("never_analyzed", -1.0)];
        work.extend((0..150).map(|i| job(&format!("s{i}"), 10.0)));
        work.extend([job("mid_a", 60_000.0), job("mid_b", 60_000.0)]);
        let units = batched(work);
        let sizes: Vec<usize> = units.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 1, 100, 51, 1]);
        assert_eq!(units[0][0].table.name, "big");
        assert_eq!(
            units[3].last().map(|j| j.table.name.as_str()),
            Some("mid_a")
        );
        assert!(batched(Vec::new()).is_empty());
    }

    #[test]
    fn count_rules() {
        let exact = CountRule {
            tolerance: None,
            direction: Direction::Equal,
        };
        assert!(count_finding(10, 10, &exact).is_none());
        assert!(count_finding(10, 9, &exact).is_some());
        let le = CountRule {
            tolerance: None,
            direction: Direction::RestoredLeSource,
        };
        assert!(count_finding(10, 3, &le).is_none());
        assert!(count_finding(10, 11, &le).is_some());
        let pct = CountRule {
            tolerance: Some(Tolerance::Percent("10%".into())),
            direction: Direction::Equal,
        };
        assert!(count_finding(100, 90, &pct).is_none());
        assert!(count_finding(100, 89, &pct).is_some());
        let rows = CountRule {
            tolerance: Some(Tolerance::Rows(5)),
            direction: Direction::RestoredLeSource,
        };
        assert!(count_finding(100, 95, &rows).is_none());
        assert!(count_finding(100, 94, &rows).is_some());
    }
}
