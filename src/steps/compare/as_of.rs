//! `compare` as of a recovery target, against a source that kept changing after it. With a
//! `changed` column, the checksums cover the rows at or before the target on both sides (one
//! scan each, the rows after it counted in the same scan); a differing checksum is narrowed
//! down to keys, and each key is judged: a source row at or before the target must be in
//! the restored copy unchanged, a restored row after the target means the restore went past
//! it, and a restored row the source no longer has was deleted in production after the
//! target (a note). Append-only tables without a column are judged by key the same way,
//! rows only in the source being additions after the target.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::catalog::Table;
use super::table::{self, Hashing, Judge, Scope, AFTER, BEFORE, IN_FLIGHT};
use super::TableReport;
use crate::kind::compare::{same_table, AsOf};
use crate::pg::{quote_ident, quote_table};

/// The hint a failure carries where production changing could explain it: a hint, never a
/// verdict.
pub const HINT: &str = "changed in production after the target?";

/// How one table is compared as of the target.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Rows at or before the target, by this column.
    Changed(String),
    /// Rows only added or deleted, judged by key.
    AppendOnly,
    /// Neither: compared as without `as_of`.
    Strict,
    /// The configuration cannot apply to this table (the reason).
    Invalid(String),
}

/// The plan for `table` under `as_of`.
pub fn plan(as_of: &AsOf, t: &Table) -> Plan {
    let has = |c: &str| t.columns.iter().any(|x| x.name == c);
    match as_of.changed_column(&t.name) {
        Some((c, _)) if has(c) => return Plan::Changed(c.to_owned()),
        Some((c, true)) => {
            return Plan::Invalid(format!(
                "as_of.changed names column `{c}`, which this table does not have"
            ))
        }
        _ => {}
    }
    if as_of.is_append_only(&t.name) {
        if t.primary_key.is_empty() {
            return Plan::Invalid(
                "append_only needs a primary key or a `changed` column to be checked as of the target".into(),
            );
        }
        return Plan::AppendOnly;
    }
    Plan::Strict
}

/// A row stamped this long before the target may be from a transaction that committed
/// after it (`now()` is the transaction's start).
pub const IN_FLIGHT_DEFAULT: std::time::Duration = std::time::Duration::from_secs(5);

/// The target, and the time before which every stamped change had surely committed.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// RFC 3339.
    pub target: String,
    /// The target less the in-flight window, RFC 3339.
    pub settled: String,
}

/// The SQL literal of an RFC 3339 instant drillbook formatted itself.
fn literal(at: &str) -> String {
    format!("'{}'::timestamptz", at.replace('\'', "''"))
}

/// The row surely changed before the target; a NULL counts as before it, so such rows are
/// compared.
pub fn settled_expr(column: &str, b: &Bounds) -> String {
    format!(
        "coalesce(t.{} <= {}, true)",
        quote_ident(column),
        literal(&b.settled)
    )
}

/// The row changed after the target.
fn after_expr(column: &str, b: &Bounds) -> String {
    format!(
        "coalesce(t.{} > {}, false)",
        quote_ident(column),
        literal(&b.target)
    )
}

pub fn scope(plan: &Plan, b: &Bounds) -> Scope {
    match plan {
        Plan::Changed(c) => Scope {
            filter: settled_expr(c, b),
            le: format!(
                "CASE WHEN {} THEN {BEFORE} WHEN {} THEN {AFTER} ELSE {IN_FLIGHT} END",
                settled_expr(c, b),
                after_expr(c, b)
            ),
            judge: Judge::Changed,
        },
        _ => Scope {
            filter: "true".into(),
            le: BEFORE.to_string(),
            judge: Judge::AppendOnly,
        },
    }
}

