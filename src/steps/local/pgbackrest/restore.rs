//! `pgbackrest.restore`: the instance is registered for undo before anything exists, then
//! `pgbackrest restore` fills its data directory as the server's account (PostgreSQL's time
//! format, `--target-action=promote`, `--archive-mode=off`), and the start machinery of
//! `local.start` runs it: private socket, own `pg_hba.conf`, recovery through pgBackRest's own
//! `archive-get`, promotion. What cannot work is said before the restore (an unreadable
//! repository, a target before the oldest set); what failed after it, in plain words.

use chrono::{DateTime, Utc};

use super::super::backups::parse_lsn;
use super::super::recovery::{self, parse_target, Lifetime, Target, WalSource};
use super::super::{cluster_error, scratch_dir};
use super::info::Stanza;
use super::{plain, segment_number, Tool};
use crate::kind::pgbackrest::PgbackrestRestore;
use crate::pg::cluster::{find_binaries, Cluster};
use crate::record::Outputs;
use crate::steps::{Run, StepCx, StepError};
use crate::timestamp::rfc3339;

/// The recovery target, as pgBackRest takes it.
#[derive(Debug, Clone, PartialEq)]
enum Goal {
    Latest,
    Time(DateTime<Utc>),
    Lsn(String),
    Name(String),
    Xid(String),
}

fn goal(text: &str) -> Goal {
    let t = text.trim();
    if let Some(xid) = t.strip_prefix("xid:") {
        return Goal::Xid(xid.trim().to_owned());
    }
    match parse_target(t) {
        Target::Latest => Goal::Latest,
        Target::Time(at) => Goal::Time(at),
        Target::Lsn(l) => Goal::Lsn(l),
        Target::Name(n) => Goal::Name(n),
    }
}

impl Goal {
    /// `--target` as pgBackRest reads it: a time as `YYYY-MM-DD HH:MM:SS.ffffff+00`
    /// (pgBackRest refuses RFC 3339's `T` and `Z`).
    fn text(&self) -> String {
        match self {
            Goal::Latest => "latest".into(),
            Goal::Time(t) => t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            Goal::Lsn(s) | Goal::Name(s) | Goal::Xid(s) => s.clone(),
        }
    }

    fn args(&self, exclusive: bool) -> Vec<String> {
        let kind = match self {
            // the end of the WAL: no target, nothing to promote at
            Goal::Latest => return vec!["--type=default".into()],
            Goal::Time(_) => "time",
            Goal::Lsn(_) => "lsn",
            Goal::Name(_) => "name",
            Goal::Xid(_) => "xid",
        };
        let mut args = vec![
            format!("--type={kind}"),
            format!("--target={}", self.text()),
            // pgBackRest's default is to pause there, forever
            "--target-action=promote".into(),
        ];
        if exclusive {
            args.push("--target-exclusive".into());
        }
        args
    }
}

