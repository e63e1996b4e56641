//! By hand: what a person does instead of drillbook, for every step kind: the shell
//! command, the psql query, or the Neon Console path and the equivalent `neon` CLI call.

use super::checks::{a_summary, expectation};
use super::text::{code, code_block, db_label, list, prose};
use crate::kind::compare::{RowCounts, Samples, Selection};
use crate::kind::StepKind;
use crate::redact::is_secret_name;
use crate::runbook::raw::TargetKind;
use crate::runbook::Runbook;

pub(super) struct ByHand {
    /// One line (composed: passed through `md` by the caller).
    pub(super) text: String,
    /// Prose shown after the step's bullets (a manual step's instructions).
    pub(super) instructions: Option<String>,
    /// A fenced code block: language and text.
    pub(super) code: Option<(&'static str, String)>,
}

impl ByHand {
    fn line(text: String) -> ByHand {
        ByHand {
            text,
            instructions: None,
            code: None,
        }
    }

    fn with_code(text: String, lang: &'static str, body: &str) -> ByHand {
        ByHand {
            text,
            instructions: None,
            code: Some((lang, code_block(body))),
        }
    }
}

fn neon_project(runbook: &Runbook, target: &str) -> String {
    match runbook.targets.get(target).map(|t| &t.kind) {
        Some(TargetKind::Neon(n)) => n.project_id.clone(),
        _ => "<project>".into(),
    }
}

pub(super) fn neon_branch(runbook: &Runbook, target: &str) -> Option<String> {
    match runbook.targets.get(target).map(|t| &t.kind) {
        Some(TargetKind::Neon(n)) => n.branch.clone(),
        _ => None,
    }
}

/// A `local.restore`'s base backup and WAL archive, as written: its own fields, or those of
/// the `local` target its `backups` names.
fn local_restore_paths(
    runbook: &Runbook,
    r: &crate::kind::local::LocalRestore,
) -> (String, String) {
    let from_target = r.backups.as_deref().map(|name| {
        let local = match runbook.targets.get(name).map(|t| &t.kind) {
            Some(TargetKind::Local(l)) => Some(l),
            _ => None,
        };
        let field = |v: Option<&Option<String>>, what: &str| {
            v.and_then(Option::clone)
                .unwrap_or_else(|| format!("<the {what} of target `{name}`>"))
        };
        (
            field(local.map(|l| &l.base_backup), "base backup"),
            field(local.map(|l| &l.wal_archive), "WAL archive"),
        )
    });
    from_target.unwrap_or_else(|| {
        (
            r.base_backup.clone().unwrap_or_default(),
            r.wal_archive.clone().unwrap_or_default(),
        )
    })
}

/// A restored data directory started safely by hand, after `fill` put it in place: what
/// `local.restore` and `local.start` do.
fn start_by_hand(fill: &str, wal: &str, target: &str) -> String {
    format!(
        "{fill} owned by the server's account (as root: {}) with permissions 0700; in its {} \
         set {} (a promoted copy would archive a new timeline into production's archive), a \
         free {} and {} with {} a private directory, so nothing connects to it by mistake, and \
         {wal}; {target}; create {}; start the server with {} and wait until {} returns \
         false; then connect with {} (the {} later steps use)",
        code("postgres"),
        code("postgresql.conf"),
        code("archive_mode = off"),
        code("port"),
        code("listen_addresses = ''"),
        code("unix_socket_directories"),
        code("recovery.signal"),
        code("pg_ctl -D DATA start"),
        code("SELECT pg_is_in_recovery()"),
        code("psql -h SOCKET_DIR -p PORT -U SUPERUSER DATABASE"),
        code("connection_uri")
    )
}

/// What to do with a recovered instance that is kept (`keep: true`): leave it running, and
/// take a new full backup before relying on it.
fn kept(keep: bool) -> &'static str {
    if keep {
        ". Leave it running: it is what this recovery is for. Once promoted it is on a new \
         timeline: if it is to serve, take a new full base backup of it before relying on \
         it (the old backups cannot recover its new writes)"
    } else {
        ""
    }
}

