//! Starting a filled data directory as a recovered scratch instance, shared by
//! `local.restore` (which fills it from a base backup) and `local.start` (which adopts one
//! another tool filled): the recovery settings and the sanitized configuration, the start,
//! the wait for promotion, the explanation of a failed recovery, and what recovery reports
//! (`recovered_to`, the WAL replayed).

use std::path::Path;

use chrono::{DateTime, Utc};

use super::backups::{parse_lsn, read_label, segment};
use super::wal_ahead::{self, WalAhead};
use crate::pg::cluster::{conf_line, shell_quote, Cluster};
use crate::progress::Progress;
use crate::record::Outputs;
use crate::steps::{db, StepCx, StepError};
use crate::timestamp::{rfc3339_precise, TimeSpec};

/// What recovery should stop at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    Latest,
    Time(DateTime<Utc>),
    Lsn(String),
    Name(String),
}

pub(crate) fn parse_target(text: &str) -> Target {
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

/// What a started recovery reported.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    /// The last transaction's commit time recovery reached, when the log says.
    pub recovered_to: Option<String>,
    pub wal_replayed_bytes: Option<u64>,
    pub promoted_in: std::time::Duration,
}

/// Whether the started instance outlives the run, which decides how safely it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Removed at the end of the run: it runs with `fsync = off`. Nothing it writes has to
    /// survive a crash of the machine, and the start skips syncing the whole copied data
    /// directory, which is most of a restore's time on a busy disk.
    Throwaway,
    /// Kept after the run (`keep`): durable, as the source's settings say.
    Kept,
}

impl Lifetime {
    pub(crate) fn of(keep: bool) -> Lifetime {
        if keep {
            Lifetime::Kept
        } else {
            Lifetime::Throwaway
        }
    }
}

/// Configures the filled data directory of `cluster` for recovery from `wal` to `target`
/// (None: the target the tool wrote, if any), makes it private, starts it and waits for its
/// promotion; `gap` is a hole found in the archive beforehand (for the explanation). WAL from
/// an archive directory is staged ahead of replay ([`WalAhead`]) when the directory's
/// `backup_label` says where it begins.
pub(crate) async fn start(
    cluster: &mut Cluster,
    wal: WalSource<'_>,
    target: Option<&Target>,
    gap: Option<&str>,
    lifetime: Lifetime,
    replay: &Progress,
) -> Result<Started, StepError> {
    let data = cluster.data_dir();
    let label = read_label(&data).ok();
    let needed = match (wal, &label) {
        (WalSource::Archive(archive), Some(label)) => {
            wal_ahead::needed_at_most(archive, &label.start_segment)
        }
        _ => 0,
    };
    let replay = Replay {
        shown: replay,
        needed,
    };
    let ahead = match wal {
        WalSource::Archive(archive) => label.and_then(|label| {
            WalAhead::start(
                archive,
                &label.start_segment,
                cluster.root.join("wal-ahead"),
                cluster.account(),
            )
        }),
        _ => None,
    };
    configure(
        &data,
        &cluster.root.clone(),
        &cluster.socket_dir(),
        wal,
        ahead.as_ref().map(WalAhead::dir),
        target,
        lifetime,
    )?;
    cluster.make_private();
    let clock = tokio::time::Instant::now();
    let promoted = start_and_promote(cluster, wal, gap, &replay).await;
    // recovery is over (or failed): no segment is asked for any more
    drop(ahead);
    promoted?;
    let promoted_in = clock.elapsed();
    // connections name a role; the one every cluster has is its bootstrap superuser
    if let Ok(name) = crate::pg::authid::bootstrap_superuser(&data) {
        cluster.set_superuser(&name);
    }
    let log = std::fs::read_to_string(cluster.log_file()).unwrap_or_default();
    Ok(Started {
        recovered_to: recovered_to(&log),
        wal_replayed_bytes: wal_replayed(&log),
        promoted_in,
    })
}

/// The WAL segments replayed, shown against those the archive holds from the backup's start
/// (`needed`, 0 when unknown): a target may stop recovery before their end.
struct Replay<'a> {
    shown: &'a Progress,
    needed: u64,
}

impl Replay<'_> {
    fn show(&self, restored: u64) {
        if restored == 0 {
            return;
        }
        self.shown.set_length(self.needed.max(restored));
        self.shown.set_position(restored);
        if self.needed > 0 {
            self.shown
                .message("segments (at most: a target may stop it earlier)");
        }
    }
}

