//! `compare` with `as_of` against a production that kept changing after the target: the
//! "restored" copy is the source taken at the target (`CREATE DATABASE … TEMPLATE`), then
//! production moves on (UPDATEs, DELETEs, INSERTs, a new table). A correct restore passes;
//! faults planted in the copy fail naming the table and the key.

use crate::compare::{compare, error};
use crate::support::pg;

const TARGET: &str = "2026-06-01T00:00:00Z";

/// Everything last changed before the target.
const SCHEMA: &str = "
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL, total numeric(12,2) NOT NULL,
                     meta json, updated_at timestamptz NOT NULL);
CREATE TABLE audit_events (id bigint PRIMARY KEY, what text NOT NULL, at timestamptz NOT NULL);
CREATE TABLE page_views (path text, updated_at timestamptz NOT NULL);
CREATE TABLE settings (key text PRIMARY KEY, value text);
INSERT INTO customers SELECT g, 'c' || g || '@example.com', '2026-01-01T00:00:00Z'::timestamptz + g * interval '1 minute' FROM generate_series(1, 500) g;
INSERT INTO orders (customer_id, total, meta, updated_at)
  SELECT 1 + g % 500, (g % 1000) / 10.0, json_build_object('n', g), '2026-02-01T00:00:00Z'::timestamptz + g * interval '10 seconds'
  FROM generate_series(1, 5000) g;
INSERT INTO audit_events SELECT g, 'login ' || g, '2026-03-01T00:00:00Z'::timestamptz + g * interval '1 second' FROM generate_series(1, 300) g;
INSERT INTO page_views SELECT '/p/' || (g % 7), '2026-04-01T00:00:00Z'::timestamptz + g * interval '1 second' FROM generate_series(1, 200) g;
INSERT INTO settings VALUES ('mode', 'live'), ('region', 'eu');
";

/// What production did after the target: ordinary writes, all stamped after it.
const AFTER: &str = "
UPDATE orders SET total = total + 1, updated_at = '2026-06-02T00:00:00Z' WHERE id % 10 = 0;
UPDATE customers SET email = 'new' || id || '@example.com', updated_at = '2026-06-03T00:00:00Z' WHERE id <= 20;
-- stamped with now() by a transaction that began 2s before the target and committed after it
UPDATE customers SET email = 'in flight', updated_at = '2026-05-31T23:59:58Z' WHERE id = 400;
DELETE FROM orders WHERE id BETWEEN 101 AND 120 AND id % 10 <> 0;
INSERT INTO orders (customer_id, total, updated_at) SELECT 1, 5, '2026-06-04T00:00:00Z' FROM generate_series(1, 50);
DELETE FROM audit_events WHERE id <= 40;
INSERT INTO audit_events SELECT g, 'logout ' || g, '2026-06-05T00:00:00Z' FROM generate_series(301, 330) g;
INSERT INTO page_views SELECT '/new', '2026-06-06T00:00:00Z' FROM generate_series(1, 10);
CREATE TABLE coupons (id serial PRIMARY KEY, code text, updated_at timestamptz NOT NULL DEFAULT '2026-06-07T00:00:00Z');
INSERT INTO coupons (code) VALUES ('a'), ('b');
";

const AS_OF: &str = "          tables: all\n          checksums: true\n          schema: true\n          as_of:\n            target: \"2026-06-01T00:00:00Z\"\n            changed: { \"*\": updated_at }\n            append_only: [audit_events]";

/// A source and its copy at the target; `fault` is planted in the copy, then production
/// moves on.
fn restored_then_production_moves_on(fault: &str) -> (String, String) {
    let pg = pg();
    let src = pg.database("asof_src");
    pg.psql(&src, SCHEMA);
    let dst = format!("{src}_restored");
    pg.psql("postgres", &format!("CREATE DATABASE {dst} TEMPLATE {src}"));
    if !fault.is_empty() {
        pg.psql(&dst, fault);
    }
    pg.psql(&src, AFTER);
    (pg.url(&src), pg.url(&dst))
}

fn table<'a>(step: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    step["outputs"]["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no {name} in {step:#}"))
}