impl Run for PgbackrestRestore {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let tool = Tool {
            config: self.config.as_deref(),
            stanza: &self.stanza,
            repo: self.repo,
        };
        let goal = goal(&self.target);
        let stanza = tool.info(cx).await?;
        if let Some(why) = stanza.unreadable() {
            return Err(StepError::failed(why));
        }
        reachable(&stanza, self.set.as_deref(), &goal)?;
        let bin = find_binaries().map_err(cluster_error)?;
        let root = scratch_dir(cx, self.dir.as_deref());
        // registered before anything exists, so an interrupt at any point leaves nothing
        super::super::register_instance(cx, &bin, &root, "restored instance")?;
        let mut cluster = Cluster::prepare(bin, &root).map_err(cluster_error)?;
        let data = cluster.data_dir();
        let mut args = vec![
            "restore".to_owned(),
            format!("--pg1-path={}", data.display()),
            // a copy must never push WAL into production's repository
            "--archive-mode=off".into(),
            "--log-level-console=info".into(),
            "--log-level-stderr=warn".into(),
        ];
        args.extend(goal.args(self.target_exclusive));
        if let Some(set) = self.set.as_deref().filter(|s| *s != "latest") {
            args.push(format!("--set={set}"));
        }
        for db in &self.db_include {
            args.push(format!("--db-include={db}"));
        }
        if let Some(n) = self.process_max {
            args.push(format!("--process-max={n}"));
        }
        let clock = std::time::Instant::now();
        let progress = cx
            .interaction
            .progress("pgbackrest restore", crate::progress::Unit::None);
        let ran = tool
            .run_showing(&args, cluster.account(), &progress, &|l| {
                cx.redactor.redact(l)
            })
            .await?;
        drop(progress);
        let restore_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        if !ran.ok {
            return Err(StepError::failed(format!(
                "pgbackrest restore of stanza `{}` failed (exit {}): {}",
                self.stanza,
                ran.code.unwrap_or(-1),
                plain(&ran.stderr)
            )));
        }
        let label = after(&ran.stdout, "restore backup set ")
            .map(|l| l.trim_end_matches(',').to_owned())
            .or_else(|| self.set.clone().filter(|s| s != "latest"));
        let version = after(&ran.stdout, "restore command begin ")
            .map(|v| v.trim_end_matches(':').to_owned());
        let started = match recovery::start(
            &mut cluster,
            WalSource::Kept,
            None,
            None,
            Lifetime::of(self.keep),
            &cx.interaction
                .progress("WAL replayed", crate::progress::Unit::Items),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                let log = std::fs::read_to_string(cluster.log_file()).unwrap_or_default();
                return Err(StepError::failed(explain(&log, &stanza, &goal, &e.message)));
            }
        };
        let uri =
            recovery::connection_uri(cx, &cluster, None, self.database.as_deref(), None).await?;
        let mut out = recovery::outputs(&cluster, uri, goal.text(), &started);
        let set = label
            .as_deref()
            .and_then(|l| stanza.backup.iter().find(|b| b.label == l));
        if let Some(b) = set {
            out.insert("backup_set".into(), b.label.clone().into());
            out.insert("backup_type".into(), b.kind.clone().into());
            out.insert("backup_started_at".into(), rfc3339(b.started()).into());
            out.insert("backup_finished_at".into(), rfc3339(b.stopped()).into());
            if let Some(l) = b.lsn_stop() {
                out.insert("backup_lsn_stop".into(), l.to_owned().into());
            }
            out.insert(
                "backup_reference".into(),
                b.reference.clone().unwrap_or_default().join(",").into(),
            );
            if let Some(info) = &b.info {
                out.insert("restore_size_bytes".into(), info.size.into());
                if let Some(r) = &info.repository {
                    out.insert("repo_size_bytes".into(), r.size.into());
                }
            }
            if let Some(db) = &b.database {
                out.insert("repo".into(), db.repo_key.to_string().into());
            }
        } else if let Some(l) = label {
            out.insert("backup_set".into(), l.into());
        }
        if let Some(c) = &stanza.cipher {
            out.insert("cipher".into(), c.clone().into());
        }
        if let Some(v) = version {
            out.insert("pgbackrest_version".into(), v.into());
        }
        out.insert("restore_ms".into(), restore_ms.into());
        if self.keep {
            recovery::keep(cx, &cluster, &mut out);
        }
        // the undo registered above stops it (unless kept); dropping the value must not
        let _ = cluster.detach();
        Ok(out)
    }
}

/// What can be known about a `pgbackrest.restore` before anything runs, for the run's
/// preflight: the stanza can be read (it exists, the cipher pass is right), the target is
/// not in the future, and a backup set can reach it — `(check, Ok(detail) | Err(why))`.
pub async fn preflight(
    step: &PgbackrestRestore,
    now: DateTime<Utc>,
) -> Vec<(&'static str, Result<String, StepError>)> {
    let tool = Tool {
        config: step.config.as_deref(),
        stanza: &step.stanza,
        repo: step.repo,
    };
    let account = match super::account() {
        Ok(a) => a,
        Err(e) => return vec![("stanza", Err(e))],
    };
    let stanza = match tool
        .run(&["--output=json".into(), "info".into()], account)
        .await
    {
        Ok(ran) if ran.ok => super::info::parse(&ran.stdout, &step.stanza),
        Ok(ran) => Err(StepError::unavailable(format!(
            "pgbackrest info failed (exit {}): {}",
            ran.code.unwrap_or(-1),
            plain(&ran.stderr)
        ))),
        Err(e) => Err(e),
    };
    let stanza = match stanza {
        Ok(s) => s,
        Err(e) => return vec![("stanza", Err(e))],
    };
    if let Some(why) = stanza.unreadable() {
        return vec![("stanza", Err(StepError::failed(why)))];
    }
    let mut out = vec![(
        "stanza",
        Ok(format!(
            "stanza `{}`: status {} ({}), {} backup sets",
            stanza.name,
            stanza.status.code,
            stanza.status.message,
            stanza.backup.len()
        )),
    )];
    let goal = goal(&step.target);
    if let Goal::Time(t) = goal {
        if t > now {
            out.push((
                "target",
                Err(StepError::failed(format!(
                    "the target {} is in the future",
                    rfc3339(t)
                ))),
            ));
            return out;
        }
    }
    out.push((
        "backup set",
        reachable(&stanza, step.set.as_deref(), &goal).map(|()| {
            let mut usable = stanza.backup.iter().filter(|b| !b.failed());
            let fits = match (&goal, step.set.as_deref().filter(|s| *s != "latest")) {
                (_, Some(label)) => usable.rfind(|b| b.label == label),
                (Goal::Time(t), None) => usable.rfind(|b| b.stopped() <= *t),
                _ => usable.next_back(),
            };
            match fits {
                Some(b) => format!(
                    "set {} ({}, finished {}) can reach the target {}",
                    b.label,
                    b.kind,
                    rfc3339(b.stopped()),
                    goal.text()
                ),
                None => format!("a backup set can reach the target {}", goal.text()),
            }
        }),
    ));
    out
}

