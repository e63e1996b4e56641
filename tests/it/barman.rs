//! Barman end to end with a real Barman 3.4 and real clusters: a throwaway PostgreSQL 15
//! backed up by a Barman server configured entirely under a temporary directory (never
//! /etc/barman.conf), recovered by `barman.recover` and the shipped drill, checked by
//! `barman.check` and `barman.backup_age`; every fault ends with no server and no scratch
//! directory left.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{leftovers, root, Cli, TempDir};

/// A source cluster archiving into a Barman server, one backup, and writes on both sides of
/// a recorded target time.
pub struct Barman {
    /// Barman's configuration file (`barman -c`).
    pub config: PathBuf,
    /// The server's name in it.
    pub server: &'static str,
    /// The source's URL (database `shop`).
    pub url: String,
    /// The target as RFC 3339.
    pub target_rfc3339: String,
    /// The last transaction before the target, and the WAL position after it (the restore
    /// point `before-the-rest` is between the two).
    pub xid: String,
    pub lsn: String,
    /// Rows of `orders` at the target, and in all.
    pub rows_at_target: u64,
    pub rows: u64,
    /// Barman's home (`barman_home`).
    pub home: PathBuf,
    pub bin: PathBuf,
    pub port: u16,
}

/// Runs `barman -c CONFIG ARGS` as the `barman` account (Barman's files belong to it);
/// panics with its output on failure.
#[track_caller]
pub fn barman(config: &Path, args: &[&str]) -> String {
    let out = Command::new("runuser")
        .args(["-u", "barman", "--", "barman", "-c"])
        .arg(config)
        .args(args)
        .current_dir("/")
        .output()
        .expect("run barman");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "barman {args:?} failed:\n{text}");
    text
}

fn chown_barman(path: &Path) {
    let ok = Command::new("chown")
        .args(["-R", "barman:barman"])
        .arg(path)
        .status()
        .expect("chown");
    assert!(ok.success(), "chown barman {}", path.display());
}

/// Builds a Barman setup in `dir`: the cluster (returned, to be stopped by its owner) and
/// the server. Streaming backups (`backup_method = postgres`), WAL through `archiver = on`
/// with an `archive_command` that moves each segment into the server's incoming directory
/// (no ssh, no background `receive-wal` to stop).
pub fn build(dir: &Path) -> (drillbook::pg::cluster::Cluster, Barman) {
    use drillbook::pg::cluster::{find_binaries, Cluster, InitOptions};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bin = find_binaries().expect("tests need PostgreSQL server binaries");
    assert!(
        Command::new("barman")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "tests need Barman (apt-get install barman)"
    );
    let b = dir.join("barman");
    let home = b.join("home");
    let incoming = home.join("shop/incoming");
    let spool = b.join("spool");
    for d in [&incoming, &spool, &b.join("lock")] {
        std::fs::create_dir_all(d).expect("barman dirs");
    }
    let archive_command = format!(
        "cp %p {s}/%f && chmod 0644 {s}/%f && mv {s}/%f {i}/%f",
        s = spool.display(),
        i = incoming.display()
    );
    let mut cluster = rt
        .block_on(Cluster::create(
            bin.clone(),
            &dir.join("source"),
            &InitOptions {
                unsafe_fast: true,
                settings: vec![
                    ("wal_level".into(), "replica".into()),
                    ("archive_mode".into(), "on".into()),
                    ("archive_command".into(), archive_command),
                ],
                ..InitOptions::default()
            },
        ))
        .expect("initdb");
    rt.block_on(cluster.start()).expect("start");
    let port = cluster.port;
    let config = b.join("barman.conf");
    std::fs::write(
        &config,
        format!(
            "[barman]\nbarman_home = {home}\nbarman_user = barman\nlog_file = {b}/barman.log\nbarman_lock_directory = {b}/lock\nlog_level = INFO\npath_prefix = {bin}\n\n[shop]\ndescription = drillbook test\nconninfo = host=127.0.0.1 port={port} user=postgres dbname=postgres\nstreaming_conninfo = host=127.0.0.1 port={port} user=postgres\nbackup_method = postgres\narchiver = on\nstreaming_archiver = off\n",
            home = home.display(),
            b = b.display(),
            bin = bin.dir.display(),
        ),
    )
    .expect("barman.conf");
    chown_barman(&b);
    // postgres (the archive_command) writes here, Barman moves the files on
    for d in [&incoming, &spool] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod");
    }
    let pg = |db: &str, sql: &str| crate::support::psql_at(&bin.dir, port, db, sql);
    pg("postgres", "CREATE DATABASE shop");
    pg("shop", "CREATE TABLE orders (id serial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO orders SELECT FROM generate_series(1, 100)");
    barman(&config, &["switch-wal", "--force", "--archive", "shop"]);
    barman(&config, &["cron"]);
    barman(&config, &["backup", "shop", "--wait"]);
    pg(
        "shop",
        "INSERT INTO orders SELECT FROM generate_series(1, 200)",
    );
    let target = pg("shop", "SELECT clock_timestamp()");
    let target_rfc3339 = pg(
        "shop",
        &format!("SELECT to_char('{target}'::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"),
    );
    // the same point as a transaction id, a WAL position and a restore point (the insert
    // position: with synchronous_commit off the write position may lag behind the commits)
    let xid = pg(
        "shop",
        "SELECT xmin::text FROM orders ORDER BY id DESC LIMIT 1",
    );
    pg("shop", "SELECT pg_create_restore_point('before-the-rest')");
    // the insert position: with synchronous_commit off the write position may still be
    // before the commit above
    let lsn = pg("shop", "SELECT pg_current_wal_insert_lsn()::text");
    pg(
        "shop",
        "INSERT INTO orders SELECT FROM generate_series(1, 150)",
    );
    barman(&config, &["switch-wal", "--force", "--archive", "shop"]);
    let url = format!("postgresql://postgres@127.0.0.1:{port}/shop?sslmode=disable");
    (
        cluster,
        Barman {
            config,
            server: "shop",
            url,
            target_rfc3339,
            xid,
            lsn,
            rows_at_target: 300,
            rows: 450,
            home,
            bin: bin.dir,
            port,
        },
    )
}

