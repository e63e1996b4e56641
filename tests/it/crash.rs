//! Inputs that used to crash drillbook (exit 101, and during a run no cleanup and no
//! record), through the real binary: each is now a clear error with a usage or
//! could-not-run exit code.

use crate::support::Cli;

const TIMESTAMP_PARAM: &str = r#"version: 1
name: t
procedures:
  p:
    title: P
    kind: drill
    params:
      t: { type: timestamp }
    steps:
      - id: a
        shell:
          run: echo "$T"
          env: { T: "{{ params.t }}" }
"#;

/// A relative time whose offset is past the calendar: refused when it is read, naming the
/// limit, before anything runs.
#[test]
fn a_relative_time_past_the_calendar_is_a_usage_error() {
    let too_far = "t=now-100000000w";
    for args in [
        vec!["run", "runbook.yaml", "p", "--param", too_far],
        vec!["plan", "runbook.yaml", "p", "--param", too_far],
        vec!["history", "list", "--since", "now-100000000w"],
        vec!["render", "runbook.yaml", "--as-of", "now+100000000w"],
    ] {
        let cli = Cli::new().runbook(TIMESTAMP_PARAM).args(&args);
        let r = cli.run();
        r.code(2);
        assert!(
            r.stderr
                .contains("`100000000w`: too long: the longest duration is 36500d"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(!cli.dir.join("drills").exists(), "{args:?} recorded a run");
    }
}

/// `%€` in a connection string: a `%` before a character wider than a byte is kept as
/// written. In a step the run goes on to its cleanup and its record, with the connection
/// string's error.
#[test]
fn a_percent_before_a_wide_character_is_an_error_not_a_crash() {
    let url = "postgres://app@127.0.0.1:1/shop?sslmode=%€";
    let cli = Cli::new().args(["history", "list", "--history", url]);
    let r = cli.run();
    r.code(3);
    assert!(r.stderr.contains("unknown sslmode `%€`"), "{}", r.stderr);

    let yaml = format!(
        "version: 1\nname: t\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: q\n        sql: {{ db: \"{url}\", query: select 1 }}\n    cleanup:\n      - id: tidy\n        shell: touch cleanup-ran\n"
    );
    let cli = Cli::new()
        .runbook(&yaml)
        .args(["run", "runbook.yaml", "p", "--format", "json"]);
    let r = cli.run();
    r.code(3);
    let rec = r.json();
    assert_eq!(rec["verdict"], "error");
    let error = rec["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("unknown sslmode `%€`"), "{error}");
    assert!(cli.dir.join("cleanup-ran").exists(), "cleanup did not run");
    assert!(r.stderr.contains("recorded as entry 1"), "{}", r.stderr);
}

/// A runbook written on one line: an error past column 65,535 is shown with the part of the
/// line around it, the caret under the fault.
#[test]
fn an_error_far_along_a_long_line_is_shown_around_its_column() {
    let title = "x".repeat(70_000);
    let yaml = format!("{{version: 1, name: long, title: \"{title}\", procedures: {{p: {{title: P, kind: drill, steps: [{{id: a, shel: echo}}]}}}}}}\n");
    let col = yaml.find("shel").expect("the typo") + 1;
    let cli = Cli::new().runbook(&yaml).args(["validate", "runbook.yaml"]);
    let r = cli.run();
    r.code(2);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines[0],
        format!("runbook.yaml:1:{col}: error: unknown step kind `shel`"),
        "{}",
        r.stderr
    );
    // the source line is an excerpt ending with the line's end; the caret is under `shel`
    let (source, caret) = (lines[2], lines[3]);
    assert!(
        source.starts_with("1 | …") && source.ends_with("echo}]}}}"),
        "{source}"
    );
    assert!(source.chars().count() < 200, "{source}");
    let at = caret.find('^').expect("a caret");
    let under: String = source.chars().skip(at).take(4).collect();
    assert_eq!(under, "shel", "{source}\n{caret}");
}

/// Names past any sensible length are refused with their length, not echoed whole.
#[test]
fn a_name_of_seventy_thousand_characters_is_refused_briefly() {
    let long = "a".repeat(70_000);
    let yaml = format!("version: 1\nname: t\nprocedures:\n  p:\n    title: P\n    kind: drill\n    params:\n      ? {long}\n      : {{ type: int, default: 1 }}\n    steps:\n      - id: {long}\n        shell: echo\n");
    let cli = Cli::new()
        .runbook(&yaml)
        .args(["plan", "runbook.yaml", "p"]);
    let r = cli.run();
    r.code(2);
    for what in ["param name", "step id"] {
        assert!(
            r.stderr.contains(&format!(
                "error: invalid {what} `aaaaaaaaaaaaaaaaaaaa…` (70000 characters): at most 63"
            )),
            "{}",
            r.stderr
        );
    }
    assert!(r.stderr.len() < 2_000, "{}", r.stderr.len());
}

/// A record whose operator name is 70,000 characters long (drillbook used to record any
/// length) is listed and shown: table columns are padded without the formatter's widths,
/// which end at 65,535.
#[test]
fn a_record_with_a_huge_operator_name_is_listed_and_shown() {
    let cli = Cli::new().runbook(TIMESTAMP_PARAM).args([
        "run",
        "runbook.yaml",
        "p",
        "--param",
        "t=now",
        "--format",
        "json",
    ]);
    let r = cli.run();
    r.code(0);
    let mut record = r.json();
    let operator = "o".repeat(70_000);
    record["operator"] = operator.clone().into();
    let id = record["id"].as_str().expect("id").to_owned();
    let record: drillbook::record::DrillRecord = serde_json::from_value(record).expect("record");
    let path = cli.dir.join("long.jsonl");
    let store = path.display().to_string();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(drillbook::history::Store::from_arg(Some(&store)).append(&record))
        .expect("appended");

    let history = |args: &[&str]| {
        let mut all = vec!["history"];
        all.extend_from_slice(args);
        all.extend(["--history", &store]);
        Cli::new().args(&all).run()
    };
    let list = history(&["list"]);
    list.code(0);
    let row = list.stdout.lines().nth(1).expect("a row");
    assert!(
        row.contains(&operator) && row.ends_with(&id),
        "{}",
        &row[..200]
    );
    let show = history(&["show", &id]);
    show.code(0);
    assert!(show.stdout.contains(&operator));
    history(&["verify"]).code(0);
}

/// An operator name that cannot be recorded stops a run or a check before anything runs
/// (it used to be recorded, and then broke `history list` for good).
#[test]
fn an_operator_name_too_long_or_on_two_lines_stops_before_anything_runs() {
    let yaml = "version: 1\nname: t\nchecks:\n  - id: c\n    assert: 'true'\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: a\n        shell: touch step-ran\n";
    for (operator, problem) in [
        ("o".repeat(70_000), "is 70000 characters long"),
        (
            "alice\nbob".to_owned(),
            "holds a control character (a line break, a tab)",
        ),
    ] {
        for args in [
            ["run", "runbook.yaml", "p"].as_slice(),
            ["check", "runbook.yaml"].as_slice(),
        ] {
            let cli = Cli::new()
                .runbook(yaml)
                .args(args)
                .env("DRILLBOOK_OPERATOR", &operator);
            let r = cli.run();
            r.code(3);
            assert!(
                r.stderr.contains(&format!("the operator name from DRILLBOOK_OPERATOR {problem}: set DRILLBOOK_OPERATOR to a name on one line of at most 200 characters")),
                "{args:?}: {}",
                r.stderr
            );
            assert!(r.stderr.len() < 1_000, "the name is not echoed");
            assert!(!cli.dir.join("step-ran").exists());
            assert!(!cli.dir.join("drills").exists(), "{args:?} recorded");
        }
    }
}

/// A `connect_timeout` past what a wait can add up to: refused when the string is read
/// (waiting for it plus a grace second overflowed).
#[test]
fn a_connect_timeout_of_centuries_is_an_error() {
    let url = "postgres://app@127.0.0.1:1/shop?connect_timeout=18446744073709551615";
    let r = Cli::new().args(["history", "list", "--history", url]).run();
    r.code(3);
    assert!(
        r.stderr
            .contains("connect_timeout `18446744073709551615` is more than 3600 seconds"),
        "{}",
        r.stderr
    );
}

/// A delivery timeout no Duration can hold (`1e300` seconds) is ignored like any unusable
/// value: the failed run still alerts, is recorded and exits 1 (it used to panic after the
/// cleanup, before the record).
#[test]
fn an_absurd_notify_timeout_still_records_the_run() {
    let yaml = "version: 1\nname: t\nalerts:\n  - webhook: { url: \"http://127.0.0.1:1/hook\" }\nprocedures:\n  p:\n    title: P\n    kind: drill\n    steps:\n      - id: a\n        shell: \"false\"\n";
    let cli = Cli::new()
        .runbook(yaml)
        .env("DRILLBOOK_NOTIFY_TIMEOUT", "1e300")
        .args(["run", "runbook.yaml", "p"]);
    let r = cli.run();
    r.code(1);
    assert!(
        r.stderr.contains("the webhook alert could not be sent")
            && r.stderr.contains("recorded as entry 1"),
        "{}",
        r.stderr
    );
}
