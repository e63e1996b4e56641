//! `drillbook run` through the real binary: exit codes, cleanup on every path, signals,
//! approvals, secrets, and the DrillRecord.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::{root, Cli};

/// A runbook whose cleanup leaves a marker file, so tests can see it ran.
fn with_cleanup(steps: &str) -> String {
    format!(
        r#"version: 1
name: t
objectives: {{ rto: 1h }}
targets:
  production:
    postgres: {{ url: "{{{{ env.PROD_URL }}}}" }}
    protected: true
procedures:
  p:
    title: P
    kind: recovery
    params:
      n: {{ type: int, default: 2 }}
    steps:
{steps}
    cleanup:
      - id: tidy
        shell: touch cleanup-ran
"#
    )
}

#[test]
fn passing_run_prints_a_record_with_rto() {
    let cli = Cli::new().runbook(&with_cleanup("      - id: a\n        shell: echo hello\n      - id: b\n        assert: steps.a.stdout == 'hello'\n")).args(["run", "runbook.yaml", "p", "--format", "json"]);
    let r = cli.run();
    r.code(0);
    let rec = r.json();
    assert_eq!(rec["record_version"], 1);
    assert_eq!(rec["verdict"], "passed");
    assert_eq!(rec["procedure"]["id"], "p");
    assert_eq!(rec["operator"], "tester@ci");
    assert_eq!(rec["params"]["n"], 2);
    assert_eq!(rec["steps"][0]["outputs"]["stdout"], "hello");
    assert_eq!(rec["steps"][1]["status"], "passed");
    assert_eq!(rec["cleanup"][0]["status"], "passed");
    assert_eq!(rec["rto"]["from_step"], "a");
    assert_eq!(rec["rto"]["to_step"], "b");
    assert_eq!(rec["rto"]["met"], true);
    assert!(rec["rto"]["measured_ms"].as_u64().is_some());
    let sha = rec["runbook"]["sha256"].as_str().expect("sha");
    assert_eq!(sha.len(), 64);
    assert!(cli.dir.join("cleanup-ran").exists());
}

