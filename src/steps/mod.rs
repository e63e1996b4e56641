//! Step kinds: a closed set. Each kind is a spec type in the file of its family, implementing
//! [`Spec`]; the [`step_kinds!`] list below is the one place that names them, generating
//! `StepKind`, its name table, decoding, schema and dispatch. Adding a kind is one line here
//! plus its file.

pub mod assert;
pub mod db;
pub mod history;
pub mod http;
pub mod local;
pub mod manual;
pub mod neon;
pub mod shell;
pub mod sql;
pub mod wait;

use std::future::Future;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::cancel::{BoxFuture, Cancel};
pub use crate::record::{ErrorClass, Outputs};
use crate::runbook::Runbook;

/// Why a step did not pass. The class decides the run's exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub class: ErrorClass,
    pub message: String,
    /// Outputs gathered before the failure (e.g. a command's exit code and stderr).
    pub outputs: Outputs,
}

impl StepError {
    pub fn failed(message: impl Into<String>) -> StepError {
        StepError {
            class: ErrorClass::Failed,
            message: message.into(),
            outputs: Outputs::new(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> StepError {
        StepError {
            class: ErrorClass::Unavailable,
            message: message.into(),
            outputs: Outputs::new(),
        }
    }

    pub fn cancelled() -> StepError {
        StepError {
            class: ErrorClass::Cancelled,
            message: "interrupted".into(),
            outputs: Outputs::new(),
        }
    }

    pub fn with_outputs(mut self, outputs: Outputs) -> StepError {
        self.outputs = outputs;
        self
    }
}

impl From<crate::pg::ConnectError> for StepError {
    fn from(e: crate::pg::ConnectError) -> StepError {
        StepError::unavailable(e.to_string())
    }
}

impl From<crate::neon::NeonError> for StepError {
    fn from(e: crate::neon::NeonError) -> StepError {
        let hint = match e.status() {
            Some(401) => " — NEON_API_KEY was refused: check that it is current and has access to this project",
            Some(403) => " — the API key has no access to this project or action",
            _ => "",
        };
        let message = format!("{e}{hint}");
        if e.is_unavailable() {
            StepError::unavailable(message)
        } else {
            StepError::failed(message)
        }
    }
}

/// What a running step may use.
pub struct StepCx<'a> {
    pub runbook: &'a Runbook,
    pub step_id: &'a str,
    /// The template context at this point of the run (params, env, steps, run, now).
    pub vars: &'a minijinja::Value,
    pub templates: &'a minijinja::Environment<'static>,
    pub cancel: &'a Cancel,
    pub interaction: &'a dyn Interaction,
    pub operator: &'a str,
    /// Masks this run's secrets: anything a step shows or returns as text passes through it.
    pub redactor: &'a crate::redact::Redactor,
    /// Where a step registers what it created, the moment it exists, so the run undoes it
    /// on every path — even when the step itself is interrupted.
    pub undo: &'a std::sync::Mutex<Vec<Undo>>,
    /// Which attempt this is (1 for the first; more with `retries`).
    pub attempt: u32,
    /// The history store given on the command line (`history.*` kinds read it); None for
    /// `DRILLBOOK_HISTORY` or the default.
    pub history: Option<&'a str>,
}

/// Something a step created that must not outlive the run. The engine undoes these after
/// the runbook's own cleanup steps, newest first, and records each as a cleanup step.
#[derive(Debug, Clone)]
pub enum Undo {
    /// Stop a local cluster drillbook started (if it runs) and remove its directory.
    Cluster {
        step: String,
        what: String,
        handle: crate::pg::cluster::ClusterHandle,
    },
    /// Remove a directory drillbook created.
    Dir {
        step: String,
        what: String,
        path: std::path::PathBuf,
    },
    /// Delete a Neon branch drillbook created: by id once known, else by its unique name
    /// (registered before the create request is sent).
    NeonBranch {
        step: String,
        what: String,
        project: String,
        name: String,
        id: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    },
    /// Delete a Neon snapshot drillbook created (same rules as a branch).
    NeonSnapshot {
        step: String,
        what: String,
        project: String,
        name: String,
        id: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    },
}

impl Undo {
    pub fn step(&self) -> &str {
        match self {
            Undo::Cluster { step, .. }
            | Undo::Dir { step, .. }
            | Undo::NeonBranch { step, .. }
            | Undo::NeonSnapshot { step, .. } => step,
        }
    }

    pub fn title(&self) -> &str {
        match self {
            Undo::Cluster { what, .. }
            | Undo::Dir { what, .. }
            | Undo::NeonBranch { what, .. }
            | Undo::NeonSnapshot { what, .. } => what,
        }
    }

    pub async fn run(&self) -> Result<(), StepError> {
        match self {
            Undo::Cluster { handle, .. } => handle
                .stop_and_remove()
                .await
                .map_err(|e| StepError::failed(e.to_string())),
            Undo::Dir { path, .. } => match tokio::fs::remove_dir_all(path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(StepError::failed(format!(
                    "cannot remove {}: {e}",
                    path.display()
                ))),
            },
            Undo::NeonBranch {
                project, name, id, ..
            } => neon::undo_branch(project, name, id).await,
            Undo::NeonSnapshot {
                project, name, id, ..
            } => neon::undo_snapshot(project, name, id).await,
        }
    }
}

impl StepCx<'_> {
    /// Registers something to undo at the end of the run.
    pub fn created(&self, undo: Undo) {
        self.undo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(undo);
    }

    /// The run's id (for naming scratch resources).
    pub fn run_id(&self) -> String {
        self.vars
            .get_attr("run")
            .and_then(|r| r.get_attr("id"))
            .map(|v| v.to_string())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for StepCx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepCx")
            .field("step_id", &self.step_id)
            .finish_non_exhaustive()
    }
}

/// The operator at the terminal: the seam tests replace.
pub trait Interaction: Send + Sync {
    /// `--yes` was given: confirmations are granted without asking.
    fn assume_yes(&self) -> bool;
    /// A person can answer (stdin and stderr are a terminal).
    fn is_interactive(&self) -> bool;
    /// Shows text to the operator (instructions, warnings).
    fn show(&self, text: &str);
    /// Asks a yes/no question; resolves to the answer.
    fn confirm(&self, question: String) -> BoxFuture<'static, std::io::Result<bool>>;
}

/// The operator's answer to a confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Granted, and how: `--yes` or `terminal`.
    Yes(&'static str),
    No,
}

/// Asks for a confirmation: granted in advance by `--yes`, asked at a terminal, and refused
/// (as "could not run") when nobody can answer. `what` names what needs the operator, e.g.
/// "manual step `x` needs an operator".
pub async fn ask_operator(
    interaction: &dyn Interaction,
    question: String,
    what: &str,
    cancel: &Cancel,
) -> Result<Answer, StepError> {
    if interaction.assume_yes() {
        return Ok(Answer::Yes("--yes"));
    }
    if !interaction.is_interactive() {
        return Err(StepError::unavailable(format!(
            "{what}: run it in a terminal, or pass --yes to approve it in advance"
        )));
    }
    tokio::select! {
        answer = interaction.confirm(question) => match answer {
            Ok(true) => Ok(Answer::Yes("terminal")),
            Ok(false) => Ok(Answer::No),
            Err(e) => Err(StepError::unavailable(format!("cannot read the operator's answer: {e}"))),
        },
        () = cancel.cancelled() => Err(StepError::cancelled()),
    }
}

/// A step kind's spec: decoded from the rendered payload, then run.
pub trait Spec: DeserializeOwned + JsonSchema + std::fmt::Debug + Clone + Send + Sync {
    /// Payload fields that are not templates (`""` is a payload written as a bare string).
    /// Their text reaches the step as written.
    const LITERAL: &'static [&'static str] = &[];
    /// How to pass values instead, shown when a literal field holds template syntax.
    const LITERAL_HELP: &'static str = "pass values as environment variables: `env: {TARGET: \"{{ steps.x.y }}\"}` and use \"$TARGET\" in the command";
    /// Payload fields that are expressions (evaluated by the step, not rendered up front).
    const EXPRESSIONS: &'static [&'static str] = &[];
    /// Kinds that always destroy or overwrite data.
    const DESTRUCTIVE: bool = false;

    /// Whether this step destroys or overwrites data (a kind may decide per step, e.g. a
    /// snapshot restore only when it replaces the target branch).
    fn destructive(&self) -> bool {
        Self::DESTRUCTIVE
    }

    /// The runbook target the step acts on, if any (by name).
    fn target(&self) -> Option<&str> {
        None
    }

    /// Every target the step names, acted on or only read (e.g. a comparison's source).
    fn targets(&self) -> Vec<&str> {
        self.target().into_iter().collect()
    }

    /// The target kinds (`postgres`, `neon`, `local`) the step can act on; empty for any.
    const TARGET_KINDS: &'static [&'static str] = &[];

    /// Checks that serde cannot express (e.g. exactly one of two fields), at validation.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// One line for `plan`: what the step will do.
    fn summary(&self) -> String;

    fn run<'a>(
        &'a self,
        cx: &'a StepCx<'a>,
    ) -> impl Future<Output = Result<Outputs, StepError>> + Send + 'a;
}

