//! The local provider end to end with real clusters: the shipped demo drill passes, and the
//! ways a self-hosted restore goes wrong each end with a clear error, cleanup done, no
//! server left running and no scratch directory left behind.

use crate::support::{leftovers, root, Cli};

/// The shipped drill, small, with `extra` YAML steps inserted before the restore.
fn drill(extra: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let yaml = shipped().replacen(
        "      - id: restore\n",
        &format!("{extra}      - id: restore\n"),
        1,
    );
    run_drill(&yaml, args)
}

fn shipped() -> String {
    std::fs::read_to_string(root().join("runbooks/local-pitr-drill.yaml")).expect("runbook")
}

/// The shipped drill restoring to `target` instead of the recorded target time.
fn with_target(target: &str) -> String {
    shipped().replace(
        "          target: \"{{ steps.mark.target_time }}\"\n          database: shop",
        &format!("          target: \"{target}\"\n          database: shop"),
    )
}

/// Runs a (modified) drill, small, and checks that the run left nothing behind.
fn run_drill(yaml: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec![
        "run",
        "runbook.yaml",
        "drill",
        "--param",
        "orders=3000",
        "--param",
        "customers=300",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let r = Cli::new().runbook(yaml).args(all).run();
    let rec: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|_| panic!("no record:\n{}\n{}", r.stdout, r.stderr));
    crate::support::assert_outputs_declared(&rec);
    let id = rec["id"].as_str().expect("run id").to_owned();
    let left = leftovers(&id);
    assert!(left.is_empty(), "left behind by run {id}: {left:#?}");
    (r.code, rec)
}

fn step<'a>(rec: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    rec["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == id))
        .unwrap_or_else(|| panic!("no step {id}"))
}

#[test]
fn demo_drill_restores_to_the_target_and_proves_it() {
    let (code, rec) = drill("", &[]);
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["verdict"], "passed");
    assert_eq!(rec["rto"]["met"], true);
    assert!(rec["rto"]["measured_ms"].as_u64().is_some());
    assert_eq!(rec["rpo"]["met"], true);
    // the orders written after the target did not come back, the ones before did
    let restored = step(&rec, "integrity")["outputs"]["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == "orders")
        .cloned()
        .expect("orders");
    assert_eq!(restored["rows_restored"], 5000);
    assert_eq!(restored["rows_source"], 8000);
    let restore = &step(&rec, "restore")["outputs"];
    // a copy of the data is reachable only through its private socket, never over TCP
    let uri = restore["connection_uri"].as_str().unwrap_or_default();
    assert!(uri.starts_with("postgresql://postgres@%2F"), "{uri}");
    assert!(
        restore["wal_replayed_bytes"].as_u64().unwrap_or(0) > 0,
        "{restore:#}"
    );
    // undo records for everything created
    let undone: Vec<&str> = rec["cleanup"]
        .as_array()
        .expect("cleanup")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(undone, ["restore:undo", "backup:undo", "source:undo"]);
}

#[test]
fn missing_wal_segment_is_named_and_everything_is_cleaned_up() {
    // a hole in the middle of the archive: the segment is gone, a later one is there
    let lose = "      - id: lose-wal\n        shell:\n          run: 'rm \"$ARCHIVE/$SEG\" && cp \"$ARCHIVE/$(ls \"$ARCHIVE\" | grep -E \"^[0-9A-F]{24}$\" | head -1)\" \"$ARCHIVE/$(printf \"%s%08X\" \"${SEG%????????}\" $((0x${SEG#????????????????} + 1)))\"'\n          env: { ARCHIVE: \"{{ steps.source.archive_dir }}\", SEG: \"{{ steps.switch.segment }}\" }\n\n";
    let (code, rec) = drill(lose, &[]);
    assert_eq!(code, 1, "{rec:#}");
    let segment = step(&rec, "switch")["outputs"]["segment"]
        .as_str()
        .expect("segment")
        .to_owned();
    let err = step(&rec, "restore")["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!(
            "WAL segment {segment} is missing from the archive"
        )),
        "{err}"
    );
    assert!(
        rec["cleanup"]
            .as_array()
            .expect("cleanup")
            .iter()
            .all(|c| c["status"] == "passed"),
        "{:#}",
        rec["cleanup"]
    );
}

#[test]
fn target_before_the_base_backup_is_refused() {
    let (code, rec) = run_drill(&with_target("2020-01-01T00:00:00Z"), &[]);
    assert_eq!(code, 1);
    let err = step(&rec, "restore")["error"].as_str().unwrap_or_default();
    assert!(err.contains("is before the base backup started"), "{err}");
}

#[test]
fn damaged_backup_label_is_named() {
    let damage = "      - id: damage\n        shell:\n          run: 'echo garbage > \"$DIR/backup_label\"'\n          env: { DIR: \"{{ steps.backup.dir }}\" }\n\n";
    let (code, rec) = drill(damage, &[]);
    assert_eq!(code, 1);
    let err = step(&rec, "restore")["error"].as_str().unwrap_or_default();
    assert!(err.contains("backup_label is corrupt"), "{err}");
}

