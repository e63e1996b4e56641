//! `shell`: a command. Template values reach it only as environment variables, never
//! spliced into the command text.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{output, string_or_map, Effects, Invalid, Measure, Output, Spec, Text};

/// `shell: "script"` (run with `sh -c`) or the full form.
#[derive(Debug, Clone)]
pub enum Shell {
    Script(String),
    Full(ShellSpec),
}

string_or_map!(
    Shell,
    Script,
    Full(ShellSpec),
    "A command: a script for `sh -c`, or `{run | argv, env, dir, target}`."
);

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellSpec {
    /// Script run with `sh -c`. Not a template: read values from `env`.
    pub run: Option<String>,
    /// Program and arguments, run without a shell. Not templates.
    pub argv: Option<Vec<String>>,
    /// Environment variables for the command; values are templates.
    #[serde(default)]
    pub env: IndexMap<String, Text>,
    /// Working directory.
    pub dir: Option<String>,
    /// A target whose connection is passed as `DATABASE_URL` (postgres targets).
    pub target: Option<String>,
    /// Exit codes that count as success; default `[0]`.
    pub success_codes: Option<Vec<i32>>,
}

impl Spec for Shell {
    const OUTPUTS: &'static [Output] = &[
        output(
            "exit_code",
            "the command's exit code (null when a signal killed it)",
        ),
        output(
            "stdout",
            "the last 16 KiB of its standard output, trailing space trimmed",
        ),
        output(
            "stderr",
            "the last 16 KiB of its standard error, trailing space trimmed",
        ),
    ];
    const MEASURE: Option<Measure> = None;

    const LITERAL: &'static [&'static str] = &["", "run", "argv"];
    const TARGET_KINDS: &'static [&'static str] = &["postgres"];

    fn check(&self) -> Result<(), Invalid> {
        match self {
            Shell::Full(s) => match (&s.run, &s.argv) {
                (Some(_), None) => Ok(()),
                (None, Some(argv)) if !argv.is_empty() => Ok(()),
                (None, Some(_)) => Err(Invalid::at(
                    "argv",
                    "`argv` is empty: give the program and its arguments",
                )),
                (Some(_), Some(_)) => Err(Invalid::at(
                    "argv",
                    "give `run` (a script for sh -c) or `argv` (a program and arguments), not both",
                )),
                (None, None) => Err(Invalid::whole(
                    "missing the command: give `run` (a script for sh -c) or `argv`",
                )),
            },
            Shell::Script(s) if s.trim().is_empty() => Err(Invalid::whole("empty command")),
            Shell::Script(_) => Ok(()),
        }
    }

    fn effects(&self) -> Effects<'_> {
        Effects::NONE
    }

    fn target(&self) -> Option<&str> {
        match self {
            Shell::Full(s) => s.target.as_deref(),
            Shell::Script(_) => None,
        }
    }

    /// The command gets the target's URL; drillbook does not connect to it.
    fn connects(&self) -> Vec<&str> {
        Vec::new()
    }

    fn summary(&self) -> String {
        match self {
            Shell::Script(s) => format!("sh -c {}", first_line(s)),
            Shell::Full(s) => match (&s.run, &s.argv) {
                (Some(run), _) => format!("sh -c {}", first_line(run)),
                (None, Some(argv)) => argv.join(" "),
                (None, None) => "(no command)".into(),
            },
        }
    }
}

fn first_line(s: &str) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if s.trim().lines().count() > 1 {
        format!("{line} …")
    } else {
        line.to_owned()
    }
}
