//! One table, both databases: row counts and content checksums computed where the data lives
//! (`count(*)` and `bit_xor` of `hash_record_extended` per row: no row crosses the network),
//! the differing keys narrowed down by bucketed checksums when the contents differ, and a
//! sample of rows compared value by value.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use tokio_postgres::Client;

use super::catalog::{Column, Table, TypeHash};
use crate::pg::connect::describe;
use crate::pg::value::TextParam;
use crate::pg::{quote_ident, quote_table};

/// How one table is checksummed: the per-row hash expression over alias `t`.
#[derive(Debug, Clone)]
pub struct Hashing {
    pub row_hash: String,
    /// A hash of the primary key alone, from its columns' own hash functions (`0` without
    /// a key): what rows are grouped by when the key is not an integer.
    pub key_hash: String,
    /// Sum the hashes instead of XORing them: XOR cancels duplicate rows in pairs, which
    /// only tables without a primary key can hold. One aggregate, not both: PostgreSQL
    /// would compute the row hash once for each (3 M rows: 0.89 s with both, 0.53 s with
    /// the sum alone, against 0.77 s for the hand-written floor).
    pub with_sum: bool,
    /// Parallel workers per grouped pass, where they must be fewer than the server's own
    /// limit (see [`shared_cores`]); None leaves the server's limit.
    pub workers: Option<usize>,
}

/// The parallel workers each grouped pass may use when both databases run on this machine
/// and share its cores with `connections` connections a side, each running one pass at a
/// time: what leaves every pass a core (its own process counts), when that is fewer than
/// PostgreSQL's default of 2. None when either database is elsewhere (a server of its
/// own, whose cores drillbook cannot count) or this machine has cores enough. On two cores
/// with both databases here the workers only contend: the compare of 7.5 M rows a side took
/// 0.95× the hand-written floor without them and 0.99× with (`cargo bench --bench
/// compare`).
pub fn shared_cores(
    databases: [&tokio_postgres::Config; 2],
    connections: usize,
    cores: usize,
) -> Option<usize> {
    use tokio_postgres::config::Host;
    let here = |c: &tokio_postgres::Config| {
        c.get_hosts().iter().all(|h| match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => crate::http::is_loopback_host(name),
        })
    };
    if !databases.into_iter().all(here) {
        return None;
    }
    let workers = (cores / (2 * connections.max(1))).saturating_sub(1);
    (workers < 2).then_some(workers)
}

impl Hashing {
    /// Per row, each column's value is hashed by its type's own extended hash function
    /// with a seed of its position (a NULL is a constant of its own), the column hashes are
    /// XORed, and the result is mixed once more (`hashint8extended`), so that values
    /// swapped between rows or between columns change the checksum. Calling the functions
    /// directly costs half of `hash_record_extended(t, 0)`, which builds a copy of every row
    /// first. Types without a function of their own are hashed as a one-field row, types
    /// without any hash function (`json`, `point`) through their text form. Across major
    /// versions binary hashes are not comparable, so everything goes through text.
    pub fn for_table(
        table: &Table,
        hashable: &HashMap<String, TypeHash>,
        same_major: bool,
    ) -> Hashing {
        let hash = |i: usize, c: &Column| {
            let q = format!("t.{}", quote_ident(&c.name));
            let seed = i + 1;
            match hashable.get(&c.ty) {
                Some(TypeHash::Function(f, value)) => {
                    format!("{f}({}, {seed})", value.replace("{}", &q))
                }
                Some(TypeHash::Record) => format!("hash_record_extended(ROW({q}), {seed})"),
                Some(TypeHash::Text) | None => format!("hashtextextended({q}::text, {seed})"),
            }
        };
        let column = |i: usize, c: &Column| format!("coalesce({}, -{})", hash(i, c), i + 1);
        let mix = |columns: Vec<String>| {
            if columns.is_empty() {
                "0::int8".to_owned()
            } else {
                format!("hashint8extended({}, 0)", columns.join(" # "))
            }
        };
        let row_hash = if same_major {
            mix(table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| column(i, c))
                .collect())
        } else {
            "hashtextextended(t::text, 0)".to_owned()
        };
        // only where a key falls (its bucket): the key columns' own hashes, XORed, are
        // spread well enough, and cost less than the row hash's NULL handling and mixing
        // (key columns are never NULL)
        let key_hash = if same_major && !table.primary_key.is_empty() {
            let hashes: Vec<String> = (table.primary_key.iter().enumerate())
                .map(|(i, c)| hash(i, c))
                .collect();
            format!("({})", hashes.join(" # "))
        } else if same_major {
            "0::int8".to_owned()
        } else {
            format!("hashtextextended({}, 0)", key_text_expr(&table.primary_key))
        };
        Hashing {
            row_hash,
            key_hash,
            with_sum: table.primary_key.is_empty(),
            workers: None,
        }
    }
}

