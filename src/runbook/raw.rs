//! Serde mirrors of the leaf parts of a runbook. Their doc comments are the field reference:
//! they feed `drillbook schema` (and through it editors) and docs/runbook-format.md.
//! Composite parts (runbook, procedure, step, target, check, alert) are read key by key in
//! `validate`, and their schema is assembled in `schema`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// Recovery objectives the drills are measured against.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    /// Recovery time objective: the longest a restore may take, e.g. `1h`. A drill whose
    /// measured RTO exceeds it fails.
    pub rto: Option<Duration>,
    /// Recovery point objective: the most data, in time, a restore may lose, e.g. `24h`.
    pub rpo: Option<Duration>,
}

/// The backup policy as declared: rendered into the runbook document and verified by checks.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupPolicy {
    /// When backups are taken: a five-field cron expression in UTC, e.g. `0 0 * * *`.
    pub schedule: String,
    /// How long backups are kept.
    #[serde(default)]
    pub retention: Retention,
    /// How backups are encrypted, e.g. `AES-256 at rest (provider-managed)`.
    pub encryption: Option<String>,
    /// Where backups are stored, e.g. `separate availability zone (provider-managed)`.
    pub location: Option<String>,
    /// Who or what takes the backups: `pgbackrest` (with `stanza`, and `config` for the
    /// document to state its configured retention), `barman` (with `server`), or in words,
    /// e.g. `Neon (managed)` or `pg_basebackup via cron`.
    pub provider: Option<Provider>,
    /// With `provider: pgbackrest`: the stanza the policy is about, e.g. `main`.
    pub stanza: Option<String>,
    /// With `provider: pgbackrest` or `barman`: the tool's configuration file, from which
    /// `render` reads what it is configured to keep (pgBackRest's `repoN-retention-*`,
    /// Barman's `retention_policy`, `minimum_redundancy`, `wal_retention_policy`; nothing
    /// else, so no secret is read out). `render` never runs the tool.
    pub config: Option<String>,
    /// With `provider: barman`: the Barman server that backs the database up (its section
    /// in Barman's configuration), e.g. `shop`.
    pub server: Option<String>,
    /// Free Markdown notes for the document.
    pub notes: Option<String>,
}

/// Who takes the backups: a tool drillbook knows, or words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// pgBackRest, backing up the policy's `stanza`.
    Pgbackrest,
    /// Barman, backing up the policy's `server`.
    Barman,
    /// Anything else, as written.
    Described(String),
}

impl Provider {
    /// As written in the runbook.
    pub fn as_str(&self) -> &str {
        match self {
            Provider::Pgbackrest => "pgbackrest",
            Provider::Barman => "barman",
            Provider::Described(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Provider {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Provider, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "pgbackrest" => Provider::Pgbackrest,
            "barman" => Provider::Barman,
            _ => Provider::Described(text),
        })
    }
}

impl Serialize for Provider {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl JsonSchema for Provider {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Provider".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`pgbackrest` (with `stanza`), `barman` (with `server`), or who takes the backups in words."
        })
    }
}

/// Retention counts per backup generation.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Daily backups kept, e.g. `7`.
    pub daily: Option<u32>,
    /// Weekly backups kept, e.g. `4`.
    pub weekly: Option<u32>,
    /// Monthly backups kept.
    pub monthly: Option<u32>,
}

/// What a procedure is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProcedureKind {
    /// A rehearsal: restores into scratch resources and must never touch protected targets.
    Drill,
    /// A real recovery, run during an incident.
    Recovery,
}

impl ProcedureKind {
    /// `drill` or `recovery`, as written in runbooks.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcedureKind::Drill => "drill",
            ProcedureKind::Recovery => "recovery",
        }
    }
}

/// The type of a procedure parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Bool,
    /// Written like `90s`, `10m`, `1h30m`, `7d`.
    Duration,
    /// RFC 3339, or relative to the start of the run: `now`, `now-24h`.
    Timestamp,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::Duration => "duration",
            ParamType::Timestamp => "timestamp",
        }
    }
}

/// How a failed step is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Total attempts, including the first: 1 to 100.
    #[schemars(range(min = 1, max = 100))]
    pub attempts: u32,
    /// Wait before the second attempt; doubles after each further failure. Default `1s`,
    /// at most `24h`.
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
}

fn default_backoff() -> Duration {
    Duration::from_secs(1)
}

/// A disaster scenario for the document: what happened, and which procedure answers it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What happened, e.g. `Accidental deletion of rows`.
    pub title: String,
    /// The id of the procedure that answers it.
    pub procedure: String,
    /// Markdown notes: how to recognise it, what to decide first.
    pub notes: Option<String>,
}

/// What a target is: a PostgreSQL URL, a Neon branch, or a local backup repository.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum TargetKind {
    /// A PostgreSQL server reached by URL.
    Postgres(PostgresTarget),
    /// A Neon project's branch.
    Neon(NeonTarget),
    /// A self-hosted backup repository: base backups and a WAL archive.
    Local(LocalTarget),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresTarget {
    /// Connection URL (`postgres://…`); take it from the environment:
    /// `"{{ env.DATABASE_URL }}"`. Passwords are redacted wherever it is shown.
    pub url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NeonTarget {
    /// The Neon project id, e.g. `"{{ env.NEON_PROJECT_ID }}"`.
    pub project_id: String,
    /// Branch name or id; the project's default branch when omitted.
    pub branch: Option<String>,
    /// Database name, e.g. `neondb`.
    pub database: Option<String>,
    /// Role used to connect, e.g. `neondb_owner`.
    pub role: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalTarget {
    /// Directory holding base backups (`pg_basebackup` output).
    pub base_backup: Option<String>,
    /// Directory holding archived WAL segments.
    pub wal_archive: Option<String>,
    /// URL of the live server the backups are taken from.
    pub url: Option<String>,
}

/// When an alert fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertEvent {
    /// A drill, recovery or check failed.
    Failure,
    /// A drill, recovery or check passed.
    Success,
    /// A check reached its warning threshold.
    Warning,
    /// Something that failed last time passed this time.
    Recovered,
}

/// Where an alert goes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum AlertKind {
    Slack(SlackAlert),
    Webhook(WebhookAlert),
    Betterstack(BetterstackAlert),
    Pagerduty(PagerdutyAlert),
    Email(EmailAlert),
}

/// A Slack incoming webhook.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackAlert {
    /// The webhook URL, from the environment: `"{{ env.SLACK_WEBHOOK_URL }}"`.
    pub webhook: String,
}

/// A generic JSON webhook receiving the record summary.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookAlert {
    /// Where the JSON is POSTed.
    pub url: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: indexmap::IndexMap<String, String>,
}

/// A Better Stack heartbeat: pinged on success, `/fail` on failure.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BetterstackAlert {
    /// The heartbeat URL, from the environment.
    pub heartbeat: String,
}

/// PagerDuty Events v2: trigger on failure, resolve on recovery.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PagerdutyAlert {
    /// The integration's routing key, from the environment.
    pub routing_key: String,
    /// Events API endpoint; PagerDuty's own by default.
    pub url: Option<String>,
}

/// Email through an SMTP server (STARTTLS).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailAlert {
    /// `smtp://user:pass@host:587`, from the environment.
    pub smtp: String,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

/// An alert destination and the events it wants.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub on: Vec<AlertEvent>,
    pub repeat: Option<Duration>,
}