/// One Barman setup for the whole test binary, for tests that only read it. A watchdog
/// (root) stops its cluster and removes its directory when this process exits.
pub fn shared() -> &'static Barman {
    static SHARED: std::sync::OnceLock<Barman> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("drillbook-it-barman-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cluster, setup) = build(&dir);
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 0.5; done; runuser -u postgres -- {pg_ctl} stop -m immediate -D {data} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            pg_ctl = cluster.bin.dir.join("pg_ctl").display(),
            data = cluster.data_dir().display(),
            dir = dir.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("watchdog");
        // it must outlive this process (init reaps it), and it owns the server from here
        std::mem::forget(child);
        let _ = cluster.detach();
        setup
    })
}

/// A Barman setup of its own, for a test that damages it; stopped and removed on drop.
pub struct Own {
    // fields drop in order: the cluster stops before its directory goes
    _cluster: drillbook::pg::cluster::Cluster,
    pub barman: Barman,
    _dir: TempDir,
}

pub fn own() -> Own {
    let dir = TempDir::new();
    let (cluster, barman) = build(dir.path());
    Own {
        _cluster: cluster,
        barman,
        _dir: dir,
    }
}

fn step<'a>(rec: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    rec["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == id))
        .unwrap_or_else(|| panic!("no step {id}: {rec:#}"))
}

/// A drill with one `barman.recover` (its payload fields after `server` and `config`)
/// and a count of the recovered orders; returns the exit code and record after checking
/// that the run left nothing behind.
fn recover(b: &Barman, fields: &str) -> (i32, serde_json::Value) {
    let yaml = format!(
        "version: 1\nname: barman-test\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    steps:\n      - id: recover\n        barman.recover: {{ server: {server}, config: \"{config}\", database: shop{fields} }}\n      - id: rows\n        sql: {{ db: \"{{{{ steps.recover.connection_uri }}}}\", query: \"SELECT count(*) AS n, max(created_at) AS newest FROM orders\" }}\n",
        server = b.server,
        config = b.config.display(),
    );
    let r = Cli::new()
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "drill", "--format", "json"])
        .run();
    let rec = r.json();
    let id = rec["id"].as_str().expect("run id").to_owned();
    let left = leftovers(&id);
    assert!(left.is_empty(), "left behind by run {id}: {left:#?}");
    (r.code, rec)
}