/// Count and checksum of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub rows: i64,
    /// None when only counting.
    pub checksum: Option<String>,
}

/// Count and checksum of one side; with `filter` (as of a target), of the rows it keeps,
/// and the second value counts the rows `after` holds for, in the same scan.
pub async fn digest(
    client: &Client,
    table: &str,
    hashing: Option<&Hashing>,
    filter: Option<&str>,
    after: Option<&str>,
) -> Result<(Digest, i64), tokio_postgres::Error> {
    let q = format!("SELECT {}", digest_sql(table, hashing, filter, after));
    let row = client.query_one(q.as_str(), &[]).await?;
    Ok((read_digest(&row, 0, hashing), row.get(2)))
}

/// The count and checksum of each of `tables` (without a filter), in one query and one
/// round trip, in the order given; for many small tables, where the round trips are the
/// cost. (Each branch of the `UNION ALL` is an aggregate and yields its one row; a digest
/// that did not come back anyway is None.)
pub async fn digests(
    client: &Client,
    tables: &[(&str, Option<&Hashing>)],
) -> Result<Vec<Option<Digest>>, tokio_postgres::Error> {
    let q = (tables.iter().enumerate())
        .map(|(i, (table, hashing))| {
            format!("(SELECT {i}, {})", digest_sql(table, *hashing, None, None))
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut out: Vec<Option<Digest>> = vec![None; tables.len()];
    for row in client.query(q.as_str(), &[]).await? {
        let i: i32 = row.get(0);
        if let Some(k) = usize::try_from(i).ok().filter(|k| *k < tables.len()) {
            out[k] = Some(read_digest(&row, 1, tables[k].1));
        }
    }
    Ok(out)
}

/// The select list and FROM of one table's digest: count, checksum as text, and the count
/// `after` holds for.
fn digest_sql(
    table: &str,
    hashing: Option<&Hashing>,
    filter: Option<&str>,
    after: Option<&str>,
) -> String {
    let only = filter.map_or(String::new(), |f| format!(" FILTER (WHERE {f})"));
    let after = after.map_or("0::int8".to_owned(), |a| {
        format!("count(*) FILTER (WHERE {a})")
    });
    let name = quote_table(table);
    match hashing {
        None => format!("count(*){only}, NULL::text, {after} FROM {name} t"),
        Some(h) if h.with_sum => format!(
            "count(*){only}, 'sum ' || coalesce(sum({}){only}, 0)::text, {after} FROM {name} t",
            h.row_hash
        ),
        Some(h) => format!(
            "count(*){only}, (bit_xor({}){only})::text, {after} FROM {name} t",
            h.row_hash
        ),
    }
}

/// The digest in columns `at` (count) and `at + 1` (checksum) of a row of [`digest_sql`].
fn read_digest(row: &tokio_postgres::Row, at: usize, hashing: Option<&Hashing>) -> Digest {
    Digest {
        rows: row.get(at),
        checksum: row
            .get::<_, Option<String>>(at + 1)
            .or_else(|| hashing.map(|_| "empty".into())),
    }
}

/// A key whose row differs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyDiff {
    pub key: String,
    /// `missing in restored`, `only in restored`, or `changed`.
    pub change: &'static str,
}

/// Tables estimated under this many rows are digested plainly, and searched only when they
/// differ (see [`digest_and_find`]).
pub const SMALL_TABLE_ROWS: f64 = 100_000.0;

/// Whether the planner estimates `table` under [`SMALL_TABLE_ROWS`] rows (a table never
/// analyzed has no estimate, and is not).
pub fn is_small(table: &Table) -> bool {
    (0.0..SMALL_TABLE_ROWS).contains(&table.estimate)
}

/// Buckets holding more rows than this are split again rather than read.
const FETCH_LIMIT: i64 = 20_000;
const BUCKETS: i64 = 1024;

/// Session settings for the grouped passes: the planner cannot estimate the number of
/// buckets (it takes the key's distinct values) and would sort the whole table, or hash it
/// in one process; with these it hashes, in parallel, without spending time compiling JIT
/// code for a one-off query. On servers with cores to spare the workers divide a large
/// table's time, as they do the hand-written query's; where both databases share this
/// machine's few cores they are capped ([`shared_cores`]).
const TUNE: &str = "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET enable_sort = off; SET jit = off; SET work_mem = '64MB'";
const UNTUNE: &str = "RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET enable_sort; RESET jit; RESET work_mem";

/// Which rows the grouped passes cover and how a differing key is judged: every row
/// (`plain`), or, as of a recovery target, the rows at or before it.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Predicate over alias `t` for the bucket checksums (`true`: every row).
    pub filter: String,
    /// Expression over `t`: where the row's last change lies, as a [`Position`] number.
    pub le: String,
    pub judge: Judge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    /// Equal, row for row.
    Plain,
    /// As of the target, with a `changed` column.
    Changed,
    /// As of the target, rows only added or deleted, no column.
    AppendOnly,
}

