//! `drillbook gc` after runs killed with SIGKILL (no cleanup could run): it finds the local
//! server and scratch directories and the Neon branch the dead run created — from its
//! ledger, and for Neon also by name when no ledger is on this machine — lists them, removes
//! them with `--yes`, and never touches a live run's. Each test has its own temporary
//! directory (`TMPDIR`), where runs keep their ledgers and scratch directories, so parallel
//! tests never see each other's.

use std::io::{BufRead, BufReader};

use crate::neon_fake::{FakeNeon, Options};
use crate::support::Cli;

/// Starts `cli`, waits for a progress line containing `ready`, then kills it with SIGKILL.
fn kill_when(cli: &Cli, ready: &str) -> String {
    let mut child = cli
        .command()
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut seen = String::new();
    for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
        let line = line.expect("utf8");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(ready) {
            let ok = std::process::Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(ok.success());
            break;
        }
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), None, "not killed:\n{seen}");
    seen
}

/// Whether any process runs with `needle` in its command line.
fn running(needle: &str) -> bool {
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .any(|l| l.contains(needle))
}

#[test]
fn gc_finds_and_removes_what_a_killed_local_run_left() {
    let tmp = crate::support::TempDir::new();
    let yaml = "version: 1\nname: killed\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    steps:\n      - id: source\n        local.cluster: {}\n      - id: hold\n        shell: sleep 300\n  other:\n    title: Other\n    kind: drill\n    steps:\n      - id: a\n        shell: 'true'\n";
    let with_tmp = |c: Cli| {
        c.runbook(yaml)
            .env("TMPDIR", &tmp.path().display().to_string())
    };
    kill_when(
        &with_tmp(Cli::new()).args(["run", "runbook.yaml", "drill"]),
        "hold — ",
    );
    // the killed run's scratch cluster is still there, its server running
    let scratch: Vec<std::path::PathBuf> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.to_string_lossy().ends_with("-source"))
        .collect();
    assert_eq!(scratch.len(), 1, "{scratch:?}");
    let dir = scratch[0].display().to_string();
    assert!(running(&dir), "the server of {dir} is not running");

    // every run warns; gc lists it (exit 1) and touches nothing
    let r = with_tmp(Cli::new())
        .args(["run", "runbook.yaml", "other"])
        .run();
    r.code(0);
    assert!(
        r.stderr
            .contains("1 resource(s) left by 1 run(s) that ended without cleanup"),
        "{}",
        r.stderr
    );
    let r = with_tmp(Cli::new()).args(["gc"]).run();
    r.code(1);
    assert!(
        r.stdout
            .contains(&format!("stop and remove the cluster in {dir}"))
            && r.stdout.contains("killed/drill"),
        "{}",
        r.stdout
    );
    assert!(running(&dir));

    // --yes stops the server and removes the directory; then nothing is left
    let r = with_tmp(Cli::new()).args(["gc", "--yes"]).run();
    r.code(0);
    assert!(r.stdout.contains("removed"), "{}", r.stdout);
    assert!(!scratch[0].exists(), "{dir} is still there");
    assert!(!running(&dir), "the server of {dir} still runs");
    let r = with_tmp(Cli::new()).args(["gc"]).run();
    r.code(0);
    assert!(r.stdout.contains("nothing left behind"), "{}", r.stdout);
    // the ledger is gone too
    let ledgers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ledger"))
        .collect();
    assert!(ledgers.is_empty(), "{ledgers:?}");
}

#[test]
fn gc_finds_a_killed_runs_neon_branch_with_or_without_its_ledger() {
    let fake = FakeNeon::start(Options::default());
    let tmp = crate::support::TempDir::new();
    let yaml = crate::neon::runbook(
        "drill",
        "      - id: branch\n        neon.create_branch: { target: production }\n      - id: hold\n        wait: 5m\n",
    );
    let cli = || crate::neon::cli(&fake, &yaml).env("TMPDIR", &tmp.path().display().to_string());
    kill_when(&cli().args(["run", "runbook.yaml", "p"]), "hold — ");
    let names = crate::neon::branch_names(&fake);
    assert_eq!(names.len(), 2, "{names:?}");
    // from the ledger: without a runbook, and whatever its age
    let r = cli().args(["gc"]).run();
    r.code(1);
    assert!(
        r.stdout.contains("delete Neon branch drillbook-"),
        "{}",
        r.stdout
    );
    // as if the run had been on another machine: no ledger here, found by its name once
    // old enough
    for e in std::fs::read_dir(tmp.path()).expect("tmp").flatten() {
        if e.file_name().to_string_lossy().ends_with(".ledger") {
            std::fs::remove_file(e.path()).expect("remove ledger");
        }
    }
    let r = cli().args(["gc", "runbook.yaml"]).run();
    r.code(0);
    assert!(
        r.stdout.contains("nothing left behind"),
        "too young: {}",
        r.stdout
    );
    let r = cli()
        .args(["gc", "runbook.yaml", "--older-than", "0s", "--yes"])
        .run();
    r.code(0);
    assert!(
        r.stdout.contains("removed") && r.stdout.contains("no ledger on this machine"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(crate::neon::branch_names(&fake), ["main"]);
}

/// The shipped local drill killed at several moments — while the base backup is taken,
/// while the restore runs — leaves servers and directories that `gc --yes` all removes.
#[test]
fn a_local_drill_killed_at_any_moment_leaves_nothing_after_gc() {
    let yaml =
        std::fs::read_to_string(crate::support::root().join("runbooks/local-pitr-drill.yaml"))
            .expect("runbook");
    for moment in ["] backup — ", "] restore — "] {
        let tmp = crate::support::TempDir::new();
        let tmp_env = tmp.path().display().to_string();
        let cli = || Cli::new().runbook(&yaml).env("TMPDIR", &tmp_env);
        kill_when(
            &cli().args([
                "run",
                "runbook.yaml",
                "drill",
                "--param",
                "orders=3000",
                "--param",
                "customers=300",
            ]),
            moment,
        );
        let r = cli().args(["gc", "--yes"]).run();
        r.code(0);
        assert!(r.stdout.contains("removed"), "{moment}: {}", r.stdout);
        let left: Vec<String> = std::fs::read_dir(tmp.path())
            .expect("tmp")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("drillbook-"))
            .collect();
        assert!(left.is_empty(), "{moment}: left {left:?}\n{}", r.stdout);
        assert!(
            !running(&tmp_env),
            "{moment}: a server still runs from {tmp_env}"
        );
    }
}
