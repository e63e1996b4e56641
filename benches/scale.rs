//! `cargo bench --bench scale`: how drillbook's own costs grow with the data it keeps.
//!
//! - The history at 1,000, 10,000 and 100,000 entries: `history list --limit 20`,
//!   `history stats`, `check` on a runbook whose checks read the history
//!   (`history.last_pass`, `history.overdue`; the check run is appended, as by default),
//!   and a full `history verify`. The history is built with the library's own entries
//!   (`Entry::after`, the code every append uses), so the chain and its anchor are genuine:
//!   about five years in which a drill is recorded once a day and a check run every 26
//!   minutes in between.
//! - `validate` and `render` of a runbook of 50 and 500 lines.
//!
//! Every figure is the whole `drillbook` process (the release binary), median and best of
//! `DRILLBOOK_BENCH_RUNS` runs (default 3) after one warm-up, the files in the page cache,
//! and the median CPU time (user and system, 10 ms ticks): on a busy machine the wall
//! clock measures the other jobs too.
//! `DRILLBOOK_BENCH_HISTORY_MAX` caps the largest history (default 100000).

#[allow(dead_code)] // the other benchmarks use the rest
mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use common::{env_num, median, RemoveOnDrop};
use drillbook::history::{Anchor, Entry};
use serde_json::{json, Value};

/// A recorded run of `runbooks/hello.yaml` (the shipped drill), as the history holds it.
const DRILL: &str = include_str!("../tests/fixtures/record.json");

/// Between two records; 100,000 of them span about five years.
const EVERY: TimeDelta = TimeDelta::minutes(26);
/// One record in this many is a drill, the others check runs: a drill about once a day.
const DRILL_EVERY: usize = 55;

/// The runbook the `check` figure runs: the hello drill with two checks on its history.
const CHECKED: &str = r#"version: 1
name: hello
title: Hello drill
owner: platform-team
checks:
  - id: drilled
    title: The smoke drill passed within 35 days
    history.last_pass: { procedure: smoke, max_age: 35d }
  - id: on-schedule
    title: The smoke drill is not overdue
    history.overdue: { procedure: smoke }
procedures:
  smoke:
    title: Smoke drill with generic steps
    kind: drill
    schedule: "0 9 * * 1"
    steps:
      - id: scratch
        shell: mktemp -d
"#;

fn drill(i: usize, at: chrono::DateTime<Utc>) -> Value {
    let mut r: Value = serde_json::from_str(DRILL).expect("fixture record");
    let took = 1000 + (i * 7919) % 4000;
    let passed = i % 10 != 3;
    r["id"] = format!("{}-{:08x}", at.format("%Y%m%dT%H%M%SZ"), i).into();
    r["started_at"] = at.to_rfc3339().into();
    r["finished_at"] = (at + TimeDelta::milliseconds(took as i64))
        .to_rfc3339()
        .into();
    r["duration_ms"] = took.into();
    r["rto"]["measured_ms"] = (took - 10).into();
    if !passed {
        r["verdict"] = "failed".into();
        r["reason"] = "step validate failed: restored file has 2 rows, expected 3".into();
    }
    r
}

fn check_run(i: usize, at: chrono::DateTime<Utc>, last_drill: chrono::DateTime<Utc>) -> Value {
    let stamp = |t: chrono::DateTime<Utc>| t.to_rfc3339();
    json!({
        "record_version": 1,
        "id": format!("{}-{:08x}", at.format("%Y%m%dT%H%M%SZ"), i),
        "runbook": {"name": "hello", "path": "runbook.yaml",
            "sha256": "5a6708887ff38481648a04026e497f575e3348c7012d7bada4044d00cc54bea9"},
        "procedure": {"id": "checks", "title": "Health checks", "kind": "check"},
        "params": {},
        "operator": "drillbook@ops-host",
        "tool_version": "0.1.0",
        "started_at": stamp(at),
        "finished_at": stamp(at + TimeDelta::milliseconds(41)),
        "duration_ms": 41,
        "dry_run": false,
        "verdict": "passed",
        "steps": [
            {"id": "drilled", "title": "The smoke drill passed within 35 days",
             "kind": "history.last_pass", "status": "passed", "started_at": stamp(at),
             "duration_ms": 20, "attempts": 1, "destructive": false,
             "outputs": {"runs": i / DRILL_EVERY, "last_pass": stamp(last_drill),
                "last_pass_id": format!("{}-{:08x}", last_drill.format("%Y%m%dT%H%M%SZ"), i),
                "age_seconds": (at - last_drill).num_seconds(), "rto_seconds": 1.21}},
            {"id": "on-schedule", "title": "The smoke drill is not overdue",
             "kind": "history.overdue", "status": "passed", "started_at": stamp(at),
             "duration_ms": 21, "attempts": 1, "destructive": false,
             "outputs": {"last_pass": stamp(last_drill), "schedule": "0 9 * * 1",
                "due_by": stamp(last_drill + TimeDelta::days(2))}}
        ],
        "cleanup": [],
        "rto": null,
        "approvals": []
    })
}

