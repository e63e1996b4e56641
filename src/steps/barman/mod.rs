//! The Barman kinds' steps: running `barman` (as Barman's account when drillbook is root, in
//! its own process group so an interrupt stops rsync too), reading its JSON, choosing the
//! backup a target needs, and the checks. `recover.rs` holds `barman.recover`.

mod recover;

use crate::progress::Progress;
use std::process::Stdio;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::shared::Shared;
use super::{Run, StepCx, StepError};
use crate::kind::barman::{BarmanBackupAge, BarmanCheck, BarmanTarget};
use crate::record::Outputs;
use crate::timestamp::rfc3339;

/// The unix account Barman runs as when drillbook is root (Barman's files belong to it).
#[derive(Debug, Clone)]
struct Account {
    uid: u32,
    gid: u32,
    home: String,
}

/// The `barman` account, when this process is root; None otherwise (Barman then runs as
/// whoever runs drillbook).
fn barman_account() -> Result<Option<Account>, StepError> {
    if !crate::pg::cluster::is_root() {
        return Ok(None);
    }
    let (uid, gid, home) = crate::pg::cluster::passwd_entry("barman").ok_or_else(|| {
        StepError::unavailable(
            "running as root needs the `barman` account to run Barman (its files belong to it), and there is none: install Barman, or run drillbook as Barman's user",
        )
    })?;
    Ok(Some(Account { uid, gid, home }))
}

/// What one `barman -f json …` said.
#[derive(Debug)]
struct Said {
    success: bool,
    json: Value,
    stderr: String,
}

