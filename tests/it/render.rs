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
    let base = format!("{date}-logged-drill-{id}");
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
        xml.contains("name=\"logged.drill\" timestamp=")
            && xml.contains("tests=\"5\" failures=\"2\" errors=\"0\""),
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

/// `drillbook render` run in `dir` with the default history (`drills/history.jsonl`
/// there), as a user would.
fn render_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> crate::support::Run {
    let mut cmd = std::process::Command::new(crate::support::BIN);
    cmd.arg("render")
        .args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("DRILLBOOK_HISTORY")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run drillbook render");
    crate::support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const SHIPPED: [&str; 6] = [
    "neon-production",
    "local-pitr-drill",
    "postgres-pitr-drill",
    "pgbackrest-pitr-drill",
    "barman-pitr-drill",
    "hello",
];

/// A copy of the shipped runbooks in a fresh directory (so no drill run in the repository
/// changes the "latest results"): render them there with [`render_in`].
fn shipped_copy() -> crate::support::TempDir {
    let dir = crate::support::TempDir::new();
    std::fs::create_dir_all(dir.join("runbooks")).expect("mkdir");
    for name in SHIPPED {
        std::fs::copy(
            root().join(format!("runbooks/{name}.yaml")),
            dir.join(&format!("runbooks/{name}.yaml")),
        )
        .expect("copy runbook");
    }
    dir
}

#[test]
fn the_shipped_runbooks_render_as_their_snapshots() {
    let copy = shipped_copy();
    for name in SHIPPED {
        let r = render_in(
            copy.path(),
            &[
                &format!("runbooks/{name}.yaml"),
                "--as-of",
                "2026-12-01T00:00:00Z",
            ],
            &[],
        );
        r.code(0);
        assert_eq!(
            drillbook::render::lint::problems(&r.stdout),
            Vec::<String>::new(),
            "{name}"
        );
        expect_test::expect_file![root().join(format!("tests/snapshots/{name}.md"))]
            .assert_eq(&r.stdout);
    }
}

#[test]
fn the_committed_runbook_document_is_up_to_date() {
    // as CI and a reader would run it: in the repository, with its default history
    let r = render_in(
        &root(),
        &[
            "runbooks/neon-production.yaml",
            "-o",
            "docs/database-backup-recovery-runbook.md",
            "--check",
        ],
        &[],
    );
    r.code(0);
}

#[test]
fn secrets_in_the_environment_never_reach_the_document() {
    let secrets = [
        ("NEON_PROJECT_ID", "proj-secret-31337"),
        ("NEON_API_KEY", "napi-secret-31337"),
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/slack-secret-31337",
        ),
        (
            "BETTERSTACK_HEARTBEAT_URL",
            "https://uptime.betterstack.com/api/v1/heartbeat/bs-secret-31337",
        ),
        (
            "DATABASE_URL",
            "postgres://app:pw-secret-31337@db.internal/shop",
        ),
        ("PG_BASE_BACKUP", "/backups/base-secret-31337"),
    ];
    let copy = shipped_copy();
    for name in SHIPPED {
        for html in [false, true] {
            let mut args = vec![
                format!("runbooks/{name}.yaml"),
                "--as-of".into(),
                "2026-12-01T00:00:00Z".into(),
            ];
            if html {
                args.push("--html".into());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let r = render_in(copy.path(), &args, &secrets);
            r.code(0);
            assert!(
                !r.stdout.contains("secret-31337"),
                "{name}: a secret reached the output"
            );
        }
    }
}

#[test]
fn an_edited_runbook_makes_check_fail_until_rendered_again() {
    let yaml =
        std::fs::read_to_string(root().join("runbooks/neon-production.yaml")).expect("runbook");
    let c = Cli::new().runbook(&yaml);
    let render = |extra: &[&str]| {
        let mut args = vec![
            "render",
            "runbook.yaml",
            "-o",
            "doc.md",
            "--as-of",
            "2026-12-01T00:00:00Z",
        ];
        args.extend_from_slice(extra);
        Cli::new()
            .args(args)
            .command()
            .current_dir(c.dir.path())
            .output()
            .expect("render")
    };
    assert!(render(&["--html"]).status.success());
    assert!(render(&["--check", "--html"]).status.success());
    std::fs::write(
        c.dir.join("runbook.yaml"),
        yaml.replace("Monthly point-in-time recovery drill", "Monthly PITR drill"),
    )
    .expect("edit");
    let stale = render(&["--check"]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("doc.md is out of date"));
    assert!(render(&["--html"]).status.success());
    assert!(render(&["--check", "--html"]).status.success());
    let md = std::fs::read_to_string(c.dir.join("doc.md")).expect("md");
    assert!(md.contains("Monthly PITR drill"));
    // the page has the document's headings, with the same anchors
    let page = std::fs::read_to_string(c.dir.join("doc.html")).expect("html");
    for h in drillbook::render::lint::headings(&md) {
        assert!(
            page.contains(&format!("id=\"{}\"", h.anchor)),
            "{} missing from the page",
            h.anchor
        );
    }
}

#[test]
fn a_recorded_drill_renders_as_its_log_snapshots() {
    let text = std::fs::read_to_string(root().join("tests/fixtures/record.json")).expect("fixture");
    let record: drillbook::record::DrillRecord =
        serde_json::from_str(&text).expect("a DrillRecord");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    let entry = drillbook::history::Entry::after(None, value);
    let renderer = drillbook::render::Renderer::new(None).expect("templates");
    let md = drillbook::render::log::markdown(&renderer, &record, Some(&entry)).expect("log");
    let xml = drillbook::render::junit::xml(&record);
    for (name, got) in [("drill-log.md", md), ("drill-log.xml", xml)] {
        expect_test::expect_file![root().join(format!("tests/snapshots/{name}"))].assert_eq(&got);
    }
}

/// The kinds' reference is written from their declarations: `docs/step-kinds.md`, and the
/// measures table of `docs/runbook-format.md` between its markers.
#[test]
fn the_step_kinds_reference_is_current() {
    expect_test::expect_file![root().join("docs/step-kinds.md")]
        .assert_eq(&drillbook::render::kinds::reference());
    let format = std::fs::read_to_string(root().join("docs/runbook-format.md")).expect("read");
    let (start, end) = (
        "<!-- measures: written from the kinds' declarations -->\n",
        "<!-- end of measures -->",
    );
    let from = format.find(start).expect("measures start marker") + start.len();
    let to = format[from..].find(end).expect("measures end marker") + from;
    let table = drillbook::render::kinds::measures_table();
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        let updated = format!("{}{table}{}", &format[..from], &format[to..]);
        std::fs::write(root().join("docs/runbook-format.md"), updated).expect("write");
        return;
    }
    assert_eq!(
        &format[from..to],
        table,
        "docs/runbook-format.md's measures table is stale (UPDATE_EXPECT=1 rewrites it)"
    );
}

