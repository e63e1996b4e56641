//! What goes wrong with a pgBackRest restore, each ending with a plain explanation, no
//! server running and no scratch directory left.

use super::repo::{shared, Repo};
use super::{drill, restore_yaml, step};
use crate::support::Cli;

fn error(rec: &serde_json::Value) -> String {
    step(rec, "restore")["error"]
        .as_str()
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
