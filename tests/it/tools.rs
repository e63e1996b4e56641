//! The generic pieces a backup tool's user needs, through the real binary: `shell` with
//! `outputs: json`, `measure:` and `nagios: true` (in checks: thresholds, monitoring exit
//! codes, the record, alerts and Prometheus).

use std::sync::{Arc, Mutex};

use crate::support::{Cli, HttpServer};

/// A runbook with these checks and a procedure `p` of these steps (both YAML list items,
/// indented for their place).
fn runbook(checks: &str, steps: &str) -> String {
    format!(
        "version: 1\nname: tools\nchecks:\n{checks}procedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n{steps}"
    )
}

const NO_CHECKS: &str = "  - id: nothing\n    shell: 'true'\n";

#[test]
fn json_stdout_becomes_outputs_that_later_steps_and_asserts_read() {
    let steps = r#"      - id: info
        shell:
          run: 'printf "{\"age\": 42, \"set\": \"20261128-090000F\", \"ok\": true}"'
          outputs: json
      - id: check
        assert: { that: ["steps.info.age == 42", "steps.info.ok"] }
      - id: use
        shell:
          run: 'echo "restoring $SET"'
          env: { SET: "{{ steps.info.set }}" }
"#;
    let r = Cli::new()
        .runbook(&runbook(NO_CHECKS, steps))
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(0);
    let rec = r.json();
    assert_eq!(rec["steps"][0]["outputs"]["age"], 42);
    assert_eq!(rec["steps"][0]["outputs"]["set"], "20261128-090000F");
    assert_eq!(rec["steps"][1]["outputs"]["checked"], 2);
    assert_eq!(
        rec["steps"][2]["outputs"]["stdout"],
        "restoring 20261128-090000F"
    );
}

/// Named keys are checked where they are read, before anything runs; a key stdout lacks
/// fails the step that produced it, naming the keys it has.
#[test]
fn named_json_outputs_are_checked_by_validation_and_at_run_time() {
    let steps = r#"      - id: info
        shell:
          run: 'printf "{\"age\": 42}"'
          outputs: { json: [age, set] }
      - id: use
        assert: "steps.info.agee > 1"
"#;
    let v = Cli::new()
        .runbook(&runbook(NO_CHECKS, steps))
        .args(["validate", "runbook.yaml"])
        .run();
    v.code(2);
    assert!(
        v.stderr.contains("step `info` has no output `agee`") && v.stderr.contains("`age`"),
        "{}",
        v.stderr
    );
    let r = Cli::new()
        .runbook(&runbook(NO_CHECKS, &steps.replace("agee", "age")))
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(3);
    let error = r.json()["steps"][0]["error"]
        .as_str()
        .expect("error")
        .to_owned();
    assert!(
        error.contains("step `info`") && error.contains("no `set`") && error.contains("age"),
        "{error}"
    );
}

#[test]
fn stdout_that_is_not_a_json_object_fails_the_step_quoting_it() {
    for (stdout, said) in [
        ("pgbackrest: unable to connect", "is not JSON"),
        ("[1, 2]", "holds an array"),
        ("", "stdout is empty"),
    ] {
        let steps = format!(
            "      - id: info\n        shell:\n          run: 'printf \"%s\" \"$OUT\"'\n          env: {{ OUT: \"{stdout}\" }}\n          outputs: json\n"
        );
        let r = Cli::new()
            .runbook(&runbook(NO_CHECKS, &steps))
            .args(["run", "runbook.yaml", "p", "--format", "json"])
            .run();
        r.code(3);
        let error = r.json()["steps"][0]["error"]
            .as_str()
            .expect("error")
            .to_owned();
        assert!(
            error.starts_with("step `info`: `outputs: json` needs a JSON object on stdout")
                && error.contains(said)
                && (stdout.is_empty() || error.contains(&format!("`{stdout}`"))),
            "{error}"
        );
    }
}

/// The checks of one runbook, each printing `stdout` and exiting with `code`.
fn shell_check(id: &str, stdout: &str, code: i32, extra: &str) -> String {
    format!(
        "  - id: {id}\n    shell:\n      run: 'printf \"%s\\n\" \"$OUT\"; exit {code}'\n      env: {{ OUT: '{stdout}' }}\n{extra}"
    )
}