impl Scope {
    pub fn plain() -> Scope {
        Scope {
            filter: "true".into(),
            le: BEFORE.to_string(),
            judge: Judge::Plain,
        }
    }
}

/// Where a row's last change lies: surely before the target (0), within the in-flight
/// window before it, so perhaps committed after it (1), or after it (2).
pub const BEFORE: i32 = 0;
pub const IN_FLIGHT: i32 = 1;
pub const AFTER: i32 = 2;

/// What the search found: failing keys (up to the limit), and the keys that differ because
/// production moved on after the target.
#[derive(Debug, Default)]
pub struct Found {
    pub keys: Vec<KeyDiff>,
    /// Restored rows the source no longer has.
    pub deleted_after_target: u64,
    /// Source rows the restored copy lacks that were added (or changed) after the target.
    pub added_after_target: u64,
    /// Source rows changed after the target (the restored copy holds their earlier form).
    pub changed_after_target: u64,
}

/// The change a differing key shows, or None when the difference is production moving on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Same,
    Fail(&'static str),
    Deleted,
    Added,
    /// The source row changed after the target.
    After,
}

/// Judges one key from its (row hash, position) on each side.
fn judge(j: Judge, a: Option<(i64, i32)>, b: Option<(i64, i32)>) -> Verdict {
    match (j, a, b) {
        (Judge::Changed, _, Some((_, AFTER))) => Verdict::Fail(NEWER),
        (Judge::Changed, Some((_, p)), _) if p != BEFORE => Verdict::After,
        // production's row is older than the restored one's
        (Judge::Changed, Some(_), Some((_, IN_FLIGHT))) => Verdict::Fail("changed"),
        (_, Some(_), None) if j == Judge::AppendOnly => Verdict::Added,
        (_, Some(_), None) => Verdict::Fail("missing in restored"),
        (Judge::Plain, None, Some(_)) => Verdict::Fail("only in restored"),
        (_, None, Some(_)) => Verdict::Deleted,
        (_, Some((h, _)), Some((g, _))) if h != g => Verdict::Fail("changed"),
        _ => Verdict::Same,
    }
}

/// A restored row changed after the target: the restore went past it.
pub const NEWER: &str = "newer than the target in restored";

