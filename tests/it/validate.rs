//! `drillbook validate`: file-driven snapshots. Each `tests/fixtures/invalid/NAME.yaml` has a
//! `NAME.expected` with the exact stderr, compared by expect-test; a new case is a new file.
//! `UPDATE_EXPECT=1 cargo test` writes the expected files (review the diff before committing).

use std::path::Path;

use crate::support::{root, Cli};

fn fixtures(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join(dir))
        .expect("fixture dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {dir}");
    files
}

fn relative(p: &Path) -> String {
    p.strip_prefix(root())
        .expect("inside the repo")
        .display()
        .to_string()
}

#[test]
fn invalid_fixtures_report_every_problem_with_its_place() {
    for file in fixtures("tests/fixtures/invalid") {
        let rel = relative(&file);
        let mut cli = Cli::new().args(["validate", &rel]);
        cli = cli.env("NO_COLOR", "1");
        let mut cmd = cli.command();
        cmd.current_dir(root());
        let out = cmd.output().expect("run drillbook");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{rel} must be invalid (exit 2)\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.stdout.is_empty(),
            "{rel}: nothing on stdout for an invalid runbook"
        );
        expect_test::expect_file![file.with_extension("expected")].assert_eq(&stderr);
    }
}

#[test]
fn every_invalid_fixture_names_a_line_and_column() {
    for file in fixtures("tests/fixtures/invalid") {
        if file.file_name().is_some_and(|n| n == "empty.yaml") {
            continue;
        }
        let expected =
            std::fs::read_to_string(file.with_extension("expected")).expect("expected file");
        let rel = relative(&file);
        let first = expected.lines().next().unwrap_or_default();
        let rest = first
            .strip_prefix(&format!("{rel}:"))
            .unwrap_or_else(|| panic!("{rel}: first line names the file: {first}"));
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("{rel}: line number in `{first}`"));
        let col: usize = parts
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{rel}: column in `{first}`"));
        assert!(line >= 1 && col >= 1, "{first}");
    }
}

#[test]
fn shipped_and_valid_runbooks_pass() {
    let mut files = fixtures("runbooks");
    files.extend(fixtures("tests/fixtures/valid"));
    for file in files {
        let rel = relative(&file);
        let mut cmd = Cli::new().args(["validate", &rel]).command();
        cmd.current_dir(root());
        let out = cmd.output().expect("run drillbook");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{rel}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(": ok ("),
            "{rel}"
        );
    }
}

#[test]
fn validate_reports_all_files_and_fails_if_any_is_invalid() {
    let mut cmd = Cli::new()
        .args([
            "validate",
            "runbooks/hello.yaml",
            "tests/fixtures/invalid/bad-ids.yaml",
            "no/such/file.yaml",
        ])
        .command();
    cmd.current_dir(root());
    let out = cmd.output().expect("run drillbook");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("runbooks/hello.yaml: ok"));
    assert!(
        stderr.contains("bad-ids.yaml:2:7: error: invalid runbook name"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no/such/file.yaml: error: cannot read runbook"),
        "{stderr}"
    );
}

/// `all-kinds.yaml` is the one runbook every tool (the schema, validation, the document) is
/// tried on: it must use every step kind, in a step, a cleanup step, a check or a poll.
#[test]
fn the_every_kind_fixture_uses_every_kind() {
    use drillbook::kind::wait::Wait;
    use drillbook::kind::StepKind;

    let path = root().join("tests/fixtures/valid/all-kinds.yaml");
    let rb = drillbook::runbook::load_file(&path.display().to_string()).expect("valid");
    let mut kinds: Vec<&StepKind> = rb.checks.iter().map(|c| &c.kind).collect();
    for p in rb.procedures.values() {
        kinds.extend(p.steps.iter().chain(&p.cleanup).map(|s| &s.kind));
    }
    let polled: Vec<&StepKind> = kinds
        .iter()
        .filter_map(|k| match k {
            StepKind::Wait(Wait::Poll(p)) => Some(&*p.poll),
            _ => None,
        })
        .collect();
    kinds.extend(polled);
    let used: std::collections::BTreeSet<&str> = kinds.iter().map(|k| k.name()).collect();
    let missing: Vec<&&str> = StepKind::NAMES
        .iter()
        .filter(|n| !used.contains(**n))
        .collect();
    assert!(
        missing.is_empty(),
        "tests/fixtures/valid/all-kinds.yaml does not use {missing:?}"
    );
}

/// A runbook saved with a UTF-8 byte order mark runs; the record's fingerprint is of the
/// file as it is, mark included (`sha256sum` agrees).
#[test]
fn a_byte_order_mark_is_ignored_but_fingerprinted() {
    use sha2::Digest;
    let file = root().join("tests/fixtures/valid/bom.yaml");
    let bytes = std::fs::read(&file).expect("fixture");
    assert!(
        bytes.starts_with(b"\xef\xbb\xbf"),
        "the fixture starts with a BOM"
    );
    let cli = Cli::new().args(["run", &file.display().to_string(), "p", "--format", "json"]);
    let r = cli.run();
    r.code(0);
    let rec = r.json();
    assert_eq!(
        rec["runbook"]["sha256"],
        drillbook::hex::encode(&sha2::Sha256::digest(&bytes))
    );
}
