//! `local.restore`: a base backup plus the WAL archive, restored into a scratch instance on a
//! free port and recovered to a target (`latest`, a timestamp, an LSN or a restore point
//! name), then promoted. Before anything starts it reads the backup label and checks the
//! archive for gaps, so a missing WAL segment is named rather than silently cutting the
//! recovery short.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::backups::{self, parse_lsn, segment, Reach};
use super::{cluster_error, scratch_dir};
use crate::kind::local::LocalRestore;
use crate::pg::cluster::{conf_line, find_binaries, shell_quote, Cluster, ClusterHandle};
use crate::record::Outputs;
use crate::runbook::TargetKind;
use crate::steps::{db, Run, StepCx, StepError, Undo};
use crate::timestamp::{rfc3339_precise, TimeSpec};

/// What recovery should stop at.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Latest,
    Time(DateTime<Utc>),
    Lsn(String),
    Name(String),
}

fn parse_target(text: &str) -> Target {
    let t = text.trim();
    if t == "latest" {
        return Target::Latest;
    }
    if let Some((a, b)) = t.split_once('/') {
        if !a.is_empty()
            && !b.is_empty()
            && a.chars().chain(b.chars()).all(|c| c.is_ascii_hexdigit())
        {
            return Target::Lsn(t.to_owned());
        }
    }
    match t.parse::<TimeSpec>() {
        Ok(spec) => Target::Time(spec.resolve(Utc::now())),
        Err(_) => Target::Name(t.to_owned()),
    }
}

fn segment_name(tli: u32, n: u64) -> String {
    format!("{tli:08X}{:08X}{:08X}", n / 0x100, n % 0x100)
}

/// A plain base backup of a cluster with tablespaces (or a separate WAL directory) holds
/// symlinks to the source's own directories; recovery would write through them, outside
/// the scratch directory. Such backups are refused until they can be relocated.
fn refuse_links(backup: &Path) -> Result<(), StepError> {
    let mut links: Vec<PathBuf> = std::fs::read_dir(backup.join("pg_tblspc"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    links.push(backup.join("pg_wal"));
    for l in links {
        if std::fs::symlink_metadata(&l)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            let to = std::fs::read_link(&l)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            return Err(StepError::failed(format!(
                "the base backup links {} to {to}: restoring it would write outside the scratch directory (backups with tablespaces or a separate pg_wal are not supported yet)",
                l.display()
            )));
        }
    }
    Ok(())
}

/// The first segment missing from the archive between the backup's start and the newest
/// archived segment of its timeline, if any.
fn archive_gap(archive: &Path, start: &str) -> Result<Option<String>, StepError> {
    let (tli, first) =
        segment(start).ok_or_else(|| StepError::failed(format!("bad start segment {start}")))?;
    let entries = std::fs::read_dir(archive).map_err(|e| {
        StepError::failed(format!(
            "cannot read the WAL archive {}: {e}",
            archive.display()
        ))
    })?;
    let mut have: Vec<u64> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(segment))
        .filter(|(t, n)| *t == tli && *n >= first)
        .map(|(_, n)| n)
        .collect();
    have.sort_unstable();
    // segments from the backup's start may be inside the backup (streamed), so only holes
    // between archived segments count
    Ok(have
        .windows(2)
        .find(|w| w[1] != w[0] + 1)
        .map(|w| segment_name(tli, w[0] + 1)))
}

impl Run for LocalRestore {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let root = scratch_dir(cx, self.dir.as_deref());
        let (base_backup, wal_archive) = backup_paths(self, cx)?;
        let restored = restore_into(
            Path::new(&base_backup),
            Path::new(&wal_archive),
            &self.target,
            &root,
            |handle| {
                cx.created(Undo::Cluster {
                    step: cx.step_id.into(),
                    what: format!(
                        "stop and remove the restored instance in {}",
                        root.display()
                    ),
                    handle,
                });
            },
        )
        .await?;
        // the database the backups are of, named as in production; else `postgres`
        let source_database = match &self.source {
            Some(source) => db::resolve(cx, source)
                .await?
                .config
                .get_dbname()
                .map(str::to_owned),
            None => None,
        };
        let database = self
            .database
            .clone()
            .or(source_database)
            .unwrap_or_else(|| "postgres".into());
        let cluster = &restored.cluster;
        let uri = match &self.user {
            Some(user) => cluster.url_as(user, &database),
            None => cluster.url(&database),
        };
        let mut out = Outputs::new();
        out.insert("connection_uri".into(), uri.into());
        out.insert("port".into(), cluster.port.into());
        out.insert("dir".into(), root.display().to_string().into());
        out.insert(
            "data_dir".into(),
            cluster.data_dir().display().to_string().into(),
        );
        out.insert("target".into(), restored.target.clone().into());
        if let Some(t) = &restored.recovered_to {
            out.insert("recovered_to".into(), t.clone().into());
        }
        if let Some(bytes) = restored.wal_replayed_bytes {
            out.insert("wal_replayed_bytes".into(), bytes.into());
        }
        out.insert(
            "promoted_in_ms".into(),
            u64::try_from(restored.promoted_in.as_millis())
                .unwrap_or(u64::MAX)
                .into(),
        );
        out.insert("base_backup".into(), restored.base_backup.clone().into());
        if let Some(t) = &restored.base_backup_started_at {
            out.insert("base_backup_started_at".into(), t.clone().into());
        }
        if let Some(g) = &restored.archive_gap {
            out.insert("archive_gap".into(), g.clone().into());
        }
        // the undo registered above stops it; dropping the value here must not
        let _ = restored.cluster.detach();
        Ok(out)
    }
}

