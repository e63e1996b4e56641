//! `cargo bench --bench compare`: how fast `compare` with checksums validates a restored
//! database, next to two floors measured in the same run on the same data:
//!
//! - the scan floor: `SELECT count(*)` per table, both databases at once;
//! - the fastest hand-written content check: `count(*)` with
//!   `bit_xor(hash_record_extended(t, 0))` per table, both databases at once;
//!
//! then the same `compare` with `as_of` (a target after every row: the filtered checksums
//! of the big tables, every row compared), and, with a handful of rows changed in the
//! copy, the time to pinpoint them, beside reladiff 0.6 (a checksum-bisection diff tool
//! from PyPI, installed by the benchmark into `target/bench-venv`, never a dependency)
//! finding the same rows.
//! The dataset (default ≈1.1 GB: pgbench accounts at scale 50 plus a less compressible
//! `rnd` table) lives in two databases of a throwaway cluster. Medians of 3 runs after a
//! warm-up pass. `DRILLBOOK_BENCH_SCALE` and `DRILLBOOK_BENCH_RND_ROWS` change the size;
//! `DRILLBOOK_BENCH_SIZES=1,4,16` then measures the floor and `compare` again at those
//! multiples of a smaller dataset (`DRILLBOOK_BENCH_SIZE_SCALE`, default pgbench scale 10
//! and 500,000 `rnd` rows per 1×), printing seconds per GB at each.

mod common;

use common::{env_num, median, Quiet, RemoveOnDrop};
use std::time::{Duration, Instant};

use drillbook::cancel::Cancel;
use drillbook::engine::RunOptions;
use drillbook::pg::cluster::{Cluster, InitOptions};
use drillbook::record::DrillRecord;

async fn connect(url: &str) -> tokio_postgres::Client {
    let spec = drillbook::pg::url::parse(url).expect("url");
    drillbook::pg::connect(&spec).await.expect("connect")
}

const TABLES: [&str; 4] = [
    "pgbench_accounts",
    "pgbench_branches",
    "pgbench_tellers",
    "rnd",
];

/// Runs `sql(table)` per table, on both databases at once.
async fn both(
    a: &tokio_postgres::Client,
    b: &tokio_postgres::Client,
    sql: impl Fn(&str) -> String,
) -> Duration {
    let start = Instant::now();
    for t in TABLES {
        let q = sql(t);
        let (x, y) = tokio::join!(a.query_one(q.as_str(), &[]), b.query_one(q.as_str(), &[]));
        x.expect("query source");
        y.expect("query restored");
    }
    start.elapsed()
}

/// `as_of` for the big tables: a target after every row, so every row is compared.
const AS_OF: &str = ", as_of: { target: \"2027-01-01T00:00:00Z\", changed: { pgbench_accounts: updated_at, rnd: ts } }";

async fn drillbook_compare(src: &str, dst: &str, extra: &str) -> (Duration, DrillRecord) {
    let yaml = format!(
        "version: 1\nname: bench\nprocedures:\n  p:\n    title: bench\n    kind: drill\n    steps:\n      - id: cmp\n        compare: {{ source: \"{src}\", restored: \"{dst}\", checksums: true, schema: true{extra} }}\n"
    );
    let rb = drillbook::runbook::load_str("bench.yaml", &yaml).expect("runbook");
    let opts = RunOptions {
        operator: "bench".into(),
        ..RunOptions::default()
    };
    let start = Instant::now();
    let rec = drillbook::engine::run(&rb, "p", &opts, &Quiet, &Quiet, &Cancel::new())
        .await
        .expect("run");
    (start.elapsed(), rec)
}