#[test]
fn a_correct_restore_passes_against_a_production_that_moved_on() {
    let (src, dst) = restored_then_production_moves_on("");
    // without as_of, production moving on fails the drill
    let (code, step) = compare(
        &src,
        &dst,
        "          checksums: true\n          schema: true",
    );
    assert_eq!(code, 1, "{step:#}");

    let (code, step) = compare(&src, &dst, AS_OF);
    assert_eq!(code, 0, "{step:#}");
    assert_eq!(step["outputs"]["as_of_target"], TARGET);
    let orders = table(&step, "orders");
    // 500 updated and 50 inserted after the target; 18 deleted after it
    assert_eq!(orders["skipped_after_target"], 550, "{orders:#}");
    assert_eq!(orders["deleted_after_target"], 18, "{orders:#}");
    assert_eq!(orders["rows_source"], 5000 - 18 - 500, "{orders:#}");
    assert_eq!(orders["checksum"], "different", "{orders:#}");
    // 20 changed after the target, 1 in flight at it
    assert_eq!(table(&step, "customers")["skipped_after_target"], 21);
    let audit = table(&step, "audit_events");
    assert_eq!(audit["skipped_after_target"], 30, "{audit:#}");
    assert_eq!(audit["deleted_after_target"], 40, "{audit:#}");
    assert_eq!(table(&step, "page_views")["skipped_after_target"], 10);
    assert_eq!(table(&step, "settings")["checksum"], "equal");
    let notes = step["outputs"]["notes"].to_string();
    assert!(
        notes.contains("coupons: only in source")
            && notes.contains("created in production after the target?"),
        "{notes}"
    );
    assert!(
        notes.contains("orders: 18 rows in restored are no longer in source"),
        "{notes}"
    );
    assert!(
        notes.contains("sequence public.coupons_id_seq missing in restored"),
        "{notes}"
    );

    // without the in-flight window the row stamped before the target but committed after it
    // fails, with the hint
    let (code, step) = compare(&src, &dst, &format!("{AS_OF}\n            in_flight: 0s"));
    assert_eq!(code, 1, "{step:#}");
    let e = error(&step);
    assert!(
        e.starts_with("1 table differs: customers: rows last changed at or before the target differ (changed in production after the target? then `updated_at` was not set by that change); differing keys: 400 (changed)"),
        "{e}"
    );
}

#[test]
fn a_row_changed_before_the_target_fails_naming_table_and_key() {
    // the copy's row 7 was last changed before the target: it must equal production's
    let (src, dst) = restored_then_production_moves_on(
        "UPDATE orders SET total = 999 WHERE id = 7; UPDATE customers SET email = 'x' WHERE id = 300;",
    );
    let (code, step) = compare(&src, &dst, AS_OF);
    assert_eq!(code, 1, "{step:#}");
    let e = error(&step);
    assert!(
        e.contains("orders: rows last changed at or before the target differ (changed in production after the target? then `updated_at` was not set by that change); differing keys: 7 (changed)"),
        "{e}"
    );
    assert!(
        e.contains("customers:") && e.contains("300 (changed)"),
        "{e}"
    );
    assert_eq!(table(&step, "audit_events")["ok"], true);
}

#[test]
fn a_missing_row_fails_naming_table_and_key() {
    let (src, dst) = restored_then_production_moves_on(
        "DELETE FROM customers WHERE id = 42; DELETE FROM orders WHERE id = 4001;",
    );
    let (code, step) = compare(&src, &dst, AS_OF);
    assert_eq!(code, 1, "{step:#}");
    let e = error(&step);
    assert!(e.contains("42 (missing in restored)"), "{e}");
    assert!(e.contains("4001 (missing in restored)"), "{e}");
    assert!(e.starts_with("2 tables differ"), "{e}");
}

#[test]
fn a_row_from_after_the_target_fails_naming_table_and_key() {
    let (src, dst) = restored_then_production_moves_on(
        "INSERT INTO orders (id, customer_id, total, updated_at) VALUES (90001, 1, 1, '2026-06-01T00:00:01Z'); UPDATE customers SET email = 'later', updated_at = '2026-06-03T00:00:00Z' WHERE id = 5;",
    );
    let (code, step) = compare(&src, &dst, AS_OF);
    assert_eq!(code, 1, "{step:#}");
    let e = error(&step);
    assert!(
        e.contains("orders: 1 rows in restored changed after the target (`updated_at` later than 2026-06-01T00:00:00Z): the restore went past the target, e.g. keys 90001"),
        "{e}"
    );
    assert!(
        e.contains("customers: 1 rows in restored changed after the target")
            && e.contains("e.g. keys 5"),
        "{e}"
    );
}

