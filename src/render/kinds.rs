//! The step kinds' reference, written from what each kind declares (`kind::StepKind::INFO`):
//! `docs/step-kinds.md` and the measures table of `docs/runbook-format.md` come from here,
//! and a test keeps both files equal to it.

use std::fmt::Write as _;

use crate::kind::{StepKind, Worse};

/// The kinds with a measure, as a Markdown table.
pub fn measures_table() -> String {
    let mut s = String::from(
        "| kind | measure (output) | unit | worse when | metric family |\n|---|---|---|---|---|\n",
    );
    for info in StepKind::INFO {
        let Some(m) = info.measure else {
            continue;
        };
        let meaning = info
            .outputs
            .iter()
            .find(|o| o.name == m.output)
            .map_or("", |o| o.meaning);
        let metric = match m.metric {
            Some(crate::kind::Metric::BackupAge) => "`drillbook_backup_age_seconds`",
            Some(crate::kind::Metric::RestoreWindow) => "`drillbook_restore_window_seconds`",
            None => "—",
        };
        let _ = writeln!(
            s,
            "| `{}` | `{}` ({meaning}) | {} | {} | {metric} |",
            info.name,
            m.output,
            m.unit.as_str(),
            match m.worse {
                Worse::Higher => "higher",
                Worse::Lower => "lower",
            }
        );
    }
    s.push_str(
        "| `shell` | the output its `measure.output` names (a key of the JSON on stdout) | its `unit`: `seconds`, `bytes`, `count` or `number` | its `worse` | its `metric`, if any |\n",
    );
    s
}

/// `docs/step-kinds.md`: every kind's outputs, measure and targets.
pub fn reference() -> String {
    let mut s = String::from(
        "# Step kinds: outputs and measures\n\n\
         Generated from what each kind declares in `src/kind/` (`cargo test` checks this file \
         is current; `UPDATE_EXPECT=1 cargo test` rewrites it). A later step reads an output \
         as `steps.<id>.<output>`; validation refuses a name that is not listed here. The \
         kinds' fields are described in [runbook-format.md](runbook-format.md#step-kinds).\n\n\
         ## Measures\n\n\
         A check's `warn` and `critical` thresholds are compared with its kind's measure; a \
         kind without one takes no threshold. A `shell` check declares its own with \
         `measure:`. Every measure is exported by `check --format prometheus` as \
         `drillbook_check_measure{measure, unit}`, and in the metric family named.\n\n",
    );
    s.push_str(&measures_table());
    s.push_str("\n## Kinds\n\n| kind | targets | destructive | outputs |\n|---|---|---|---|\n");
    for info in StepKind::INFO {
        let targets = if info.target_kinds.is_empty() {
            "any".to_owned()
        } else {
            info.target_kinds
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| [`{}`](#{}) | {targets} | {} | {} |",
            info.name,
            info.name.replace('.', ""),
            if info.destructive { "always" } else { "—" },
            info.outputs.len()
        );
    }
    for info in StepKind::INFO {
        let _ = writeln!(s, "\n### {}\n", info.name);
        s.push_str("| output | meaning |\n|---|---|\n");
        for o in info.outputs {
            let measure = if info.measure.is_some_and(|m| m.output == o.name) {
                " (the measure)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "| `{}` | {}{measure} |",
                o.name,
                o.meaning.replace('|', "\\|")
            );
        }
        if let Some(more) = info.payload_outputs {
            let _ = writeln!(s, "\nAlso outputs: {more}.");
        }
    }
    s
}