#[test]
fn failing_step_still_runs_cleanup_and_exits_1() {
    let cli = Cli::new()
        .runbook(&with_cleanup("      - id: a\n        shell: 'echo broken >&2; exit 4'\n      - id: b\n        shell: touch should-not-run\n"))
        .args(["run", "runbook.yaml", "p"]);
    let r = cli.run();
    r.code(1);
    assert!(r.stdout.contains("FAILED"), "{}", r.stdout);
    assert!(
        r.stdout.contains("exited with code 4: broken"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("not run"), "{}", r.stdout);
    assert!(cli.dir.join("cleanup-ran").exists(), "cleanup did not run");
    assert!(!cli.dir.join("should-not-run").exists());
}

#[test]
fn continue_on_error_runs_the_rest_but_still_fails() {
    let cli = Cli::new()
        .runbook(&with_cleanup("      - id: a\n        shell: exit 1\n        continue_on_error: true\n      - id: b\n        shell: touch b-ran\n"))
        .args(["run", "runbook.yaml", "p", "--format", "json"]);
    let r = cli.run();
    r.code(1);
    assert!(cli.dir.join("b-ran").exists());
    assert_eq!(r.json()["steps"][1]["status"], "passed");
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let cli = Cli::new()
        .runbook(&with_cleanup("      - id: slow\n        shell: 'sleep 300 & echo $! > bg.pid; wait'\n        timeout: 1s\n"))
        .args(["run", "runbook.yaml", "p", "--format", "json"]);
    let r = cli.run();
    r.code(1);
    let rec = r.json();
    assert_eq!(rec["steps"][0]["status"], "timed_out");
    assert!(rec["steps"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .contains("timed out after 1s"));
    assert!(cli.dir.join("cleanup-ran").exists());
    let pid = std::fs::read_to_string(cli.dir.join("bg.pid")).expect("pid file");
    assert!(
        !process_alive(pid.trim()),
        "background child {pid} survived the timeout"
    );
}

/// True while `pid` exists and is not a zombie (waits up to 5s for it to go).
pub(crate) fn process_alive(pid: &str) -> bool {
    for _ in 0..50 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return false,
            Ok(stat) if stat.split_whitespace().nth(2) == Some("Z") => return false,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    true
}

/// Starts `run` with stderr piped, waits until `ready` appears in the progress, then sends
/// SIGINT `times` times (each after the line `then` appears, if given).
pub(crate) fn interrupt(cli: &Cli, ready: &str, second: Option<&str>) -> (i32, String) {
    let mut child = cli
        .command()
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let pid = child.id().to_string();
    let mut waiting_for = Some(ready);
    let mut then = second;
    for line in lines.by_ref() {
        let line = line.expect("utf8");
        seen.push_str(&line);
        seen.push('\n');
        if let Some(w) = waiting_for {
            if line.contains(w) {
                let status = std::process::Command::new("kill")
                    .args(["-INT", &pid])
                    .status()
                    .expect("kill");
                assert!(status.success());
                waiting_for = then.take();
            }
        }
    }
    let status = child.wait().expect("wait");
    (status.code().unwrap_or(-1), seen)
}

#[test]
fn sigint_during_a_step_runs_cleanup_and_exits_130() {
    let cli = Cli::new()
        .runbook(&with_cleanup("      - id: sleeper\n        shell: 'echo $$ > step.pid; exec sleep 300'\n      - id: after\n        shell: touch after-ran\n"))
        .args(["run", "runbook.yaml", "p"]);
    let (code, stderr) = interrupt(&cli, "sleeper — ", None);
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("interrupted: stopping the running step; cleanup will run"),
        "{stderr}"
    );
    assert!(
        cli.dir.join("cleanup-ran").exists(),
        "cleanup did not run:\n{stderr}"
    );
    assert!(!cli.dir.join("after-ran").exists());
    // the shell may be stopped after `>` created the file but before `echo` wrote to it
    if let Some(pid) = std::fs::read_to_string(cli.dir.join("step.pid"))
        .ok()
        .filter(|p| !p.trim().is_empty() && p.trim().chars().all(|c| c.is_ascii_digit()))
    {
        assert!(
            !process_alive(pid.trim()),
            "the step's process survived the interrupt"
        );
    }
}

#[test]
fn second_sigint_aborts_cleanup() {
    let yaml = with_cleanup("      - id: sleeper\n        shell: exec sleep 300\n").replace("        shell: touch cleanup-ran", "        shell: 'exec sleep 300'\n      - id: later\n        shell: touch later-cleanup-ran");
    let cli = Cli::new().runbook(&yaml).args(["run", "runbook.yaml", "p"]);
    let (code, stderr) = interrupt(&cli, "sleeper — ", Some("tidy — "));
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("second interrupt: aborting cleanup"),
        "{stderr}"
    );
    assert!(
        !cli.dir.join("later-cleanup-ran").exists(),
        "cleanup went on after the second interrupt"
    );
}

#[test]
fn manual_step_needs_an_operator_or_yes() {
    let yaml = with_cleanup(
        "      - id: confirm\n        manual: Check the dashboard shows the restored data\n",
    );
    let r = Cli::new()
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "p"])
        .run();
    r.code(3);
    assert!(
        r.stdout
            .contains("needs an operator: run it in a terminal, or pass --yes"),
        "{}",
        r.stdout
    );

    let r = Cli::new()
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "p", "--yes", "--format", "json"])
        .run();
    r.code(0);
    let rec = r.json();
    assert_eq!(rec["approvals"][0]["step"], "confirm");
    assert_eq!(rec["approvals"][0]["via"], "--yes");
    assert_eq!(rec["approvals"][0]["by"], "tester@ci");
}