fn check(c: &Cli, only: &str, format: &str) -> crate::support::Run {
    let history = c.dir.join("drills/history.jsonl").display().to_string();
    let mut args = vec![
        "check",
        "runbook.yaml",
        "--format",
        format,
        "--history",
        &history,
    ];
    if !only.is_empty() {
        args.extend(["--only", only]);
    }
    Cli::new()
        .runbook(&std::fs::read_to_string(c.dir.join("runbook.yaml")).expect("runbook"))
        .args(args)
        .run()
}

fn status_of(r: &crate::support::Run, id: &str) -> (String, String) {
    let checks = r.json()["checks"].as_array().expect("checks").clone();
    let c = checks.iter().find(|c| c["id"] == id).expect("check");
    (
        c["status"].as_str().expect("status").to_owned(),
        c["message"].as_str().expect("message").to_owned(),
    )
}

#[test]
fn a_shell_measure_takes_thresholds_in_its_unit_and_is_exported() {
    let age = "      outputs: json\n      measure: { output: age, unit: seconds, worse: higher, metric: backup_age }\n    warn: 25h\n    critical: 48h\n";
    let size = "      outputs: { json: [size] }\n      measure: { output: size, unit: bytes, worse: higher }\n    warn: 1GiB\n";
    let errors = "      outputs: json\n      measure: { output: errors, unit: count, worse: higher }\n    critical: 0\n";
    let checks = [
        shell_check("fresh", r#"{"age": 3600}"#, 0, age),
        shell_check("stale", r#"{"age": 100000}"#, 0, age),
        shell_check("dead", r#"{"age": 200000}"#, 0, age),
        shell_check("big", r#"{"size": "2147483648"}"#, 0, size),
        shell_check("clean", r#"{"errors": 0}"#, 0, errors),
        shell_check("garbled", r#"{"age": "soon"}"#, 0, age),
    ]
    .concat();
    let c = Cli::new().runbook(&runbook(&checks, "      - shell: 'true'\n"));
    for (id, status, said) in [
        ("fresh", "OK", "age is 1h"),
        (
            "stale",
            "WARNING",
            "age is 27h46m40s (warning threshold 25h)",
        ),
        (
            "dead",
            "CRITICAL",
            "age is 55h33m20s (critical threshold 2d)",
        ),
        (
            "big",
            "WARNING",
            "size is 2147483648 bytes (warning threshold 1073741824 bytes)",
        ),
        ("clean", "OK", "errors is 0"),
        (
            "garbled",
            "UNKNOWN",
            "the measure `age` is not a number: `\"soon\"`",
        ),
    ] {
        let r = check(&c, id, "json");
        let (got, message) = status_of(&r, id);
        assert_eq!((id, got.as_str()), (id, status), "{message}");
        assert!(message.contains(said), "{id}: {message}");
        let code = match status {
            "OK" => 0,
            "WARNING" => 1,
            "CRITICAL" => 2,
            _ => 3,
        };
        r.code(code);
    }
    let p = check(&c, "", "prometheus");
    p.code(2);
    for line in p.stdout.lines().filter(|l| !l.starts_with('#')) {
        assert!(crate::check::sample_ok(line), "not a sample line: {line}");
    }
    for expected in [
        r#"drillbook_check_measure{runbook="tools",check="stale",kind="shell",measure="age",unit="seconds"} 100000"#,
        r#"drillbook_check_measure{runbook="tools",check="big",kind="shell",measure="size",unit="bytes"} 2147483648"#,
        r#"drillbook_backup_age_seconds{runbook="tools",check="fresh",kind="shell"} 3600"#,
        r#"drillbook_check_status{runbook="tools",check="stale",kind="shell"} 1"#,
        r#"drillbook_check_status{runbook="tools",check="garbled",kind="shell"} 3"#,
    ] {
        assert!(
            p.stdout.contains(expected),
            "{expected} missing:\n{}",
            p.stdout
        );
    }
    // no measure without a measure: `nothing` has no series in the measure family
    assert!(!p.stdout.contains("measure=\"stdout\""), "{}", p.stdout);
}

#[test]
fn thresholds_on_a_shell_check_need_its_measure() {
    let checks = [
        shell_check("plain", "{}", 0, "    warn: 25h\n"),
        shell_check(
            "unread",
            "{}",
            0,
            "      measure: { output: age, worse: higher }\n",
        ),
        shell_check(
            "counted",
            "{}",
            0,
            "      outputs: json\n      measure: { output: n, unit: count, worse: higher }\n    warn: 25h\n",
        ),
    ]
    .concat();
    let v = Cli::new()
        .runbook(&runbook(&checks, "      - shell: 'true'\n"))
        .args(["validate", "runbook.yaml"])
        .run();
    v.code(2);
    for said in [
        "`warn` needs a measure to compare, and this `shell` check declares none",
        "declare it: `outputs: json` and `measure: {output:",
        "the measure `age` is read from the JSON object on stdout: add `outputs: json`",
        "invalid `warn`: `25h` is not a number",
    ] {
        assert!(v.stderr.contains(said), "{said} missing:\n{}", v.stderr);
    }
}

/// Every request a receiver got, as JSON bodies.
type Log = Arc<Mutex<Vec<serde_json::Value>>>;

fn receiver() -> (HttpServer, Log) {
    let log: Log = Arc::default();
    let kept = log.clone();
    let router = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let kept = kept.clone();
        async move {
            let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            kept.lock().expect("log").push(json);
            axum::http::StatusCode::OK
        }
    });
    (HttpServer::start(router), log)
}

/// `nagios: true`: a monitoring plugin's exit code is the check's status, its first line the
/// message; each status reaches `check`'s exit code, the record, the alert and Prometheus.
#[test]
fn nagios_plugins_map_to_monitoring_statuses_everywhere() {
    let nagios = "      nagios: true\n";
    let checks = [
        shell_check("ok", "BARMAN OK - Ready to serve | backups=3", 0, nagios),
        shell_check(
            "warning",
            "PGBACKREST WARNING - backup is 26h old",
            1,
            nagios,
        ),
        shell_check(
            "critical",
            "BARMAN CRITICAL - WAL archive failing",
            2,
            nagios,
        ),
        shell_check("unknown", "UNKNOWN - cannot read the config", 3, nagios),
        shell_check("odd", "segfault", 139, nagios),
    ]
    .concat();
    let (server, log) = receiver();
    let yaml = runbook(&checks, "      - shell: 'true'\n").replace(
        "procedures:",
        "alerts:\n  - webhook: { url: \"{{ env.HOOK_URL }}\" }\n    on: [failure, warning, success]\nprocedures:",
    );
    let c = Cli::new().runbook(&yaml);
    // a history (and so an alert state) per check: no alert is held back as a repeat
    let history = |id: &str| c.dir.join(id).join("history.jsonl").display().to_string();
    let run = |only: &str| {
        let history = history(only);
        Cli::new()
            .runbook(&yaml)
            .env("HOOK_URL", &server.url())
            .args([
                "check",
                "runbook.yaml",
                "--format",
                "json",
                "--history",
                &history,
                "--only",
                only,
            ])
            .run()
    };
    for (id, status, code, message) in [
        ("ok", "OK", 0, "BARMAN OK - Ready to serve"),
        (
            "warning",
            "WARNING",
            1,
            "PGBACKREST WARNING - backup is 26h old",
        ),
        (
            "critical",
            "CRITICAL",
            2,
            "BARMAN CRITICAL - WAL archive failing (exit 2)",
        ),
        (
            "unknown",
            "UNKNOWN",
            3,
            "UNKNOWN - cannot read the config (exit 3: UNKNOWN)",
        ),
        ("odd", "UNKNOWN", 3, "segfault (exit 139: UNKNOWN)"),
    ] {
        let r = run(id);
        r.code(code);
        assert_eq!(status_of(&r, id), (status.to_owned(), message.to_owned()));
        let sent = log.lock().expect("log").last().cloned().expect("an alert");
        let text = sent.to_string();
        assert!(
            text.contains(status) || status == "OK",
            "{id}: alert {text}"
        );
    }
    // the record of each run: WARNING passed with a note, CRITICAL failed, UNKNOWN unavailable
    let records: Vec<serde_json::Value> = ["ok", "warning", "critical", "unknown", "odd"]
        .iter()
        .map(|id| {
            let text = std::fs::read_to_string(history(id)).expect("history");
            let entry: serde_json::Value =
                serde_json::from_str(text.lines().next().expect("entry")).expect("entry");
            entry["record"].clone()
        })
        .collect();
    let step = |i: usize| records[i]["steps"][0].clone();
    assert_eq!(
        (step(1)["status"].as_str(), step(1)["note"].as_str()),
        (
            Some("passed"),
            Some("WARNING: PGBACKREST WARNING - backup is 26h old")
        )
    );
    assert_eq!(step(1)["outputs"]["status"], "WARNING");
    assert_eq!(
        (step(2)["status"].as_str(), step(2)["error_class"].as_str()),
        (Some("failed"), Some("failed"))
    );
    assert_eq!(
        (step(3)["status"].as_str(), step(3)["error_class"].as_str()),
        (Some("failed"), Some("unavailable"))
    );
    let verdicts: Vec<&str> = records
        .iter()
        .map(|r| r["verdict"].as_str().expect("verdict"))
        .collect();
    assert_eq!(verdicts, ["passed", "passed", "failed", "error", "error"]);
    // all at once: CRITICAL wins the exit code; each status in Prometheus
    let p = Cli::new()
        .runbook(&yaml)
        .env("HOOK_URL", &server.url())
        .args([
            "check",
            "runbook.yaml",
            "--format",
            "prometheus",
            "--no-record",
        ])
        .run();
    p.code(2);
    for (id, code) in [
        ("ok", 0),
        ("warning", 1),
        ("critical", 2),
        ("unknown", 3),
        ("odd", 3),
    ] {
        let line = format!(
            r#"drillbook_check_status{{runbook="tools",check="{id}",kind="shell"}} {code}"#
        );
        assert!(p.stdout.contains(&line), "{line} missing:\n{}", p.stdout);
    }
    // in a procedure, a WARNING passes and its status is an output; CRITICAL fails it
    let steps = "      - id: plugin\n        shell: { run: 'echo \"X WARNING - old\"; exit 1', nagios: true }\n      - assert: \"steps.plugin.status == 'WARNING'\"\n";
    let r = Cli::new()
        .runbook(&runbook(NO_CHECKS, steps))
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(0);
    assert_eq!(
        r.json()["steps"][0]["outputs"]["message"],
        "X WARNING - old"
    );
}

/// `pgtime` writes a point in time the way PostgreSQL reads it (its own `timestamptz`
/// input, which `recovery_target_time` uses), Barman parses `--target-time` (dateutil,
/// Barman's parser) and pgBackRest's `--target` takes ("YYYY-MM-DD HH:MM:SS with optional
/// msec and optional timezone", unit-tested in `template.rs`); `epoch` as Unix seconds.
#[test]
fn pgtime_is_read_back_by_postgresql_and_barman() {
    let steps = r#"      - id: fmt
        shell:
          run: 'printf "%s|%s" "$T" "$E"'
          env:
            T: "{{ params.target_time | pgtime }}"
            E: "{{ params.target_time | epoch }}"
"#;
    let yaml = runbook(NO_CHECKS, steps).replace(
        "    steps:\n",
        "    params:\n      target_time: { type: timestamp }\n    steps:\n",
    );
    let written = "2026-11-28T09:00:00.123456789Z";
    let r = Cli::new()
        .runbook(&yaml)
        .args([
            "run",
            "runbook.yaml",
            "p",
            "--format",
            "json",
            "--param",
            &format!("target_time={written}"),
        ])
        .run();
    r.code(0);
    let out = r.json()["steps"][0]["outputs"]["stdout"]
        .as_str()
        .expect("stdout")
        .to_owned();
    let (pgtime, epoch) = out.split_once('|').expect("two values");
    assert_eq!(pgtime, "2026-11-28 09:00:00.123456+00");
    assert_eq!(epoch, "1795856400");
    // PostgreSQL: the same instant, to the microsecond
    let same = crate::support::pg().psql(
        "postgres",
        &format!("select '{pgtime}'::timestamptz = '2026-11-28T09:00:00.123456Z'::timestamptz, extract(epoch from '{pgtime}'::timestamptz)::bigint"),
    );
    assert_eq!(same, format!("t|{epoch}"));
    // Barman reads --target-time with dateutil (python3-dateutil, a dependency of barman)
    let parsed = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, dateutil.parser; print(dateutil.parser.parse(sys.argv[1]).isoformat())",
            pgtime,
        ])
        .output()
        .expect("python3 (Barman's interpreter) must be installed");
    assert!(
        parsed.status.success(),
        "dateutil refused {pgtime}: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&parsed.stdout).trim(),
        "2026-11-28T09:00:00.123456+00:00"
    );
}

/// The runbook document states a threshold only for a check with a measure: a `shell` check
/// declares one, a plain one "fails as critical", a plugin warns by its exit code.
#[test]
fn the_document_shows_thresholds_only_for_a_measure() {
    let checks = [
        shell_check("plain", "ok", 0, ""),
        shell_check(
            "age",
            "{}",
            0,
            "      outputs: json\n      measure: { output: age, unit: seconds, worse: higher }\n    warn: 24h\n",
        ),
        shell_check("plugin", "OK", 0, "      nagios: true\n"),
    ]
    .concat();
    let r = Cli::new()
        .runbook(&runbook(&checks, "      - shell: 'true'\n"))
        .args(["render", "runbook.yaml"])
        .run();
    r.code(0);
    let row = |id: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("(`{id}`)")))
            .unwrap_or_else(|| panic!("no row for {id}:\n{}", r.stdout))
            .to_owned()
    };
    assert!(row("age").contains("warning at `24h`"), "{}", row("age"));
    assert!(
        row("plain").ends_with("fails as critical |"),
        "{}",
        row("plain")
    );
    assert!(
        row("plugin").contains("as the plugin exits"),
        "{}",
        row("plugin")
    );
    assert_eq!(r.stdout.matches("warning at").count(), 1, "{}", r.stdout);
}

