//! The `sql` step against a real PostgreSQL cluster: binding, read-only by default,
//! expectations, outputs, and connection faults.

use crate::support::{pg, Cli};

fn runbook(db_url: &str, steps: &str) -> String {
    format!(
        "version: 1\nname: t\ntargets:\n  db:\n    postgres: {{ url: \"{{{{ env.T_DB_URL }}}}\" }}\nprocedures:\n  p:\n    title: P\n    kind: drill\n    params:\n      since: {{ type: timestamp, default: \"2026-01-01T00:00:00Z\" }}\n    steps:\n{steps}\n# {db_url}\n"
    )
}

fn run(db_url: &str, steps: &str) -> (i32, serde_json::Value, String) {
    let cli = Cli::new()
        .runbook(&runbook(db_url, steps))
        .env("T_DB_URL", db_url)
        .args(["run", "runbook.yaml", "p", "--format", "json"]);
    let r = cli.run();
    let json = serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
    (r.code, json, r.stderr)
}

/// What failed: the preflight's first failed check (a target that does not answer is found
/// before any step runs), else the first step's error.
fn failure(rec: &serde_json::Value) -> String {
    rec["preflight"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["ok"] == false))
        .map(|i| i["detail"].clone())
        .unwrap_or_else(|| rec["steps"][0]["error"].clone())
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn setup() -> String {
    setup_named().1
}

