//! Local PostgreSQL clusters that drillbook creates and owns: find the server binaries,
//! `initdb` into an empty directory, start on a free loopback port with a private socket
//! directory, stop. PostgreSQL refuses to run as root, so when drillbook is root the server
//! programs run as the `postgres` account, which is handed the directories first.
//! Only clusters created here are ever stopped or removed.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Where the server programs are, and their major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    pub dir: PathBuf,
    pub major: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("PostgreSQL server binaries not found: set PG_BIN, put pg_config on PATH, or install the server (apt-get install postgresql)")]
    NoBinaries,
    #[error("refusing to use {0}: the directory is not empty (drillbook only creates clusters in empty or new directories)")]
    NotEmpty(PathBuf),
    #[error("refusing to use {0}: it already exists (drillbook creates its clusters in new directories, so that it removes only what it created)")]
    Exists(PathBuf),
    #[error("running as root needs the `postgres` account to run the server, and there is none")]
    NoAccount,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{0}")]
    Io(String),
    /// A `postgresql.conf` setting that could not be written as one line of its own.
    #[error("{0}")]
    Setting(String),
}

impl ClusterError {
    fn io(what: &str, path: &Path, e: &std::io::Error) -> ClusterError {
        ClusterError::Io(format!("{what} {}: {e}", path.display()))
    }
}

/// Finds the server binaries: `PG_BIN`, then `pg_config --bindir`, then the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_binaries() -> Result<Binaries, ClusterError> {
    let has_server = |dir: &Path| {
        dir.join("postgres").is_file()
            && dir.join("initdb").is_file()
            && dir.join("pg_ctl").is_file()
    };
    if let Some(dir) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        return if has_server(&dir) {
            Ok(Binaries {
                major: major_of(&dir),
                dir,
            })
        } else {
            Err(ClusterError::NoBinaries)
        };
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(Binaries {
                major: major_of(&dir),
                dir,
            });
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let dir = e.path().join("bin");
            has_server(&dir).then_some((major, dir))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(major, dir)| Binaries { dir, major })
        .ok_or(ClusterError::NoBinaries)
}

fn major_of(dir: &Path) -> u32 {
    std::process::Command::new(dir.join("postgres"))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace()
                .find_map(|w| w.split('.').next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The unix account the server runs as, when drillbook itself is root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// The account servers run as when drillbook is root (`postgres`); None when it is not root.
pub fn server_account() -> Result<Option<Account>, ClusterError> {
    if !is_root() {
        return Ok(None);
    }
    let (uid, gid, _) = passwd_entry("postgres").ok_or(ClusterError::NoAccount)?;
    Ok(Some(Account { uid, gid }))
}

/// Whether this process runs as root (its effective uid, from `/proc/self/status`).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

/// A local account's uid, gid and home directory, from `/etc/passwd`; None when there is no
/// such account (or the file cannot be read).
pub fn passwd_entry(name: &str) -> Option<(u32, u32, String)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name)).then(|| {
            Some((
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
                f.get(5).copied().unwrap_or("/").to_owned(),
            ))
        })?
    })
}

/// Settings for a new cluster.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Turn on WAL archiving into this directory (created if missing).
    pub archive_dir: Option<PathBuf>,
    /// Throwaway speed: `fsync=off` and friends. Never for data anyone keeps.
    pub unsafe_fast: bool,
    /// Extra `postgresql.conf` settings, name and value as text, e.g. `("max_wal_size",
    /// "4GB")`: each value is written quoted ([`conf_line`]), so it is never PostgreSQL
    /// syntax of its own.
    pub settings: Vec<(String, String)>,
    /// Listen only on a Unix socket in a directory only the server's account can enter,
    /// instead of loopback TCP.
    pub private: bool,
    /// The bootstrap superuser's name (`initdb -U`); default `postgres`.
    pub superuser: Option<String>,
}

/// A cluster drillbook created. Dropping it stops the server if it still runs; the files
/// stay until [`Cluster::remove`].
#[derive(Debug)]
pub struct Cluster {
    pub bin: Binaries,
    /// Holds `data/`, `socket/` and `server.log`.
    pub root: PathBuf,
    pub port: u16,
    account: Option<Account>,
    running: bool,
    /// Reachable only through its own Unix socket (no TCP), for clusters holding copies of
    /// real data and for throwaway demo clusters.
    private: bool,
    /// The role [`Cluster::url`] connects as: the bootstrap superuser.
    superuser: String,
}

