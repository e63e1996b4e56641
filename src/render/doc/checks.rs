//! What the data-checking steps and the runbook's health checks verify, as sentences: the
//! validations of each procedure, the items of the restoration checklist, and the backup
//! verification table.

use serde_json::{json, Value};

use super::by_hand::{by_hand, neon_branch};
use super::text::{code, codes, db_label, list, md, prose, wrap};
use crate::kind::compare::{Compare, Direction, RowCounts, Samples, Selection, Tables};
use crate::kind::{StepKind, Verifies};
use crate::runbook::Runbook;

/// An assert with SQL invariants (else it is expressions).
pub(super) fn has_sql(a: &crate::kind::assert::Assert) -> bool {
    use crate::kind::assert::{Assert, AssertSpec};
    matches!(a, Assert::Full(AssertSpec { db: Some(_), sql, .. }) if !sql.is_empty())
}

pub(super) fn a_summary(a: &crate::kind::assert::Assert) -> String {
    StepKind::Assert(a.clone()).summary()
}

fn comparison(c: &crate::kind::sql::Comparison) -> String {
    use crate::kind::sql::Comparison;
    match c {
        Comparison::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
        Comparison::Number(n) => n.to_string(),
        Comparison::Bool(b) => b.to_string(),
        Comparison::Text(t) => t.trim().to_owned(),
    }
}

fn is_operator(text: &str) -> bool {
    ["==", "!=", "<=", ">=", "<", ">"]
        .iter()
        .any(|op| text.starts_with(op))
}

pub(super) fn expectation(e: &crate::kind::sql::Expect) -> String {
    let mut parts = Vec::new();
    if let Some(v) = &e.value {
        let v = comparison(v);
        parts.push(if is_operator(&v) {
            format!("a value {}", code(&v))
        } else {
            format!("the value {}", code(&v))
        });
    }
    if let Some(r) = &e.rows {
        let r = comparison(r);
        parts.push(if is_operator(&r) {
            format!("a row count {}", code(&r))
        } else {
            format!("{r} rows")
        });
    }
    if e.equals.is_some() {
        parts.push("exactly the rows listed in the runbook".into());
    }
    list(&parts)
}

/// What a step that verifies a restored copy or the backups checks, in one composed line;
/// None for a step that declares it verifies neither.
pub(super) fn validation(runbook: &Runbook, kind: &StepKind) -> Option<String> {
    use crate::kind::assert::{Assert, AssertSpec};
    match kind.effects().verifies {
        Some(Verifies::Data | Verifies::RecoveryPoint | Verifies::Backups) => {}
        Some(Verifies::Drills) | None => return None,
    }
    Some(match kind {
        StepKind::Compare(c) => compare_checks(runbook, c).join("; "),
        StepKind::Freshness(f) => freshness_check(runbook, f),
        StepKind::Sql(s) => {
            let e = s.expect.as_ref()?;
            format!(
                "{} on {} returns {}",
                code(&short(&s.query)),
                db_label(runbook, &s.db),
                expectation(e)
            )
        }
        StepKind::Assert(Assert::Full(AssertSpec {
            db: Some(db), sql, ..
        })) if !sql.is_empty() => format!(
            "these invariants hold on {}: {}",
            db_label(runbook, db),
            list(&sql.keys().cloned().collect::<Vec<_>>())
        ),
        StepKind::Assert(a) => format!("{} holds", code(&a_summary(a))),
        StepKind::NeonSchemaDiff(d) => format!(
            "the schema of {} matches {}{}",
            code(d.branch.as_deref().unwrap_or(&d.target)),
            code(
                d.base
                    .as_deref()
                    .or(neon_branch(runbook, &d.target).as_deref())
                    .unwrap_or(&d.target)
            ),
            if d.allow_changes {
                " (differences are reported, not failed)"
            } else {
                ""
            }
        ),
        // the backup checks say it in their summary
        _ => kind.summary(),
    })
}

pub(super) fn short(query: &str) -> String {
    let q = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if q.chars().count() > 60 {
        format!("{}…", q.chars().take(60).collect::<String>())
    } else {
        q
    }
}

fn tables_text(c: &Compare) -> String {
    let mut text = match &c.tables {
        Tables::All => "every table".to_owned(),
        Tables::List(l) => format!("the tables {}", codes(l)),
    };
    if !c.exclude.is_empty() {
        text.push_str(&format!(" except {}", codes(&c.exclude)));
    }
    text
}

fn compare_checks(runbook: &Runbook, c: &Compare) -> Vec<String> {
    let source = match &c.fingerprint {
        Some(fp) => format!("fingerprint `{fp}`"),
        None => db_label(runbook, &c.source),
    };
    let mut checks = vec![format!(
        "compares {} of {} with {source}",
        tables_text(c),
        db_label(runbook, &c.restored)
    )];
    checks.extend(compare_items(runbook, c));
    checks
}

