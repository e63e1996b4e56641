//! The Neon provider end to end: the real binary against the local fake of Neon's API,
//! whose branches are real point-in-time restores. Every test checks that no branch is left
//! behind, whatever happened.

use crate::neon_fake::{FakeNeon, Fault, Options};
use crate::support::{root, Cli};

/// `Cli` pointed at the fake, with the key, URL and project id set.
pub(crate) fn cli(fake: &FakeNeon, yaml: &str) -> Cli {
    Cli::new()
        .runbook(yaml)
        .env("NEON_API_KEY", fake.key())
        .env("NEON_API_URL", &fake.api_url())
        .env("NEON_PROJECT_ID", fake.project_id())
}

/// An `orders` table on main with `before` rows, a recovery point, then `after` more rows.
/// Returns the recovery point (RFC 3339, from the server's clock).
fn orders(fake: &FakeNeon, before: u32, after: u32) -> String {
    fake.psql(
        "main",
        &format!(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp());
             INSERT INTO orders (status) SELECT 'paid' FROM generate_series(1, {before});"
        ),
    );
    let t = fake.psql(
        "main",
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    fake.psql(
        "main",
        &format!("INSERT INTO orders (status) SELECT 'late' FROM generate_series(1, {after});"),
    );
    t
}

/// The names of the fake's live branches.
pub(crate) fn branch_names(fake: &FakeNeon) -> Vec<String> {
    let mut names: Vec<String> = fake
        .branches()
        .iter()
        .filter_map(|b| b["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

pub(crate) fn shipped() -> String {
    std::fs::read_to_string(root().join("runbooks/neon-production.yaml")).expect("runbook")
}

fn step<'a>(rec: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    rec["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {rec:#}"))
}

fn creates(fake: &FakeNeon) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/branches"))
        .count()
}

/// A one-procedure runbook on the `production` Neon target.
pub(crate) fn runbook(kind: &str, steps: &str) -> String {
    format!(
        r#"version: 1
name: neon-test
objectives: {{ rto: 1h, rpo: 24h }}
targets:
  production:
    neon: {{ project_id: "{{{{ env.NEON_PROJECT_ID }}}}", branch: main, database: neondb, role: neondb_owner }}
    protected: true
backup_policy:
  schedule: "0 0 * * *"
  retention: {{ daily: 7, weekly: 4 }}
procedures:
  p:
    title: P
    kind: {kind}
    params:
      t: {{ type: timestamp, default: now }}
    steps:
{steps}
"#
    )
}

#[test]
fn the_shipped_pitr_drill_passes_on_real_data_and_deletes_its_branch() {
    let fake = FakeNeon::start(Options::default());
    let t = orders(&fake, 40, 25);
    let r = cli(&fake, &shipped())
        .args([
            "run",
            "runbook.yaml",
            "pitr-drill",
            "--param",
            &format!("target_time={t}"),
            "--format",
            "json",
        ])
        .run();
    r.code(0);
    let rec = r.json();
    assert_eq!(rec["verdict"], "passed");
    let branch = step(&rec, "branch");
    assert_eq!(branch["outputs"]["recovery_point"], t.as_str());
    assert!(branch["outputs"]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("br-")));
    // the branch held exactly the rows committed before the recovery point
    let integrity = step(&rec, "integrity");
    let report = serde_json::to_string(&integrity["outputs"]).expect("json");
    assert!(report.contains("40"), "{report}");
    assert!(step(&rec, "recovery-point")["status"] == "passed");
    assert_eq!(rec["rto"]["met"], true);
    assert!(rec["rpo"].is_object(), "{rec:#}");
    assert!(rec["preflight"][0]["ok"] == true, "{rec:#}");
    // the password in the branch's connection string never reaches the record
    assert!(!r.stdout.contains("fake-password"), "{}", r.stdout);
    assert_eq!(branch_names(&fake), ["main"], "a branch was left behind");
    assert!(fake.requests().iter().all(|q| q.authorized));
}