/// Where the base backups and the WAL archive are: the step's own fields, or those of the
/// `local` target its `backups` names (rendered, so they may come from the environment).
fn backup_paths(step: &LocalRestore, cx: &StepCx<'_>) -> Result<(String, String), StepError> {
    let Some(name) = &step.backups else {
        // `check` guarantees both are given when `backups` is not
        return Ok((
            step.base_backup.clone().unwrap_or_default(),
            step.wal_archive.clone().unwrap_or_default(),
        ));
    };
    let local = match cx.runbook.targets.get(name).map(|t| &t.kind) {
        Some(TargetKind::Local(l)) => l,
        Some(_) => {
            return Err(StepError::failed(format!(
                "`backups: {name}` must name a local target (with `base_backup` and `wal_archive`)"
            )))
        }
        None => return Err(StepError::failed(format!("no target `{name}`"))),
    };
    let field = |value: &Option<String>, what: &str| {
        let text = value.as_deref().ok_or_else(|| {
            StepError::failed(format!(
                "target `{name}` has no `{what}`: `local.restore` needs it to restore"
            ))
        })?;
        db::render(cx, text, &format!("the `{what}` of target `{name}`"))
    };
    Ok((
        field(&local.base_backup, "base_backup")?,
        field(&local.wal_archive, "wal_archive")?,
    ))
}

/// A base backup restored and promoted: the running instance and what recovery reported.
#[derive(Debug)]
pub struct Restored {
    /// The running instance; dropping it stops the server (detach it to keep it running).
    pub cluster: Cluster,
    /// The target as resolved (a relative time made absolute, RFC 3339).
    pub target: String,
    /// The last transaction's commit time recovery reached, when the log says.
    pub recovered_to: Option<String>,
    pub wal_replayed_bytes: Option<u64>,
    pub promoted_in: std::time::Duration,
    /// The first segment missing from the archive, when recovery could stop before it.
    pub archive_gap: Option<String>,
    /// The base backup restored (chosen when given a directory of them).
    pub base_backup: String,
    /// When it started, RFC 3339, when its label says.
    pub base_backup_started_at: Option<String>,
}