#[test]
fn destructive_step_needs_approval() {
    let yaml = with_cleanup("      - id: overwrite\n        shell: { run: 'test -n \"$DATABASE_URL\"', target: production }\n        destructive: true\n");
    let cli = Cli::new()
        .runbook(&yaml)
        .env("PROD_URL", "postgres://app:hunter2secret@db.internal/prod")
        .args(["run", "runbook.yaml", "p"]);
    let r = cli.run();
    r.code(3);
    assert!(
        r.stdout
            .contains("destructive step `overwrite` needs approval"),
        "{}",
        r.stdout
    );
    assert!(cli.dir.join("cleanup-ran").exists());

    let cli = Cli::new()
        .runbook(&yaml)
        .env("PROD_URL", "postgres://app:hunter2secret@db.internal/prod")
        .args(["run", "runbook.yaml", "p", "--yes", "--format", "json"]);
    let r = cli.run();
    r.code(0);
    let rec = r.json();
    assert_eq!(rec["steps"][0]["destructive"], true);
    assert_eq!(rec["approvals"][0]["via"], "--yes");
    assert!(!r.stdout.contains("hunter2secret") && !r.stderr.contains("hunter2secret"));
}

#[test]
fn secrets_never_reach_output_or_record() {
    let yaml = with_cleanup(
        "      - id: show\n        manual: { instructions: \"use token {{ env.SERVICE_API_TOKEN }}\", confirm: false }\n      - id: leak\n        shell:\n          run: 'echo \"token=$T url=$U\"; echo \"$T\" >&2; exit 3'\n          env:\n            T: \"{{ env.SERVICE_API_TOKEN }}\"\n            U: \"{{ env.PROD_URL }}\"\n",
    );
    for format in ["json", "text"] {
        let cli = Cli::new()
            .runbook(&yaml)
            .env("SERVICE_API_TOKEN", "tok-0123456789abcdef")
            .env("PROD_URL", "postgres://app:pw-9876zz@db/prod");
        let r = cli
            .args(["run", "runbook.yaml", "p", "--format", format])
            .run();
        r.code(1);
        for secret in ["tok-0123456789abcdef", "pw-9876zz"] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "{secret} leaked in {format}:\n{}\n{}",
                r.stdout,
                r.stderr
            );
        }
        if format == "json" {
            let rec = r.json();
            assert_eq!(
                rec["steps"][1]["outputs"]["stdout"],
                "token=*** url=postgres://app:***@db/prod"
            );
        }
    }
}

#[test]
fn usage_errors_exit_2_and_missing_env_exits_3() {
    let yaml = with_cleanup("      - id: a\n        shell:\n          run: 'true'\n          env: { X: \"{{ env.DRILLBOOK_TEST_UNSET_VAR }}\" }\n");
    let r = Cli::new()
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "q"])
        .run();
    r.code(2);
    assert!(r.stderr.contains("no procedure `q`"), "{}", r.stderr);
    let r = Cli::new()
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "p", "--param", "m=1"])
        .run();
    r.code(2);
    assert!(r.stderr.contains("has no param `m`"), "{}", r.stderr);
    let r = Cli::new()
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "p", "--param", "n=two"])
        .run();
    r.code(2);
    assert!(r.stderr.contains("`two` is not an integer"), "{}", r.stderr);
    let r = Cli::new()
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "p"])
        .run();
    r.code(3);
    assert!(
        r.stderr.contains("DRILLBOOK_TEST_UNSET_VAR"),
        "{}",
        r.stderr
    );
    let r = Cli::new()
        .runbook("version: 1\nname: x\nprocedures: [\n")
        .args(["run", "runbook.yaml", "p"])
        .run();
    r.code(2);
    assert!(r.stderr.contains("runbook.yaml:"), "{}", r.stderr);
    let r = Cli::new().args(["run"]).run();
    r.code(2);
}