#[test]
fn restores_to_a_named_restore_point() {
    // name a point right after the target, and restore to it instead of the time
    let point = "      - id: point\n        local.restore_point: { db: \"{{ steps.source.admin_uri }}\", name: \"drill-{{ run.id }}\" }\n\n      - id: writes-after\n";
    let yaml =
        with_target("{{ steps.point.name }}").replacen("      - id: writes-after\n", point, 1);
    let (code, rec) = run_drill(&yaml, &[]);
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(step(&rec, "target-orders")["status"], "passed");
}

/// A source cluster that archives, a base backup of it, and writes on both sides of a
/// recorded target time: what a user's own setup looks like to postgres-pitr-drill.yaml.
struct OwnSetup {
    // fields drop in order: the cluster must stop before its directory goes
    cluster: drillbook::pg::cluster::Cluster,
    backup: std::path::PathBuf,
    archive: std::path::PathBuf,
    target: String,
    _dir: crate::support::TempDir,
}

fn own_setup(rt: &tokio::runtime::Runtime) -> OwnSetup {
    use drillbook::pg::cluster::find_binaries;
    let dir = crate::support::TempDir::new();
    let archive = dir.join("archive");
    let bin = find_binaries().expect("binaries");
    let cluster = crate::support::archiving_cluster(rt, &bin, &archive, &dir.join("cluster"));
    let pg =
        |db: &str, sql: &str| crate::support::psql_as(&bin.dir, cluster.port, "admin", db, sql);
    pg("postgres", "CREATE DATABASE library");
    pg("library", "CREATE TABLE loans (id serial PRIMARY KEY, lent_at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO loans SELECT FROM generate_series(1, 500);");
    let backup = dir.join("base");
    base_backup(&cluster, &backup);
    pg(
        "library",
        "INSERT INTO loans SELECT FROM generate_series(1, 100)",
    );
    let target = pg("library", "SELECT clock_timestamp()");
    pg(
        "library",
        "INSERT INTO loans SELECT FROM generate_series(1, 100)",
    );
    archive_all(&cluster);
    OwnSetup {
        cluster,
        backup,
        archive,
        target,
        _dir: dir,
    }
}

/// `pg_basebackup -Fp -X stream` of `cluster` (as `admin`) into `dest`.
pub(crate) fn base_backup(cluster: &drillbook::pg::cluster::Cluster, dest: &std::path::Path) {
    let status = std::process::Command::new(cluster.bin.dir.join("pg_basebackup"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "admin",
            "-Fp",
            "-X",
            "stream",
            "-c",
            "fast",
            "-D",
        ])
        .arg(dest)
        .status()
        .expect("pg_basebackup");
    assert!(status.success());
}