/// Creates database `db` (pgbench accounts at `scale`, `rnd` with `rnd_rows` rows, an
/// `updated_at` column for `as_of`), vacuumed, and `copy`, a byte-identical copy of it.
async fn dataset(
    bin: &drillbook::pg::cluster::Binaries,
    cluster: &Cluster,
    admin: &tokio_postgres::Client,
    db: &str,
    copy: &str,
    scale: u64,
    rnd_rows: u64,
) {
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create db");
    let status = std::process::Command::new(bin.dir.join("pgbench"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "-i",
            "-q",
            "-s",
            &scale.to_string(),
            db,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("pgbench");
    assert!(status.success(), "pgbench -i failed");
    let bench = connect(&cluster.url(db)).await;
    bench
        .batch_execute(&format!(
            "CREATE TABLE rnd (id bigint PRIMARY KEY, v text, n numeric, ts timestamptz);
             INSERT INTO rnd SELECT g, md5(g::text) || md5((g * 7)::text) || left(md5((g * 13)::text), (g % 32)), (g * 1.37) % 100000, '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, {rnd_rows}) g;"
        ))
        .await
        .expect("rnd");
    // a column every change would set, for `as_of` (a constant default: no table rewrite)
    bench
        .batch_execute("ALTER TABLE pgbench_accounts ADD COLUMN updated_at timestamptz NOT NULL DEFAULT '2026-01-01T00:00:00Z'")
        .await
        .expect("updated_at");
    bench.batch_execute("VACUUM ANALYZE").await.expect("vacuum");
    drop(bench);
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {copy} TEMPLATE {db} STRATEGY file_copy"
        ))
        .await
        .expect("copy");
}

/// The heap size of the benchmark's tables and their row count, in database `url`.
async fn size_and_rows(url: &str) -> (i64, i64) {
    let a = connect(url).await;
    let size: i64 = a
        .query_one(
            "SELECT sum(pg_relation_size(c.oid))::int8 FROM pg_class c WHERE c.relname = ANY($1)",
            &[&TABLES.to_vec()],
        )
        .await
        .expect("size")
        .get(0);
    let rows: i64 = a
        .query_one("SELECT (SELECT count(*) FROM pgbench_accounts) + (SELECT count(*) FROM pgbench_branches) + (SELECT count(*) FROM pgbench_tellers) + (SELECT count(*) FROM rnd)", &[])
        .await
        .expect("rows")
        .get(0);
    (size, rows)
}

/// reladiff 0.6 in a virtual environment under `target/` (made on first use): the
/// benchmark's own, never one of drillbook's dependencies.
fn reladiff() -> std::path::PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-venv");
    let exe = venv.join("bin/reladiff");
    if !exe.exists() {
        eprintln!(
            "installing reladiff 0.6 from PyPI into {} …",
            venv.display()
        );
        let python = common::installed("python3", "python3-venv");
        let ok = std::process::Command::new(python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "reladiff[postgresql]==0.6.0"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok && exe.exists(),
            "could not install reladiff (python3 -m venv, pip install reladiff[postgresql]==0.6.0)"
        );
    }
    exe
}

/// reladiff on one table of both databases, every column compared: its time and the keys
/// it reports.
fn run_reladiff(
    exe: &std::path::Path,
    src: &str,
    dst: &str,
    table: &str,
    key: &str,
) -> (Duration, Vec<String>) {
    let start = Instant::now();
    let out = std::process::Command::new(exe)
        .args([src, table, dst, table, "-k", key, "-c", "%", "--json"])
        // its console wraps long lines at the terminal's width, inside the JSON
        .env("COLUMNS", "100000")
        .output()
        .expect("run reladiff");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "reladiff failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v[1][0].as_str().map(str::to_owned))
        .collect();
    keys.sort();
    keys.dedup();
    (took, keys)
}