/// A `sql` poll against a real server that shuts down after answering: the wait fails once
/// `gone_after` polls in a row are refused, not at its one-hour deadline. The first poll asks
/// the postmaster for a smart shutdown (SIGTERM through `COPY … TO PROGRAM`, run in the data
/// directory), which lets that session finish and then refuses every connection.
#[test]
fn a_wait_on_a_server_that_stopped_fails_fast() {
    let steps = r#"      - id: db
        local.cluster: { database: shop }
      - id: promoted
        wait:
          poll:
            sql:
              db: "{{ steps.db.admin_uri }}"
              query: "COPY (SELECT 1) TO PROGRAM 'kill -TERM $(head -1 postmaster.pid)'"
              write: true
          until: "false"
          interval: 200ms
          deadline: 1h
"#;
    let r = Cli::new()
        .runbook(&runbook(NO_CHECKS, steps))
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(1);
    let rec = r.json();
    let error = rec["steps"][1]["error"].as_str().expect("error").to_owned();
    assert!(
        error.starts_with(
            "what it polls is gone: it answered poll 1, then 3 polls in a row could not reach it"
        ),
        "{error}"
    );
}

/// `undo:` is registered when the step starts, so it runs even when the step fails, after
/// the cleanup steps, once however often the step is retried.
#[test]
fn a_shell_undo_runs_after_cleanup_even_when_its_step_failed() {
    let c = Cli::new();
    let scratch = c.dir.join("scratch");
    let log = c.dir.join("log");
    let yaml = format!(
        r#"version: 1
name: undo
procedures:
  p:
    title: P
    kind: drill
    steps:
      - id: make
        shell:
          run: 'mkdir -p "$D"; echo attempt >> "$LOG"; exit 1'
          env: {{ D: "{}", LOG: "{}" }}
          undo: 'echo "undo $DRILLBOOK_STEP" >> "$LOG"; rm -rf "$D"'
        retries: {{ attempts: 2, backoff: 100ms }}
    cleanup:
      - id: tidy
        shell: {{ run: 'echo cleanup >> "$LOG"', env: {{ LOG: "{}" }} }}
"#,
        scratch.display(),
        log.display(),
        log.display()
    );
    let cli = c
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "p", "--format", "json"]);
    let r = cli.run();
    r.code(1);
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "attempt\nattempt\ncleanup\nundo make\n"
    );
    assert!(
        !scratch.exists(),
        "the undo did not remove {}",
        scratch.display()
    );
    let rec = r.json();
    let undo = rec["cleanup"]
        .as_array()
        .expect("cleanup")
        .iter()
        .find(|s| s["id"] == "make:undo")
        .cloned()
        .expect("the undo's record");
    assert_eq!(undo["status"], "passed");
    assert!(
        undo["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("undo of step `make`: echo")),
        "{undo}"
    );
}