/// Switches WAL and waits (polling the server) until the segment written so far is archived.
pub(crate) fn archive_all(cluster: &drillbook::pg::cluster::Cluster) {
    let pg = |sql: &str| {
        crate::support::psql_as(&cluster.bin.dir, cluster.port, "admin", "postgres", sql)
    };
    pg("SELECT pg_switch_wal()");
    let last = pg("SELECT pg_walfile_name(pg_current_wal_lsn())");
    while pg("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < last {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A directory of dated base backups, as a nightly `pg_basebackup` cron leaves it (the
/// newest one cut short), restored through a `local` target: each target restores from the
/// newest backup finished before it, the record names that backup, and a target older than
/// every backup is refused naming the oldest.
#[test]
fn a_directory_of_dated_backups_restores_from_the_one_that_fits() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = own_setup(&rt);
    let dated = s.backup.parent().expect("parent").join("dated");
    let pg = |sql: &str| {
        crate::support::psql_as(&s.cluster.bin.dir, s.cluster.port, "admin", "library", sql)
    };
    let before_all = pg("SELECT clock_timestamp()");
    base_backup(&s.cluster, &dated.join("2026-12-01"));
    pg("INSERT INTO loans SELECT FROM generate_series(1, 50)");
    let first = pg("SELECT clock_timestamp()");
    let first_rows = pg("SELECT count(*) FROM loans");
    base_backup(&s.cluster, &dated.join("2026-12-02"));
    pg("INSERT INTO loans SELECT FROM generate_series(1, 50)");
    let second = pg("SELECT clock_timestamp()");
    let second_rows = pg("SELECT count(*) FROM loans");
    // recovery stops at the first commit after its target: production went on writing
    pg("INSERT INTO loans SELECT FROM generate_series(1, 50)");
    let all_rows = pg("SELECT count(*) FROM loans");
    // tonight's backup was interrupted: no control file
    base_backup(&s.cluster, &dated.join("2026-12-03"));
    std::fs::remove_file(dated.join("2026-12-03/global/pg_control")).expect("cut short");
    std::fs::create_dir(dated.join("notes")).expect("an unrelated directory");
    archive_all(&s.cluster);

    let yaml = "version: 1\nname: dated\ntargets:\n  nightly:\n    local: { base_backup: \"{{ env.BACKUPS }}\", wal_archive: \"{{ env.ARCHIVE }}\" }\nprocedures:\n  drill:\n    title: Restore\n    kind: drill\n    params:\n      at: { type: string, default: latest }\n    steps:\n      - id: restore\n        local.restore: { backups: nightly, target: \"{{ params.at }}\", database: library }\n      - id: rows\n        sql: { db: \"{{ steps.restore.connection_uri }}\", query: \"SELECT count(*) AS n FROM loans\" }\n";
    let restore = |at: &str| {
        let r = Cli::new()
            .runbook(yaml)
            .env("BACKUPS", &dated.display().to_string())
            .env("ARCHIVE", &s.archive.display().to_string())
            .args([
                "run",
                "runbook.yaml",
                "drill",
                "--param",
                &format!("at={at}"),
                "--format",
                "json",
            ])
            .run();
        let rec = r.json();
        crate::support::assert_outputs_declared(&rec);
        assert!(leftovers(rec["id"].as_str().expect("id")).is_empty());
        (r.code, rec)
    };
    for (at, from, rows) in [
        (first.as_str(), "2026-12-01", first_rows.as_str()),
        (second.as_str(), "2026-12-02", second_rows.as_str()),
        ("latest", "2026-12-02", all_rows.as_str()),
    ] {
        let (code, rec) = restore(at);
        assert_eq!(code, 0, "{at}: {rec:#}");
        let out = &step(&rec, "restore")["outputs"];
        assert_eq!(
            out["base_backup"],
            dated.join(from).display().to_string(),
            "{at}: {out:#}"
        );
        assert!(out["base_backup_started_at"].is_string(), "{out:#}");
        assert_eq!(step(&rec, "rows")["outputs"]["n"].to_string(), rows, "{at}");
    }
    let (code, rec) = restore(&before_all);
    assert_eq!(code, 1, "{rec:#}");
    // found by the preflight, before anything was copied
    assert_eq!(step(&rec, "restore")["status"], "not_run", "{rec:#}");
    let err = rec["reason"].as_str().unwrap_or_default();
    assert!(
        err.contains("no base backup in")
            && err.contains("finished before the target")
            && err.contains(&format!(
                "the oldest is {}",
                dated.join("2026-12-01").display()
            ))
            && err.contains("2026-12-03 is an incomplete base backup"),
        "{err}"
    );
}

#[test]
fn postgres_pitr_drill_restores_your_own_backups() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = own_setup(&rt);
    let target = s.target.replace(' ', "T");
    let mut cmd = Cli::new()
        .env("DATABASE_URL", &s.cluster.url("library"))
        .env("PG_BASE_BACKUP", &s.backup.display().to_string())
        .env("PG_WAL_ARCHIVE", &s.archive.display().to_string())
        .args([
            "run",
            "runbooks/postgres-pitr-drill.yaml",
            "drill",
            "--param",
            &format!("target_time={target}"),
            "--param",
            "table=loans",
            "--param",
            "column=lent_at",
            "--format",
            "json",
        ])
        .command();
    cmd.current_dir(root());
    let out = cmd.output().expect("run");
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{rec:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tables = step(&rec, "integrity")["outputs"]["tables"]
        .as_array()
        .expect("tables")
        .clone();
    // the database DATABASE_URL names, compared as the bootstrap superuser `admin`
    assert_eq!(tables.len(), 1, "{tables:#?}");
    assert_eq!(tables[0]["table"], "loans");
    assert_eq!(tables[0]["rows_source"], 700);
    assert_eq!(tables[0]["rows_restored"], 600);
    let uri = step(&rec, "restore")["outputs"]["connection_uri"]
        .as_str()
        .expect("connection_uri");
    assert!(
        uri.starts_with("postgresql://admin@") && uri.contains("/library?"),
        "{uri}"
    );
    assert!(leftovers(rec["id"].as_str().expect("id")).is_empty());
    // the backups are untouched
    assert!(s.backup.join("backup_label").exists());
}

/// The shipped runbook's `table`/`column` defaults name a table this database does not
/// have: the drill stops before restoring anything, naming the params to set.
#[test]
fn a_recovery_point_column_production_lacks_is_refused_before_the_restore() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = own_setup(&rt);
    // a target the backups reach: the preflight passes, the column check does not
    let target = s.target.replace(' ', "T");
    let mut cmd = Cli::new()
        .env("DATABASE_URL", &s.cluster.url("library"))
        .env("PG_BASE_BACKUP", &s.backup.display().to_string())
        .env("PG_WAL_ARCHIVE", &s.archive.display().to_string())
        .args([
            "run",
            "runbooks/postgres-pitr-drill.yaml",
            "drill",
            "--param",
            &format!("target_time={target}"),
            "--format",
            "json",
        ])
        .command();
    cmd.current_dir(root());
    let out = cmd.output().expect("run");
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{rec:#}");
    let error = step(&rec, "timestamp-column")["error"]
        .as_str()
        .expect("an error");
    assert!(
        error.contains("no column `created_at` in a table `orders`")
            && error.contains("--param table=")
            && error.contains("--param column="),
        "{error}"
    );
    assert_eq!(step(&rec, "restore")["status"], "not_run", "{rec:#}");
}

#[test]
fn archiver_and_backup_age_checks() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = own_setup(&rt);
    let yaml = |steps: &str| {
        format!("version: 1\nname: t\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n{steps}")
    };
    let run = |steps: &str| {
        let r = Cli::new()
            .runbook(&yaml(steps))
            .env("SRC", &s.cluster.url("postgres"))
            .args(["run", "runbook.yaml", "p", "--format", "json"])
            .run();
        (r.code, r.json())
    };
    let backups = s.backup.parent().expect("parent").display().to_string();
    let (code, rec) = run(&format!("      - id: a\n        local.archiver: {{ db: \"{{{{ env.SRC }}}}\", max_age: 1h }}\n      - id: b\n        local.backup_age: {{ dir: \"{backups}\", max_age: 1h }}\n"));
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["steps"][0]["outputs"]["failing"], false);
    assert_eq!(rec["steps"][1]["outputs"]["backups"], 1);
    // a stale backup, and archiving that fails from now on
    let (code, rec) = run(&format!(
        "      - id: b\n        local.backup_age: {{ dir: \"{backups}\", max_age: 1ms }}\n"
    ));
    assert_eq!(code, 1);
    assert!(
        rec["steps"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("old, more than 1ms"),
        "{rec:#}"
    );
    let psql = |sql: &str| {
        let ok = std::process::Command::new(s.cluster.bin.dir.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &s.cluster.port.to_string(),
                "-U",
                "admin",
                "-d",
                "postgres",
                "-X",
                "-q",
                "-c",
                sql,
            ])
            .status()
            .expect("psql");
        assert!(ok.success());
    };
    psql("ALTER SYSTEM SET archive_command = 'false'");
    psql("SELECT pg_reload_conf()");
    psql("CREATE TABLE more AS SELECT g FROM generate_series(1, 1000) g");
    psql("SELECT pg_switch_wal()");
    // wait (polling the server) until a failure is recorded, then check
    let step_yaml = "      - id: failed\n        wait:\n          poll: { sql: { db: \"{{ env.SRC }}\", query: \"select failed_count from pg_stat_archiver\" } }\n          until: result.failed_count > 0\n          interval: 100ms\n          deadline: 1m\n      - id: a\n        local.archiver: { db: \"{{ env.SRC }}\" }\n";
    let (code, rec) = run(step_yaml);
    assert_eq!(code, 1, "{rec:#}");
    assert!(
        rec["steps"][1]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("WAL archiving is failing"),
        "{rec:#}"
    );
}

