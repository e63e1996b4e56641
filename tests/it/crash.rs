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
