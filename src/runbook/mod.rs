//! Runbooks: the YAML format (version 1), its loading and validation, and the resolved model
//! the engine runs. `raw` holds the serde mirrors of leaf parts (with the doc comments that
//! feed `drillbook schema`), `load` parses YAML with positions, `validate` turns a document
//! into a [`Runbook`] or a list of every problem found.

mod decode;
pub mod load;
pub mod raw;
mod refs;
pub mod schema;
mod validate;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Serialize;

use crate::cron::Cron;
use crate::diagnostic::Diagnostic;
use crate::duration::Duration;
use crate::kind::StepKind;

pub use load::Document;
pub use raw::{
    Alert, AlertEvent, BackupPolicy, Objectives, ParamType, ProcedureKind, Scenario, TargetKind,
};
pub use validate::{load_file, load_str, without_bom, LoadError};

/// A validated runbook: ids checked, durations and schedules parsed, templates compiled and
/// their references resolved. The engine accepts only this type.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub path: String,
    /// SHA-256 of the source bytes, hex.
    pub sha256: String,
    pub name: String,
    pub title: String,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub objectives: Objectives,
    pub targets: IndexMap<String, Target>,
    pub backup_policy: Option<BackupPolicy>,
    /// Environment variables whose values are secrets besides the secret-looking names
    /// ([`crate::redact::is_secret_name`]).
    pub secrets: Vec<String>,
    pub checks: Vec<Check>,
    pub procedures: IndexMap<String, Procedure>,
    pub scenarios: Vec<Scenario>,
    pub alerts: Vec<Alert>,
    /// Warnings found while validating (the runbook is still usable).
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
    /// Destructive steps are refused against it in drills (in recoveries they need approval,
    /// as every destructive step does).
    pub protected: bool,
    pub description: Option<String>,
    /// Environment variables its templates read.
    #[serde(skip)]
    pub env: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Procedure {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub kind: ProcedureKind,
    pub schedule: Option<Cron>,
    pub params: IndexMap<String, Param>,
    pub steps: Vec<Step>,
    pub cleanup: Vec<Step>,
}

impl Runbook {
    /// Environment variables a procedure needs: those its steps read, and those of the
    /// targets its steps use (a run without one cannot start).
    pub fn needed_env(&self, procedure: &Procedure) -> BTreeSet<String> {
        let mut names = procedure.env_vars();
        for step in procedure.steps.iter().chain(&procedure.cleanup) {
            let targets: Vec<&Target> = step
                .kind
                .targets()
                .into_iter()
                .filter_map(|t| self.targets.get(t))
                .collect();
            for t in &targets {
                names.extend(t.env.iter().cloned());
            }
            // Neon's API needs a key: for a kind that acts on neon targets only (its target
            // may be a template), and for a neon target named in `db:`, reached through the
            // API too
            let neon_target = targets
                .iter()
                .any(|t| matches!(t.kind, TargetKind::Neon(_)));
            if neon_target || step.kind.target_kinds() == ["neon"] {
                names.insert("NEON_API_KEY".into());
            }
        }
        names
    }
}

impl Procedure {
    /// Environment variables the procedure's own templates read (see
    /// [`Runbook::needed_env`] for all it needs).
    pub fn env_vars(&self) -> BTreeSet<String> {
        self.steps
            .iter()
            .chain(&self.cleanup)
            .flat_map(|s| s.env.iter().cloned())
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Param {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub default: Option<ParamValue>,
    pub description: Option<String>,
    /// Secret values are redacted in output and records.
    pub secret: bool,
}

/// A typed parameter value. Timestamps stay relative (`now-24h`) until a run resolves them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    String(String),
    Int(i64),
    Bool(bool),
    Duration(Duration),
    #[serde(serialize_with = "crate::runbook::ser_display")]
    Timestamp(crate::timestamp::TimeSpec),
}

pub(crate) fn ser_display<T: std::fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl ParamValue {
    /// Parses text (from the runbook or `--param`) as a value of `ty`.
    pub fn parse(ty: ParamType, text: &str) -> Result<ParamValue, String> {
        match ty {
            ParamType::String => Ok(ParamValue::String(text.to_owned())),
            ParamType::Int => text
                .trim()
                .parse()
                .map(ParamValue::Int)
                .map_err(|_| format!("`{text}` is not an integer")),
            ParamType::Bool => match text.trim() {
                "true" | "yes" | "1" => Ok(ParamValue::Bool(true)),
                "false" | "no" | "0" => Ok(ParamValue::Bool(false)),
                _ => Err(format!("`{text}` is not a boolean (true or false)")),
            },
            ParamType::Duration => text
                .parse()
                .map(ParamValue::Duration)
                .map_err(|e: crate::duration::DurationError| e.to_string()),
            ParamType::Timestamp => text
                .parse()
                .map(ParamValue::Timestamp)
                .map_err(|e: crate::timestamp::TimestampError| e.to_string()),
        }
    }

    /// The value as templates see it: timestamps resolved against the run's start, RFC 3339.
    pub fn resolve(&self, now: DateTime<Utc>) -> serde_json::Value {
        match self {
            ParamValue::String(s) => s.clone().into(),
            ParamValue::Int(n) => (*n).into(),
            ParamValue::Bool(b) => (*b).into(),
            ParamValue::Duration(d) => d.to_string().into(),
            ParamValue::Timestamp(t) => crate::timestamp::rfc3339_precise(t.resolve(now)).into(),
        }
    }
}

/// Which end of the RTO clock a step marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RtoMark {
    Start,
    End,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// The step's kind, decoded from the unrendered payload (used by `plan` and checks).
    pub kind: StepKind,
    /// The payload as written; strings in it are templates rendered just before the step runs.
    pub payload: serde_json::Value,
    pub when: Option<String>,
    pub timeout: Option<Duration>,
    pub retries: Option<raw::Retries>,
    pub continue_on_error: bool,
    pub rto: Option<RtoMark>,
    pub destructive: bool,
    /// Ids of the steps whose outputs this step's templates read.
    pub needs: BTreeSet<String>,
    /// Environment variables its templates read.
    pub env: BTreeSet<String>,
}