/// Writes `n` entries to `path` and the anchor beside it, as `n` appends would; returns
/// the file's size.
fn build_history(path: &Path, n: usize) -> u64 {
    let end = Utc::now() - TimeDelta::hours(1);
    let start = end - EVERY * n as i32;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("history"));
    let mut last: Option<Entry> = None;
    let mut last_drill = start;
    for i in 0..n {
        let at = start + EVERY * i as i32;
        let record = if i % DRILL_EVERY == 0 {
            last_drill = at;
            drill(i, at)
        } else {
            check_run(i, at, last_drill)
        };
        let entry = Entry::after(last.as_ref(), record);
        writeln!(out, "{}", entry.line()).expect("write");
        last = Some(entry);
    }
    out.flush().expect("flush");
    let last = last.expect("at least one entry");
    let anchor = Anchor {
        entries: last.seq,
        head: last.hash.clone(),
    };
    let mut head = path.as_os_str().to_owned();
    head.push(".head");
    std::fs::write(head, serde_json::to_string(&anchor).expect("anchor") + "\n").expect("head");
    std::fs::metadata(path).expect("size").len()
}

/// A valid runbook of about `lines` lines: the hello drill with more shell steps.
fn runbook(lines: usize) -> String {
    let mut s = String::from(CHECKED);
    let mut i = 0;
    while s.lines().count() + 9 <= lines {
        i += 1;
        s.push_str(&format!(
            "      - id: step-{i}\n        title: Restore part {i} of the sample\n        shell:\n          run: |\n            echo \"part {i}\" > \"$DIR/part-{i}.txt\"\n            wc -c < \"$DIR/part-{i}.txt\"\n          env:\n            DIR: \"{{{{ steps.scratch.stdout }}}}\"\n        timeout: 1m\n"
        ));
    }
    s
}

struct Timing {
    median: Duration,
    best: Duration,
    /// The median CPU time (user and system), which other jobs on the machine disturb less
    /// than the wall clock.
    cpu: Duration,
}

/// CPU time of this process's waited-for children so far: `cutime` and `cstime` of
/// `/proc/self/stat`, in clock ticks of 10 ms.
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // the fields after the command name, which is in parentheses and may hold spaces
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // cutime and cstime are fields 16 and 17; `fields` starts at field 3
    Duration::from_millis((ticks(13) + ticks(14)) * 10)
}

/// Runs `drillbook args` in `dir` once to warm up, then `runs` times; each must exit with
/// one of `codes`.
fn time(dir: &Path, args: &[&str], codes: &[i32], runs: usize) -> Timing {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_drillbook"));
    let once = || {
        let cpu = children_cpu();
        let t = Instant::now();
        let out = Command::new(&bin)
            .args(args)
            .current_dir(dir)
            .env_remove("DRILLBOOK_HISTORY")
            .output()
            .expect("drillbook");
        let took = t.elapsed();
        let code = out.status.code().unwrap_or(-1);
        assert!(
            codes.contains(&code),
            "drillbook {args:?} exited {code}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (took, children_cpu() - cpu)
    };
    once();
    let (all, cpu): (Vec<Duration>, Vec<Duration>) = (0..runs).map(|_| once()).unzip();
    Timing {
        best: *all.iter().min().expect("a run"),
        median: median(all),
        cpu: median(cpu),
    }
}

fn row(what: &str, size: &str, t: &Timing) {
    println!(
        "{what:<34} {size:>16}  median {:>8.1} ms  best {:>8.1} ms  cpu {:>6.0} ms",
        t.median.as_secs_f64() * 1000.0,
        t.best.as_secs_f64() * 1000.0,
        t.cpu.as_secs_f64() * 1000.0
    );
}

fn main() {
    if !common::invoked_by_cargo_bench("scale") {
        return;
    }
    let runs = env_num("DRILLBOOK_BENCH_RUNS", 3) as usize;
    let max = env_num("DRILLBOOK_BENCH_HISTORY_MAX", 100_000) as usize;
    let root = std::env::temp_dir().join(format!("drillbook-scale-{}", std::process::id()));
    let _files = RemoveOnDrop(root.clone());
    std::fs::create_dir_all(&root).expect("scratch directory");
    std::fs::write(root.join("runbook.yaml"), CHECKED).expect("runbook");

    println!("history (whole process, {runs} runs after a warm-up)");
    for n in [1_000, 10_000, 100_000].into_iter().filter(|n| *n <= max) {
        let path = root.join("history.jsonl");
        let t = Instant::now();
        let bytes = build_history(&path, n);
        eprintln!(
            "built {n} entries ({:.1} MB) in {:.1} s",
            bytes as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        let h = path.display().to_string();
        let size = format!("{n} entries");
        let list = time(
            &root,
            &["history", "list", "--limit", "20", "--history", &h],
            &[0],
            runs,
        );
        row("history list --limit 20", &size, &list);
        let stats = time(&root, &["history", "stats", "--history", &h], &[0, 1], runs);
        row("history stats", &size, &stats);
        let check = time(
            &root,
            &["check", "runbook.yaml", "--history", &h],
            &[0, 1],
            runs,
        );
        row("check (history.last_pass, overdue)", &size, &check);
        let verify = time(&root, &["history", "verify", "--history", &h], &[0], runs);
        row("history verify", &size, &verify);
    }

    println!("runbook (whole process, {runs} runs after a warm-up)");
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).expect("directory");
    for lines in [50, 500] {
        let text = runbook(lines);
        let file = empty.join(format!("runbook-{lines}.yaml"));
        std::fs::write(&file, &text).expect("runbook");
        let size = format!("{} lines", text.lines().count());
        let f = file.display().to_string();
        let validate = time(&empty, &["validate", &f], &[0], runs);
        row("validate", &size, &validate);
        let render = time(&empty, &["render", &f], &[0], runs);
        row("render", &size, &render);
    }
}
