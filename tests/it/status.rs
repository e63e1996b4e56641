//! `drillbook status` through the binary: the same report as the daemon's `/status`, from
//! the history, as text and JSON (valid against `drillbook schema --status`), with the
//! monitoring exit codes; and no password of the history's URL in either.

use crate::support::Cli;

const RUNBOOK: &str = r#"version: 1
name: shop
objectives:
  rto: 15m
  rpo: 1h
checks:
  - id: archiver
    shell: "test -f archiver-ok"
  - id: slow
    shell: "true"
procedures:
  drill:
    title: Drill
    kind: drill
    schedule: "0 9 1 * *"
    steps:
      - id: a
        shell: "true"
  by-hand:
    title: Restore by hand
    kind: recovery
    steps:
      - id: a
        shell: "true"
"#;

fn status_schema() -> jsonschema::Validator {
    let schema = Cli::new().args(["schema", "--status"]).run().code(0).json();
    assert!(jsonschema::draft7::meta::is_valid(&schema));
    jsonschema::draft7::new(&schema).expect("compiles")
}

#[test]
fn status_reports_checks_procedures_and_the_history_with_monitoring_codes() {
    let c = Cli::new().runbook(RUNBOOK);
    let at = |args: &[&str]| {
        let mut cmd = c.command();
        cmd.args(args);
        let out = cmd.output().expect("drillbook");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let dir = c.command().get_current_dir().expect("dir").to_owned();
    let validator = status_schema();

    // nothing recorded: the checks are not known, the drill never passed (CRITICAL wins)
    let (code, text) = at(&["status", "runbook.yaml"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.starts_with("CRITICAL: shop: drill drill overdue: it never passed (and 2 more)\n"),
        "{text}"
    );
    assert!(
        text.contains("  check archiver UNKNOWN: no recorded result\n"),
        "{text}"
    );

    std::fs::write(dir.join("archiver-ok"), "").expect("archiver");
    assert_eq!(at(&["run", "runbook.yaml", "drill"]).0, Some(0));
    // the checks have not run yet: UNKNOWN, exit 3
    let (code, text) = at(&["status", "runbook.yaml"]);
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.starts_with(
            "UNKNOWN: shop: check archiver UNKNOWN: no recorded result (and 1 more)\n"
        ),
        "{text}"
    );

    assert_eq!(at(&["check", "runbook.yaml"]).0, Some(0));
    let (code, text) = at(&["status", "runbook.yaml"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with("OK\nhistory drills/history.jsonl: 2 entries, head "),
        "{text}"
    );
    assert!(text.contains("  procedure drill OK\n"), "{text}");
    assert!(text.contains("schedule `0 9 1 * *` · next "), "{text}");
    let (code, json) = at(&["status", "runbook.yaml", "--format", "json"]);
    assert_eq!(code, Some(0));
    let report: serde_json::Value = serde_json::from_str(&json).expect("json");
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{json}");
    let rb = &report["runbooks"][0];
    assert_eq!(report["status"], "OK");
    assert_eq!(rb["checks"][0]["status"], "OK");
    assert_eq!(rb["procedures"][0]["rto"]["objective"], "15m");
    assert_eq!(rb["procedures"][0]["rto"]["met"], true);
    // a procedure without a schedule is listed, never overdue
    assert_eq!(rb["procedures"][1]["id"], "by-hand");
    assert_eq!(rb["procedures"][1]["overdue"], false);
    assert_eq!(rb["procedures"][1]["next_due"], serde_json::Value::Null);

    // the archiver fails: CRITICAL, exit 2, in the JSON too
    std::fs::remove_file(dir.join("archiver-ok")).expect("archiver");
    assert_eq!(at(&["check", "runbook.yaml"]).0, Some(2));
    let (code, json) = at(&["status", "runbook.yaml", "--format", "json"]);
    assert_eq!(code, Some(2));
    let report: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert!(validator.is_valid(&report));
    assert_eq!(report["healthy"], false);
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("shop: check archiver CRITICAL: ")),
        "{json}"
    );
    assert_eq!(report["runbooks"][0]["checks"][1]["status"], "OK");
}

#[test]
fn status_keeps_the_history_password_out_and_is_unknown_when_it_cannot_read() {
    let port = drillbook::pg::cluster::free_port().expect("port");
    let url = format!("postgres://drillbook:hunter2@127.0.0.1:{port}/history");
    for format in ["text", "json"] {
        let r = Cli::new()
            .runbook(RUNBOOK)
            .args([
                "status",
                "runbook.yaml",
                "--history",
                &url,
                "--format",
                format,
            ])
            .run();
        r.code(3);
        assert!(
            !r.stdout.contains("hunter2") && !r.stderr.contains("hunter2"),
            "{}{}",
            r.stdout,
            r.stderr
        );
        assert!(
            r.stdout
                .contains("cannot read the history postgres://drillbook:"),
            "{}",
            r.stdout
        );
    }
}

#[test]
fn an_invalid_runbook_or_checks_schedule_is_unknown() {
    let r = Cli::new()
        .runbook(RUNBOOK)
        .args(["status", "runbook.yaml", "--checks", "0 0 32 * *"])
        .run();
    r.code(3);
    assert!(r.stderr.contains("--checks `0 0 32 * *`"), "{}", r.stderr);
    Cli::new()
        .runbook("version: 1\nname: x\nbogus: 1\n")
        .args(["status", "runbook.yaml"])
        .run()
        .code(3);
}