/// A second interrupt aborts cleanup, but a shell step's undo still runs as the last
/// resort, like the stop of a server drillbook started: the scratch "server" a step left
/// running (a process in the background) does not outlive the run.
#[test]
fn a_shell_undo_runs_after_a_second_interrupt() {
    let c = Cli::new();
    let scratch = c.dir.join("scratch");
    let yaml = format!(
        r#"version: 1
name: undo
procedures:
  p:
    title: P
    kind: drill
    steps:
      - id: server
        shell:
          run: 'mkdir -p "$D"; sleep 300 >/dev/null 2>&1 & echo $! > server.pid'
          env: {{ D: "{}" }}
          undo: 'kill "$(cat server.pid)"; rm -rf "$D"; touch undone'
      - id: hold
        shell: exec sleep 300
    cleanup:
      - id: slow-tidy
        shell: exec sleep 300
"#,
        scratch.display()
    );
    let cli = c.runbook(&yaml).args(["run", "runbook.yaml", "p"]);
    let (code, stderr) = crate::run::interrupt(&cli, "hold — ", Some("slow-tidy — "));
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("second interrupt: aborting cleanup"),
        "{stderr}"
    );
    assert!(
        cli.dir.join("undone").exists(),
        "the undo did not run:\n{stderr}"
    );
    let pid = std::fs::read_to_string(cli.dir.join("server.pid")).expect("server.pid");
    assert!(
        !crate::run::process_alive(pid.trim()),
        "the step's server outlived the run"
    );
    assert!(!scratch.exists(), "{} is left", scratch.display());
    assert!(!stderr.contains("left behind ("), "{stderr}");
    // the record says how it ran
    let log = std::fs::read_dir(cli.dir.join("drills"))
        .expect("drills")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .expect("the drill log's JSON");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(log.path()).expect("read")).expect("json");
    let undo = rec["cleanup"]
        .as_array()
        .expect("cleanup")
        .iter()
        .find(|s| s["id"] == "server:undo")
        .cloned()
        .expect("the undo's record");
    assert_eq!(
        (undo["status"].as_str(), undo["note"].as_str()),
        (
            Some("passed"),
            Some("run as the last resort after a second interrupt")
        )
    );
}