#[test]
fn target_after_the_end_of_the_archive_is_explained() {
    let (code, rec) = run_drill(&with_target("now+1h"), &[]);
    assert_eq!(code, 1);
    let err = step(&rec, "restore")["error"].as_str().unwrap_or_default();
    // said as what it is, not as a missing segment, which reads like data loss
    assert!(
        err.starts_with("the target is after the newest archived transaction: recovery replayed all of the WAL archive"),
        "{err}"
    );
    assert!(!err.contains("is missing from the archive"), "{err}");
}

#[test]
fn missing_server_binaries_could_not_run() {
    // run from the repository (the runbook's path as shipped), recorded in the test's own
    // directory
    let cli = Cli::new().env("PG_BIN", "/nonexistent/bin");
    let history = cli.dir.join("history.jsonl").display().to_string();
    let r = cli
        .args([
            "run",
            "runbooks/local-pitr-drill.yaml",
            "drill",
            "--format",
            "json",
            "--history",
            &history,
        ])
        .command()
        .current_dir(root())
        .output()
        .expect("run");
    assert_eq!(r.status.code(), Some(3));
    let rec: serde_json::Value = serde_json::from_slice(&r.stdout).expect("record");
    assert!(
        step(&rec, "source")["error"]
            .as_str()
            .unwrap_or_default()
            .contains("PostgreSQL server binaries not found"),
        "{rec:#}"
    );
    assert!(leftovers(rec["id"].as_str().expect("id")).is_empty());
}

#[test]
fn backups_linking_outside_are_refused() {
    // a tablespace link, as a plain backup of a cluster with tablespaces has
    let link = "      - id: tablespace\n        shell:\n          run: 'mkdir -p \"$DIR/pg_tblspc\" && ln -s /var/tmp \"$DIR/pg_tblspc/16999\"'\n          env: { DIR: \"{{ steps.backup.dir }}\" }\n\n";
    let (code, rec) = drill(link, &[]);
    assert_eq!(code, 1);
    let err = step(&rec, "restore")["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("would write outside the scratch directory"),
        "{err}"
    );
}

