//! pgBackRest end to end against real encrypted repositories (`repo.rs`).

mod repo;

use repo::shared;

/// The shared repository really is what the tests rely on: encrypted, with a full, a diff and
/// an incr set, and rows on both sides of the target.
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
