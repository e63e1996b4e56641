//! The pgBackRest checks. Each reads the stanza from the run's one `pgbackrest info`
//! (shared by every check of a check run); `archive` also lists the repository's newest WAL
//! directory, and `verify` runs `pgbackrest verify`, judged by its report.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};

use super::info::{status_meaning, Stanza};
use super::{account, plain, segment_number, Tool};
use crate::kind::pgbackrest::{
    BackupType, PgbackrestArchive, PgbackrestBackupAge, PgbackrestEncryption, PgbackrestRetention,
    PgbackrestStanza, PgbackrestVerify,
};
use crate::record::Outputs;
use crate::steps::{db, Run, StepCx, StepError};
use crate::timestamp::rfc3339;

fn tool<'a>(stanza: &'a str, config: Option<&'a str>, repo: Option<u32>) -> Tool<'a> {
    Tool {
        config,
        stanza,
        repo,
    }
}

fn seconds_since(t: DateTime<Utc>) -> u64 {
    u64::try_from((Utc::now() - t).num_seconds()).unwrap_or(0)
}

fn fail(message: String, out: Outputs) -> StepError {
    StepError::failed(message).with_outputs(out)
}

/// A stanza that cannot be read fails every check that reads it, with pgBackRest's reason.
fn readable(s: &Stanza) -> Result<(), StepError> {
    match s.unreadable() {
        Some(why) => Err(StepError::failed(why)),
        None => Ok(()),
    }
}

