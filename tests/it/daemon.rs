//! `drillbook daemon` as a process: its loopback endpoints answer, a non-loopback address is
//! refused, and SIGTERM stops it cleanly; `/healthz` and `/status` follow the backups'
//! health as the history records it (a stale backup, a failing archiver, a tampered
//! history, and back); under an injected clock, a check not yet run and an overdue drill;
//! and its endpoints answer a request that arrives in two TCP segments. (The scheduling
//! itself is tested under paused time in `src/daemon.rs`.)

use std::io::{Read, Write};
use std::net::SocketAddr;

use crate::support::Cli;

const RUNBOOK: &str = r#"version: 1
name: watched
checks:
  - id: always
    shell: "true"
procedures:
  drill:
    title: Drill
    kind: drill
    schedule: "0 9 1 * *"
    steps:
      - id: a
        shell: "true"
"#;

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn the_daemon_serves_health_and_metrics_and_stops_on_sigterm() {
    serves_and_stops_on("TERM");
}

/// A closed terminal or `systemctl reload`-style SIGHUP stops it as cleanly as SIGTERM.
#[test]
fn the_daemon_stops_cleanly_on_sighup() {
    serves_and_stops_on("HUP");
}

/// `drillbook daemon runbook.yaml` of `c`'s directory, listening on `port`; the Cli owns
/// that directory, so it is handed back to be kept while the daemon runs.
fn daemon_on(c: Cli, port: u16, stderr: std::process::Stdio) -> (Cli, std::process::Child) {
    let c = c.args([
        "daemon",
        "runbook.yaml",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let child = c.command().stderr(stderr).spawn().expect("daemon");
    (c, child)
}

fn serves_and_stops_on(signal: &str) {
    let port = drillbook::pg::cluster::free_port().expect("port");
    let (_c, child) = daemon_on(
        Cli::new().runbook(RUNBOOK),
        port,
        std::process::Stdio::piped(),
    );
    // wait for the listener (the process starts in well under a second)
    let live = wait_for(port);
    assert!(
        live.starts_with("HTTP/1.1 200") && live.ends_with("ok\n"),
        "{live}"
    );
    // the scheduled drill never passed: the daemon is alive, the backups are not healthy
    let health = get(port, "/healthz").expect("healthz");
    assert!(
        health.starts_with("HTTP/1.1 503")
            && health.ends_with("CRITICAL: watched: drill drill overdue: it never passed\n"),
        "{health}"
    );
    let metrics = get(port, "/metrics").expect("metrics");
    assert!(metrics.contains("drillbook_daemon_up 1"), "{metrics}");
    assert!(get(port, "/nope").expect("404").starts_with("HTTP/1.1 404"));
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("kill")
        .success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("watched/drill on `0 9 1 * *`")
            && err.contains("watched/checks on `0 0 * * *`"),
        "{err}"
    );
    assert!(err.contains("stopping"), "{err}");
}

/// Waits for the daemon's listener (the process starts in well under a second); `/livez`.
fn wait_for(port: u16) -> String {
    let live = (0..100).find_map(|_| {
        let r = get(port, "/livez");
        if r.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        r
    });
    live.expect("the daemon never answered /livez")
}

/// The status code and the body of a response.
fn split(response: &str) -> (u16, String) {
    let code = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_owned())
}

/// The watched runbook; `archiver` is the archiver check's kind and payload.
fn health_runbook(archiver: &str) -> String {
    format!(
        r#"version: 1
name: watched
objectives:
  rto: 15m
checks:
  - id: backup-age
    local.backup_age: {{ dir: backups, max_age: 1d }}
  - id: archiver
    title: WAL archiving works
    {archiver}
procedures:
  drill:
    title: Drill
    kind: drill
    schedule: "0 9 1 * *"
    steps:
      - id: a
        shell: "true"
"#
    )
}

/// The archiver check of the tests that need no server: a file says whether it works.
const FILE_ARCHIVER: &str = r#"shell: "test -f archiver-ok""#;

/// A base backup's label, taken `hours_ago`.
fn backup_taken(dir: &std::path::Path, hours_ago: i64) {
    let at = chrono::Utc::now() - chrono::Duration::hours(hours_ago);
    let b = dir.join("backups/base1");
    std::fs::create_dir_all(b.join("global")).expect("backup dir");
    std::fs::write(b.join("global/pg_control"), "").expect("pg_control");
    std::fs::write(
        b.join("backup_label"),
        format!(
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIME: {} UTC\nLABEL: base1\n",
            at.format("%Y-%m-%d %H:%M:%S")
        ),
    )
    .expect("label");
}