/// Checks one table as of the target, filling `r`.
#[allow(clippy::too_many_arguments)]
pub async fn check(
    src: &Client,
    dst: &Client,
    t: &Table,
    hashing: &Hashing,
    plan: &Plan,
    bounds: &Bounds,
    limit: usize,
    r: &mut TableReport,
) -> Result<(), tokio_postgres::Error> {
    let scope = scope(plan, bounds);
    let target = &bounds.target;
    let (filter, after) = match plan {
        Plan::Changed(c) => (Some(scope.filter.as_str()), Some(after_expr(c, bounds))),
        _ => (None, None),
    };
    let unsettled = filter.map(|f| format!("NOT ({f})"));
    let ((a, skipped), (b, newer)) = tokio::try_join!(
        table::digest(src, &t.name, Some(hashing), filter, unsettled.as_deref()),
        table::digest(dst, &t.name, Some(hashing), filter, after.as_deref())
    )?;
    r.rows_source = Some(a.rows);
    r.rows_restored = Some(b.rows);
    if let (Some(after), Plan::Changed(c)) = (&after, plan) {
        r.skipped_after_target = Some(skipped);
        if newer > 0 {
            let keys = if t.primary_key.is_empty() {
                String::new()
            } else {
                let q = format!(
                    "SELECT {0}::text FROM {1} t WHERE {after} ORDER BY {0} LIMIT {2}",
                    key_text(t),
                    quote_table(&t.name),
                    limit.max(1)
                );
                let rows = dst.query(q.as_str(), &[]).await?;
                let keys: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                format!(", e.g. keys {}", keys.join(", "))
            };
            r.findings.push(format!(
                "{newer} rows in restored changed after the target (`{c}` later than {target}): the restore went past the target{keys}"
            ));
        }
    }
    let equal = a == b;
    r.checksum = Some(if equal { "equal" } else { "different" });
    if equal {
        return Ok(());
    }
    if t.primary_key.is_empty() || limit == 0 {
        r.findings.push(format!(
            "content checksum of the rows at or before the target differs ({HINT} {})",
            if t.primary_key.is_empty() {
                "without a primary key, rows deleted in production after the target cannot be told apart from lost ones"
            } else {
                "`differing_keys: 0` skips the search that would tell"
            }
        ));
        return Ok(());
    }
    let found = table::differing_keys(src, dst, t, hashing, &scope, limit).await?;
    r.deleted_after_target = Some(found.deleted_after_target);
    if scope.judge == Judge::AppendOnly {
        r.skipped_after_target = Some(found.added_after_target as i64);
    }
    if found.deleted_after_target > 0 {
        r.notes.push(format!(
            "{} rows in restored are no longer in source (deleted in production after the target)",
            found.deleted_after_target
        ));
    }
    let failing: Vec<_> = found
        .keys
        .into_iter()
        .filter(|k| k.change != table::NEWER)
        .collect();
    if !failing.is_empty() {
        let why = match plan {
            Plan::Changed(c) => format!(
                "rows last changed at or before the target differ ({HINT} then `{c}` was not set by that change)"
            ),
            _ => format!("append-only rows differ ({HINT} then the table is not append-only)"),
        };
        r.findings.push(why);
        r.differing_keys = failing;
    } else if found.deleted_after_target == 0
        && found.added_after_target == 0
        && found.changed_after_target == 0
        && newer == 0
    {
        r.findings.push(format!(
            "content checksum of the rows at or before the target differs, and no key was found ({HINT})"
        ));
    }
    Ok(())
}

/// The text of a row's key, as the differing keys report it.
fn key_text(t: &Table) -> String {
    match t.primary_key.as_slice() {
        [one] => format!("t.{}", quote_ident(&one.name)),
        many => format!(
            "ROW({})",
            many.iter()
                .map(|c| format!("t.{}", quote_ident(&c.name)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Source rows of a table the restored copy lacks that were last changed at or before the
/// target (0: the table is production's since the target).
pub async fn rows_before(
    src: &Client,
    t: &Table,
    column: &str,
    bounds: &Bounds,
) -> Result<i64, tokio_postgres::Error> {
    let q = format!(
        "SELECT count(*) FROM {} t WHERE {}",
        quote_table(&t.name),
        settled_expr(column, bounds)
    );
    Ok(src.query_one(q.as_str(), &[]).await?.get(0))
}

/// A note for each table `as_of` names (under `changed`, `"*"` aside, or `append_only`) that
/// the source does not have: dropped in production after the target, or misspelt — either
/// way the rule named for it applied to nothing.
pub fn unknown_tables(as_of: &AsOf, source: &BTreeMap<String, Table>) -> Vec<String> {
    let named = as_of
        .changed
        .keys()
        .filter(|t| t.as_str() != "*")
        .map(|t| (t, "changed"))
        .chain(as_of.append_only.iter().map(|t| (t, "append_only")));
    named
        .filter(|(t, _)| !source.values().any(|s| same_table(t, &s.name)))
        .map(|(t, field)| {
            format!("as_of.{field} names table `{t}`, which the source does not have: dropped in production after the target, or misspelt?")
        })
        .collect()
}