/// `barman.recover` to a time, to the end of the WAL and to a named backup: the data is
/// exactly as of the target, Barman's facts about the backup are outputs, and the instance
/// is gone after the run.
#[test]
fn barman_recover_restores_exactly_the_target() {
    let b = shared();
    let (code, rec) = recover(b, &format!(", target: \"{}\"", b.target_rfc3339));
    assert_eq!(code, 0, "{rec:#}");
    let rows = &step(&rec, "rows")["outputs"];
    assert_eq!(rows["n"], b.rows_at_target, "{rec:#}");
    let out = &step(&rec, "recover")["outputs"];
    let id = out["backup_id"].as_str().expect("backup_id");
    assert!(id.len() == 15 && id.contains('T'), "{out:#}");
    assert!(
        out["end_wal"].as_str().is_some_and(|w| w.len() == 24),
        "{out:#}"
    );
    assert_eq!(out["timeline"], 1);
    assert!(
        out["begin_time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{out:#}"
    );
    assert!(
        out["end_time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{out:#}"
    );
    assert_eq!(out["target"], b.target_rfc3339);
    assert!(
        out["recovered_to"].is_string() && out["wal_replayed_bytes"].as_u64() > Some(0),
        "{out:#}"
    );
    let uri = out["connection_uri"].as_str().unwrap_or_default();
    assert!(
        uri.starts_with("postgresql://postgres@%2F") && uri.contains("/shop?"),
        "{uri}"
    );
    // to the end of the archived WAL, from the backup named by id
    let (code, rec) = recover(b, &format!(", backup_id: {id}"));
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(step(&rec, "rows")["outputs"]["n"], b.rows, "{rec:#}");
    assert_eq!(step(&rec, "recover")["outputs"]["target"], "latest");
}

/// The shipped drill, against this setup: it passes, and the data recovered is exactly what
/// production held at the target.
#[test]
fn barman_pitr_drill_passes_on_your_own_barman() {
    let b = shared();
    let shipped =
        std::fs::read_to_string(root().join("runbooks/barman-pitr-drill.yaml")).expect("runbook");
    let yaml = shipped.replacen(
        "      - id: integrity\n",
        "      - id: restored-orders\n        sql: { db: \"{{ steps.recover.connection_uri }}\", query: \"SELECT count(*) AS n FROM orders\" }\n      - id: integrity\n",
        1,
    );
    let r = Cli::new()
        .runbook(&yaml)
        .env("DATABASE_URL", &b.url)
        .env("BARMAN_SERVER", b.server)
        .env("BARMAN_CONFIG", &b.config.display().to_string())
        .args([
            "run",
            "runbook.yaml",
            "drill",
            "--param",
            &format!("target_time={}", b.target_rfc3339),
            "--param",
            "database=shop",
            "--format",
            "json",
        ])
        .run();
    let rec = r.json();
    assert_eq!(r.code, 0, "{rec:#}\n{}", r.stderr);
    assert_eq!(rec["verdict"], "passed");
    assert_eq!(
        step(&rec, "restored-orders")["outputs"]["n"],
        b.rows_at_target
    );
    // production has more: the rows written after the target did not come back
    let orders = step(&rec, "integrity")["outputs"]["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == "orders")
        .cloned()
        .expect("orders");
    assert_eq!(orders["rows_restored"], b.rows_at_target);
    assert_eq!(orders["rows_source"], b.rows);
    // the preflight found the backup that fits before anything ran
    let preflight = rec["preflight"].as_array().expect("preflight");
    assert!(
        preflight
            .iter()
            .any(|p| p["step"] == "recover" && p["check"] == "backup" && p["ok"] == true),
        "{preflight:#?}"
    );
    let id = rec["id"].as_str().expect("id");
    assert!(leftovers(id).is_empty(), "{:?}", leftovers(id));
}

/// The preflight's finding on step `recover`, when it failed.
fn refused(rec: &serde_json::Value) -> String {
    let found = rec["preflight"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["step"] == "recover" && p["ok"] == false);
    assert_eq!(step(rec, "recover")["status"], "not_run", "{rec:#}");
    found
        .and_then(|p| p["detail"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A target before the oldest backup and a server Barman does not know: each refused in
/// plain words by the preflight, before anything is created.
#[test]
fn barman_recover_refuses_what_cannot_be_recovered() {
    let b = shared();
    let (code, rec) = recover(b, ", target: \"2020-01-01T00:00:00Z\"");
    assert_ne!(code, 0, "{rec:#}");
    let err = refused(&rec);
    assert!(err.starts_with("no backup of Barman server `shop` ended before the target 2020-01-01T00:00:00Z: the oldest, `"), "{err}");
    let yaml = format!(
        "version: 1\nname: barman-test\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    steps:\n      - id: recover\n        barman.recover: {{ server: nosuch, config: \"{}\" }}\n",
        b.config.display()
    );
    let r = Cli::new()
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "drill", "--format", "json"])
        .run();
    let rec = r.json();
    assert_ne!(r.code, 0, "{rec:#}");
    let err = refused(&rec);
    assert!(
        err.starts_with(&format!(
            "Barman has no server `nosuch` in `{}`",
            b.config.display()
        )),
        "{err}"
    );
    assert!(leftovers(rec["id"].as_str().expect("id")).is_empty());
    // the preflight says the same before the run, in `plan --preflight`
    let r = Cli::new()
        .runbook(&yaml)
        .args(["plan", "runbook.yaml", "drill", "--preflight"])
        .run();
    assert!(
        r.stdout.contains("Barman has no server `nosuch`")
            || r.stderr.contains("Barman has no server `nosuch`"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
}

/// A WAL segment lost from Barman's archive: the recovery fails naming it, and nothing is
/// left behind.
#[test]
fn barman_recover_names_a_missing_wal_segment() {
    let own = own();
    let b = &own.barman;
    let wals = b.home.join("shop/wals");
    let mut segments: Vec<PathBuf> = walk(&wals)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 24)
        })
        .collect();
    segments.sort();
    let lost = segments.last().expect("an archived segment").clone();
    std::fs::remove_file(&lost).expect("lose a segment");
    let (code, rec) = recover(b, &format!(", target: \"{}\"", b.target_rfc3339));
    assert_eq!(code, 1, "{rec:#}");
    let err = step(&rec, "recover")["error"].as_str().unwrap_or_default();
    let name = lost.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        err.contains(&format!("WAL segment {name} is missing")),
        "{err}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A `barman` on PATH that logs each invocation, then runs the real one.
fn counting_barman(dir: &Path) -> (String, PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let log = dir.join("calls.log");
    std::fs::write(&log, "").expect("log");
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v barman"])
            .output()
            .expect("which")
            .stdout,
    )
    .expect("utf8");
    let script = bin.join("barman");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            real.trim()
        ),
    )
    .expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    for d in [dir, &bin] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, log)
}

