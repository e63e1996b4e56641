//! The pgBackRest checks through `drillbook check` against real repositories: OK on a
//! healthy one with one `pgbackrest info` for the whole run, and WARNING, CRITICAL or UNKNOWN
//! as a real outage makes them.

use std::collections::BTreeMap;

use super::repo::{shared, Repo};
use crate::support::Cli;

/// A runbook of `checks` (YAML list items) with production on `repo`'s cluster.
fn runbook(repo: &Repo, checks: &str) -> String {
    format!(
        "version: 1\nname: pgbr-checks\ntargets:\n  production:\n    postgres: {{ url: \"{}\" }}\n    protected: true\nchecks:\n{checks}",
        repo.url("shop")
    )
}

/// `drillbook check` with `pgbackrest` on PATH through a wrapper that logs every call; the
/// run's JSON, each check's status by id, and the calls.
fn check(
    repo: &Repo,
    checks: &str,
    path_has_pgbackrest: bool,
) -> (serde_json::Value, BTreeMap<String, String>, Vec<String>) {
    let cli = Cli::new().runbook(&runbook(repo, checks));
    let bin = cli.dir.join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let log = cli.dir.join("calls.log");
    std::fs::write(&log, "").expect("log");
    use std::os::unix::fs::PermissionsExt;
    // the calls run as postgres: the log must be writable by it
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    if path_has_pgbackrest {
        let wrapper = bin.join("pgbackrest");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\nexec /usr/bin/pgbackrest \"$@\"\n",
                log.display()
            ),
        )
        .expect("wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = if path_has_pgbackrest {
        format!("{}:/usr/local/bin:/bin:/usr/bin", bin.display())
    } else {
        // no pgbackrest anywhere on it
        bin.display().to_string()
    };
    // kept until the calls are read: dropping it removes its directory
    let cli = cli.env("PATH", &path).args([
        "check",
        "runbook.yaml",
        "--format",
        "json",
        "--history",
        "h.jsonl",
    ]);
    let r = cli.run();
    let json: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|_| panic!("no JSON:\n{}\n{}", r.stdout, r.stderr));
    let statuses = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_owned(),
                c["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let calls = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(str::to_owned)
        .collect();
    let pass = repo.fact("cipher_pass");
    assert!(!r.stdout.contains(pass) && !r.stderr.contains(pass));
    (json, statuses, calls)
}

fn message<'a>(json: &'a serde_json::Value, id: &str) -> &'a str {
    json["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == id))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_else(|| panic!("no check {id} in {json}"))
}

