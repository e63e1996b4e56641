//! The drill history: every run (drill or real recovery) appended to a store that cannot be
//! edited silently. Each entry carries its position (`seq`), the SHA-256 of the previous
//! entry (`prev`) and its own (`hash`, over the canonical JSON of `seq`, `prev` and
//! `record`): a hash chain. [`verify`] recomputes it and names the first entry that was
//! edited, deleted, reordered, inserted or torn.
//!
//! Two stores hold the same lines: a JSON Lines file (default `drills/history.jsonl`; appends
//! take an exclusive lock, write one line and fsync) and a PostgreSQL table (appends
//! serialized by a transaction-scoped advisory lock).

mod file;
mod link;
mod postgres;
pub mod stats;
pub mod typed;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::record::DrillRecord;
use link::Link;

/// The default file store, relative to the working directory.
pub const DEFAULT_PATH: &str = "drills/history.jsonl";
/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Database(String),
    #[error("{0}")]
    Corrupt(String),
    /// The chain does not verify: nothing read from it can be trusted.
    #[error("the history {store} is broken at entry {} ({}): its records cannot be trusted; `drillbook history verify` shows it", .at.position, .at.detail)]
    Broken { store: String, at: Break },
}

/// One entry as stored: a line of canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
    /// The store keeps an [`Anchor`] beside this entry. Covered by the hash, so once one
    /// entry says so, losing the anchor is a break, not an old history without one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anchored: bool,
    pub record: Value,
}

impl Entry {
    /// The entry following `prev` (None for the first), holding `record`; both stores keep
    /// an anchor beside every entry they append.
    pub fn after(prev: Option<&Entry>, record: Value) -> Entry {
        let (seq, prev) = match prev {
            Some(p) => (p.seq + 1, p.hash.clone()),
            None => (1, GENESIS.to_owned()),
        };
        let hash = entry_hash(seq, &prev, true, &record);
        Entry {
            seq,
            prev,
            hash,
            anchored: true,
            record,
        }
    }

    /// The stored form: canonical JSON, one line, no trailing newline.
    pub fn line(&self) -> String {
        let mut v = json!({
            "seq": self.seq,
            "prev": self.prev,
            "hash": self.hash,
            "record": self.record,
        });
        if self.anchored {
            v["anchored"] = true.into();
        }
        canonical(&v)
    }

    /// The record's id (for messages).
    pub fn id(&self) -> &str {
        self.record.get("id").and_then(Value::as_str).unwrap_or("?")
    }

    /// The typed record.
    pub fn drill(&self) -> Result<DrillRecord, String> {
        serde_json::from_value(self.record.clone()).map_err(|e| e.to_string())
    }
}

/// JSON with object keys sorted and no whitespace: the same value always gives the same
/// bytes, whatever order its fields were built in.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// SHA-256 (hex) of the canonical JSON of `{seq, prev, record}`, with `anchored: true` when
/// the entry says its store keeps an anchor (entries written before anchors existed hash
/// without it).
pub fn entry_hash(seq: u64, prev: &str, anchored: bool, record: &Value) -> String {
    let mut v = json!({ "seq": seq, "prev": prev, "record": record });
    if anchored {
        v["anchored"] = true.into();
    }
    crate::hex::encode(&Sha256::digest(canonical(&v).as_bytes()))
}

/// What is wrong at a position of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The content does not match its hash (edited, or added by hand).
    Edited,
    /// One or more entries before this one are missing.
    Deleted,
    /// Entries are out of order.
    Reordered,
    /// An entry that does not belong to the chain (its `prev` is not its predecessor's hash).
    Inserted,
    /// Not a valid entry (unreadable JSON or fields missing).
    Unreadable,
    /// The last line was cut short (a crash mid-append): `history repair` moves it aside.
    Torn,
    /// The anchor beside the entries is gone or unreadable, though the entries say one is
    /// kept: the newest entries can no longer be checked.
    AnchorLost,
}

