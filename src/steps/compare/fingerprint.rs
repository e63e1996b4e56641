//! `fingerprint`, and `compare` against one. The fingerprint is taken in the snapshot a
//! temporary logical slot exports as it is created: that snapshot sees exactly the
//! transactions committed before the slot's `consistent_point`, so a restore to that LSN
//! must hold exactly the same rows. No lock is taken and writers never wait; the slot lives
//! only as long as the replication session, which ends with the hashing (and the server
//! drops a temporary slot with its session on every path, a killed drillbook included).
//! Row counts and hashes are computed by the same code as `compare`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::catalog::{self, Table};
use super::table::{self, Hashing};
use super::{finish, report, shown, TableReport, MISSING};
use crate::kind::compare::{same_table, Compare, Tables};
use crate::kind::fingerprint::Fingerprint;
use crate::pg::connect::describe;
use crate::record::Outputs;
use crate::runbook::TargetKind;
use crate::steps::{db, Run, StepCx, StepError};

/// What it takes, said before any work when the server cannot export such a snapshot.
const NEEDS: &str = "a fingerprint needs a temporary logical replication slot: set `wal_level = logical` (`ALTER SYSTEM SET wal_level = logical`, then restart the server), keep `max_replication_slots` and `max_wal_senders` above 0, and connect as a role with the REPLICATION attribute (`ALTER ROLE <role> REPLICATION`) that pg_hba.conf lets in for database connections";

/// The same for a `neon` target, where the setting is the project's.
const NEEDS_ON_NEON: &str = "a fingerprint needs a temporary logical replication slot: enable logical replication for the Neon project (Console: Project settings → Logical replication → Enable; API: `PATCH /projects/<id>` with `settings.enable_logical_replication: true`), which sets `wal_level = logical` for good and restarts the project's computes; the roles Neon creates have the REPLICATION attribute";

impl Run for Fingerprint {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let needs = match cx.runbook.targets.get(&self.db).map(|t| &t.kind) {
            Some(TargetKind::Neon(_)) => NEEDS_ON_NEON,
            _ => NEEDS,
        };
        let spec = db::resolve(cx, &self.db).await?;
        let plain = crate::pg::connect(&spec).await?;
        let q = |e: tokio_postgres::Error| {
            StepError::failed(format!("{}: {}", spec.display, describe(&e)))
        };
        let row = plain
            .query_one(
                "SELECT current_setting('wal_level'), (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), current_setting('server_version_num')::int / 10000",
                &[],
            )
            .await
            .map_err(q)?;
        let (level, replication, major): (String, Option<bool>, i32) =
            (row.get(0), row.get(1), row.get(2));
        if level != "logical" {
            return Err(StepError::failed(format!(
                "{} has wal_level = {level}; {needs}",
                spec.display
            )));
        }
        if replication != Some(true) {
            return Err(StepError::failed(format!(
                "the role of {} lacks the REPLICATION attribute; {needs}",
                spec.display
            )));
        }

        let repl = crate::pg::replication::connect(&spec)
            .await
            .map_err(|e| StepError::failed(format!("{e}; {needs}")))?;
        let slot = slot_name();
        // PostgreSQL 15 took options in parentheses; older servers know only the keyword
        let export = if major >= 15 {
            "(SNAPSHOT 'export')"
        } else {
            "EXPORT_SNAPSHOT"
        };
        let created = repl
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {slot} TEMPORARY LOGICAL pgoutput {export}"
            ))
            .await
            .map_err(|e| {
                StepError::failed(format!(
                    "creating a temporary logical slot on {}: {}; {needs}",
                    spec.display,
                    describe(&e)
                ))
            })?;
        let taken_at: DateTime<Utc> = plain
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .map_err(q)?
            .get(0);
        let (lsn, snapshot) = created
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some((
                    r.get("consistent_point")?.to_owned(),
                    r.get("snapshot_name")?.to_owned(),
                )),
                _ => None,
            })
            .ok_or_else(|| StepError::failed("the server created no exported snapshot"))?;

        let hashed = hash_in_snapshot(self, &spec, &plain, &snapshot).await;
        // the exported snapshot ends with the next command; the slot with the session
        let _ = repl
            .simple_query(&format!("DROP_REPLICATION_SLOT {slot}"))
            .await;
        drop(repl);
        let tables = hashed?;

        let mut out = Outputs::new();
        out.insert("lsn".into(), lsn.into());
        out.insert(
            "taken_at".into(),
            crate::timestamp::rfc3339_precise(taken_at).into(),
        );
        out.insert("tables".into(), Value::Object(tables));
        out.insert("server_version".into(), major.into());
        Ok(out)
    }
}

