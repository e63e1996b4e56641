//! Step kinds as data: the closed set of payloads a step or check can carry, and what each
//! kind declares about itself. A kind's file holds its payload type (serde and schemars) and
//! its [`Spec`]: which fields are literal or expressions, the targets it names, its outputs
//! (name and meaning), its measure, and its [`Effects`] (restores, leaves scratch resources,
//! verifies, acts at a point in time). Validation, preflight, the document, `check`
//! thresholds, metrics and the docs read these declarations; running a kind is the step
//! layer's business (`steps`).
//!
//! `each_kind!` is the one list that names every kind. `StepKind`, its tables and its
//! schema come from it here; the step layer builds its dispatch from it.

pub mod assert;
pub mod barman;
pub mod canary;
pub mod compare;
pub mod fingerprint;
pub mod freshness;
pub mod history;
pub mod http;
pub mod limits;
pub mod local;
pub mod manual;
pub mod neon;
pub mod pgbackrest;
pub mod shell;
pub mod sql;
pub mod wait;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::diagnostic::YamlPath;

/// An output a kind declares: readable by later steps as `steps.<id>.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Output {
    pub name: &'static str,
    /// One line: what it holds.
    pub meaning: &'static str,
}

/// Declares an output (for `Spec::OUTPUTS` lists).
pub const fn output(name: &'static str, meaning: &'static str) -> Output {
    Output { name, meaning }
}

/// The one output a health check is judged by: `warn`/`critical` thresholds apply to it,
/// and `check --format prometheus` exports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Measure<'a> {
    /// The output holding it (one of the kind's `OUTPUTS`, or one a payload names: a
    /// `shell` step's `measure.output`).
    pub output: &'a str,
    pub unit: Unit,
    /// Which way is worse: a threshold is crossed when the value goes past it that way.
    pub worse: Worse,
    /// The metric family it also feeds, beside the per-check gauges.
    pub metric: Option<Metric>,
}

impl<'a> Measure<'a> {
    /// A measure in seconds.
    pub const fn seconds(output: &'a str, worse: Worse, metric: Option<Metric>) -> Measure<'a> {
        Measure {
            output,
            unit: Unit::Seconds,
            worse,
            metric,
        }
    }
}

/// The unit of a measure, which decides how its thresholds are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Thresholds may be durations (`25h`) or numbers of seconds.
    Seconds,
    /// Thresholds may be sizes (`10GiB`, `500MB`) or numbers of bytes.
    Bytes,
    /// A count of things (files, backups, errors): thresholds are numbers.
    Count,
    /// A number without a unit: thresholds are numbers.
    #[default]
    Number,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Bytes => "bytes",
            Unit::Count => "count",
            Unit::Number => "number",
        }
    }
}

/// Which way a measure gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Worse {
    Higher,
    Lower,
}

/// The metric families a measure can feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// `drillbook_backup_age_seconds`: the newest backup (snapshot, base backup, archived WAL).
    BackupAge,
    /// `drillbook_restore_window_seconds`: how far back a point-in-time restore can go.
    RestoreWindow,
}

/// A measure's value in a step's outputs: a JSON number, or text holding one (`"42"`).
pub fn measure_value(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// What running a step does besides producing outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects<'a> {
    /// It restores data, and how.
    pub restores: Option<Restore>,
    /// It creates resources the run removes afterwards (and a person checks are gone).
    pub scratch: Option<Scratch>,
    /// It verifies something, and what.
    pub verifies: Option<Verifies>,
    /// It acts at a point in a target's history, checked against the restore window
    /// before the run changes anything.
    pub at: Option<PointInTime<'a>>,
}