/// The database's name and URL.
fn setup_named() -> (String, String) {
    let pg = pg();
    let db = pg.database("sqlstep");
    pg.psql(
        &db,
        "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric(12,2), placed timestamptz, note text, doc jsonb, ok boolean, u uuid);
         INSERT INTO orders VALUES (1, 10.50, '2026-02-01T10:00:00Z', 'first', '{\"a\": 1}', true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
                                   (2, 1234567.89, '2026-03-01T10:00:00Z', null, null, false, null),
                                   (3, -0.01, '2025-12-01T10:00:00Z', 'old', null, null, null);",
    );
    let url = pg.url(&db);
    (db, url)
}

#[test]
fn binds_params_and_outputs_the_first_row() {
    let url = setup();
    let (code, rec, stderr) = run(
        &url,
        "      - id: recent\n        sql:\n          db: db\n          query: select count(*) as n, sum(total) as total, min(placed) as first from orders where placed >= $1 and note is distinct from $2\n          params: [\"{{ params.since }}\", \"nothing\"]\n          expect: { rows: 1, value: \"== 2\" }\n      - id: check\n        assert: steps.recent.n == 2 and steps.recent.total == 1234578.39\n",
    );
    assert_eq!(code, 0, "{stderr}\n{rec:#}");
    let out = &rec["steps"][0]["outputs"];
    assert_eq!(out["n"], 2);
    assert_eq!(out["total"], 1234578.39);
    assert_eq!(out["first"], "2026-02-01T10:00:00Z");
    assert_eq!(out["row_count"], 1);
}

#[test]
fn decodes_common_types() {
    let url = setup();
    let (code, rec, stderr) = run(&url, "      - id: one\n        sql: { db: db, query: \"select * from orders where id = $1\", params: [1] }\n");
    assert_eq!(code, 0, "{stderr}");
    let out = &rec["steps"][0]["outputs"];
    assert_eq!(out["total"], 10.5);
    assert_eq!(out["doc"]["a"], 1);
    assert_eq!(out["ok"], true);
    assert_eq!(out["u"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    let (code, rec, _) = run(&url, "      - id: neg\n        sql: { db: db, query: \"select total, total * 1000000 as big, 0.000001::numeric as tiny from orders where id = 3\" }\n");
    assert_eq!(code, 0);
    assert_eq!(rec["steps"][0]["outputs"]["total"], -0.01);
    assert_eq!(rec["steps"][0]["outputs"]["tiny"], 0.000001);
    assert_eq!(rec["steps"][0]["outputs"]["big"], -10000);
}

#[test]
fn read_only_unless_write() {
    let url = setup();
    let (code, rec, _) = run(
        &url,
        "      - id: del\n        sql: { db: db, query: delete from orders }\n",
    );
    assert_eq!(code, 1);
    let err = rec["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("read-only transaction"), "{err}");
    let (code, _, stderr) = run(&url, "      - id: del\n        sql: { db: db, query: \"delete from orders where id = $1\", params: [3], write: true }\n      - id: left\n        sql: { db: db, query: \"select count(*) from orders\", expect: { value: 2 } }\n");
    assert_eq!(code, 0, "{stderr}");
}

/// Text that ends the read-only transaction, or makes it read-write, does not let a step
/// without `write: true` change anything; nor does an invariant of `assert`.
#[test]
fn read_only_cannot_be_escaped() {
    let (db, url) = setup_named();
    let count = || pg().psql(&db, "select count(*) from orders");
    let before = count();
    for query in [
        "COMMIT; DELETE FROM orders",
        "SET TRANSACTION READ WRITE; DELETE FROM orders",
        "ROLLBACK; SET default_transaction_read_only = off; DELETE FROM orders",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    ] {
        let (code, rec, stderr) = run(
            &url,
            &format!("      - id: escape\n        sql: {{ db: db, query: \"{query}\" }}\n      - id: then\n        sql: {{ db: db, query: \"delete from orders\" }}\n"),
        );
        assert_eq!(code, 1, "{query}: {stderr}\n{rec:#}");
        assert_eq!(count(), before, "{query} changed data");
    }
    let (code, rec, _) = run(
        &url,
        "      - id: one\n        sql: { db: db, query: \"COMMIT; DELETE FROM orders\" }\n",
    );
    assert_eq!(code, 1);
    let err = rec["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("runs one statement") && err.contains("write: true"),
        "{err}"
    );
    // invariants in sequence: one ends the transaction, the next tries to write
    let (code, rec, _) = run(
        &url,
        "      - id: inv\n        assert:\n          db: db\n          sql:\n            a: \"COMMIT\"\n            b: \"SET default_transaction_read_only = off\"\n            c: \"DELETE FROM orders\"\n",
    );
    assert_eq!(code, 1);
    assert_eq!(count(), before, "an invariant changed data");
    let err = rec["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("invariant `a` ended the read-only transaction"),
        "{err}"
    );
}

#[test]
fn failed_expectations_say_what_was_found() {
    let url = setup();
    let (code, rec, _) = run(&url, "      - id: c\n        sql: { db: db, query: \"select id from orders order by id\", expect: { rows: \">= 5\" } }\n");
    assert_eq!(code, 1);
    assert_eq!(rec["steps"][0]["error"], "expected rows >= 5, got 3");
    let (code, rec, _) = run(&url, "      - id: c\n        sql: { db: db, query: \"select id, note from orders where id < 3\", expect: { equals: [[1, first], [2, null]] } }\n");
    assert_eq!(code, 0, "{rec:#}");
    let (code, rec, _) = run(&url, "      - id: c\n        sql: { db: db, query: \"select id from orders\", expect: { equals: [[1], [2]] } }\n");
    assert_eq!(code, 1);
    assert!(
        rec["steps"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unexpected [[\"3\"]]"),
        "{rec:#}"
    );
}

#[test]
fn connection_faults_are_clear_and_exit_3() {
    let port = drillbook::pg::cluster::free_port().expect("port");
    let url = format!(
        "postgresql://postgres:sekrit-pw@127.0.0.1:{port}/x?sslmode=disable&connect_timeout=2"
    );
    let (code, rec, _) = run(
        &url,
        "      - id: c\n        sql: { db: db, query: select 1 }\n",
    );
    assert_eq!(code, 3);
    let err = failure(&rec);
    assert!(
        err.contains("cannot connect to postgresql://postgres:***@127.0.0.1")
            && err.contains("refused"),
        "{err}"
    );
    assert!(!rec.to_string().contains("sekrit-pw"));
    // found by the preflight, before any step ran
    assert_eq!(rec["preflight"][0]["check"], "connect", "{rec:#}");
    assert_eq!(rec["steps"][0]["status"], "not_run", "{rec:#}");
    // a connection string given to the step itself is tried when the step runs
    let (code, rec, _) = run(
        &url,
        "      - id: c\n        sql: { db: \"{{ env.T_DB_URL }}\", query: select 1 }\n",
    );
    assert_eq!(code, 3);
    let err = rec["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("refused"), "{err}");

    // TLS required, but the server does not offer it
    let url = pg()
        .url("postgres")
        .replace("sslmode=disable", "sslmode=require");
    let (code, rec, _) = run(
        &url,
        "      - id: c\n        sql: { db: db, query: select 1 }\n",
    );
    assert_eq!(code, 3);
    let err = failure(&rec);
    assert!(
        err.to_lowercase().contains("tls") || err.to_lowercase().contains("ssl"),
        "{err}"
    );

    // wrong password: the server's reason, and the password never shown
    let url = format!(
        "postgresql://scram_user:wrong-password@127.0.0.1:{}/postgres?sslmode=disable",
        pg().port
    );
    let (code, rec, _) = run(
        &url,
        "      - id: c\n        sql: { db: db, query: select 1 }\n",
    );
    assert_eq!(code, 3);
    let err = failure(&rec);
    assert!(
        err.contains("password authentication failed for user \"scram_user\""),
        "{err}"
    );
    assert!(!rec.to_string().contains("wrong-password"), "{rec}");
    let url = format!(
        "postgresql://scram_user:right-password@127.0.0.1:{}/postgres?sslmode=disable",
        pg().port
    );
    let (code, rec, _) = run(
        &url,
        "      - id: c\n        sql: { db: db, query: select current_user as who }\n",
    );
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["steps"][0]["outputs"]["who"], "scram_user");

    // no such database
    let url = pg().url("no_such_db");
    let (code, rec, _) = run(
        &url,
        "      - id: c\n        sql: { db: db, query: select 1 }\n",
    );
    assert_eq!(code, 3);
    assert!(failure(&rec).contains("does not exist"), "{rec:#}");
}

#[test]
fn sql_text_is_never_a_template() {
    let r = Cli::new()
        .runbook("version: 1\nname: t\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: a\n        sql: { db: \"postgres://x@h/db\", query: \"select * from t where id = {{ run.id }}\" }\n")
        .args(["validate", "runbook.yaml"])
        .run();
    r.code(2);
    assert!(
        r.stderr
            .contains("templates are not expanded in `sql.query`")
            && r.stderr.contains("`$1` in the query"),
        "{}",
        r.stderr
    );
}

/// A statement that returns no rows reports the rows it changed (`rows_affected`), and an
/// `expect` failure says the runbook's `message` before what was found.
#[test]
fn writes_report_the_rows_affected_and_expectations_their_message() {
    let url = setup();
    let (code, rec, stderr) = run(
        &url,
        "      - id: load\n        sql: { db: db, query: \"insert into orders (id) select g from generate_series(100, 200099) g\", write: true }\n      - id: gone\n        sql: { db: db, query: \"delete from orders where id >= 100\", write: true }\n      - id: none\n        sql:\n          db: db\n          query: select count(*) from orders where id >= 100\n          expect: { value: 1, message: \"the load left {{ params.since }} behind\" }\n",
    );
    assert_eq!(code, 1, "{stderr}\n{rec:#}");
    assert_eq!(rec["steps"][0]["outputs"]["rows_affected"], 200_000);
    assert_eq!(rec["steps"][0]["outputs"]["row_count"], 0);
    assert_eq!(rec["steps"][1]["outputs"]["rows_affected"], 200_000);
    let error = rec["steps"][2]["error"].as_str().expect("error");
    assert!(
        error.starts_with("the load left 2026-01-01T00:00:00Z behind (expected value == 1, got 0)"),
        "{error}"
    );
}
