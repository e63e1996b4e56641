//! `barman.recover`: the backup that fits the target is chosen from Barman's catalogue, the
//! scratch instance is registered for undo before anything exists, `barman recover` fills
//! its data directory as Barman's account (the target in PostgreSQL's own format, promoted
//! at the target), the files are handed to the server's account, and the instance starts as
//! `local.start` starts one: archiving off, a private socket and its own `pg_hba.conf`,
//! recovery from the WAL Barman copied beside it, promotion awaited, a failure explained.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{
    ask, backups, barman_account, barman_showing, barman_time, choose, explain, target_time,
};
use crate::kind::barman::{BarmanRecover, BarmanTarget};
use crate::pg::cluster::{find_binaries, Cluster};
use crate::record::Outputs;
use crate::steps::local::recovery::{self, Lifetime, WalSource};
use crate::steps::local::{cluster_error, scratch_dir};
use crate::steps::{Run, StepCx, StepError};
use crate::timestamp::{rfc3339, rfc3339_precise};

impl Run for BarmanRecover {
    async fn run<'a>(&'a self, cx: &'a StepCx<'a>) -> Result<Outputs, StepError> {
        let config = self.config.as_deref();
        let server = self.server.as_str();
        let target = BarmanTarget::parse(&self.target).map_err(StepError::failed)?;
        let now = Utc::now();
        let at = target_time(&target, now);
        if let Some(t) = at.filter(|t| *t > now) {
            return Err(StepError::failed(format!(
                "the target {} is in the future",
                rfc3339(t)
            )));
        }
        // what to recover is settled before anything exists
        let listed = backups(None, config, server).await?;
        let chosen = choose(server, &listed, self.backup_id.as_deref(), at)?;
        let shown = ask(None, config, "show-backup", server, &[chosen.id.as_str()]).await?;
        let info = &shown["base_backup_information"];
        let mut out = Outputs::new();
        out.insert("backup_id".into(), chosen.id.clone().into());
        for (key, field) in [("begin_time", "begin_time"), ("end_time", "end_time")] {
            if let Some(t) = info[field].as_str() {
                out.insert(key.into(), barman_time(t).into());
            }
        }
        if let Some(w) = info["end_wal"].as_str() {
            out.insert("end_wal".into(), w.into());
        }
        if let Some(t) = info["timeline"].as_u64() {
            out.insert("timeline".into(), t.into());
        }

        let bin = find_binaries().map_err(cluster_error)?;
        let account = barman_account()?;
        let root = scratch_dir(cx, self.dir.as_deref());
        // registered before anything exists, so an interrupt at any point leaves nothing
        crate::steps::local::register_instance(cx, &bin, &root, "recovered instance")?;
        let mut cluster = Cluster::prepare(bin, &root).map_err(cluster_error)?;
        let data = cluster.data_dir();
        give_to_barman(&root, &data, account.as_ref())?;

        let mut args: Vec<String> = vec!["recover".into()];
        match (&target, at) {
            (BarmanTarget::Latest, _) => {}
            // Barman writes the time into recovery_target_time as given: PostgreSQL's format
            (BarmanTarget::Time(_), Some(t)) => {
                args.push("--target-time".into());
                args.push(t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string());
            }
            (BarmanTarget::Time(t), None) => {
                return Err(StepError::failed(format!("target `{t}` is not a time")))
            }
            (BarmanTarget::Xid(x), _) => {
                args.push("--target-xid".into());
                args.push(x.to_string());
            }
            (BarmanTarget::Lsn(l), _) => {
                args.push("--target-lsn".into());
                args.push(l.clone());
            }
            (BarmanTarget::Name(n), _) => {
                args.push("--target-name".into());
                args.push(n.clone());
            }
        }
        let pitr = target != BarmanTarget::Latest;
        if pitr {
            // Barman's default leaves the copy paused at the target
            args.extend(["--target-action".into(), "promote".into()]);
        }
        args.extend([
            server.to_owned(),
            chosen.id.clone(),
            data.display().to_string(),
        ]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let progress = cx
            .interaction
            .progress("barman recover", crate::progress::Unit::None);
        let said = barman_showing(config, &argv, &progress, &|l| cx.redactor.redact(l)).await?;
        drop(progress);
        if let Some(e) = said.errors() {
            return Err(
                StepError::failed(recover_error(&e, server, config, &data)).with_outputs(out)
            );
        }
        if !said.success {
            return Err(StepError::failed(format!(
                "`barman recover` of backup `{}` failed: {}",
                chosen.id,
                super::last_line(&said.stderr)
            ))
            .with_outputs(out));
        }
        cluster.hand_over_tree(&data).map_err(cluster_error)?;
        // a point-in-time recovery reads the WAL Barman copied beside the data (`barman_wal`,
        // with drillbook's own copy command, so a missing segment is named); a full one finds
        // every segment in pg_wal, where Barman put them, and asks for none
        let copied = data.join("barman_wal");
        let wal = if pitr {
            WalSource::Archive(&copied)
        } else {
            WalSource::Command("false")
        };
        let started = match recovery::start(
            &mut cluster,
            wal,
            None,
            None,
            Lifetime::of(self.keep),
            &cx.interaction
                .progress("WAL replayed", crate::progress::Unit::Items),
        )
        .await
        {
            Ok(s) => s,
            Err(mut e) => {
                e.message = e.message.replace(
                    &format!("the WAL archive {}", copied.display()),
                    &format!(
                        "the WAL Barman copied from server `{server}` ({})",
                        copied.display()
                    ),
                );
                return Err(e.with_outputs(out));
            }
        };
        let uri =
            recovery::connection_uri(cx, &cluster, None, self.database.as_deref(), None).await?;
        let target_text = match (&target, at) {
            (BarmanTarget::Time(_), Some(t)) => rfc3339_precise(t),
            (BarmanTarget::Xid(x), _) => format!("xid:{x}"),
            _ => self.target.trim().to_owned(),
        };
        let mut all = recovery::outputs(&cluster, uri, target_text, &started);
        all.extend(out);
        if self.keep {
            recovery::keep(cx, &cluster, &mut all);
        }
        // the undo registered above stops it (unless kept); dropping the value must not
        let _ = cluster.detach();
        Ok(all)
    }
}

/// The data directory, new and empty, Barman's to fill: the instance's root must let
/// Barman's account through to it.
fn give_to_barman(
    root: &Path,
    data: &Path,
    account: Option<&super::Account>,
) -> Result<(), StepError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what: &str, p: &Path, e: std::io::Error| {
        StepError::failed(format!("cannot {what} {}: {e}", p.display()))
    };
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))
        .map_err(|e| io("set permissions on", root, e))?;
    std::fs::create_dir(data).map_err(|e| io("create", data, e))?;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("set permissions on", data, e))?;
    if let Some(a) = account {
        std::os::unix::fs::chown(data, Some(a.uid), Some(a.gid))
            .map_err(|e| io("hand to Barman's account", data, e))?;
    }
    Ok(())
}

/// A failed `barman recover`, in the operator's words.
fn recover_error(error: &str, server: &str, config: Option<&str>, data: &Path) -> String {
    if error.contains("is before the backup end time") {
        return format!("{error}: recovery cannot go back past the end of its backup; choose an older backup or leave `backup_id` out");
    }
    if error.contains("unable to initialise destination directory") {
        let parent = data.parent().map(PathBuf::from).unwrap_or_default();
        return format!(
            "Barman's account cannot write into {}: give `dir` under a directory it can enter ({error})",
            parent.display()
        );
    }
    explain(error, server, config)
}
