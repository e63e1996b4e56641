//! Rendering through the real binary: the drill logs every run writes (Markdown, JSON,
//! JUnit XML), `history show --format md`, the runbook document (`render`, `--check`,
//! `--html`), snapshots of both for the shipped runbooks, and secrets kept out of all of it.

use crate::support::{root, Cli};

const RUNBOOK: &str = r#"version: 1
name: logged
objectives: { rto: 5m }
procedures:
  drill:
    title: Drill with a log
    kind: drill
    params:
      fail: { type: int, default: 0 }
    steps:
      - id: token
        title: Use the API token
        shell: { run: 'echo "token is $API_TOKEN"', env: { API_TOKEN: "{{ env.API_TOKEN }}" } }
      - id: work
        title: Work that may fail | with a pipe
        shell: { run: 'test "$FAIL" = 0 || { echo "broke <here> & there" >&2; exit 3; }', env: { FAIL: "{{ params.fail }}" } }
      - id: later
        shell: echo later
    cleanup:
      - id: tidy
        shell: echo tidy
"#;

const SECRET: &str = "tok-supersecret-4711";

/// Runs the drill; returns the CLI (its directory holds `drills/`) and the record.
fn run(fail: bool) -> (Cli, serde_json::Value) {
    let c = Cli::new().runbook(RUNBOOK).env("API_TOKEN", SECRET).args([
        "run",
        "runbook.yaml",
        "drill",
        "--format",
        "json",
        "--param",
        if fail { "fail=1" } else { "fail=0" },
    ]);
    let r = c.run();
    r.code(if fail { 1 } else { 0 });
    let rec = r.json();
    (c, rec)
}

fn log_files(c: &Cli, id: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(c.dir.join("drills"))
        .expect("drills/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(id))
        .collect();
    files.sort();
    files
}

#[test]
fn every_run_writes_a_markdown_json_and_junit_log() {
    let (c, rec) = run(true);
    let id = rec["id"].as_str().expect("id");
    let files = log_files(&c, id);
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    let date = &rec["started_at"].as_str().expect("start")[..10];
    let base = format!("{date}-drill-{id}");
    assert_eq!(
        names,
        [
            format!("{base}.json"),
            format!("{base}.md"),
            format!("{base}.xml")
        ]
    );
    // the JSON log is the record
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).expect("json")).expect("parse");
    assert_eq!(json, rec);
    // the Markdown log is sound and says what happened
    let md = std::fs::read_to_string(&files[1]).expect("md");
    assert_eq!(
        drillbook::render::lint::problems(&md),
        Vec::<String>::new(),
        "{md}"
    );
    assert!(md.contains("Verdict: **FAILED**"), "{md}");
    assert!(md.contains("Work that may fail \\| with a pipe"), "{md}");
    assert!(
        md.contains("| 3 | later: later | shell | not run |"),
        "{md}"
    );
    // JUnit: one case per step, cleanup step and objective; the failure carries the error
    let xml = std::fs::read_to_string(&files[2]).expect("xml");
    assert_eq!(xml.matches("<testcase ").count(), 5, "{xml}");
    // the failed step, and the RTO objective (not measured: the last step never ran)
    assert!(
        xml.contains("<testsuites name=\"drillbook\" tests=\"5\" failures=\"2\" errors=\"0\""),
        "{xml}"
    );
    assert!(
        xml.contains("<failure type=\"failed\" message=\"`sh` exited with code 3"),
        "{xml}"
    );
    assert!(
        xml.contains("<failure type=\"objective\" message=\"RTO not measured"),
        "{xml}"
    );
    assert!(xml.contains("broke &lt;here&gt; &amp; there"), "{xml}");
    assert!(xml.contains("step later not run"), "{xml}");
    // `history show --format md` renders the same log
    let shown = Cli::new()
        .args(["history", "show", id, "--format", "md", "--history"])
        .args([c.dir.join("drills/history.jsonl").display().to_string()])
        .run();
    shown.code(0);
    assert_eq!(shown.stdout, md);
    // the secret the run used appears in none of them
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        assert!(!text.contains(SECRET), "{} holds the secret", f.display());
    }
}

#[test]
fn log_dir_and_templates_can_be_chosen() {
    let c = Cli::new().runbook(RUNBOOK).env("API_TOKEN", SECRET);
    std::fs::create_dir_all(c.dir.join("tpl")).expect("tpl");
    std::fs::write(
        c.dir.join("tpl/drill-log.md.j2"),
        "# Custom log of {{ id }}\n\nVerdict {{ verdict }}.\n",
    )
    .expect("template");
    let c = c.args([
        "run",
        "runbook.yaml",
        "drill",
        "--log-dir",
        "logs",
        "--templates",
        "tpl",
        "--format",
        "json",
    ]);
    let r = c.run();
    r.code(0);
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let md = std::fs::read_dir(c.dir.join("logs"))
        .expect("logs/")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "md"))
        .expect("md log");
    assert_eq!(
        std::fs::read_to_string(md).expect("read"),
        format!("# Custom log of {id}\n\nVerdict PASSED.\n")
    );
}

#[test]
fn a_broken_custom_template_is_named() {
    let c = Cli::new().runbook(RUNBOOK).env("API_TOKEN", SECRET);
    std::fs::create_dir_all(c.dir.join("tpl")).expect("tpl");
    std::fs::write(
        c.dir.join("tpl/drill-log.md.j2"),
        "# Log\n\n{{ no_such_field }}\n",
    )
    .expect("template");
    let r = c
        .args(["run", "runbook.yaml", "drill", "--templates", "tpl"])
        .run();
    // the drill passed but its log could not be written: not a provable pass
    r.code(3);
    assert!(
        r.stderr.contains("tpl/drill-log.md.j2: line 3"),
        "{}",
        r.stderr
    );
    let _ = root();
}
