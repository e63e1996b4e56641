//! `shell`: a command. Template values reach it only as environment variables, never
//! spliced into the command text.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{
    output, string_or_map, Effects, Invalid, Measure, Metric, Output, Spec, Text, Unit, Worse,
    ANY_OUTPUT,
};

/// `shell: "script"` (run with `sh -c`) or the full form.
#[derive(Debug, Clone)]
pub enum Shell {
    Script(String),
    Full(Box<ShellSpec>),
}

string_or_map!(
    Shell,
    Script,
    Full(Box<ShellSpec>),
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
    /// `json`: standard output is a JSON object whose keys become outputs (any name);
    /// `{json: [a, b]}`: the same, naming the keys, so validation checks every
    /// `steps.<id>.<key>` and the step fails when stdout lacks one.
    pub outputs: Option<JsonOutputs>,
    /// The output a check's `warn`/`critical` compare and Prometheus exports.
    pub measure: Option<ShellMeasure>,
    /// A monitoring plugin: exit 0 OK, 1 WARNING, 2 CRITICAL, anything else UNKNOWN; the
    /// first line of stdout is the message.
    #[serde(default)]
    pub nagios: bool,
    /// A command that undoes what this step makes: registered when the step starts (before
    /// it runs), run after the cleanup steps with the step's `env`, `dir` and `target`, also
    /// after a second interrupt, and by `drillbook gc` when the run was killed. Not a
    /// template.
    pub undo: Option<ShellUndo>,
}

/// `undo:` of a `shell` step: a script for `sh -c`, or `{run}` / `{argv}`.
#[derive(Debug, Clone)]
pub enum ShellUndo {
    Script(String),
    Full(UndoSpec),
}

string_or_map!(
    ShellUndo,
    Script,
    Full(UndoSpec),
    "A command undoing what the step makes: a script for `sh -c`, or `{run | argv}`."
);

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UndoSpec {
    /// Script run with `sh -c`. Not a template.
    pub run: Option<String>,
    /// Program and arguments, run without a shell. Not templates.
    pub argv: Option<Vec<String>>,
}

impl ShellUndo {
    /// The program and its arguments: `sh -c script`, or the `argv`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            ShellUndo::Script(s)
            | ShellUndo::Full(UndoSpec {
                run: Some(s),
                argv: None,
            }) => vec!["sh".into(), "-c".into(), s.clone()],
            ShellUndo::Full(UndoSpec { argv: Some(a), .. }) => a.clone(),
            ShellUndo::Full(_) => Vec::new(),
        }
    }

    /// One line for titles: the command's first line.
    pub fn summary(&self) -> String {
        match self {
            ShellUndo::Script(s) | ShellUndo::Full(UndoSpec { run: Some(s), .. }) => first_line(s),
            ShellUndo::Full(UndoSpec { argv: Some(a), .. }) => a.join(" "),
            ShellUndo::Full(_) => String::new(),
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        let bad = |m: &str| Err(Invalid::at("undo", m.to_owned()));
        match self {
            ShellUndo::Script(s) if s.trim().is_empty() => bad("`undo` is empty"),
            ShellUndo::Script(_) => Ok(()),
            ShellUndo::Full(u) => match (&u.run, &u.argv) {
                (Some(r), None) if !r.trim().is_empty() => Ok(()),
                (None, Some(a)) if !a.is_empty() => Ok(()),
                (Some(_), Some(_)) => bad("give `undo.run` or `undo.argv`, not both"),
                _ => bad("`undo` needs a command: a script, `{run: …}` or `{argv: […]}`"),
            },
        }
    }
}

/// `outputs:` of a `shell` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonOutputs {
    /// `json`: every key of the object, not known before the step runs.
    Any,
    /// `{json: [a, b]}`: these keys, each required.
    Named(Vec<String>),
}

impl<'de> Deserialize<'de> for JsonOutputs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<JsonOutputs, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            json: Vec<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Word(String),
            Named(Named),
        }
        let form = Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected `json` or `{json: [names of its keys]}`")
        })?;
        match form {
            Form::Word(w) if w == "json" => Ok(JsonOutputs::Any),
            Form::Word(w) => Err(serde::de::Error::custom(format!(
                "unknown outputs form `{w}`: expected `json` or `{{json: [names of its keys]}}`"
            ))),
            Form::Named(n) => Ok(JsonOutputs::Named(n.json)),
        }
    }
}

