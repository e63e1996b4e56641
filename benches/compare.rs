//! `cargo bench --bench compare`: how fast `compare` with checksums validates a restored
//! database, next to two floors measured in the same run on the same data:
//!
//! - the scan floor: `SELECT count(*)` per table, both databases at once;
//! - the fastest hand-written content check: `count(*)` with
//!   `bit_xor(hash_record_extended(t, 0))` per table, both databases at once;
//!
//! then the same `compare` with `as_of` (a target after every row: the filtered checksums
//! of the big tables, every row compared), and, with a handful of rows changed in the
//! copy, the time to pinpoint them.
//! The dataset (default ≈1.1 GB: pgbench accounts at scale 50 plus a less compressible
//! `rnd` table) lives in two databases of a throwaway cluster. Medians of 3 runs after a
//! warm-up pass. `DRILLBOOK_BENCH_SCALE` and `DRILLBOOK_BENCH_RND_ROWS` change the size.

mod common;

use common::{env_num, median, Quiet, RemoveOnDrop};
use std::time::{Duration, Instant};

use drillbook::cancel::Cancel;
use drillbook::engine::RunOptions;
use drillbook::pg::cluster::{find_binaries, Cluster, InitOptions};
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
    let bin = find_binaries().expect("PostgreSQL server binaries");
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
    admin
        .batch_execute("CREATE DATABASE bench")
        .await
        .expect("create db");

    eprintln!("generating: pgbench scale {scale} + rnd {rnd_rows} rows …");
    let t = Instant::now();
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
            "bench",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("pgbench");
    assert!(status.success(), "pgbench -i failed");
    let bench = connect(&cluster.url("bench")).await;
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
        .batch_execute("CREATE DATABASE restored TEMPLATE bench STRATEGY file_copy")
        .await
        .expect("copy");
    eprintln!("generated in {:.1}s", t.elapsed().as_secs_f64());

    let (src_url, dst_url) = (cluster.url("bench"), cluster.url("restored"));
    let (a, b) = (connect(&src_url).await, connect(&dst_url).await);
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
        let (d, rec) = drillbook_compare(&src_url, &dst_url, "").await;
        assert_eq!(
            rec.verdict,
            drillbook::record::Verdict::Passed,
            "{:?}",
            rec.reason
        );
        ours.push(d);
        let (d, rec) = drillbook_compare(&src_url, &dst_url, AS_OF).await;
        assert_eq!(
            rec.verdict,
            drillbook::record::Verdict::Passed,
            "{:?}",
            rec.reason
        );
        as_of.push(d);
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
    println!("rows/s and MB/s count both databases; ratio is against the content floor");

    drop((a, b, admin));
    cluster.stop().await.expect("stop the cluster");
}