/// Restores a base backup plus the WAL in `archive` into a new instance under `root` (new or
/// empty), recovered to `target` (`latest`, a timestamp, an LSN or a restore point name) and
/// promoted. `backups` is one base backup or a directory of them, of which the one that fits
/// the target is chosen (see [`backups::choose`]). `created` receives the instance's handle before anything exists on disk, so the
/// caller can undo it on every path. Shared by `local.restore` and the test suite's fake Neon
/// (whose branches are real point-in-time restores).
pub async fn restore_into(
    backups: &Path,
    archive: &Path,
    target_text: &str,
    root: &Path,
    created: impl FnOnce(ClusterHandle),
) -> Result<Restored, StepError> {
    let bin = find_binaries().map_err(cluster_error)?;
    let target = parse_target(target_text);
    let reach = match &target {
        Target::Time(t) => Reach::Time(*t),
        Target::Lsn(l) => parse_lsn(l).map_or(Reach::Newest, Reach::Lsn),
        Target::Latest | Target::Name(_) => Reach::Newest,
    };
    let chosen = backups::choose(backups, &reach)?;
    let backup = chosen.path.as_path();
    let label = &chosen.label;
    refuse_links(backup)?;
    let version: u32 = std::fs::read_to_string(backup.join("PG_VERSION"))
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if version != bin.major {
        return Err(StepError::failed(format!("the base backup is PostgreSQL {version}, but the server binaries found are {} (set PG_BIN)", bin.major)));
    }
    if let (Target::Time(t), Some(start)) = (&target, label.start_time) {
        if *t < start {
            return Err(StepError::failed(format!(
                "target {} is before the base backup started ({}): recovery cannot go back past its backup; choose a later target or an older backup",
                rfc3339_precise(*t),
                rfc3339_precise(start)
            )));
        }
    }
    let gap = archive_gap(archive, &label.start_segment)?;
    if let (Some(missing), Target::Latest) = (&gap, &target) {
        return Err(StepError::failed(format!(
            "WAL segment {missing} is missing from the archive {}: recovery to `latest` would stop there and lose everything after it",
            archive.display()
        )));
    }

    // registered before anything exists, so an interrupt at any point leaves nothing
    let handle = ClusterHandle::for_root(&bin, root).map_err(cluster_error)?;
    if root.exists() {
        return Err(cluster_error(crate::pg::cluster::ClusterError::Exists(
            root.to_owned(),
        )));
    }
    created(handle);
    let mut cluster = Cluster::prepare(bin, root).map_err(cluster_error)?;
    let data = cluster.data_dir();
    copy_backup(backup, &data).await?;
    cluster.hand_over_tree(&data).map_err(cluster_error)?;
    configure(&data, root, archive, &cluster.socket_dir(), &target)?;
    cluster.make_private();

    let clock = tokio::time::Instant::now();
    // a large restore may take long to become consistent; the caller's deadline governs
    let started = cluster.start_waiting(86_400).await;
    let log = std::fs::read_to_string(cluster.log_file()).unwrap_or_default();
    if let Err(e) = started {
        return Err(StepError::failed(
            explain_failure(&log, gap.as_deref(), archive).unwrap_or_else(|| e.to_string()),
        ));
    }
    wait_promoted(&cluster, archive, gap.as_deref()).await?;
    let promoted_in = clock.elapsed();
    // connections name a role; the one every cluster has is its bootstrap superuser
    if let Ok(name) = crate::pg::authid::bootstrap_superuser(&data) {
        cluster.set_superuser(&name);
    }
    let log = std::fs::read_to_string(cluster.log_file()).unwrap_or_default();
    Ok(Restored {
        target: match &target {
            Target::Time(t) => rfc3339_precise(*t),
            _ => target_text.to_owned(),
        },
        recovered_to: recovered_to(&log),
        wal_replayed_bytes: wal_replayed(&log),
        promoted_in,
        archive_gap: gap,
        base_backup: chosen.path.display().to_string(),
        base_backup_started_at: chosen.started().map(rfc3339_precise),
        cluster,
    })
}