/// Every check OK on a healthy repository, sharing one `pgbackrest info`.
#[test]
fn a_healthy_repository_is_ok_with_one_info_for_the_run() {
    let repo = shared();
    let c = format!(
        "    pgbackrest: {{ stanza: main, config: {} }}\n",
        repo.config()
    );
    let with = |extra: &str| c.replace(" }", &format!(", {extra} }}"));
    let checks = format!(
        "  - id: stanza\n{}  - id: any-age\n{}    warn: 25h\n  - id: full-age\n{}  - id: retention\n{}  - id: archive\n{}  - id: encryption\n{}  - id: verify\n{}    warn: 0\n",
        c.replace("pgbackrest:", "pgbackrest.stanza:").replace(" }", ", lock_max: 1h }"),
        c.replace("pgbackrest:", "pgbackrest.backup_age:"),
        with("type: full, max_age: 1d").replace("pgbackrest:", "pgbackrest.backup_age:"),
        with("days: 1, min_window: 1s, min_full: 1").replace("pgbackrest:", "pgbackrest.retention:"),
        with("db: production, max_age: 1d").replace("pgbackrest:", "pgbackrest.archive:"),
        c.replace("pgbackrest:", "pgbackrest.encryption:"),
        c.replace("pgbackrest:", "pgbackrest.verify:"),
    );
    let (json, statuses, calls) = check(repo, &checks, true);
    assert!(
        statuses.values().all(|s| s == "OK"),
        "{statuses:?}\n{json:#}"
    );
    assert_eq!(statuses.len(), 7);
    let infos = calls.iter().filter(|c| c.ends_with(" info")).count();
    assert_eq!(infos, 1, "{calls:#?}");
    let measure = |id: &str| {
        json["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == id))
            .map(|c| c["measure"]["value"].clone())
            .unwrap_or_default()
    };
    assert!(measure("any-age").as_f64().is_some(), "{json:#}");
    assert_eq!(measure("verify").as_f64(), Some(0.0), "{json:#}");
}

/// Outages as monitoring sees them: a stale full backup (a small threshold), a wrong cipher
/// expected, a retention the repository does not keep, a stanza that does not exist, and
/// pgBackRest missing from the machine.
#[test]
fn stale_backups_wrong_cipher_and_a_missing_stanza_turn_red() {
    let repo = shared();
    let conf = repo.config();
    let checks = format!(
        "  - id: full-warn\n    pgbackrest.backup_age: {{ stanza: main, config: {conf}, type: full }}\n    warn: 0\n  - id: full-critical\n    pgbackrest.backup_age: {{ stanza: main, config: {conf}, type: full }}\n    critical: 0\n  - id: cipher\n    pgbackrest.encryption: {{ stanza: main, config: {conf}, cipher: aes-256-gcm }}\n  - id: retention\n    pgbackrest.retention: {{ stanza: main, config: {conf} }}\n  - id: nosuch\n    pgbackrest.stanza: {{ stanza: nosuch, config: {conf} }}\n"
    );
    let (json, statuses, _) = check(repo, &checks, true);
    assert_eq!(statuses["full-warn"], "WARNING", "{json:#}");
    assert_eq!(statuses["full-critical"], "CRITICAL", "{json:#}");
    assert_eq!(statuses["cipher"], "CRITICAL", "{json:#}");
    assert!(message(&json, "cipher").contains("repo1 uses aes-256-cbc, not aes-256-gcm"));
    // the default policy: 7 days, 4 full sets; the repository is minutes old
    assert_eq!(statuses["retention"], "CRITICAL", "{json:#}");
    let m = message(&json, "retention");
    assert!(
        m.contains("shorter than 7d") && m.contains("1 full sets are kept, fewer than 4"),
        "{m}"
    );
    assert_eq!(statuses["nosuch"], "CRITICAL", "{json:#}");
    assert!(message(&json, "nosuch").contains("status 1 (missing stanza path"));
    // without pgbackrest the checks cannot tell: UNKNOWN, not CRITICAL
    let (json, statuses, _) = check(repo, &checks, false);
    assert!(
        statuses.values().all(|s| s == "UNKNOWN"),
        "{statuses:?}\n{json:#}"
    );
    assert!(message(&json, "cipher").contains("pgbackrest is not installed"));
}

/// Archiving that stopped working, then a repository file damaged: the archive check and
/// verify go CRITICAL (verify exits 0 on its own report's errors).
#[test]
fn broken_archiving_and_a_damaged_repository_are_critical() {
    let repo = Repo::build();
    let conf = repo.config().to_owned();
    // archive_command fails from now on, while production keeps writing
    repo.psql("postgres", "ALTER SYSTEM SET archive_command = 'false'");
    repo.psql("postgres", "SELECT pg_reload_conf()");
    for _ in 0..4 {
        repo.psql("shop", "insert into orders (note) values ('unarchived')");
        repo.psql("postgres", "SELECT pg_switch_wal()");
    }
    let checks = format!(
        "  - id: archive\n    pgbackrest.archive: {{ stanza: main, config: {conf}, db: production }}\n  - id: verify\n    pgbackrest.verify: {{ stanza: main, config: {conf} }}\n"
    );
    let (json, statuses, _) = check(&repo, &checks, true);
    assert_eq!(statuses["archive"], "CRITICAL", "{json:#}");
    assert!(
        message(&json, "archive").contains("segments behind the server's current"),
        "{json:#}"
    );
    assert_eq!(statuses["verify"], "OK", "{json:#}");
    // one WAL segment's bytes damaged in the repository
    let archive = repo.dir.join("repo/archive/main/15-1/0000000100000000");
    let seg = std::fs::read_dir(&archive)
        .expect("archive")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "lz4"))
        .min()
        .expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read segment");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&seg, bytes).expect("damage segment");
    let (json, statuses, _) = check(&repo, &checks, true);
    assert_eq!(statuses["verify"], "CRITICAL", "{json:#}");
    let verify = json["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "verify"))
        .expect("verify");
    assert!(
        verify["measure"]["value"].as_f64().unwrap_or(0.0) >= 1.0,
        "{verify:#}"
    );
}
