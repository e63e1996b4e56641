//! The module graph, derived from the code. Every `crate::` path in `src/**/*.rs` (tests
//! included) is an edge from the top-level module of its file to the module it names. The
//! layers and the allowed edges are kept here: an edge outside the table fails, and so does
//! a table where a module imports a higher layer or where the allowed edges form a cycle.
//! `docs/architecture.md` draws the same graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module may import modules of lower layers, and of its own layer where
/// the table allows it (never in a cycle).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "utilities",
        &["cancel", "controls", "hex", "http", "progress", "redact"],
    ),
    (
        "value types",
        &["duration", "timestamp", "cron", "diagnostic", "template"],
    ),
    ("step payloads and their metadata", &["kind"]),
    ("the runbook model", &["runbook"]),
    ("the persisted record", &["record"]),
    ("clients", &["pg", "neon"]),
    ("stores and alerts", &["history", "notify"]),
    ("running steps, rendering documents", &["steps", "render"]),
    ("running procedures and checks", &["engine"]),
    ("entry points", &["daemon", "cli"]),
];

/// What each module may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("cancel", &[]),
    ("controls", &[]),
    ("hex", &[]),
    ("http", &[]),
    ("progress", &["controls"]),
    ("redact", &[]),
    ("duration", &[]),
    ("timestamp", &["duration"]),
    ("cron", &[]),
    ("diagnostic", &["redact"]),
    ("template", &["timestamp"]),
    (
        "kind",
        &["diagnostic", "duration", "redact", "template", "timestamp"],
    ),
    (
        "runbook",
        &[
            "cron",
            "diagnostic",
            "duration",
            "hex",
            "kind",
            "template",
            "timestamp",
        ],
    ),
    ("record", &["duration", "runbook"]),
    ("pg", &["diagnostic", "hex", "http", "redact", "timestamp"]),
    (
        "neon",
        &["controls", "duration", "http", "progress", "redact"],
    ),
    (
        "history",
        &[
            "cron",
            "duration",
            "hex",
            "pg",
            "record",
            "redact",
            "runbook",
            "timestamp",
        ],
    ),
    (
        "notify",
        &[
            "cancel",
            "duration",
            "http",
            "record",
            "runbook",
            "template",
            "timestamp",
        ],
    ),
    (
        "steps",
        &[
            "cancel",
            "diagnostic",
            "duration",
            "history",
            "http",
            "kind",
            "neon",
            "pg",
            "progress",
            "record",
            "redact",
            "runbook",
            "template",
            "timestamp",
        ],
    ),
    (
        "render",
        &[
            "controls",
            "cron",
            "duration",
            "history",
            "kind",
            "record",
            "redact",
            "runbook",
            "template",
            "timestamp",
        ],
    ),
    (
        "engine",
        &[
            "cancel",
            "cron",
            "diagnostic",
            "duration",
            "history",
            "kind",
            "neon",
            "notify",
            "record",
            "redact",
            "render",
            "runbook",
            "steps",
            "template",
            "timestamp",
        ],
    ),
    (
        "daemon",
        &[
            "cancel",
            "controls",
            "cron",
            "duration",
            "render",
            "timestamp",
        ],
    ),
    (
        "cli",
        &[
            "cancel",
            "controls",
            "cron",
            "daemon",
            "duration",
            "engine",
            "history",
            "kind",
            "notify",
            "pg",
            "progress",
            "record",
            "render",
            "runbook",
            "steps",
            "template",
            "timestamp",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/steps/neon.rs` → `steps`); None for the
/// crate root and the binary.
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The modules a line names through `crate::` (`crate::a::b`, `crate::{a, b::c}`,
/// `$crate::a` in macros), comments left out.
fn named_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// Every edge between top-level modules, with the places that make it.
fn edges() -> BTreeMap<(String, String), Vec<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = top_module(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            for to in named_modules(line) {
                if to != from {
                    let place = format!(
                        "{}:{}",
                        file.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                            .unwrap_or(&file)
                            .display(),
                        n + 1
                    );
                    edges.entry((from.clone(), to)).or_default().push(place);
                }
            }
        }
    }
    edges
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn allowed(from: &str) -> &'static [&'static str] {
    ALLOWED
        .iter()
        .find(|(m, _)| *m == from)
        .map_or(&[], |(_, to)| *to)
}

#[test]
fn every_import_between_modules_is_an_allowed_edge() {
    let mut problems = Vec::new();
    for ((from, to), places) in edges() {
        if layer_of(&from).is_none() {
            problems.push(format!(
                "module `{from}` is in no layer: place it in LAYERS and ALLOWED"
            ));
        } else if !allowed(&from).contains(&to.as_str()) {
            problems.push(format!(
                "`{from}` imports `{to}`, which the table does not allow, at {}",
                places.join(", ")
            ));
        }
    }
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_allowed_edges_point_down_and_never_form_a_cycle() {
    // every module of the crate is placed, once
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let placed: BTreeSet<&str> = LAYERS.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    assert_eq!(declared, placed, "lib.rs's modules and LAYERS differ");
    let listed: BTreeSet<&str> = ALLOWED.iter().map(|(m, _)| *m).collect();
    assert_eq!(listed, placed, "ALLOWED and LAYERS name different modules");

    for (from, tos) in ALLOWED {
        for to in *tos {
            let (a, b) = (layer_of(from), layer_of(to));
            assert!(
                a.is_some() && b.is_some() && b <= a,
                "`{from}` may import `{to}`, a higher layer"
            );
        }
    }
    // depth-first search for a cycle among the allowed edges
    fn visit<'a>(m: &'a str, path: &mut Vec<&'a str>, done: &mut BTreeSet<&'a str>) {
        if let Some(start) = path.iter().position(|p| *p == m) {
            panic!(
                "the allowed edges form a cycle: {}",
                path[start..].join(" → ")
            );
        }
        if done.contains(m) {
            return;
        }
        path.push(m);
        for to in allowed(m) {
            visit(to, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for (m, _) in ALLOWED {
        visit(m, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_crate_root_lists_every_module() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    for module in lib.lines().filter_map(|l| l.strip_prefix("pub mod ")) {
        let module = module.trim_end_matches(';');
        assert!(
            lib.contains(&format!("[`{module}`]")),
            "lib.rs's module list does not name `{module}`"
        );
    }
}

#[test]
fn edges_are_read_from_every_form_of_path() {
    assert_eq!(named_modules("use crate::kind::StepKind;"), ["kind"]);
    assert_eq!(
        named_modules("use crate::{cancel::Cancel, record};"),
        ["cancel", "record"]
    );
    assert_eq!(named_modules("$($crate::kind::form_visit!(x);)+"), ["kind"]);
    assert!(named_modules("// see crate::engine").is_empty());
}

/// A file or docs citing a document outside the repository is a dead end for a reader.
#[test]
fn no_source_file_cites_a_path_outside_the_repository() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains("DESIGN.md") && !line.contains("../shared"),
                "{}:{} cites a document outside the repository: {line}",
                file.display(),
                n + 1
            );
        }
    }
}
