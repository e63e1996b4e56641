//! `pgbackrest info --output=json` as typed values (pgBackRest 2.x: a list of stanzas), read
//! leniently: fields this code does not use are ignored, and absent ones default.

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;

use crate::steps::StepError;

#[derive(Debug, Clone, Deserialize)]
pub struct Stanza {
    pub name: String,
    #[serde(default)]
    pub cipher: Option<String>,
    pub status: Status,
    #[serde(default)]
    pub db: Vec<Db>,
    #[serde(default)]
    pub repo: Vec<Repo>,
    #[serde(default)]
    pub archive: Vec<Archive>,
    /// Oldest first.
    #[serde(default)]
    pub backup: Vec<Backup>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub code: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub lock: Option<Lock>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Lock {
    #[serde(default)]
    pub backup: Option<Held>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Held {
    #[serde(default)]
    pub held: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Db {
    pub id: u32,
    #[serde(rename = "system-id", default)]
    pub system_id: u64,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repo {
    pub key: u32,
    #[serde(default)]
    pub cipher: String,
    pub status: Status,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Archive {
    pub id: String,
    pub min: Option<String>,
    pub max: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Backup {
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub reference: Option<Vec<String>>,
    #[serde(default)]
    pub error: Option<bool>,
    pub timestamp: Span<i64>,
    #[serde(default)]
    pub archive: Option<Span<Option<String>>>,
    #[serde(default)]
    pub lsn: Option<Span<Option<String>>>,
    #[serde(default)]
    pub info: Option<Sizes>,
    #[serde(default)]
    pub backrest: Option<Backrest>,
    #[serde(default)]
    pub database: Option<BackupDb>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Span<T> {
    pub start: T,
    pub stop: T,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Sizes {
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub repository: Option<RepoSizes>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepoSizes {
    #[serde(default)]
    pub size: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Backrest {
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BackupDb {
    #[serde(rename = "repo-key", default)]
    pub repo_key: u32,
}

impl Backup {
    pub fn failed(&self) -> bool {
        self.error == Some(true)
    }

    pub fn started(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.timestamp.start, 0)
            .single()
            .unwrap_or_default()
    }

    pub fn stopped(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.timestamp.stop, 0)
            .single()
            .unwrap_or_default()
    }

    pub fn lsn_stop(&self) -> Option<&str> {
        self.lsn.as_ref()?.stop.as_deref()
    }
}

/// pgBackRest's meaning of a stanza or repository status code.
pub fn status_meaning(code: i64) -> &'static str {
    match code {
        0 => "ok",
        1 => "missing stanza path: the stanza does not exist in the repository (stanza-create not run, a wrong --stanza or repo path)",
        2 => "no valid backups: the stanza exists but holds no backup that can be restored",
        3 => "missing stanza data: the repository's info files are missing",
        4 => "different across repos: the repositories disagree about the stanza",
        5 => "database mismatch across repos: the repositories hold different databases",
        6 => "requested backup not found",
        _ => "other: the repository could not be read",
    }
}

impl Stanza {
    /// The newest archived WAL segment over the archives.
    pub fn archive_max(&self) -> Option<&str> {
        self.archive.iter().filter_map(|a| a.max.as_deref()).max()
    }

    pub fn archive_min(&self) -> Option<&str> {
        self.archive.iter().filter_map(|a| a.min.as_deref()).min()
    }

    /// Why the repository cannot be read, in plain words, when it cannot: a status other
    /// than 0 or 2 on the stanza, with the repositories' own messages.
    pub fn unreadable(&self) -> Option<String> {
        if matches!(self.status.code, 0 | 2) {
            return None;
        }
        let mut why = format!(
            "stanza `{}`: status {} ({})",
            self.name,
            self.status.code,
            status_meaning(self.status.code)
        );
        for r in self.repo.iter().filter(|r| r.status.code != 0) {
            let message = super::plain(&r.status.message);
            let encrypted = r.cipher != "none" && !r.cipher.is_empty();
            if encrypted && message.contains("does not decrypt") {
                why.push_str(&format!(
                    "; repo{}: its files do not decrypt: the cipher pass is wrong or missing for this {} repository (set repo{}-cipher-pass in the config or PGBACKREST_REPO{}_CIPHER_PASS)",
                    r.key, r.cipher, r.key, r.key
                ));
            } else {
                why.push_str(&format!("; repo{}: {message}", r.key));
            }
        }
        Some(why)
    }
}

/// The stanza named `name` from `info`'s JSON.
pub fn parse(json: &str, name: &str) -> Result<Stanza, StepError> {
    // pgBackRest writes a message's raw bytes into its JSON strings (a file that did not
    // decrypt: control characters), which JSON forbids; between tokens a space is the same
    let json: String = json
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let all: Vec<Stanza> = serde_json::from_str(&json).map_err(|e| {
        StepError::unavailable(format!(
            "pgbackrest info printed JSON this version of drillbook cannot read: {e}"
        ))
    })?;
    all.into_iter().find(|s| s.name == name).ok_or_else(|| {
        StepError::failed(format!(
            "pgbackrest info knows no stanza `{name}`: check the stanza name and the config"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_pgbackrest_2_45_prints() {
        let json = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000008","min":"000000010000000000000001"}],
          "backup":[{"archive":{"start":"000000010000000000000003","stop":"000000010000000000000003"},"backrest":{"format":5,"version":"2.45"},
          "database":{"id":1,"repo-key":1},"error":false,"info":{"delta":30841233,"repository":{"delta":6103616,"size":6103616},"size":30841233},
          "label":"20261204-223638F","lsn":{"start":"0/3000028","stop":"0/3000100"},"prior":null,"reference":null,
          "timestamp":{"start":1796423798,"stop":1796423802},"type":"full"}],
          "cipher":"aes-256-cbc","db":[{"id":1,"repo-key":1,"system-id":7715496214958451958,"version":"15"}],"name":"main",
          "repo":[{"cipher":"aes-256-cbc","key":1,"status":{"code":0,"message":"ok"}}],
          "status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;
        let s = parse(json, "main").expect("parse");
        assert_eq!(s.db[0].system_id, 7715496214958451958);
        assert_eq!(s.backup[0].lsn_stop(), Some("0/3000100"));
        assert_eq!(s.archive_max(), Some("000000010000000000000008"));
        assert!(s.unreadable().is_none());
        assert!(parse(json, "other").is_err());
    }
}
