//! The drill history through the real binary: every run appended, the chain verified, each
//! kind of tampering found at its position, concurrent appenders losing nothing (file and
//! PostgreSQL stores), a torn last line detected and repaired.

use std::process::Stdio;

use crate::support::{pg, Cli};

/// A tiny drill that passes, or fails when `fail=1`.
const RUNBOOK: &str = r#"version: 1
name: hist
objectives: { rto: 5m }
procedures:
  drill:
    title: Drill
    kind: drill
    schedule: "0 9 1 * *"
    params:
      fail: { type: int, default: 0 }
    steps:
      - id: work
        shell: { run: 'test "$FAIL" = 0', env: { FAIL: "{{ params.fail }}" } }
"#;

fn cli() -> Cli {
    Cli::new().runbook(RUNBOOK)
}

/// Runs the drill in `c`'s directory (history `drills/history.jsonl` there); returns the
/// record id.
fn run(c: &Cli, fail: bool) -> String {
    let r = Cli::new()
        .runbook(RUNBOOK)
        .args([
            "run",
            "runbook.yaml",
            "drill",
            "--format",
            "json",
            "--param",
        ])
        .args([if fail { "fail=1" } else { "fail=0" }])
        .args([
            "--history",
            &c.dir.join("history.jsonl").display().to_string(),
        ])
        .run();
    r.code(if fail { 1 } else { 0 });
    assert!(r.stderr.contains("recorded as entry"), "{}", r.stderr);
    r.json()["id"].as_str().expect("id").to_owned()
}

fn history(c: &Cli, args: &[&str]) -> crate::support::Run {
    Cli::new()
        .args(["history"])
        .args(args.iter().copied())
        .args([
            "--history",
            &c.dir.join("history.jsonl").display().to_string(),
        ])
        .run()
}

fn lines(c: &Cli) -> Vec<String> {
    std::fs::read_to_string(c.dir.join("history.jsonl"))
        .expect("history")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write(c: &Cli, lines: &[String]) {
    std::fs::write(c.dir.join("history.jsonl"), lines.join("\n") + "\n").expect("write");
}

/// A history of five runs (the second one failed); returns the ids in order.
fn five(c: &Cli) -> Vec<String> {
    (0..5).map(|i| run(c, i == 1)).collect()
}

#[test]
fn every_run_is_appended_and_the_chain_verifies() {
    let c = cli();
    let ids = five(&c);
    let v = history(&c, &["verify", "--format", "json"]);
    v.code(0);
    assert_eq!(v.json()["entries"], 5);
    let l = lines(&c);
    assert_eq!(l.len(), 5);
    let first: serde_json::Value = serde_json::from_str(&l[0]).expect("entry");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["record"]["id"], ids[0].as_str());
    assert_eq!(first["prev"].as_str().map(str::len), Some(64));
    let second: serde_json::Value = serde_json::from_str(&l[1]).expect("entry");
    assert_eq!(second["prev"], first["hash"]);
    assert_eq!(second["record"]["verdict"], "failed");
}

