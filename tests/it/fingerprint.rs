//! `fingerprint` end to end: production under concurrent pgbench writes is fingerprinted at
//! an exact LSN, the WAL is archived past it, a point-in-time restore to that LSN matches
//! the fingerprint exactly, and one byte changed in one restored row fails naming the
//! table. A server without `wal_level = logical` is refused before any work, saying what to
//! change.

use std::process::{Child, Command};

use crate::local::base_backup;
use crate::support::{psql_as, Cli, TempDir};

const RUNBOOK: &str = r#"version: 1
name: exact
targets:
  production:
    postgres: { url: "{{ env.DATABASE_URL }}" }
objectives: { rto: 1h, rpo: 24h }
procedures:
  exact:
    title: Restore to a fingerprint's LSN and prove equality
    kind: drill
    params:
      tamper: { type: bool, default: false }
    steps:
      - id: fp
        fingerprint: { db: production, tables: all }
      - id: switch
        sql:
          db: production
          write: true
          query: select pg_walfile_name(pg_switch_wal()) as segment
      - id: archived
        wait:
          poll:
            sql:
              db: production
              query: select coalesce(last_archived_wal, '') as last from pg_stat_archiver
          until: result.last >= steps.switch.segment
          interval: 100ms
          deadline: 2m
      - id: restore
        local.restore:
          base_backup: "{{ env.BASE }}"
          wal_archive: "{{ env.ARCHIVE }}"
          target: "{{ steps.fp.lsn }}"
          database: library
      - id: tamper
        when: params.tamper
        sql:
          db: "{{ steps.restore.connection_uri }}"
          write: true
          query: update pgbench_accounts set filler = overlay(filler placing 'x' from 1 for 1) where aid = 7
      - id: exact
        compare:
          restored: "{{ steps.restore.connection_uri }}"
          fingerprint: fp
"#;

/// pgbench writing until killed (the child is this test's own).
pub(crate) struct Bench(pub(crate) Child);

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_fingerprint_under_writes_matches_a_restore_to_its_lsn_exactly() {
    use drillbook::pg::cluster::find_binaries;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = TempDir::new();
    let archive = dir.join("archive");
    let bin = find_binaries().expect("binaries");
    let pgbench = bin.dir.join("pgbench");
    assert!(pgbench.exists(), "pgbench missing at {}", pgbench.display());
    let mut cluster = crate::support::archiving_cluster(&rt, &bin, &archive, &dir.join("cluster"));
    let port = cluster.port;
    let pg = |sql: &str| psql_as(&bin.dir, port, "admin", "library", sql);
    psql_as(
        &bin.dir,
        port,
        "admin",
        "postgres",
        "CREATE DATABASE library",
    );
    let url = cluster.url("library");
    let cli = || {
        Cli::new()
            .runbook(RUNBOOK)
            .env("DATABASE_URL", &url)
            .env("BASE", &dir.join("base").display().to_string())
            .env("ARCHIVE", &archive.display().to_string())
    };

    // wal_level = replica (the default): refused before any work, saying what to change
    let r = cli()
        .args(["run", "runbook.yaml", "exact", "--format", "json"])
        .run();
    let rec: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|_| panic!("no record:\n{}\n{}", r.stdout, r.stderr));
    assert_eq!(r.code, 1, "{rec:#}");
    let fp = &rec["steps"][0];
    assert_eq!(fp["status"], "failed", "{fp:#}");
    let error = fp["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("wal_level = replica")
            && error.contains("ALTER SYSTEM SET wal_level = logical")
            && error.contains("REPLICATION"),
        "{error}"
    );
    assert_eq!(rec["steps"][1]["status"], "not_run", "{rec:#}");
    assert_eq!(pg("SELECT count(*) FROM pg_replication_slots"), "0");

    // what the message says, done: wal_level = logical and a restart
    pg("ALTER SYSTEM SET wal_level = logical");
    rt.block_on(cluster.stop()).expect("stop");
    rt.block_on(cluster.start()).expect("start");
    // the restarted server may listen elsewhere
    let port = cluster.port;
    let pg = |sql: &str| psql_as(&bin.dir, port, "admin", "library", sql);
    let url = cluster.url("library");
    let cli = || {
        Cli::new()
            .runbook(RUNBOOK)
            .env("DATABASE_URL", &url)
            .env("BASE", &dir.join("base").display().to_string())
            .env("ARCHIVE", &archive.display().to_string())
    };
    pg("CREATE TABLE notes (id int PRIMARY KEY, body json, tags text[])");
    pg("INSERT INTO notes SELECT g, json_build_object('n', g), ARRAY['a', g::text] FROM generate_series(1, 500) g");
    let init = Command::new(&pgbench)
        .args([
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "admin",
            "library",
        ])
        .output()
        .expect("pgbench -i");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    base_backup(&cluster, &dir.join("base"));

    // concurrent writes for the whole drill
    let _bench = Bench(
        Command::new(&pgbench)
            .args([
                "-n",
                "-c",
                "2",
                "-T",
                "600",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "admin",
                "library",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pgbench"),
    );
    while pg("SELECT count(*) > 0 FROM pgbench_history") != "t" {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let drill = |tamper: bool| {
        let r = cli()
            .args([
                "run",
                "runbook.yaml",
                "exact",
                "--param",
                &format!("tamper={tamper}"),
                "--format",
                "json",
            ])
            .run();
        let rec: serde_json::Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|_| panic!("no record:\n{}\n{}", r.stdout, r.stderr));
        (r.code, rec)
    };
    let (code, rec) = drill(false);
    assert_eq!(code, 0, "{rec:#}");
    let fp = &rec["steps"][0]["outputs"];
    let history = fp["tables"]["public.pgbench_history"]["rows"]
        .as_i64()
        .expect("history rows");
    assert!(history > 0, "{fp:#}");
    let exact = &rec["steps"][5];
    assert_eq!(exact["status"], "passed", "{exact:#}");
    assert_eq!(exact["outputs"]["tables_compared"], 5, "{exact:#}");
    // production kept moving past the fingerprint: the equality above is not a quiet one
    let now: i64 = pg("SELECT count(*) FROM pgbench_history")
        .parse()
        .expect("count");
    assert!(
        now > history,
        "no writes after the fingerprint ({now} vs {history})"
    );
    assert_eq!(pg("SELECT count(*) FROM pg_replication_slots"), "0");

    // one byte of one restored row
    let (code, rec) = drill(true);
    assert_eq!(code, 1, "{rec:#}");
    let exact = &rec["steps"][5];
    assert_eq!(exact["status"], "failed", "{exact:#}");
    let error = exact["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("1 table differs")
            && error.contains("table pgbench_accounts differs (rows 100000 vs 100000)"),
        "{error}"
    );
    assert_eq!(pg("SELECT count(*) FROM pg_replication_slots"), "0");
}