/// A run killed with SIGKILL leaves its shell undo in its ledger, without the values of
/// secret variables; `gc --yes` runs it with those taken from its own environment, and
/// refuses, naming them, when they are missing.
#[test]
fn gc_runs_the_shell_undo_of_a_killed_run() {
    let tmp = crate::support::TempDir::new();
    let c = Cli::new();
    let scratch = c.dir.join("scratch");
    let yaml = format!(
        r#"version: 1
name: killed
procedures:
  p:
    title: P
    kind: drill
    steps:
      - id: make
        shell:
          run: 'mkdir -p "$D"'
          env: {{ D: "{}", API_TOKEN: "{{{{ env.API_TOKEN }}}}" }}
          undo: 'test -n "$API_TOKEN" && echo "$API_TOKEN" > "$D.token" && rm -rf "$D"'
      - id: hold
        shell: exec sleep 300
"#,
        scratch.display()
    );
    let secret = "s3cr3t-value-for-undo";
    let with_tmp = |cli: Cli| {
        cli.runbook(&yaml)
            .env("TMPDIR", &tmp.path().display().to_string())
    };
    let killed = with_tmp(Cli::new())
        .env("API_TOKEN", secret)
        .args(["run", "runbook.yaml", "p"]);
    let mut child = killed
        .command()
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    {
        use std::io::BufRead;
        let stderr = child.stderr.take().expect("stderr");
        for line in std::io::BufReader::new(stderr).lines() {
            if line.expect("utf8").contains("hold — ") {
                child.kill().expect("SIGKILL");
                break;
            }
        }
    }
    assert_eq!(child.wait().expect("wait").code(), None);
    let ledger: String = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ledger"))
        .map(|e| std::fs::read_to_string(e.path()).expect("ledger"))
        .collect();
    assert!(ledger.contains("\"shell\""), "{ledger}");
    assert!(
        !ledger.contains(secret),
        "the ledger holds a secret: {ledger}"
    );
    // without the secret: listed, and refused with its name and the command to run by hand
    let r = with_tmp(Cli::new()).args(["gc", "--yes"]).run();
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains("undo of step `make`")
            && r.stdout
                .contains("secrets drillbook does not write down (API_TOKEN)"),
        "{}",
        r.stdout
    );
    // with it: run, and the ledger is gone
    let r = with_tmp(Cli::new())
        .env("API_TOKEN", secret)
        .args(["gc", "--yes"])
        .run();
    r.code(0);
    assert!(!scratch.exists(), "{}", r.stdout);
    assert_eq!(
        std::fs::read_to_string(format!("{}.token", scratch.display())).expect("token"),
        format!("{secret}\n")
    );
    let r = with_tmp(Cli::new()).args(["gc"]).run();
    r.code(0);
    assert!(r.stdout.contains("nothing left behind"), "{}", r.stdout);
}