impl JsonSchema for JsonOutputs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JsonOutputs".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`json` (stdout is a JSON object; its keys are outputs) or `{json: [keys]}` (the keys named, checked by validation).",
            "anyOf": [
                {"const": "json"},
                {
                    "type": "object",
                    "properties": {"json": {"type": "array", "items": {"type": "string"}}},
                    "required": ["json"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// `measure:` of a `shell` step: which output a check is judged by.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellMeasure {
    /// The output holding it: a key of the JSON on stdout (`outputs: json`), or `exit_code`.
    pub output: String,
    /// `seconds` (thresholds may be durations), `bytes` (sizes), `count` or `number`
    /// (default).
    #[serde(default)]
    pub unit: Unit,
    /// `higher` or `lower`: which way is worse.
    pub worse: Worse,
    /// A metric family it also feeds: `backup_age` or `restore_window` (unit `seconds`).
    pub metric: Option<Metric>,
}

/// The outputs a `nagios: true` step adds.
pub const NAGIOS_OUTPUTS: [&str; 2] = ["status", "message"];

/// Keys a JSON stdout cannot use: the step's own outputs.
const OWN_OUTPUTS: [&str; 3] = ["exit_code", "stdout", "stderr"];

impl ShellSpec {
    /// The keys of stdout's JSON object that become outputs, if stdout is parsed.
    fn json_names(&self) -> Vec<&str> {
        match &self.outputs {
            None => Vec::new(),
            Some(JsonOutputs::Any) => vec![ANY_OUTPUT],
            Some(JsonOutputs::Named(names)) => names.iter().map(String::as_str).collect(),
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        match (&self.run, &self.argv) {
            (Some(_), None) => {}
            (None, Some(argv)) if !argv.is_empty() => {}
            (None, Some(_)) => {
                return Err(Invalid::at(
                    "argv",
                    "`argv` is empty: give the program and its arguments",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(Invalid::at(
                    "argv",
                    "give `run` (a script for sh -c) or `argv` (a program and arguments), not both",
                ))
            }
            (None, None) => {
                return Err(Invalid::whole(
                    "missing the command: give `run` (a script for sh -c) or `argv`",
                ))
            }
        }
        if let Some(JsonOutputs::Named(names)) = &self.outputs {
            if names.is_empty() {
                return Err(Invalid::at(
                    "outputs",
                    "`{json: []}` names no key: list the keys, or write `outputs: json`",
                ));
            }
            let reserved = OWN_OUTPUTS.iter().chain(if self.nagios {
                NAGIOS_OUTPUTS.iter()
            } else {
                [].iter()
            });
            for own in reserved {
                if names.iter().any(|n| n == own) {
                    return Err(Invalid::at(
                        "outputs",
                        format!("`{own}` is already an output of a shell step: a JSON key cannot replace it"),
                    ));
                }
            }
        }
        if let Some(undo) = &self.undo {
            undo.check()?;
        }
        if self.nagios && self.success_codes.is_some() {
            return Err(Invalid::at(
                "success_codes",
                "`nagios: true` reads the exit code itself (0 OK, 1 WARNING, 2 CRITICAL, else UNKNOWN): drop `success_codes`",
            ));
        }
        if let Some(m) = &self.measure {
            let names = self.json_names();
            let readable = m.output == "exit_code"
                || names.contains(&ANY_OUTPUT)
                || names.contains(&m.output.as_str());
            if !readable {
                let msg = if self.outputs.is_none() {
                    format!("the measure `{}` is read from the JSON object on stdout: add `outputs: json` (or `{{json: [{}]}}`)", m.output, m.output)
                } else {
                    format!(
                        "the measure `{}` is not one of the keys `outputs` names ({})",
                        m.output,
                        names.join(", ")
                    )
                };
                return Err(Invalid::at("measure", msg));
            }
            if m.metric.is_some() && m.unit != Unit::Seconds {
                return Err(Invalid::at(
                    "measure",
                    format!("the metric families `backup_age` and `restore_window` are in seconds: give `unit: seconds` (not `{}`)", m.unit.as_str()),
                ));
            }
        }
        Ok(())
    }
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
    const MEASURE: Option<Measure<'static>> = None;

    const LITERAL: &'static [&'static str] = &["", "run", "argv", "undo"];
    const TARGET_KINDS: &'static [&'static str] = &["postgres"];

    const PAYLOAD_OUTPUTS: Option<&'static str> = Some(
        "with `outputs: json`, each key of the JSON object on stdout; with `nagios: true`, `status` (`OK`, `WARNING`, `CRITICAL` or `UNKNOWN`) and `message` (the first line of stdout)",
    );

    fn payload_outputs(&self) -> Vec<&str> {
        match self {
            Shell::Script(_) => Vec::new(),
            Shell::Full(s) => {
                let mut names = s.json_names();
                if s.nagios {
                    names.extend(NAGIOS_OUTPUTS);
                }
                names
            }
        }
    }

    fn measure(&self) -> Option<Measure<'_>> {
        let Shell::Full(s) = self else {
            return None;
        };
        let m = s.measure.as_ref()?;
        Some(Measure {
            output: &m.output,
            unit: m.unit,
            worse: m.worse,
            metric: m.metric,
        })
    }

    fn check(&self) -> Result<(), Invalid> {
        match self {
            Shell::Full(s) => s.check(),
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

impl Shell {
    /// `nagios: true`: the exit code is a monitoring plugin's status.
    pub fn nagios(&self) -> bool {
        matches!(self, Shell::Full(s) if s.nagios)
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
