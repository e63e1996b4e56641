//! `drillbook check` through the real binary against the fake Neon and a real history:
//! monitoring exit codes for OK, WARNING, CRITICAL and UNKNOWN, thresholds, and the three
//! output formats (the Prometheus one checked line by line against the exposition format).

use crate::neon::{cli, shipped};
use crate::neon_fake::{FakeNeon, Options};
use crate::support::Cli;

fn healthy() -> FakeNeon {
    let fake = FakeNeon::start(Options {
        schedule: vec![
            serde_json::json!({"frequency": "daily", "hour": 0, "retention_seconds": 604800}),
            serde_json::json!({"frequency": "weekly", "day": 1, "hour": 0, "retention_seconds": 2419200}),
        ],
        ..Options::default()
    });
    fake.add_snapshot(chrono::Utc::now() - chrono::Duration::hours(3));
    fake
}

/// Runs the shipped drill against the fake so the history holds a recent pass.
fn pass_the_drill(fake: &FakeNeon, c: &Cli) {
    fake.psql(
        "main",
        "CREATE TABLE orders (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO orders DEFAULT VALUES;",
    );
    let t = fake.psql(
        "main",
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    let history = c.dir.join("drills/history.jsonl").display().to_string();
    cli(fake, &shipped())
        .args([
            "run",
            "runbook.yaml",
            "pitr-drill",
            "--param",
            &format!("target_time={t}"),
            "--history",
            &history,
        ])
        .run()
        .code(0);
}

fn check(c: &Cli, fake: &FakeNeon, format: &str) -> crate::support::Run {
    let history = c.dir.join("drills/history.jsonl").display().to_string();
    cli(fake, &shipped())
        .args([
            "check",
            "runbook.yaml",
            "--format",
            format,
            "--history",
            &history,
        ])
        .run()
}

fn statuses(r: &crate::support::Run) -> Vec<(String, String)> {
    r.json()["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().expect("id").to_owned(),
                c["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_healthy_setup_is_ok_and_a_threshold_warns() {
    let fake = healthy();
    let c = Cli::new();
    pass_the_drill(&fake, &c);
    let r = check(&c, &fake, "json");
    r.code(0);
    assert!(statuses(&r).iter().all(|(_, s)| s == "OK"), "{}", r.stdout);
    // a warning threshold the snapshot's age crosses (3h old, warn at 2h)
    let yaml = shipped().replace("    warn: 24h\n", "    warn: 2h\n");
    let history = c.dir.join("drills/history.jsonl").display().to_string();
    let w = cli(&fake, &yaml)
        .args([
            "check",
            "runbook.yaml",
            "--format",
            "json",
            "--history",
            &history,
        ])
        .run();
    w.code(1);
    let warned: Vec<_> = statuses(&w)
        .into_iter()
        .filter(|(_, s)| s != "OK")
        .collect();
    assert_eq!(
        warned,
        [("latest-snapshot".to_owned(), "WARNING".to_owned())]
    );
    assert!(w.json()["checks"][3]["message"]
        .as_str()
        .is_some_and(|m| m.contains("warning threshold 2h")));
}

#[test]
fn a_broken_setup_is_critical_even_when_another_check_cannot_run() {
    let fake = FakeNeon::start(Options {
        retention_seconds: 86_400,
        ..Options::default()
    });
    fake.add_snapshot(chrono::Utc::now() - chrono::Duration::hours(30));
    let c = Cli::new();
    let r = check(&c, &fake, "json");
    r.code(2);
    let s = statuses(&r);
    let get = |id: &str| s.iter().find(|(i, _)| i == id).map(|(_, st)| st.as_str());
    assert_eq!(get("restore-window"), Some("CRITICAL"));
    assert_eq!(get("backup-schedule"), Some("CRITICAL"));
    assert_eq!(get("latest-snapshot"), Some("CRITICAL"));
    assert_eq!(get("monthly-drill"), Some("CRITICAL"));
    assert_eq!(get("project"), Some("OK"));
    // the run is in the history: a failed "checks" record naming what failed
    let rec: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(c.dir.join("drills/history.jsonl"))
            .expect("history")
            .lines()
            .last()
            .expect("an entry"),
    )
    .expect("entry");
    assert_eq!(rec["record"]["procedure"]["id"], "checks");
    assert_eq!(rec["record"]["procedure"]["kind"], "check");
    assert_eq!(rec["record"]["verdict"], "failed");
    assert!(rec["record"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("restore-window CRITICAL")));
    // with Neon unreachable, its checks are UNKNOWN; the overdue drill is still CRITICAL
    let r = Cli::new()
        .runbook(&shipped())
        .env("NEON_API_KEY", "k")
        .env("NEON_API_URL", "http://127.0.0.1:9/api/v2")
        .env("NEON_PROJECT_ID", "p")
        .args([
            "check",
            "runbook.yaml",
            "--format",
            "json",
            "--history",
            "none.jsonl",
        ])
        .run();
    r.code(2);
    assert_eq!(
        statuses(&r).iter().filter(|(_, s)| s == "UNKNOWN").count(),
        4,
        "{}",
        r.stdout
    );
}

#[test]
fn every_check_unknown_exits_3_and_names_the_cause() {
    let r = Cli::new()
        .runbook(&shipped().replace("  - id: monthly-drill\n    title: The point-in-time recovery drill passed within 35 days\n    history.last_pass: { procedure: pitr-drill, max_age: 35d }\n", ""))
        .env("NEON_PROJECT_ID", "p")
        .args(["check", "runbook.yaml"])
        .run();
    r.code(3);
    assert!(
        r.stdout.contains("UNKNOWN") && r.stdout.contains("NEON_API_KEY"),
        "{}",
        r.stdout
    );
}

/// One sample line of the text exposition format: `name{l="v",…} value`.
pub(crate) fn sample_ok(line: &str) -> bool {
    let Some((head, value)) = line.rsplit_once(' ') else {
        return false;
    };
    if value.parse::<f64>().is_err() {
        return false;
    }
    let (name, labels) = match head.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')),
        None => (head, Some("")),
    };
    let name_ok = !name.is_empty()
        && name.chars().enumerate().all(|(i, c)| {
            c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
        });
    let labels_ok = labels.is_some_and(|l| {
        l.is_empty()
            || l.split("\",").all(|kv| {
                kv.split_once("=\"").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
                })
            })
    });
    name_ok && labels_ok
}