#[test]
fn dry_run_runs_nothing() {
    let cli = Cli::new()
        .runbook(&with_cleanup("      - id: a\n        shell: touch a-ran\n"))
        .args(["run", "runbook.yaml", "p", "--dry-run", "--format", "json"]);
    let r = cli.run();
    r.code(0);
    assert_eq!(r.json()["dry_run"], true);
    assert!(!cli.dir.join("a-ran").exists() && !cli.dir.join("cleanup-ran").exists());
}

#[test]
fn plan_shows_steps_params_and_cleanup() {
    let yaml = with_cleanup("      - id: overwrite\n        title: Overwrite production\n        shell: { run: 'true', target: production }\n        destructive: true\n        timeout: 10m\n        rto: start\n");
    let r = Cli::new()
        .runbook(&yaml)
        .args(["plan", "runbook.yaml", "p", "--param", "n=5"])
        .run();
    r.code(0);
    for want in [
        "overwrite",
        "timeout 10m",
        "DESTRUCTIVE",
        "RTO starts",
        "cleanup (always runs",
        "tidy",
        "n  5",
        "PROD_URL  missing",
    ] {
        assert!(
            r.stdout.contains(want),
            "missing `{want}` in:\n{}",
            r.stdout
        );
    }
    let j = Cli::new()
        .runbook(&yaml)
        .args(["plan", "runbook.yaml", "p", "--format", "json"])
        .run();
    let plan = j.code(0).json();
    assert_eq!(plan["steps"][0]["destructive"], true);
    assert_eq!(plan["steps"][0]["timeout"], "10m");
    assert_eq!(plan["cleanup"][0]["id"], "tidy");
    assert_eq!(plan["params"]["n"]["value"], 2);
}