/// Starts the configured instance and waits until it is promoted.
async fn start_and_promote(
    cluster: &mut Cluster,
    wal: WalSource<'_>,
    gap: Option<&str>,
    replay: &Replay<'_>,
) -> Result<(), StepError> {
    // a large restore may take long to become consistent; the caller's deadline governs
    let started = cluster.start_waiting(86_400).await;
    if let Err(e) = started {
        let log = std::fs::read_to_string(cluster.log_file()).unwrap_or_default();
        return Err(StepError::failed(
            explain_failure(&log, gap, wal.archive()).unwrap_or_else(|| e.to_string()),
        ));
    }
    wait_promoted(cluster, wal.archive(), gap, replay).await
}

/// The target as recovery was given it: a time resolved and written RFC 3339.
pub(crate) fn target_text(target: &Target, written: &str) -> String {
    match target {
        Target::Time(t) => rfc3339_precise(*t),
        _ => written.to_owned(),
    }
}

/// Who connects to the started instance, and to which database: the step's `user` (else the
/// bootstrap superuser) and `database`, else the database of `source` (named as in
/// production), else `postgres`.
pub(crate) async fn connection_uri(
    cx: &StepCx<'_>,
    cluster: &Cluster,
    source: Option<&str>,
    database: Option<&str>,
    user: Option<&str>,
) -> Result<String, StepError> {
    let source_database = match source {
        Some(source) => db::resolve(cx, source)
            .await?
            .config
            .get_dbname()
            .map(str::to_owned),
        None => None,
    };
    let database = database
        .map(str::to_owned)
        .or(source_database)
        .unwrap_or_else(|| "postgres".into());
    Ok(match user {
        Some(user) => cluster.url_as(user, &database),
        None => cluster.url(&database),
    })
}

/// The outputs every started instance has (see `kind::local::restore::started_outputs`).
pub(crate) fn outputs(
    cluster: &Cluster,
    uri: String,
    target: String,
    started: &Started,
) -> Outputs {
    let mut out = Outputs::new();
    out.insert("connection_uri".into(), uri.into());
    out.insert("port".into(), cluster.port.into());
    out.insert("dir".into(), cluster.root.display().to_string().into());
    out.insert(
        "data_dir".into(),
        cluster.data_dir().display().to_string().into(),
    );
    out.insert("target".into(), target.into());
    if let Some(t) = &started.recovered_to {
        out.insert("recovered_to".into(), t.clone().into());
    }
    if let Some(bytes) = started.wal_replayed_bytes {
        out.insert("wal_replayed_bytes".into(), bytes.into());
    }
    out.insert(
        "promoted_in_ms".into(),
        u64::try_from(started.promoted_in.as_millis())
            .unwrap_or(u64::MAX)
            .into(),
    );
    out
}