/// `drillbook ARGS` in `dir`.
fn drillbook_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Cli::new()
        .args(args)
        .command()
        .current_dir(dir)
        .output()
        .expect("drillbook")
}

/// A directory with the watched runbook, a backup an hour old, a working archiver and a
/// passed drill (the Cli owns the directory).
fn watched(archiver: &str) -> (Cli, std::path::PathBuf) {
    let c = Cli::new().runbook(&health_runbook(archiver));
    let dir = c.command().get_current_dir().expect("dir").to_owned();
    backup_taken(&dir, 1);
    std::fs::write(dir.join("archiver-ok"), "").expect("archiver");
    let ran = drillbook_in(&dir, &["run", "runbook.yaml", "drill"]);
    assert_eq!(ran.status.code(), Some(0));
    (c, dir)
}

#[test]
fn healthz_follows_a_stale_backup_a_failing_archiver_and_a_tampered_history_and_recovers() {
    let port = drillbook::pg::cluster::free_port().expect("port");
    // a real server archiving its WAL, set up as an administrator's own
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = crate::support::TempDir::new();
    let bin = drillbook::pg::cluster::find_binaries().expect("binaries");
    let cluster =
        crate::support::archiving_cluster(&rt, &bin, &tmp.join("archive"), &tmp.join("pg"));
    let pg = |sql: &str| crate::support::psql_as(&bin.dir, cluster.port, "admin", "postgres", sql);
    let (c, dir) = watched(&format!(
        "local.archiver: {{ db: \"{}\" }}",
        cluster.url("postgres")
    ));
    let cli = |args: &[&str]| drillbook_in(&dir, args);
    assert_eq!(cli(&["check", "runbook.yaml"]).status.code(), Some(0));
    // the Cli owns the directory: kept until the end
    let (_c, daemon) = daemon_on(c, port, std::process::Stdio::null());
    wait_for(port);
    let health = || get(port, "/healthz").expect("healthz");
    let status = || -> (u16, serde_json::Value) {
        let r = get(port, "/status").expect("status");
        let (code, body) = split(&r);
        (code, serde_json::from_str(&body).expect("status JSON"))
    };

    // healthy: both checks OK and current, the drill passed, the history verifies
    assert_eq!(split(&health()), (200, "ok\n".to_owned()));
    let (code, s) = status();
    assert_eq!(code, 200);
    assert_eq!(
        (s["status"].as_str(), s["healthy"].as_bool()),
        (Some("OK"), Some(true))
    );
    let rb = &s["runbooks"][0];
    assert_eq!(rb["name"], "watched");
    assert_eq!(rb["checks"][0]["status"], "OK");
    assert_eq!(rb["checks"][0]["result"], "current");
    assert_eq!(rb["checks"][0]["measure"]["name"], "age_seconds");
    let age = rb["checks"][0]["measure"]["value"].as_f64().expect("age");
    assert!((3500.0..7200.0).contains(&age), "{age}");
    assert!(rb["checks"][1]["age_seconds"].as_i64().is_some());
    let drill = &rb["procedures"][0];
    assert_eq!(
        (drill["id"].as_str(), drill["last_verdict"].as_str()),
        (Some("drill"), Some("passed"))
    );
    assert!(drill["last_pass"].is_string() && drill["next_due"].is_string());
    assert_eq!(drill["rto"]["objective"], "15m");
    assert_eq!(drill["overdue"], false);
    assert_eq!(s["history"]["verified"], true);
    assert_eq!(s["history"]["entries"], 2);
    assert_eq!(s["history"]["head"].as_str().map(str::len), Some(64));

    // the newest backup is 3 days old: CRITICAL at the next check run
    backup_taken(&dir, 72);
    assert_eq!(cli(&["check", "runbook.yaml"]).status.code(), Some(2));
    let (code, body) = split(&health());
    assert_eq!(code, 503);
    assert!(
        body.starts_with("CRITICAL: watched: check backup-age CRITICAL: ")
            && body.ends_with("\n")
            && body.lines().count() == 1,
        "{body}"
    );
    assert_eq!(status().1["runbooks"][0]["checks"][0]["status"], "CRITICAL");

    // a fresh backup, but the archive goes read-only: the server's archive_command fails
    backup_taken(&dir, 1);
    pg("ALTER SYSTEM SET archive_command = 'false'");
    pg("SELECT pg_reload_conf()");
    pg("CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1)");
    pg("SELECT pg_switch_wal()");
    while pg("SELECT failed_count > 0 FROM pg_stat_archiver") != "t" {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(cli(&["check", "runbook.yaml"]).status.code(), Some(2));
    let (code, body) = split(&health());
    assert_eq!(code, 503);
    assert!(
        body.starts_with("CRITICAL: watched: check archiver CRITICAL: "),
        "{body}"
    );
    let (code, s) = status();
    assert_eq!(code, 503);
    assert_eq!(s["runbooks"][0]["checks"][0]["status"], "OK");
    assert_eq!(s["runbooks"][0]["checks"][1]["status"], "CRITICAL");

    // repaired: the segment is archived at the next try, and the check says so
    pg("ALTER SYSTEM RESET archive_command");
    pg("SELECT pg_reload_conf()");
    while pg("SELECT last_archived_time > last_failed_time FROM pg_stat_archiver") != "t" {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(cli(&["check", "runbook.yaml"]).status.code(), Some(0));
    assert_eq!(split(&health()), (200, "ok\n".to_owned()));

    // someone edits a recorded run: nothing read from the history is trusted
    let file = dir.join("drills/history.jsonl");
    let kept = std::fs::read(&file).expect("history");
    let text = String::from_utf8(kept.clone()).expect("utf-8");
    std::fs::write(&file, text.replacen("\"passed\"", "\"failed\"", 1)).expect("tamper");
    let (code, body) = split(&health());
    assert_eq!(code, 503);
    assert!(
        body.starts_with("CRITICAL: the history drills/history.jsonl is broken at entry 1"),
        "{body}"
    );
    let (_, s) = status();
    assert_eq!(s["history"]["verified"], false);
    assert!(
        s["history"]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("broken")),
        "{s}"
    );

    // restored from the backup copy: healthy again
    std::fs::write(&file, kept).expect("restore");
    assert_eq!(split(&health()), (200, "ok\n".to_owned()));
    assert_eq!(status().1["history"]["verified"], true);

    let pid = daemon.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let out = daemon.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
}

/// The wall clock the test sets.
struct SetClock(std::sync::Mutex<chrono::DateTime<chrono::Utc>>);

impl drillbook::daemon::Clock for SetClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().expect("clock")
    }
}

