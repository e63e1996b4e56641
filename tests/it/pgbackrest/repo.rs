//! Real pgBackRest repositories for the tests: a throwaway PostgreSQL 15 cluster archiving
//! with `pgbackrest archive-push` into an encrypted repo under a temporary directory (built by
//! `repo.sh`, as `postgres`), with full, diff and incr backups and a known target. `shared()`
//! is built once per test binary for the tests that only read it; a test that damages its
//! repo builds its own with `Repo::build()`. A watchdog stops each source cluster and removes
//! its directory when the test process exits, however it exits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A repository and the cluster it backs up, with the facts `repo.sh` printed.
pub struct Repo {
    pub dir: PathBuf,
    facts: BTreeMap<String, String>,
    owned: bool,
}

impl Repo {
    /// A new repository of its own (removed when dropped).
    pub fn build() -> Repo {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "drillbook-it-pgbr-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let port = drillbook::pg::cluster::free_port().expect("free port");
        watchdog(&dir);
        let out = Command::new("sh")
            .arg(crate::support::root().join("tests/it/pgbackrest/repo.sh"))
            .arg(&dir)
            .arg(port.to_string())
            .arg(PG_BIN)
            .stdin(Stdio::null())
            .output()
            .expect("run repo.sh (needs sh, pgbackrest and PostgreSQL 15)");
        assert!(
            out.status.success(),
            "building the pgBackRest repository failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let facts = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Repo {
            dir,
            facts,
            owned: true,
        }
    }

    /// A fact `repo.sh` printed (`target_time`, `rows_before`, `config`…).
    #[track_caller]
    pub fn fact(&self, key: &str) -> &str {
        self.facts
            .get(key)
            .unwrap_or_else(|| panic!("repo.sh printed no `{key}`"))
    }

    pub fn config(&self) -> &str {
        self.fact("config")
    }

    /// The source cluster's URL (loopback, trust).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.fact("port")
        )
    }

    /// The label of the first backup set of `kind` (`full`, `diff`, `incr`).
    pub fn first_set(&self, kind: &str) -> String {
        let info: serde_json::Value =
            serde_json::from_str(&self.pgbackrest(&["--output=json", "info"])).expect("info");
        info[0]["backup"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["type"] == kind))
            .and_then(|b| b["label"].as_str())
            .unwrap_or_else(|| panic!("no {kind} set in {info}"))
            .to_owned()
    }

    /// Runs SQL on the source cluster.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port: u16 = self.fact("port").parse().expect("port");
        crate::support::psql_at(Path::new(PG_BIN), port, db, sql)
    }

    /// Runs pgBackRest against this repository as `postgres`; its stdout.
    #[track_caller]
    pub fn pgbackrest(&self, args: &[&str]) -> String {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--", "pgbackrest"])
            .arg(format!("--config={}", self.config()))
            .arg("--stanza=main")
            .args(args)
            .current_dir("/")
            .output()
            .expect("run pgbackrest");
        assert!(
            out.status.success(),
            "pgbackrest {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        if self.owned {
            stop_and_remove(&self.dir);
        }
    }
}

/// The repository every read-only test shares, built on first use.
pub fn shared() -> &'static Repo {
    static REPO: std::sync::OnceLock<Repo> = std::sync::OnceLock::new();
    REPO.get_or_init(|| {
        let mut repo = Repo::build();
        // the watchdog removes it when the test process exits
        repo.owned = false;
        repo
    })
}

fn stop_and_remove(dir: &Path) {
    let _ = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join("pg_ctl"))
        .args(["stop", "-m", "immediate", "-D"])
        .arg(dir.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(dir);
}

/// A process that outlives this one: when it exits, it stops the cluster in `dir` and removes
/// `dir` (a test that panics, or a killed test binary, leaves nothing running).
fn watchdog(dir: &Path) {
    let script = format!(
        "while [ -d /proc/{pid} ] && [ -d {dir} ]; do sleep 0.5; done; runuser -u postgres -- {bin}/pg_ctl stop -m immediate -D {dir}/data >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        bin = PG_BIN,
        dir = dir.display()
    );
    // the directory must exist for the loop to wait on it
    std::fs::create_dir_all(dir).expect("create the repository's directory");
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the repository watchdog");
    // not waited for on purpose: it must outlive this process (init reaps it)
    std::mem::forget(child);
}