/// Finds up to `limit` keys whose rows differ, for a table with a primary key.
pub async fn differing_keys(
    src: &Client,
    dst: &Client,
    table: &Table,
    hashing: &Hashing,
    scope: &Scope,
    limit: usize,
) -> Result<Found, tokio_postgres::Error> {
    let mut found = Found::default();
    let search = Search {
        src,
        dst,
        table,
        hashing,
        scope,
        limit,
    };
    search
        .tuned(async {
            if has_integer_key(table) {
                search.by_key_range(&mut found).await
            } else {
                search.by_key_hash(&mut found).await
            }
        })
        .await?;
    found.keys.truncate(limit);
    Ok(found)
}

/// A single integer primary key: rows are grouped by key range.
fn has_integer_key(table: &Table) -> bool {
    table.primary_key.len() == 1
        && matches!(
            table.primary_key[0].ty.as_str(),
            "smallint" | "integer" | "bigint"
        )
}

/// For a table with a primary key, the digest of each side and the keys whose rows differ,
/// in one pass over each database: a grouped pass checksums 1,024 buckets (key ranges for
/// an integer key, a hash of the key otherwise), which add up to the table's digest and,
/// where they differ, map where to look. Only the rows of the differing buckets are read
/// then: through the index for key ranges, in one more pass for key hashes. A table that
/// differs costs barely more than one that does not.
///
/// A table the planner estimates under [`SMALL_TABLE_ROWS`] rows is digested plainly first
/// (one query a side, where the grouped pass takes four round trips with its key bounds and
/// settings), and searched only when the digests differ: with many small tables the round
/// trips, not the rows, are the cost.
///
/// `known`: both sides' digests, already taken (see [`digests`]); the table is then only
/// searched, if they differ.
pub async fn digest_and_find(
    src: &Client,
    dst: &Client,
    table: &Table,
    hashing: &Hashing,
    limit: usize,
    known: Option<(Digest, Digest)>,
) -> Result<(Digest, Digest, Found), tokio_postgres::Error> {
    if known.is_some() || is_small(table) {
        let (a, b) = match known {
            Some(both) => both,
            None => {
                let ((a, _), (b, _)) = tokio::try_join!(
                    digest(src, &table.name, Some(hashing), None, None),
                    digest(dst, &table.name, Some(hashing), None, None)
                )?;
                (a, b)
            }
        };
        let found = if a != b && limit > 0 {
            differing_keys(src, dst, table, hashing, &Scope::plain(), limit).await?
        } else {
            Found::default()
        };
        return Ok((a, b, found));
    }
    let scope = Scope::plain();
    let search = Search {
        src,
        dst,
        table,
        hashing,
        scope: &scope,
        limit,
    };
    let (a, b, mut found) = search.tuned(search.digest_and_find()).await?;
    found.keys.truncate(limit);
    Ok((a, b, found))
}