#[test]
fn prometheus_output_is_the_exposition_format_with_drill_metrics() {
    let fake = healthy();
    let c = Cli::new();
    pass_the_drill(&fake, &c);
    let r = check(&c, &fake, "prometheus");
    r.code(0);
    let mut typed = std::collections::BTreeSet::new();
    for line in r.stdout.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert_eq!(kind, "gauge");
            assert!(typed.insert(name.to_owned()), "{name} typed twice");
        } else if !line.starts_with("# HELP ") {
            assert!(sample_ok(line), "not a sample line: {line}");
            let name = line.split(['{', ' ']).next().expect("name");
            assert!(typed.contains(name), "{name} has no TYPE line before it");
        }
    }
    for metric in [
        "drillbook_check_status",
        "drillbook_backup_age_seconds",
        "drillbook_restore_window_seconds",
        "drillbook_last_drill_rto_seconds",
        "drillbook_last_pass_timestamp_seconds",
    ] {
        assert!(typed.contains(metric), "{metric} missing:\n{}", r.stdout);
    }
    assert!(r.stdout.contains("drillbook_restore_window_seconds{runbook=\"neon-production\",check=\"restore-window\",kind=\"neon.retention\"} 604800"), "{}", r.stdout);
}

/// A check run is a record of kind `check` that every reader of the history can read back:
/// `history list`, `show` and `stats` take it without a warning, and the next scrape's
/// `drillbook_last_pass_timestamp_seconds` has the `checks` procedure.
#[test]
fn recorded_check_runs_read_back_everywhere() {
    let fake = healthy();
    let c = Cli::new();
    let history = c.dir.join("drills/history.jsonl").display().to_string();
    // CRITICAL: the drill has never passed; recorded all the same
    check(&c, &fake, "json").code(2);
    let list = Cli::new()
        .args(["history", "list", "--history", &history, "--format", "json"])
        .run();
    list.code(0);
    assert!(!list.stderr.contains("warning"), "{}", list.stderr);
    let runs = list.json();
    let run = &runs.as_array().expect("runs")[0];
    assert_eq!(run["procedure"], "checks");
    assert_eq!(run["kind"], "check");
    let id = run["id"].as_str().expect("id");
    let show = Cli::new()
        .args(["history", "show", id, "--history", &history])
        .run();
    show.code(0);
    assert!(show.stdout.contains("checks"), "{}", show.stdout);
    let stats = Cli::new()
        .args([
            "history",
            "stats",
            "--history",
            &history,
            "--format",
            "json",
        ])
        .run();
    assert!(!stats.stderr.contains("warning"), "{}", stats.stderr);
    assert!(stats.stdout.contains("\"checks\""), "{}", stats.stdout);
    pass_the_drill(&fake, &c);
    check(&c, &fake, "json").code(0);
    let metrics = check(&c, &fake, "prometheus");
    assert!(
        metrics.stdout.contains(
            "drillbook_last_pass_timestamp_seconds{runbook=\"neon-production\",procedure=\"checks\"}"
        ),
        "{}",
        metrics.stdout
    );
}

