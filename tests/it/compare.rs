//! `compare` and `freshness` against real databases: a source, a faithful copy, and copies
//! broken the ways restores go wrong. The faithful copy must pass; each broken one must fail
//! naming the table (and, for a changed row, its key).

use crate::support::{pg, Cli};

const SCHEMA: &str = "
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id),
                     total numeric(12,2) NOT NULL, placed_at timestamptz NOT NULL, meta json, spot point);
CREATE INDEX orders_placed ON orders (placed_at);
CREATE TABLE events (kind text, at timestamptz);
CREATE TABLE tags (code text PRIMARY KEY, label text);
INSERT INTO customers SELECT g, 'c' || g || '@example.com', '2026-01-01T00:00:00Z'::timestamptz + g * interval '1 minute' FROM generate_series(1, 500) g;
INSERT INTO orders (customer_id, total, placed_at, meta, spot)
  SELECT 1 + g % 500, (g % 1000) / 10.0, '2026-02-01T00:00:00Z'::timestamptz + g * interval '10 seconds', json_build_object('n', g), point(g, g)
  FROM generate_series(1, 5000) g;
INSERT INTO events SELECT 'login', '2026-03-01T00:00:00Z'::timestamptz + g * interval '1 second' FROM generate_series(1, 300) g;
INSERT INTO events VALUES ('dup', '2026-03-02T00:00:00Z'), ('dup', '2026-03-02T00:00:00Z');
INSERT INTO tags SELECT 'tag-' || g, 'label ' || g FROM generate_series(1, 200) g;
";

/// A source database and a byte-identical copy of it, with `damage` applied to the copy.
fn pair(damage: &str) -> (String, String) {
    let pg = pg();
    let src = pg.database("cmp_src");
    pg.psql(&src, SCHEMA);
    let dst = format!("{src}_restored");
    pg.psql("postgres", &format!("CREATE DATABASE {dst} TEMPLATE {src}"));
    if !damage.is_empty() {
        pg.psql(&dst, damage);
    }
    (pg.url(&src), pg.url(&dst))
}

pub(crate) fn compare(src: &str, dst: &str, options: &str) -> (i32, serde_json::Value) {
    let yaml = format!(
        "version: 1\nname: t\ntargets:\n  production:\n    postgres: {{ url: \"{{{{ env.SRC_URL }}}}\" }}\n    protected: true\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: integrity\n        compare:\n          source: production\n          restored: \"{{{{ env.DST_URL }}}}\"\n{options}\n"
    );
    let r = Cli::new()
        .runbook(&yaml)
        .env("SRC_URL", src)
        .env("DST_URL", dst)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    let json: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|_| panic!("no record:\n{}\n{}", r.stdout, r.stderr));
    (r.code, json["steps"][0].clone())
}

const FULL: &str = "          tables: all\n          checksums: true\n          samples: 20\n          schema: true";