/// `plan RUNBOOK` lists the procedures; `plan` renders what it already knows (params, set
/// environment variables that do not look secret) and leaves what only a run knows.
#[test]
fn plan_lists_procedures_and_renders_what_it_knows() {
    let yaml = "version: 1\nname: known\nprocedures:\n  drill:\n    title: The drill\n    kind: drill\n    schedule: '0 9 1 * *'\n    params:\n      table: { type: string, default: orders }\n      token: { type: string, default: s3cret-value, secret: true }\n    steps:\n      - id: count\n        sql: { db: \"{{ env.DB_URL }}\", query: \"select 1\" }\n      - id: use\n        http: { url: \"https://api.example.invalid/{{ params.table }}/{{ steps.count.row_count }}?t={{ params.token }}\" }\n  restore:\n    title: Restore for real\n    kind: recovery\n    steps:\n      - shell: 'true'\n";
    let r = Cli::new()
        .runbook(yaml)
        .args(["plan", "runbook.yaml"])
        .run();
    r.code(0);
    for want in [
        "drill",
        "The drill",
        "at 09:00 UTC on day 1 of every month",
        "restore",
        "recovery",
        "Restore for real",
    ] {
        assert!(
            r.stdout.contains(want),
            "missing `{want}` in:\n{}",
            r.stdout
        );
    }
    let r = Cli::new()
        .runbook(yaml)
        .env("DB_URL", "postgres://app:pw-778@db.internal/shop")
        .args(["plan", "runbook.yaml", "drill", "--param", "table=loans"])
        .run();
    r.code(0);
    assert!(
        r.stdout
            .contains("sql on postgres://app:***@db.internal/shop"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("GET https://api.example.invalid/loans/{{ steps.count.row_count }}?t=***"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("pw-778") && !r.stdout.contains("s3cret"),
        "{}",
        r.stdout
    );
}

/// Every subcommand's `--help` says what its exit codes mean.
#[test]
fn help_on_every_command_lists_its_exit_codes() {
    let commands: &[&[&str]] = &[
        &["validate"],
        &["plan"],
        &["run"],
        &["check"],
        &["schedule"],
        &["daemon"],
        &["render"],
        &["schema"],
        &["history"],
        &["history", "list"],
        &["history", "show"],
        &["history", "verify"],
        &["history", "stats"],
        &["history", "repair"],
    ];
    for cmd in commands {
        let r = Cli::new().args(cmd.iter().chain(&["--help"])).run();
        r.code(0);
        assert!(
            r.stdout.contains("Exit codes"),
            "{cmd:?} --help names no exit codes:\n{}",
            r.stdout
        );
    }
}

#[test]
fn readme_main_command_runbook_passes() {
    let mut cmd = Cli::new()
        .args(["run", "runbooks/hello.yaml", "smoke", "--format", "json"])
        .command();
    cmd.current_dir(root());
    let out = cmd.output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rec["verdict"], "passed");
    assert_eq!(rec["rto"]["met"], true);
}

#[test]
fn help_on_every_command_has_an_example() {
    for cmd in ["validate", "plan", "run", "schema"] {
        let r = Cli::new().args([cmd, "--help"]).run();
        r.code(0);
        assert!(
            r.stdout.contains("Example"),
            "{cmd} --help has no example:\n{}",
            r.stdout
        );
    }
}

/// An approval enters the record only when an operator approved: a step whose outputs
/// happen to be named `by` and `via` (here an `http` capture) is not one.
#[test]
fn outputs_named_like_an_approval_are_not_an_approval() {
    use axum::routing::get;
    let server = crate::support::HttpServer::start(axum::Router::new().route(
        "/whoami",
        get(|| async { axum::Json(serde_json::json!({"user": "mallory", "channel": "terminal"})) }),
    ));
    let yaml = with_cleanup(&format!(
        "      - id: forged\n        http: {{ url: \"{}/whoami\", capture: {{ by: /user, via: /channel }} }}\n",
        server.url()
    ));
    let r = Cli::new()
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(0);
    let rec = r.json();
    assert_eq!(rec["steps"][0]["outputs"]["by"], "mallory");
    assert_eq!(rec["approvals"], serde_json::json!([]), "{rec}");
}

#[test]
fn http_step_captures_json_and_classifies_failures() {
    use axum::routing::{get, post};
    let server = crate::support::HttpServer::start(
        axum::Router::new()
            .route(
                "/branches",
                post(
                    |axum::Json(body): axum::Json<serde_json::Value>| async move {
                        axum::Json(
                            serde_json::json!({"branch": {"id": "br-123", "name": body["name"]}}),
                        )
                    },
                ),
            )
            .route(
                "/broken",
                get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            ),
    );
    let base = server.url();
    let yaml = with_cleanup(&format!(
        "      - id: create\n        http:\n          method: POST\n          url: {base}/branches\n          json: {{ name: \"drill-{{{{ run.id }}}}\" }}\n          capture: {{ id: /branch/id }}\n      - id: check\n        assert: steps.create.id == 'br-123' and steps.create.status == 200\n"
    ));
    let r = Cli::new()
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(0);
    let rec = r.json();
    assert_eq!(rec["steps"][0]["outputs"]["id"], "br-123");
    let run_id = rec["id"].as_str().expect("id");
    assert_eq!(
        rec["steps"][0]["outputs"]["json"]["branch"]["name"],
        format!("drill-{run_id}")
    );

    let broken = with_cleanup(&format!("      - id: call\n        http: {base}/broken\n"));
    let r = Cli::new()
        .runbook(&broken)
        .args(["run", "runbook.yaml", "p"])
        .run();
    r.code(1);
    assert!(
        r.stdout.contains("answered 500, expected 2xx"),
        "{}",
        r.stdout
    );

    drop(server);
    let unreachable = with_cleanup(&format!("      - id: call\n        http: {base}/broken\n        retries: {{ attempts: 2, backoff: 10ms }}\n"));
    let cli =
        Cli::new()
            .runbook(&unreachable)
            .args(["run", "runbook.yaml", "p", "--format", "json"]);
    let r = cli.run();
    r.code(3);
    let rec = r.json();
    assert_eq!(rec["verdict"], "error");
    assert_eq!(rec["steps"][0]["attempts"], 2);
    assert!(cli.dir.join("cleanup-ran").exists());
}

#[test]
fn secret_params_are_masked_whatever_their_type() {
    let yaml = with_cleanup("      - id: a\n        assert: params.pin > 0\n").replace(
        "      n: { type: int, default: 2 }",
        "      n: { type: int, default: 2 }\n      pin: { type: int, default: 7, secret: true }",
    );
    let r = Cli::new()
        .runbook(&yaml)
        .args([
            "run",
            "runbook.yaml",
            "p",
            "--param",
            "pin=4242",
            "--format",
            "json",
        ])
        .run();
    r.code(0);
    assert_eq!(r.json()["params"]["pin"], "***");
    assert!(!r.stdout.contains("4242"), "{}", r.stdout);
}

/// A `shell` step inherits drillbook's whole environment: every secret in it is masked in
/// every output, whether or not the runbook names the variable, and so are the variables a
/// runbook declares secret and a password written in any form of connection string.
#[test]
fn secrets_the_runbook_never_names_are_masked_everywhere() {
    let yaml = "version: 1\nname: leak\nsecrets: [SHOP_LICENCE]\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: leak\n        shell:\n          run: 'echo \"$NEON_API_KEY $SLACK_WEBHOOK_URL $SHOP_LICENCE\"; echo \"$DATABASE_URL\"; echo \"$OTHER_URL\"; echo \"$QUERY_URL\" >&2; exit 3'\n";
    let secrets = [
        "napi_k3y_0123456789",
        "https://hooks.slack.example/T000/B000/XXXXsecret",
        "licence-7788-9900",
        "pw with 'quote",
        "sl/sh@at",
        "q-pass-123",
    ];
    let cli = Cli::new()
        .runbook(yaml)
        .env("NEON_API_KEY", secrets[0])
        .env("SLACK_WEBHOOK_URL", secrets[1])
        .env("SHOP_LICENCE", secrets[2])
        .env(
            "DATABASE_URL",
            "host=db.internal\tuser=app  password = 'pw with \\'quote' dbname=shop",
        )
        .env(
            "OTHER_URL",
            "postgresql://app:sl/sh@at@db.internal:5432/shop",
        )
        .env(
            "QUERY_URL",
            "postgresql://db.internal/shop?user=app&password=q-pass-123&sslmode=require",
        )
        .args(["run", "runbook.yaml", "p", "--format", "json"]);
    let r = cli.run();
    r.code(1);
    let rec = r.json();
    let out = rec["steps"][0]["outputs"]["stdout"]
        .as_str()
        .unwrap_or_default();
    assert!(
        out.contains("host=db.internal") && out.contains("***"),
        "{out}"
    );
    let mut places = vec![
        ("stdout".to_owned(), r.stdout.clone()),
        ("stderr".to_owned(), r.stderr.clone()),
    ];
    for f in std::fs::read_dir(cli.dir.join("drills"))
        .expect("drills/")
        .flatten()
    {
        let text = std::fs::read_to_string(f.path()).expect("read");
        places.push((f.path().display().to_string(), text));
    }
    assert!(
        places.len() >= 5,
        "the history and the drill logs: {places:#?}"
    );
    for (place, text) in &places {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "`{secret}` leaked in {place}:\n{text}"
            );
        }
    }
}

