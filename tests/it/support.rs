//! Test support: a builder that runs the real `drillbook` binary, temporary directories, and
//! in-process HTTP receivers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use crate::http_server::HttpServer;

pub const BIN: &str = env!("CARGO_BIN_EXE_drillbook");

/// The repository root (where `runbooks/` and `tests/fixtures/` are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "drillbook-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the CLI: `Cli::new().runbook(yaml).args([...]).run()` then assert on the result.
#[derive(Debug)]
pub struct Cli {
    pub dir: TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The stdout parsed as JSON (for `--format json`). A record's or check run's outputs
    /// are checked against what their kinds declare.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        let value = serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        });
        assert_outputs_declared(&value);
        value
    }
}

/// Every output a step or check produced is one its kind declares (`kind::Spec::OUTPUTS`),
/// so validation's check of `steps.<id>.<output>` and the docs tell the truth. Kinds whose
/// payload adds outputs (`http.capture`, `sql` columns, `wait` polls) are left out.
#[track_caller]
pub fn assert_outputs_declared(value: &serde_json::Value) {
    let steps = ["steps", "cleanup", "checks"]
        .iter()
        .filter_map(|k| value[*k].as_array())
        .flatten();
    for step in steps {
        let Some(info) = step["kind"]
            .as_str()
            .and_then(drillbook::kind::StepKind::info)
        else {
            continue;
        };
        if info.payload_outputs.is_some() {
            continue;
        }
        for name in step["outputs"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
        {
            assert!(
                info.outputs.iter().any(|o| o.name == name),
                "`{}` output `{name}` (step `{}`) is not declared in src/kind/",
                info.name,
                step["id"]
            );
        }
    }
}

impl Cli {
    pub fn new() -> Cli {
        Cli {
            dir: TempDir::new(),
            args: Vec::new(),
            env: vec![("DRILLBOOK_OPERATOR".into(), "tester@ci".into())],
        }
    }

    /// Writes `yaml` as `runbook.yaml` in the test's directory (the working directory).
    pub fn runbook(self, yaml: &str) -> Cli {
        std::fs::write(self.dir.join("runbook.yaml"), yaml).expect("write runbook");
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Cli {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Cli {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command().output().expect("run drillbook");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

/// One throwaway PostgreSQL cluster for the whole test binary, started on first use. A
/// watchdog process (running as the server's account) stops it and removes its files when
/// this process exits, however it exits. Tests create their own databases in it.
pub struct Pg {
    pub port: u16,
    pub bin: PathBuf,
}

pub fn pg() -> &'static Pg {
    static PG: std::sync::OnceLock<Pg> = std::sync::OnceLock::new();
    PG.get_or_init(|| {
        use drillbook::pg::cluster::{find_binaries, Cluster, InitOptions};
        let bin = find_binaries().unwrap_or_else(|e| panic!("tests need PostgreSQL: {e}"));
        let root = std::env::temp_dir().join(format!("drillbook-it-pg-{}", std::process::id()));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let opts = InitOptions { unsafe_fast: true, ..InitOptions::default() };
        let mut cluster = rt.block_on(Cluster::create(bin.clone(), &root, &opts)).unwrap_or_else(|e| panic!("initdb: {e}"));
        // one role that must authenticate with a password (the rest trust loopback)
        let hba = cluster.data_dir().join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        std::fs::write(&hba, format!("host all scram_user 127.0.0.1/32 scram-sha-256\n{rules}")).expect("write pg_hba.conf");
        rt.block_on(cluster.start()).unwrap_or_else(|e| panic!("start: {e}"));
        let port = cluster.port;
        let psql = Command::new(bin.dir.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-X", "-q", "-c", "CREATE ROLE scram_user LOGIN PASSWORD 'right-password'"])
            .status()
            .expect("psql");
        assert!(psql.success(), "create scram_user");
        let pg_ctl = bin.dir.join("pg_ctl");
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 0.5; done; {pg_ctl} stop -m immediate -D {data} >/dev/null 2>&1; rm -rf {root}",
            pid = std::process::id(),
            pg_ctl = pg_ctl.display(),
            data = cluster.data_dir().display(),
            root = root.display()
        );
        let mut watchdog = Command::new("sh");
        watchdog.args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = owner_of(&root) {
            use std::os::unix::process::CommandExt;
            watchdog.uid(uid).gid(gid);
        }
        // not waited for on purpose: it must outlive this process (init reaps it)
        let child = watchdog.spawn().expect("start the cluster watchdog");
        std::mem::forget(child);
        // the watchdog owns the server's lifetime from here on
        std::mem::forget(cluster);
        Pg { port, bin: bin.dir }
    })
}

/// Runs SQL through the psql in `bin` against 127.0.0.1:`port` as `postgres`; panics with
/// psql's message on failure. Returns the unaligned, tuples-only output.
#[track_caller]
pub fn psql_at(bin: &Path, port: u16, db: &str, sql: &str) -> String {
    psql_as(bin, port, "postgres", db, sql)
}

/// [`psql_at`] as `user`.
pub fn psql_as(bin: &Path, port: u16, user: &str, db: &str, sql: &str) -> String {
    let out = Command::new(bin.join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            db,
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed on {db}: {}\n{sql}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn owner_of(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.uid(), m.gid()))
}

impl Pg {
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Runs SQL through psql (ON_ERROR_STOP), panicking with psql's message on failure.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        psql_at(&self.bin, self.port, db, sql)
    }

    /// A fresh, empty database with a unique name; returns its name.
    pub fn database(&self, prefix: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("{prefix}_{}", N.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }
}

/// A second throwaway cluster serving TLS with a certificate for `localhost` signed by a
/// test CA (made with the `openssl` command), for the `sslmode` tests. Returns the port and
/// the CA file.
pub fn tls_pg() -> &'static (u16, PathBuf) {
    static TLS: std::sync::OnceLock<(u16, PathBuf)> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        use drillbook::pg::cluster::{find_binaries, Cluster, InitOptions};
        let bin = find_binaries().unwrap_or_else(|e| panic!("tests need PostgreSQL: {e}"));
        let root = std::env::temp_dir().join(format!("drillbook-it-tls-{}", std::process::id()));
        let certs = std::env::temp_dir().join(format!("drillbook-it-certs-{}", std::process::id()));
        std::fs::create_dir_all(&certs).expect("cert dir");
        let sh = |script: &str| {
            let out = Command::new("sh").arg("-c").arg(script).current_dir(&certs).output().expect("sh");
            assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        sh(&format!("openssl req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=drillbook-test-ca"));
        sh(&format!("openssl req {ec} -keyout server.key -out server.csr -subj /CN=localhost"));
        sh("printf 'subjectAltName=DNS:localhost\\n' > san.ext && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext");
        let settings = vec![
            ("ssl".to_owned(), "on".to_owned()),
            ("ssl_cert_file".to_owned(), certs.join("server.crt").display().to_string()),
            ("ssl_key_file".to_owned(), certs.join("server.key").display().to_string()),
            // a fingerprint's replication connection over TLS (tests/it/tls.rs)
            ("wal_level".to_owned(), "logical".to_owned()),
        ];
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let opts = InitOptions { unsafe_fast: true, settings, ..InitOptions::default() };
        let mut cluster = rt.block_on(Cluster::create(bin.clone(), &root, &opts)).unwrap_or_else(|e| panic!("initdb: {e}"));
        // the server reads its key as its own account, and only a private key file; the
        // watchdog (same account) removes the directory at the end
        if let Some((uid, gid)) = owner_of(&root) {
            std::os::unix::fs::chown(&certs, Some(uid), Some(gid)).expect("chown cert dir");
            for f in std::fs::read_dir(&certs).expect("cert dir").flatten() {
                std::os::unix::fs::chown(f.path(), Some(uid), Some(gid)).expect("chown cert");
            }
        }
        std::fs::set_permissions(certs.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod key");
        rt.block_on(cluster.start()).unwrap_or_else(|e| panic!("start TLS cluster: {e}"));
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 0.5; done; {pg_ctl} stop -m immediate -D {data} >/dev/null 2>&1; rm -rf {root} {certs}",
            pid = std::process::id(),
            pg_ctl = bin.dir.join("pg_ctl").display(),
            data = cluster.data_dir().display(),
            root = root.display(),
            certs = certs.display()
        );
        let mut watchdog = Command::new("sh");
        watchdog.args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = owner_of(&root) {
            use std::os::unix::process::CommandExt;
            watchdog.uid(uid).gid(gid);
        }
        std::mem::forget(watchdog.spawn().expect("start the cluster watchdog"));
        let port = cluster.port;
        std::mem::forget(cluster);
        (port, certs.join("ca.pem"))
    })
}

/// Scratch directories and processes of one run (by its id) left in `$TMPDIR` or running:
/// after any run, there must be none.
pub fn leftovers(run_id: &str) -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("drillbook-{run_id}")))
        .collect();
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    left.extend(
        String::from_utf8_lossy(&ps.stdout)
            .lines()
            .filter(|l| l.contains(&format!("drillbook-{run_id}")))
            .map(str::to_owned),
    );
    left
}