async fn copy_backup(backup: &Path, data: &Path) -> Result<(), StepError> {
    let out = tokio::process::Command::new("cp")
        .arg("-a")
        .arg(backup.join("."))
        .arg(data)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| StepError::unavailable(format!("cannot run cp: {e}")))?;
    if !out.status.success() {
        return Err(StepError::failed(format!(
            "copying the base backup {} failed: {}",
            backup.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    for stale in ["postmaster.pid", "postmaster.opts"] {
        let _ = std::fs::remove_file(data.join(stale));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        StepError::failed(format!("cannot set permissions on {}: {e}", data.display()))
    })
}

/// Recovery settings, appended to `postgresql.auto.conf` (which wins over the copied
/// configuration). The copy inherits production's settings, so everything that could reach
/// outside the scratch directory is switched off: archiving and archive cleanup, replication
/// to or from production, an external pid file, a log collector writing elsewhere, TLS files,
/// logical replication workers; it listens on its private Unix socket only, with its own
/// `pg_hba.conf`.
fn configure(
    data: &Path,
    root: &Path,
    archive: &Path,
    socket: &Path,
    target: &Target,
) -> Result<(), StepError> {
    // exit 1 (not found) only when the segment is absent; a failed copy (disk full,
    // permissions) exits 255, which makes PostgreSQL stop instead of promoting early
    let seg = format!(
        "{}/%f",
        shell_quote(&archive.display().to_string().replace('%', "%%"))
    );
    let restore = format!("test -f {seg} || {{ echo \"restore_command: No such file or directory: %f\" >&2; exit 1; }}; cp {seg} %p || exit 255");
    let hba = root.join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\nhost all all 127.0.0.1/32 trust\n",
    )
    .map_err(|e| StepError::failed(format!("cannot write {}: {e}", hba.display())))?;
    let mut conf: Vec<(&str, String)> = vec![("restore_command", restore)];
    conf.push(("recovery_target_action", "promote".into()));
    for k in [
        "recovery_target",
        "recovery_target_time",
        "recovery_target_lsn",
        "recovery_target_name",
        "recovery_target_xid",
    ] {
        conf.push((k, String::new()));
    }
    for k in [
        "archive_cleanup_command",
        "recovery_end_command",
        "primary_conninfo",
        "primary_slot_name",
        "external_pid_file",
        "ssl_cert_file",
        "ssl_key_file",
        "ssl_ca_file",
        "ssl_crl_file",
    ] {
        conf.push((k, String::new()));
    }
    for (k, v) in [
        ("archive_mode", "off"),
        ("recovery_min_apply_delay", "0"),
        ("max_logical_replication_workers", "0"),
        ("ssl", "off"),
        ("logging_collector", "off"),
        ("log_destination", "stderr"),
        ("lc_messages", "C"),
        // a copy of production data: reachable only through a socket only its account can use
        ("listen_addresses", ""),
        ("unix_socket_permissions", "0700"),
    ] {
        conf.push((k, v.into()));
    }
    conf.push(("unix_socket_directories", socket.display().to_string()));
    conf.push(("hba_file", hba.display().to_string()));
    match target {
        Target::Latest => {}
        Target::Time(t) => conf.push((
            "recovery_target_time",
            t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        )),
        Target::Lsn(l) => conf.push(("recovery_target_lsn", l.clone())),
        Target::Name(n) => conf.push(("recovery_target_name", n.clone())),
    }
    // every value quoted, none spanning lines: a target or a path cannot add a setting
    let mut lines = String::from(
        "\n# drillbook local.restore: a scratch copy that must not reach outside its directory\n",
    );
    for (k, v) in conf {
        lines.push_str(&conf_line(k, &v).map_err(|e| StepError::failed(e.to_string()))?);
    }
    let auto = data.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
    text.push_str(&lines);
    std::fs::write(&auto, text)
        .map_err(|e| StepError::failed(format!("cannot write {}: {e}", auto.display())))?;
    // a standby.signal (pg_basebackup -R) would make the copy follow production forever
    let _ = std::fs::remove_file(data.join("standby.signal"));
    std::fs::write(data.join("recovery.signal"), "")
        .map_err(|e| StepError::failed(format!("cannot write recovery.signal: {e}")))
}

/// Waits until the instance leaves recovery, or says why it never will. Reads the control
/// file (`pg_controldata`) rather than logging in, so a role or pg_hba detail cannot make it
/// wait forever; fails when the server is gone or recovery paused.
async fn wait_promoted(
    cluster: &Cluster,
    archive: &Path,
    gap: Option<&str>,
) -> Result<(), StepError> {
    let data = cluster.data_dir().display().to_string();
    loop {
        let log = std::fs::read_to_string(cluster.log_file()).unwrap_or_default();
        if !cluster.handle().is_running() {
            return Err(StepError::failed(
                explain_failure(&log, gap, archive)
                    .unwrap_or_else(|| "the restored server stopped during recovery".into()),
            ));
        }
        if log.contains("recovery has paused") {
            return Err(StepError::failed("recovery paused before reaching the target (the restored server's settings are lower than the source's, or a pause was requested)"));
        }
        if let Ok(state) = cluster
            .run("pg_controldata", "pg_controldata", &["-D", &data])
            .await
        {
            if state
                .lines()
                .any(|l| l.starts_with("Database cluster state:") && l.contains("in production"))
            {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The cause of a failed recovery, from the server log, in the operator's terms. Connection
/// refusals during startup are not causes; a PANIC outranks a FATAL.
fn explain_failure(log: &str, gap: Option<&str>, archive: &Path) -> Option<String> {
    const NOISE: [&str; 3] = [
        "the database system is starting up",
        "the database system is shutting down",
        "the database system is not yet accepting connections",
    ];
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !NOISE.iter().any(|n| l.contains(n)))
        .collect();
    let pick = |marker: &str| {
        lines.iter().rev().find(|l| l.contains(marker)).map(|l| {
            l.split_once(marker)
                .map_or(*l, |(_, r)| r)
                .trim()
                .to_owned()
        })
    };
    let Some(fatal) = pick("PANIC:").or_else(|| pick("FATAL:")) else {
        let tail: Vec<&str> = lines.iter().rev().take(3).rev().copied().collect();
        return (!tail.is_empty()).then(|| {
            format!(
                "recovery failed; the server log ends with: {}",
                tail.join(" / ")
            )
        });
    };
    if fatal.contains("No space left on device") {
        return Some(format!("the disk is full: {fatal}"));
    }
    // a hole in the archive found before the restore: a segment was lost
    if let Some(missing) = gap {
        return Some(format!(
            "WAL segment {missing} is missing from the archive {}: recovery stopped there before reaching the target ({fatal})",
            archive.display()
        ));
    }
    // replay stopped at the first segment the restore command could not fetch: after the
    // archive's last segment, that is the end of the archive, not a loss
    let unfetched = first_unfetched_segment(log);
    let newest = newest_segment(archive);
    let past_the_end = match (&unfetched, &newest) {
        (Some(u), Some(n)) => n < u,
        _ => false,
    };
    let ended_early =
        fatal.contains("recovery ended before configured recovery target was reached");
    if past_the_end || (ended_early && unfetched.is_none()) {
        let last = recovered_to(log)
            .map(|t| format!("its last transaction is from {t}"))
            .or_else(|| newest.as_ref().map(|n| format!("it ends with segment {n}")))
            .unwrap_or_else(|| "it ends there".into());
        return Some(format!(
            "the target is after the newest archived transaction: recovery replayed all of the WAL archive {} ({last}) without reaching the target. Choose an earlier target, or wait until archiving has caught up (set `archive_timeout` so an idle server still archives); if the archive should reach further, its newest segments were lost ({fatal})",
            archive.display()
        ));
    }
    if let Some(missing) = unfetched {
        let context = newest
            .map(|n| format!("; the archive holds segments up to {n}"))
            .unwrap_or_default();
        return Some(format!(
            "WAL segment {missing} is missing from the archive {}: recovery stopped there before reaching the target ({fatal}{context})",
            archive.display()
        ));
    }
    Some(format!("recovery failed: {fatal}"))
}

/// The newest WAL segment file in the archive, by name.
fn newest_segment(archive: &Path) -> Option<String> {
    std::fs::read_dir(archive)
        .ok()?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .filter(|n| segment(n).is_some())
                .map(str::to_owned)
        })
        .max()
}

/// A WAL segment name from a failed `restore_command` (`cp: cannot stat '…/SEGMENT'`).
fn first_unfetched_segment(log: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("cannot stat") || l.contains("No such file"))
        .find_map(|l| {
            l.split(|c: char| !c.is_ascii_hexdigit())
                .find(|w| segment(w).is_some())
                .map(str::to_owned)
        })
}

/// When recovery stopped, from the server log, as RFC 3339 (the log writes
/// `2026-12-04 17:06:19.123456+00`).
fn recovered_to(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let at = l.split(", time ").nth(1).or_else(|| {
            l.split("last completed transaction was at log time ")
                .nth(1)
        })?;
        let at = at.trim();
        Some(match at.parse::<TimeSpec>() {
            Ok(TimeSpec::Absolute(t)) => rfc3339_precise(t),
            _ => at.to_owned(),
        })
    })
}