impl Cluster {
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("socket")
    }

    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// A URL for `db` as the bootstrap superuser, over the private socket or loopback TCP.
    pub fn url(&self, db: &str) -> String {
        self.url_as(&self.superuser, db)
    }

    /// A URL for `db` as `role`, over the private socket or loopback TCP.
    pub fn url_as(&self, role: &str, db: &str) -> String {
        let host = if self.private {
            crate::http::percent_encode(&self.socket_dir().display().to_string())
        } else {
            "127.0.0.1".into()
        };
        format!(
            "postgresql://{}@{host}:{}/{}?sslmode=disable",
            crate::http::percent_encode(role),
            self.port,
            crate::http::percent_encode(db)
        )
    }

    /// From now on reachable only through its Unix socket (the caller configures the server
    /// accordingly: `listen_addresses = ''`, `unix_socket_permissions = 0700`).
    pub fn make_private(&mut self) {
        self.private = true;
    }

    /// The role [`Cluster::url`] connects as (a restored cluster's bootstrap superuser,
    /// which `initdb -U` may have named anything).
    pub fn set_superuser(&mut self, name: &str) {
        name.clone_into(&mut self.superuser);
    }

    /// Creates a cluster under `root`, which must be missing or empty.
    pub async fn create(
        bin: Binaries,
        root: &Path,
        opts: &InitOptions,
    ) -> Result<Cluster, ClusterError> {
        let account = server_account()?;
        let cluster = Cluster {
            bin,
            root: root.to_owned(),
            port: 0,
            account,
            running: false,
            private: opts.private,
            superuser: opts.superuser.clone().unwrap_or_else(|| "postgres".into()),
        };
        // every line is checked before anything exists: a setting that cannot be written
        // stops the cluster before its first directory
        let text = settings_text(&cluster.socket_dir(), opts)?;
        new_root(root)?;
        for dir in [
            cluster.root.clone(),
            cluster.data_dir(),
            cluster.socket_dir(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| ClusterError::io("cannot create", &dir, &e))?;
            cluster.hand_over(&dir)?;
        }
        if let Some(archive) = &opts.archive_dir {
            std::fs::create_dir_all(archive)
                .map_err(|e| ClusterError::io("cannot create", archive, &e))?;
            cluster.hand_over(archive)?;
        }
        let data = cluster.data_dir();
        cluster
            .run(
                "initdb",
                "initdb",
                &[
                    "-D",
                    &data.to_string_lossy(),
                    "-U",
                    &cluster.superuser,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
            )
            .await?;
        let conf_file = data.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_file)
            .map_err(|e| ClusterError::io("cannot read", &conf_file, &e))?;
        existing.push_str(&text);
        std::fs::write(&conf_file, existing)
            .map_err(|e| ClusterError::io("cannot write", &conf_file, &e))?;
        Ok(cluster)
    }

    /// Starts the server on a free loopback port and waits until it accepts connections.
    pub async fn start(&mut self) -> Result<(), ClusterError> {
        self.start_waiting(120).await
    }

    /// Starts the server and waits up to `seconds` for it to accept connections (a restore
    /// reaching consistency can take long; the caller's own deadline still applies).
    pub async fn start_waiting(&mut self, seconds: u32) -> Result<(), ClusterError> {
        let mut last = None;
        let wait = seconds.to_string();
        for _ in 0..5 {
            self.port = free_port()?;
            let opts = format!("-p {}", self.port);
            let data = self.data_dir().to_string_lossy().into_owned();
            let log = self.log_file().to_string_lossy().into_owned();
            // only what this attempt writes to the log says why it failed
            let seen = std::fs::metadata(self.log_file())
                .map(|m| m.len())
                .unwrap_or(0);
            match self
                .run(
                    "pg_ctl start",
                    "pg_ctl",
                    &[
                        "start", "-w", "-t", &wait, "-D", &data, "-l", &log, "-o", &opts,
                    ],
                )
                .await
            {
                Ok(_) => {
                    self.running = true;
                    return Ok(());
                }
                Err(e) => {
                    let full = std::fs::read(self.log_file()).unwrap_or_default();
                    let log_text = String::from_utf8_lossy(
                        full.get(usize::try_from(seen).unwrap_or(0)..)
                            .unwrap_or_default(),
                    )
                    .into_owned();
                    // another process took the port between our probe and the bind: try another
                    if !log_text.contains("could not bind") {
                        return Err(with_log(e, &log_text));
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(ClusterError::Io("could not start".into())))
    }

    /// Stops the server (fast shutdown: sessions are disconnected, no data is lost).
    pub async fn stop(&mut self) -> Result<(), ClusterError> {
        if !self.running {
            return Ok(());
        }
        let data = self.data_dir().to_string_lossy().into_owned();
        self.run(
            "pg_ctl stop",
            "pg_ctl",
            &["stop", "-w", "-m", "fast", "-D", &data],
        )
        .await?;
        self.running = false;
        Ok(())
    }

    /// Stops the server and deletes everything under the cluster's root.
    pub async fn remove(mut self) -> Result<(), ClusterError> {
        self.stop().await?;
        std::fs::remove_dir_all(&self.root)
            .map_err(|e| ClusterError::io("cannot remove", &self.root, &e))
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Hands the cluster's lifetime over: it keeps running after this value is gone, and
    /// the handle stops and removes it.
    pub fn detach(mut self) -> ClusterHandle {
        self.running = false;
        self.handle()
    }

    pub fn handle(&self) -> ClusterHandle {
        ClusterHandle {
            bin: self.bin.clone(),
            root: self.root.clone(),
            account: self.account,
        }
    }

    /// A cluster whose data directory is filled by the caller (a restore): the layout and
    /// ownership of [`Cluster::create`] without `initdb`.
    pub fn prepare(bin: Binaries, root: &Path) -> Result<Cluster, ClusterError> {
        let account = server_account()?;
        new_root(root)?;
        let cluster = Cluster {
            bin,
            root: root.to_owned(),
            port: 0,
            account,
            running: false,
            private: false,
            superuser: "postgres".into(),
        };
        for dir in [cluster.root.clone(), cluster.socket_dir()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| ClusterError::io("cannot create", &dir, &e))?;
            cluster.hand_over(&dir)?;
        }
        Ok(cluster)
    }

    /// Gives a directory tree drillbook created (e.g. a copied base backup) to the server's
    /// account.
    pub fn hand_over_tree(&self, dir: &Path) -> Result<(), ClusterError> {
        if self.account.is_none() {
            return Ok(());
        }
        self.hand_over(dir)?;
        for entry in std::fs::read_dir(dir).map_err(|e| ClusterError::io("cannot read", dir, &e))? {
            let entry = entry.map_err(|e| ClusterError::io("cannot read", dir, &e))?;
            let path = entry.path();
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                self.hand_over_tree(&path)?;
            } else {
                self.hand_over(&path)?;
            }
        }
        Ok(())
    }

    /// The server account, when drillbook runs as root.
    pub fn account(&self) -> Option<Account> {
        self.account
    }

    /// Gives a directory drillbook created to the server's account.
    fn hand_over(&self, dir: &Path) -> Result<(), ClusterError> {
        if let Some(a) = self.account {
            // lchown: a symlink is handed over itself, never what it points at
            std::os::unix::fs::lchown(dir, Some(a.uid), Some(a.gid))
                .map_err(|e| ClusterError::io("cannot hand over", dir, &e))?;
        }
        Ok(())
    }

    /// Runs one of the server programs (as the server's account when root).
    pub async fn run(
        &self,
        what: &str,
        program: &str,
        args: &[&str],
    ) -> Result<String, ClusterError> {
        let mut cmd = tokio::process::Command::new(self.bin.dir.join(program));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.env("LC_ALL", "C");
        if let Some(a) = self.account {
            cmd.uid(a.uid).gid(a.gid);
        }
        let out = cmd.output().await.map_err(|e| ClusterError::Command {
            what: what.into(),
            detail: format!("cannot start {program}: {e}"),
        })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let detail = text
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("no output")
            .trim()
            .to_owned();
        Err(ClusterError::Command {
            what: what.into(),
            detail,
        })
    }
}

fn with_log(e: ClusterError, log: &str) -> ClusterError {
    let tail: Vec<&str> = log
        .lines()
        .rev()
        .filter(|l| l.contains("FATAL") || l.contains("ERROR") || l.contains("PANIC"))
        .take(3)
        .collect();
    match (e, tail.is_empty()) {
        (ClusterError::Command { what, detail }, false) => ClusterError::Command {
            what,
            detail: format!(
                "{detail}; server log: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ),
        },
        (e, _) => e,
    }
}

/// Creates `root` as a new directory (its parents as needed): an existing one is refused, so
/// that removing the root later removes only what drillbook created.
fn new_root(root: &Path) -> Result<(), ClusterError> {
    if let Some(parent) = root.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| ClusterError::io("cannot create", parent, &e))?;
    }
    match std::fs::create_dir(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let empty = std::fs::read_dir(root)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            Err(if empty {
                ClusterError::Exists(root.to_owned())
            } else {
                ClusterError::NotEmpty(root.to_owned())
            })
        }
        Err(e) => Err(ClusterError::io("cannot create", root, &e)),
    }
}