impl Said {
    /// Barman's `_ERROR` lines, joined.
    fn errors(&self) -> Option<String> {
        let errors: Vec<&str> = self.json["_ERROR"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }
}

/// Runs `barman [-c CONFIG] -f json ARGS…` to its end (as Barman's account when root). An
/// interrupt or a timeout drops it: its whole process group (rsync, pg_basebackup) is
/// stopped, and the engine waits for it before cleanup.
async fn barman(config: Option<&str>, args: &[&str]) -> Result<Said, StepError> {
    barman_showing(config, args, &Progress::hidden(), &|l| l.to_owned()).await
}

/// [`barman`], showing Barman's lines on `progress` as they come (through `redact`).
async fn barman_showing(
    config: Option<&str>,
    args: &[&str],
    progress: &Progress,
    redact: &(dyn Fn(&str) -> String + Sync),
) -> Result<Said, StepError> {
    let account = barman_account()?;
    let mut cmd = tokio::process::Command::new("barman");
    if let Some(c) = config {
        cmd.arg("-c").arg(c);
    }
    cmd.args(["-f", "json"]).args(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir("/")
        .env("LC_ALL", "C.UTF-8")
        .process_group(0)
        .kill_on_drop(true);
    if let Some(a) = &account {
        cmd.uid(a.uid)
            .gid(a.gid)
            .env("HOME", &a.home)
            .env("USER", "barman")
            .env("LOGNAME", "barman");
    }
    let child = cmd.spawn().map_err(|e| {
        StepError::unavailable(format!(
            "cannot run `barman`: {e} (is Barman installed and on PATH?)"
        ))
    })?;
    let group = super::shell::ProcessGroup(child.id());
    let out = crate::steps::output::output_showing(child, progress, redact).await;
    group.disarm();
    let out = out.map_err(|e| StepError::unavailable(format!("waiting for `barman`: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(Said {
        success: out.status.success(),
        json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Barman's answer about `server`: the value under its name in `barman -f json ARGS… SERVER`,
/// asked once per check run when `shared` is given. Barman's own errors come back in words.
async fn ask(
    shared: Option<&Shared>,
    config: Option<&str>,
    command: &str,
    server: &str,
    extra: &[&str],
) -> Result<Value, StepError> {
    let work = async {
        let mut args = vec![command, server];
        args.extend_from_slice(extra);
        let said = barman(config, &args).await?;
        if let Some(e) = said.errors() {
            return Err(StepError::failed(explain(&e, server, config)));
        }
        match said.json.get(server) {
            Some(v) => Ok(v.clone()),
            None if said.success => Err(StepError::failed(format!(
                "`barman {command} {server}` said nothing about server `{server}`"
            ))),
            None => Err(StepError::failed(format!(
                "`barman {command} {server}` failed: {}",
                last_line(&said.stderr)
            ))),
        }
    };
    let key = format!(
        "barman\0{}\0{command}\0{server}\0{}",
        config.unwrap_or(""),
        extra.join("\0")
    );
    // shared as JSON text, read back by each asker
    let text =
        super::shared::once(shared, &key, || async { work.await.map(|v| v.to_string()) }).await?;
    serde_json::from_str(&text).map_err(|e| StepError::failed(format!("barman's answer: {e}")))
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or("no output", str::trim)
}

/// Barman's error in the operator's words, where there are better ones.
fn explain(error: &str, server: &str, config: Option<&str>) -> String {
    if error.contains("Unknown server") {
        return format!(
            "Barman has no server `{server}` in {}: `barman list-servers` shows the servers it knows ({error})",
            config.map_or_else(|| "its configuration".to_owned(), |c| format!("`{c}`"))
        );
    }
    if let Some(segment) = missing_segment(error) {
        return format!(
            "WAL segment {segment} is missing from Barman's archive of server `{server}`: the backup cannot be recovered past it (Barman: {})",
            error.lines().next().unwrap_or(error).trim()
        );
    }
    error.to_owned()
}

/// The WAL segment a failed copy names (`link_stat ".../000000010000000000000003" failed`).
fn missing_segment(error: &str) -> Option<&str> {
    if !(error.contains("No such file") || error.contains("link_stat")) {
        return None;
    }
    error
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 24)
}

/// A DONE (or other) backup as `list-backups` lists it.
#[derive(Debug, Clone)]
struct Listed {
    id: String,
    status: String,
    ended: Option<DateTime<Utc>>,
}

/// The server's backups, newest first.
async fn backups(
    shared: Option<&Shared>,
    config: Option<&str>,
    server: &str,
) -> Result<Vec<Listed>, StepError> {
    let list = ask(shared, config, "list-backups", server, &[]).await?;
    let mut out: Vec<Listed> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| Listed {
            id: b["backup_id"].as_str().unwrap_or_default().to_owned(),
            status: b["status"].as_str().unwrap_or_default().to_owned(),
            // a string in Barman 3.4's JSON
            ended: b["end_time_timestamp"]
                .as_str()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .or_else(|| b["end_time_timestamp"].as_i64())
                .and_then(|s| Utc.timestamp_opt(s, 0).single()),
        })
        .collect();
    out.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(out)
}

/// The backup to recover for `wanted` (`latest`, `oldest`, an id, or None: the one the
/// target needs) and `target`, or why there is none.
fn choose(
    server: &str,
    listed: &[Listed],
    wanted: Option<&str>,
    target: Option<DateTime<Utc>>,
) -> Result<Listed, StepError> {
    let done: Vec<&Listed> = listed.iter().filter(|b| b.status == "DONE").collect();
    let Some(newest) = done.first() else {
        return Err(StepError::failed(format!(
            "Barman server `{server}` has no DONE backup to recover ({} listed)",
            listed.len()
        )));
    };
    let oldest = done.last().unwrap_or(newest);
    let chosen = match wanted.map(str::trim) {
        Some("latest") => (*newest).clone(),
        Some("oldest") => (*oldest).clone(),
        Some(id) => {
            let Some(b) = listed.iter().find(|b| b.id == id) else {
                return Err(StepError::failed(format!(
                    "Barman server `{server}` has no backup `{id}` (its DONE backups: {})",
                    done.iter()
                        .map(|b| b.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if b.status != "DONE" {
                return Err(StepError::failed(format!(
                    "backup `{id}` of Barman server `{server}` is {}, not DONE: it cannot be recovered",
                    b.status
                )));
            }
            b.clone()
        }
        None => match target {
            Some(t) => match done.iter().find(|b| b.ended.is_some_and(|e| e <= t)) {
                Some(b) => (*b).clone(),
                None => return Err(before_oldest(server, oldest, t)),
            },
            None => (*newest).clone(),
        },
    };
    if let (Some(t), Some(ended)) = (target, chosen.ended) {
        if t < ended {
            return Err(if chosen.id == oldest.id {
                before_oldest(server, oldest, t)
            } else {
                StepError::failed(format!(
                    "the target {} is before backup `{}` of Barman server `{server}` ended ({}): recovery cannot go back past the end of its backup; choose an older backup or leave `backup_id` out",
                    rfc3339(t),
                    chosen.id,
                    rfc3339(ended)
                ))
            });
        }
    }
    Ok(chosen)
}

fn before_oldest(server: &str, oldest: &Listed, target: DateTime<Utc>) -> StepError {
    StepError::failed(format!(
        "no backup of Barman server `{server}` ended before the target {}: the oldest, `{}`, ended {}; nothing can be recovered to a point before it",
        rfc3339(target),
        oldest.id,
        oldest.ended.map(rfc3339).unwrap_or_else(|| "at an unknown time".into())
    ))
}

/// Barman's `2026-12-04 17:22:16.123456+00:00` as RFC 3339 UTC (as written when it does not
/// parse).
fn barman_time(text: &str) -> String {
    DateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f%:z")
        .map(|t| crate::timestamp::rfc3339_precise(t.with_timezone(&Utc)))
        .unwrap_or_else(|_| text.trim().to_owned())
}

/// The time a time target resolves to (now-relative targets from `now`).
fn target_time(target: &BarmanTarget, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match target {
        BarmanTarget::Time(t) => t
            .parse::<crate::timestamp::TimeSpec>()
            .ok()
            .map(|s| s.resolve(now)),
        _ => None,
    }
}

/// What can be known about a `barman.recover` before anything runs: the server answers, and
/// it has a backup that fits the target, which is not in the future. `(check, outcome)`.
pub async fn preflight(
    step: &crate::kind::barman::BarmanRecover,
    now: DateTime<Utc>,
) -> Vec<(&'static str, Result<String, StepError>)> {
    let target = match BarmanTarget::parse(&step.target) {
        Ok(t) => t,
        Err(e) => return vec![("target", Err(StepError::failed(e)))],
    };
    let at = target_time(&target, now);
    if let Some(t) = at.filter(|t| *t > now) {
        return vec![(
            "target",
            Err(StepError::failed(format!(
                "the target {} is in the future",
                rfc3339(t)
            ))),
        )];
    }
    let listed = match backups(None, step.config.as_deref(), &step.server).await {
        Ok(l) => l,
        Err(e) => return vec![("Barman server", Err(e))],
    };
    vec![(
        "backup",
        choose(&step.server, &listed, step.backup_id.as_deref(), at).map(|b| {
            format!(
                "backup `{}` of Barman server `{}` fits the target{}",
                b.id,
                step.server,
                b.ended
                    .map(|e| format!(" (ended {})", rfc3339(e)))
                    .unwrap_or_default()
            )
        }),
    )]
}

impl Run for BarmanCheck {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let config = self.config.as_deref();
        let answer = match ask(cx.shared, config, "check", &self.server, &[]).await {
            Ok(a) => a,
            Err(e) => return Err(e),
        };
        let mut lines = Vec::new();
        let mut failed = Vec::new();
        for (name, v) in answer.as_object().into_iter().flatten() {
            let status = v["status"].as_str().unwrap_or("UNKNOWN").to_owned();
            let hint = v["hint"].as_str().unwrap_or("").to_owned();
            if status != "OK" {
                failed.push((name.clone(), hint.clone()));
            }
            lines.push(serde_json::json!({"name": name, "status": status, "detail": hint}));
        }
        let mut out = Outputs::new();
        out.insert("checks".into(), Value::Array(lines.clone()));
        out.insert(
            "failed".into(),
            failed
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>()
                .into(),
        );
        out.insert("failed_count".into(), failed.len().into());
        if lines.is_empty() {
            return Err(StepError::failed(format!(
                "`barman check {}` reported no check",
                self.server
            ))
            .with_outputs(out));
        }
        if !failed.is_empty() {
            let named: Vec<String> = failed
                .iter()
                .map(|(n, h)| {
                    let name = n.replace('_', " ");
                    if h.is_empty() {
                        name
                    } else {
                        format!("{name} ({h})")
                    }
                })
                .collect();
            return Err(StepError::failed(format!(
                "barman check {}: {} of {} FAILED: {}",
                self.server,
                failed.len(),
                lines.len(),
                named.join("; ")
            ))
            .with_outputs(out));
        }
        Ok(out)
    }
}

impl Run for BarmanBackupAge {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let listed = backups(cx.shared, self.config.as_deref(), &self.server).await?;
        let done: Vec<&Listed> = listed.iter().filter(|b| b.status == "DONE").collect();
        let mut out = Outputs::new();
        out.insert("backups".into(), done.len().into());
        let Some((ended, newest)) = done
            .iter()
            .filter_map(|b| Some((b.ended?, b)))
            .max_by_key(|(e, _)| *e)
        else {
            return Err(StepError::failed(format!(
                "Barman server `{}` has no DONE backup ({} listed)",
                self.server,
                listed.len()
            ))
            .with_outputs(out));
        };
        let age = (Utc::now() - ended).to_std().unwrap_or_default();
        out.insert("newest".into(), newest.id.clone().into());
        out.insert("newest_at".into(), rfc3339(ended).into());
        out.insert("age_seconds".into(), age.as_secs().into());
        if let Some(max) = self.max_age {
            if age > max.std() {
                return Err(StepError::failed(format!(
                    "the newest DONE backup of Barman server `{}`, `{}`, ended {} ago, more than {max}",
                    self.server,
                    newest.id,
                    crate::duration::human(age)
                ))
                .with_outputs(out));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str, status: &str, ended: i64) -> Listed {
        Listed {
            id: id.into(),
            status: status.into(),
            ended: Utc.timestamp_opt(ended, 0).single(),
        }
    }

    #[test]
    fn the_backup_that_fits_the_target_is_chosen() {
        let list = vec![
            listed("20261204T030000", "FAILED", 3000),
            listed("20261203T030000", "DONE", 2000),
            listed("20261202T030000", "DONE", 1000),
        ];
        let at = |s: i64| Utc.timestamp_opt(s, 0).single();
        assert_eq!(
            choose("s", &list, None, at(2500)).expect("fits").id,
            "20261203T030000"
        );
        assert_eq!(
            choose("s", &list, None, at(1500)).expect("fits").id,
            "20261202T030000"
        );
        assert_eq!(
            choose("s", &list, None, None).expect("latest").id,
            "20261203T030000"
        );
        assert_eq!(
            choose("s", &list, Some("oldest"), None).expect("oldest").id,
            "20261202T030000"
        );
        let e = choose("s", &list, None, at(500)).expect_err("before the oldest");
        assert!(
            e.message
                .starts_with("no backup of Barman server `s` ended before the target"),
            "{}",
            e.message
        );
        let e = choose("s", &list, Some("20261203T030000"), at(1500)).expect_err("before it");
        assert!(
            e.message.contains("choose an older backup"),
            "{}",
            e.message
        );
        let e = choose("s", &list, Some("20261204T030000"), None).expect_err("failed");
        assert!(e.message.contains("is FAILED, not DONE"), "{}", e.message);
        let e = choose("s", &list, Some("nope"), None).expect_err("unknown");
        assert!(e.message.contains("has no backup `nope`"), "{}", e.message);
    }

    #[test]
    fn barman_errors_in_plain_words() {
        assert!(explain("Unknown server 'x'", "x", Some("/b.conf"))
            .starts_with("Barman has no server `x` in `/b.conf`"));
        let rsync = "Failure copying WAL files: data transfer failure\nrsync: [sender] link_stat \"/b/wals/0000000100000000/000000010000000000000003\" failed: No such file or directory (2)";
        assert!(explain(rsync, "shop", None).starts_with("WAL segment 000000010000000000000003 is missing from Barman's archive of server `shop`"));
        assert_eq!(
            barman_time("2026-12-04 22:37:41.359677+00:00"),
            "2026-12-04T22:37:41.359677Z"
        );
    }
}