/// The first place the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// 1-based position (the line number in a file store).
    pub position: usize,
    pub kind: BreakKind,
    /// The record id found there, when readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub detail: String,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub entries: usize,
    /// The hash of the last entry: anchor it elsewhere to detect a rewritten history.
    pub head: Option<String>,
    #[serde(rename = "break", skip_serializing_if = "Option::is_none")]
    pub broken: Option<Break>,
}

/// Raw stored lines, in store order, and whether the last one was complete.
#[derive(Debug, Clone, Default)]
pub struct Lines {
    pub lines: Vec<String>,
    /// The last line had no terminating newline (file store only).
    pub unterminated_tail: bool,
    /// What the store recorded separately about its newest entry, when it keeps that.
    pub anchor: Option<Anchor>,
    /// Why the anchor could not be read, when it is there but damaged (empty, garbled).
    pub anchor_problem: Option<String>,
    /// Where the anchor is kept, for messages (`drills/history.jsonl.head`).
    pub anchor_place: String,
    /// How far a full verification got, when the store keeps that (a readable
    /// `<file>.verified`).
    pub checkpoint: Option<Checkpoint>,
    /// The file's identity and last change when it was read (device, inode, ctime): any
    /// write to it that drillbook's own append did not vouch for changes this.
    pub stamp: Option<String>,
}

impl Lines {
    /// The readable entries, in order (unreadable lines skipped: `verify` reports them).
    pub fn entries(&self) -> Vec<Entry> {
        self.lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
            .collect()
    }
}

/// The count and head hash written beside the entries on every append (the file store's
/// `<file>.head`, the PostgreSQL store's `drillbook_history_head`). The chain alone cannot
/// show entries removed from its end, or a well-formed entry added after it; this can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub entries: u64,
    pub head: String,
}

/// The record id in a stored line, for messages (None when it cannot be read).
fn id_of(line: &str) -> Option<String> {
    serde_json::from_str::<Entry>(line)
        .ok()
        .map(|e| e.id().to_owned())
}

/// Recomputes the chain over the stored lines; reports the first break.
pub fn verify(stored: &Lines) -> Verification {
    verify_after(stored, 0)
}

/// How far a full verification found the chain intact (the file store's
/// `<file>.verified`): the first `entries` lines, `bytes` long with their newlines, the
/// last of them hashing to `head`. Readers that trust the history rehash only the entries
/// after it; `history verify` rehashes all. A checkpoint that does not match the lines is
/// ignored (everything is rehashed), so a stale or damaged one costs time, never a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub entries: u64,
    pub bytes: u64,
    pub head: String,
    /// The file's stamp ([`Lines::stamp`]) at that verification, moved on by each append
    /// that found it unchanged: an edit in place of an old entry (which keeps its length,
    /// so the rest matches) changes the file's ctime and voids the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
}

impl Checkpoint {
    /// The checkpoint after the whole of an intact `stored`.
    fn of(stored: &Lines, head: &str) -> Checkpoint {
        Checkpoint {
            entries: stored.lines.len() as u64,
            bytes: stored.lines.iter().map(|l| l.len() as u64 + 1).sum(),
            head: head.to_owned(),
            stamp: stored.stamp.clone(),
        }
    }

    /// How many lines it lets a reader take as checked (their content, not their links),
    /// when it matches `stored`: as many lines, as many bytes, the last one intact with the
    /// head hash. 0 otherwise.
    fn covers(&self, stored: &Lines) -> usize {
        if self.stamp != stored.stamp {
            return 0;
        }
        let Ok(k) = usize::try_from(self.entries) else {
            return 0;
        };
        let Some(last) = k.checked_sub(1).and_then(|i| stored.lines.get(i)) else {
            return 0;
        };
        let bytes: u64 = stored.lines[..k].iter().map(|l| l.len() as u64 + 1).sum();
        let last_ok = Link::read(last)
            .is_ok_and(|l| l.intact && l.seq == self.entries && l.hash == self.head);
        if bytes == self.bytes && last_ok {
            k - 1
        } else {
            0
        }
    }
}