/// `restore_command` copying from an archive directory; postgresql.conf expands no
/// variables, so a path from the environment is written out.
fn archive_restore_command(wal_archive: &str) -> String {
    if crate::template::is_template(wal_archive) {
        format!(
            "{}, with ARCHIVE the WAL archive's absolute path ({wal_archive}; the file expands no variables)",
            code("restore_command = 'cp ARCHIVE/%f %p'"),
        )
    } else {
        code(&format!("restore_command = 'cp {wal_archive}/%f %p'"))
    }
}

/// The recovery target settings for `target` (None: the one the tool wrote).
/// A pgBackRest command line for the document.
fn pgbr(config: &Option<String>, stanza: &str, rest: &str) -> String {
    let config = config
        .as_deref()
        .map(|c| format!(" --config={c}"))
        .unwrap_or_default();
    format!("pgbackrest{config} --stanza={stanza} {rest}")
}

fn target_settings(target: Option<&str>) -> String {
    let promote = code("recovery_target_action = 'promote'");
    let Some(t) = target.map(str::trim) else {
        return format!("keep the tool's recovery target, and set {promote}");
    };
    if t == "latest" {
        return format!(
            "leave the recovery target unset (replay the whole archive), and set {promote}"
        );
    }
    let lsn = t.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && (a.to_owned() + b).chars().all(|c| c.is_ascii_hexdigit())
    });
    let setting = if lsn {
        "recovery_target_lsn"
    } else if crate::template::is_template(t) || t.parse::<crate::timestamp::TimeSpec>().is_ok() {
        "recovery_target_time"
    } else {
        "recovery_target_name"
    };
    format!("set {} and {promote}", code(&format!("{setting} = '{t}'")))
}

