//! What goes wrong with a pgBackRest restore, each ending with a plain explanation, no
//! server running and no scratch directory left.

use super::repo::{shared, Repo};
use super::{drill, restore_yaml, step};
use crate::support::Cli;

/// Why the restore failed: the preflight's finding (before anything ran), else the step's
/// error.
fn error(rec: &serde_json::Value) -> String {
    let preflight = rec["preflight"].as_array().and_then(|items| {
        items
            .iter()
            .find(|i| i["ok"] == false && i["step"] == "restore")
            .and_then(|i| i["detail"].as_str())
    });
    preflight
        .or_else(|| step(rec, "restore")["error"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_target_before_the_oldest_set_is_refused_before_anything_exists() {
    let repo = shared();
    let (code, rec, _) = drill(
        repo,
        &restore_yaml("          target: \"2020-01-01T00:00:00Z\"\n"),
        &[],
    );
    assert_eq!(code, 1, "{rec:#}");
    let e = error(&rec);
    let oldest = repo.first_set("full");
    assert!(
        e.contains("before the oldest backup set") && e.contains(&oldest),
        "{e}"
    );
    // refused before the instance was created: nothing to undo
    assert!(!rec.to_string().contains("restore:undo"), "{rec:#}");
}

#[test]
fn a_stanza_that_does_not_exist_is_named() {
    let repo = shared();
    let yaml = restore_yaml("").replace("stanza: main", "stanza: nosuch");
    let (code, rec, _) = drill(repo, &yaml, &[]);
    assert_eq!(code, 1, "{rec:#}");
    let e = error(&rec);
    assert!(
        e.contains("stanza `nosuch`: status 1 (missing stanza path"),
        "{e}"
    );
}

#[test]
fn a_wrong_cipher_pass_is_named_and_not_printed() {
    let repo = shared();
    let cli = Cli::new();
    let wrong = cli.dir.join("wrong.conf");
    let conf = std::fs::read_to_string(repo.config()).expect("config");
    std::fs::write(
        &wrong,
        conf.replace(repo.fact("cipher_pass"), "a-wrong-pass-4e1d"),
    )
    .expect("write config");
    let yaml = restore_yaml(&format!("          config: {}\n", wrong.display()));
    let (code, rec, stderr) = drill(repo, &yaml, &[]);
    assert_eq!(code, 1, "{rec:#}");
    let e = error(&rec);
    assert!(e.contains("the cipher pass is wrong or missing"), "{e}");
    // no undecodable bytes from the failed decryption
    assert!(!e.contains('\u{fffd}'), "{e}");
    assert!(!stderr.contains("a-wrong-pass-4e1d") && !e.contains("a-wrong-pass-4e1d"));
}

/// A segment lost from the repository between the set and the target: named, with the
/// newest archived one.
#[test]
fn a_missing_wal_segment_in_the_repository_is_named() {
    let repo = Repo::build();
    let full = repo.first_set("full");
    let info: serde_json::Value =
        serde_json::from_str(&repo.pgbackrest(&["--output=json", "info"])).expect("info");
    let stop = info[0]["backup"][0]["archive"]["stop"]
        .as_str()
        .expect("archive stop")
        .to_owned();
    // the segment right after the full set's last one
    let n = u64::from_str_radix(&stop[16..24], 16).expect("hex") + 1;
    let lost = format!("{}{:08X}", &stop[..16], n);
    let dir = repo.dir.join("repo/archive/main/15-1").join(&stop[..16]);
    let mut removed = 0;
    for e in std::fs::read_dir(&dir).expect("archive dir").flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with(&format!("{lost}-"))
        {
            std::fs::remove_file(e.path()).expect("remove segment");
            removed += 1;
        }
    }
    assert_eq!(removed, 1, "no segment {lost} in {}", dir.display());
    let yaml = restore_yaml(&format!(
        "          set: \"{full}\"\n          target: \"{}\"\n",
        repo.fact("target_time")
    ));
    let (code, rec, _) = drill(&repo, &yaml, &[]);
    assert_eq!(code, 1, "{rec:#}");
    let e = error(&rec);
    assert!(
        e.contains(&format!("archive-get cannot find WAL segment {lost}"))
            && e.contains("holds segments up to"),
        "{e}"
    );
}

/// Runs the one-step restore drill in the background, sends SIGINT once the restore has
/// created its data directory (its undo is registered by then) and again when `again` says
/// so about a line of its progress; returns the run id, the exit code and what it printed.
fn interrupted(cli: &Cli, again: impl Fn(&str) -> bool) -> (String, Option<i32>, String) {
    use std::io::{BufRead, BufReader};
    let mut child = cli
        .command()
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id().to_string();
    let interrupt = || {
        let ok = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    let tmp = cli_tmp(cli);
    let (mut run_id, mut seen) = (String::new(), String::new());
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        let line = line.expect("utf8");
        if let Some(rest) = line.split(" — run ").nth(1) {
            run_id = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
        if line.contains("restore — ") {
            // pgbackrest restore is writing once the data directory exists
            let data = tmp.join(format!("drillbook-{run_id}-restore/data"));
            let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while !data.exists() && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            assert!(data.exists(), "the restore never started\n{seen}");
            interrupt();
        } else if again(&line) {
            interrupt();
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let status = child.wait().expect("wait");
    (run_id, status.code(), seen)
}

/// The temporary directory a run of `cli` uses (its `TMPDIR`, else the system's).
fn cli_tmp(cli: &Cli) -> std::path::PathBuf {
    let tmp = cli.dir.join("tmp");
    if tmp.exists() {
        tmp
    } else {
        std::env::temp_dir()
    }
}

/// Processes whose command line names `what`.
fn processes(what: &str) -> Vec<String> {
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_owned)
        .collect()
}

fn restore_cli(repo: &Repo) -> Cli {
    Cli::new()
        .runbook(&restore_yaml(&format!(
            "          target: \"{}\"\n",
            repo.fact("target_time")
        )))
        .env("PGBACKREST_CONFIG", repo.config())
        .args(["run", "runbook.yaml", "drill"])
}

#[test]
fn an_interrupt_during_the_restore_leaves_nothing_behind() {
    let repo = shared();
    let cli = restore_cli(repo);
    let (run_id, code, seen) = interrupted(&cli, |_| false);
    assert_eq!(code, Some(130), "{seen}");
    assert!(!run_id.is_empty(), "{seen}");
    let left = crate::support::leftovers(&run_id);
    assert!(left.is_empty(), "left behind: {left:#?}\n{seen}");
    assert!(seen.contains("[undo] ✓ restore:undo ok"), "{seen}");
}

/// A second interrupt aborts cleanup: pgBackRest and any server are stopped all the same,
/// and what was left on disk is found and removed by `drillbook gc`.
#[test]
fn a_second_interrupt_stops_everything_and_gc_removes_the_rest() {
    let repo = shared();
    let cli = restore_cli(repo);
    // its own temporary directory: where the run keeps its ledger and scratch, for `gc`
    let tmp = cli.dir.join("tmp");
    std::fs::create_dir(&tmp).expect("tmp");
    let tmp_env = tmp.display().to_string();
    let cli = cli.env("TMPDIR", &tmp_env);
    let (run_id, code, seen) = interrupted(&cli, |l| l.contains("[undo] restore:undo"));
    assert_eq!(code, Some(130), "{seen}");
    assert!(!run_id.is_empty(), "{seen}");
    let running = processes(&format!("drillbook-{run_id}"));
    assert!(running.is_empty(), "still running: {running:#?}\n{seen}");
    let r = Cli::new()
        .env("TMPDIR", &tmp_env)
        .args(["gc", "--yes"])
        .run();
    r.code(0);
    let left: Vec<String> = std::fs::read_dir(&tmp)
        .expect("tmp")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("drillbook-{run_id}-")))
        .collect();
    assert!(
        left.is_empty(),
        "left behind: {left:?}\n{seen}\n{}",
        r.stdout
    );
}