impl Effects<'static> {
    /// Nothing beyond its outputs.
    pub const NONE: Effects<'static> = Effects {
        restores: None,
        scratch: None,
        verifies: None,
        at: None,
    };

    /// It verifies `what`, and does nothing else.
    pub const fn verifies(what: Verifies) -> Effects<'static> {
        Effects {
            verifies: Some(what),
            ..Effects::NONE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// To a point in time.
    PointInTime,
    /// Everything, to the latest state: the description says from what.
    Full(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scratch {
    /// A Neon branch or snapshot.
    NeonBranch,
    /// A PostgreSQL instance on this machine.
    LocalCluster,
    /// A directory on this machine (a base backup).
    Directory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verifies {
    /// A restored copy's data or schema.
    Data,
    /// How recent a restored copy's data is: the run's recovery point and RPO.
    RecoveryPoint,
    /// That backups exist, are recent and are kept.
    Backups,
    /// That drills pass on time (the drill history).
    Drills,
}

/// A point in a target's history a step acts at (a template, rendered at run time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointInTime<'a> {
    pub target: &'a str,
    pub at: &'a str,
}

/// A step kind's payload: decoded from the rendered YAML, described for everything that
/// reads runbooks without running them.
pub trait Spec: DeserializeOwned + JsonSchema + std::fmt::Debug + Clone + Send + Sync {
    /// What the step outputs, each readable by later steps as `steps.<id>.<name>`.
    /// Validation refuses a reference to anything else.
    const OUTPUTS: &'static [Output];
    /// The output `warn`/`critical` thresholds and metrics read, if the kind has one.
    const MEASURE: Option<Measure<'static>>;
    /// Payload fields that are not templates (`""` is a payload written as a bare string).
    /// Their text reaches the step as written.
    const LITERAL: &'static [&'static str] = &[];
    /// How to pass values instead, shown when a literal field holds template syntax.
    const LITERAL_HELP: &'static str = "pass values as environment variables: `env: {TARGET: \"{{ steps.x.y }}\"}` and use \"$TARGET\" in the command";
    /// Payload fields that are expressions (evaluated by the step, not rendered up front).
    const EXPRESSIONS: &'static [&'static str] = &[];
    /// Payload fields that hold another step kind (`wait.poll: {http: …}`), whose own
    /// fields follow that kind's rules.
    const NESTED: &'static [&'static str] = &[];
    /// Kinds that always destroy or overwrite data.
    const DESTRUCTIVE: bool = false;
    /// The target kinds (`postgres`, `neon`, `local`) the step can act on; empty for any.
    const TARGET_KINDS: &'static [&'static str] = &[];
    /// What the kind needs from the machine it runs on beyond network access (server
    /// binaries, backup files), in words; None when a network connection is enough. A
    /// hosted CI runner has none of it.
    const HOST_NEEDS: Option<&'static str> = None;

    /// What running this step does besides its outputs (it may depend on the payload: a
    /// branch kept with `keep: true` leaves nothing to clean up).
    fn effects(&self) -> Effects<'_>;

    /// The output holding a health check's sub-results, if the kind has them: a list of
    /// `{name, status, detail}` (`status` is `OK`, `WARNING`, `CRITICAL`, `UNKNOWN` or a
    /// tool's `FAILED`), each shown and exported beside the check.
    const PARTS: Option<&'static str> = None;

    /// The outputs a payload adds, in words (`each name in capture`), for the docs; the
    /// names come from [`Spec::payload_outputs`].
    const PAYLOAD_OUTPUTS: Option<&'static str> = None;

    /// Outputs the payload names itself (`http.capture`), beside [`Spec::OUTPUTS`].
    fn payload_outputs(&self) -> Vec<&str> {
        Vec::new()
    }

    /// This step's measure: the kind's [`Spec::MEASURE`], unless the payload declares one
    /// (`shell`'s `measure:`).
    fn measure(&self) -> Option<Measure<'_>> {
        Self::MEASURE
    }

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

    /// The targets drillbook itself connects to when the step runs (the preflight connects
    /// to them first). By default every target named; a kind that only reads a target's
    /// name or hands its URL to a command says so.
    fn connects(&self) -> Vec<&str> {
        self.targets()
    }

    /// Checks that serde cannot express (e.g. exactly one of two fields), at validation.
    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }

    /// One line for `plan`: what the step will do.
    fn summary(&self) -> String;
}

/// A payload that serde accepted but that makes no sense, and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The payload field to point at; None for the payload as a whole.
    pub field: Option<&'static str>,
    pub message: String,
}

impl Invalid {
    /// A problem with one field.
    pub fn at(field: &'static str, message: impl Into<String>) -> Invalid {
        Invalid {
            field: Some(field),
            message: message.into(),
        }
    }

    /// A problem with the payload as a whole (e.g. a field is missing).
    pub fn whole(message: impl Into<String>) -> Invalid {
        Invalid {
            field: None,
            message: message.into(),
        }
    }
}

/// What a kind declares, by its name: for the docs and for readers that have no payload.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Info {
    pub name: &'static str,
    pub outputs: &'static [Output],
    /// The outputs a payload adds, in words.
    pub payload_outputs: Option<&'static str>,
    pub measure: Option<Measure<'static>>,
    /// The output holding a check's sub-results.
    #[serde(skip)]
    pub parts: Option<&'static str>,
    #[serde(skip)]
    pub literal: &'static [&'static str],
    #[serde(skip)]
    pub literal_help: &'static str,
    #[serde(skip)]
    pub expressions: &'static [&'static str],
    #[serde(skip)]
    pub nested: &'static [&'static str],
    pub destructive: bool,
    pub target_kinds: &'static [&'static str],
    /// What it needs from the machine it runs on, beyond network access.
    pub host_needs: Option<&'static str>,
}