#[test]
fn interrupt_during_the_restore_leaves_nothing_behind() {
    use std::io::{BufRead, BufReader};
    let cli = Cli::new().runbook(&shipped()).args([
        "run",
        "runbook.yaml",
        "drill",
        "--param",
        "orders=3000",
        "--param",
        "customers=300",
    ]);
    let mut child = cli
        .command()
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id().to_string();
    let mut run_id = String::new();
    let mut seen = String::new();
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        let line = line.expect("utf8");
        if let Some(rest) = line.split(" — run ").nth(1) {
            run_id = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        if line.contains("restore — ") {
            // once its directory exists the restore has registered its undo (it does so
            // before creating anything): interrupt then, not in the moments before
            let dir = std::env::temp_dir().join(format!("drillbook-{run_id}-restore"));
            let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !dir.exists() && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let ok = std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .expect("kill");
            assert!(ok.success());
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(!run_id.is_empty(), "{seen}");
    let left = leftovers(&run_id);
    assert!(
        left.is_empty(),
        "left behind after the interrupt: {left:#?}\n{seen}"
    );
    // cleanup says what it is doing, undo by undo, instead of seconds of silence
    assert!(
        seen.contains("[undo] restore:undo — stop and remove the restored instance in ")
            && seen.contains("[undo] ✓ restore:undo ok"),
        "{seen}"
    );
}

/// A second interrupt aborts cleanup: the servers the run started are still stopped, and
/// what was not removed is named, path by path.
#[test]
fn an_aborted_cleanup_names_what_it_left_behind() {
    use std::io::{BufRead, BufReader};
    let cli = Cli::new();
    let cluster_dir = cli.dir.join("kept-cluster");
    let yaml = format!(
        "version: 1\nname: aborted\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    steps:\n      - id: source\n        local.cluster: {{ dir: \"{}\" }}\n      - id: wait\n        shell: sleep 30\n    cleanup:\n      - id: slow-tidy\n        shell: sleep 30\n",
        cluster_dir.display()
    );
    // its own temporary directory: where the run keeps its ledger, for `gc` below
    let tmp = cli.dir.join("tmp");
    std::fs::create_dir(&tmp).expect("tmp");
    let tmp_env = tmp.display().to_string();
    let cli = cli
        .runbook(&yaml)
        .env("TMPDIR", &tmp_env)
        .args(["run", "runbook.yaml", "drill"]);
    let mut child = cli
        .command()
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id().to_string();
    let interrupt = || {
        let ok = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    let mut seen = String::new();
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        let line = line.expect("utf8");
        // the first interrupt while the step sleeps, the second during the slow cleanup step
        if line.contains("wait — ") || line.contains("slow-tidy — ") {
            interrupt();
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(
        seen.contains("cleanup was aborted; left behind (`drillbook gc --yes` removes them):")
            && seen.contains(&format!(
                "- stop and remove the cluster in {} (its server was stopped; its files remain)",
                cluster_dir.display()
            )),
        "{seen}"
    );
    // stopped (an immediate stop, not waited for): within moments, no process runs from
    // the cluster's directory
    let data = cluster_dir.join("data").display().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ps = std::process::Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .expect("ps");
        let running = String::from_utf8_lossy(&ps.stdout).contains(&data);
        if !running {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a server still runs from {data}\n{seen}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // what was left is found and removed later
    let r = Cli::new()
        .env("TMPDIR", &tmp_env)
        .args(["gc", "--yes"])
        .run();
    r.code(0);
    assert!(
        r.stdout.contains("removed  ") && r.stdout.contains(&cluster_dir.display().to_string()),
        "{}",
        r.stdout
    );
    assert!(
        !cluster_dir.exists(),
        "{} is still there",
        cluster_dir.display()
    );
}

/// The drill log shows what was proven, for an auditor: the comparison's table, where the
/// restore ended (`recovered_to`, the WAL replayed) and the recovery point against its
/// target.
#[test]
fn the_drill_log_shows_the_evidence() {
    let cli = Cli::new().runbook(&shipped()).args([
        "run",
        "runbook.yaml",
        "drill",
        "--param",
        "orders=3000",
        "--param",
        "customers=300",
    ]);
    let r = cli.run();
    r.code(0);
    let log = std::fs::read_dir(cli.dir.join("drills"))
        .expect("drills/")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "md"))
        .expect("a drill log");
    let text = std::fs::read_to_string(&log).expect("read");
    for want in [
        "## Evidence",
        "report (the comparison as a table a person reads at a glance):",
        "source rows",
        "| recovered_to | `",
        "| wal_replayed_bytes | `",
        "| base_backup | `",
        "| recovery_point | `",
        "| data_loss_window | `",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    // `history show` reads the same evidence on a terminal
    let history = cli.dir.join("drills/history.jsonl").display().to_string();
    // `<date>-<runbook>-<procedure>-<id>`, the id `20261129T203252Z-273e5b0d`
    let stem = log
        .file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned();
    let parts: Vec<&str> = stem.rsplitn(3, '-').collect();
    let id = format!("{}-{}", parts[1], parts[0]);
    let shown = Cli::new()
        .args(["history", "show", &id, "--history", &history])
        .run();
    shown.code(0);
    for want in [
        "\nevidence\n",
        "  restore (local.restore)\n",
        "    report:\n",
        "source rows",
    ] {
        assert!(
            shown.stdout.contains(want),
            "missing `{want}` in:\n{}",
            shown.stdout
        );
    }
    for name in [
        "recovered_to",
        "base_backup",
        "recovery_point",
        "data_loss_window",
    ] {
        assert!(
            shown
                .stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{name} "))),
            "no `{name}` in:\n{}",
            shown.stdout
        );
    }
}

/// A `local.cluster` setting's value is one quoted `postgresql.conf` value: a quote or a
/// backslash in it reaches the server as written, and a value that would add a line (here an
/// `archive_command`, run by the server's account) fails the step naming the setting, before
/// any cluster exists.
#[test]
fn cluster_settings_cannot_add_lines_to_postgresql_conf() {
    let yaml = "version: 1\nname: settings\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    params:\n      name: { type: string }\n    steps:\n      - id: db\n        local.cluster:\n          settings: { cluster_name: \"{{ params.name }}\", shared_buffers: 16MB }\n      - id: show\n        sql:\n          db: \"{{ steps.db.connection_uri }}\"\n          query: SELECT current_setting('cluster_name') AS name, current_setting('archive_command') AS archive, current_setting('shared_buffers') AS buffers\n";
    let run = |name: &str| {
        let cli = Cli::new().runbook(yaml).args([
            "run",
            "runbook.yaml",
            "drill",
            "--param",
            &format!("name={name}"),
            "--format",
            "json",
        ]);
        let r = cli.run();
        (r.code, r.json(), cli)
    };
    let (code, rec, _cli) = run(r"it's a \ drill");
    assert_eq!(code, 0, "{rec:#}");
    let show = &step(&rec, "show")["outputs"];
    assert_eq!(show["name"], r"it's a \ drill", "{rec:#}");
    assert_eq!(show["buffers"], "16MB", "{rec:#}");
    assert!(
        show["archive"]
            .as_str()
            .is_some_and(|a| a.starts_with("test ! -f")),
        "{rec:#}"
    );
    let marker = std::env::temp_dir().join(format!("drillbook-pwned-{}", std::process::id()));
    let m = marker.display();
    for injected in [
        format!("x'\narchive_command = 'touch {m}'"),
        format!("'x'\narchive_command = 'touch {m}'"),
        format!("x\rarchive_command = 'touch {m}'"),
    ] {
        let (code, rec, _cli) = run(&injected);
        assert_eq!(code, 1, "{injected:?}: {rec:#}");
        let db = step(&rec, "db");
        assert_eq!(db["status"], "failed", "{rec:#}");
        assert_eq!(
            db["error"],
            "setting `cluster_name`: the value holds a line break or a NUL, which a postgresql.conf value cannot hold",
            "{rec:#}"
        );
        assert_eq!(step(&rec, "show")["status"], "not_run", "{rec:#}");
        let id = rec["id"].as_str().expect("run id");
        assert_eq!(leftovers(id), Vec::<String>::new());
    }
    assert!(!marker.exists(), "the injected archive_command ran");
}

/// `local.start` takes over a data directory another tool filled — here a script copying a
/// base backup, as WAL-G's `backup-fetch` would — and recovers it to the target from the
/// archive, or with the `restore_command` and target the tool wrote itself; the data is
/// exactly as of the target, and nothing is left behind.
#[test]
fn local_start_recovers_a_directory_another_tool_filled() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = own_setup(&rt);
    let tmp = crate::support::TempDir::new();
    let want = crate::support::psql_as(
        &s.cluster.bin.dir,
        s.cluster.port,
        "admin",
        "library",
        &format!("SELECT count(*) FROM loans WHERE lent_at <= '{}'", s.target),
    );
    // the step that fills the directory; `tool` also writes the recovery settings the way
    // pgBackRest does
    let fill = |tool: bool| {
        let settings = if tool {
            "            printf \"restore_command = 'cp %s/%%f %%p'\\nrecovery_target_time = '%s'\\nrecovery_target_action = 'pause'\\n\" \"$ARCHIVE\" \"$TARGET\" >> \"$DIR/postgresql.auto.conf\"\n"
        } else {
            ""
        };
        format!("      - id: fill\n        shell:\n          run: |\n            mkdir -p \"$DIR\" && cp -a \"$BACKUP/.\" \"$DIR\"\n{settings}          env: {{ DIR: \"{{{{ env.TMPDIR }}}}/filled-{{{{ run.id }}}}\", BACKUP: \"{{{{ env.BACKUP }}}}\", ARCHIVE: \"{{{{ env.ARCHIVE }}}}\", TARGET: \"{{{{ env.TARGET }}}}\" }}\n")
    };
    for (tool, start) in [
        (false, "        local.start: { data_dir: \"{{ env.TMPDIR }}/filled-{{ run.id }}\", wal_archive: \"{{ env.ARCHIVE }}\", target: \"{{ env.TARGET }}\", database: library }\n"),
        (true, "        local.start: { data_dir: \"{{ env.TMPDIR }}/filled-{{ run.id }}\", database: library }\n"),
    ] {
        let yaml = format!(
            "version: 1\nname: started\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    steps:\n{}      - id: start\n{start}      - id: rows\n        sql: {{ db: \"{{{{ steps.start.connection_uri }}}}\", query: \"SELECT count(*) AS n FROM loans\" }}\n",
            fill(tool)
        );
        let r = Cli::new()
            .runbook(&yaml)
            .env("TMPDIR", &tmp.path().display().to_string())
            .env("BACKUP", &s.backup.display().to_string())
            .env("ARCHIVE", &s.archive.display().to_string())
            .env("TARGET", &s.target)
            .args(["run", "runbook.yaml", "drill", "--format", "json"])
            .run();
        let rec = r.json();
        assert_eq!(r.code, 0, "tool {tool}: {rec:#}\n{}", r.stderr);
        crate::support::assert_outputs_declared(&rec);
        assert_eq!(step(&rec, "rows")["outputs"]["n"].to_string(), want, "tool {tool}");
        let out = &step(&rec, "start")["outputs"];
        assert!(out["recovered_to"].is_string() && out["wal_replayed_bytes"].as_u64() > Some(0), "{out:#}");
        // the instance and the filled directory went with the run
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("tmp")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "tool {tool}: left {left:?}");
    }
    // what it is given must be a data directory
    let r = Cli::new()
        .runbook("version: 1\nname: started\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    steps:\n      - id: start\n        local.start: { data_dir: /nonexistent/filled }\n")
        .args(["run", "runbook.yaml", "drill", "--format", "json"])
        .run();
    r.code(1);
    let rec = r.json();
    let err = step(&rec, "start")["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("/nonexistent/filled is not a PostgreSQL data directory"),
        "{err}"
    );
}

/// Before an hour of restore, the preflight finds what it can: production answers (or not,
/// with the server's reason; a wrong password's is in `sql::connection_faults_are_clear_and_exit_3`),
/// the base backup that fits the target, and a WAL archive that does not reach the target — in `plan --preflight` and in `run`, before anything is
/// copied.
#[test]
fn the_preflight_finds_a_refusing_production_and_an_archive_short_of_the_target() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = own_setup(&rt);
    let cli = |database_url: &str, target: &str, args: &[&str]| {
        let mut cmd = Cli::new()
            .env("DATABASE_URL", database_url)
            .env("PG_BASE_BACKUP", &s.backup.display().to_string())
            .env("PG_WAL_ARCHIVE", &s.archive.display().to_string())
            .args(args.iter().copied())
            .args([
                "--param",
                &format!("target_time={target}"),
                "--param",
                "table=loans",
                "--param",
                "column=lent_at",
                "--format",
                "json",
            ])
            .command();
        cmd.current_dir(root());
        let out = cmd.output().expect("run");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (out.status.code(), json)
    };
    let run = ["run", "runbooks/postgres-pitr-drill.yaml", "drill"];
    let plan = [
        "plan",
        "runbooks/postgres-pitr-drill.yaml",
        "drill",
        "--preflight",
    ];
    let good = s.cluster.url_as("admin", "library");
    let target = s.target.replace(' ', "T");
    // all fine: production answers, the backup fits, the archive reaches the target
    let (code, out) = cli(&good, &target, &plan);
    assert_eq!(code, Some(0), "{out:#}");
    let checks: Vec<&str> = out["preflight"]
        .as_array()
        .expect("preflight")
        .iter()
        .filter_map(|i| i["check"].as_str())
        .collect();
    assert_eq!(checks, ["connect", "base backup", "WAL archive"], "{out:#}");
    // production writes on; the archive's newest segment was archived before the target
    let later = crate::support::psql_as(
        &s.cluster.bin.dir,
        s.cluster.port,
        "admin",
        "library",
        "INSERT INTO loans SELECT FROM generate_series(1, 10); SELECT clock_timestamp()",
    )
    .replace(' ', "T");
    let (code, rec) = cli(&good, &later, &run);
    assert_eq!(code, Some(1), "{rec:#}");
    let reason = rec["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("ends before the target"), "{reason}");
    assert_eq!(step(&rec, "restore")["status"], "not_run", "{rec:#}");
    // production refuses (the test cluster trusts its connections, so a database that does
    // not exist stands for a wrong password): found at once, with the server's reason
    let missing = s.cluster.url_as("admin", "no_such_database");
    let (code, rec) = cli(&missing, &target, &run);
    assert_eq!(code, Some(3), "{rec:#}");
    assert!(
        rec["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("database \"no_such_database\" does not exist"),
        "{rec:#}"
    );
    assert_eq!(step(&rec, "timestamp-column")["status"], "not_run");
}

/// A real recovery keeps what it restored: `restore-alongside` leaves the copy running after
/// the run, prints and records how to connect and how to stop it, and neither cleanup nor
/// `gc` removes it; its stop command does.
#[test]
fn restore_alongside_keeps_the_copy_running_until_stopped() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = own_setup(&rt);
    let tmp = crate::support::TempDir::new();
    let tmp_env = tmp.path().display().to_string();
    let kept_dir = tmp.join("recovered");
    let target = s.target.replace(' ', "T");
    let want = crate::support::psql_as(
        &s.cluster.bin.dir,
        s.cluster.port,
        "admin",
        "library",
        &format!("SELECT count(*) FROM loans WHERE lent_at <= '{}'", s.target),
    );
    let mut cmd = Cli::new()
        .env("TMPDIR", &tmp_env)
        .env("DATABASE_URL", &s.cluster.url("library"))
        .env("PG_BASE_BACKUP", &s.backup.display().to_string())
        .env("PG_WAL_ARCHIVE", &s.archive.display().to_string())
        .args([
            "run",
            "runbooks/postgres-pitr-drill.yaml",
            "restore-alongside",
            "--param",
            &format!("target_time={target}"),
            "--param",
            &format!("dir={}", kept_dir.display()),
            "--param",
            "table=loans",
            "--param",
            "column=lent_at",
            "--format",
            "json",
        ])
        .command();
    cmd.current_dir(root());
    let out = cmd.output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{rec:#}\n{stderr}");
    let restore = &step(&rec, "restore")["outputs"];
    assert_eq!(restore["kept"], true, "{restore:#}");
    assert!(
        stderr.contains("kept: step `restore` left its instance running"),
        "{stderr}"
    );
    // no undo ran for it, and gc does not count it as left behind
    assert!(
        rec["cleanup"].as_array().is_none_or(|c| c.is_empty()),
        "{:#}",
        rec["cleanup"]
    );
    let r = Cli::new().env("TMPDIR", &tmp_env).args(["gc"]).run();
    r.code(0);
    // it runs, with the data as of the target
    let uri = restore["connection_uri"].as_str().expect("uri");
    let rows = std::process::Command::new(s.cluster.bin.dir.join("psql"))
        .args([uri, "-XAtc", "SELECT count(*) FROM loans"])
        .output()
        .expect("psql");
    assert_eq!(String::from_utf8_lossy(&rows.stdout).trim(), want);
    // its stop command stops and removes it
    let stop = restore["stop_command"].as_str().expect("stop command");
    let ok = std::process::Command::new("sh")
        .args(["-c", stop])
        .status()
        .expect("stop");
    assert!(ok.success(), "{stop}");
    assert!(!kept_dir.exists(), "{stop}");
}

/// The shipped `exact` drill: pgbench writes throughout, the fingerprint's LSN is restored,
/// every table equals the fingerprint, and every scratch resource is gone after.
#[test]
fn the_shipped_exact_drill_proves_equality_under_writes() {
    let r = Cli::new()
        .runbook(&shipped())
        .args([
            "run",
            "runbook.yaml",
            "exact",
            "--param",
            "scale=1",
            "--format",
            "json",
        ])
        .run();
    let rec: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|_| panic!("no record:\n{}\n{}", r.stdout, r.stderr));
    crate::support::assert_outputs_declared(&rec);
    assert_eq!(r.code, 0, "{rec:#}");
    let fp = &step(&rec, "fp")["outputs"];
    assert!(
        fp["tables"]["public.pgbench_history"]["rows"]
            .as_i64()
            .is_some_and(|n| n > 0),
        "no writes before the fingerprint: {fp:#}"
    );
    let exact = &step(&rec, "exact")["outputs"];
    assert_eq!(exact["tables_compared"], 4, "{exact:#}");
    assert_eq!(exact["tables_failed"], 0, "{exact:#}");
    let id = rec["id"].as_str().expect("run id");
    let left = leftovers(id);
    assert!(left.is_empty(), "left behind by run {id}: {left:#?}");
}

/// An operator seam that hands out counting progress bars and keeps them, so a test can
/// read what a step reported to its terminal.
#[derive(Default)]
struct Watching(std::sync::Mutex<Vec<(String, drillbook::progress::Progress)>>);

impl drillbook::steps::Interaction for Watching {
    fn assume_yes(&self) -> bool {
        true
    }
    fn is_interactive(&self) -> bool {
        false
    }
    fn show(&self, _: &str) {}
    fn confirm(&self, _: String) -> drillbook::cancel::BoxFuture<'static, std::io::Result<bool>> {
        Box::pin(async { Ok(true) })
    }
    fn progress(&self, what: &str, _: drillbook::progress::Unit) -> drillbook::progress::Progress {
        let p = drillbook::progress::Progress::counting();
        let mut bars = self.0.lock().expect("bars");
        bars.push((what.to_owned(), p.clone()));
        p
    }
}