/// `check` on a runbook without checks is OK and leaves the history alone.
#[test]
fn a_runbook_without_checks_records_nothing() {
    let c = Cli::new()
        .runbook("version: 1\nname: none\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - shell: 'true'\n")
        .args(["check", "runbook.yaml"]);
    let r = c.run();
    r.code(0);
    assert!(
        !c.dir.join("drills/history.jsonl").exists(),
        "a check run without checks was recorded"
    );
}

/// A connection string that is not PostgreSQL's, or a listener that does not speak its
/// protocol, is a misconfiguration the check could not get past: UNKNOWN, with a message
/// that says so, never CRITICAL with a parser error.
#[test]
fn a_misconfigured_connection_is_unknown_not_critical() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        // answer the first connection as a web server would, then go away
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let yaml = format!(
        "version: 1\nname: t\nchecks:\n  - id: web-url\n    local.archiver: {{ db: \"https://db.example.invalid/shop\" }}\n  - id: web-server\n    local.archiver: {{ db: \"postgres://app@127.0.0.1:{port}/shop?sslmode=disable\" }}\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - shell: 'true'\n"
    );
    let r = Cli::new()
        .runbook(&yaml)
        .args(["check", "runbook.yaml", "--no-record", "--format", "json"])
        .run();
    r.code(3);
    let json = r.json();
    let checks = json["checks"].as_array().expect("checks");
    for c in checks {
        assert_eq!(c["status"], "UNKNOWN", "{c:#}");
    }
    assert!(checks[0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("`https://` is not PostgreSQL")));
    assert!(
        checks[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not speak PostgreSQL's protocol")),
        "{:#}",
        checks[1]
    );
    let _ = server.join();
}

/// `--timeout` has the bounds of a check's own `timeout:`: none stops every check before
/// it starts, and weeks hang a monitoring job.
#[test]
fn an_absurd_timeout_is_a_usage_error() {
    let yaml = "version: 1\nname: t\nchecks:\n  - id: c\n    assert: 'true'\n";
    for (timeout, problem) in [
        ("0s", "`timeout` is 0s: it would stop before it starts"),
        ("30d", "`timeout` is 30d: longer than 7d"),
        ("100000000w", "too long: the longest duration is 36500d"),
    ] {
        let r = Cli::new()
            .runbook(yaml)
            .args(["check", "runbook.yaml", "--no-record", "--timeout", timeout])
            .run();
        r.code(2);
        assert!(r.stderr.contains(problem), "{timeout}: {}", r.stderr);
    }
    Cli::new()
        .runbook(yaml)
        .args(["check", "runbook.yaml", "--no-record", "--timeout", "7d"])
        .run()
        .code(0);
}