/// The comparison's checks as checklist sentences.
pub(super) fn compare_items(runbook: &Runbook, c: &Compare) -> Vec<String> {
    if let Some(fp) = &c.fingerprint {
        return vec![format!(
            "the row count and content hash of every table equal those fingerprint `{fp}` \
             took at its exact WAL position"
        )];
    }
    let source = db_label(runbook, &c.source);
    let mut items = Vec::new();
    let tolerance = |rule: &crate::kind::compare::CountRule| match &rule.tolerance {
        Some(crate::kind::compare::Tolerance::Rows(n)) => format!(" within {n} rows"),
        Some(crate::kind::compare::Tolerance::Percent(p)) => format!(" within {p}"),
        None => String::new(),
    };
    match &c.row_counts {
        RowCounts::Enabled(false) => {}
        RowCounts::Enabled(true) => {
            items.push(format!("row counts of every table equal those of {source}"));
        }
        RowCounts::Rule(rule) => match rule.direction {
            Direction::Equal => items.push(format!(
                "row counts of every table equal those of {source}{}",
                tolerance(rule)
            )),
            Direction::RestoredLeSource => items.push(format!(
                "no restored table has more rows than in {source}{} (a restore to an earlier \
                 time may have fewer)",
                tolerance(rule)
            )),
        },
    }
    if c.schema {
        items.push(format!(
            "the schema matches {source}: columns, types, nullability, keys, indexes, \
             constraints and sequences"
        ));
    }
    match &c.checksums {
        Selection::Every(false) => {}
        Selection::Every(true) => {
            items.push(format!("content checksums of every table match {source}"));
        }
        Selection::Only(tables) => items.push(format!(
            "content checksums of {} match {source}",
            codes(tables)
        )),
    }
    match &c.samples {
        Samples::Rows(0) => {}
        Samples::Rows(n) => items.push(format!(
            "{n} sampled rows per table are identical to {source}"
        )),
        Samples::Rule(rule) => items.push(format!(
            "{} sampled rows of {} are identical to {source}",
            rule.rows,
            rule.tables
                .as_deref()
                .map_or("every table with a primary key".to_owned(), codes)
        )),
    }
    if let Some(a) = &c.as_of {
        let columns: Vec<String> = a
            .changed
            .iter()
            .map(|(t, col)| {
                if t == "*" {
                    format!("`{col}` of every table that has it")
                } else {
                    format!("`{col}` of `{t}`")
                }
            })
            .collect();
        let mut s = format!(
            "as of `{}`: every row of {source} last changed at or before that time is restored unchanged, none restored is newer",
            a.target
        );
        if !columns.is_empty() {
            s.push_str(&format!(" (by {})", columns.join(", ")));
        }
        if !a.append_only.is_empty() {
            s.push_str(&format!(
                "; {} only gain and lose rows",
                codes(&a.append_only)
            ));
        }
        s.push_str(
            "; what production changed after that time is counted, not failed; the row counts, checksums and samples above hold in full for the other tables only",
        );
        items.push(s);
    }
    items
}

pub(super) fn freshness_check(runbook: &Runbook, f: &crate::kind::freshness::Freshness) -> String {
    let of = match (&f.table, &f.column) {
        (Some(t), Some(c)) => format!("the newest {}", code(&format!("{t}.{c}"))),
        _ => "the timestamp the query returns".into(),
    };
    let lag = f
        .max_lag
        .map(|l| format!(" and at most {l} before it"))
        .unwrap_or_default();
    format!(
        "{of} on {} is at or before the recovery point {}{lag}",
        db_label(runbook, &f.db),
        f.target
    )
}

/// What turns a check WARNING or CRITICAL, in words. Thresholds are read only through the
/// check's measure: a check without one never claims "warning at …", whatever its
/// `warn`/`critical` hold (validation refuses them; this keeps the document honest even
/// for a `Check` built another way).
fn thresholds(c: &crate::runbook::Check) -> String {
    let plugin = matches!(&c.kind, StepKind::Shell(s) if s.nagios());
    let threshold = |t: &Option<crate::runbook::Threshold>| t.as_ref().map(|t| code(&t.written));
    let (warn, critical) = match c.kind.measure() {
        Some(_) => (threshold(&c.warn), threshold(&c.critical)),
        None => (None, None),
    };
    let by_exit = "warning or critical as the plugin exits (1 or 2)";
    match (warn, critical) {
        (None, None) if plugin => by_exit.to_owned(),
        (None, None) => "fails as critical".to_owned(),
        (Some(w), None) => format!("warning at {w}"),
        (None, Some(cr)) => format!("critical at {cr}"),
        (Some(w), Some(cr)) => format!("warning at {w}, critical at {cr}"),
    }
}

pub(super) fn checks(runbook: &Runbook) -> Vec<Value> {
    runbook
        .checks
        .iter()
        .map(|c| {
            let thresholds = thresholds(c);
            json!({
                "id": c.id,
                "title": prose(c.title.as_deref().unwrap_or(&c.id)),
                "verifies": md(&c.kind.summary()),
                "hand": wrap(
                    &format!("{}: {}", code(&c.id), md(&by_hand(runbook, &c.kind).text)),
                    96
                ),
                "thresholds": md(&thresholds),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runbook(checks: &str) -> Runbook {
        let yaml = format!("version: 1\nname: t\nchecks:\n{checks}procedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - shell: 'true'\n");
        crate::runbook::load_str("t.yaml", &yaml).expect("valid")
    }

    /// A check without a measure never shows a threshold, even when its `Check` holds one
    /// (validation refuses that; the document does not rely on it).
    #[test]
    fn thresholds_are_shown_only_through_a_measure() {
        let mut rb = runbook(
            "  - id: plain\n    shell: 'true'\n  - id: age\n    shell: { run: 'echo {}', outputs: json, measure: { output: age, unit: seconds, worse: higher } }\n    warn: 24h\n  - id: plugin\n    shell: { run: 'true', nagios: true }\n",
        );
        let age = rb.checks[1].warn.clone();
        for c in &mut rb.checks {
            c.warn.clone_from(&age);
        }
        let shown: Vec<String> = rb.checks.iter().map(thresholds).collect();
        assert_eq!(
            shown,
            [
                "fails as critical",
                "warning at `24h`",
                "warning or critical as the plugin exits (1 or 2)"
            ]
        );
        let doc = super::super::tests::render(&rb, &[]);
        assert_eq!(doc.matches("warning at").count(), 1, "{doc}");
    }
}
