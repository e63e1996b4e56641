//! TLS: libpq's `sslmode` semantics against a real server with a test CA. The server name is
//! sent (SNI) and, for `verify-full`, checked.

use crate::support::{tls_pg, Cli};

fn connect(url: &str) -> (i32, serde_json::Value) {
    let yaml = "version: 1\nname: t\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: c\n        sql: { db: \"{{ env.T_URL }}\", query: \"select ssl from pg_stat_ssl where pid = pg_backend_pid()\" }\n";
    let r = Cli::new()
        .runbook(yaml)
        .env("T_URL", url)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    (r.code, serde_json::from_str(&r.stdout).unwrap_or_default())
}

#[test]
fn sslmodes_behave_like_libpq() {
    let (port, ca) = tls_pg();
    let ca = ca.display();
    let ok = |url: String| {
        let (code, rec) = connect(&url);
        assert_eq!(code, 0, "{url}: {rec:#}");
        assert_eq!(
            rec["steps"][0]["outputs"]["ssl"], true,
            "{url}: not encrypted"
        );
    };
    let refused = |url: String, why: &str| {
        let (code, rec) = connect(&url);
        assert_eq!(code, 3, "{url} should be refused: {rec:#}");
        let err = rec["steps"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(err.contains(why), "{url}: expected `{why}` in: {err}");
    };
    ok(format!("postgresql://postgres@localhost:{port}/postgres"));
    ok(format!(
        "postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=require"
    ));
    ok(format!(
        "postgresql://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
    ));
    ok(format!("host=localhost port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={ca}"));
    // the certificate names localhost, not 127.0.0.1: the chain is fine, the name is not
    ok(format!(
        "postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=verify-ca&sslrootcert={ca}"
    ));
    refused(
        format!(
            "postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
        ),
        "not valid for",
    );
    // the test CA is not among the system roots
    refused(
        format!("postgresql://postgres@localhost:{port}/postgres?sslmode=verify-full"),
        "unknown",
    );
}

/// A fingerprint's replication connection (`replication=database`, added to the startup
/// message under tokio-postgres) goes through TLS too: without the parameter inside the
/// encrypted stream the server would refuse `CREATE_REPLICATION_SLOT` as SQL.
#[test]
fn a_fingerprint_connects_for_replication_over_tls() {
    let (port, ca) = tls_pg();
    let yaml = "version: 1\nname: t\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: t\n        sql: { db: \"{{ env.T_URL }}\", write: true, query: \"create table if not exists fp_tls (id int primary key); insert into fp_tls values (1) on conflict do nothing\" }\n      - id: fp\n        fingerprint: { db: \"{{ env.T_URL }}\", tables: [fp_tls] }\n";
    let url = format!(
        "postgresql://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.display()
    );
    let r = Cli::new()
        .runbook(yaml)
        .env("T_URL", &url)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    let rec: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|_| panic!("no record:\n{}\n{}", r.stdout, r.stderr));
    assert_eq!(r.code, 0, "{rec:#}");
    let out = &rec["steps"][1]["outputs"];
    assert_eq!(out["tables"]["public.fp_tls"]["rows"], 1, "{out:#}");
    assert!(
        out["lsn"].as_str().is_some_and(|l| l.contains('/')),
        "{out:#}"
    );
}
