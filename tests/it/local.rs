//! The local provider end to end with real clusters: the shipped demo drill passes, and the
//! ways a self-hosted restore goes wrong each end with a clear error, cleanup done, no
//! server left running and no scratch directory left behind.

use crate::support::{root, Cli};

/// Scratch directories and servers of one run (by its id), which must all be gone.
fn leftovers(run_id: &str) -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("drillbook-{run_id}")))
        .collect();
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    left.extend(
        String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains(&format!("drillbook-{run_id}")))
            .map(str::to_owned),
    );
    left
}

/// The shipped drill, small, with `extra` YAML steps inserted before the restore.
fn drill(extra: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let yaml =
        std::fs::read_to_string(root().join("runbooks/local-pitr-drill.yaml")).expect("runbook");
    let yaml = yaml.replacen(
        "      - id: restore\n",
        &format!("{extra}      - id: restore\n"),
        1,
    );
    let mut all = vec![
        "run",
        "runbook.yaml",
        "drill",
        "--param",
        "orders=3000",
        "--param",
        "customers=300",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let r = Cli::new().runbook(&yaml).args(all).run();
    let rec: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|_| panic!("no record:\n{}\n{}", r.stdout, r.stderr));
    let id = rec["id"].as_str().expect("run id").to_owned();
    let left = leftovers(&id);
    assert!(left.is_empty(), "left behind by run {id}: {left:#?}");
    (r.code, rec)
}

fn step<'a>(rec: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    rec["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["id"] == id))
        .unwrap_or_else(|| panic!("no step {id}"))
}

#[test]
fn demo_drill_restores_to_the_target_and_proves_it() {
    let (code, rec) = drill("", &[]);
    assert_eq!(code, 0, "{rec:#}");
    assert_eq!(rec["verdict"], "passed");
    assert_eq!(rec["rto"]["met"], true);
    assert!(rec["rto"]["measured_ms"].as_u64().is_some());
    assert_eq!(rec["rpo"]["met"], true);
    // the orders written after the target did not come back, the ones before did
    let restored = step(&rec, "integrity")["outputs"]["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == "orders")
        .cloned()
        .expect("orders");
    assert_eq!(restored["rows_restored"], 5000);
    assert_eq!(restored["rows_source"], 8000);
    let restore = &step(&rec, "restore")["outputs"];
    assert!(
        restore["wal_replayed_bytes"].as_u64().unwrap_or(0) > 0,
        "{restore:#}"
    );
    // undo records for everything created
    let undone: Vec<&str> = rec["cleanup"]
        .as_array()
        .expect("cleanup")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(undone, ["restore:undo", "backup:undo", "source:undo"]);
}

#[test]
fn missing_wal_segment_is_named_and_everything_is_cleaned_up() {
    let lose = "      - id: lose-wal\n        shell:\n          run: rm \"$ARCHIVE/$SEG\"\n          env: { ARCHIVE: \"{{ steps.source.archive_dir }}\", SEG: \"{{ steps.switch.segment }}\" }\n\n";
    let (code, rec) = drill(lose, &[]);
    assert_eq!(code, 1, "{rec:#}");
    let segment = step(&rec, "switch")["outputs"]["segment"]
        .as_str()
        .expect("segment")
        .to_owned();
    let err = step(&rec, "restore")["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!(
            "WAL segment {segment} is missing from the archive"
        )),
        "{err}"
    );
    assert!(
        rec["cleanup"]
            .as_array()
            .expect("cleanup")
            .iter()
            .all(|c| c["status"] == "passed"),
        "{:#}",
        rec["cleanup"]
    );
}

#[test]
fn target_before_the_base_backup_is_refused() {
    let yaml =
        std::fs::read_to_string(root().join("runbooks/local-pitr-drill.yaml")).expect("runbook");
    let yaml = yaml.replace(
        "          target: \"{{ steps.mark.target_time }}\"\n          database: shop",
        "          target: \"2020-01-01T00:00:00Z\"\n          database: shop",
    );
    let r = Cli::new()
        .runbook(&yaml)
        .args([
            "run",
            "runbook.yaml",
            "drill",
            "--param",
            "orders=100",
            "--param",
            "customers=10",
            "--format",
            "json",
        ])
        .run();
    r.code(1);
    let rec = r.json();
    let err = step(&rec, "restore")["error"].as_str().unwrap_or_default();
    assert!(err.contains("is before the base backup started"), "{err}");
    assert!(leftovers(rec["id"].as_str().expect("id")).is_empty());
}

#[test]
fn damaged_backup_label_is_named() {
    let damage = "      - id: damage\n        shell:\n          run: 'echo garbage > \"$DIR/backup_label\"'\n          env: { DIR: \"{{ steps.backup.dir }}\" }\n\n";
    let (code, rec) = drill(damage, &[]);
    assert_eq!(code, 1);
    let err = step(&rec, "restore")["error"].as_str().unwrap_or_default();
    assert!(err.contains("backup_label is corrupt"), "{err}");
}

#[test]
fn restores_to_a_named_restore_point() {
    let yaml =
        std::fs::read_to_string(root().join("runbooks/local-pitr-drill.yaml")).expect("runbook");
    // name a point right after the target, and restore to it instead of the time
    let yaml = yaml
        .replacen("      - id: writes-after\n", "      - id: point\n        local.restore_point: { db: \"{{ steps.source.admin_uri }}\", name: \"drill-{{ run.id }}\" }\n\n      - id: writes-after\n", 1)
        .replace("          target: \"{{ steps.mark.target_time }}\"\n          database: shop", "          target: \"{{ steps.point.name }}\"\n          database: shop");
    let r = Cli::new()
        .runbook(&yaml)
        .args([
            "run",
            "runbook.yaml",
            "drill",
            "--param",
            "orders=1000",
            "--param",
            "customers=100",
            "--format",
            "json",
        ])
        .run();
    let rec = r.json();
    assert_eq!(r.code, 0, "{rec:#}");
    assert_eq!(step(&rec, "target-orders")["status"], "passed");
    assert!(leftovers(rec["id"].as_str().expect("id")).is_empty());
}