#[test]
fn a_check_not_yet_run_is_pending_then_unknown_and_an_overdue_drill_is_critical_until_it_passes() {
    let (_owner, dir) = watched(FILE_ARCHIVER);
    let cli = |args: &[&str]| drillbook_in(&dir, args);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let start = chrono::Utc::now();
    let clock = std::sync::Arc::new(SetClock(std::sync::Mutex::new(start)));
    let set = |t| *clock.0.lock().expect("clock") = t;
    let path = dir.join("runbook.yaml").display().to_string();
    let runbook = drillbook::runbook::load_file(&path).expect("runbook");
    let store = drillbook::history::Store::File(dir.join("drills/history.jsonl"));
    let freshness = drillbook::engine::status::Freshness {
        checks: drillbook::cron::Cron::parse("0 0 * * *").expect("cron"),
        grace: "1h".parse().expect("grace"),
        pending_until: Some(start + chrono::Duration::hours(1)),
    };
    let source = drillbook::cli::daemon::health_source(
        vec![runbook],
        store.clone(),
        freshness,
        clock.clone(),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let stop = drillbook::cancel::Cancel::new();
    rt.spawn(drillbook::daemon::serve(
        listener,
        drillbook::daemon::States::default(),
        source,
        stop.clone(),
    ));
    let health = || get(port, "/healthz").expect("healthz");

    // just started, the checks have not run: pending, not a reason to page
    assert_eq!(split(&health()), (200, "ok\n".to_owned()));
    let r = get(port, "/status").expect("status");
    let s: serde_json::Value = serde_json::from_str(&split(&r).1).expect("json");
    assert_eq!(
        s["runbooks"][0]["checks"][0]["status"],
        serde_json::Value::Null
    );
    assert_eq!(s["runbooks"][0]["checks"][0]["result"], "pending");

    // past the grace period, still no result: not known, so not healthy
    set(start + chrono::Duration::hours(2));
    let (code, body) = split(&health());
    assert_eq!(code, 503);
    assert!(
        body.starts_with("UNKNOWN: watched: check backup-age UNKNOWN: no recorded result"),
        "{body}"
    );

    // the checks run
    assert_eq!(cli(&["check", "runbook.yaml"]).status.code(), Some(0));
    let now = chrono::Utc::now();
    set(now);
    assert_eq!(split(&health()), (200, "ok\n".to_owned()));

    // 40 days on: the monthly drill is overdue (CRITICAL, said first) and the check results
    // are stale
    let later = now + chrono::Duration::days(40);
    set(later);
    let (code, body) = split(&health());
    assert_eq!(code, 503);
    assert!(
        body.starts_with("CRITICAL: watched: drill drill overdue: last passed "),
        "{body}"
    );
    let r = get(port, "/status").expect("status");
    let s: serde_json::Value = serde_json::from_str(&split(&r).1).expect("json");
    assert_eq!(s["runbooks"][0]["procedures"][0]["overdue"], true);
    assert_eq!(s["runbooks"][0]["checks"][1]["result"], "stale");
    assert_eq!(s["runbooks"][0]["checks"][1]["status"], "UNKNOWN");

    // the drill and the checks run again that day (their records moved to the clock's time)
    let entries = rt.block_on(store.trusted_entries()).expect("history");
    for e in entries {
        let mut r = e.drill().expect("record");
        let shift = |t: chrono::DateTime<chrono::Utc>| t + chrono::Duration::days(40);
        r.id = format!("{}-later", r.id);
        r.started_at = shift(r.started_at);
        r.finished_at = shift(r.finished_at);
        for st in &mut r.steps {
            st.started_at = st.started_at.map(shift);
        }
        rt.block_on(store.append(&r)).expect("append");
    }
    assert_eq!(split(&health()), (200, "ok\n".to_owned()));
    stop.interrupt();
}

#[test]
fn the_daemon_listens_on_loopback_only() {
    let r = Cli::new()
        .runbook(RUNBOOK)
        .args(["daemon", "runbook.yaml", "--listen", "0.0.0.0:9187"])
        .run();
    r.code(2);
    assert!(r.stderr.contains("loopback"), "{}", r.stderr);
}

#[test]
fn a_request_in_two_segments_gets_the_metrics() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let server = listener.local_addr().expect("server address");
    let states = drillbook::daemon::States::default();
    states.lock().expect("states").insert(
        "watched/drill".into(),
        drillbook::daemon::JobState {
            runs: 2,
            last_exit: Some(0),
            ..Default::default()
        },
    );
    let stop = drillbook::cancel::Cancel::new();
    let healthy: drillbook::daemon::HealthSource = std::sync::Arc::new(|| {
        Box::pin(async {
            drillbook::daemon::Health {
                healthy: true,
                summary: "ok".into(),
                status: "{}".into(),
            }
        })
    });
    rt.spawn(drillbook::daemon::serve(
        listener,
        states.clone(),
        healthy,
        stop.clone(),
    ));

    let mut s = std::net::TcpStream::connect(server).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let (first, rest) = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".split_at(8);
    s.write_all(first.as_bytes()).expect("first segment");
    s.flush().expect("flush");
    let client = s.local_addr().expect("client address");
    wait_until_read(client, server);
    s.write_all(rest.as_bytes()).expect("second segment");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");

    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(
        out.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
        "{out}"
    );
    let body = drillbook::daemon::metrics(&states);
    assert!(body.contains("drillbook_job_runs{job=\"watched/drill\"} 2\n"));
    assert!(out.ends_with(&format!("\r\n\r\n{body}")), "{out}");
    stop.interrupt();
}

/// Waits until what `client` sent to `server` was acknowledged and then read by the server
/// process, from the send and receive queues Linux shows in /proc/net/tcp. A bounded busy
/// wait: if the queues never drain it returns anyway, and the test only loses its edge.
fn wait_until_read(client: SocketAddr, server: SocketAddr) {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(_) => unreachable!("the test listens on 127.0.0.1"),
    };
    // (tx_queue, rx_queue) of the socket from `local` to `remote`
    let queues = |local: &str, remote: &str| -> Option<(u64, u64)> {
        let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
        table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(1) != Some(&local) || f.get(2) != Some(&remote) {
                return None;
            }
            let (tx, rx) = f.get(4)?.split_once(':')?;
            Some((
                u64::from_str_radix(tx, 16).ok()?,
                u64::from_str_radix(rx, 16).ok()?,
            ))
        })
    };
    let (c, s) = (hex(client), hex(server));
    let mut acknowledged = false;
    for _ in 0..100_000 {
        if !acknowledged {
            acknowledged = queues(&c, &s).is_some_and(|(tx, _)| tx == 0);
        } else if queues(&s, &c).is_some_and(|(_, rx)| rx == 0) {
            return;
        }
        std::thread::yield_now();
    }
}