fn key_text_expr(pk: &[Column]) -> String {
    match pk {
        [one] => format!("t.{}::text", quote_ident(&one.name)),
        many => format!(
            "ROW({})::text",
            many.iter()
                .map(|c| format!("t.{}", quote_ident(&c.name)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

struct Search<'a> {
    src: &'a Client,
    dst: &'a Client,
    table: &'a Table,
    hashing: &'a Hashing,
    scope: &'a Scope,
    limit: usize,
}

impl Search<'_> {
    /// Runs `work` with both sessions set for the grouped passes ([`TUNE`], and the
    /// workers of [`Hashing::workers`]), and resets them after, whatever `work` returned.
    async fn tuned<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        let (tune, untune) = match self.hashing.workers {
            Some(n) => (
                format!("{TUNE}; SET max_parallel_workers_per_gather = {n}"),
                format!("{UNTUNE}; RESET max_parallel_workers_per_gather"),
            ),
            None => (TUNE.to_owned(), UNTUNE.to_owned()),
        };
        tokio::try_join!(self.src.batch_execute(&tune), self.dst.batch_execute(&tune))?;
        let done = work.await;
        tokio::try_join!(
            self.src.batch_execute(&untune),
            self.dst.batch_execute(&untune)
        )?;
        done
    }

    /// Integer keys: one grouped pass per database checksums 1,024 key-range buckets; the
    /// rows of differing buckets are read as (key, row hash) pairs, and buckets still too
    /// large are split the same way (their key range is read through the index).
    async fn by_key_range(&self, out: &mut Found) -> Result<(), tokio_postgres::Error> {
        let Some((lo, hi)) = self.key_bounds().await? else {
            return Ok(());
        };
        self.narrow(vec![(lo, hi.saturating_add(1))], out).await
    }

    /// [`digest_and_find`]: the first round over the whole table has no key condition (a
    /// key written after the bounds were read lands in a bucket past the last, and still
    /// counts), so its buckets add up to each side's digest.
    async fn digest_and_find(&self) -> Result<(Digest, Digest, Found), tokio_postgres::Error> {
        let mut found = Found::default();
        if !has_integer_key(self.table) {
            let (a, b) = self.key_hash_buckets().await?;
            if self.limit > 0 {
                self.read_buckets(&differing_buckets(&a, &b), &mut found)
                    .await?;
            }
            return Ok((total(&a), total(&b), found));
        }
        let Some((lo, hi)) = self.key_bounds().await? else {
            let empty = total(&Buckets::new());
            return Ok((empty.clone(), empty, found));
        };
        let width = bucket_width(lo, hi.saturating_add(1));
        let q = format!(
            "SELECT ({pk}::int8 - {lo}) / {width} AS b, count(*), bit_xor({h}) FROM {name} t GROUP BY 1",
            pk = quote_ident(&self.table.primary_key[0].name),
            name = quote_table(&self.table.name),
            h = self.hashing.row_hash,
        );
        let (a, b) = tokio::try_join!(self.src.query(&q, &[]), self.dst.query(&q, &[]))?;
        let (a, b) = (buckets(a), buckets(b));
        let mut next = Vec::new();
        if self.limit > 0 {
            for (bucket, rows) in differing_buckets(&a, &b) {
                let range = (lo + bucket * width, lo + (bucket + 1) * width);
                if self
                    .visit(range, rows, width, &mut next, &mut found)
                    .await?
                {
                    next.clear();
                    break;
                }
            }
        }
        if !next.is_empty() {
            self.narrow(next, &mut found).await?;
        }
        Ok((total(&a), total(&b), found))
    }

    /// The smallest and largest key over both databases (read through the index), or None
    /// when both are empty.
    async fn key_bounds(&self) -> Result<Option<(i64, i64)>, tokio_postgres::Error> {
        let pk = quote_ident(&self.table.primary_key[0].name);
        let name = quote_table(&self.table.name);
        let bounds = format!("SELECT min({pk})::int8, max({pk})::int8 FROM {name}");
        let (a, b) = tokio::try_join!(
            self.src.query_one(bounds.as_str(), &[]),
            self.dst.query_one(bounds.as_str(), &[])
        )?;
        let lows = [a.get::<_, Option<i64>>(0), b.get(0)];
        let highs = [a.get::<_, Option<i64>>(1), b.get(1)];
        Ok(lows
            .iter()
            .flatten()
            .min()
            .copied()
            .zip(highs.iter().flatten().max().copied()))
    }

    /// Splits each key range into up to 1,024 buckets and checksums them on both sides
    /// (a grouped pass over the range, through the index), for up to 6 rounds.
    async fn narrow(
        &self,
        mut ranges: Vec<(i64, i64)>,
        out: &mut Found,
    ) -> Result<(), tokio_postgres::Error> {
        let pk = quote_ident(&self.table.primary_key[0].name);
        let name = quote_table(&self.table.name);
        for _round in 0..6 {
            let mut next = Vec::new();
            for (start, end) in ranges {
                let width = bucket_width(start, end);
                let q = format!(
                    "SELECT ({pk}::int8 - {start}) / {width} AS b, count(*), bit_xor({h}) FROM {name} t WHERE {pk} >= {start} AND {pk} < {end} AND ({f}) GROUP BY 1",
                    h = self.hashing.row_hash,
                    f = self.scope.filter
                );
                let (a, b) = tokio::try_join!(self.src.query(&q, &[]), self.dst.query(&q, &[]))?;
                for (bucket, rows) in differing_buckets(&buckets(a), &buckets(b)) {
                    let range = (
                        start + bucket * width,
                        (start + (bucket + 1) * width).min(end),
                    );
                    if self.visit(range, rows, width, &mut next, out).await? {
                        return Ok(());
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            ranges = next;
        }
        Ok(())
    }

    /// A differing bucket: its rows are read and judged, or, when it holds too many, it
    /// is split in the next round. True once `limit` failing keys are found.
    async fn visit(
        &self,
        (from, to): (i64, i64),
        rows: i64,
        width: i64,
        next: &mut Vec<(i64, i64)>,
        out: &mut Found,
    ) -> Result<bool, tokio_postgres::Error> {
        if rows > FETCH_LIMIT && width > 1 {
            next.push((from, to));
            return Ok(false);
        }
        let pk = quote_ident(&self.table.primary_key[0].name);
        let f = format!(
            "SELECT {k}, {h}, {le} FROM {name} t WHERE {pk} >= {from} AND {pk} < {to}",
            name = quote_table(&self.table.name),
            k = key_text_expr(&self.table.primary_key),
            h = self.hashing.row_hash,
            le = self.scope.le
        );
        self.diff_rows(&f, out).await
    }

    /// Other keys: bucket by a hash of the key in one grouped pass per side, then read the
    /// rows of the differing buckets in one more pass.
    async fn by_key_hash(&self, out: &mut Found) -> Result<(), tokio_postgres::Error> {
        let (a, b) = self.key_hash_buckets().await?;
        self.read_buckets(&differing_buckets(&a, &b), out).await
    }

    /// The grouped pass by a hash of the key (of the rows the scope keeps), on both sides.
    async fn key_hash_buckets(&self) -> Result<(Buckets, Buckets), tokio_postgres::Error> {
        let q = format!(
            "SELECT {bucket} AS b, count(*), bit_xor({h}) FROM {name} t WHERE ({f}) GROUP BY 1",
            bucket = self.key_bucket(),
            name = quote_table(&self.table.name),
            h = self.hashing.row_hash,
            f = self.scope.filter
        );
        let (a, b) = tokio::try_join!(self.src.query(&q, &[]), self.dst.query(&q, &[]))?;
        Ok((buckets(a), buckets(b)))
    }

    fn key_bucket(&self) -> String {
        format!("({} & {})", self.hashing.key_hash, BUCKETS - 1)
    }

    /// Reads the rows of the given key-hash buckets on both sides (one pass) and judges them.
    async fn read_buckets(
        &self,
        differing: &[(i64, i64)],
        out: &mut Found,
    ) -> Result<(), tokio_postgres::Error> {
        if differing.is_empty() {
            return Ok(());
        }
        let list = differing
            .iter()
            .map(|(b, _)| b.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let f = format!(
            "SELECT {key}, {h}, {le} FROM {name} t WHERE {bucket} IN ({list})",
            key = key_text_expr(&self.table.primary_key),
            name = quote_table(&self.table.name),
            bucket = self.key_bucket(),
            h = self.hashing.row_hash,
            le = self.scope.le
        );
        self.diff_rows(&f, out).await?;
        Ok(())
    }

    /// Runs a (key, hash, position) query on both sides and records the keys that differ;
    /// true once `limit` failing keys are found.
    async fn diff_rows(&self, q: &str, out: &mut Found) -> Result<bool, tokio_postgres::Error> {
        let (a, b) = tokio::try_join!(self.src.query(q, &[]), self.dst.query(q, &[]))?;
        let read = |rows: Vec<tokio_postgres::Row>| -> BTreeMap<String, (i64, i32)> {
            rows.iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2))))
                .collect()
        };
        let (a, b) = (read(a), read(b));
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            match judge(self.scope.judge, a.get(k).copied(), b.get(k).copied()) {
                Verdict::Same => {}
                Verdict::Deleted => out.deleted_after_target += 1,
                Verdict::Added => out.added_after_target += 1,
                Verdict::After => out.changed_after_target += 1,
                Verdict::Fail(change) => out.keys.push(KeyDiff {
                    key: k.clone(),
                    change,
                }),
            }
        }
        Ok(out.keys.len() >= self.limit)
    }
}

/// A grouped `(bucket, count(*), bit_xor(hash))` query's answer.
type Buckets = BTreeMap<i64, (i64, Option<i64>)>;

fn buckets(rows: Vec<tokio_postgres::Row>) -> Buckets {
    rows.iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

/// The buckets whose digests differ between the two sides, each with the larger of its
/// two row counts.
fn differing_buckets(a: &Buckets, b: &Buckets) -> Vec<(i64, i64)> {
    let keys: std::collections::BTreeSet<i64> = a.keys().chain(b.keys()).copied().collect();
    keys.into_iter()
        .filter(|k| a.get(k) != b.get(k))
        .map(|k| {
            let rows = |m: &Buckets| m.get(&k).map_or(0, |v| v.0);
            (k, rows(a).max(rows(b)))
        })
        .collect()
}

/// The width of each of the (up to) 1,024 buckets a key range is split into.
fn bucket_width(start: i64, end: i64) -> i64 {
    (((end - start) + BUCKETS - 1) / BUCKETS).max(1)
}

/// The whole table's digest from its buckets: the rows they count, the XOR of their
/// checksums (what `digest` computes in one aggregate).
fn total(b: &Buckets) -> Digest {
    let rows = b.values().map(|v| v.0).sum();
    let xor = b.values().filter_map(|v| v.1).reduce(|x, y| x ^ y);
    Digest {
        rows,
        checksum: Some(xor.map_or_else(|| "empty".into(), |x| x.to_string())),
    }
}

/// Compares up to `n` rows picked at random from the restored copy with the source's rows of
/// the same primary key, value by value: every recovered record must be right. (Picked from
/// the restored side because a restore to an earlier time rightly lacks the source's newer
/// rows; rows missing from the restored copy show in row counts and checksums.) Returns
/// (rows compared, findings).
pub async fn sample(
    src: &Client,
    dst: &Client,
    table: &Table,
    n: usize,
) -> Result<(usize, Vec<String>), tokio_postgres::Error> {
    let name = quote_table(&table.name);
    let pk = &table.primary_key;
    let key_cols: Vec<String> = pk
        .iter()
        .map(|c| format!("t.{}::text", quote_ident(&c.name)))
        .collect();
    let pick = if table.estimate < (n as f64) * 20.0 {
        format!(
            "SELECT {} FROM {name} t ORDER BY random() LIMIT {n}",
            key_cols.join(", ")
        )
    } else {
        let pct = ((n as f64) * 3.0 * 100.0 / table.estimate).clamp(0.0001, 100.0);
        format!(
            "SELECT {} FROM {name} t TABLESAMPLE BERNOULLI ({pct}) LIMIT {n}",
            key_cols.join(", ")
        )
    };
    let keys = dst.query(pick.as_str(), &[]).await?;
    if keys.is_empty() {
        return Ok((0, Vec::new()));
    }
    // one array per key column, bound as text and cast to the column's array type, so the
    // lookup uses the primary key index
    let arrays: Vec<TextParam> = (0..pk.len())
        .map(|i| {
            TextParam(Some(array_literal(
                keys.iter().map(|r| r.get::<_, String>(i)),
            )))
        })
        .collect();
    let refs: Vec<&(dyn postgres_types::ToSql + Sync)> = arrays
        .iter()
        .map(|p| p as &(dyn postgres_types::ToSql + Sync))
        .collect();
    let unnest: Vec<String> = pk
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}[]", i + 1, c.ty))
        .collect();
    let cols: Vec<String> = pk
        .iter()
        .map(|c| format!("t.{}", quote_ident(&c.name)))
        .collect();
    let fetch = format!(
        "SELECT {k}, to_jsonb(t) FROM {name} t WHERE ({cols}) IN (SELECT * FROM unnest({unnest}))",
        k = key_text_expr(pk),
        cols = cols.join(", "),
        unnest = unnest.join(", ")
    );
    let (a, b) = tokio::try_join!(
        src.query(fetch.as_str(), &refs),
        dst.query(fetch.as_str(), &refs)
    )?;
    let a: BTreeMap<String, Value> = a.iter().map(|r| (r.get(0), r.get(1))).collect();
    let b: BTreeMap<String, Value> = b.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut findings = Vec::new();
    for (key, other) in &b {
        match a.get(key) {
            None => findings.push(format!(
                "sampled key {key} is in restored but missing in source (deleted since the target?)"
            )),
            Some(row) if other != row => {
                let cols = row
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(c, v)| other.get(c.as_str()) != Some(v));
                for (c, v) in cols.take(3) {
                    findings.push(format!(
                        "sampled key {key}: column `{c}` is {v} in source, {} in restored",
                        other.get(c.as_str()).unwrap_or(&Value::Null)
                    ));
                }
            }
            Some(_) => {}
        }
    }
    Ok((b.len(), findings))
}