fn check_runbook(b: &Barman, checks: &str) -> String {
    format!(
        "version: 1\nname: barman-checks\nchecks:\n{}",
        checks
            .replace("SERVER", b.server)
            .replace("CONFIG", &b.config.display().to_string())
    )
}

/// Healthy: every line of `barman check` OK (each a sub-result), the newest backup's age
/// measured; and each Barman question is asked once per check run, however many checks
/// read it.
#[test]
fn barman_checks_pass_on_a_healthy_server_asking_barman_once() {
    let b = shared();
    let cli = Cli::new().runbook(&check_runbook(
        b,
        "  - id: lines\n    barman.check: { server: SERVER, config: CONFIG }\n  - id: age\n    barman.backup_age: { server: SERVER, config: CONFIG, max_age: 25h }\n  - id: age-strict\n    barman.backup_age: { server: SERVER, config: CONFIG }\n    critical: 30d\n",
    ));
    let (path, log) = counting_barman(cli.dir.path());
    // the Cli owns the directory the log is in: keep it until the log is read
    let cli =
        cli.env("PATH", &path)
            .args(["check", "runbook.yaml", "--format", "json", "--no-record"]);
    let r = cli.run();
    let v = r.json();
    assert_eq!(r.code, 0, "{v:#}");
    let checks = v["checks"].as_array().expect("checks");
    let parts = checks[0]["parts"].as_array().expect("parts");
    assert!(
        parts.len() > 10 && parts.iter().all(|p| p["status"] == "OK"),
        "{parts:#?}"
    );
    assert!(
        parts.iter().any(|p| p["name"] == "continuous_archiving"),
        "{parts:#?}"
    );
    for c in &checks[1..] {
        assert_eq!(c["measure"]["name"], "age_seconds", "{c:#}");
        assert!(c["outputs"]["newest"].is_string(), "{c:#}");
    }
    let calls = std::fs::read_to_string(&log).expect("log");
    let count = |what: &str| calls.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("list-backups"), 1, "{calls}");
    assert_eq!(count(" check "), 1, "{calls}");
    // Prometheus: the age feeds the backup-age family, each line a part gauge
    let r = Cli::new()
        .runbook(&check_runbook(b, "  - id: lines\n    barman.check: { server: SERVER, config: CONFIG }\n  - id: age\n    barman.backup_age: { server: SERVER, config: CONFIG }\n"))
        .args(["check", "runbook.yaml", "--format", "prometheus", "--no-record"])
        .run();
    r.code(0);
    assert!(r.stdout.contains("drillbook_backup_age_seconds{runbook=\"barman-checks\",check=\"age\",kind=\"barman.backup_age\"}"), "{}", r.stdout);
    assert!(r.stdout.contains("drillbook_check_part_status{runbook=\"barman-checks\",check=\"lines\",kind=\"barman.check\",part=\"continuous_archiving\"} 0"), "{}", r.stdout);
}