impl drillbook::engine::Observer for Watching {
    fn started(&self, _: &drillbook::record::DrillRecord, _: usize, _: usize) {}
    fn step_started(&self, _: bool, _: usize, _: &drillbook::runbook::Step) {}
    fn step_finished(&self, _: bool, _: usize, _: &drillbook::record::StepRecord) {}
}

/// What a restore reports to the operator's terminal: every byte of the base backup copied,
/// and WAL segments replayed.
#[test]
fn a_restore_reports_the_base_backup_copied_and_the_wal_replayed() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let s = own_setup(&rt);
    let yaml = format!(
        "version: 1\nname: watched\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: restore\n        local.restore: {{ base_backup: \"{}\", wal_archive: \"{}\", target: \"{}\", database: library }}\n",
        s.backup.display(),
        s.archive.display(),
        s.target
    );
    let rb = drillbook::runbook::load_str("watched.yaml", &yaml).expect("runbook");
    let opts = drillbook::engine::RunOptions {
        operator: "test".into(),
        ..drillbook::engine::RunOptions::default()
    };
    let seen = Watching::default();
    let rec = rt
        .block_on(drillbook::engine::run(
            &rb,
            "p",
            &opts,
            &seen,
            &seen,
            &drillbook::cancel::Cancel::new(),
        ))
        .expect("run");
    assert_eq!(
        rec.verdict,
        drillbook::record::Verdict::Passed,
        "{:?}",
        rec.reason
    );
    fn size(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p)
            .expect("dir")
            .map(|e| {
                let e = e.expect("entry");
                let m = std::fs::symlink_metadata(e.path()).expect("metadata");
                if m.is_dir() {
                    size(&e.path())
                } else if m.is_file() {
                    m.len()
                } else {
                    0
                }
            })
            .sum()
    }
    let bars = seen.0.lock().expect("bars");
    let counts = |what: &str| {
        bars.iter()
            .find(|(w, _)| w == what)
            .and_then(|(_, p)| p.counts())
            .unwrap_or_else(|| {
                panic!(
                    "no `{what}` bar among {:?}",
                    bars.iter().map(|b| &b.0).collect::<Vec<_>>()
                )
            })
    };
    let total = size(&s.backup);
    assert_eq!(counts("base backup copied"), (total, Some(total)));
    let (replayed, _) = counts("WAL replayed");
    assert!(replayed > 0, "no WAL segment reported replayed");
}