#[test]
fn an_append_only_row_that_changed_fails_and_a_table_lost_before_the_target_fails() {
    let (src, dst) = restored_then_production_moves_on(
        "UPDATE audit_events SET what = 'tampered' WHERE id = 77; DROP TABLE settings; DROP TABLE page_views;",
    );
    let (code, step) = compare(&src, &dst, AS_OF);
    assert_eq!(code, 1, "{step:#}");
    let e = error(&step);
    assert!(
        e.contains("audit_events: append-only rows differ") && e.contains("77 (changed)"),
        "{e}"
    );
    // a table with rows from before the target cannot have been created after it
    assert!(
        e.contains("page_views: missing in restored: 200 rows in source were last changed at or before the target"),
        "{e}"
    );
    // without a column the table may be production's since the target: a note
    let notes = step["outputs"]["notes"].to_string();
    assert!(notes.contains("settings: only in source"), "{notes}");
}

#[test]
fn a_bad_target_and_a_named_column_the_table_lacks_are_said() {
    let (src, dst) = restored_then_production_moves_on("");
    let (code, step) = compare(
        &src,
        &dst,
        "          as_of: { target: \"yesterday-ish\", changed: { orders: updated_at } }",
    );
    assert_eq!(code, 1, "{step:#}");
    assert!(
        error(&step).contains("as_of.target `yesterday-ish`"),
        "{}",
        error(&step)
    );
    let (code, step) = compare(
        &src,
        &dst,
        "          schema: false\n          as_of: { target: \"2026-06-01T00:00:00Z\", changed: { orders: modified_at, \"*\": updated_at }, append_only: [audit_events] }",
    );
    assert_eq!(code, 1, "{step:#}");
    assert!(
        error(&step).contains(
            "orders: as_of.changed names column `modified_at`, which this table does not have"
        ),
        "{}",
        error(&step)
    );
    // a table named under as_of that the source lacks is said, not silently skipped; it
    // is a note (production may have dropped it after the target), never a failure
    let (code, step) = compare(
        &src,
        &dst,
        "          schema: false\n          as_of: { target: \"2026-06-01T00:00:00Z\", changed: { ordres: updated_at, \"*\": updated_at }, append_only: [audit_events, audit_event] }",
    );
    assert_eq!(code, 0, "{step:#}");
    let notes = step["outputs"]["notes"].to_string();
    for (field, name) in [("changed", "ordres"), ("append_only", "audit_event")] {
        assert!(
            notes.contains(&format!(
                "as_of.{field} names table `{name}`, which the source does not have"
            )),
            "{notes}"
        );
    }
}

const PITR_RUNBOOK: &str = r#"version: 1
name: as-of
targets:
  production:
    postgres: { url: "{{ env.DATABASE_URL }}" }
procedures:
  drill:
    title: Restore to a past time and compare as of it
    kind: drill
    params:
      restore_to: { type: string }
      target_time: { type: string }
    steps:
      - id: restore
        local.restore:
          base_backup: "{{ env.BASE }}"
          wal_archive: "{{ env.ARCHIVE }}"
          target: "{{ params.restore_to }}"
          database: shop
      - id: integrity
        compare:
          source: production
          restored: "{{ steps.restore.connection_uri }}"
          checksums: true
          as_of:
            target: "{{ params.target_time }}"
            changed: { "*": updated_at }
            append_only: [audit_events]
            in_flight: 0s
"#;