/// `{"a","b\"c"}`: a PostgreSQL array literal of text values.
fn array_literal(values: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = values
        .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", items.join(","))
}

/// A query error, said specifically: a table dropped mid-check is named as such.
pub fn explain(table: &str, e: &tokio_postgres::Error) -> String {
    let text = describe(e);
    if text.contains("(42P01)") {
        format!("{table} disappeared while it was being checked: {text}")
    } else {
        format!("{table}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_passes_leave_a_core_to_each_pass_when_both_databases_share_this_machine() {
        let url = |u: &str| u.parse::<tokio_postgres::Config>().unwrap();
        let (socket, loopback, remote) = (
            url("host=/var/run/postgresql dbname=a"),
            url("postgresql://u@127.0.0.1:5432/b"),
            url("postgresql://u@db.example.com/c"),
        );
        // two cores, two connections a side: no workers
        assert_eq!(shared_cores([&socket, &loopback], 2, 2), Some(0));
        assert_eq!(
            shared_cores([&loopback, &url("postgresql://localhost/x")], 1, 4),
            Some(1)
        );
        // cores enough for the server's own limit, or a database elsewhere: left alone
        assert_eq!(shared_cores([&socket, &loopback], 2, 16), None);
        assert_eq!(shared_cores([&remote, &loopback], 2, 2), None);
        assert_eq!(
            shared_cores([&url("postgresql://[::1]/x"), &socket], 8, 2),
            Some(0)
        );
    }

    #[test]
    fn keys_are_judged_as_of_the_target() {
        let (le, after) = (Some((1, BEFORE)), Some((1, AFTER)));
        let other = Some((2, BEFORE));
        let flight = Some((1, IN_FLIGHT));
        assert_eq!(judge(Judge::Changed, flight, le), Verdict::After);
        assert_eq!(judge(Judge::Changed, flight, None), Verdict::After);
        assert_eq!(judge(Judge::Changed, None, flight), Verdict::Deleted);
        assert_eq!(judge(Judge::Changed, le, flight), Verdict::Fail("changed"));
        assert_eq!(judge(Judge::Changed, le, le), Verdict::Same);
        assert_eq!(judge(Judge::Changed, le, other), Verdict::Fail("changed"));
        assert_eq!(
            judge(Judge::Changed, le, None),
            Verdict::Fail("missing in restored")
        );
        assert_eq!(judge(Judge::Changed, le, after), Verdict::Fail(NEWER));
        assert_eq!(judge(Judge::Changed, None, after), Verdict::Fail(NEWER));
        assert_eq!(judge(Judge::Changed, after, le), Verdict::After);
        assert_eq!(judge(Judge::Changed, after, None), Verdict::After);
        assert_eq!(judge(Judge::Changed, None, le), Verdict::Deleted);
        assert_eq!(judge(Judge::AppendOnly, le, None), Verdict::Added);
        assert_eq!(judge(Judge::AppendOnly, None, le), Verdict::Deleted);
        assert_eq!(
            judge(Judge::AppendOnly, le, other),
            Verdict::Fail("changed")
        );
        assert_eq!(
            judge(Judge::Plain, le, None),
            Verdict::Fail("missing in restored")
        );
        assert_eq!(
            judge(Judge::Plain, None, le),
            Verdict::Fail("only in restored")
        );
    }
}