/// A secret param's invalid value is not repeated in the error.
#[test]
fn a_secret_params_invalid_value_is_not_shown() {
    let yaml = "version: 1\nname: s\nprocedures:\n  p:\n    title: P\n    kind: drill\n    params:\n      pin: { type: int, secret: true }\n    steps:\n      - id: a\n        shell: { run: 'true' }\n";
    let r = Cli::new()
        .runbook(yaml)
        .args([
            "run",
            "runbook.yaml",
            "p",
            "--param",
            "pin=hunter2-not-a-number",
        ])
        .run();
    r.code(2);
    assert!(
        r.stderr.contains("--param pin: not a valid int"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
}

/// A step that times out leaves a process that ignores SIGTERM: cleanup starts only once it
/// is gone (SIGKILL after the grace period), and nothing outlives the run.
#[test]
fn cleanup_waits_until_a_stopped_steps_processes_have_exited() {
    let dir = crate::support::TempDir::new();
    let pidfile = dir.join("pid");
    let yaml = r#"version: 1
name: t
procedures:
  p:
    title: P
    kind: drill
    steps:
      - id: stubborn
        timeout: 1s
        shell:
          run: 'sh -c "trap \"\" TERM; echo \$\$ > \"$PIDFILE\"; while :; do sleep 0.1; done" & wait'
          env: { PIDFILE: "{{ env.PIDFILE }}" }
    cleanup:
      - id: gone
        shell:
          run: 'pid=$(cat "$PIDFILE"); if [ -e /proc/$pid ] && ! grep -q "^State:.*Z" /proc/$pid/status; then echo "still running: $pid"; exit 1; fi'
          env: { PIDFILE: "{{ env.PIDFILE }}" }
"#;
    let r = Cli::new()
        .runbook(yaml)
        .env("PIDFILE", &pidfile.display().to_string())
        .args(["run", "runbook.yaml", "p", "--format", "json"])
        .run();
    r.code(1);
    let rec = r.json();
    assert_eq!(rec["steps"][0]["status"], "timed_out", "{rec:#}");
    assert_eq!(rec["cleanup"][0]["status"], "passed", "{rec:#}");
    let pid = std::fs::read_to_string(&pidfile).expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()));
    assert!(
        status.map_or(true, |s| s
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))),
        "process {pid} outlived the run"
    );
}