#[test]
fn a_branch_holds_exactly_the_data_as_of_its_point_in_time() {
    let fake = FakeNeon::start(Options::default());
    let t = orders(&fake, 7, 5);
    let yaml = runbook(
        "drill",
        r#"      - id: branch
        neon.create_branch: { target: production, at: "{{ params.t }}" }
      - id: count
        sql:
          db: "{{ steps.branch.connection_uri }}"
          query: SELECT count(*) AS n, count(*) FILTER (WHERE status = 'late') AS late FROM orders
          expect: { rows: 1 }
      - id: exact
        assert: steps.count.n == 7 and steps.count.late == 0
"#,
    );
    let r = cli(&fake, &yaml)
        .args([
            "run",
            "runbook.yaml",
            "p",
            "--param",
            &format!("t={t}"),
            "--format",
            "json",
        ])
        .run();
    r.code(0);
    assert_eq!(fake.psql("main", "SELECT count(*) FROM orders"), "12");
    assert_eq!(branch_names(&fake), ["main"]);
}

#[test]
fn ctrl_c_after_the_branch_exists_deletes_it() {
    let fake = FakeNeon::start(Options::default());
    let yaml = runbook(
        "drill",
        r#"      - id: branch
        neon.create_branch: { target: production }
      - id: hold
        wait: 5m
"#,
    );
    let c = cli(&fake, &yaml).args(["run", "runbook.yaml", "p"]);
    let (code, stderr) = crate::run::interrupt(&c, "hold — ", None);
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(branch_names(&fake), ["main"], "{stderr}");
    assert!(
        fake.requests()
            .iter()
            .any(|q| q.method == "DELETE" && q.path.contains("/branches/br-")),
        "the branch was not deleted through the API"
    );
}

#[test]
fn a_423_storm_and_429_with_retry_after_are_survived_without_duplicate_branches() {
    let fake = FakeNeon::start(Options::default());
    fake.inject(Fault {
        method: "POST",
        path_contains: "/branches".into(),
        status: 423,
        times: 4,
        retry_after: None,
        apply: false,
    });
    fake.inject(Fault {
        method: "GET",
        path_contains: "/projects/".into(),
        status: 429,
        times: 2,
        retry_after: Some("1".into()),
        apply: false,
    });
    fake.inject(Fault {
        method: "GET",
        path_contains: "/operations/".into(),
        status: 503,
        times: 2,
        retry_after: None,
        apply: false,
    });
    let yaml = runbook(
        "drill",
        "      - id: branch\n        neon.create_branch: { target: production }\n",
    );
    let r = cli(&fake, &yaml).args(["run", "runbook.yaml", "p"]).run();
    r.code(0);
    assert!(r.stderr.contains("→ 423; retrying"), "{}", r.stderr);
    assert!(r.stderr.contains("→ 429; retrying in 1s"), "{}", r.stderr);
    // four refused attempts, then one that created the branch
    assert_eq!(creates(&fake), 5);
    let created: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|q| q.method == "POST" && q.path.ends_with("/branches") && q.status == 201)
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(branch_names(&fake), ["main"]);
}

#[test]
fn a_create_answered_with_500_after_it_happened_is_adopted_not_repeated() {
    let fake = FakeNeon::start(Options::default());
    fake.inject(Fault {
        method: "POST",
        path_contains: "/branches".into(),
        status: 500,
        times: 1,
        retry_after: None,
        apply: true,
    });
    let yaml = runbook(
        "drill",
        "      - id: branch\n        neon.create_branch: { target: production }\n      - id: q\n        sql: { db: \"{{ steps.branch.connection_uri }}\", query: SELECT 1 AS one }\n",
    );
    let r = cli(&fake, &yaml).args(["run", "runbook.yaml", "p"]).run();
    r.code(0);
    assert_eq!(creates(&fake), 1, "the create was sent twice");
    assert_eq!(branch_names(&fake), ["main"]);
}

#[test]
fn a_500_on_create_fails_the_run_and_leaves_nothing() {
    let fake = FakeNeon::start(Options::default());
    fake.inject(Fault {
        method: "POST",
        path_contains: "/branches".into(),
        status: 500,
        times: 1,
        retry_after: None,
        apply: false,
    });
    let yaml = runbook(
        "drill",
        "      - id: branch\n        neon.create_branch: { target: production }\n",
    );
    let r = cli(&fake, &yaml)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(3);
    let err = step(&r.json(), "branch")["error"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        err.contains("HTTP 500") && err.contains("request_id"),
        "{err}"
    );
    assert_eq!(creates(&fake), 1);
    assert_eq!(branch_names(&fake), ["main"]);
}