/// A started throwaway cluster in `root` that archives its WAL into `archive`, set up as an
/// administrator's own (`initdb -U admin`: no `postgres` role), for the tests that restore a
/// cluster drillbook did not create.
pub fn archiving_cluster(
    rt: &tokio::runtime::Runtime,
    bin: &drillbook::pg::cluster::Binaries,
    archive: &Path,
    root: &Path,
) -> drillbook::pg::cluster::Cluster {
    use drillbook::pg::cluster::{Cluster, InitOptions};
    let mut cluster = rt
        .block_on(Cluster::create(
            bin.clone(),
            root,
            &InitOptions {
                archive_dir: Some(archive.to_owned()),
                unsafe_fast: true,
                superuser: Some("admin".into()),
                ..InitOptions::default()
            },
        ))
        .expect("initdb");
    rt.block_on(cluster.start()).expect("start");
    cluster
}

/// A Python with the `icalendar` and `python-dateutil` packages from PyPI, in a virtual
/// environment under `target/` made on first use (and kept): the independent iCalendar
/// parser and RRULE expander the `.ics` tests read drillbook's calendars with.
pub fn ical_python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = root().join("target/ical-venv");
            let python = venv.join("bin/python");
            let ready = || {
                Command::new(&python)
                    .args(["-c", "import icalendar, dateutil.rrule"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if !ready() {
                let made = Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(
                    made,
                    "cannot make a Python virtual environment with `python3 -m venv` (on Debian: apt-get install python3-venv)"
                );
                let installed = Command::new(venv.join("bin/pip"))
                    .args(["install", "--quiet", "icalendar>=6", "python-dateutil>=2.9"])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(installed && ready(), "cannot install icalendar and python-dateutil from PyPI into {}", venv.display());
            }
            python
        })
        .clone()
}