/// A run that failed before anything measured the recovery point still shows the RPO
/// objective it was held to, as not measured.
#[test]
fn a_failed_runs_log_shows_the_rpo_objective_as_not_measured() {
    let c = Cli::new()
        .runbook("version: 1\nname: unmeasured\nobjectives: { rto: 1h, rpo: 24h }\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    steps:\n      - id: restore\n        shell: exit 1\n")
        .args(["run", "runbook.yaml", "drill", "--format", "json"]);
    let r = c.run();
    r.code(1);
    let rec = r.json();
    assert_eq!(rec["rpo"]["objective"], "24h", "{rec:#}");
    assert_eq!(rec["rpo"]["met"], serde_json::Value::Null);
    let id = rec["id"].as_str().expect("id");
    let md = log_files(&c, id)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "md"))
        .expect("the Markdown log");
    let text = std::fs::read_to_string(md).expect("read");
    assert!(
        text.contains("| RPO (recovery point unknown) | 24h | not measured | not measured |")
            && text.contains(
                "| RTO (from `restore` to `restore`) | 1h | not measured | not measured |"
            ),
        "{text}"
    );
}

/// Markup an attacker can put in a runbook, a step's output, a param's value or an error.
const ATTACK: &str = "<img src=x onerror=alert(1)> <iframe src=https://evil.example></iframe> [x](javascript:alert(2)) <javascript:alert(3)> ![p](javascript:alert(4)) *em* `";

const INJECTED: &str = r#"version: 1
name: injected
title: "Shop ATTACK"
description: "Read this: ATTACK"
procedures:
  drill:
    title: "Drill ATTACK"
    description: "Steps: ATTACK"
    kind: drill
    params:
      note: { type: string, default: "ATTACK", description: "A note ATTACK" }
    steps:
      - id: noisy
        title: "Noisy ATTACK"
        description: "Prints ATTACK"
        shell:
          run: 'printf "%s\n" "$NOTE"; printf "%s\n" "$ERR" >&2; exit 1'
          env: { NOTE: "{{ params.note }}", ERR: "it`s broken: ATTACK | a cell" }
"#;