impl Info {
    const fn of<S: Spec>(name: &'static str) -> Info {
        Info {
            name,
            outputs: S::OUTPUTS,
            payload_outputs: S::PAYLOAD_OUTPUTS,
            measure: S::MEASURE,
            parts: S::PARTS,
            literal: S::LITERAL,
            literal_help: S::LITERAL_HELP,
            expressions: S::EXPRESSIONS,
            nested: S::NESTED,
            destructive: S::DESTRUCTIVE,
            target_kinds: S::TARGET_KINDS,
            host_needs: S::HOST_NEEDS,
        }
    }
}

/// In [`Spec::payload_outputs`]: the payload produces outputs known only at run time (a
/// query's columns), so any name is accepted.
pub const ANY_OUTPUT: &str = "*";

/// True when a `db:` field is written as a target name rather than a connection string.
pub fn is_target_name(db: &str) -> bool {
    !db.is_empty()
        && db
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The target a `db:` field names, for validation (None for URLs and templates).
pub fn db_target(db: &str) -> Option<&str> {
    (is_target_name(db) && !crate::template::is_template(db)).then_some(db)
}

/// The one list of step kinds: `Variant("yaml key") => payload type`. Adding a kind is a
/// line here, its payload file in `kind/`, and its `steps::Run` in `steps/`.
macro_rules! each_kind {
    ($then:ident) => {
        $then! {
            Shell("shell") => shell::Shell,
            Http("http") => http::Http,
            Manual("manual") => manual::Manual,
            Wait("wait") => wait::Wait,
            Assert("assert") => assert::Assert,
            Sql("sql") => sql::Sql,
            Freshness("freshness") => freshness::Freshness,
            Compare("compare") => compare::Compare,
            Fingerprint("fingerprint") => fingerprint::Fingerprint,
            LocalCluster("local.cluster") => local::LocalCluster,
            LocalBaseBackup("local.base_backup") => local::LocalBaseBackup,
            LocalRestorePoint("local.restore_point") => local::LocalRestorePoint,
            LocalRestore("local.restore") => local::LocalRestore,
            LocalStart("local.start") => local::LocalStart,
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
            PgbackrestRestore("pgbackrest.restore") => pgbackrest::PgbackrestRestore,
            PgbackrestStanza("pgbackrest.stanza") => pgbackrest::PgbackrestStanza,
            PgbackrestBackupAge("pgbackrest.backup_age") => pgbackrest::PgbackrestBackupAge,
            PgbackrestRetention("pgbackrest.retention") => pgbackrest::PgbackrestRetention,
            PgbackrestArchive("pgbackrest.archive") => pgbackrest::PgbackrestArchive,
            PgbackrestEncryption("pgbackrest.encryption") => pgbackrest::PgbackrestEncryption,
            PgbackrestVerify("pgbackrest.verify") => pgbackrest::PgbackrestVerify,
            HistoryLastPass("history.last_pass") => history::HistoryLastPass,
            HistoryOverdue("history.overdue") => history::HistoryOverdue,
            CanaryWrite("canary.write") => canary::CanaryWrite,
            CanaryVerify("canary.verify") => canary::CanaryVerify,
            BarmanRecover("barman.recover") => barman::BarmanRecover,
            BarmanCheck("barman.check") => barman::BarmanCheck,
            BarmanBackupAge("barman.backup_age") => barman::BarmanBackupAge,
        }
    };
}
pub(crate) use each_kind;

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

            /// What every kind declares, in the order of [`StepKind::NAMES`].
            pub const INFO: &'static [Info] = &[$(Info::of::<$spec>($name)),+];

            pub fn name(&self) -> &'static str {
                match self {
                    $(StepKind::$variant(_) => $name),+
                }
            }

            /// The declarations of the kind named `name`.
            pub fn info(name: &str) -> Option<&'static Info> {
                StepKind::INFO.iter().find(|i| i.name == name)
            }

            /// The declarations of this step's kind.
            pub fn declared(&self) -> &'static Info {
                match self {
                    $(StepKind::$variant(_) => {
                        const INFO: Info = Info::of::<$spec>($name);
                        &INFO
                    }),+
                }
            }

            pub fn effects(&self) -> Effects<'_> {
                match self {
                    $(StepKind::$variant(s) => s.effects()),+
                }
            }

            /// Every output name this step may have: the kind's and the payload's own.
            pub fn outputs(&self) -> Vec<&str> {
                let (declared, own) = match self {
                    $(StepKind::$variant(s) => (<$spec as Spec>::OUTPUTS, s.payload_outputs())),+
                };
                declared.iter().map(|o| o.name).chain(own).collect()
            }

            /// The measure `warn`/`critical` compare: the kind's, or the one the payload
            /// declares.
            pub fn measure(&self) -> Option<Measure<'_>> {
                match self {
                    $(StepKind::$variant(s) => s.measure()),+
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

            pub fn connects(&self) -> Vec<&str> {
                match self {
                    $(StepKind::$variant(s) => s.connects()),+
                }
            }

            pub fn target_kinds(&self) -> &'static [&'static str] {
                self.declared().target_kinds
            }

            pub fn check(&self) -> Result<(), Invalid> {
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

each_kind!(step_kinds);

impl StepKind {
    /// A validation: it verifies and changes nothing (no restore, no scratch resource, no
    /// write). A drill runs every validation even after one failed, so its record shows each
    /// one's outcome; the other steps stop at the first failure.
    pub fn is_validation(&self) -> bool {
        let e = self.effects();
        e.verifies.is_some()
            && e.restores.is_none()
            && e.scratch.is_none()
            && !matches!(self, StepKind::Sql(s) if s.write)
    }
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
    match StepKind::info(kind) {
        Some(i) if i.literal.contains(&field) => Form::Literal,
        Some(i) if i.expressions.contains(&field) => Form::Expression,
        _ => Form::Template,
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
    path: &YamlPath,
    f: &mut dyn FnMut(&YamlPath, &str, Form) -> Result<serde_json::Value, E>,
) -> Result<serde_json::Value, E> {
    use serde_json::Value;
    fn walk<E>(
        v: &Value,
        path: &YamlPath,
        form: Form,
        f: &mut dyn FnMut(&YamlPath, &str, Form) -> Result<Value, E>,
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
                let nests =
                    StepKind::info(kind).is_some_and(|i| i.nested.contains(&field.as_str()));
                let mapped = match nested_kind(v).filter(|_| nests) {
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

/// Implements `Deserialize` for an enum a runbook writes in one of several forms (a boolean,
/// a number, text, a list, a mapping), choosing the variant by the form: an error inside a
/// mapping or a list keeps its place, and a value of no accepted form is refused with the
/// forms listed (`$expecting`), never with serde's "did not match any variant".
macro_rules! one_of_forms {
    ($ty:ident, $expecting:literal, { $($form:ident => $variant:ident($inner:ty)),+ $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    $($crate::kind::form_visit!($form, $ty, $variant, $inner);)+
                }
                d.deserialize_any(V)
            }
        }
    };
}
pub(crate) use one_of_forms;

/// One visitor method of [`one_of_forms!`].
macro_rules! form_visit {
    (bool, $ty:ident, $variant:ident, $inner:ty) => {
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<$ty, E> {
            <$inner as serde::Deserialize>::deserialize(serde::de::value::BoolDeserializer::new(v))
                .map($ty::$variant)
        }
    };
    (int, $ty:ident, $variant:ident, $inner:ty) => {
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$ty, E> {
            <$inner as serde::Deserialize>::deserialize(serde::de::value::U64Deserializer::new(v))
                .map($ty::$variant)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$ty, E> {
            <$inner as serde::Deserialize>::deserialize(serde::de::value::I64Deserializer::new(v))
                .map($ty::$variant)
        }
    };
    (number, $ty:ident, $variant:ident, $inner:ty) => {
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<$ty, E> {
            <$inner as serde::Deserialize>::deserialize(serde::de::value::F64Deserializer::new(v))
                .map($ty::$variant)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$ty, E> {
            self.visit_f64(v as f64)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$ty, E> {
            self.visit_f64(v as f64)
        }
    };
    (str, $ty:ident, $variant:ident, $inner:ty) => {
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
            <$inner as serde::Deserialize>::deserialize(serde::de::value::StrDeserializer::new(v))
                .map($ty::$variant)
        }
    };
    (seq, $ty:ident, $variant:ident, $inner:ty) => {
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<$ty, A::Error> {
            <$inner as serde::Deserialize>::deserialize(
                serde::de::value::SeqAccessDeserializer::new(seq),
            )
            .map($ty::$variant)
        }
    };
    (map, $ty:ident, $variant:ident, $inner:ty) => {
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
            <$inner as serde::Deserialize>::deserialize(
                serde::de::value::MapAccessDeserializer::new(map),
            )
            .map($ty::$variant)
        }
    };
}
pub(crate) use form_visit;
