//! Canaries end to end: written into a cluster drillbook did not create by the daily
//! `check`, found again in point-in-time restores of it. A target between two canaries
//! recovers exactly the earlier one (the record's recovery point); a restore that stops
//! short loses it and fails naming it; a restore past the target fails too. `compare` leaves
//! the canary table out.

use crate::local::{archive_all, base_backup};
use crate::support::{psql_as, Cli, TempDir};

const RUNBOOK: &str = r#"version: 1
name: canaries
targets:
  production:
    postgres: { url: "{{ env.DATABASE_URL }}" }
objectives: { rto: 1h, rpo: 24h }
checks:
  - id: canary
    canary.write: { db: production }
procedures:
  drill:
    title: Restore and find the canaries
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
          database: library
      - id: canaries
        canary.verify:
          db: "{{ steps.restore.connection_uri }}"
          target: "{{ params.target_time }}"
          source: production
          max_lag: 1h
      - id: integrity
        compare:
          source: production
          restored: "{{ steps.restore.connection_uri }}"
          schema: true
"#;

#[test]
fn canaries_prove_the_recovery_point_and_catch_a_short_restore() {
    use drillbook::pg::cluster::find_binaries;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = TempDir::new();
    let archive = dir.join("archive");
    let bin = find_binaries().expect("binaries");
    let cluster = crate::support::archiving_cluster(&rt, &bin, &archive, &dir.join("cluster"));
    let pg = |sql: &str| psql_as(&bin.dir, cluster.port, "admin", "library", sql);
    psql_as(
        &bin.dir,
        cluster.port,
        "admin",
        "postgres",
        "CREATE DATABASE library",
    );
    pg("CREATE TABLE loans (id int PRIMARY KEY); INSERT INTO loans SELECT generate_series(1, 100)");
    let backup = dir.join("base");
    base_backup(&cluster, &backup);
    let url = cluster.url("library");
    let cli = || {
        Cli::new()
            .runbook(RUNBOOK)
            .env("DATABASE_URL", &url)
            .env("BASE", &backup.display().to_string())
            .env("ARCHIVE", &archive.display().to_string())
    };
    // the daily check writes a canary each time; times between them are recorded
    let write = || {
        let r = cli().args(["check", "runbook.yaml"]).run();
        r.code(0);
        pg("SELECT max(id) FROM drillbook_canary")
    };
    let first = write();
    let between_1_2 = pg("SELECT clock_timestamp()");
    let second = write();
    let between_2_3 = pg("SELECT clock_timestamp()");
    let third = write();
    assert_eq!(
        (first.as_str(), second.as_str(), third.as_str()),
        ("1", "2", "3")
    );
    let second_at = pg("SELECT written_at FROM drillbook_canary WHERE id = 2");
    archive_all(&cluster);

    let drill = |restore_to: &str, target: &str| {
        let r = cli()
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
        (r.code, rec)
    };
    let canaries = |rec: &serde_json::Value| rec["steps"][1].clone();

    // a restore to a time between the second and third canary recovers the second exactly
    let (code, rec) = drill(&between_2_3, &between_2_3);
    assert_eq!(code, 0, "{rec:#}");
    let out = &canaries(&rec)["outputs"];
    assert_eq!(out["canary_id"], 2, "{out:#}");
    assert_eq!(out["expected_canary_id"], 2, "{out:#}");
    assert_eq!(out["after_target"], 0, "{out:#}");
    // drillbook's own table differs by design (three canaries against two): not compared
    let integrity = &rec["steps"][2];
    assert_eq!(integrity["status"], "passed", "{integrity:#}");
    assert_eq!(integrity["outputs"]["tables_compared"], 1, "{integrity:#}");
    let point = chrono::DateTime::parse_from_rfc3339(
        rec["rpo"]["recovery_point"]
            .as_str()
            .expect("rpo recovery point"),
    )
    .expect("rfc3339");
    let second_at =
        chrono::DateTime::parse_from_str(&format!("{second_at}00"), "%Y-%m-%d %H:%M:%S%.f%z")
            .expect("psql timestamp");
    assert_eq!(point, second_at);

    // a restore that stopped short (to between the first and second) lost the second
    let (code, rec) = drill(&between_1_2, &between_2_3);
    assert_eq!(code, 1, "{rec:#}");
    let step = canaries(&rec);
    assert_eq!(step["status"], "failed", "{step:#}");
    let error = step["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("(id 2 at")
            && error.contains("the newest there is id 1")
            && error.contains("stopped short"),
        "{error}"
    );

    // a restore past the target holds a canary written after it
    let (code, rec) = drill("latest", &between_2_3);
    assert_eq!(code, 1, "{rec:#}");
    let error = canaries(&rec)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("went past the target") && error.contains("(id 3)"),
        "{error}"
    );
}