/// WAL replayed between "redo starts at" and "redo done at", in bytes.
fn wal_replayed(log: &str) -> Option<u64> {
    let lsn = |marker: &str| {
        log.lines()
            .find_map(|l| l.split(marker).nth(1))
            .and_then(|r| parse_lsn(r.split_whitespace().next()?))
    };
    Some(lsn("redo done at ")?.saturating_sub(lsn("redo starts at ")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("latest"), Target::Latest);
        assert_eq!(parse_target("0/5000028"), Target::Lsn("0/5000028".into()));
        assert!(matches!(
            parse_target("2026-11-28T09:00:00Z"),
            Target::Time(_)
        ));
        assert!(matches!(parse_target("now-1h"), Target::Time(_)));
        assert_eq!(
            parse_target("before-migration"),
            Target::Name("before-migration".into())
        );
    }

    #[test]
    fn segments_and_lsns() {
        assert_eq!(segment_name(1, 0x100), "000000010000000100000000");
        let log = "cp: cannot stat '/a/00000002.history': No such file or directory\ncp: cannot stat '/a/000000010000000000000007': No such file or directory\nFATAL:  recovery ended before configured recovery target was reached";
        assert_eq!(
            first_unfetched_segment(log).as_deref(),
            Some("000000010000000000000007")
        );
        assert_eq!(
            wal_replayed(
                "LOG:  redo starts at 0/2000028\nLOG:  redo done at 0/5000110 system usage"
            ),
            Some(0x500_0110 - 0x200_0028)
        );
    }
}