/// The lines drillbook appends to a new cluster's `postgresql.conf`: its own settings, then
/// the caller's, each through [`conf_line`].
fn settings_text(socket: &Path, opts: &InitOptions) -> Result<String, ClusterError> {
    let socket = socket.display().to_string();
    let mut conf: Vec<(&str, String)> = vec![
        (
            "listen_addresses",
            if opts.private { "" } else { "127.0.0.1" }.into(),
        ),
        (
            "unix_socket_permissions",
            if opts.private { "0700" } else { "0777" }.into(),
        ),
        ("unix_socket_directories", socket),
        ("max_connections", "50".into()),
    ];
    if let Some(archive) = &opts.archive_dir {
        conf.push(("archive_mode", "on".into()));
        conf.push(("wal_level", "replica".into()));
        // copy to a temporary name and rename, so an interrupted copy never leaves a
        // partial segment under the real name
        let a = shell_quote(&archive.display().to_string().replace('%', "%%"));
        conf.push((
            "archive_command",
            format!("test ! -f {a}/%f && cp %p {a}/%f.tmp && mv {a}/%f.tmp {a}/%f"),
        ));
    }
    if opts.unsafe_fast {
        for k in ["fsync", "synchronous_commit", "full_page_writes"] {
            conf.push((k, "off".into()));
        }
    }
    conf.extend(opts.settings.iter().map(|(k, v)| (k.as_str(), v.clone())));
    let mut text = String::from("\n# added by drillbook\n");
    for (k, v) in conf {
        text.push_str(&conf_line(k, &v)?);
    }
    Ok(text)
}