/// `compare` on data that must pass: its time.
async fn passing_compare(src: &str, dst: &str, extra: &str) -> Duration {
    let (d, rec) = drillbook_compare(src, dst, extra).await;
    assert_eq!(
        rec.verdict,
        drillbook::record::Verdict::Passed,
        "{:?}",
        rec.reason
    );
    d
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    if !common::invoked_by_cargo_bench("compare") {
        return;
    }
    let scale = env_num("DRILLBOOK_BENCH_SCALE", 50);
    let rnd_rows = env_num("DRILLBOOK_BENCH_RND_ROWS", 2_500_000);
    let bin = common::pg_server();
    let root = std::env::temp_dir().join(format!("drillbook-bench-{}", std::process::id()));
    // declared before the cluster, so it is dropped after it: the files go even on a panic
    let _files = RemoveOnDrop(root.clone());
    let opts = InitOptions {
        unsafe_fast: true,
        settings: vec![
            ("max_wal_size".into(), "8GB".into()),
            ("checkpoint_timeout".into(), "30min".into()),
        ],
        ..InitOptions::default()
    };
    let mut cluster = Cluster::create(bin.clone(), &root, &opts)
        .await
        .expect("initdb");
    cluster.start().await.expect("start");
    let admin = connect(&cluster.url("postgres")).await;
    eprintln!("generating: pgbench scale {scale} + rnd {rnd_rows} rows …");
    let t = Instant::now();
    dataset(&bin, &cluster, &admin, "bench", "restored", scale, rnd_rows).await;
    eprintln!("generated in {:.1}s", t.elapsed().as_secs_f64());

    let (src_url, dst_url) = (cluster.url("bench"), cluster.url("restored"));
    let (a, b) = (connect(&src_url).await, connect(&dst_url).await);
    let (size, rows) = size_and_rows(&src_url).await;
    // warm-up: page cache and hint bits, on both
    both(&a, &b, |t| {
        format!("SELECT count(*), bit_xor(hash_record_extended(t, 0)) FROM {t} t")
    })
    .await;

    let mut scan = Vec::new();
    let mut check = Vec::new();
    let mut ours = Vec::new();
    let mut as_of = Vec::new();
    for _ in 0..3 {
        scan.push(both(&a, &b, |t| format!("SELECT count(*) FROM {t}")).await);
        check.push(
            both(&a, &b, |t| {
                format!("SELECT count(*), bit_xor(hash_record_extended(t, 0)) FROM {t} t")
            })
            .await,
        );
        ours.push(passing_compare(&src_url, &dst_url, "").await);
        as_of.push(passing_compare(&src_url, &dst_url, AS_OF).await);
    }
    let (scan, check, ours, as_of) = (median(scan), median(check), median(ours), median(as_of));

    // plant a handful of differences and time finding them
    let changed = [17i64, 123_456, (scale as i64) * 100_000 - 3];
    b.batch_execute(&format!(
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid IN ({}, {}, {}); UPDATE rnd SET n = n + 1 WHERE id IN (42, {});",
        changed[0], changed[1], changed[2], rnd_rows / 2
    ))
    .await
    .expect("plant");
    both(&a, &b, |t| format!("SELECT count(*) FROM {t}")).await;
    let mut pin = Vec::new();
    let mut found = String::new();
    for _ in 0..3 {
        let (d, rec) = drillbook_compare(&src_url, &dst_url, "").await;
        found = rec.steps[0].error.clone().unwrap_or_default();
        pin.push(d);
    }
    let pin = median(pin);
    for k in changed {
        assert!(
            found.contains(&format!("{k} (changed)")),
            "key {k} not pinpointed: {found}"
        );
    }

    eprintln!(
        "content floor {:.2}s, compare {:.2}s, as_of {:.2}s, 5 rows changed {:.2}s; now reladiff …",
        secs(check),
        secs(ours),
        secs(as_of),
        secs(pin)
    );

    // reladiff finding the same rows, on the two tables that hold them
    let exe = reladiff();
    let mut theirs = Vec::new();
    for _ in 0..3 {
        let (d1, k1) = run_reladiff(&exe, &src_url, &dst_url, "pgbench_accounts", "aid");
        let (d2, k2) = run_reladiff(&exe, &src_url, &dst_url, "rnd", "id");
        let mut want: Vec<String> = changed.iter().map(i64::to_string).collect();
        want.sort();
        assert_eq!(k1, want, "reladiff found other keys in pgbench_accounts");
        assert_eq!(k2.len(), 2, "reladiff found {k2:?} in rnd");
        theirs.push(d1 + d2);
    }
    let theirs = median(theirs);

    let mb = size as f64 / 1e6;
    let both_sides = 2.0;
    println!("drillbook compare benchmark — {rows} rows, {mb:.0} MB of heap per database, 2 databases (medians of 3, warm)");
    println!(
        "{:<52} {:>8} {:>14} {:>10} {:>9}",
        "", "time", "rows/s", "MB/s", "ratio"
    );
    let line = |name: &str, d: Duration, base: Duration| {
        let s = secs(d);
        println!(
            "{name:<52} {s:>7.2}s {:>14.0} {:>10.0} {:>8.2}x",
            rows as f64 * both_sides / s,
            mb * both_sides / s,
            s / secs(base)
        );
    };
    line("scan floor: count(*), both databases", scan, check);
    line(
        "content floor: count + bit_xor(hash_record_extended)",
        check,
        check,
    );
    line("drillbook compare (checksums, schema, counts)", ours, check);
    line(
        "drillbook compare with as_of (every row at or before)",
        as_of,
        check,
    );
    println!(
        "{:<52} {:>8} {:>14} {:>10} {:>8.2}x",
        "as_of against compare without it",
        "",
        "",
        "",
        secs(as_of) / secs(ours)
    );
    line("drillbook compare, 5 rows changed (pinpointed)", pin, check);
    let extra = pin.saturating_sub(ours);
    println!(
        "{:<52} {:>7.2}s {:>14} {:>10} {:>8.2}x",
        "pinpointing alone (difference of the two)",
        secs(extra),
        "",
        "",
        secs(extra) / secs(check)
    );
    line(
        "reladiff 0.6, the same 5 rows (2 tables, all columns)",
        theirs,
        check,
    );
    println!("rows/s and MB/s count both databases; ratio is against the content floor");
    println!();
    println!("goals (issue 17):");
    println!(
        "  compare without differences / content floor      {:>6.2}x  (goal <= 1.0x)",
        secs(ours) / secs(check)
    );
    println!(
        "  compare with 5 differences / without             {:>6.2}x  (goal <= 1.2x)",
        secs(pin) / secs(ours)
    );
    println!(
        "  reladiff / drillbook, finding the same rows      {:>6.2}x  (goal >= 5x)",
        secs(theirs) / secs(pin)
    );
    println!(
        "  as_of / compare without it                       {:>6.2}x  (goal <= 1.3x)",
        secs(as_of) / secs(ours)
    );
    drop((a, b));

    let sizes: Vec<u64> = std::env::var("DRILLBOOK_BENCH_SIZES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if !sizes.is_empty() {
        scaling(&bin, &cluster, &admin, &sizes).await;
    }
    drop(admin);
    cluster.stop().await.expect("stop the cluster");
}