pub(super) fn by_hand(runbook: &Runbook, kind: &StepKind) -> ByHand {
    use crate::kind::assert::{Assert, AssertSpec};
    use crate::kind::http::Http;
    use crate::kind::manual::Manual;
    use crate::kind::shell::Shell;
    use crate::kind::wait::Wait;

    let cli = |target: &str, args: String| {
        code(&format!(
            "neon {args} --project-id {}",
            neon_project(runbook, target)
        ))
    };
    match kind {
        StepKind::Shell(shell) => {
            let (command, env, dir) = match shell {
                Shell::Script(s) => (s.clone(), Vec::new(), None),
                Shell::Full(s) => (
                    s.run
                        .clone()
                        .unwrap_or_else(|| s.argv.as_deref().unwrap_or_default().join(" ")),
                    s.env
                        .iter()
                        .map(|(k, v)| {
                            let value = if is_secret_name(k) { "***" } else { &v.0 };
                            format!("export {k}=\"{value}\"")
                        })
                        .collect(),
                    s.dir.clone(),
                ),
            };
            let mut body = env.join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            body.push_str(&command);
            let place = dir.map(|d| format!(" in {}", code(&d))).unwrap_or_default();
            ByHand::with_code(format!("run this in a shell{place}:"), "sh", &body)
        }
        StepKind::Http(http) => {
            let (method, url) = match http {
                Http::Get(url) => ("GET".to_owned(), url.clone()),
                Http::Full(s) => (s.method.to_uppercase(), s.url.clone()),
            };
            ByHand::line(format!(
                "send the request with curl: {}",
                code(&format!("curl -X {method} '{url}'"))
            ))
        }
        StepKind::Manual(m) => {
            let (text, confirm) = match m {
                Manual::Text(t) => (t.as_str(), false),
                Manual::Full(s) => (s.instructions.as_str(), s.confirm),
            };
            ByHand {
                text: if confirm {
                    "follow these instructions, then confirm that they are done:".into()
                } else {
                    "follow these instructions:".into()
                },
                instructions: Some(prose(text)),
                code: None,
            }
        }
        StepKind::Wait(Wait::Fixed(d)) => ByHand::line(format!("wait {d}")),
        StepKind::Wait(Wait::Poll(p)) => {
            let inner = by_hand(runbook, &p.poll);
            let until = p
                .until
                .as_deref()
                .map(|u| format!(" until {}", code(u)))
                .unwrap_or_default();
            ByHand {
                text: format!(
                    "repeat every {}{until}, for at most {}: {}",
                    p.interval, p.deadline, inner.text
                ),
                ..inner
            }
        }
        StepKind::Assert(Assert::Full(AssertSpec {
            db: Some(db), sql, ..
        })) if !sql.is_empty() => {
            let body: Vec<String> = sql
                .iter()
                .map(|(name, q)| format!("-- {name}\n{};", q.trim().trim_end_matches(';')))
                .collect();
            ByHand::with_code(
                format!(
                    "run each query with psql on {}; each holds when it returns a single \
                     {} or no rows at all (a query that lists violations):",
                    db_label(runbook, db),
                    code("true")
                ),
                "sql",
                &body.join("\n\n"),
            )
        }
        StepKind::Assert(a) => ByHand::line(format!("check that {}", code(&a_summary(a)))),
        StepKind::Sql(s) => {
            let params = if s.params.is_empty() {
                String::new()
            } else {
                let values: Vec<String> = s
                    .params
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let v = v.as_ref().map_or("NULL", |t| t.0.as_str());
                        code(&format!("${} = {v}", i + 1))
                    })
                    .collect();
                format!(" with {}", list(&values))
            };
            let expect = s
                .expect
                .as_ref()
                .map(|e| format!("; expect {}", expectation(e)))
                .unwrap_or_default();
            ByHand::with_code(
                format!(
                    "run the query with psql on {}{params}{expect}:",
                    db_label(runbook, &s.db)
                ),
                "sql",
                &s.query,
            )
        }
        StepKind::Freshness(f) => {
            let query = match (&f.sql, &f.table, &f.column) {
                (Some(q), _, _) => q.clone(),
                (None, Some(t), Some(c)) => format!("SELECT max({c}) FROM {t};"),
                _ => "SELECT max(<timestamp column>) FROM <table>;".into(),
            };
            let lag = f
                .max_lag
                .map(|l| format!(", and at most {l} before it"))
                .unwrap_or_default();
            ByHand::with_code(
                format!(
                    "run the query with psql on {}: the result must be at or before {}{lag}:",
                    db_label(runbook, &f.db),
                    f.target
                ),
                "sql",
                &query,
            )
        }
        StepKind::Compare(c) if c.fingerprint.is_some() => ByHand::line(format!(
            "with psql on {}, compute per table `SELECT count(*), \
             bit_xor(hash_record_extended(t, 0)) FROM <table> t` and compare with the \
             counts and sums noted by hand at step `{}` (drillbook's own hashes are \
             computed another way, so compare by-hand figures with by-hand figures)",
            db_label(runbook, &c.restored),
            c.fingerprint.as_deref().unwrap_or_default()
        )),
        StepKind::Compare(c) => {
            let mut how = Vec::new();
            if c.row_counts != RowCounts::Enabled(false) {
                how.push(format!("{} of each table", code("SELECT count(*)")));
            }
            if c.schema {
                how.push(format!(
                    "the output of {} (diffed)",
                    code("pg_dump --schema-only")
                ));
            }
            if c.checksums != Selection::Every(false) || c.samples != Samples::Rows(0) {
                how.push("rows fetched by primary key".into());
            }
            if how.is_empty() {
                how.push("the tables".into());
            }
            ByHand::line(format!(
                "with psql on {} and on {}, compare {}",
                db_label(runbook, &c.source),
                db_label(runbook, &c.restored),
                list(&how)
            ))
        }
        StepKind::LocalCluster(_) => ByHand::line(format!(
            "create a scratch cluster with {}, set {} and an {} that copies into an archive \
             directory, and start it with {}",
            code("initdb"),
            code("archive_mode = on"),
            code("archive_command"),
            code("pg_ctl")
        )),
        StepKind::LocalBaseBackup(b) => ByHand::line(format!(
            "{} from {}",
            code(&format!(
                "pg_basebackup -D {} -Fp -Xs -c fast",
                b.dir.as_deref().unwrap_or("<dir>")
            )),
            db_label(runbook, &b.db)
        )),
        StepKind::LocalRestorePoint(r) => ByHand::line(format!(
            "run {} with psql on {}",
            code(&format!("SELECT pg_create_restore_point('{}')", r.name)),
            db_label(runbook, &r.db)
        )),
        StepKind::LocalRestore(r) => {
            let (base_backup, wal_archive) = local_restore_paths(runbook, r);
            // a backup a step just took is one; one from elsewhere may be a directory of them
            let which = if base_backup.contains("steps.") {
                String::new()
            } else if r.target.trim() == "latest" {
                " (when it holds several, one per directory, the newest)".to_owned()
            } else {
                " (when it holds several, one per directory, the newest one finished before \
                 the target)"
                    .to_owned()
            };
            ByHand::line(
                start_by_hand(
                    &format!(
                        "copy the base backup {}{which} into a new data directory",
                        code(&base_backup)
                    ),
                    &archive_restore_command(&wal_archive),
                    &target_settings(Some(&r.target)),
                ) + kept(r.keep),
            )
        }
        StepKind::LocalStart(l) => {
            let wal = match (&l.wal_archive, &l.restore_command) {
                (Some(a), _) => archive_restore_command(a),
                (None, Some(c)) => code(&format!("restore_command = '{c}'")),
                (None, None) => "keep the tool's own `restore_command`".to_owned(),
            };
            ByHand::line(
                start_by_hand(
                    &format!(
                        "move the data directory {} the tool filled into a new directory",
                        code(&l.data_dir)
                    ),
                    &wal,
                    &target_settings(l.target.as_deref()),
                ) + kept(l.keep),
            )
        }
        StepKind::PgbackrestRestore(r) => {
            let config = r
                .config
                .as_deref()
                .map(|c| format!(" --config={c}"))
                .unwrap_or_default();
            let target = match r.target.trim() {
                "latest" => "--type=default".to_owned(),
                t if t.starts_with("xid:") => format!(
                    "--type=xid --target={} --target-action=promote",
                    t.trim_start_matches("xid:")
                ),
                t => format!(
                    "--type=<time|lsn|name> --target='{t}' --target-action=promote (a time written `YYYY-MM-DD HH:MM:SS+00`)"
                ),
            };
            ByHand::line(start_by_hand(
                &format!(
                    "as {}, fill a new data directory with {}",
                    code("postgres"),
                    code(&format!(
                        "pgbackrest{config} --stanza={} restore --pg1-path=<dir>/data --archive-mode=off {target}",
                        r.stanza
                    ))
                ),
                "keep pgBackRest's own `restore_command` (`archive-get`)",
                &target_settings(None),
            ))
        }
        StepKind::PgbackrestStanza(c) => ByHand::line(format!(
            "run {}: {} is 0 (`ok`) for the stanza and every repository",
            code(&pgbr(&c.config, &c.stanza, "--output=json info")),
            code("status.code")
        )),
        StepKind::PgbackrestBackupAge(c) => ByHand::line(format!(
            "run {}: the newest {} backup without an error stopped recently enough",
            code(&pgbr(&c.config, &c.stanza, "info")),
            c.backup_type.as_str()
        )),
        StepKind::PgbackrestRetention(c) => ByHand::line(format!(
            "run {}: the oldest backup is old enough for the restore window, there are enough full sets and days with a backup, and the archive starts before the oldest set",
            code(&pgbr(&c.config, &c.stanza, "info"))
        )),
        StepKind::PgbackrestArchive(c) => ByHand::line(format!(
            "run {}: the newest WAL segment of the archive reached the repository recently",
            code(&pgbr(&c.config, &c.stanza, "--output=json repo-ls archive/<stanza>/<archive id>/<first 16 characters of the newest segment>"))
        )),
        StepKind::PgbackrestEncryption(c) => ByHand::line(format!(
            "run {}: every repository's cipher is {}",
            code(&pgbr(&c.config, &c.stanza, "info")),
            code(c.cipher.as_deref().unwrap_or("aes-256-cbc"))
        )),
        StepKind::PgbackrestVerify(c) => ByHand::line(format!(
            "run {} and read the report: every status is `ok` and every count of invalid files 0 (it exits 0 even when it reports errors)",
            code(&pgbr(&c.config, &c.stanza, "verify --output=text --verbose"))
        )),
        StepKind::BarmanRecover(b) => {
            let config = b
                .config
                .as_deref()
                .map(|c| format!("-c {c} "))
                .unwrap_or_default();
            let flag = match crate::kind::barman::BarmanTarget::parse(&b.target) {
                Ok(crate::kind::barman::BarmanTarget::Latest) => String::new(),
                Ok(crate::kind::barman::BarmanTarget::Xid(x)) => {
                    format!("--target-xid {x} --target-action promote ")
                }
                Ok(crate::kind::barman::BarmanTarget::Lsn(l)) => {
                    format!("--target-lsn {l} --target-action promote ")
                }
                // a placeholder (`<target_time>`) is most often a time
                Ok(crate::kind::barman::BarmanTarget::Name(n))
                    if !n.starts_with('<') && !n.contains('$') && !n.contains("{{") =>
                {
                    format!("--target-name {n} --target-action promote ")
                }
                _ => "--target-time 'YYYY-MM-DD HH:MM:SS.ffffff+00' --target-action promote "
                    .to_owned(),
            };
            let time = if flag.starts_with("--target-time") {
                format!(
                    " (the target {}, written in PostgreSQL's format, which Barman copies as is)",
                    b.target
                )
            } else {
                String::new()
            };
            let backup = b.backup_id.as_deref().unwrap_or("BACKUP_ID");
            let which = if b.backup_id.is_none() {
                format!(
                    " (BACKUP_ID: the newest DONE backup in {} that ended before the target)",
                    code(&format!("barman {config}list-backups {}", b.server))
                )
            } else {
                String::new()
            };
            ByHand::line(start_by_hand(
                &format!(
                    "as Barman's account, run {}{time}{which} into a new directory DATA (Barman copies the WAL the target needs into DATA/barman_wal), then leave DATA",
                    code(&format!(
                        "barman {config}recover {flag}{} {backup} DATA",
                        b.server
                    ))
                ),
                &if flag.is_empty() {
                    format!(
                        "leave the WAL Barman copied into {} (set {}: nothing more to fetch)",
                        code("pg_wal"),
                        code("restore_command = 'false'")
                    )
                } else {
                    format!(
                        "keep Barman's {}",
                        code("restore_command = 'cp barman_wal/%f %p'")
                    )
                },
                if flag.is_empty() {
                    "recovery goes to the end of the WAL"
                } else {
                    "keep the recovery target Barman wrote"
                },
            ))
        }
        StepKind::BarmanCheck(c) => ByHand::line(format!(
            "as Barman's account, run {}: every line says OK",
            code(&format!(
                "barman {}check {}",
                c.config
                    .as_deref()
                    .map(|c| format!("-c {c} "))
                    .unwrap_or_default(),
                c.server
            ))
        )),
        StepKind::BarmanBackupAge(b) => ByHand::line(format!(
            "as Barman's account, run {}: the newest DONE backup ended{}",
            code(&format!(
                "barman {}list-backups {}",
                b.config
                    .as_deref()
                    .map(|c| format!("-c {c} "))
                    .unwrap_or_default(),
                b.server
            )),
            b.max_age
                .map(|m| format!(" less than {m} ago"))
                .unwrap_or_else(|| " recently".into())
        )),
        StepKind::LocalArchiver(a) => ByHand::line(format!(
            "run {} with psql on {}: {} stays 0 and {} is recent",
            code("SELECT * FROM pg_stat_archiver"),
            db_label(runbook, &a.db),
            code("failed_count"),
            code("last_archived_time")
        )),
        StepKind::LocalBackupAge(b) => ByHand::line(format!(
            "list {}: the newest base backup is younger than {}",
            code(&b.dir),
            b.max_age
        )),
        StepKind::NeonCreateBranch(b) => {
            let parent = b.from.clone().or_else(|| neon_branch(runbook, &b.target));
            let shown_parent = parent
                .as_deref()
                .map_or("the default branch".to_owned(), code);
            let name = b.name.as_deref().unwrap_or("recovery");
            let (console_point, cli_parent) = match (&b.at, &parent) {
                (Some(at), Some(p)) => (
                    format!("\"Specific point in time\" {at}"),
                    format!("{p}@{at}"),
                ),
                (Some(at), None) => (format!("\"Specific point in time\" {at}"), at.clone()),
                (None, Some(p)) => ("\"Current data\"".into(), p.clone()),
                (None, None) => ("\"Current data\"".into(), String::new()),
            };
            let parent_arg = if cli_parent.is_empty() {
                String::new()
            } else {
                format!(" --parent {cli_parent}")
            };
            let delete = if b.keep {
                ""
            } else {
                " Delete the branch when the drill is over."
            };
            ByHand::line(format!(
                "Neon Console: Branches → New branch → parent {shown_parent}, \
                 {console_point}, name {}. CLI: {}.{delete}",
                code(name),
                cli(
                    &b.target,
                    format!("branches create --name {name}{parent_arg}")
                )
            ))
        }
        StepKind::NeonRestoreBranch(r) => {
            let branch = r
                .branch
                .clone()
                .or_else(|| neon_branch(runbook, &r.target))
                .unwrap_or_else(|| "<branch>".into());
            let at = r.at.as_deref().unwrap_or("<time>");
            let source = r.from.as_deref().unwrap_or("^self");
            let keep = r
                .preserve_under_name
                .clone()
                .unwrap_or_else(|| format!("{branch}_before_restore"));
            ByHand::line(format!(
                "Neon Console: Branches → {} → Restore → From history, {at} (the current \
                 state is kept as a backup branch). CLI: {}",
                code(&branch),
                cli(
                    &r.target,
                    format!("branches restore {branch} {source}@{at} --preserve-under-name {keep}")
                )
            ))
        }
        StepKind::NeonDeleteBranch(d) => ByHand::line(format!(
            "Neon Console: Branches → {} → Delete. CLI: {}",
            code(&d.branch),
            cli(&d.target, format!("branches delete {}", d.branch))
        )),
        StepKind::NeonSetDefaultBranch(d) => ByHand::line(format!(
            "Neon Console: Branches → {} → Set as default. CLI: {}",
            code(&d.branch),
            cli(&d.target, format!("branches set-default {}", d.branch))
        )),
        StepKind::NeonConnectionUri(c) => {
            let branch = c
                .branch
                .clone()
                .or_else(|| neon_branch(runbook, &c.target))
                .unwrap_or_default();
            let mut args = format!("connection-string {branch}");
            if let Some(d) = &c.database {
                args.push_str(&format!(" --database-name {d}"));
            }
            if let Some(r) = &c.role {
                args.push_str(&format!(" --role-name {r}"));
            }
            if c.pooled {
                args.push_str(" --pooled");
            }
            ByHand::line(format!(
                "Neon Console: Branches → the branch → Connect. CLI: {}",
                cli(&c.target, args.replace("  ", " "))
            ))
        }
        StepKind::NeonCreateSnapshot(s) => {
            let branch = s
                .branch
                .clone()
                .or_else(|| neon_branch(runbook, &s.target))
                .unwrap_or_else(|| "<branch>".into());
            let mut args = format!("snapshots create --branch {branch}");
            if let Some(n) = &s.name {
                args.push_str(&format!(" --name {n}"));
            }
            if let Some(at) = &s.at {
                args.push_str(&format!(" --timestamp {at}"));
            }
            ByHand::line(format!(
                "Neon Console: Backup & restore → Create snapshot of {}. CLI: {}",
                code(&branch),
                cli(&s.target, args)
            ))
        }
        StepKind::NeonRestoreSnapshot(s) => {
            let mut args = format!("snapshots restore {}", s.snapshot);
            if let Some(n) = &s.name {
                args.push_str(&format!(" --name {n}"));
            }
            if let Some(into) = s.into.clone().or_else(|| neon_branch(runbook, &s.target)) {
                args.push_str(&format!(" --target-branch {into}"));
            }
            if s.finalize {
                args.push_str(" --finalize");
            }
            let which = if s.snapshot.trim() == "latest" {
                "the newest snapshot".to_owned()
            } else {
                format!("the snapshot {}", s.snapshot)
            };
            ByHand::line(format!(
                "Neon Console: Backup & restore → {which} → Restore; keep the current branch \
                 until the restored data is checked. CLI: {}",
                cli(&s.target, args)
            ))
        }
        StepKind::NeonFinalizeRestore(f) => {
            let mut args = format!("snapshots finalize {}", f.branch);
            if let Some(n) = &f.name {
                args.push_str(&format!(" --name {n}"));
            }
            ByHand::line(format!(
                "Neon Console: Branches → the restored branch → Finalize restore. CLI: {}",
                cli(&f.target, args)
            ))
        }
        StepKind::NeonDeleteSnapshot(d) => ByHand::line(format!(
            "Neon Console: Backup & restore → {} → Delete. CLI: {}",
            code(&d.snapshot),
            cli(&d.target, format!("snapshots delete {}", d.snapshot))
        )),
        StepKind::NeonSchemaDiff(d) => {
            let base = d
                .base
                .clone()
                .or_else(|| neon_branch(runbook, &d.target))
                .unwrap_or_else(|| "<base>".into());
            let branch = d.branch.clone().unwrap_or_else(|| base.clone());
            let compared = match &d.at {
                Some(at) => format!("{branch}@{at}"),
                None => branch.clone(),
            };
            ByHand::line(format!(
                "Neon Console: Branches → {} → Schema diff against {}. CLI: {}",
                code(&branch),
                code(&base),
                cli(&d.target, format!("branches schema-diff {base} {compared}"))
            ))
        }
        StepKind::NeonRetention(r) => ByHand::line(format!(
            "Neon Console: Settings → Instant restore: the restore window is at least {}",
            r.min
        )),
        StepKind::NeonBackupSchedule(b) => {
            let branch = b
                .branch
                .clone()
                .or_else(|| neon_branch(runbook, &b.target))
                .unwrap_or_else(|| "<branch>".into());
            ByHand::line(format!(
                "Neon Console: Backup & restore → the schedule of {} matches the backup \
                 policy. CLI: {}",
                code(&branch),
                cli(
                    &b.target,
                    format!("snapshots schedule get --branch {branch}")
                )
            ))
        }
        StepKind::NeonSnapshotAge(s) => ByHand::line(format!(
            "Neon Console: Backup & restore: the newest snapshot is younger than {}. CLI: {}",
            s.max,
            cli(&s.target, "snapshots list".into())
        )),
        StepKind::NeonProject(p) => ByHand::line(format!(
            "Neon Console: Settings → General (region, PostgreSQL version) and Settings → \
             Instant restore (restore window). CLI: {}",
            code(&format!(
                "neon projects get {}",
                neon_project(runbook, &p.target)
            ))
        )),
        StepKind::HistoryLastPass(h) => ByHand::line(format!(
            "{} shows the last passing run of `{}`; it must be at most {} old",
            code("drillbook history list --verdict passed"),
            h.procedure,
            h.max_age
        )),
        StepKind::HistoryOverdue(h) => ByHand::line(format!(
            "{} shows whether `{}` is overdue for its schedule",
            code("drillbook history stats"),
            h.procedure
        )),
        StepKind::CanaryWrite(c) => ByHand::with_code(
            format!("run with psql on {}:", db_label(runbook, &c.db)),
            "sql",
            "INSERT INTO drillbook_canary (lsn, run_id) VALUES (pg_current_wal_insert_lsn(), 'by hand');",
        ),
        StepKind::CanaryVerify(c) => {
            let lag = c
                .max_lag
                .map(|l| format!(", written at most {l} before it"))
                .unwrap_or_default();
            ByHand::with_code(
                format!(
                    "run the query with psql on {}: the first row must be the newest canary \
                     production wrote at or before {}{lag}, and no row may be after it:",
                    db_label(runbook, &c.db),
                    c.target
                ),
                "sql",
                "SELECT id, written_at FROM drillbook_canary ORDER BY written_at DESC LIMIT 2;",
            )
        }
        StepKind::Fingerprint(f) => ByHand::with_code(
            format!(
                "open a replication connection to {} (`psql \"dbname=… replication=database\"`), \
                 create the slot and keep that session open; note `consistent_point` (the LSN) \
                 and `snapshot_name`; in a second psql session run \
                 `BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '<snapshot_name>';` \
                 then, per table, `SELECT count(*), bit_xor(hash_record_extended(t, 0)) FROM <table> t`; \
                 end both sessions",
                db_label(runbook, &f.db)
            ),
            "sql",
            "CREATE_REPLICATION_SLOT fp TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export');",
        ),
    }
}