/// One `postgresql.conf` line, `name = 'value'`, or why `name` and `value` cannot be one.
/// PostgreSQL's configuration parser reads a name as an identifier (`module.name` for an
/// extension's) and a quoted value up to its closing quote, and no value may span lines;
/// a name that is anything else, or a value holding a line break or a NUL, could add a
/// line of its own (an `archive_command`, run by the server's account). Those are refused,
/// and the value is always written quoted, so it is never syntax.
pub fn conf_line(name: &str, value: &str) -> Result<String, ClusterError> {
    if !is_setting_name(name) {
        return Err(ClusterError::Setting(format!(
            "{name:?} is not a setting name: letters, digits, `_` and `.`, not starting with a digit"
        )));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(ClusterError::Setting(format!(
            "setting `{name}`: the value holds a line break or a NUL, which a postgresql.conf value cannot hold"
        )));
    }
    Ok(format!("{name} = {}\n", conf_string(value)))
}

/// A name PostgreSQL's configuration parser reads as one setting: `[A-Za-z_][A-Za-z0-9_.]*`.
pub fn is_setting_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// `text` as one shell word: single-quoted, embedded quotes closed and reopened.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `text` as a postgresql.conf string value: quoted, with `'` and `\` escaped.
fn conf_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| ClusterError::Io(format!("no free loopback port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| ClusterError::Io(format!("no free loopback port: {e}")))
}

/// What it takes to stop a cluster and remove its files later, without owning it: the
/// engine keeps one per cluster a step created, and undoes them after cleanup.
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    pub bin: Binaries,
    pub root: PathBuf,
    account: Option<Account>,
}