/// A slot name no other run uses: `drillbook_fp_` and the process id and clock.
fn slot_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "drillbook_fp_{}_{:x}",
        std::process::id(),
        nanos & 0xffff_ffff
    )
}

/// Rows and hashes of every selected table, all read in the exported snapshot.
async fn hash_in_snapshot(
    spec: &Fingerprint,
    conn: &crate::pg::url::ConnSpec,
    plain: &Client,
    snapshot: &str,
) -> Result<serde_json::Map<String, Value>, StepError> {
    let n = spec.concurrency.unwrap_or(2).clamp(1, 16);
    let mut clients = Vec::new();
    let import = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
        snapshot.replace('\'', "''")
    );
    for _ in 0..n {
        let c = crate::pg::connect(conn).await?;
        c.batch_execute(&import)
            .await
            .map_err(|e| StepError::failed(format!("importing the snapshot: {}", describe(&e))))?;
        clients.push(c);
    }
    let all = catalog::tables(&clients[0])
        .await
        .map_err(StepError::failed)?;
    let selected: Vec<Table> = match &spec.tables {
        Tables::All => all.into_values().collect(),
        Tables::List(list) => {
            let mut v = Vec::new();
            for want in list {
                match all.values().find(|t| same_table(want, &t.name)) {
                    Some(t) => v.push(t.clone()),
                    None => {
                        return Err(StepError::failed(format!(
                            "table `{want}` not found in {}",
                            conn.display
                        )))
                    }
                }
            }
            v
        }
    };
    let selected: Vec<Table> = selected
        .into_iter()
        .filter(|t| !spec.exclude.iter().any(|x| same_table(x, &t.name)))
        .collect();
    if selected.is_empty() {
        return Err(StepError::failed(format!(
            "nothing to fingerprint: {} has no user tables",
            conn.display
        )));
    }
    let types: BTreeSet<String> = selected
        .iter()
        .flat_map(|t| t.columns.iter().map(|c| c.ty.clone()))
        .collect();
    // probed outside the snapshot's transaction: a failed probe would abort it
    let hashable = catalog::hashable(plain, &types).await;
    let jobs: Vec<(Table, Hashing)> = selected
        .into_iter()
        .map(|t| {
            let h = Hashing::for_table(&t, &hashable, true);
            (t, h)
        })
        .collect();
    let queue = Arc::new(Mutex::new(jobs));
    let mut workers = tokio::task::JoinSet::new();
    for c in clients {
        let queue = queue.clone();
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let job = queue.lock().await.pop();
                let Some((t, h)) = job else { break };
                match table::digest(&c, &t.name, Some(&h), None, None).await {
                    Ok((d, _)) => done.push((t.name.clone(), d)),
                    Err(e) => return Err(table::explain(shown(&t.name), &e)),
                }
            }
            Ok(done)
        });
    }
    let mut out = serde_json::Map::new();
    while let Some(r) = workers.join_next().await {
        let done = r
            .map_err(|e| StepError::failed(e.to_string()))?
            .map_err(StepError::failed)?;
        for (name, d) in done {
            out.insert(name, json!({"rows": d.rows, "hash": d.checksum}));
        }
    }
    Ok(out)
}

/// One table as the fingerprint holds it.
struct Held {
    rows: i64,
    hash: Option<String>,
}