/// Step output, errors and runbook text reach the terminal with their control characters
/// shown, never acted on: no ESC, BEL, carriage return or C1 control in what `run`,
/// `history` or `plan` print, while the record keeps the bytes as they were.
#[test]
fn escape_sequences_in_step_output_never_reach_the_terminal() {
    let yaml = r#"version: 1
name: term
procedures:
  p:
    title: "Drill \e[31m"
    kind: drill
    steps:
      - id: noisy
        title: "Noisy \e]0;title\a"
        shell: printf '\033]0;pwned\007\033[2J\n'; printf 'bad \302\233 31m\r\n' >&2; exit 1
"#;
    let acts = |text: &str| {
        text.chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    };
    let cli = Cli::new()
        .runbook(yaml)
        .args(["run", "runbook.yaml", "p", "--format", "json"]);
    let history = cli.dir.join("drills/history.jsonl").display().to_string();
    let runbook = cli.dir.join("runbook.yaml").display().to_string();
    let run = cli.run();
    run.code(1);
    assert!(
        !acts(&run.stdout) && !acts(&run.stderr),
        "{:?}\n{:?}",
        run.stdout,
        run.stderr
    );
    let rec = run.json();
    assert_eq!(
        rec["steps"][0]["outputs"]["stdout"],
        "\u{1b}]0;pwned\u{7}\u{1b}[2J"
    );
    let id = rec["id"].as_str().expect("id");
    let text = Cli::new()
        .args(["run", &runbook, "p", "--history", &history])
        .run();
    text.code(1);
    assert!(
        text.stderr
            .contains("[1/1] noisy — Noisy \\u{1b}]0;title\\u{7} …")
            && text.stderr.contains("bad \\u{9b} 31m"),
        "{}",
        text.stderr
    );
    let show = ["history", "show", id, "--history", &history];
    for args in [
        show.to_vec(),
        [&show[..], &["--format", "md"]].concat(),
        [&show[..], &["--format", "json"]].concat(),
        vec!["history", "list", "--history", &history],
        vec!["plan", &runbook, "p"],
        vec!["plan", &runbook],
    ] {
        let r = Cli::new().args(&args).run();
        r.code(0);
        assert!(
            !acts(&r.stdout) && !acts(&r.stderr),
            "{args:?}:\n{:?}\n{:?}",
            r.stdout,
            r.stderr
        );
    }
}