macro_rules! step_kinds {
    ($($variant:ident($name:literal) => $spec:ty),+ $(,)?) => {
        /// Every step kind, by the key that names it in YAML.
        #[derive(Debug, Clone)]
        pub enum StepKind {
            $($variant($spec)),+
        }

        /// From a single-key mapping `{name: payload}`, with errors that name the kinds.
        impl<'de> serde::Deserialize<'de> for StepKind {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StepKind, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = StepKind;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a mapping with one step kind key")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StepKind, A::Error> {
                        let Some(name) = map.next_key::<String>()? else {
                            return Err(serde::de::Error::custom("expected one step kind key, found an empty mapping"));
                        };
                        let kind = match name.as_str() {
                            $($name => StepKind::$variant(map.next_value()?),)+
                            other => return Err(serde::de::Error::unknown_variant(other, StepKind::NAMES)),
                        };
                        if let Some(extra) = map.next_key::<String>()? {
                            return Err(serde::de::Error::custom(format!("expected one step kind key, found `{name}` and `{extra}`")));
                        }
                        Ok(kind)
                    }
                }
                d.deserialize_map(V)
            }
        }

        impl StepKind {
            /// The YAML keys of all kinds, in order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn name(&self) -> &'static str {
                match self {
                    $(StepKind::$variant(_) => $name),+
                }
            }

            pub fn literal_fields(name: &str) -> &'static [&'static str] {
                match name {
                    $($name => <$spec as Spec>::LITERAL,)+
                    _ => &[],
                }
            }

            pub fn literal_help(name: &str) -> &'static str {
                match name {
                    $($name => <$spec as Spec>::LITERAL_HELP,)+
                    _ => "",
                }
            }

            pub fn expression_fields(name: &str) -> &'static [&'static str] {
                match name {
                    $($name => <$spec as Spec>::EXPRESSIONS,)+
                    _ => &[],
                }
            }

            pub fn is_destructive(&self) -> bool {
                match self {
                    $(StepKind::$variant(s) => s.destructive()),+
                }
            }

            pub fn target(&self) -> Option<&str> {
                match self {
                    $(StepKind::$variant(s) => s.target()),+
                }
            }

            pub fn targets(&self) -> Vec<&str> {
                match self {
                    $(StepKind::$variant(s) => s.targets()),+
                }
            }

            pub fn target_kinds(&self) -> &'static [&'static str] {
                match self {
                    $(StepKind::$variant(_) => <$spec as Spec>::TARGET_KINDS),+
                }
            }

            pub fn check(&self) -> Result<(), String> {
                match self {
                    $(StepKind::$variant(s) => s.check()),+
                }
            }

            pub fn summary(&self) -> String {
                match self {
                    $(StepKind::$variant(s) => s.summary()),+
                }
            }

            /// JSON Schemas of every kind's payload, by name.
            pub fn schemas(generator: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
                vec![$(($name, generator.subschema_for::<$spec>())),+]
            }

            /// Runs the step. Boxed because `wait` runs a step kind inside itself.
            pub fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> BoxFuture<'a, Result<Outputs, StepError>> {
                match self {
                    $(StepKind::$variant(s) => Box::pin(s.run(cx))),+
                }
            }
        }

        impl schemars::JsonSchema for StepKind {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                "StepKind".into()
            }
            fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let alternatives: Vec<serde_json::Value> = vec![$(
                    serde_json::json!({
                        "type": "object",
                        "properties": { $name: g.subschema_for::<$spec>() },
                        "required": [$name],
                        "additionalProperties": false
                    })
                ),+];
                schemars::json_schema!({ "description": "A step kind and its payload, e.g. `{http: {url: …}}`.", "oneOf": alternatives })
            }
        }
    };
}

