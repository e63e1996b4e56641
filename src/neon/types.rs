//! Neon API v2 objects, as far as drillbook reads them. Every field is optional or defaulted
//! and unknown fields are ignored: Neon adds fields often and documents some enums only in
//! prose, so an unknown value is kept as text ([`Status::Other`]) rather than failing a drill.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub region_id: String,
    pub platform_id: String,
    pub proxy_host: String,
    pub pg_version: Option<i64>,
    /// The restore window (point-in-time history), shared by every branch.
    pub history_retention_seconds: Option<i64>,
    pub created_at: Option<String>,
    pub owner: Option<ProjectOwner>,
    pub store_passwords: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ProjectOwner {
    pub branches_limit: Option<i64>,
    pub subscription_type: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Branch {
    pub id: String,
    pub project_id: String,
    pub parent_id: Option<String>,
    pub parent_lsn: Option<String>,
    pub parent_timestamp: Option<String>,
    pub name: String,
    /// `init`, `resetting`, `ready`, `archived`, … (prose-only in the spec).
    pub current_state: Option<String>,
    pub pending_state: Option<String>,
    pub default: bool,
    pub protected: bool,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    pub last_reset_at: Option<String>,
    pub restore_status: Option<String>,
    pub restored_from: Option<String>,
    pub restored_as: Option<String>,
    pub logical_size: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Endpoint {
    pub id: String,
    pub host: String,
    pub branch_id: String,
    /// `read_write` or `read_only`.
    #[serde(rename = "type")]
    pub kind: String,
    pub current_state: Option<String>,
}

/// An operation's status. Neon's own SDK treats `finished` and `skipped` as success and
/// `failed`, `error`, `cancelled` as failure; anything else is still running.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Status {
    #[default]
    Scheduling,
    Running,
    Finished,
    Skipped,
    Failed,
    Error,
    Cancelling,
    Cancelled,
    Other(String),
}

impl Status {
    pub fn is_done(&self) -> bool {
        matches!(self, Status::Finished | Status::Skipped)
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, Status::Failed | Status::Error | Status::Cancelled)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Status::Scheduling => "scheduling",
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Error => "error",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
            Status::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Status, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "scheduling" => Status::Scheduling,
            "running" => Status::Running,
            "finished" => Status::Finished,
            "skipped" => Status::Skipped,
            "failed" => Status::Failed,
            "error" => Status::Error,
            "cancelling" => Status::Cancelling,
            "cancelled" => Status::Cancelled,
            _ => Status::Other(s),
        })
    }
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Operation {
    pub id: String,
    pub branch_id: Option<String>,
    pub endpoint_id: Option<String>,
    /// e.g. `create_branch`, `start_compute`; unknown actions are kept as written.
    pub action: String,
    pub status: Status,
    pub error: Option<String>,
    pub total_duration_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub lsn: Option<String>,
    pub timestamp: Option<String>,
    pub source_branch_id: Option<String>,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    /// true = taken on demand; false = taken by a backup schedule.
    pub manual: Option<bool>,
    pub full_size: Option<i64>,
}

/// One entry of a branch's snapshot schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ScheduleItem {
    /// `daily`, `weekly` or `monthly` (what the API accepts).
    pub frequency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<i64>,
    /// Absent = kept forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_seconds: Option<i64>,
}

/// `{connection_uri, connection_parameters}` in a create-branch response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnectionUri {
    pub connection_uri: String,
}

/// The body of a branch-creating or -changing response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BranchResponse {
    pub branch: Branch,
    pub endpoints: Vec<Endpoint>,
    pub operations: Vec<Operation>,
    pub connection_uris: Vec<ConnectionUri>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct OperationsResponse {
    pub operations: Vec<Operation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_values_are_tolerated() {
        let op: Operation = serde_json::from_str(
            r#"{"id":"x","action":"brand_new_action","status":"paused_by_ai","failures_count":0,"new":1}"#,
        )
        .expect("lenient");
        assert_eq!(op.status, Status::Other("paused_by_ai".into()));
        assert!(!op.status.is_done() && !op.status.is_failure());
        let b: Branch = serde_json::from_str(
            r#"{"id":"br-a","name":"main","default":true,"current_state":"thawing","recovery":{}}"#,
        )
        .expect("lenient");
        assert!(b.default && b.current_state.as_deref() == Some("thawing"));
    }
}