/// [`verify`], taking the content of the first `checked` lines as matching their hashes:
/// their order, numbering and links are still checked, and everything after is rehashed.
fn verify_after(stored: &Lines, checked: usize) -> Verification {
    let mut prev: Option<String> = None;
    let mut first_anchored: Option<usize> = None;
    let n = stored.lines.len();
    for (i, line) in stored.lines.iter().enumerate() {
        let position = i + 1;
        let link = if i < checked {
            Link::stated(line)
        } else {
            Link::read(line)
        };
        let link = match link {
            Ok(l) => l,
            Err(e) => {
                let torn = i + 1 == n && stored.unterminated_tail;
                return Verification {
                    entries: i,
                    head: prev,
                    broken: Some(Break {
                        position,
                        kind: if torn {
                            BreakKind::Torn
                        } else {
                            BreakKind::Unreadable
                        },
                        id: None,
                        detail: if torn {
                            "the last line is incomplete (a write was cut short); `drillbook history repair` moves it aside".into()
                        } else {
                            format!("not a history entry: {e}")
                        },
                    }),
                };
            }
        };
        let expected = (i + 1) as u64;
        // the id is read only for a message: reading it from every line would cost as much
        // as the fast path saves
        let shown = || id_of(line).unwrap_or_else(|| "?".into());
        let fail = |kind: BreakKind, detail: String, head: Option<String>| Verification {
            entries: i,
            head,
            broken: Some(Break {
                position,
                kind,
                id: id_of(line),
                detail,
            }),
        };
        if !link.intact {
            return fail(
                BreakKind::Edited,
                format!(
                    "record {} does not match its hash: it was edited after it was written (or written by hand)",
                    shown()
                ),
                prev,
            );
        }
        if link.seq != expected {
            // a later entry with the expected number means the order changed; none, that
            // entries are gone
            let later = stored.lines[i + 1..]
                .iter()
                .filter_map(|l| Link::read(l).ok())
                .any(|e| e.seq == expected);
            let (kind, detail) = if later {
                (
                    BreakKind::Reordered,
                    format!("entry {expected} was expected here, but this is entry {} ({}): the records were reordered", link.seq, shown()),
                )
            } else if link.seq > expected {
                let missing = if link.seq == expected + 1 {
                    format!("entry {expected} is missing")
                } else {
                    format!("entries {expected} to {} are missing", link.seq - 1)
                };
                (
                    BreakKind::Deleted,
                    format!("{missing}: deleted before record {}", shown()),
                )
            } else {
                (
                    BreakKind::Inserted,
                    format!("entry {} appears again at position {position} ({}): inserted or duplicated", link.seq, shown()),
                )
            };
            return fail(kind, detail, prev);
        }
        if link.prev != prev.as_deref().unwrap_or(GENESIS) {
            return fail(
                BreakKind::Inserted,
                format!(
                    "record {} does not follow the entry before it (its prev is not that entry's hash): inserted or replaced",
                    shown()
                ),
                prev,
            );
        }
        if link.anchored && first_anchored.is_none() {
            first_anchored = Some(position);
        }
        prev = Some(link.hash);
    }
    let head = prev;
    let lost = match (&stored.anchor, &stored.anchor_problem, first_anchored) {
        (_, Some(problem), _) => Some(format!("{} is unreadable ({problem})", stored.anchor_place)),
        (None, None, Some(pos)) => Some(format!(
            "{} is missing, but entry {pos} ({}) and every later one were written with it",
            stored.anchor_place,
            id_of(&stored.lines[pos - 1]).unwrap_or_else(|| "?".into())
        )),
        _ => None,
    };
    if let Some(what) = lost {
        return Verification {
            entries: n,
            head,
            broken: Some(Break {
                position: n,
                kind: BreakKind::AnchorLost,
                id: None,
                detail: format!("{what}: deleted or damaged, so the newest entries cannot be checked (entries removed from the end, or added after it, would go unseen)"),
            }),
        };
    }
    if let Some(anchor) = &stored.anchor {
        if let Some(b) = against_anchor(anchor, n, head.as_deref(), &stored.lines) {
            return Verification {
                entries: n,
                head,
                broken: Some(b),
            };
        }
    }
    Verification {
        entries: n,
        head,
        broken: None,
    }
}