step_kinds! {
    Shell("shell") => shell::Shell,
    Http("http") => http::Http,
    Manual("manual") => manual::Manual,
    Wait("wait") => wait::Wait,
    Assert("assert") => assert::Assert,
    Sql("sql") => sql::Sql,
    Freshness("freshness") => crate::checks::freshness::Freshness,
    Compare("compare") => crate::checks::compare::Compare,
    LocalCluster("local.cluster") => local::LocalCluster,
    LocalBaseBackup("local.base_backup") => local::LocalBaseBackup,
    LocalRestorePoint("local.restore_point") => local::LocalRestorePoint,
    LocalRestore("local.restore") => local::LocalRestore,
    LocalArchiver("local.archiver") => local::LocalArchiver,
    LocalBackupAge("local.backup_age") => local::LocalBackupAge,
    NeonCreateBranch("neon.create_branch") => neon::NeonCreateBranch,
    NeonRestoreBranch("neon.restore_branch") => neon::NeonRestoreBranch,
    NeonDeleteBranch("neon.delete_branch") => neon::NeonDeleteBranch,
    NeonSetDefaultBranch("neon.set_default_branch") => neon::NeonSetDefaultBranch,
    NeonConnectionUri("neon.connection_uri") => neon::NeonConnectionUri,
    NeonCreateSnapshot("neon.create_snapshot") => neon::NeonCreateSnapshot,
    NeonRestoreSnapshot("neon.restore_snapshot") => neon::NeonRestoreSnapshot,
    NeonFinalizeRestore("neon.finalize_restore") => neon::NeonFinalizeRestore,
    NeonDeleteSnapshot("neon.delete_snapshot") => neon::NeonDeleteSnapshot,
    NeonSchemaDiff("neon.schema_diff") => neon::NeonSchemaDiff,
    NeonRetention("neon.retention") => neon::NeonRetention,
    NeonBackupSchedule("neon.backup_schedule") => neon::NeonBackupSchedule,
    NeonSnapshotAge("neon.snapshot_age") => neon::NeonSnapshotAge,
    NeonProject("neon.project") => neon::NeonProject,
    HistoryLastPass("history.last_pass") => history::HistoryLastPass,
    HistoryOverdue("history.overdue") => history::HistoryOverdue,
}