/// The floor and `compare` at multiples of a small dataset: seconds per GB at each.
async fn scaling(
    bin: &drillbook::pg::cluster::Binaries,
    cluster: &Cluster,
    admin: &tokio_postgres::Client,
    sizes: &[u64],
) {
    let scale = env_num("DRILLBOOK_BENCH_SIZE_SCALE", 10);
    let rnd_rows = scale * 50_000;
    println!();
    println!("scaling — pgbench scale {scale} + {rnd_rows} rnd rows per 1x (medians of 3, warm; GB of heap per database)");
    println!(
        "{:>5} {:>12} {:>8} {:>12} {:>12} {:>12} {:>8}",
        "size", "rows", "GB", "floor", "compare", "compare s/GB", "ratio"
    );
    for &k in sizes {
        let (db, copy) = (format!("scale{k}"), format!("scale{k}_copy"));
        dataset(bin, cluster, admin, &db, &copy, scale * k, rnd_rows * k).await;
        let (src_url, dst_url) = (cluster.url(&db), cluster.url(&copy));
        let (size, rows) = size_and_rows(&src_url).await;
        let (a, b) = (connect(&src_url).await, connect(&dst_url).await);
        let hand =
            |t: &str| format!("SELECT count(*), bit_xor(hash_record_extended(t, 0)) FROM {t} t");
        both(&a, &b, hand).await;
        let mut check = Vec::new();
        let mut ours = Vec::new();
        for _ in 0..3 {
            check.push(both(&a, &b, hand).await);
            ours.push(passing_compare(&src_url, &dst_url, "").await);
        }
        let (check, ours) = (median(check), median(ours));
        let gb = size as f64 / 1e9;
        println!(
            "{:>4}x {rows:>12} {gb:>8.2} {:>11.2}s {:>11.2}s {:>12.2} {:>7.2}x",
            k,
            secs(check),
            secs(ours),
            secs(ours) / gb,
            secs(ours) / secs(check)
        );
        drop((a, b));
        for d in [db, copy] {
            admin
                .batch_execute(&format!("DROP DATABASE {d}"))
                .await
                .expect("drop");
        }
    }
}