/// As an outage would: a backup older than the threshold is CRITICAL, and so is broken WAL
/// archiving (production's archive_command failing), with the failing line of `barman
/// check` named as a CRITICAL sub-result; a server Barman does not know is CRITICAL too.
#[test]
fn barman_checks_turn_critical_as_an_outage_would() {
    let own = own();
    let b = &own.barman;
    // the newest backup is at least a second old (Barman's clock is the wall clock)
    let listed = barman(&b.config, &["-f", "json", "list-backups", "shop"]);
    let v: serde_json::Value = serde_json::from_str(&listed).expect("json");
    let ended: u64 = v["shop"][0]["end_time_timestamp"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("end");
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("now")
        .as_secs()
        <= ended + 1
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // archiving breaks: every segment fails
    let pg = |sql: &str| crate::support::psql_at(&b.bin, b.port, "postgres", sql);
    pg("ALTER SYSTEM SET archive_command = 'false'");
    pg("SELECT pg_reload_conf()");
    pg("CREATE TABLE filler AS SELECT 1 AS x; SELECT pg_switch_wal()");
    while pg("SELECT failed_count FROM pg_stat_archiver") == "0" {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = Cli::new()
        .runbook(&check_runbook(
            b,
            "  - id: lines\n    barman.check: { server: SERVER, config: CONFIG }\n  - id: stale\n    barman.backup_age: { server: SERVER, config: CONFIG, max_age: 1s }\n  - id: stale-measure\n    barman.backup_age: { server: SERVER, config: CONFIG }\n    critical: 1s\n  - id: unknown-server\n    barman.backup_age: { server: nosuch, config: CONFIG }\n",
        ))
        .args(["check", "runbook.yaml", "--format", "json", "--no-record"])
        .run();
    let v = r.json();
    assert_eq!(r.code, 2, "{v:#}");
    let by_id = |id: &str| {
        v["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|x| x["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("{id}"))
    };
    let lines = by_id("lines");
    assert_eq!(lines["status"], "CRITICAL", "{lines:#}");
    let parts = lines["parts"].as_array().expect("parts");
    let failing: Vec<&str> = parts
        .iter()
        .filter(|p| p["status"] == "CRITICAL")
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        failing.contains(&"continuous_archiving") || failing.contains(&"archive_command"),
        "{parts:#?}"
    );
    assert!(
        lines["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("barman check shop: ")),
        "{lines:#}"
    );
    for id in ["stale", "stale-measure"] {
        assert_eq!(by_id(id)["status"], "CRITICAL", "{:#}", by_id(id));
    }
    let unknown = by_id("unknown-server");
    assert_eq!(unknown["status"], "CRITICAL", "{unknown:#}");
    assert!(
        unknown["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Barman has no server `nosuch`")),
        "{unknown:#}"
    );
    // the table shows the failing line under its check
    let r = Cli::new()
        .runbook(&check_runbook(
            b,
            "  - id: lines\n    barman.check: { server: SERVER, config: CONFIG }\n",
        ))
        .args(["check", "runbook.yaml", "--no-record"])
        .run();
    r.code(2);
    assert!(
        r.stdout.contains("└ continuous_archiving") || r.stdout.contains("└ archive_command"),
        "{}",
        r.stdout
    );
}

/// Interrupts `barman recover` once its data directory is being filled: one Ctrl-C (cleanup
/// runs), or two (cleanup aborted; what is left is named and `gc` removes it). Either way no
/// server and, in the end, no scratch directory is left, and Barman's copy was stopped.
fn interrupt_recover(twice: bool) {
    use std::io::{BufRead, BufReader};
    let b = shared();
    let cli = Cli::new();
    let tmp = cli.dir.join("tmp");
    std::fs::create_dir(&tmp).expect("tmp");
    let tmp_env = tmp.display().to_string();
    let yaml = format!(
        "version: 1\nname: barman-interrupt\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    steps:\n      - id: recover\n        barman.recover: {{ server: shop, config: \"{}\", target: \"{}\" }}\n",
        b.config.display(),
        b.target_rfc3339
    );
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
        let ok = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
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
        if line.contains("recover — ") {
            // once Barman is filling the data directory
            let data = tmp.join(format!("drillbook-{run_id}-recover")).join("data");
            let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::fs::read_dir(&data)
                .map(|mut d| d.next().is_none())
                .unwrap_or(true)
                && std::time::Instant::now() < until
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            interrupt();
            if twice {
                interrupt();
            }
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(!run_id.is_empty(), "{seen}");
    let running = || {
        let ps = Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .expect("ps");
        String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains(&format!("drillbook-{run_id}")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(
        running().is_empty(),
        "still running: {:#?}\n{seen}",
        running()
    );
    if twice {
        let r = Cli::new()
            .env("TMPDIR", &tmp_env)
            .args(["gc", "--yes"])
            .run();
        assert!(r.code == 0, "{}\n{}", r.stdout, r.stderr);
    } else {
        assert!(seen.contains("[undo] ✓ recover:undo ok"), "{seen}");
    }
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .expect("tmp")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| {
            n.to_string_lossy()
                .starts_with(&format!("drillbook-{run_id}"))
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}\n{seen}");
}

#[test]
fn interrupt_during_barman_recover_leaves_nothing_behind() {
    interrupt_recover(false);
}

#[test]
fn a_second_interrupt_during_barman_recover_leaves_no_server_and_gc_removes_the_rest() {
    interrupt_recover(true);
}

/// A transaction id, a WAL position and a restore point name each recover exactly the rows
/// written before them.
#[test]
fn barman_recover_reaches_every_kind_of_target() {
    let b = shared();
    for target in [
        format!("xid:{}", b.xid),
        b.lsn.clone(),
        "before-the-rest".to_owned(),
    ] {
        let (code, rec) = recover(b, &format!(", target: \"{target}\""));
        assert_eq!(code, 0, "{target}: {rec:#}");
        assert_eq!(
            step(&rec, "rows")["outputs"]["n"],
            b.rows_at_target,
            "{target}: {rec:#}"
        );
        assert_eq!(step(&rec, "recover")["outputs"]["target"], target.as_str());
    }
}

/// `keep: true` leaves the recovered instance running after the run, says how to stop it,
/// and nothing (neither the run nor `gc`) removes it.
#[test]
fn barman_recover_keep_leaves_the_instance_running() {
    let b = shared();
    let cli = Cli::new();
    let dir = cli.dir.join("kept");
    let yaml = format!(
        "version: 1\nname: barman-keep\nprocedures:\n  recover:\n    title: Recover\n    kind: recovery\n    steps:\n      - id: recover\n        barman.recover: {{ server: shop, config: \"{}\", target: \"{}\", dir: \"{}\", database: shop, keep: true }}\n",
        b.config.display(),
        b.target_rfc3339,
        dir.display()
    );
    let cli = cli.runbook(&yaml).args([
        "run",
        "runbook.yaml",
        "recover",
        "--yes",
        "--format",
        "json",
    ]);
    let r = cli.run();
    let rec = r.json();
    assert_eq!(r.code, 0, "{rec:#}\n{}", r.stderr);
    let out = &step(&rec, "recover")["outputs"];
    assert_eq!(out["kept"], true, "{out:#}");
    assert!(out["psql_command"].is_string(), "{out:#}");
    let stop = out["stop_command"]
        .as_str()
        .expect("stop_command")
        .to_owned();
    assert!(
        stop.contains(" stop -D ") && stop.contains(&dir.display().to_string()),
        "{stop}"
    );
    let undone: Vec<&str> = rec["cleanup"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(undone.is_empty(), "{undone:?}");
    // still there and answering through its private socket
    let socket = dir.join("socket");
    let port = out["port"].to_string();
    let rows = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(b.bin.join("psql"))
        .args(["-h"])
        .arg(&socket)
        .args([
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "shop",
            "-XAtc",
            "SELECT count(*) FROM orders",
        ])
        .output()
        .expect("psql");
    let stopped = Command::new("sh")
        .args(["-c", &stop])
        .status()
        .expect("stop");
    assert!(stopped.success(), "{stop}");
    assert_eq!(
        String::from_utf8_lossy(&rows.stdout).trim(),
        b.rows_at_target.to_string(),
        "{}",
        String::from_utf8_lossy(&rows.stderr)
    );
}

/// A target after the newest archived transaction (a quiet database, `now`): Barman's copy
/// succeeds, then recovery ends before the target; the step fails at once in plain words
/// instead of waiting for a promotion that never comes, and nothing is left behind.
#[test]
fn barman_recover_explains_a_target_after_the_archive() {
    let b = shared();
    let (code, rec) = recover(b, ", target: now");
    assert_eq!(code, 1, "{rec:#}");
    let err = step(&rec, "recover")["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("the target is after the newest archived transaction: recovery replayed all of the WAL Barman copied from server `shop`"),
        "{err}"
    );
}

/// With `provider: barman`, `server` and `config`, the document states what Barman is
/// configured to keep for that server (its section over `[barman]`, found in the
/// configuration directory the main file names) beside the declared policy, and nothing
/// else from the files.
#[test]
fn the_document_states_barmans_configured_retention_beside_the_policy() {
    let dir = TempDir::new();
    let servers = dir.join("barman.d");
    std::fs::create_dir_all(&servers).expect("dir");
    let main = dir.join("barman.conf");
    std::fs::write(
        &main,
        format!(
            "[barman]\nbarman_home = /var/lib/barman\nconfiguration_files_directory = {}\nminimum_redundancy = 1\nretention_policy = REDUNDANCY 2\n",
            servers.display()
        ),
    )
    .expect("main");
    std::fs::write(
        servers.join("shop.conf"),
        "[shop]\nconninfo = host=db user=barman password=hunter2-secret\nretention_policy = RECOVERY WINDOW OF 4 WEEKS\n",
    )
    .expect("server");
    std::fs::write(
        servers.join("other.conf"),
        "[other]\nretention_policy = REDUNDANCY 9\n",
    )
    .expect("other");
    let yaml = format!(
        "version: 1\nname: shop\nbackup_policy:\n  schedule: \"0 1 * * *\"\n  retention: {{ daily: 7, weekly: 4 }}\n  provider: barman\n  server: shop\n  config: {}\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: a\n        assert: 'true'\n",
        main.display()
    );
    let r = Cli::new()
        .runbook(&yaml)
        .args(["render", "runbook.yaml", "--as-of", "2026-12-01T00:00:00Z"])
        .run();
    r.code(0);
    assert!(r.stdout.contains("| Weekly | 4 weeks |"), "{}", r.stdout);
    let stated = format!(
        "Barman is configured (in `{}`, server `shop`) to keep: `minimum_redundancy=1`, `retention_policy=RECOVERY WINDOW OF 4 WEEKS`.",
        main.display()
    );
    assert!(r.stdout.contains(&stated), "{}", r.stdout);
    assert!(!r.stdout.contains("hunter2"), "{}", r.stdout);
    assert!(!r.stdout.contains("REDUNDANCY 9"), "{}", r.stdout);
}