/// Text that may also be written as a number or boolean (`ROWS: "{{ params.rows }}"` renders
/// to a number, and an env var or header value still wants it as text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Text(pub String);

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("text, a number or a boolean")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Text, E> {
                Ok(Text(s.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Text, E> {
                Ok(Text(b.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Text".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "number", "boolean"]})
    }
}

/// How a string inside a step payload is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Rendered with the run's context just before the step runs.
    Template,
    /// Passed as written (commands: values reach them only as environment variables).
    Literal,
    /// An expression the step evaluates itself (`until`, `that`).
    Expression,
}

fn form_of(kind: &str, field: &str) -> Form {
    if StepKind::literal_fields(kind).contains(&field) {
        Form::Literal
    } else if StepKind::expression_fields(kind).contains(&field) {
        Form::Expression
    } else {
        Form::Template
    }
}

/// The one key of a nested step payload (`wait.poll: {http: {...}}`), if it names a kind.
fn nested_kind(value: &serde_json::Value) -> Option<(&'static str, &serde_json::Value)> {
    let map = value.as_object()?;
    let (k, v) = map.iter().next().filter(|_| map.len() == 1)?;
    let name = StepKind::NAMES.iter().find(|n| **n == k.as_str())?;
    Some((name, v))
}

/// Rebuilds a kind's payload, passing every string through `f` with its path and form.
/// Validation uses it to check templates; the engine uses it to render them.
pub fn map_strings<E>(
    kind: &str,
    payload: &serde_json::Value,
    path: &crate::diagnostic::YamlPath,
    f: &mut dyn FnMut(&crate::diagnostic::YamlPath, &str, Form) -> Result<serde_json::Value, E>,
) -> Result<serde_json::Value, E> {
    use serde_json::Value;
    fn walk<E>(
        v: &Value,
        path: &crate::diagnostic::YamlPath,
        form: Form,
        f: &mut dyn FnMut(&crate::diagnostic::YamlPath, &str, Form) -> Result<Value, E>,
    ) -> Result<Value, E> {
        Ok(match v {
            Value::String(s) => f(path, s, form)?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| walk(x, &path.index(i), form, f))
                    .collect::<Result<_, E>>()?,
            ),
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, x) in m {
                    out.insert(k.clone(), walk(x, &path.key(k), form, f)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
    match payload {
        Value::String(s) => f(path, s, form_of(kind, "")),
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (field, v) in m {
                let p = path.key(field);
                let mapped = match nested_kind(v).filter(|_| kind == "wait" && field == "poll") {
                    Some((inner, inner_payload)) => {
                        let mut nested = serde_json::Map::new();
                        nested.insert(
                            inner.to_owned(),
                            map_strings(inner, inner_payload, &p.key(inner), f)?,
                        );
                        Value::Object(nested)
                    }
                    None => walk(v, &p, form_of(kind, field), f)?,
                };
                out.insert(field.clone(), mapped);
            }
            Ok(Value::Object(out))
        }
        other => walk(other, path, Form::Template, f),
    }
}

/// Implements `Deserialize` and `JsonSchema` for a spec written either as a bare string or
/// as a mapping: `shell: "echo hi"` or `shell: {run: …, env: …}`.
macro_rules! string_or_map {
    ($ty:ident, $string:ident, $map:ident($inner:ty), $description:literal) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a string or a mapping")
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$ty, E> {
                        s.parse().map($ty::$string).map_err(E::custom)
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        <$inner as serde::Deserialize>::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map($ty::$map)
                    }
                }
                d.deserialize_any(V)
            }
        }

        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let inner = g.subschema_for::<$inner>();
                schemars::json_schema!({
                    "description": $description,
                    "anyOf": [{"type": "string"}, inner]
                })
            }
        }
    };
}
pub(crate) use string_or_map;