/// The end of an intact chain compared with the store's anchor.
fn against_anchor(
    anchor: &Anchor,
    n: usize,
    head: Option<&str>,
    lines: &[String],
) -> Option<Break> {
    let n64 = n as u64;
    let id_at = |pos: usize| {
        lines
            .get(pos.wrapping_sub(1))
            .and_then(|l| serde_json::from_str::<Entry>(l).ok())
            .map(|e| e.id().to_owned())
    };
    if n64 < anchor.entries {
        let missing = if anchor.entries == n64 + 1 {
            format!("entry {} is missing", n64 + 1)
        } else {
            format!("entries {} to {} are missing", n64 + 1, anchor.entries)
        };
        return Some(Break {
            position: n + 1,
            kind: BreakKind::Deleted,
            id: None,
            detail: format!(
                "{missing}: {} were appended, the newest deleted since",
                anchor.entries
            ),
        });
    }
    if n64 > anchor.entries {
        let position = usize::try_from(anchor.entries)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        return Some(Break {
            position,
            kind: BreakKind::Inserted,
            id: id_at(position),
            detail: format!(
                "drillbook appended {} entries, but there are {n}: entry {position} was added by other means (or a crash came between an append and its head record)",
                anchor.entries
            ),
        });
    }
    if head != Some(anchor.head.as_str()) && n > 0 {
        return Some(Break {
            position: n,
            kind: BreakKind::Edited,
            id: id_at(n),
            detail: "the newest entry is not the one drillbook appended (the chain was rewritten)"
                .into(),
        });
    }
    None
}

/// Where the history lives: a file path or a `postgres://` URL.
#[derive(Debug, Clone)]
pub enum Store {
    File(std::path::PathBuf),
    Postgres(String),
}

