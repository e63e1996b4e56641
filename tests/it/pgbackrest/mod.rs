//! pgBackRest end to end against real encrypted repositories (`repo.rs`): the shipped drill
//! recovers exactly the rows of the target, every kind of target reaches it, and each fault
//! (`faults.rs`) ends with a plain explanation, no server and no scratch directory left.

mod checks;
mod faults;
mod repo;

use repo::{shared, Repo};

use crate::support::{leftovers, root, Cli};

/// Runs `yaml`'s `drill` with `args` against `repo` (config through `PGBACKREST_CONFIG`,
/// production through `DATABASE_URL`); the exit code and the record, checked for
/// leftovers and for the cipher pass.
pub fn drill(repo: &Repo, yaml: &str, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec!["run", "runbook.yaml", "drill", "--format", "json"];
    all.extend_from_slice(args);
    let r = Cli::new()
        .runbook(yaml)
        .env("DATABASE_URL", &repo.url("shop"))
        .env("PGBACKREST_CONFIG", repo.config())
        .args(all)
        .run();
    let rec: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|_| panic!("no record:\n{}\n{}", r.stdout, r.stderr));
    crate::support::assert_outputs_declared(&rec);
    let id = rec["id"].as_str().expect("run id").to_owned();
    let left = leftovers(&id);
    assert!(left.is_empty(), "left behind by run {id}: {left:#?}");
    let pass = repo.fact("cipher_pass");
    assert!(
        !r.stdout.contains(pass) && !r.stderr.contains(pass),
        "the cipher pass was printed"
    );
    (r.code, rec, r.stderr)
}

pub fn step<'a>(rec: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    rec["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {rec}"))
}

fn shipped() -> String {
    std::fs::read_to_string(root().join("runbooks/pgbackrest-pitr-drill.yaml")).expect("runbook")
}

/// A drill of one `pgbackrest.restore` step with `fields`, then the rows it recovered.
pub fn restore_yaml(fields: &str) -> String {
    format!(
        "version: 1\nname: pgbr\nprocedures:\n  drill:\n    title: Drill\n    kind: drill\n    steps:\n      - id: restore\n        pgbackrest.restore:\n          stanza: main\n          database: shop\n{fields}      - id: rows\n        sql:\n          db: \"{{{{ steps.restore.connection_uri }}}}\"\n          query: select count(*) as n from orders\n"
    )
}

/// The repository really is what the tests rely on: encrypted, with a full, a diff and an
/// incr set, and rows on both sides of the target.
#[test]
fn the_test_repository_is_encrypted_with_three_kinds_of_sets() {
    let repo = shared();
    let info: serde_json::Value =
        serde_json::from_str(&repo.pgbackrest(&["--output=json", "info"])).expect("info json");
    let stanza = &info[0];
    assert_eq!(stanza["status"]["code"], 0, "{stanza}");
    assert_eq!(stanza["cipher"], "aes-256-cbc");
    let types: Vec<&str> = stanza["backup"]
        .as_array()
        .expect("backups")
        .iter()
        .filter_map(|b| b["type"].as_str())
        .collect();
    assert_eq!(types, ["full", "diff", "incr"]);
    let before: u32 = repo.fact("rows_before").parse().expect("rows_before");
    let total: u32 = repo.fact("rows_total").parse().expect("rows_total");
    assert!(before > 0 && total > before, "{before} {total}");
    assert_eq!(
        repo.psql("shop", "select count(*) from orders"),
        total.to_string()
    );
    // the config is the only place the cipher pass is
    let conf = std::fs::read_to_string(repo.config()).expect("config");
    assert!(conf.contains(repo.fact("cipher_pass")));
}

