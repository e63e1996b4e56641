//! The PostgreSQL store, for teams: the same lines and chain in the table
//! `drillbook_history`, created on first use. Appends run in a transaction holding an
//! advisory lock, so concurrent appenders (any machine) are serialized by the database.

use serde_json::Value;

use super::{Anchor, Entry, HistoryError, Lines};

const TABLE: &str = "CREATE TABLE IF NOT EXISTS drillbook_history (
    seq bigint PRIMARY KEY,
    id text NOT NULL,
    hash text NOT NULL,
    line text NOT NULL,
    appended_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS drillbook_history_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    entries bigint NOT NULL,
    head text NOT NULL
)";
/// The advisory lock key serializing appends (an arbitrary constant: "drillbook").
const LOCK: i64 = 0x0064_7269_6c6c_626b;

async fn connect(url: &str) -> Result<tokio_postgres::Client, HistoryError> {
    let spec = crate::pg::url::parse(url).map_err(|e| HistoryError::Database(e.to_string()))?;
    crate::pg::connect(&spec)
        .await
        .map_err(|e| HistoryError::Database(format!("history database: {e}")))
}

fn db(e: &tokio_postgres::Error) -> HistoryError {
    HistoryError::Database(format!(
        "history database: {}",
        crate::pg::connect::describe(e)
    ))
}

pub async fn append(url: &str, record: Value) -> Result<Entry, HistoryError> {
    let mut client = connect(url).await?;
    let tx = client.transaction().await.map_err(|e| db(&e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(|e| db(&e))?;
    tx.batch_execute(TABLE).await.map_err(|e| db(&e))?;
    let last = tx
        .query_opt(
            "SELECT line FROM drillbook_history ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(|e| db(&e))?
        .map(|row| row.get::<_, String>(0));
    let last = match last {
        None => None,
        Some(line) => Some(serde_json::from_str::<Entry>(&line).map_err(|e| {
            HistoryError::Corrupt(format!(
                "the newest history entry is not readable ({e}); run `drillbook history verify` — nothing was appended"
            ))
        })?),
    };
    let entry = Entry::after(last.as_ref(), record);
    let seq = i64::try_from(entry.seq).map_err(|e| HistoryError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO drillbook_history (seq, id, hash, line) VALUES ($1, $2, $3, $4)",
        &[&seq, &entry.id(), &entry.hash, &entry.line()],
    )
    .await
    .map_err(|e| db(&e))?;
    // the anchor, in the same transaction: the count and hash of the newest entry
    tx.execute(
        "INSERT INTO drillbook_history_head (one, entries, head) VALUES (true, $1, $2)
         ON CONFLICT (one) DO UPDATE SET entries = excluded.entries, head = excluded.head",
        &[&seq, &entry.hash],
    )
    .await
    .map_err(|e| db(&e))?;
    tx.commit().await.map_err(|e| db(&e))?;
    Ok(entry)
}

pub async fn lines(url: &str) -> Result<Lines, HistoryError> {
    let client = connect(url).await?;
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('drillbook_history')::text", &[])
        .await
        .map_err(|e| db(&e))?
        .get(0);
    if exists.is_none() {
        return Ok(Lines::default());
    }
    let rows = client
        .query("SELECT line FROM drillbook_history ORDER BY seq", &[])
        .await
        .map_err(|e| db(&e))?;
    let anchor = client
        .query_opt("SELECT entries, head FROM drillbook_history_head", &[])
        .await
        // no head table: none (a break when the entries say one is kept)
        .ok()
        .flatten()
        .map(|r| Anchor {
            entries: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
            head: r.get(1),
        });
    Ok(Lines {
        lines: rows.iter().map(|r| r.get::<_, String>(0)).collect(),
        unterminated_tail: false,
        anchor,
        anchor_problem: None,
        anchor_place: "the table drillbook_history_head".into(),
        stamp: None,
        // every reader rehashes the whole table: a checkpoint would need a table of its
        // own, written by readers
        checkpoint: None,
    })
}