/// The position and kind `history verify` reports.
fn broken(c: &Cli) -> (u64, String, String) {
    let v = history(c, &["verify", "--format", "json"]);
    v.code(1);
    let j = v.json();
    let b = &j["break"];
    let text = history(c, &["verify"]);
    text.code(1);
    assert!(text.stdout.contains("broken at entry"), "{}", text.stdout);
    (
        b["position"].as_u64().expect("position"),
        b["kind"].as_str().expect("kind").to_owned(),
        b["id"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn an_edited_rto_is_found() {
    let c = cli();
    let ids = five(&c);
    let mut l = lines(&c);
    let mut e: serde_json::Value = serde_json::from_str(&l[2]).expect("entry");
    e["record"]["rto"]["measured_ms"] = 987_654_321.into();
    l[2] = serde_json::to_string(&e).expect("json");
    write(&c, &l);
    assert_eq!(broken(&c), (3, "edited".into(), ids[2].clone()));
}

#[test]
fn a_deleted_failed_drill_is_found() {
    let c = cli();
    let ids = five(&c);
    let mut l = lines(&c);
    l.remove(1);
    write(&c, &l);
    assert_eq!(broken(&c), (2, "deleted".into(), ids[2].clone()));
}

#[test]
fn two_swapped_records_are_found() {
    let c = cli();
    let ids = five(&c);
    let mut l = lines(&c);
    l.swap(2, 3);
    write(&c, &l);
    assert_eq!(broken(&c), (3, "reordered".into(), ids[3].clone()));
}

#[test]
fn a_record_appended_by_hand_is_found() {
    let c = cli();
    let ids = five(&c);
    let mut l = lines(&c);
    // a plausible entry: the last one, renumbered and chained, with a new id and a pass
    let last: serde_json::Value = serde_json::from_str(&l[4]).expect("entry");
    let mut forged = last.clone();
    forged["seq"] = 6.into();
    forged["prev"] = last["hash"].clone();
    forged["record"]["id"] = "20261201T090000Z-beef".into();
    l.push(serde_json::to_string(&forged).expect("json"));
    write(&c, &l);
    let (pos, kind, id) = broken(&c);
    assert_eq!(
        (pos, kind.as_str(), id.as_str()),
        (6, "edited", "20261201T090000Z-beef")
    );
    assert_ne!(ids[4], id);
}

#[test]
fn a_deleted_newest_record_is_found() {
    let c = cli();
    let _ = five(&c);
    // the newest run failed; deleting it leaves an intact chain, but not its anchor
    run(&c, true);
    let mut l = lines(&c);
    l.pop();
    write(&c, &l);
    let (pos, kind, _) = broken(&c);
    assert_eq!((pos, kind.as_str()), (6, "deleted"));
}

#[test]
fn a_well_formed_entry_added_by_hand_is_found() {
    let c = cli();
    let _ = five(&c);
    // someone who knows the format computes a correct hash for the entry they add
    let mut l = lines(&c);
    let last: drillbook::history::Entry = serde_json::from_str(&l[4]).expect("entry");
    let mut record = last.record.clone();
    record["id"] = "20261201T090000Z-0000beef".into();
    l.push(drillbook::history::Entry::after(Some(&last), record).line());
    write(&c, &l);
    let (pos, kind, id) = broken(&c);
    assert_eq!(
        (pos, kind.as_str(), id.as_str()),
        (6, "inserted", "20261201T090000Z-0000beef")
    );
}

#[test]
fn a_torn_last_line_is_reported_and_repaired() {
    let c = cli();
    five(&c);
    let mut text = std::fs::read_to_string(c.dir.join("history.jsonl")).expect("read");
    let whole = lines(&c)[4].clone();
    text.push_str(&whole[..whole.len() / 3]);
    std::fs::write(c.dir.join("history.jsonl"), text).expect("write");
    assert_eq!(broken(&c).1, "torn");
    history(&c, &["repair"]).code(0);
    history(&c, &["verify"]).code(0);
    // the next run appends after the intact entries
    run(&c, false);
    let v = history(&c, &["verify", "--format", "json"]);
    v.code(0);
    assert_eq!(v.json()["entries"], 6);
}

/// Starts `n` runs at once appending to `history`, each in its own directory (kept until it
/// ends), and waits for all of them to pass.
fn run_concurrently(n: usize, history: &str) {
    let runs: Vec<(Cli, std::process::Child)> = (0..n)
        .map(|_| {
            let c = Cli::new().runbook(RUNBOOK).args([
                "run",
                "runbook.yaml",
                "drill",
                "--history",
                history,
            ]);
            let child = c
                .command()
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            (c, child)
        })
        .collect();
    for (_dir, child) in runs {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn twenty_concurrent_runs_leave_twenty_valid_records() {
    let c = cli();
    let path = c.dir.join("history.jsonl").display().to_string();
    run_concurrently(20, &path);
    let v = history(&c, &["verify", "--format", "json"]);
    v.code(0);
    assert_eq!(v.json()["entries"], 20);
    let ids: std::collections::BTreeSet<String> = lines(&c)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("entry")["record"]["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 20, "run ids must be unique");
}

#[test]
fn the_postgres_store_serializes_appenders_and_finds_tampering() {
    let db = pg().database("history");
    let url = pg().url(&db);
    run_concurrently(8, &url);
    let verify = |code: i32| {
        let r = Cli::new()
            .args(["history", "verify", "--format", "json", "--history", &url])
            .run();
        r.code(code);
        r.json()
    };
    assert_eq!(verify(0)["entries"], 8);
    assert_eq!(
        pg().psql(&db, "SELECT count(*), max(seq) FROM drillbook_history"),
        "8|8"
    );
    pg().psql(
        &db,
        "UPDATE drillbook_history SET line = replace(line, '\"verdict\":\"passed\"', '\"verdict\":\"failed\"') WHERE seq = 5",
    );
    let v = verify(1);
    assert_eq!(v["break"]["position"], 5);
    assert_eq!(v["break"]["kind"], "edited");
    // the newest row deleted (after undoing the edit by deleting from 5 on)
    pg().psql(&db, "DELETE FROM drillbook_history WHERE seq >= 5");
    let v = verify(1);
    assert_eq!(v["break"]["position"], 5);
    assert_eq!(v["break"]["kind"], "deleted");
    // and hiding that by removing the anchor row is a break of its own
    pg().psql(&db, "DELETE FROM drillbook_history_head");
    let v = verify(1);
    assert_eq!(v["break"]["kind"], "anchor_lost", "{v:#}");
}

#[test]
fn a_record_names_the_git_commit_of_its_runbook() {
    let c = cli();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(c.dir.path())
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "runbook.yaml"]);
    git(&["commit", "-q", "-m", "runbook"]);
    let head = git(&["rev-parse", "HEAD"]);
    let r = c
        .args([
            "run",
            "runbook.yaml",
            "drill",
            "--format",
            "json",
            "--history",
            "h.jsonl",
        ])
        .run();
    r.code(0);
    let rec = r.json();
    assert_eq!(rec["runbook"]["git"]["commit"], head.as_str());
    assert_eq!(rec["runbook"]["git"]["dirty"], false);
}

/// The history's `.head` deleted, emptied or garbled: once the entries say an anchor is
/// kept, losing it is a break, not "chain intact".
#[test]
fn a_lost_anchor_is_a_break() {
    let c = cli();
    let _ = five(&c);
    let head = c.dir.join("history.jsonl.head");
    let kept = std::fs::read_to_string(&head).expect("head");
    for (how, damage) in [
        ("deleted", None),
        ("emptied", Some("")),
        ("garbled", Some("{\"entries\": 5, \"he")),
    ] {
        match damage {
            None => std::fs::remove_file(&head).expect("remove"),
            Some(text) => std::fs::write(&head, text).expect("write"),
        }
        let v = history(&c, &["verify", "--format", "json"]);
        v.code(1);
        let j = v.json();
        assert_eq!(j["break"]["kind"], "anchor_lost", "{how}: {j:#}");
        assert!(
            j["break"]["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("history.jsonl.head"),
            "{how}: {j:#}"
        );
        std::fs::write(&head, &kept).expect("restore");
        history(&c, &["verify"]).code(0);
    }
}

/// A failed drill turned into a pass by editing the history: nothing concludes from the
/// edited history. The check is CRITICAL naming the entry, the metrics leave its figures
/// out and say it is broken, `render` refuses (or, when told, says so in the document), and
/// `stats` refuses.
#[test]
fn a_tampered_history_is_trusted_nowhere() {
    let c = cli();
    let yaml = format!(
        "{RUNBOOK}checks:\n  - id: monthly-drill\n    history.last_pass: {{ procedure: drill, max_age: 35d }}\n"
    );
    std::fs::write(c.dir.join("runbook.yaml"), &yaml).expect("runbook");
    run(&c, true);
    let history_path = c.dir.join("history.jsonl").display().to_string();
    let on = |args: &[&str]| {
        Cli::new()
            .runbook(&yaml)
            .args(args.iter().copied())
            .args(["--history", &history_path])
            .run()
    };
    // before: the drill failed, the check is CRITICAL for that reason
    on(&["check", "runbook.yaml"]).code(2);
    let mut l = lines(&c);
    l[0] = l[0].replace("\"verdict\":\"failed\"", "\"verdict\":\"passed\"");
    write(&c, &l);
    let r = on(&["check", "runbook.yaml"]);
    r.code(2);
    assert!(r.stdout.contains("broken at entry 1"), "{}", r.stdout);
    let r = on(&["check", "runbook.yaml", "--format", "prometheus"]);
    assert!(
        r.stdout
            .contains("drillbook_history_intact{runbook=\"hist\"} 0")
            && !r.stdout.contains("drillbook_last_pass_timestamp_seconds"),
        "{}",
        r.stdout
    );
    let r = on(&["render", "runbook.yaml"]);
    r.code(3);
    assert!(
        r.stderr.contains("broken at entry 1") && r.stderr.contains("--allow-broken-history"),
        "{}",
        r.stderr
    );
    let r = on(&["render", "runbook.yaml", "--allow-broken-history"]);
    r.code(0);
    assert!(
        r.stdout
            .contains("The history is broken: the results below cannot be trusted."),
        "{}",
        r.stdout
    );
    let r = on(&["history", "stats"]);
    r.code(3);
    assert!(r.stderr.contains("broken at entry 1"), "{}", r.stderr);
    // listing still shows what is stored, with a warning
    let r = on(&["history", "list"]);
    r.code(0);
    assert!(
        r.stderr.contains("warning") && r.stderr.contains("broken"),
        "{}",
        r.stderr
    );
}