/// The shipped drill, end to end: the copy holds exactly the rows production had at the
/// target (those before present, those after absent), and the record names the set.
#[test]
fn the_shipped_drill_recovers_exactly_the_target() {
    let repo = shared();
    let target = repo.fact("target_time");
    let (code, rec, stderr) = drill(
        repo,
        &shipped(),
        &[
            "--param",
            &format!("target_time={target}"),
            "--param",
            "database=shop",
        ],
    );
    assert_eq!(code, 0, "{stderr}\n{rec:#}");
    let before = repo.fact("rows_before");
    assert_eq!(
        step(&rec, "restored-rows")["outputs"]["n"].to_string(),
        before
    );
    assert_eq!(
        step(&rec, "rows-at-target")["outputs"]["n"].to_string(),
        before
    );
    let out = &step(&rec, "restore")["outputs"];
    assert_eq!(out["cipher"], "aes-256-cbc");
    assert_eq!(out["pgbackrest_version"], "2.45");
    assert!(
        ["full", "diff", "incr"].contains(&out["backup_type"].as_str().unwrap_or("")),
        "{out}"
    );
    let set = out["backup_set"].as_str().expect("backup_set");
    assert!(repo.pgbackrest(&["info"]).contains(set), "{set}");
    // pgBackRest was given the time in its own format, not RFC 3339
    let given = out["target"].as_str().expect("target");
    assert!(given.ends_with("+00") && !given.contains('T'), "{given}");
    assert!(out["restore_size_bytes"].as_u64().unwrap_or(0) > 0, "{out}");
    // the preflight read the stanza and found a set reaching the target before anything ran
    let found = rec["preflight"].as_array().is_some_and(|items| {
        items.iter().any(|i| {
            i["step"] == "restore"
                && i["check"] == "backup set"
                && i["ok"] == true
                && i["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("can reach the target"))
        })
    });
    assert!(found, "{:#}", rec["preflight"]);
    assert!(out["wal_replayed_bytes"].as_u64().unwrap_or(0) > 0, "{out}");
}

/// An LSN, a restore point and a transaction id reach the same point as the time; a set
/// chosen by label too.
#[test]
fn lsn_name_and_xid_targets_reach_the_target() {
    let repo = shared();
    let before = repo.fact("rows_before");
    for target in [
        repo.fact("target_lsn").to_owned(),
        "drill-point".to_owned(),
        format!("xid:{}", repo.fact("target_xid")),
    ] {
        let (code, rec, stderr) = drill(
            repo,
            &restore_yaml(&format!("          target: \"{target}\"\n")),
            &[],
        );
        assert_eq!(code, 0, "{target}: {stderr}\n{rec:#}");
        assert_eq!(
            step(&rec, "rows")["outputs"]["n"].to_string(),
            before,
            "{target}"
        );
    }
    // the whole archive: every row, the ones after the target too
    let (code, rec, stderr) = drill(repo, &restore_yaml(""), &[]);
    assert_eq!(code, 0, "{stderr}\n{rec:#}");
    assert_eq!(
        step(&rec, "rows")["outputs"]["n"].to_string(),
        repo.fact("rows_total")
    );
    // a set chosen by label
    let full = repo.first_set("full");
    let (code, rec, stderr) = drill(
        repo,
        &restore_yaml(&format!(
            "          set: \"{full}\"\n          target: \"{}\"\n",
            repo.fact("target_time")
        )),
        &[],
    );
    assert_eq!(code, 0, "{stderr}\n{rec:#}");
    assert_eq!(step(&rec, "restore")["outputs"]["backup_set"], full);
    assert_eq!(step(&rec, "restore")["outputs"]["backup_type"], "full");
    assert_eq!(step(&rec, "rows")["outputs"]["n"].to_string(), before);
}

/// `backup_policy.provider: pgbackrest`: the document states the declared policy beside
/// what pgBackRest is configured to keep, read from the config file (never its cipher pass).
#[test]
fn the_document_states_the_configured_retention_beside_the_policy() {
    let repo = shared();
    let yaml = shipped().replace(
        "  # config: /etc/pgbackrest/pgbackrest.conf",
        &format!("  config: {}", repo.config()),
    );
    assert!(yaml.contains(&format!("  config: {}", repo.config())));
    let r = Cli::new()
        .runbook(&yaml)
        .args(["render", "runbook.yaml", "--as-of", "2026-12-01T00:00:00Z"])
        .run();
    r.code(0);
    assert!(r.stdout.contains("| Daily | 7 days |"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!(
            "pgBackRest is configured (in `{}`, stanza `main`) to keep: `repo1-retention-diff=6`, `repo1-retention-full=2`.",
            repo.config()
        )),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(repo.fact("cipher_pass")));
}

/// The runbook of the guide, as a user copies it (only the config path changed), drills the
/// test repository end to end.
#[test]
fn the_guides_runbook_drills_the_repository() {
    let repo = shared();
    let guide = std::fs::read_to_string(root().join("docs/guide/pgbackrest.md")).expect("guide");
    let blocks: Vec<&str> = guide
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(blocks.len() >= 2, "the guide lost its runbook");
    let yaml = format!("{}{}", blocks[0], blocks[1])
        .replace("/etc/pgbackrest/pgbackrest.conf", repo.config());
    let target = repo.fact("target_time");
    let (code, rec, stderr) = drill(repo, &yaml, &["--param", &format!("target_time={target}")]);
    assert_eq!(code, 0, "{stderr}\n{rec:#}");
    assert_eq!(step(&rec, "restore")["outputs"]["cipher"], "aes-256-cbc");
}

/// `keep: true`: the recovered instance stays after the run (a real recovery), with the
/// commands to reach it and to remove it; that command leaves nothing behind.
#[test]
fn a_kept_restore_stays_until_its_stop_command() {
    let repo = shared();
    let yaml = restore_yaml(&format!(
        "          target: \"{}\"\n          keep: true\n",
        repo.fact("target_time")
    ));
    let cli = Cli::new()
        .runbook(&yaml)
        .env("PGBACKREST_CONFIG", repo.config())
        .args(["run", "runbook.yaml", "drill", "--format", "json"]);
    let r = cli.run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let rec: serde_json::Value = serde_json::from_str(&r.stdout).expect("record");
    let out = &step(&rec, "restore")["outputs"];
    assert_eq!(out["kept"], true, "{out}");
    let dir = out["dir"].as_str().expect("dir").to_owned();
    let stop = out["stop_command"]
        .as_str()
        .expect("stop_command")
        .to_owned();
    assert!(out["psql_command"]
        .as_str()
        .is_some_and(|p| p.starts_with("psql '")));
    // still there, and answering, after the run
    let port = out["port"].to_string();
    let socket = format!("{dir}/socket");
    let n = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(std::path::Path::new(repo::PG_BIN).join("psql"))
        .args([
            "-h",
            &socket,
            "-p",
            &port,
            "-d",
            "shop",
            "-XAtc",
            "select count(*) from orders",
        ])
        .output()
        .expect("psql");
    let n = String::from_utf8_lossy(&n.stdout).trim().to_owned();
    let ok = std::process::Command::new("sh")
        .args(["-c", &stop])
        .status()
        .expect("stop");
    assert!(ok.success(), "{stop}");
    assert_eq!(n, repo.fact("rows_before"));
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is still there");
    let id = rec["id"].as_str().expect("id");
    let left = leftovers(id);
    assert!(left.is_empty(), "{left:#?}");
}