/// A real point-in-time restore of a cluster whose production went on after the target:
/// the restore to the target passes, a restore past it fails naming the keys.
#[test]
fn a_point_in_time_restore_passes_and_one_past_the_target_fails() {
    use crate::local::{archive_all, base_backup};
    use crate::support::{psql_as, Cli, TempDir};
    use drillbook::pg::cluster::find_binaries;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = TempDir::new();
    let archive = dir.join("archive");
    let bin = find_binaries().expect("binaries");
    let cluster = crate::support::archiving_cluster(&rt, &bin, &archive, &dir.join("cluster"));
    let pg = |sql: &str| psql_as(&bin.dir, cluster.port, "admin", "shop", sql);
    psql_as(
        &bin.dir,
        cluster.port,
        "admin",
        "postgres",
        "CREATE DATABASE shop",
    );
    // every insert and update sets updated_at, through a trigger
    pg("CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
        CREATE TABLE orders (id bigserial PRIMARY KEY, total numeric NOT NULL, updated_at timestamptz);
        CREATE TRIGGER orders_touch BEFORE INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
        CREATE TABLE audit_events (id bigserial PRIMARY KEY, what text NOT NULL);
        INSERT INTO orders (total) SELECT g FROM generate_series(1, 2000) g;
        INSERT INTO audit_events (what) SELECT 'e' || g FROM generate_series(1, 500) g;");
    let backup = dir.join("base");
    base_backup(&cluster, &backup);
    // replayed from the archive: changes between the backup and the target
    pg("UPDATE orders SET total = total * 2 WHERE id % 7 = 0; DELETE FROM orders WHERE id BETWEEN 1900 AND 1910;
        INSERT INTO orders (total) SELECT g FROM generate_series(1, 100) g; INSERT INTO audit_events (what) VALUES ('before');");
    let target = pg("SELECT clock_timestamp()");
    // production after the target
    pg("UPDATE orders SET total = total + 1 WHERE id % 5 = 0; DELETE FROM orders WHERE id BETWEEN 10 AND 30;
        INSERT INTO orders (total) SELECT g FROM generate_series(1, 50) g;
        DELETE FROM audit_events WHERE id <= 100; INSERT INTO audit_events (what) VALUES ('after');
        CREATE TABLE coupons (id int PRIMARY KEY, code text, updated_at timestamptz DEFAULT clock_timestamp());
        INSERT INTO coupons (id, code) VALUES (1, 'x');");
    archive_all(&cluster);
    let url = cluster.url("shop");
    let drill = |restore_to: &str| {
        let r = Cli::new()
            .runbook(PITR_RUNBOOK)
            .env("DATABASE_URL", &url)
            .env("BASE", &backup.display().to_string())
            .env("ARCHIVE", &archive.display().to_string())
            .args([
                "run",
                "runbook.yaml",
                "drill",
                "--param",
                &format!("restore_to={restore_to}"),
                "--param",
                &format!("target_time={target}"),
                "--format",
                "json",
            ])
            .run();
        let rec: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|_| panic!("no record:\n{}\n{}", r.stdout, r.stderr));
        (r.code, rec["steps"][1].clone())
    };

    let (code, step) = drill(&target);
    assert_eq!(code, 0, "{step:#}");
    let orders = table(&step, "orders");
    assert_eq!(orders["ok"], true, "{orders:#}");
    // ids 10..30: 21 deleted, 4 of them (15, 20, 25, 30) updated before; 50 inserted; the
    // other multiples of 5 updated
    let updated: i64 = pg("SELECT count(*) FROM orders WHERE id % 5 = 0 AND id <= 2100")
        .parse()
        .expect("count");
    assert_eq!(orders["skipped_after_target"], updated + 50, "{orders:#}");
    assert_eq!(orders["deleted_after_target"], 21, "{orders:#}");
    let audit = table(&step, "audit_events");
    assert_eq!(audit["skipped_after_target"], 1, "{audit:#}");
    assert_eq!(audit["deleted_after_target"], 100, "{audit:#}");
    assert!(
        step["outputs"]["notes"]
            .to_string()
            .contains("coupons: only in source"),
        "{step:#}"
    );

    // a restore to the end of the archive went past the target
    let (code, step) = drill("latest");
    assert_eq!(code, 1, "{step:#}");
    let e = error(&step);
    assert!(
        e.contains("orders: ")
            && e.contains("rows in restored changed after the target")
            && e.contains("the restore went past the target, e.g. keys 5, 35, 40"),
        "{e}"
    );
}

/// The rendered runbook says what an `as_of` comparison proves.
#[test]
fn the_rendered_runbook_says_what_as_of_checks() {
    use crate::support::Cli;
    let c = Cli::new().runbook(PITR_RUNBOOK);
    let out = Cli::new()
        .args([
            "render",
            "runbook.yaml",
            "-o",
            "doc.md",
            "--as-of",
            "2026-12-01T00:00:00Z",
        ])
        .command()
        .current_dir(c.dir.path())
        .output()
        .expect("render");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = std::fs::read_to_string(c.dir.join("doc.md")).expect("doc");
    let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        doc.contains("as of `<target_time>`: every row of the target `production` last changed at or before that time is restored unchanged, none restored is newer (by `updated_at` of every table that has it); `audit_events` only gain and lose rows"),
        "{doc}"
    );
}