pub(crate) fn error(step: &serde_json::Value) -> String {
    step["error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn faithful_copy_passes_every_check() {
    let (src, dst) = pair("");
    let (code, step) = compare(&src, &dst, FULL);
    assert_eq!(code, 0, "{step:#}");
    let tables = step["outputs"]["tables"].as_array().expect("tables");
    assert_eq!(tables.len(), 4);
    for t in tables {
        assert_eq!(t["ok"], true, "{t:#}");
        assert_eq!(t["checksum"], "equal", "{t:#}");
    }
    let orders = tables
        .iter()
        .find(|t| t["table"] == "orders")
        .expect("orders");
    assert_eq!(orders["rows_source"], 5000);
    assert_eq!(orders["sampled"], 20);
    let report = step["outputs"]["report"].as_str().unwrap_or_default();
    assert!(
        report.contains("orders") && report.contains("5000") && report.contains("equal"),
        "{report}"
    );
}

#[test]
fn missing_table_fails_naming_it() {
    let (src, dst) = pair("DROP TABLE tags;");
    let (code, step) = compare(&src, &dst, FULL);
    assert_eq!(code, 1);
    assert!(
        error(&step).contains("tags: missing in restored"),
        "{}",
        error(&step)
    );
    // one line for the table, not one per column, index and constraint of it
    let tags = step["outputs"]["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == "tags")
        .expect("tags");
    assert_eq!(
        tags["findings"],
        serde_json::json!(["missing in restored"]),
        "{tags:#}"
    );
}

#[test]
fn truncated_table_fails_naming_it() {
    let (src, dst) = pair("DELETE FROM events WHERE at > '2026-03-01T00:02:00Z';");
    let (code, step) = compare(&src, &dst, "          tables: [events, customers]");
    assert_eq!(code, 1);
    let e = error(&step);
    assert!(
        e.contains("events: row count differs: 302 in source, 120 in restored"),
        "{e}"
    );
    assert!(!e.contains("customers"), "{e}");
}

#[test]
fn changed_row_fails_naming_table_and_key() {
    let (src, dst) = pair("UPDATE orders SET total = total + 1 WHERE id IN (17, 4242); UPDATE tags SET label = 'x' WHERE code = 'tag-99'; DELETE FROM customers WHERE id = 77 AND NOT EXISTS (SELECT 1 FROM orders WHERE customer_id = 77);");
    let (code, step) = compare(
        &src,
        &dst,
        "          checksums: true\n          schema: false",
    );
    assert_eq!(code, 1);
    let e = error(&step);
    assert!(
        e.contains(
            "orders: content checksum differs; differing keys: 17 (changed), 4242 (changed)"
        ),
        "{e}"
    );
    assert!(
        e.contains("tags: content checksum differs; differing keys: tag-99 (changed)"),
        "{e}"
    );
    let tables = step["outputs"]["tables"].as_array().expect("tables");
    let orders = tables
        .iter()
        .find(|t| t["table"] == "orders")
        .expect("orders");
    assert_eq!(orders["differing_keys"][0]["key"], "17");
}

/// The row hash combines per-column hashes, so it must still see values exchanged between
/// two rows (which a plain XOR of every column's hash would not) and a value turned NULL.
/// Without statistics every table takes the grouped pass; analyzed, the four small tables
/// are digested together in one query a side and only the differing ones searched.
#[test]
fn values_exchanged_between_rows_and_a_value_turned_null_are_caught() {
    for analyzed in [false, true] {
        let (src, dst) = pair("UPDATE orders o SET total = x.total, placed_at = x.placed_at FROM orders x WHERE (o.id, x.id) IN ((5, 6), (6, 5)); UPDATE tags SET label = NULL WHERE code = 'tag-5';");
        if analyzed {
            let pg = pg();
            for url in [&src, &dst] {
                let db = url.rsplit('/').next().and_then(|d| d.split('?').next());
                pg.psql(db.expect("database"), "ANALYZE");
            }
        }
        let (code, step) = compare(
            &src,
            &dst,
            "          checksums: true\n          schema: false",
        );
        assert_eq!(code, 1, "{step:#}");
        let e = error(&step);
        assert!(
            e.contains(
                "orders: content checksum differs; differing keys: 5 (changed), 6 (changed)"
            ),
            "analyzed: {analyzed}: {e}"
        );
        assert!(
            e.contains("tags: content checksum differs; differing keys: tag-5 (changed)"),
            "analyzed: {analyzed}: {e}"
        );
        assert!(!e.contains("customers"), "analyzed: {analyzed}: {e}");
        let tables = step["outputs"]["tables"].as_array().expect("tables");
        let customers = tables
            .iter()
            .find(|t| t["table"] == "customers")
            .expect("customers");
        assert_eq!(customers["rows_source"], 500, "{customers:#}");
        assert_eq!(customers["checksum"], "equal", "{customers:#}");
    }
}

/// Dates and booleans are hashed through the numbers they are stored as, arrays and enums
/// through their polymorphic hash functions: a date moved to `infinity`, `-infinity` or
/// NULL, a boolean flipped or turned NULL, an array's elements swapped or the array turned
/// NULL, and an enum changed are each found by the single grouped pass (a table without
/// statistics, as a restored copy often is) and by the plain digest a small analyzed table
/// gets first.
#[test]
fn changed_dates_booleans_arrays_and_enums_are_caught_in_either_pass() {
    for analyzed in [false, true] {
        let pg = pg();
        let src = pg.database("cmp_days");
        pg.psql(
            &src,
            "CREATE TYPE mood AS ENUM ('calm', 'busy');
             CREATE TABLE days (id int PRIMARY KEY, d date, ok boolean, tags text[], m mood);
             INSERT INTO days SELECT g, date '2026-01-01' + g, g % 2 = 0, ARRAY['a', 'b' || g], 'calm'
               FROM generate_series(1, 50) g;
             INSERT INTO days VALUES (51, 'infinity', NULL, NULL, NULL), (52, '-infinity', true, '{}', 'busy'),
               (53, NULL, false, ARRAY[NULL, 'x'], 'calm');",
        );
        let dst = format!("{src}_restored");
        pg.psql("postgres", &format!("CREATE DATABASE {dst} TEMPLATE {src}"));
        pg.psql(
            &dst,
            "UPDATE days SET d = 'infinity' WHERE id = 3; UPDATE days SET d = NULL WHERE id = 51;
             UPDATE days SET d = '-infinity' WHERE id = 53; UPDATE days SET ok = NOT ok WHERE id = 10;
             UPDATE days SET ok = NULL WHERE id = 52; UPDATE days SET tags = ARRAY['b20', 'a'] WHERE id = 20;
             UPDATE days SET tags = NULL WHERE id = 30; UPDATE days SET m = 'busy' WHERE id = 40;",
        );
        if analyzed {
            pg.psql(&src, "ANALYZE days");
            pg.psql(&dst, "ANALYZE days");
        }
        let (code, step) = compare(
            &pg.url(&src),
            &pg.url(&dst),
            "          checksums: true\n          schema: false",
        );
        assert_eq!(code, 1, "{step:#}");
        assert!(
            error(&step).contains("days: content checksum differs; differing keys: 3 (changed), 10 (changed), 20 (changed), 30 (changed), 40 (changed), 51 (changed), 52 (changed), 53 (changed)"),
            "analyzed: {analyzed}: {}",
            error(&step)
        );
    }
}

#[test]
fn changed_json_and_point_values_are_caught() {
    let (src, dst) = pair("UPDATE orders SET meta = '{\"n\": -1}' WHERE id = 3; UPDATE orders SET spot = point(0, 0) WHERE id = 9;");
    let (code, step) = compare(
        &src,
        &dst,
        "          checksums: [orders]\n          schema: false",
    );
    assert_eq!(code, 1);
    assert!(
        error(&step).contains("differing keys: 3 (changed), 9 (changed)"),
        "{}",
        error(&step)
    );
}

#[test]
fn duplicate_rows_swapped_in_a_table_without_a_key_are_caught() {
    // same count, and XOR alone would cancel both duplicate pairs
    let (src, dst) = pair("DELETE FROM events WHERE kind = 'dup'; INSERT INTO events VALUES ('other', '2026-03-03T00:00:00Z'), ('other', '2026-03-03T00:00:00Z');");
    let (code, step) = compare(
        &src,
        &dst,
        "          tables: [events]\n          checksums: true",
    );
    assert_eq!(code, 1, "{step:#}");
    assert!(
        error(&step).contains("events: content checksum differs"),
        "{}",
        error(&step)
    );
}

#[test]
fn changed_column_type_fails_naming_the_table() {
    let (src, dst) = pair("ALTER TABLE customers ALTER COLUMN created_at TYPE text;");
    let (code, step) = compare(&src, &dst, FULL);
    assert_eq!(code, 1);
    let e = error(&step);
    assert!(e.contains("customers:") && e.contains("column `created_at` changed: timestamp with time zone not null in source, text not null in restored"), "{e}");
}

#[test]
fn restored_with_fewer_rows_passes_when_allowed_and_more_fails() {
    let (src, dst) =
        pair("DELETE FROM orders WHERE id > 4900; SELECT setval('orders_id_seq', 4900);");
    let rule = "          row_counts: { direction: restored_le_source }\n          checksums: [customers, tags]\n          schema: true";
    let (code, step) = compare(&src, &dst, rule);
    assert_eq!(code, 0, "{step:#}");
    let (code, step) = compare(&dst, &src, rule);
    assert_eq!(code, 1);
    assert!(
        error(&step).contains("orders: row count 5000 in restored is more than 4900 in source"),
        "{}",
        error(&step)
    );
    assert!(
        error(&step)
            .contains("sequence public.orders_id_seq is at 4900 in source, 5000 in restored"),
        "{}",
        error(&step)
    );
}

#[test]
fn unreachable_restored_database_exits_3() {
    let (src, _) = pair("");
    let port = drillbook::pg::cluster::free_port().expect("port");
    let (code, step) = compare(
        &src,
        &format!("postgresql://postgres@127.0.0.1:{port}/x?sslmode=disable"),
        FULL,
    );
    assert_eq!(code, 3);
    assert!(error(&step).contains("cannot connect"), "{}", error(&step));
}

fn freshness(dst: &str, target: &str, max_lag: &str) -> (i32, serde_json::Value) {
    let yaml = format!(
        "version: 1\nname: t\nobjectives: {{ rto: 1h, rpo: 24h }}\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: rpo\n        freshness: {{ db: \"{{{{ env.DST_URL }}}}\", table: orders, column: placed_at, target: \"{target}\"{max_lag} }}\n"
    );
    let r = Cli::new()
        .runbook(&yaml)
        .env("DST_URL", dst)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    (r.code, serde_json::from_str(&r.stdout).unwrap_or_default())
}

#[test]
fn freshness_measures_the_recovery_point() {
    // newest order: 2026-02-01 + 5000 * 10s = 2026-02-01T13:53:20Z
    let (_, dst) = pair("");
    let (code, rec) = freshness(&dst, "2026-02-01T14:00:00Z", "");
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(
        rec["steps"][0]["outputs"]["recovery_point"],
        "2026-02-01T13:53:20Z"
    );
    assert_eq!(rec["rpo"]["data_loss_window_ms"], 400_000);
    assert_eq!(rec["rpo"]["met"], true);

    let (code, rec) = freshness(&dst, "2026-02-01T14:00:00Z", ", max_lag: 5m");
    assert_eq!(code, 1);
    assert!(
        rec["steps"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("data-loss window 6m40s"),
        "{rec:#}"
    );

    // a restore that went past the requested point
    let (code, rec) = freshness(&dst, "2026-02-01T12:00:00Z", "");
    assert_eq!(code, 1);
    assert!(
        rec["steps"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("restored data is newer than the target"),
        "{rec:#}"
    );
    assert_eq!(rec["rpo"]["met"], false);

    // beyond the runbook's RPO objective
    let (code, rec) = freshness(&dst, "2026-02-03T14:00:00Z", "");
    assert_eq!(code, 1);
    assert!(
        rec["steps"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("exceeds the RPO objective of 24h"),
        "{rec:#}"
    );
}

#[test]
fn sql_invariants_name_what_does_not_hold() {
    let (_, dst) = pair("ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey; DELETE FROM customers WHERE id = 5;");
    let yaml = "version: 1\nname: t\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: invariants\n        assert:\n          db: \"{{ env.DST_URL }}\"\n          sql:\n            every order has a customer: select o.id from orders o left join customers c on c.id = o.customer_id where c.id is null order by o.id\n            totals are never negative: select not exists (select 1 from orders where total < 0)\n            a broken query: select * from no_such_table\n";
    let r = Cli::new()
        .runbook(yaml)
        .env("DST_URL", &dst)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(1);
    let rec = r.json();
    let e = rec["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(e.starts_with("2 invariants violated"), "{e}");
    assert!(
        e.contains("every order has a customer: 10 violating rows, e.g. {\"id\":4}"),
        "{e}"
    );
    assert!(
        e.contains("a broken query: query failed: relation \"no_such_table\" does not exist"),
        "{e}"
    );
    assert!(!e.contains("totals are never negative"), "{e}");
    assert_eq!(rec["steps"][0]["outputs"]["checked"], 3);
}

/// Starts a compare of `src` vs `dst` in the background whose checksum query on `tags` will
/// wait behind a lock the test holds; returns once the query is seen waiting. The `Cli` is
/// returned so its directory lives until the test ends.
#[allow(clippy::zombie_processes)] // the child is waited for by `finish`; a panic here fails the test anyway
fn compare_blocked_on_tags(
    src: &str,
    dst: &str,
    dst_db: &str,
) -> (Cli, std::process::Child, postgres_session::Session) {
    let pg = pg();
    let session = postgres_session::Session::open(
        dst_db,
        "BEGIN; LOCK TABLE tags IN ACCESS EXCLUSIVE MODE;",
        "tags",
    );
    let yaml = "version: 1\nname: t\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: integrity\n        compare: { source: \"{{ env.SRC_URL }}\", restored: \"{{ env.DST_URL }}\", tables: [tags], checksums: true, schema: false, concurrency: 1 }\n";
    let cli = Cli::new()
        .runbook(yaml)
        .env("SRC_URL", src)
        .env("DST_URL", dst)
        .args(["run", "runbook.yaml", "p", "--format", "json"]);
    let child = cli
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // wait (by polling the server, not the clock) until the check queues behind the lock
    let waiting = format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{dst_db}' AND application_name = 'drillbook' AND wait_event_type = 'Lock'");
    for _ in 0..600 {
        if pg.psql("postgres", &waiting) == "1" {
            return (cli, child, session);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the compare never reached the locked table");
}

fn finish(child: std::process::Child) -> (i32, serde_json::Value) {
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or_default(),
    )
}

#[test]
fn table_dropped_while_being_checked_is_named() {
    let (src, dst) = pair("");
    let dst_db = dst
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .expect("db")
        .to_owned();
    let (_cli, child, mut session) = compare_blocked_on_tags(&src, &dst, &dst_db);
    session.run("DROP TABLE tags; COMMIT;");
    let (code, rec) = finish(child);
    assert_eq!(code, 1, "{rec:#}");
    let e = rec["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(e.contains("tags") && e.contains("does not exist"), "{e}");
}

#[test]
fn connection_lost_during_a_check_is_unavailable() {
    let (src, dst) = pair("");
    let dst_db = dst
        .rsplit('/')
        .next()
        .and_then(|s| s.split('?').next())
        .expect("db")
        .to_owned();
    let (_cli, child, mut session) = compare_blocked_on_tags(&src, &dst, &dst_db);
    // what a server restart looks like from the client: its backend goes away mid-query
    pg().psql("postgres", &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{dst_db}' AND application_name = 'drillbook'"));
    session.run("ROLLBACK;");
    let (code, rec) = finish(child);
    assert_eq!(code, 3, "{rec:#}");
    let e = rec["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("lost a connection during the comparison") && e.contains("tags"),
        "{e}"
    );
}

/// A psql session kept open across test steps (to hold a lock).
mod postgres_session {
    use std::io::Write;
    use std::process::{Child, Command, Stdio};

    pub struct Session(Child);

    impl Session {
        /// Opens a session on `db`, runs `first`, and returns once the session holds the
        /// lock `first` took on `table` (seen in pg_locks).
        pub fn open(db: &str, first: &str, table: &str) -> Session {
            let pg = crate::support::pg();
            let child = Command::new(pg.bin.join("psql"))
                .args([pg.url(db).as_str(), "-X", "-q", "-v", "ON_ERROR_STOP=1"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("psql");
            let mut s = Session(child);
            s.run(first);
            let held = format!("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = '{table}' AND l.mode = 'AccessExclusiveLock' AND l.granted");
            for _ in 0..600 {
                if pg.psql(db, &held) == "1" {
                    return s;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            panic!("the lock on {table} was never taken");
        }

        pub fn run(&mut self, sql: &str) {
            let stdin = self.0.stdin.as_mut().expect("stdin");
            writeln!(stdin, "{sql}").expect("write to psql");
            stdin.flush().expect("flush");
        }
    }

    impl Drop for Session {
        fn drop(&mut self) {
            drop(self.0.stdin.take());
            let _ = self.0.wait();
        }
    }
}

/// A comparison of nothing proves nothing: a source whose only table is drillbook's own
/// (never compared) fails instead of passing.
#[test]
fn a_source_with_nothing_to_compare_fails() {
    let pg = pg();
    let src = pg.database("cmp_empty");
    pg.psql(&src, "CREATE TABLE drillbook_canary (id int)");
    let (code, step) = compare(&pg.url(&src), &pg.url(&src), FULL);
    assert_eq!(code, 1, "{step:#}");
    let e = error(&step);
    assert!(
        e.contains("nothing to compare") && e.contains("drillbook_*"),
        "{e}"
    );
}