impl Run for PgbackrestStanza {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let s = tool(&self.stanza, self.config.as_deref(), self.repo)
            .info(cx)
            .await?;
        let mut out = Outputs::new();
        out.insert("status_code".into(), s.status.code.into());
        out.insert("status_message".into(), s.status.message.clone().into());
        let repos: Vec<String> = s
            .repo
            .iter()
            .map(|r| {
                format!(
                    "repo{}: {} {}",
                    r.key,
                    r.status.code,
                    plain(&r.status.message)
                )
            })
            .collect();
        out.insert("repo_status".into(), repos.join("; ").into());
        out.insert("backups".into(), s.backup.len().into());
        let held = s
            .status
            .lock
            .as_ref()
            .and_then(|l| l.backup.as_ref())
            .is_some_and(|b| b.held);
        out.insert("lock_held".into(), held.into());
        if s.status.code != 0 {
            let why = s.unreadable().unwrap_or_else(|| {
                format!(
                    "stanza `{}`: status {} ({})",
                    s.name,
                    s.status.code,
                    status_meaning(s.status.code)
                )
            });
            return Err(fail(why, out));
        }
        if let Some(r) = s.repo.iter().find(|r| r.status.code != 0) {
            return Err(fail(
                format!(
                    "repo{} of stanza `{}`: status {} ({}): {}",
                    r.key,
                    s.name,
                    r.status.code,
                    status_meaning(r.status.code),
                    plain(&r.status.message)
                ),
                out,
            ));
        }
        if held {
            let since = lock_age(self.config.as_deref(), &self.stanza);
            if let Some(age) = since {
                out.insert("lock_held_seconds".into(), age.into());
            }
            if let (Some(max), Some(age)) = (self.lock_max, since) {
                if age > max.0.as_secs() {
                    return Err(fail(
                        format!(
                            "a backup or expire has held stanza `{}`'s lock for {} (longer than lock_max {max}): it may hang",
                            s.name,
                            crate::duration::Duration::from_secs(age)
                        ),
                        out,
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// How long the stanza's backup lock file has existed (pgBackRest removes it on release):
/// in `lock-path` from the config, else `PGBACKREST_LOCK_PATH`, else `/tmp/pgbackrest`.
fn lock_age(config: Option<&str>, stanza: &str) -> Option<u64> {
    let from_config = config
        .and_then(|c| std::fs::read_to_string(c).ok())
        .and_then(|text| {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("lock-path"))
                .filter_map(|r| r.trim_start().strip_prefix('='))
                .map(|v| v.trim().to_owned())
                .next_back()
        });
    let dir = from_config
        .or_else(|| std::env::var("PGBACKREST_LOCK_PATH").ok())
        .unwrap_or_else(|| "/tmp/pgbackrest".into());
    let file = PathBuf::from(dir).join(format!("{stanza}-backup.lock"));
    let modified = std::fs::metadata(file).ok()?.modified().ok()?;
    Some(modified.elapsed().unwrap_or_default().as_secs())
}

impl Run for PgbackrestBackupAge {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let s = tool(&self.stanza, self.config.as_deref(), self.repo)
            .info(cx)
            .await?;
        readable(&s)?;
        let wanted = self.backup_type;
        let of_type: Vec<_> = s
            .backup
            .iter()
            .filter(|b| !b.failed())
            .filter(|b| wanted == BackupType::Any || b.kind == wanted.as_str())
            .collect();
        let mut out = Outputs::new();
        out.insert("backups".into(), of_type.len().into());
        let Some(newest) = of_type.iter().max_by_key(|b| b.timestamp.stop) else {
            return Err(fail(
                format!(
                    "stanza `{}` has no {} backup that succeeded",
                    s.name,
                    wanted.as_str()
                ),
                out,
            ));
        };
        let age = seconds_since(newest.stopped());
        out.insert("label".into(), newest.label.clone().into());
        out.insert("type".into(), newest.kind.clone().into());
        out.insert("finished_at".into(), rfc3339(newest.stopped()).into());
        out.insert("age_seconds".into(), age.into());
        if let Some(max) = self.max_age {
            if age > max.0.as_secs() {
                return Err(fail(
                    format!(
                        "the newest {} backup of stanza `{}`, {}, finished {} ago (at {}), longer than {max}",
                        wanted.as_str(),
                        s.name,
                        newest.label,
                        crate::duration::Duration::from_secs(age),
                        rfc3339(newest.stopped())
                    ),
                    out,
                ));
            }
        }
        Ok(out)
    }
}

impl Run for PgbackrestRetention {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let s = tool(&self.stanza, self.config.as_deref(), self.repo)
            .info(cx)
            .await?;
        readable(&s)?;
        let policy = cx
            .runbook
            .backup_policy
            .as_ref()
            .map(|p| p.retention.clone())
            .unwrap_or_default();
        let days = self.days.or(policy.daily).unwrap_or(7).max(1);
        let min_days = self.min_days.unwrap_or(days);
        let min_window = self
            .min_window
            .map_or(u64::from(days) * 86_400, |w| w.0.as_secs());
        let min_full = self.min_full.or(policy.weekly).unwrap_or(4);
        let usable: Vec<_> = s.backup.iter().filter(|b| !b.failed()).collect();
        let mut out = Outputs::new();
        let Some(oldest) = usable.iter().min_by_key(|b| b.timestamp.stop) else {
            return Err(fail(
                format!("stanza `{}` holds no backup that succeeded", s.name),
                out,
            ));
        };
        let window = seconds_since(oldest.stopped());
        let since = Utc::now() - chrono::Duration::days(i64::from(days));
        let backup_days: BTreeSet<String> = usable
            .iter()
            .filter(|b| b.stopped() >= since)
            .map(|b| b.stopped().format("%Y-%m-%d").to_string())
            .collect();
        let fulls = usable.iter().filter(|b| b.kind == "full").count();
        out.insert("restore_window_seconds".into(), window.into());
        out.insert("oldest".into(), oldest.label.clone().into());
        out.insert("days_with_backup".into(), backup_days.len().into());
        out.insert("full_sets".into(), fulls.into());
        if let Some(m) = s.archive_min() {
            out.insert("wal_from".into(), m.to_owned().into());
        }
        if let Some(m) = s.archive_max() {
            out.insert("wal_to".into(), m.to_owned().into());
        }
        let mut problems = Vec::new();
        if window < min_window {
            problems.push(format!(
                "the restore window is {} (oldest backup {}), shorter than {}",
                crate::duration::Duration::from_secs(window),
                oldest.label,
                crate::duration::Duration::from_secs(min_window)
            ));
        }
        if backup_days.len() < min_days as usize {
            problems.push(format!(
                "{} of the last {days} days have a backup, fewer than {min_days}",
                backup_days.len()
            ));
        }
        if fulls < min_full as usize {
            problems.push(format!("{fulls} full sets are kept, fewer than {min_full}"));
        }
        // WAL continuity: the archive must reach back to the oldest set's start, and on
        // to the newest set's end
        let start = oldest.archive.as_ref().and_then(|a| a.start.as_deref());
        match (s.archive_min(), start) {
            (Some(min), Some(start)) if segment_number(min) > segment_number(start) => problems
                .push(format!(
                    "the archive starts at {min}, after the oldest set {} needs {start}: that set cannot be recovered",
                    oldest.label
                )),
            (None, Some(_)) => problems.push("the repository holds no archived WAL".into()),
            _ => {}
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(fail(
                format!("stanza `{}`: {}", s.name, problems.join("; ")),
                out,
            ))
        }
    }
}

impl Run for PgbackrestArchive {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let t = tool(&self.stanza, self.config.as_deref(), self.repo);
        let s = t.info(cx).await?;
        readable(&s)?;
        let mut out = Outputs::new();
        let Some((archive, newest)) = s
            .archive
            .iter()
            .filter_map(|a| Some((a, a.max.as_deref()?)))
            .max_by_key(|(_, m)| *m)
        else {
            return Err(fail(
                format!("stanza `{}` has no archived WAL", s.name),
                out,
            ));
        };
        out.insert("newest_wal".into(), newest.to_owned().into());
        // the time it reached the repository: the file's, from the repository itself (not
        // pg_stat_archiver, which counts a segment queued for asynchronous archiving)
        let path = format!(
            "archive/{}/{}/{}",
            s.name,
            archive.id,
            &newest[..16.min(newest.len())]
        );
        let ran = t
            .run(
                &["--output=json".into(), "repo-ls".into(), path.clone()],
                account()?,
            )
            .await?;
        if !ran.ok {
            return Err(StepError::unavailable(format!(
                "pgbackrest repo-ls {path} failed: {}",
                plain(&ran.stderr)
            )));
        }
        let listing: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&ran.stdout)
            .map_err(|e| {
                StepError::unavailable(format!("pgbackrest repo-ls printed unreadable JSON: {e}"))
            })?;
        let time = listing
            .iter()
            .filter(|(name, _)| name.starts_with(newest))
            .filter_map(|(_, v)| v.get("time")?.as_i64())
            .max()
            .and_then(|t| Utc.timestamp_opt(t, 0).single());
        let Some(time) = time else {
            return Err(fail(
                format!("the newest archived segment {newest} is not in the repository's {path}"),
                out,
            ));
        };
        let age = seconds_since(time);
        out.insert("archived_at".into(), rfc3339(time).into());
        out.insert("age_seconds".into(), age.into());
        let mut problems = Vec::new();
        if let Some(max) = self.max_age {
            if age > max.0.as_secs() {
                problems.push(format!(
                    "the newest archived WAL segment, {newest}, reached the repository {} ago (at {}), longer than {max}",
                    crate::duration::Duration::from_secs(age),
                    rfc3339(time)
                ));
            }
        }
        if let Some(db) = &self.db {
            let spec = db::resolve(cx, db).await?;
            let client = crate::pg::connect(&spec).await?;
            let row = client
                .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
                .await
                .map_err(|e| {
                    StepError::failed(format!(
                        "the current WAL segment of {}: {}",
                        spec.display,
                        crate::pg::connect::describe(&e)
                    ))
                })?;
            let current: String = row.get(0);
            let lag = segment_number(&current)
                .zip(segment_number(newest))
                .map_or(0, |(c, n)| c.saturating_sub(n));
            out.insert("current_wal".into(), current.clone().into());
            out.insert("lag_segments".into(), lag.into());
            let max_lag = self.max_lag_segments.unwrap_or(2);
            if lag > max_lag {
                problems.push(format!(
                    "the repository's newest segment {newest} is {lag} segments behind the server's current {current} (at most {max_lag}): archiving is failing or behind"
                ));
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(fail(problems.join("; "), out))
        }
    }
}

impl Run for PgbackrestEncryption {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let s = tool(&self.stanza, self.config.as_deref(), self.repo)
            .info(cx)
            .await?;
        let expected = self.cipher.as_deref().unwrap_or("aes-256-cbc").trim();
        let repos: Vec<_> = s
            .repo
            .iter()
            .filter(|r| self.repo.is_none_or(|k| k == r.key))
            .collect();
        let mut out = Outputs::new();
        out.insert("cipher".into(), s.cipher.clone().unwrap_or_default().into());
        out.insert(
            "repos".into(),
            repos
                .iter()
                .map(|r| format!("repo{}: {}", r.key, r.cipher))
                .collect::<Vec<_>>()
                .join(", ")
                .into(),
        );
        if repos.is_empty() {
            return Err(fail(
                format!("stanza `{}`: pgbackrest info lists no repository", s.name),
                out,
            ));
        }
        let wrong: Vec<String> = repos
            .iter()
            .filter(|r| r.cipher != expected || r.cipher == "none")
            .map(|r| {
                if r.cipher == "none" {
                    format!("repo{} is not encrypted (cipher `none`)", r.key)
                } else {
                    format!("repo{} uses {}, not {expected}", r.key, r.cipher)
                }
            })
            .collect();
        if wrong.is_empty() {
            Ok(out)
        } else {
            Err(fail(
                format!("stanza `{}`: {}", s.name, wrong.join("; ")),
                out,
            ))
        }
    }
}

/// What `pgbackrest verify --output=text --verbose` reported.
#[derive(Debug, Default, PartialEq)]
struct Report {
    error: bool,
    statuses: usize,
    checked: u64,
    invalid: u64,
    first_problem: Option<String>,
}

fn report(text: &str) -> Report {
    let mut r = Report::default();
    let number = |l: &str, key: &str| -> u64 {
        l.split(key)
            .nth(1)
            .and_then(|rest| {
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    for line in text.lines() {
        let l = line.trim();
        if let Some(status) = l.strip_prefix("status:") {
            r.statuses += 1;
            if status.trim() != "ok" {
                r.error = true;
            }
        }
        r.checked += number(l, "total WAL checked:") + number(l, "total files checked:");
        if l.starts_with("missing:") {
            let bad = number(l, "missing:")
                + number(l, "checksum invalid:")
                + number(l, "size invalid:")
                + number(l, "other:");
            if bad > 0 && r.first_problem.is_none() {
                r.first_problem = Some(l.to_owned());
            }
            r.invalid += bad;
        }
        if (l.contains("ERROR:") || l.contains("WARN:")) && r.first_problem.is_none() {
            r.first_problem = Some(l.to_owned());
        }
    }
    r
}

impl Run for PgbackrestVerify {
    async fn run<'a>(&'a self, _cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let t = tool(&self.stanza, self.config.as_deref(), self.repo);
        let ran = t
            .run(
                &[
                    "verify".into(),
                    "--output=text".into(),
                    "--verbose".into(),
                    "--log-level-console=warn".into(),
                ],
                account()?,
            )
            .await?;
        // verify exits 0 when it reports errors: its report decides
        let r = report(&format!("{}\n{}", ran.stdout, ran.stderr));
        if r.statuses == 0 {
            return Err(StepError::unavailable(format!(
                "pgbackrest verify printed no report (exit {}): {}",
                ran.code.unwrap_or(-1),
                plain(&ran.stderr)
            )));
        }
        let mut out = Outputs::new();
        out.insert("invalid_files".into(), r.invalid.into());
        out.insert("checked_files".into(), r.checked.into());
        if let Some(p) = &r.first_problem {
            out.insert("first_problem".into(), plain(p).into());
        }
        if r.error || r.invalid > 0 {
            return Err(fail(
                format!(
                    "pgbackrest verify of stanza `{}` found {} invalid of {} files{}",
                    self.stanza,
                    r.invalid,
                    r.checked,
                    r.first_problem
                        .as_deref()
                        .map(|p| format!(": {}", plain(p)))
                        .unwrap_or_default()
                ),
                out,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_is_judged_by_its_report() {
        let ok = "stanza: main\nstatus: ok\n  archiveId: 15-1, total WAL checked: 8, total valid WAL: 8\n    missing: 0, checksum invalid: 0, size invalid: 0, other: 0\n  backup: 20261204-223638F, status: valid, total files checked: 1267, total valid files: 1267\n    missing: 0, checksum invalid: 0, size invalid: 0, other: 0\n";
        let r = report(ok);
        assert_eq!((r.error, r.checked, r.invalid), (false, 1275, 0));
        let bad = ok.replacen("status: ok", "status: error", 1).replacen(
            "missing: 0, checksum invalid: 0",
            "missing: 0, checksum invalid: 1",
            1,
        );
        let r = report(&bad);
        assert!(r.error);
        assert_eq!(r.invalid, 1);
        assert!(r
            .first_problem
            .expect("problem")
            .contains("checksum invalid: 1"));
    }
}