/// Where recovery reads WAL from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WalSource<'a> {
    /// drillbook's own `cp` from an archive directory.
    Archive(&'a Path),
    /// A command (`%f`, `%p`) written as `restore_command`.
    Command(&'a str),
    /// The `restore_command` the tool that filled the directory wrote.
    Kept,
}

impl WalSource<'_> {
    /// The archive directory, when recovery reads one (for messages naming segments).
    fn archive(&self) -> Option<&Path> {
        match self {
            WalSource::Archive(a) => Some(a),
            _ => None,
        }
    }
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
    socket: &Path,
    wal: WalSource<'_>,
    ahead: Option<&Path>,
    target: Option<&Target>,
    lifetime: Lifetime,
) -> Result<(), StepError> {
    let hba = root.join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\nhost all all 127.0.0.1/32 trust\n",
    )
    .map_err(|e| StepError::failed(format!("cannot write {}: {e}", hba.display())))?;
    let mut conf: Vec<(&str, String)> = Vec::new();
    match wal {
        WalSource::Archive(archive) => {
            // exit 1 (not found) only when the segment is absent; a failed copy (disk full,
            // permissions) exits 255, which makes PostgreSQL stop instead of promoting early
            let in_dir = |dir: &Path| {
                format!(
                    "{}/%f",
                    shell_quote(&dir.display().to_string().replace('%', "%%"))
                )
            };
            let seg = in_dir(archive);
            // a segment staged ahead is moved into place; one that is not (yet), or that
            // cannot be moved, is copied from the archive as before
            let staged = ahead
                .map(|dir| {
                    let s = in_dir(dir);
                    format!("if test -f {s}; then mv -f {s} %p && exit 0; fi; ")
                })
                .unwrap_or_default();
            conf.push(("restore_command", format!("{staged}test -f {seg} || {{ echo \"restore_command: No such file or directory: %f\" >&2; exit 1; }}; cp {seg} %p || exit 255")));
        }
        WalSource::Command(command) => conf.push(("restore_command", command.to_owned())),
        WalSource::Kept => {
            if !writes_setting(data, "restore_command") {
                return Err(StepError::failed(format!(
                    "{} has no restore_command: the tool that filled it wrote none; give `wal_archive` or `restore_command`",
                    data.display()
                )));
            }
        }
    }
    // the tool's target may pause at it: the copy is always promoted
    conf.push(("recovery_target_action", "promote".into()));
    if let Some(target) = target {
        for k in [
            "recovery_target",
            "recovery_target_time",
            "recovery_target_lsn",
            "recovery_target_name",
            "recovery_target_xid",
        ] {
            conf.push((k, String::new()));
        }
        match target {
            Target::Latest => {}
            Target::Time(t) => conf.push((
                "recovery_target_time",
                t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            )),
            Target::Lsn(l) => conf.push(("recovery_target_lsn", l.clone())),
            Target::Name(n) => conf.push(("recovery_target_name", n.clone())),
        }
        // an LSN is a position: the state there is the WAL before it, so the record that
        // starts at it is not replayed (a fingerprint's `consistent_point` is exactly such
        // a position, and the commit that may start there is not in its snapshot)
        let exclusive = matches!(target, Target::Lsn(_));
        conf.push((
            "recovery_target_inclusive",
            if exclusive { "off" } else { "on" }.into(),
        ));
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
    // a kept copy is as durable as its source's settings make it
    if lifetime == Lifetime::Throwaway {
        conf.push(("fsync", "off".into()));
    }
    conf.push(("unix_socket_directories", socket.display().to_string()));
    conf.push(("hba_file", hba.display().to_string()));
    // every value quoted, none spanning lines: a target or a path cannot add a setting
    let mut lines =
        String::from("\n# drillbook: a scratch copy that must not reach outside its directory\n");
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

/// Whether `postgresql.auto.conf` or `postgresql.conf` in `data` sets `name` to something
/// (the last setting wins, as for the server; an empty value sets nothing).
fn writes_setting(data: &Path, name: &str) -> bool {
    let mut set = false;
    for file in ["postgresql.conf", "postgresql.auto.conf"] {
        let text = std::fs::read_to_string(data.join(file)).unwrap_or_default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            if k.trim() == name {
                let v = v.trim().trim_matches('\'');
                set = !v.is_empty();
            }
        }
    }
    set
}

/// Waits until the instance leaves recovery, or says why it never will. Reads the control
/// file (`pg_controldata`) rather than logging in, so a role or pg_hba detail cannot make it
/// wait forever; fails when the server is gone or recovery paused.
async fn wait_promoted(
    cluster: &Cluster,
    archive: Option<&Path>,
    gap: Option<&str>,
    replay: &Replay<'_>,
) -> Result<(), StepError> {
    let data = cluster.data_dir().display().to_string();
    loop {
        let log = std::fs::read_to_string(cluster.log_file()).unwrap_or_default();
        replay.show(log.matches("restored log file").count() as u64);
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
fn explain_failure(log: &str, gap: Option<&str>, archive: Option<&Path>) -> Option<String> {
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
    // with the tool's own restore command, what the log says is all there is
    let Some(archive) = archive else {
        return Some(format!("recovery failed: {fatal}"));
    };
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

/// `keep`: the instance stays after the run. Its undo is given up (so neither cleanup nor
/// `drillbook gc` removes it) and the outputs say how to connect to it and how to stop it.
pub(crate) fn keep(cx: &StepCx<'_>, cluster: &Cluster, out: &mut Outputs) {
    let root = cluster.root.clone();
    cx.undo.release(
        |u| !matches!(u, crate::steps::Undo::Cluster { handle, .. } if handle.root == root),
    );
    let as_server = if cluster.account().is_some() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let uri = out
        .get("connection_uri")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    out.insert("kept".into(), true.into());
    out.insert("psql_command".into(), format!("psql '{uri}'").into());
    out.insert(
        "stop_command".into(),
        format!(
            "{as_server}{} stop -D {} && rm -rf {}",
            shell_quote(&cluster.bin.dir.join("pg_ctl").display().to_string()),
            shell_quote(&cluster.data_dir().display().to_string()),
            shell_quote(&root.display().to_string())
        )
        .into(),
    );
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
    fn what_recovery_logged() {
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

    #[test]
    fn a_setting_the_tool_wrote_is_found_last_one_winning() {
        let dir = std::env::temp_dir().join(format!("drillbook-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("postgresql.conf"),
            "restore_command = 'cp /a/%f %p' # x\n",
        )
        .expect("conf");
        assert!(writes_setting(&dir, "restore_command"));
        std::fs::write(dir.join("postgresql.auto.conf"), "restore_command = ''\n").expect("auto");
        assert!(!writes_setting(&dir, "restore_command"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