impl Store {
    /// `--history`, else `DRILLBOOK_HISTORY`, else `drills/history.jsonl`.
    pub fn from_arg(arg: Option<&str>) -> Store {
        let text = arg
            .map(str::to_owned)
            .or_else(|| std::env::var("DRILLBOOK_HISTORY").ok())
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_PATH.to_owned());
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Store::Postgres(text)
        } else {
            Store::File(text.into())
        }
    }

    /// For messages: the path, or the URL with its password masked.
    pub fn display(&self) -> String {
        match self {
            Store::File(p) => p.display().to_string(),
            Store::Postgres(u) => crate::redact::mask_passwords(u),
        }
    }

    /// Appends a record; returns its entry.
    pub async fn append(&self, record: &DrillRecord) -> Result<Entry, HistoryError> {
        let value = serde_json::to_value(record)
            .map_err(|e| HistoryError::Io(format!("cannot serialize the record: {e}")))?;
        match self {
            Store::File(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || file::append(&p, value))
                    .await
                    .map_err(|e| HistoryError::Io(e.to_string()))?
            }
            Store::Postgres(u) => postgres::append(u, value).await,
        }
    }

    /// Every stored line, in order.
    pub async fn lines(&self) -> Result<Lines, HistoryError> {
        match self {
            Store::File(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || file::read(&p))
                    .await
                    .map_err(|e| HistoryError::Io(e.to_string()))?
            }
            Store::Postgres(u) => postgres::lines(u).await,
        }
    }

    /// The entries, once the chain verifies: what every reader that draws a conclusion
    /// (checks, metrics, `render`, `stats`) reads. A break is [`HistoryError::Broken`],
    /// naming the first bad entry.
    pub async fn trusted_entries(&self) -> Result<Vec<Entry>, HistoryError> {
        Ok(self.trusted_lines().await?.entries())
    }

    /// The stored lines, once the chain verifies: for readers that parse records straight
    /// from them ([`typed`]). A break is [`HistoryError::Broken`]. Only the entries after
    /// the [`Checkpoint`] are rehashed; the links of all are checked.
    pub async fn trusted_lines(&self) -> Result<Lines, HistoryError> {
        let (lines, v) = self.checked_lines().await?;
        if let Some(at) = v.broken {
            return Err(HistoryError::Broken {
                store: self.display(),
                at,
            });
        }
        Ok(lines)
    }

    /// The stored lines and their verification as a routine reader makes it: only the
    /// entries after the [`Checkpoint`] are rehashed, the links of all are checked, and an
    /// intact chain moves the checkpoint on. For readers that report a break rather than
    /// stop at it (the health status); an error only when the store cannot be read.
    pub async fn checked_lines(&self) -> Result<(Lines, Verification), HistoryError> {
        let lines = self.lines().await?;
        let checked = lines.checkpoint.as_ref().map_or(0, |c| c.covers(&lines));
        let v = verify_after(&lines, checked);
        if v.broken.is_none() {
            self.remember(&lines, &v);
        }
        Ok((lines, v))
    }

    /// Records how far `v`, a verification of `lines`, found the chain intact, when it got
    /// further than the checkpoint: the next reader rehashes only what came after. Only the
    /// file store keeps a checkpoint; failing to write one costs the next reader time, so
    /// it is not an error.
    pub fn remember(&self, lines: &Lines, v: &Verification) {
        let (Store::File(path), None, Some(head)) = (self, &v.broken, &v.head) else {
            return;
        };
        let now = Checkpoint::of(lines, head);
        if lines.checkpoint.as_ref() != Some(&now) {
            file::write_checkpoint(path, &now);
        }
    }

    /// The readable entries, in order (unreadable lines skipped: `verify` reports them).
    /// For listing what is stored; conclusions read [`Store::trusted_entries`].
    pub async fn entries(&self) -> Result<Vec<Entry>, HistoryError> {
        Ok(self.lines().await?.entries())
    }

    /// Moves a torn last line aside (file store); returns what was moved, if anything.
    pub async fn repair(&self) -> Result<Option<String>, HistoryError> {
        match self {
            Store::File(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || file::repair(&p))
                    .await
                    .map_err(|e| HistoryError::Io(e.to_string()))?
            }
            Store::Postgres(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain as written before anchors existed (no `anchored` mark).
    fn chain(n: usize) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let record = json!({"id": format!("r{}", i + 1), "rto": {"measured_ms": 1000 + i}});
            let (seq, prev) = out.last().map_or((1, GENESIS.to_owned()), |p: &Entry| {
                (p.seq + 1, p.hash.clone())
            });
            out.push(Entry {
                hash: entry_hash(seq, &prev, false, &record),
                seq,
                prev,
                anchored: false,
                record,
            });
        }
        out
    }

    #[test]
    fn losing_the_anchor_of_an_anchored_chain_is_a_break() {
        // two old entries, then two written with an anchor
        let mut c = chain(2);
        for id in ["r3", "r4"] {
            let e = Entry::after(c.last(), json!({"id": id}));
            c.push(e);
        }
        let anchor = Anchor {
            entries: 4,
            head: c[3].hash.clone(),
        };
        let with = |anchor: Option<Anchor>, problem: Option<&str>| Lines {
            anchor,
            anchor_problem: problem.map(str::to_owned),
            anchor_place: "h.jsonl.head".into(),
            ..lines(&c)
        };
        assert!(verify(&with(Some(anchor.clone()), None)).broken.is_none());
        let gone = verify(&with(None, None)).broken.expect("a break");
        assert_eq!(gone.kind, BreakKind::AnchorLost);
        assert!(
            gone.detail
                .contains("h.jsonl.head is missing, but entry 3 (r3)"),
            "{}",
            gone.detail
        );
        assert_eq!(
            broken(&with(None, Some("it is empty"))),
            (4, BreakKind::AnchorLost)
        );
        // the mark is covered by the hash: removing it from an entry is an edit
        let mut l = with(Some(anchor), None);
        l.lines[3] = l.lines[3].replace("\"anchored\":true,", "");
        assert_eq!(broken(&l), (4, BreakKind::Edited));
        // an old history without any anchor is still intact without one
        assert!(verify(&lines(&chain(3))).broken.is_none());
    }

    fn lines(entries: &[Entry]) -> Lines {
        Lines {
            lines: entries.iter().map(Entry::line).collect(),
            ..Lines::default()
        }
    }

    fn broken(l: &Lines) -> (usize, BreakKind) {
        let b = verify(l).broken.expect("a break");
        (b.position, b.kind)
    }

    #[test]
    fn the_anchor_catches_changes_at_the_end_of_the_chain() {
        let c = chain(4);
        let anchored = |entries: &[Entry]| Lines {
            anchor: Some(Anchor {
                entries: 4,
                head: c[3].hash.clone(),
            }),
            ..lines(entries)
        };
        assert!(verify(&anchored(&c)).broken.is_none());
        // the newest entry deleted: the chain alone is intact
        assert!(verify(&lines(&c[..3])).broken.is_none());
        assert_eq!(broken(&anchored(&c[..3])), (4, BreakKind::Deleted));
        // a well-formed entry added after the newest
        let mut more = c.clone();
        more.push(Entry::after(c.last(), json!({"id": "extra"})));
        assert_eq!(broken(&anchored(&more)), (5, BreakKind::Inserted));
    }

    /// An old entry edited in place, at the same length, by a tool other than drillbook:
    /// the file's change time moves, so the checkpoint no longer vouches for the old
    /// entries and a routine read rehashes them, finding the edit. drillbook's own appends
    /// keep the checkpoint.
    #[tokio::test]
    async fn an_old_entry_edited_in_place_voids_the_checkpoint() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = std::env::temp_dir().join(format!("drillbook-cp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("h.jsonl");
        let store = Store::File(path.clone());
        for i in 0..3 {
            file::append(&path, json!({"id": format!("run-{i}"), "rto": 1001})).expect("append");
        }
        // a routine read verifies everything once and leaves a checkpoint
        store.trusted_lines().await.expect("intact");
        let first = store.lines().await.expect("lines");
        assert_eq!(first.checkpoint.as_ref().map(|c| c.covers(&first)), Some(2));
        // drillbook's own append keeps it valid
        file::append(&path, json!({"id": "run-3", "rto": 1001})).expect("append");
        let after = store.lines().await.expect("lines");
        assert_eq!(after.checkpoint.as_ref().map(|c| c.covers(&after)), Some(2));
        // the second entry's RTO changed in place: same length, same inode
        let text = std::fs::read_to_string(&path).expect("read");
        let second = text.lines().nth(1).expect("line 2");
        let at = text.find(second).expect("offset") + second.find("1001").expect("rto");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.seek(SeekFrom::Start(at as u64)).expect("seek");
        f.write_all(b"1009").expect("write");
        drop(f);
        let tampered = store.lines().await.expect("lines");
        assert_eq!(
            tampered.checkpoint.as_ref().map(|c| c.covers(&tampered)),
            Some(0)
        );
        match store.trusted_lines().await {
            Err(HistoryError::Broken { at, .. }) => {
                assert_eq!((at.position, at.kind), (2, BreakKind::Edited));
            }
            other => panic!("the edit went unnoticed: {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checkpoint_spares_rehashing_but_not_the_links() {
        let c = chain(5);
        let intact = lines(&c);
        let head = c[4].hash.clone();
        let with = |l: &Lines| {
            let cp = Checkpoint::of(&intact, &head);
            (verify_after(l, cp.covers(l)), verify(l))
        };
        assert_eq!(Checkpoint::of(&intact, &head).covers(&intact), 4);
        // an edit of the same length before the checkpoint: only a full verify finds it
        let mut l = lines(&c);
        l.lines[1] = l.lines[1].replace("1001", "1009");
        let (routine, full) = with(&l);
        assert!(routine.broken.is_none());
        assert_eq!(
            full.broken.map(|b| (b.position, b.kind)),
            Some((2, BreakKind::Edited))
        );
        // one that changes the length voids the checkpoint: everything is rehashed
        let mut l = lines(&c);
        l.lines[1] = l.lines[1].replace("1001", "901");
        assert_eq!(Checkpoint::of(&intact, &head).covers(&l), 0);
        assert_eq!(broken(&l), (2, BreakKind::Edited));
        assert_eq!(with(&l).0.broken.map(|b| b.kind), Some(BreakKind::Edited));
        // reordered or deleted entries break the links, checkpoint or not
        let mut l = lines(&c);
        l.lines.swap(1, 2);
        assert_eq!(
            with(&l).0.broken.map(|b| b.kind),
            Some(BreakKind::Reordered)
        );
        let mut l = lines(&c);
        l.lines.remove(1);
        assert_eq!(with(&l).0.broken.map(|b| b.kind), Some(BreakKind::Deleted));
        // the newest entries are rehashed: an edit after the checkpoint is found
        let cp = Checkpoint::of(&lines(&c[..3]), &c[2].hash);
        let mut l = lines(&c);
        l.lines[3] = l.lines[3].replace("1003", "1009");
        assert_eq!(cp.covers(&l), 2);
        let found = verify_after(&l, cp.covers(&l)).broken;
        assert_eq!(
            found.map(|b| (b.position, b.kind)),
            Some((4, BreakKind::Edited))
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).expect("json");
        assert_eq!(
            canonical(&v),
            r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn an_intact_chain_verifies() {
        let v = verify(&lines(&chain(5)));
        assert!(v.broken.is_none());
        assert_eq!(v.entries, 5);
        assert_eq!(v.head, Some(chain(5)[4].hash.clone()));
    }

    #[test]
    fn each_kind_of_tampering_is_found_at_its_position() {
        let c = chain(5);
        // an edited RTO
        let mut l = lines(&c);
        l.lines[2] = l.lines[2].replace("1002", "900");
        assert_eq!(broken(&l), (3, BreakKind::Edited));
        // a deleted record
        let mut l = lines(&c);
        l.lines.remove(1);
        assert_eq!(broken(&l), (2, BreakKind::Deleted));
        // two records swapped
        let mut l = lines(&c);
        l.lines.swap(1, 2);
        assert_eq!(broken(&l), (2, BreakKind::Reordered));
        // a record appended by hand, copied from another with a new id
        let mut l = lines(&c);
        l.lines.push(l.lines[4].replace("\"r5\"", "\"r6\""));
        assert_eq!(broken(&l), (6, BreakKind::Edited));
        // a well-formed entry from another chain
        let mut l = lines(&c);
        let foreign = Entry::after(Some(&c[0]), json!({"id": "forged"}));
        l.lines.insert(
            3,
            Entry {
                seq: 4,
                ..foreign.clone()
            }
            .line(),
        );
        assert_eq!(verify(&l).broken.map(|b| b.position), Some(4));
        // the last line cut short
        let mut l = lines(&c);
        let last = l.lines.pop().expect("line");
        l.lines.push(last[..last.len() / 2].to_owned());
        l.unterminated_tail = true;
        assert_eq!(broken(&l), (5, BreakKind::Torn));
    }
}