/// Whether `markdown` holds anything a renderer would make active: raw HTML, an image, or a
/// link whose scheme runs code. Checked on pulldown-cmark's reading, not on drillbook's.
fn active_markdown(markdown: &str) -> Vec<String> {
    use pulldown_cmark::{Event, Parser, Tag};
    let runs = |url: &str| {
        let u: String = url
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_lowercase();
        ["javascript:", "data:", "vbscript:"]
            .iter()
            .any(|s| u.starts_with(s))
    };
    Parser::new_ext(markdown, drillbook::render::lint::options())
        .filter_map(|e| match e {
            Event::Html(h) | Event::InlineHtml(h) => Some(format!("raw HTML {h}")),
            Event::Start(Tag::Link { dest_url, .. }) if runs(&dest_url) => {
                Some(format!("link {dest_url}"))
            }
            Event::Start(Tag::Image { dest_url, .. }) if runs(&dest_url) => {
                Some(format!("image {dest_url}"))
            }
            _ => None,
        })
        .collect()
}

/// Runbook text, step output, a param's value and errors are data in every document: the
/// drill log, the runbook document and its HTML page show them as text, nothing of them
/// active; and a lone backtick in a failing step's output breaks neither the drill log nor
/// `render` or `render --check`.
#[test]
fn injected_markup_stays_text_in_every_document() {
    let c = Cli::new()
        .runbook(&INJECTED.replace("ATTACK", ATTACK))
        .args([
            "run",
            "runbook.yaml",
            "drill",
            "--param",
            &format!("note={ATTACK} | a `cell` ``"),
        ]);
    let r = c.run();
    r.code(1);
    assert!(r.stderr.contains("drillbook: drill log "), "{}", r.stderr);
    let log = std::fs::read_dir(c.dir.join("drills"))
        .expect("drills/")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "md"))
        .expect("a drill log");
    let log = std::fs::read_to_string(log).expect("drill log");
    assert_eq!(active_markdown(&log), Vec::<String>::new(), "{log}");
    assert!(
        log.contains("| note | \\<img src=x onerror=alert(1)\\>"),
        "{log}"
    );
    let render = |args: &[&str]| {
        let mut all = vec!["render", "runbook.yaml", "--as-of", "2026-12-01T00:00:00Z"];
        all.extend_from_slice(args);
        let mut cmd = Cli::new().args(all).command();
        cmd.current_dir(c.dir.path());
        let out = cmd.output().expect("render");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        render(&["-o", "doc.md", "--html"]),
        (
            Some(0),
            "drillbook: wrote doc.md\ndrillbook: wrote doc.html\n".into()
        )
    );
    assert_eq!(render(&["-o", "doc.md", "--html", "--check"]).0, Some(0));
    let doc = std::fs::read_to_string(c.dir.join("doc.md")).expect("doc");
    assert_eq!(active_markdown(&doc), Vec::<String>::new(), "{doc}");
    assert!(
        doc.contains("it\\`s broken"),
        "the failing run's reason is in the document:\n{doc}"
    );
    let page = std::fs::read_to_string(c.dir.join("doc.html")).expect("page");
    for active in [
        "<img",
        "<iframe",
        "<script",
        "href=\"javascript",
        "src=\"javascript",
    ] {
        assert!(!page.contains(active), "{active} in the page:\n{page}");
    }
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
}

/// One backtick in a failing step's output (here the last line of its stderr, which becomes
/// the run's reason) leaves the document sound: `render` writes it and `render --check`,
/// as CI runs it, finds it up to date.
#[test]
fn a_backtick_in_a_failing_steps_output_does_not_break_render() {
    let c = Cli::new()
        .runbook("version: 1\nname: tick\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    steps:\n      - id: noisy\n        shell: \"echo 'it`s broken | here' >&2; exit 1\"\n")
        .args(["run", "runbook.yaml", "drill"]);
    c.run().code(1);
    let render = |extra: &[&str]| {
        let mut args = vec!["render", "runbook.yaml", "-o", "doc.md", "--html"];
        args.extend_from_slice(extra);
        let mut cmd = Cli::new().args(args).command();
        cmd.current_dir(c.dir.path());
        let out = cmd.output().expect("render");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = render(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = render(&["--check"]);
    assert_eq!(code, Some(0), "{stderr}");
    let doc = std::fs::read_to_string(c.dir.join("doc.md")).expect("doc");
    assert!(
        doc.contains(
            "| failed: step `noisy` failed: `sh` exited with code 1: it\\`s broken \\| here |"
        ),
        "{doc}"
    );
}