/// The word after `marker` in pgBackRest's log.
fn after(log: &str, marker: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.split_once(marker))
        .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
}

/// Refuses, before anything is restored, what no set of the repository can reach: no
/// backup at all, or a target before the oldest usable set (or before the chosen one).
fn reachable(stanza: &Stanza, set: Option<&str>, goal: &Goal) -> Result<(), StepError> {
    let usable: Vec<_> = stanza.backup.iter().filter(|b| !b.failed()).collect();
    let candidates: Vec<_> = match set.filter(|s| *s != "latest") {
        Some(label) => {
            let Some(b) = usable.iter().find(|b| b.label == label) else {
                let known: Vec<&str> = usable.iter().map(|b| b.label.as_str()).collect();
                return Err(StepError::failed(format!(
                    "stanza `{}` has no backup set `{label}`; it has {}",
                    stanza.name,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            vec![*b]
        }
        None => usable,
    };
    let Some(oldest) = candidates.first() else {
        return Err(StepError::failed(format!(
            "stanza `{}` has no backup that can be restored (status {}: {})",
            stanza.name, stanza.status.code, stanza.status.message
        )));
    };
    let which = if set.is_some_and(|s| s != "latest") {
        "the chosen backup set"
    } else {
        "the oldest backup set"
    };
    let before = match goal {
        Goal::Time(t) => *t < oldest.stopped(),
        Goal::Lsn(l) => match (parse_lsn(l), oldest.lsn_stop().and_then(parse_lsn)) {
            (Some(target), Some(stop)) => target < stop,
            _ => false,
        },
        _ => false,
    };
    if before {
        return Err(StepError::failed(format!(
            "the target {} is before {which} of stanza `{}`, {} (finished {}, at {}): recovery can only start from a backup that finished before its target, so the repository cannot reach it; choose a target after {}",
            goal.text(),
            stanza.name,
            oldest.label,
            rfc3339(oldest.stopped()),
            oldest.lsn_stop().unwrap_or("?"),
            rfc3339(oldest.stopped()),
        )));
    }
    Ok(())
}

/// Why recovery from the repository failed, from the server log: a segment `archive-get`
/// could not find inside the archived range is missing; past the newest archived segment,
/// the target is after the end of the archive. pgBackRest's own ERROR and HINT lines follow.
fn explain(log: &str, stanza: &Stanza, goal: &Goal, fallback: &str) -> String {
    let restored = log
        .lines()
        .filter_map(|l| l.split("restored log file \"").nth(1))
        .filter_map(|r| r.split('"').next())
        .filter(|s| segment_number(s).is_some())
        .max()
        .map(str::to_owned);
    let ended_early = log.contains("recovery ended before configured recovery target was reached");
    let tool_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR: [") || l.contains("HINT:"))
        .collect();
    let tool = if tool_lines.is_empty() {
        String::new()
    } else {
        format!("; pgBackRest said: {}", plain(&tool_lines.join("\n")))
    };
    let max = stanza.archive_max();
    let next = restored.as_deref().and_then(next_segment);
    if ended_early {
        if let (Some(next), Some(max)) = (&next, max) {
            if segment_number(next) <= segment_number(max) {
                return format!(
                    "archive-get cannot find WAL segment {next} in the repository of stanza `{}`, which holds segments up to {max}: it is missing (lost or deleted), and recovery stopped there, before reaching the target {}{tool}",
                    stanza.name,
                    goal.text()
                );
            }
        }
        return format!(
            "recovery ended before reaching the target {}: it replayed the repository's WAL up to the newest archived segment, {}, without reaching it. Choose an earlier target, or wait until archiving has caught up (an idle server archives only with `archive_timeout`){tool}",
            goal.text(),
            max.unwrap_or("(none archived)")
        );
    }
    format!("{fallback}{tool}")
}

/// The segment after `name` (16 MB segments).
fn next_segment(name: &str) -> Option<String> {
    let n = segment_number(name)? + 1;
    Some(format!("{}{:08X}{:08X}", &name[..8], n / 256, n % 256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_in_pgbackrests_words() {
        let t = goal("2026-11-28T09:00:00.123456Z");
        assert_eq!(t.text(), "2026-11-28 09:00:00.123456+00");
        assert_eq!(
            goal("xid:1234").args(true),
            [
                "--type=xid",
                "--target=1234",
                "--target-action=promote",
                "--target-exclusive"
            ]
        );
        assert_eq!(goal("latest").args(true), ["--type=default"]);
        assert_eq!(goal("0/5000028").args(false)[0], "--type=lsn");
        assert_eq!(goal("before-migration").args(false)[0], "--type=name");
        assert_eq!(
            next_segment("0000000100000000000000FF").as_deref(),
            Some("000000010000000100000000")
        );
    }
}