#[test]
fn a_failed_operation_fails_the_step_naming_it_and_the_branch_is_deleted() {
    let fake = FakeNeon::start(Options::default());
    fake.fail_next_operation("create_branch");
    let yaml = runbook(
        "drill",
        "      - id: branch\n        neon.create_branch: { target: production }\n",
    );
    let r = cli(&fake, &yaml)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(1);
    let err = step(&r.json(), "branch")["error"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(err.contains("(create_branch) failed"), "{err}");
    assert_eq!(branch_names(&fake), ["main"]);
}

#[test]
fn a_point_outside_the_restore_window_is_refused_before_anything_changes() {
    let fake = FakeNeon::start(Options {
        retention_seconds: 3600,
        ..Options::default()
    });
    let r = cli(&fake, &shipped())
        .args([
            "run",
            "runbook.yaml",
            "pitr-drill",
            "--param",
            "target_time=now-2h",
            "--format",
            "json",
        ])
        .run();
    r.code(1);
    let rec = r.json();
    assert!(
        rec["reason"]
            .as_str()
            .is_some_and(|r| r.contains("outside project") && r.contains("restore window of 1h")),
        "{rec:#}"
    );
    assert!(
        fake.requests().iter().all(|q| q.method == "GET"),
        "something was changed"
    );
    let plan = cli(&fake, &shipped())
        .args([
            "plan",
            "runbook.yaml",
            "pitr-drill",
            "--param",
            "target_time=now-2h",
            "--preflight",
        ])
        .run();
    plan.code(1);
    assert!(
        plan.stdout.contains("FAIL branch: restore window"),
        "{}",
        plan.stdout
    );
    let ok = cli(&fake, &shipped())
        .args([
            "plan",
            "runbook.yaml",
            "pitr-drill",
            "--param",
            "target_time=now-10m",
            "--preflight",
        ])
        .run();
    ok.code(0);
    assert!(
        ok.stdout.contains("inside the 1h restore window"),
        "{}",
        ok.stdout
    );
}

#[test]
fn a_missing_or_wrong_api_key_is_could_not_run() {
    let fake = FakeNeon::start(Options::default());
    let yaml = runbook(
        "drill",
        "      - id: branch\n        neon.create_branch: { target: production }\n",
    );
    let r = Cli::new()
        .runbook(&yaml)
        .env("NEON_API_URL", &fake.api_url())
        .env("NEON_PROJECT_ID", fake.project_id())
        .args(["run", "runbook.yaml", "p"])
        .run();
    r.code(3);
    assert!(r.stderr.contains("NEON_API_KEY"), "{}", r.stderr);
    let r = Cli::new()
        .runbook(&yaml)
        .env("NEON_API_KEY", "wrong-key-123")
        .env("NEON_API_URL", &fake.api_url())
        .env("NEON_PROJECT_ID", fake.project_id())
        .args(["run", "runbook.yaml", "p"])
        .run();
    r.code(3);
    assert!(
        r.stdout.contains("HTTP 401") && r.stdout.contains("NEON_API_KEY was refused"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("wrong-key-123") && !r.stderr.contains("wrong-key-123"));
    assert_eq!(branch_names(&fake), ["main"]);
}

#[test]
fn pitr_restore_overwrites_production_and_keeps_its_previous_state() {
    let fake = FakeNeon::start(Options::default());
    let t = orders(&fake, 10, 3);
    let r = cli(&fake, &shipped())
        .args([
            "run",
            "runbook.yaml",
            "pitr-restore",
            "--param",
            &format!("target_time={t}"),
            "--yes",
            "--format",
            "json",
        ])
        .run();
    r.code(0);
    let rec = r.json();
    assert_eq!(step(&rec, "switch")["status"], "skipped");
    assert_eq!(step(&rec, "restore")["status"], "passed");
    // production now holds the data as of the recovery point
    assert_eq!(fake.psql("main", "SELECT count(*) FROM orders"), "10");
    let preserved = step(&rec, "restore")["outputs"]["preserved_name"]
        .as_str()
        .expect("preserved")
        .to_owned();
    assert!(preserved.starts_with("main_before_"), "{preserved}");
    assert_eq!(fake.psql(&preserved, "SELECT count(*) FROM orders"), "13");
    let names = branch_names(&fake);
    assert!(
        names.contains(&preserved) && names.iter().any(|n| n.starts_with("recovery-")),
        "{names:?}"
    );
    let approved: Vec<&str> = rec["approvals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["step"].as_str())
        .collect();
    assert_eq!(approved, ["inspect", "restore"]);
}

#[test]
fn a_destructive_neon_step_is_refused_in_a_drill_on_production() {
    let yaml = runbook(
        "drill",
        "      - id: r\n        neon.restore_branch: { target: production, at: now-1h }\n",
    );
    let r = Cli::new()
        .runbook(&yaml)
        .args(["validate", "runbook.yaml"])
        .run();
    r.code(2);
    assert!(r.stderr.contains("destructive"), "{}", r.stderr);
}

#[test]
fn snapshots_restore_real_data_and_the_checks_read_the_schedule() {
    let fake = FakeNeon::start(Options::default());
    orders(&fake, 6, 0);
    let yaml = runbook(
        "drill",
        r#"      - id: snap
        neon.create_snapshot: { target: production, name: "drill-snap" }
      - id: more
        sql: { db: production, write: true, query: "INSERT INTO orders (status) VALUES ('after-snapshot')" }
      - id: restored
        neon.restore_snapshot: { target: production, snapshot: drill-snap }
      - id: count
        sql:
          db: "{{ steps.restored.connection_uri }}"
          query: SELECT count(*) AS n FROM orders
          expect: { value: 6 }
      - id: age
        neon.snapshot_age: { target: production, max: 25h }
      - id: drop
        neon.delete_snapshot: { target: production, snapshot: "{{ steps.snap.id }}" }
"#,
    );
    let r = cli(&fake, &yaml)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(0);
    assert_eq!(branch_names(&fake), ["main"]);
    assert_eq!(fake.psql("main", "SELECT count(*) FROM orders"), "7");
    let snaps = fake.requests();
    assert!(snaps
        .iter()
        .any(|q| q.method == "DELETE" && q.path.contains("/snapshots/")));
}

#[test]
fn the_health_checks_pass_on_a_healthy_project_and_name_what_is_wrong_otherwise() {
    let steps = r#"      - id: project
        neon.project: { target: production }
      - id: window
        neon.retention: { target: production, min: 7d }
        continue_on_error: true
      - id: schedule
        neon.backup_schedule: { target: production }
        continue_on_error: true
      - id: age
        neon.snapshot_age: { target: production, max: 25h }
        continue_on_error: true
"#;
    let healthy = FakeNeon::start(Options {
        schedule: vec![
            serde_json::json!({"frequency": "daily", "hour": 0, "retention_seconds": 604800}),
            serde_json::json!({"frequency": "weekly", "day": 1, "hour": 0, "retention_seconds": 2419200}),
        ],
        ..Options::default()
    });
    healthy.add_snapshot(chrono::Utc::now() - chrono::Duration::hours(3));
    let r = cli(&healthy, &runbook("drill", steps))
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(0);
    let rec = r.json();
    assert_eq!(
        step(&rec, "project")["outputs"]["region_id"],
        "aws-us-east-2"
    );
    assert_eq!(step(&rec, "project")["outputs"]["pg_version"], 15);

    let broken = FakeNeon::start(Options {
        retention_seconds: 86_400,
        schedule: vec![
            serde_json::json!({"frequency": "daily", "hour": 3, "retention_seconds": 259200}),
        ],
        ..Options::default()
    });
    broken.add_snapshot(chrono::Utc::now() - chrono::Duration::hours(30));
    let r = cli(&broken, &runbook("drill", steps))
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(1);
    let rec = r.json();
    let err = |id: &str| step(&rec, id)["error"].as_str().unwrap_or("").to_owned();
    assert!(err("window").contains("is 24h"), "{}", err("window"));
    assert!(
        err("schedule").contains("daily snapshots are kept 3d, the policy says 7d"),
        "{}",
        err("schedule")
    );
    assert!(
        err("schedule").contains("no weekly snapshot"),
        "{}",
        err("schedule")
    );
    assert!(err("age").contains("30h"), "{}", err("age"));
}

#[test]
fn schema_diff_shows_a_migration_made_after_the_point_in_time() {
    let fake = FakeNeon::start(Options::default());
    let t = orders(&fake, 3, 0);
    fake.psql("main", "ALTER TABLE orders ADD COLUMN coupon text");
    let yaml = runbook(
        "recovery",
        r#"      - id: branch
        neon.create_branch: { target: production, at: "{{ params.t }}" }
      - id: same-now
        neon.schema_diff: { target: production, branch: main }
      - id: uri
        neon.connection_uri: { target: production, branch: "{{ steps.branch.name }}" }
      - id: connect
        sql: { db: "{{ steps.uri.connection_uri }}", query: SELECT count(*) AS n FROM orders, expect: { value: 3 } }
      - id: diff
        neon.schema_diff: { target: production, branch: "{{ steps.branch.id }}" }
"#,
    );
    let r = cli(&fake, &yaml)
        .args([
            "run",
            "runbook.yaml",
            "p",
            "--param",
            &format!("t={t}"),
            "--format",
            "json",
        ])
        .run();
    r.code(1);
    let rec = r.json();
    assert_eq!(step(&rec, "same-now")["outputs"]["identical"], true);
    assert_eq!(step(&rec, "connect")["status"], "passed");
    let diff = step(&rec, "diff");
    assert!(
        diff["error"].as_str().is_some_and(|e| e.contains("coupon")),
        "{diff:#}"
    );
    assert_eq!(branch_names(&fake), ["main"]);
}

#[test]
fn set_default_branch_moves_the_default() {
    let fake = FakeNeon::start(Options::default());
    let yaml = runbook(
        "recovery",
        r#"      - id: branch
        neon.create_branch: { target: production, name: next-main, keep: true }
      - id: default
        neon.set_default_branch: { target: production, branch: next-main }
"#,
    );
    let r = cli(&fake, &yaml)
        .args(["run", "runbook.yaml", "p", "--yes"])
        .run();
    r.code(0);
    let default: Vec<String> = fake
        .branches()
        .iter()
        .filter(|b| b["default"] == true)
        .filter_map(|b| b["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(default, ["next-main"]);
}

#[test]
fn a_503_after_the_create_happened_is_not_answered_with_a_second_branch() {
    let fake = FakeNeon::start(Options::default());
    fake.inject(Fault {
        method: "POST",
        path_contains: "/branches".into(),
        status: 503,
        times: 1,
        retry_after: None,
        apply: true,
    });
    fake.inject(Fault {
        method: "POST",
        path_contains: "/branches".into(),
        status: 503,
        times: 2,
        retry_after: None,
        apply: false,
    });
    let yaml = runbook(
        "drill",
        "      - id: branch\n        neon.create_branch: { target: production }\n      - id: second\n        neon.create_branch: { target: production }\n",
    );
    let r = cli(&fake, &yaml).args(["run", "runbook.yaml", "p"]).run();
    r.code(0);
    // the first create happened despite its 503 and was adopted; the second was refused
    // twice and then sent again
    assert_eq!(creates(&fake), 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("nothing was changed, sending it again"),
        "{}",
        r.stderr
    );
    assert_eq!(branch_names(&fake), ["main"]);
}

#[test]
fn the_branch_limit_is_reported_with_neons_code() {
    let fake = FakeNeon::start(Options {
        branches_limit: 1,
        ..Options::default()
    });
    let yaml = runbook(
        "drill",
        "      - id: branch\n        neon.create_branch: { target: production }\n",
    );
    let r = cli(&fake, &yaml)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    // a plan limit stops the drill before it proved anything: could not run
    r.code(3);
    let err = step(&r.json(), "branch")["error"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(err.contains("BRANCHES_LIMIT_EXCEEDED"), "{err}");
    assert_eq!(branch_names(&fake), ["main"]);
}

#[test]
fn the_shipped_snapshot_restore_replaces_main_when_finalized() {
    let fake = FakeNeon::start(Options::default());
    orders(&fake, 4, 0);
    fake.add_snapshot(chrono::Utc::now());
    fake.psql(
        "main",
        "INSERT INTO orders (status) VALUES ('after-snapshot')",
    );
    let r = cli(&fake, &shipped())
        .args([
            "run",
            "runbook.yaml",
            "snapshot-restore",
            "--param",
            "finalize=true",
            "--yes",
            "--format",
            "json",
        ])
        .run();
    r.code(0);
    let rec = r.json();
    assert_eq!(step(&rec, "replace")["status"], "passed");
    assert_eq!(step(&rec, "validate")["status"], "passed");
    // main (by name) now holds the snapshot's data; the replaced branch is kept
    assert_eq!(fake.psql("main", "SELECT count(*) FROM orders"), "4");
    let names = branch_names(&fake);
    assert!(
        names.iter().any(|n| n.starts_with("main (old)")),
        "{names:?}"
    );
    assert_eq!(
        names,
        ["main", "main (old)"],
        "the finalized branch took main's name"
    );
}

#[test]
fn a_snapshot_restored_without_a_compute_gets_one_to_be_validated() {
    let fake = FakeNeon::start(Options {
        snapshot_restore_endpoint: false,
        ..Options::default()
    });
    orders(&fake, 5, 0);
    fake.add_snapshot(chrono::Utc::now());
    let yaml = runbook(
        "drill",
        r#"      - id: restored
        neon.restore_snapshot: { target: production, snapshot: latest }
      - id: count
        sql:
          db: "{{ steps.restored.connection_uri }}"
          query: SELECT count(*) AS n FROM orders
          expect: { value: 5 }
"#,
    );
    let r = cli(&fake, &yaml)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(0);
    let rec = r.json();
    assert_eq!(step(&rec, "restored")["outputs"]["endpoint_created"], true);
    assert!(fake
        .requests()
        .iter()
        .any(|q| q.method == "POST" && q.path.ends_with("/endpoints") && q.status == 201));
    // the restored branch got an expiry as a safety net, then was deleted
    assert!(fake
        .requests()
        .iter()
        .any(|q| q.method == "PATCH" && q.body.pointer("/branch/expires_at").is_some()));
    assert_eq!(branch_names(&fake), ["main"]);
}

#[test]
fn a_retried_create_gets_a_new_name_and_both_attempts_are_cleaned_up() {
    let fake = FakeNeon::start(Options::default());
    fake.fail_next_operation("create_branch");
    let yaml = runbook(
        "drill",
        "      - id: branch\n        neon.create_branch: { target: production, name: drill-x }\n        retries: { attempts: 2, backoff: 1s }\n",
    );
    let r = cli(&fake, &yaml)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(0);
    assert_eq!(step(&r.json(), "branch")["outputs"]["name"], "drill-x-2");
    assert_eq!(branch_names(&fake), ["main"]);
}

#[test]
fn a_finalized_restore_is_production_and_is_never_deleted_by_the_run() {
    let fake = FakeNeon::start(Options::default());
    orders(&fake, 2, 0);
    fake.add_snapshot(chrono::Utc::now());
    let yaml = runbook(
        "recovery",
        r#"      - id: restored
        neon.restore_snapshot: { target: production, snapshot: latest }
      - id: finalize
        neon.finalize_restore: { target: production, branch: "{{ steps.restored.id }}" }
"#,
    );
    let r = cli(&fake, &yaml)
        .args(["run", "runbook.yaml", "p", "--yes", "--format", "json"])
        .run();
    r.code(0);
    let main: Vec<serde_json::Value> = fake
        .branches()
        .into_iter()
        .filter(|b| b["name"] == "main")
        .collect();
    assert_eq!(main.len(), 1, "{:?}", branch_names(&fake));
    assert_eq!(main[0]["restore_status"], "finalized");
    assert!(main[0]["expires_at"].is_null(), "{:#}", main[0]);
    assert_eq!(fake.psql("main", "SELECT count(*) FROM orders"), "2");
}

/// A project id that is a path rather than an id (`..` would turn `/projects/..` into the
/// API's root, with the key's rights) is refused before any request is sent.
#[test]
fn a_project_id_that_is_a_path_is_refused_before_any_request() {
    let fake = FakeNeon::start(Options::default());
    let yaml = runbook(
        "drill",
        "      - id: look\n        neon.project: { target: production }\n",
    );
    for bad in ["..", "../other-project", "shiny-wind-028834/branches"] {
        let r = cli(&fake, &yaml)
            .env("NEON_PROJECT_ID", bad)
            .args(["run", "runbook.yaml", "p", "--format", "json"])
            .run();
        r.code(3);
        let rec = r.json();
        let error = step(&rec, "look")["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.starts_with(&format!("invalid Neon project id `{bad}`")),
            "{error}"
        );
    }
    assert_eq!(fake.requests().len(), 0, "{:?}", fake.requests());
}

/// The API key travels in every request: `NEON_API_URL` over plain http is refused unless
/// it is this machine (where the tests' fake listens). 192.0.2.1 is a documentation
/// address: nothing is sent anywhere.
#[test]
fn a_plain_http_api_url_elsewhere_is_refused() {
    let yaml = runbook(
        "drill",
        "      - id: look\n        neon.project: { target: production }\n",
    );
    let r = Cli::new()
        .runbook(&yaml)
        .env("NEON_API_KEY", "napi_secret_key_value")
        .env("NEON_API_URL", "http://192.0.2.1/api/v2")
        .env("NEON_PROJECT_ID", "shiny-wind-028834")
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(3);
    let error = step(&r.json(), "look")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.starts_with(
            "NEON_API_URL must be https: plain http would send the API key in the clear"
        ),
        "{error}"
    );
    assert!(!r.stdout.contains("napi_secret") && !r.stderr.contains("napi_secret"));
}

/// `exact-drill` against a fake whose project has logical replication enabled, with pgbench
/// writing into main all along: the branch at the fingerprint's LSN equals it table for
/// table, though main moves on during the whole drill.
#[test]
fn the_shipped_exact_drill_proves_a_branch_at_the_fingerprints_lsn_equal_under_writes() {
    let fake = FakeNeon::start(Options {
        logical_replication: true,
        ..Options::default()
    });
    let bin = drillbook::pg::cluster::find_binaries().expect("binaries");
    let pgbench = bin.dir.join("pgbench");
    let uri = fake.main_uri();
    let init = std::process::Command::new(&pgbench)
        .args(["-i", "-q", "-s", "1", &uri])
        .output()
        .expect("pgbench -i");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let _bench = crate::fingerprint::Bench(
        std::process::Command::new(&pgbench)
            .args(["-n", "-c", "2", "-T", "600", &uri])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pgbench"),
    );
    while fake.psql("main", "SELECT count(*) > 0 FROM pgbench_history") != "t" {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let r = cli(&fake, &shipped())
        .args(["run", "runbook.yaml", "exact-drill", "--format", "json"])
        .run();
    let rec = r.json();
    assert_eq!(r.code, 0, "{rec:#}\n{}", r.stderr);
    assert_eq!(rec["verdict"], "passed");
    let fp = &step(&rec, "fp")["outputs"];
    let lsn = fp["lsn"].as_str().expect("the fingerprint's LSN");
    // the branch was created at exactly that LSN
    assert_eq!(
        step(&rec, "branch")["outputs"]["parent_lsn"],
        lsn,
        "{rec:#}"
    );
    assert_eq!(step(&rec, "exact")["status"], "passed", "{rec:#}");
    // main moved on while the drill ran, so equality is the snapshot's, not luck
    let then: u64 = fp["tables"]["public.pgbench_history"]["rows"]
        .as_u64()
        .expect("pgbench_history in the fingerprint");
    let now: u64 = fake
        .psql("main", "SELECT count(*) FROM pgbench_history")
        .parse()
        .expect("a count");
    assert!(now > then, "main took no writes after the fingerprint");
    assert_eq!(
        fake.psql("main", "SELECT count(*) FROM pg_replication_slots"),
        "0",
        "the temporary slot outlived the drill"
    );
    assert_eq!(branch_names(&fake), ["main"], "a branch was left behind");
}

/// Without logical replication the drill stops at the fingerprint, saying how to enable it
/// on Neon, and creates nothing.
#[test]
fn the_exact_drill_without_logical_replication_says_how_to_enable_it_and_creates_nothing() {
    let fake = FakeNeon::start(Options::default());
    let r = cli(&fake, &shipped())
        .args(["run", "runbook.yaml", "exact-drill", "--format", "json"])
        .run();
    r.code(1);
    let rec = r.json();
    let fp = step(&rec, "fp");
    assert_eq!(fp["status"], "failed", "{fp:#}");
    let error = fp["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("wal_level = replica")
            && error.contains("enable logical replication for the Neon project")
            && error.contains("settings.enable_logical_replication"),
        "{error}"
    );
    assert_eq!(step(&rec, "branch")["status"], "not_run", "{rec:#}");
    assert_eq!(creates(&fake), 0);
    assert!(!r.stdout.contains("fake-password"), "{}", r.stdout);
}