impl Step {
    pub fn display_title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.id)
    }
}

/// A health check for `drillbook check`.
#[derive(Debug, Clone)]
pub struct Check {
    pub id: String,
    pub title: Option<String>,
    pub kind: StepKind,
    pub payload: serde_json::Value,
    /// WARNING when the kind's measure crosses it.
    pub warn: Option<Threshold>,
    /// CRITICAL when the kind's measure crosses it.
    pub critical: Option<Threshold>,
    pub timeout: Option<Duration>,
}

/// A `warn` or `critical` threshold on a check's measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As the runbook writes it (`25h`, `3`).
    pub written: String,
    /// In the measure's unit.
    pub value: f64,
}

impl Threshold {
    /// Reads a threshold in `unit`: a number (plain or quoted) in any unit; for seconds
    /// also a duration (`25h`), for bytes also a size (`10GiB`, `500MB`).
    pub fn parse(value: &serde_json::Value, unit: crate::kind::Unit) -> Result<Threshold, String> {
        use crate::kind::Unit;
        let parsed = match value {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => match unit {
                Unit::Seconds => s.parse::<Duration>().ok().map(|d| d.0.as_secs_f64()),
                Unit::Bytes => parse_size(s),
                Unit::Count | Unit::Number => None,
            }
            .or_else(|| s.trim().parse().ok()),
            _ => None,
        };
        let written = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match parsed {
            Some(v) if v.is_finite() => Ok(Threshold { written, value: v }),
            _ => Err(match unit {
                Unit::Seconds => {
                    format!("`{written}` is not a duration (`25h`, `30m`) or a number of seconds")
                }
                Unit::Bytes => {
                    format!("`{written}` is not a size (`10GiB`, `500MB`) or a number of bytes")
                }
                Unit::Count | Unit::Number => format!("`{written}` is not a number"),
            }),
        }
    }
}

/// A size in bytes: a number and a unit, `B`, `kB`/`MB`/`GB`/`TB` (powers of 1000) or
/// `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024), a space between them allowed.
pub fn parse_size(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * factor)
}

impl Runbook {
    pub fn procedure(&self, id: &str) -> Option<&Procedure> {
        self.procedures.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Unit;
    use serde_json::json;

    #[test]
    fn thresholds_read_in_the_measure_unit() {
        let v = |value, unit| Threshold::parse(&value, unit).map(|t| t.value);
        assert_eq!(v(json!("25h"), Unit::Seconds), Ok(90_000.0));
        assert_eq!(v(json!(30), Unit::Seconds), Ok(30.0));
        assert_eq!(
            v(json!("2GiB"), Unit::Bytes),
            Ok(2.0 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(v(json!("500 MB"), Unit::Bytes), Ok(5e8));
        assert_eq!(v(json!("3"), Unit::Count), Ok(3.0));
        assert_eq!(v(json!(0.5), Unit::Number), Ok(0.5));
        assert!(v(json!("25h"), Unit::Count)
            .unwrap_err()
            .contains("is not a number"));
        assert!(v(json!("10 parsecs"), Unit::Bytes)
            .unwrap_err()
            .contains("not a size"));
    }
}