impl ClusterHandle {
    /// A handle for a cluster about to be created in `root`: registered for undo before the
    /// first directory exists, so an interrupted `initdb` leaves nothing behind.
    pub fn for_root(bin: &Binaries, root: &Path) -> Result<ClusterHandle, ClusterError> {
        Ok(ClusterHandle {
            bin: bin.clone(),
            root: root.to_owned(),
            account: server_account()?,
        })
    }

    /// The postmaster's pid, if `postmaster.pid` names a live process whose working directory
    /// is this cluster's data directory (a stale file, or a reused pid, is not ours).
    fn live_postmaster(&self) -> Option<i32> {
        let data = self.root.join("data");
        let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
        (cwd.canonicalize().ok()? == data.canonicalize().ok()?).then_some(pid)
    }

    /// True while this cluster's postmaster lives.
    pub fn is_running(&self) -> bool {
        self.live_postmaster().is_some()
    }

    /// Stops the server at once without waiting: for when cleanup itself is aborted.
    pub fn kill_now(&self) {
        if self.live_postmaster().is_none() {
            return;
        }
        let mut cmd = std::process::Command::new(self.bin.dir.join("pg_ctl"));
        cmd.args(["stop", "-m", "immediate", "-W", "-D"])
            .arg(self.root.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(a) = self.account {
            use std::os::unix::process::CommandExt;
            cmd.uid(a.uid).gid(a.gid);
        }
        let _ = cmd.status();
    }

    /// Stops the server if it runs (fast, then immediate), then removes the cluster's root.
    pub async fn stop_and_remove(&self) -> Result<(), ClusterError> {
        let data = self.root.join("data");
        if self.live_postmaster().is_some() {
            let probe = Cluster {
                bin: self.bin.clone(),
                root: self.root.clone(),
                port: 0,
                account: self.account,
                running: false,
                private: false,
                superuser: String::new(),
            };
            let d = data.to_string_lossy().into_owned();
            if probe
                .run(
                    "pg_ctl stop",
                    "pg_ctl",
                    &["stop", "-w", "-t", "30", "-m", "fast", "-D", &d],
                )
                .await
                .is_err()
            {
                probe
                    .run(
                        "pg_ctl stop",
                        "pg_ctl",
                        &["stop", "-w", "-m", "immediate", "-D", &d],
                    )
                    .await?;
            }
        }
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ClusterError::io("cannot remove", &self.root, &e)),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let mut cmd = std::process::Command::new(self.bin.dir.join("pg_ctl"));
            cmd.args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(self.data_dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(a) = self.account {
                use std::os::unix::process::CommandExt;
                cmd.uid(a.uid).gid(a.gid);
            }
            let _ = cmd.status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/tmp/a b/it's"), "'/tmp/a b/it'\\''s'");
        assert_eq!(conf_string("cp 'a' \\x"), "'cp ''a'' \\\\x'");
    }

    /// A value is one quoted string whatever it holds; what would end the line, or a name
    /// that is not one, is refused with the setting named.
    #[test]
    fn a_setting_is_one_line_or_refused() {
        assert_eq!(
            conf_line("shared_buffers", "16MB").expect("a line"),
            "shared_buffers = '16MB'\n"
        );
        assert_eq!(
            conf_line("pg_stat_statements.max", "on' # \\").expect("a line"),
            "pg_stat_statements.max = 'on'' # \\\\'\n"
        );
        let injected = conf_line("work_mem", "4MB'\narchive_command = 'touch /tmp/x");
        let Err(e) = injected else {
            panic!("a value with a line break was written: {injected:?}")
        };
        assert_eq!(
            e.to_string(),
            "setting `work_mem`: the value holds a line break or a NUL, which a postgresql.conf value cannot hold"
        );
        for bad in ["a\rb", "a\0b"] {
            assert!(conf_line("work_mem", bad).is_err(), "{bad:?}");
        }
        for name in [
            "archive_command = 'x' #",
            "work mem",
            "9lives",
            "",
            "a\nb",
            "a-b",
        ] {
            let Err(e) = conf_line(name, "1") else {
                panic!("name {name:?} was written")
            };
            assert!(e.to_string().ends_with("is not a setting name: letters, digits, `_` and `.`, not starting with a digit"), "{e}");
        }
    }
}