/// The fingerprint step `id`'s outputs, from the run so far.
fn outputs_of(cx: &StepCx<'_>, id: &str) -> Result<(BTreeMap<String, Held>, i64), StepError> {
    let missing = || {
        StepError::failed(format!(
            "`fingerprint: {id}` names no fingerprint step that ran before this one"
        ))
    };
    let step = cx
        .vars
        .get_attr("steps")
        .and_then(|s| s.get_attr(id))
        .map_err(|_| missing())?;
    let value = serde_json::to_value(&step).map_err(|_| missing())?;
    let tables = value
        .get("tables")
        .and_then(Value::as_object)
        .ok_or_else(missing)?;
    let major = value
        .get("server_version")
        .and_then(Value::as_i64)
        .ok_or_else(missing)?;
    let held = tables
        .iter()
        .map(|(name, v)| {
            (
                name.clone(),
                Held {
                    rows: v.get("rows").and_then(Value::as_i64).unwrap_or(-1),
                    hash: v.get("hash").and_then(Value::as_str).map(str::to_owned),
                },
            )
        })
        .collect();
    Ok((held, major))
}

/// `compare` with `fingerprint`: the restored copy's rows and hashes against the ones the
/// fingerprint took, table by table. The snapshot is gone by now, so a difference names the
/// table and both row counts, not the keys.
pub(super) async fn against(
    spec: &Compare,
    cx: &StepCx<'_>,
    id: &str,
) -> Result<Outputs, StepError> {
    let (held, major) = outputs_of(cx, id)?;
    let dst_spec = db::resolve(cx, &spec.restored).await?;
    let dst = crate::pg::connect(&dst_spec).await?;
    let unavailable = |e: String| StepError::unavailable(format!("restored: {e}"));
    let dst_tables = catalog::tables(&dst).await.map_err(unavailable)?;
    let dst_major = catalog::major_version(&dst).await.map_err(unavailable)?;
    if dst_major != major as i32 {
        return Err(StepError::failed(format!(
            "the fingerprint was taken on PostgreSQL {major} and the restored copy runs {dst_major}: hashes compare within one major version"
        )));
    }
    let wanted = |name: &str| {
        let listed = match &spec.tables {
            Tables::All => true,
            Tables::List(l) => l.iter().any(|x| same_table(x, name)),
        };
        listed && !spec.exclude.iter().any(|x| same_table(x, name))
    };
    let mut reports: BTreeMap<String, TableReport> = BTreeMap::new();
    let types: BTreeSet<String> = dst_tables
        .values()
        .flat_map(|t| t.columns.iter().map(|c| c.ty.clone()))
        .collect();
    let hashable = catalog::hashable(&dst, &types).await;
    for (name, h) in held.iter().filter(|(n, _)| wanted(n)) {
        let r = report(&mut reports, name);
        r.rows_source = Some(h.rows);
        let Some(t) = dst_tables.get(name) else {
            r.findings.push(MISSING.into());
            continue;
        };
        let hashing = Hashing::for_table(t, &hashable, true);
        let (d, _) = table::digest(&dst, name, Some(&hashing), None, None)
            .await
            .map_err(|e| unavailable(table::explain(shown(name), &e)))?;
        r.rows_restored = Some(d.rows);
        let equal = d.rows == h.rows && d.checksum == h.hash;
        r.checksum = Some(if equal { "equal" } else { "different" });
        if !equal {
            r.findings.push(format!(
                "table {} differs (rows {} vs {})",
                shown(name),
                h.rows,
                d.rows
            ));
        }
    }
    if matches!(spec.tables, Tables::All) {
        for name in dst_tables
            .keys()
            .filter(|n| !held.contains_key(*n) && wanted(n))
        {
            report(&mut reports, name)
                .findings
                .push("only in restored (not in the fingerprint)".into());
        }
    }
    if reports.is_empty() {
        return Err(StepError::failed(format!(
            "nothing to compare: fingerprint `{id}` holds no table this compare selects"
        )));
    }
    for r in reports.values_mut() {
        r.ok = r.findings.is_empty();
    }
    finish(reports, Vec::new(), Vec::new(), None, None)
}
